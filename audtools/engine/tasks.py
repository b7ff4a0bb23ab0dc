"""What a Dask worker runs: one DuckDB, in memory, over one batch part or one bucket.

Every function here is a task: its arguments are plain values (paths, numbers, a dict of
reader settings), it reads and writes Parquet files under the engine's storage, and returns
small results (counts, the first rejects). None opens the workspace's database. A task may run
twice (a worker lost mid-task is replaced and the task run again), so each writes its files
under a temporary name and renames them into place: a second run gives the same files.

Buckets: a visitor ID ``vid`` (a 128-bit integer) belongs to bucket ``vid % buckets``, the same
arithmetic in every process and every DuckDB version. A bucket's files are
``FOLDER/b=B/*.parquet``; a bucket with no rows may have no folder. Parquet has no 128-bit
integer (DuckDB would write a HUGEINT as a DOUBLE, losing digits): visitor IDs are stored as
``DECIMAL(38, 0)``, exact, and read back as HUGEINT (:data:`STORED_VID`, :func:`relation`).
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

__all__ = ["STORED_VID", "bucket_files", "parse_part", "reconcile_bucket", "relation", "state_bucket"]

STORED_VID = "CAST({} AS DECIMAL(38, 0))"
"""SQL storing a visitor ID (format with the column) in Parquet: exact, unlike a HUGEINT."""

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
    """Parse one staged batch part into ``out``: ``(id, sid, op)`` rows by bucket of ``id``.

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
    con.execute("CREATE TABLE pairs (id HUGEINT, sid BIGINT, op TINYINT)")
    rejects: list[pa.Table] = []
    try:
        for chunk in parser:
            con.register("_pairs", chunk.pairs)
            con.execute("INSERT INTO pairs SELECT id, sid, op FROM _pairs")
            con.unregister("_pairs")
            rejects.append(chunk.rejects)
    except InputError as exc:
        return {"problem": exc.message}
    tmp = f"{out}.tmp-{uuid.uuid4().hex}"
    os.makedirs(tmp)
    con.execute(
        f"COPY (SELECT {STORED_VID.format('id')} AS id, sid, op, "
        f"CAST(id % {int(buckets)} AS INTEGER) AS b FROM pairs) "
        "TO ? (FORMAT parquet, PARTITION_BY (b), OVERWRITE_OR_IGNORE)",
        [tmp],
    )
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
    """Write bucket ``bucket`` of a data source's new segment state: ``(vid, sid)``, each pair once.

    A ``full`` batch's state is its ``SEGMENTS`` pairs; an ``iter`` batch's is the old state
    without its ``REMOVED`` pairs, with its ``SEGMENTS`` pairs (SPEC §4.3).

    Args:
        bucket: the bucket written.
        buckets: the number of buckets of the new state.
        mode: ``full`` or ``iter``.
        old: the old state's files that may hold the bucket's IDs (rows of other buckets, from
            a state of another bucket count, are left out here).
        staged: the bucket's files of every part of the batch (``id, sid, op``).
        out: the dataset folder of the new state.
        threads: DuckDB's threads (None: its default).

    Returns:
        The rows written.
    """
    con = _duckdb(threads)
    pairs = relation(staged, {"id": "HUGEINT", "sid": "BIGINT", "op": "TINYINT"})
    adds = f"SELECT id AS vid, sid FROM {pairs} WHERE op = 1"
    if mode == "full":
        query = f"SELECT DISTINCT vid, sid FROM ({adds})"
    else:
        before = relation(old, {"vid": "HUGEINT", "sid": "BIGINT"})
        query = (
            f"(SELECT vid, sid FROM {before} WHERE vid % {int(buckets)} = {int(bucket)} "
            f"EXCEPT SELECT id, sid FROM {pairs} WHERE op = 0) UNION ({adds})"
        )
    folder = os.path.join(out, f"b={int(bucket)}")
    os.makedirs(folder, exist_ok=True)
    final = os.path.join(folder, "data.parquet")
    tmp = f"{final}.tmp-{uuid.uuid4().hex}"
    con.execute(f"COPY (SELECT {STORED_VID.format('vid')} AS vid, sid FROM ({query})) TO ? (FORMAT parquet)", [tmp])
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
    matched) and, with ``outcomes``, ``out/outcomes/b=B/data.parquet`` (``id``, ``outcome``:
    ``matched`` or ``no_profile``).

    Returns:
        ``members`` and ``matched`` (members of the bucket reconciled with a profile).
    """
    con = _duckdb(threads)
    members = relation(state, {"vid": "HUGEINT", "sid": "BIGINT"})
    profiles = relation(keys, {"vid": "HUGEINT", "profile_id": "VARCHAR"})
    con.execute(
        f"CREATE TABLE m AS SELECT vid AS id FROM {members} "
        f"WHERE sid = {int(sid)} AND vid % {int(buckets)} = {int(bucket)}"
    )
    con.execute(f"CREATE TABLE l AS SELECT m.id, p.profile_id FROM m JOIN {profiles} p ON p.vid = m.id")
    total = con.execute("SELECT count(*) FROM m").fetchall()[0][0]
    matched = con.execute("SELECT count(DISTINCT id) FROM l").fetchall()[0][0]
    _write(con, "SELECT DISTINCT profile_id FROM l", out, "profiles", bucket)
    if outcomes:
        _write(
            con,
            f"SELECT {STORED_VID.format('m.id')} AS id, CASE WHEN d.id IS NULL THEN 'no_profile' ELSE 'matched' END AS outcome "
            "FROM m LEFT JOIN (SELECT DISTINCT id FROM l) d ON d.id = m.id",
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
