"""What a Dask worker runs: one DuckDB, in memory, over one batch part or one bucket.

Every function here is a task: its arguments are plain values (paths, numbers, a dict of
reader settings), it reads and writes Parquet files under the engine's storage, and returns
small results (counts, the first rejects). None opens the workspace's database. A task may run
twice (a worker lost mid-task is replaced and the task run again), so each writes its files
under a temporary name and renames them into place: a second run gives the same files.

Visitor IDs in storage: Parquet has no 128-bit integer (DuckDB would write a HUGEINT as a DOUBLE,
losing digits), so a visitor ID is two columns, its high and low 64 bits: ``hi`` (BIGINT) and
``lo`` (UBIGINT) (:data:`HI`, :data:`LO`; :data:`VID` puts them back together). Tasks join and
compare the pairs as they are, which is as fast as one 64-bit key; a ``DECIMAL(38, 0)`` column,
the other exact choice, made the join eight times slower, and HUGEINT's ``%`` costs 1 µs per ID.

Buckets: a visitor ID belongs to bucket ``lo % buckets`` (:data:`BUCKET`), the same arithmetic in
every process and every DuckDB version (no hash function's version in it). A bucket's files are
``FOLDER/b=B/*.parquet``; a bucket with no rows may have no folder.
"""

from __future__ import annotations

import glob
import os
import shutil
import uuid
from typing import Any

import duckdb
import pyarrow as pa

from audtools.errors import InputError
from audtools.formats.outbound_rows import REJECTS_SCHEMA, Limits, OutboundReader

__all__ = [
    "BUCKET",
    "HI",
    "LO",
    "VID",
    "bucket_files",
    "parse_part",
    "reconcile_bucket",
    "relation",
    "state_bucket",
]

HI = "CAST(({}) >> 64 AS BIGINT)"
"""SQL of a visitor ID's high 64 bits (format with a HUGEINT expression)."""
LO = "CAST(({}) & 18446744073709551615::HUGEINT AS UBIGINT)"
"""SQL of a visitor ID's low 64 bits (format with a HUGEINT expression)."""
VID = "((CAST({0}hi AS HUGEINT) << 64) + CAST({0}lo AS HUGEINT))"
"""SQL of the visitor ID whose halves are the columns ``hi`` and ``lo`` (format with a table
alias and a dot, or with "")."""
BUCKET = "CAST(({}) % {} AS INTEGER)"
"""SQL of the bucket of a visitor ID (format with its ``lo`` and the number of buckets)."""
VISITOR = {"hi": "BIGINT", "lo": "UBIGINT"}

# A task's DuckDB takes at most this share of its worker's memory limit, and spills the rest
# to the worker's local folder: Dask's own bookkeeping and Arrow buffers need the remainder.
_DUCKDB_SHARE = 0.5


def bucket_files(folder: str, bucket: int) -> list[str]:
    """The Parquet files of ``bucket`` in the dataset ``folder`` (none for an empty bucket)."""
    return sorted(glob.glob(os.path.join(folder, f"b={bucket}", "*.parquet")))


def _duckdb(threads: int | None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB sized for this worker: its memory limit, its spill folder."""
    con = duckdb.connect(config={"preserve_insertion_order": False})
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # called outside a worker (tests, the embedded check)
        return con
    limit = worker.memory_manager.memory_limit
    if limit:
        con.execute(f"SET memory_limit = '{int(limit * _DUCKDB_SHARE)}B'")
    spill = os.path.join(worker.local_directory, "duckdb")
    con.execute("SET temp_directory = ?", [spill])
    return con


def _publish(tmp: str, final: str) -> None:
    """Move a finished folder or file into place, replacing an earlier run's."""
    if os.path.isdir(final):
        shutil.rmtree(final)
    elif os.path.exists(final):
        os.unlink(final)
    os.replace(tmp, final)


def relation(files: list[str], columns: dict[str, str]) -> str:
    """SQL for the rows of the Parquet ``files``: ``columns`` (name: type) cast to their
    types, visitor IDs back to HUGEINT; no rows when there is no file."""
    if not files:
        typed = ", ".join(f"NULL::{kind} AS {name}" for name, kind in columns.items())
        return f"(SELECT * FROM (SELECT {typed}) WHERE false)"
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    cast = ", ".join(f"CAST({name} AS {kind}) AS {name}" for name, kind in columns.items())
    return f"(SELECT {cast} FROM read_parquet([{listed}], hive_partitioning = false))"


def parse_part(
    path: str,
    name: str,
    reader: dict[str, Any],
    buckets: int,
    out: str,
    keep_rejects: int,
    threads: int | None = None,
) -> dict[str, Any]:
    """Parse one staged batch part into ``out``: ``(hi, lo, sid, op)`` rows by bucket of ID.

    Args:
        path: the staged copy of the part.
        name: its name in the drop (for rejects and messages).
        reader: :class:`~audtools.formats.outbound_rows.OutboundReader`'s settings
            (``id_rule``, ``lowercase_ids``, ``header_rows``, ``separator``) and ``limits``,
            a dict of :class:`~audtools.formats.outbound_content.Limits`'s fields.
        buckets: the number of buckets.
        out: the folder to write (replaced if a earlier run left it).
        keep_rejects: list at most this many rejects.
        threads: DuckDB's threads (None: its default).

    Returns:
        ``{"problem": text}`` when the part cannot be read (a compressed part still arriving,
        a size limit passed), else ``md5``, ``newline_count``, ``last_line_open``, ``rows``,
        ``rejected`` and ``rejects`` (an Arrow table ``line, reason``).
    """
    settings = dict(reader)
    limits = Limits(**settings.pop("limits"))
    parser = OutboundReader(
        name, md5=True, opener=lambda: open(path, "rb"), limits=limits,  # noqa: SIM115
        keep_rejects=keep_rejects, **settings,
    )
    con = _duckdb(threads)
    tmp = f"{out}.tmp-{uuid.uuid4().hex}"
    os.makedirs(tmp)
    rejects: list[pa.Table] = []
    # Chunk by chunk (32 MiB of text each), appended to the bucket folders: a part of any
    # size is parsed in the memory of one chunk.
    halves = f"SELECT {HI.format('v')} AS hi, {LO.format('v')} AS lo, sid, op FROM " \
        "(SELECT CAST(id AS HUGEINT) AS v, sid, op FROM _pairs)"
    copy = (
        f"COPY (SELECT hi, lo, sid, op, {BUCKET.format('lo', int(buckets))} AS b FROM ({halves})) "
        "TO ? (FORMAT parquet, PARTITION_BY (b), APPEND)"
    )
    try:
        for chunk in parser:
            con.register("_pairs", chunk.pairs)
            con.execute(copy, [tmp])
            con.unregister("_pairs")
            rejects.append(chunk.rejects)
    except InputError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        return {"problem": exc.message}
    con.close()
    _publish(tmp, out)
    return {
        "md5": parser.md5,
        "newline_count": parser.newline_count,
        "last_line_open": parser.last_line_open,
        "rows": parser.rows_total,
        "rejected": parser.rejected_total,
        "rejects": pa.concat_tables(rejects) if rejects else REJECTS_SCHEMA.empty_table(),
    }


def state_bucket(
    bucket: int,
    buckets: int,
    mode: str,
    old: list[str],
    staged: list[str],
    out: str,
    threads: int | None = None,
) -> int:
    """Write bucket ``bucket`` of a data source's new segment state: ``(hi, lo, sid)``, once each.

    A ``full`` batch's state is its ``SEGMENTS`` pairs; an ``iter`` batch's is the old state
    without its ``REMOVED`` pairs, with its ``SEGMENTS`` pairs (SPEC §4.3).

    Args:
        bucket: the bucket written.
        buckets: the number of buckets of the new state.
        mode: ``full`` or ``iter``.
        old: the old state's files that may hold the bucket's IDs (rows of other buckets, from
            a state of another bucket count, are left out here).
        staged: the bucket's files of every part of the batch (``hi, lo, sid, op``).
        out: the dataset folder of the new state.
        threads: DuckDB's threads (None: its default).

    Returns:
        The rows written.
    """
    con = _duckdb(threads)
    pairs = relation(staged, {**VISITOR, "sid": "BIGINT", "op": "TINYINT"})
    adds = f"SELECT hi, lo, sid FROM {pairs} WHERE op = 1"
    if mode == "full":
        query = f"SELECT DISTINCT hi, lo, sid FROM {pairs} WHERE op = 1"
    else:
        before = relation(old, {**VISITOR, "sid": "BIGINT"})
        query = (
            f"(SELECT hi, lo, sid FROM {before} "
            f"WHERE {BUCKET.format('lo', int(buckets))} = {int(bucket)} "
            f"EXCEPT SELECT hi, lo, sid FROM {pairs} WHERE op = 0) UNION ({adds})"
        )
    folder = os.path.join(out, f"b={int(bucket)}")
    os.makedirs(folder, exist_ok=True)
    final = os.path.join(folder, "data.parquet")
    tmp = f"{final}.tmp-{uuid.uuid4().hex}"
    con.execute(f"COPY ({query}) TO ? (FORMAT parquet)", [tmp])
    rows = con.execute("SELECT count(*) FROM read_parquet(?)", [tmp]).fetchall()[0][0]
    con.close()
    _publish(tmp, final)
    return int(rows)


def reconcile_bucket(
    bucket: int,
    buckets: int,
    state: list[str],
    keys: list[str],
    sid: int,
    out: str,
    outcomes: bool,
    threads: int | None = None,
) -> dict[str, int]:
    """Reconcile the members of segment ``sid`` in one bucket with the profiles' visitor IDs.

    Writes ``out/profiles/b=B/data.parquet`` (the distinct profiles the bucket's members
    matched) and, with ``outcomes``, ``out/outcomes/b=B/data.parquet`` (``hi``, ``lo``,
    ``outcome``: ``matched`` or ``no_profile``).

    Returns:
        ``members`` and ``matched`` (members of the bucket reconciled with a profile).
    """
    con = _duckdb(threads)
    members = relation(state, {**VISITOR, "sid": "BIGINT"})
    profiles = relation(keys, {**VISITOR, "profile_id": "VARCHAR"})
    # A segment's members are its state's pairs: each ID once.
    con.execute(
        f"CREATE TABLE m AS SELECT hi, lo FROM {members} "
        f"WHERE sid = {int(sid)} AND {BUCKET.format('lo', int(buckets))} = {int(bucket)}"
    )
    con.execute(
        f"CREATE TABLE l AS SELECT m.hi, m.lo, p.profile_id FROM m JOIN {profiles} p "
        "ON p.hi = m.hi AND p.lo = m.lo"
    )
    con.execute("CREATE TABLE found AS SELECT DISTINCT hi, lo FROM l")
    total = con.execute("SELECT count(*) FROM m").fetchall()[0][0]
    matched = con.execute("SELECT count(*) FROM found").fetchall()[0][0]
    _write(con, "SELECT DISTINCT profile_id FROM l", out, "profiles", bucket)
    if outcomes:
        _write(
            con,
            "SELECT m.hi, m.lo, CASE WHEN f.hi IS NULL THEN 'no_profile' ELSE 'matched' END "
            "AS outcome FROM m LEFT JOIN found f ON f.hi = m.hi AND f.lo = m.lo",
            out, "outcomes", bucket,
        )
    con.close()
    return {"members": int(total), "matched": int(matched)}


def _write(con: duckdb.DuckDBPyConnection, query: str, out: str, what: str, bucket: int) -> None:
    folder = os.path.join(out, what, f"b={int(bucket)}")
    os.makedirs(folder, exist_ok=True)
    final = os.path.join(folder, "data.parquet")
    tmp = f"{final}.tmp-{uuid.uuid4().hex}"
    con.execute(f"COPY ({query}) TO ? (FORMAT parquet)", [tmp])
    _publish(tmp, final)
