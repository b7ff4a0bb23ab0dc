"""What a Dask worker runs: one DuckDB, in memory, over one batch part or one bucket.

Every function here is a task: its arguments are plain values (paths, numbers, a dict of
reader settings), it reads and writes Parquet files under the engine's storage, and returns
small results (counts, the first rejects). None opens the workspace's database. A task may run
twice (a worker lost mid-task is replaced and the task run again), so each writes its files
under a temporary name and renames them into place: a second run gives the same files.

IDs are stored and bucketed as :mod:`audtools.engine.ids` says (``kind``: ``visitor`` or
``text``). A bucket's files are ``FOLDER/b=B/*.parquet``; a bucket with no rows may have no folder.
"""

from __future__ import annotations

import glob
import os
import shutil
import uuid
from typing import Any

import duckdb
import pyarrow as pa

from audtools.engine.ids import IdKind, Ids
from audtools.errors import InputError
from audtools.formats.outbound_rows import REJECTS_SCHEMA, Limits, OutboundReader

__all__ = [
    "bucket_files",
    "duckdb_for_task",
    "parse_part",
    "publish",
    "reconcile_bucket",
    "relation",
    "state_bucket",
    "write_bucket",
]

# A task's DuckDB takes at most this share of its worker's memory limit, and spills the rest
# to the worker's local folder: Dask's own bookkeeping and Arrow buffers need the remainder.
_DUCKDB_SHARE = 0.5


def bucket_files(folder: str, bucket: int) -> list[str]:
    """The Parquet files of ``bucket`` in the dataset ``folder`` (none for an empty bucket)."""
    return sorted(glob.glob(os.path.join(folder, f"b={bucket}", "*.parquet")))


def duckdb_for_task(threads: int | None) -> duckdb.DuckDBPyConnection:
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


def publish(tmp: str, final: str) -> None:
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
    kind: IdKind,
    threads: int | None = None,
) -> dict[str, Any]:
    """Parse one staged batch part into ``out``: (the ID's columns, ``sid``, ``op``) by bucket.

    Args:
        path: the staged copy of the part.
        name: its name in the drop (for rejects and messages).
        reader: :class:`~audtools.formats.outbound_rows.OutboundReader`'s settings
            (``id_rule``, ``lowercase_ids``, ``header_rows``, ``separator``) and ``limits``,
            a dict of :class:`~audtools.formats.outbound_content.Limits`'s fields.
        buckets: the number of buckets.
        out: the folder to write (replaced if a earlier run left it).
        keep_rejects: list at most this many rejects.
        kind: the kind of ID (:mod:`audtools.engine.ids`).
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
    con = duckdb_for_task(threads)
    ids = Ids(kind)
    types = ", ".join(f"{name} {kind_}" for name, kind_ in ids.columns.items())
    con.execute(f"CREATE TABLE pairs ({types}, sid BIGINT, op TINYINT)")
    insert = f"INSERT INTO pairs SELECT {ids.from_text('id')}, sid, op FROM _pairs"
    rejects: list[pa.Table] = []
    # Chunk by chunk (32 MiB of text each) into one table, written once: a COPY per chunk
    # cost twice as much (hundreds of small files). DuckDB spills the table beyond its memory.
    try:
        for chunk in parser:
            con.register("_pairs", chunk.pairs)
            con.execute(insert)
            con.unregister("_pairs")
            rejects.append(chunk.rejects)
    except InputError as exc:
        return {"problem": exc.message}
    tmp = f"{out}.tmp-{uuid.uuid4().hex}"
    os.makedirs(tmp)
    con.execute(
        f"COPY (SELECT *, {ids.bucket(buckets)} AS b FROM pairs) "
        "TO ? (FORMAT parquet, PARTITION_BY (b), OVERWRITE_OR_IGNORE)",
        [tmp],
    )
    con.close()
    publish(tmp, out)
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
    kind: IdKind,
    threads: int | None = None,
) -> int:
    """Write bucket ``bucket`` of a data source's new segment state: (ID, ``sid``), once each.

    A ``full`` batch's state is its ``SEGMENTS`` pairs; an ``iter`` batch's is the old state
    without its ``REMOVED`` pairs, with its ``SEGMENTS`` pairs (SPEC §4.3).

    Args:
        bucket: the bucket written.
        buckets: the number of buckets of the new state.
        mode: ``full`` or ``iter``.
        old: the old state's files that may hold the bucket's IDs (rows of other buckets, from
            a state of another bucket count, are left out here).
        staged: the bucket's files of every part of the batch (ID, ``sid``, ``op``).
        out: the dataset folder of the new state.
        kind: the kind of ID.
        threads: DuckDB's threads (None: its default).

    Returns:
        The rows written.
    """
    con = duckdb_for_task(threads)
    ids = Ids(kind)
    cols = ids.names()
    pairs = relation(staged, {**ids.columns, "sid": "BIGINT", "op": "TINYINT"})
    if mode == "full":
        query = f"SELECT DISTINCT {cols}, sid FROM {pairs} WHERE op = 1"
    else:
        before = relation(old, {**ids.columns, "sid": "BIGINT"})
        query = (
            f"(SELECT {cols}, sid FROM {before} WHERE {ids.bucket(buckets)} = {int(bucket)} "
            f"EXCEPT SELECT {cols}, sid FROM {pairs} WHERE op = 0) "
            f"UNION (SELECT {cols}, sid FROM {pairs} WHERE op = 1)"
        )
    folder = os.path.join(out, f"b={int(bucket)}")
    os.makedirs(folder, exist_ok=True)
    final = os.path.join(folder, "data.parquet")
    tmp = f"{final}.tmp-{uuid.uuid4().hex}"
    con.execute(f"COPY ({query}) TO ? (FORMAT parquet)", [tmp])
    rows = con.execute("SELECT count(*) FROM read_parquet(?)", [tmp]).fetchall()[0][0]
    con.close()
    publish(tmp, final)
    return int(rows)


def reconcile_bucket(
    bucket: int,
    buckets: int,
    state: list[str],
    keys: list[str],
    sid: int,
    out: str,
    outcomes: bool,
    kind: IdKind,
    threads: int | None = None,
) -> dict[str, int]:
    """Reconcile the members of segment ``sid`` in one bucket with the profiles' keys (their
    visitor IDs, or their declared IDs), members and keys being both of ``kind``.

    Writes ``out/profiles/b=B/data.parquet`` (the distinct profiles the bucket's members
    matched) and, with ``outcomes``, ``out/outcomes/b=B/data.parquet`` (the ID's columns,
    ``outcome``: ``matched`` or ``no_profile``).

    Returns:
        ``members`` and ``matched`` (members of the bucket reconciled with a profile).
    """
    con = duckdb_for_task(threads)
    ids = Ids(kind)
    cols = ids.names()
    members = relation(state, {**ids.columns, "sid": "BIGINT"})
    profiles = relation(keys, {**ids.columns, "profile_id": "VARCHAR"})
    # A segment's members are its state's pairs: each ID once.
    con.execute(
        f"CREATE TABLE m AS SELECT {cols} FROM {members} "
        f"WHERE sid = {int(sid)} AND {ids.bucket(buckets)} = {int(bucket)}"
    )
    con.execute(
        f"CREATE TABLE l AS SELECT {ids.names('m')}, p.profile_id FROM m JOIN {profiles} p "
        f"ON {ids.equal('p', 'm')}"
    )
    con.execute(f"CREATE TABLE found AS SELECT DISTINCT {cols} FROM l")
    total = con.execute("SELECT count(*) FROM m").fetchall()[0][0]
    matched = con.execute("SELECT count(*) FROM found").fetchall()[0][0]
    write_bucket(con, "SELECT DISTINCT profile_id FROM l", out, "profiles", bucket)
    if outcomes:
        write_bucket(
            con,
            f"SELECT {ids.names('m')}, CASE WHEN {ids.is_null('f')} THEN 'no_profile' "
            f"ELSE 'matched' END AS outcome FROM m LEFT JOIN found f ON {ids.equal('f', 'm')}",
            out, "outcomes", bucket,
        )
    con.close()
    return {"members": int(total), "matched": int(matched)}


def write_bucket(con: duckdb.DuckDBPyConnection, query: str, out: str, what: str, bucket: int) -> None:
    folder = os.path.join(out, what, f"b={int(bucket)}")
    os.makedirs(folder, exist_ok=True)
    final = os.path.join(folder, "data.parquet")
    tmp = f"{final}.tmp-{uuid.uuid4().hex}"
    con.execute(f"COPY ({query}) TO ? (FORMAT parquet)", [tmp])
    publish(tmp, final)
