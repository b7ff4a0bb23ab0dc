"""Segment state: which segments each ID of a data source belongs to (SPEC §4.3).

:mod:`audtools.importing.scan` says which batches of the import drop are complete;
:func:`apply_ready` applies the ready ones in timestamp order, inside the caller's transaction, so
an import applies its batches and stores its audience atomically. md5 and line counts of ``.info``
entries are checked here, on the bytes read; a batch that fails them, or whose compressed part
cannot be read, is not applied and waits, with every later one.

A ``full`` batch replaces the state of its data source; an ``iter`` batch removes each ID's
``REMOVED`` segments, then adds its ``SEGMENTS``. A batch is applied once, recorded by name, size
and checksum.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import duckdb
import numpy as np
import pyarrow as pa

from audtools.config import DataSource, WorkspaceConfig
from audtools.drops import Drop
from audtools.errors import InputError
from audtools.formats.outbound_info import line_count_agrees
from audtools.formats.outbound_rows import Limits, OutboundReader
from audtools.importing.batches import Batch, BatchStatus, DropFile, SourceBatches
from audtools.importing.rejects import Rejects
from audtools.importing.scan import scan, scan_drop
from audtools.workspace.database import VISITOR_ID_TEXT, uncompressed_writes, unordered_inserts

__all__ = [
    "ApplyResult",
    "Batch",
    "BatchStatus",
    "DropFile",
    "Staged",
    "StateStore",
    "SourceBatches",
    "apply_ready",
    "batch_report",
    "scan",
    "settle_state_kind",
    "state_table",
]

log = logging.getLogger("audtools")

@dataclass
class ApplyResult:
    """What :func:`apply_ready` did for one data source."""

    batches_applied: list[str] = field(default_factory=list)
    batches_waiting: int = 0
    batches_skipped: list[dict[str, str]] = field(default_factory=list)
    rows_read: int = 0
    rows_rejected: int = 0
    rejects: Rejects = field(default_factory=lambda: Rejects(0))

    @property
    def rejects_kept(self) -> int:
        """Rejected rows listed (at most ``max_rejects_kept``)."""
        return self.rejects.kept

    def rejects_table(self) -> pa.Table:
        """The rejected rows listed, when kept in memory: ``file, line, reason``."""
        return self.rejects.table()


Staged = tuple[int, int, dict[str, str]] | str
"""What staging a batch gives: ``(rows, rejected, md5s)``, or why the batch waits."""


class StateStore(Protocol):
    """Where a data source's segment state is kept and changed: the workspace database
    (:class:`EmbeddedState`, the default) or a Dask cluster's buckets
    (:class:`audtools.importing.cluster.ClusterState`)."""

    def stage(
        self,
        con: duckdb.DuckDBPyConnection,
        drop: Drop,
        batch: Batch,
        source: DataSource,
        progress: Callable[[int], None] | None,
        config: WorkspaceConfig,
        rejects: Rejects,
    ) -> Staged:
        """Read every part of ``batch``; its rows, rejects and checksums, or why it waits."""
        ...

    def apply(self, con: duckdb.DuckDBPyConnection, batch: Batch, source: DataSource) -> None:
        """Apply the staged batch to the state, in the caller's transaction."""
        ...


class EmbeddedState:
    """The segment state in the workspace database (``visitor_state``, ``declared_state``)."""

    def stage(
        self,
        con: duckdb.DuckDBPyConnection,
        drop: Drop,
        batch: Batch,
        source: DataSource,
        progress: Callable[[int], None] | None,
        config: WorkspaceConfig,
        rejects: Rejects,
    ) -> Staged:
        """See :class:`StateStore`: the rows go to the temporary table ``_stage``."""
        return _stage(con, drop, batch, source, progress, config, rejects)

    def apply(self, con: duckdb.DuckDBPyConnection, batch: Batch, source: DataSource) -> None:
        """See :class:`StateStore`."""
        _apply_staged(con, batch, source)


def apply_ready(
    con: duckdb.DuckDBPyConnection,
    config: WorkspaceConfig,
    source: DataSource,
    *,
    run_id: str | None,
    progress: Callable[[int], None] | None = None,
    rejects: Rejects | None = None,
    store: StateStore | None = None,
) -> ApplyResult:
    """Apply the complete, new batches of ``source`` to its segment state, in timestamp order.

    Must run inside the caller's transaction: on an exception the caller rolls back and the
    state is as it was. md5 and line counts of ``.info`` entries are checked on the bytes read; a
    batch that fails them, or whose compressed part cannot be read, is left waiting (with every
    later one) and the reason is logged.

    Args:
        con: the open database connection, inside a transaction.
        config: the workspace configuration.
        source: the data source whose batches are applied.
        run_id: recorded with each applied batch.
        progress: called with the number of bytes read, for progress bars.
        rejects: where the first ``max_rejects_kept`` rejects go (default: kept in memory).
        store: where the state is (default: the workspace database).

    Returns:
        The batches applied, waiting and skipped, the rows read and rejected, and the rejects.
    """
    result = ApplyResult(rejects=rejects or Rejects(config.max_rejects_kept))
    store = store or EmbeddedState()
    with scan_drop(config, con, sources=[source.id], keep_open=True) as found:
        batches = found.sources[source.id]
        result.batches_skipped = [
            {"name": b.root, "reason": b.reason or ""} for b in batches.with_status("skipped")
        ]
        settle_state_kind(con, source)
        ready = batches.with_status("ready")
        waiting = len(batches.with_status("waiting"))
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        for index, batch in enumerate(ready):
            mark = result.rejects.mark()
            staged = store.stage(con, found.drop, batch, source, progress, config, result.rejects)
            con.execute("DELETE FROM batch_waits WHERE data_source = ? AND root = ?", [source.id, batch.root])
            if isinstance(staged, str):
                result.rejects.rewind(mark)  # the batch is not applied: neither are its rejects
                log.info("%s waits: %s", batch.root, staged)
                con.execute(
                    "INSERT INTO batch_waits VALUES (?, ?, ?, ?, ?)",
                    [source.id, batch.root, batch.fingerprint(), staged, run_id],
                )
                waiting += len(ready) - index
                break
            rows, rejected, md5s = staged
            store.apply(con, batch, source)
            _record(con, batch, source, run_id, now, rows, rejected, md5s)
            result.batches_applied.append(batch.root)
            result.rows_read += rows
            result.rows_rejected += rejected
        result.batches_waiting = waiting
    return result


def _record(
    con: duckdb.DuckDBPyConnection,
    batch: Batch,
    source: DataSource,
    run_id: str | None,
    now: dt.datetime,
    rows: int,
    rejected: int,
    md5s: dict[str, str],
) -> None:
    """Record an applied batch; ``applied_at`` with ``timestamp_ms`` tells whether the batch was
    in the future when applied (``check`` reports it, ``stale`` leaves it out)."""
    con.execute(
        "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [source.id, batch.root, batch.mode, batch.timestamp_ms, len(batch.files), rows, rejected, run_id, now],
    )
    for f in batch.files:
        con.execute(
            "INSERT INTO batch_files VALUES (?, ?, ?, ?, ?, ?, ?)",
            [source.id, batch.root, f.name.name, f.size, md5s[f.name.name], f.mtime_ns, run_id],
        )
    con.execute("DELETE FROM source_state WHERE data_source = ?", [source.id])
    con.execute(
        "INSERT INTO source_state VALUES (?, ?, ?, ?)",
        [source.id, batch.files[-1].name.name, batch.root, batch.timestamp_ms],
    )
    con.execute("DROP TABLE IF EXISTS _stage")


def state_table(source: DataSource) -> tuple[str, str]:
    """The table holding the segment state of ``source`` and its ID column.

    Visitor IDs are 128-bit integers in ``visitor_state.vid`` (38 digits fit a HUGEINT);
    declared IDs are text in ``declared_state.id``. The view ``segment_state`` shows both as text.
    """
    if source.reconciliation == "visitor_id":
        return "visitor_state", "vid"
    return "declared_state", "id"


def settle_state_kind(con: duckdb.DuckDBPyConnection, source: DataSource) -> None:
    """Move rows of ``source`` stored as the other kind of ID to its own table.

    The migration to integer visitor IDs could only guess which data sources reconcile visitor
    IDs (those whose every ID is 38 digits); a declared-ID source it guessed wrong, or a data
    source whose reconciliation changed in ``audtools.toml``, is put right here, in bulk.
    """
    table, _ = state_table(source)
    other = "declared_state" if table == "visitor_state" else "visitor_state"
    misplaced = con.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM {other} WHERE data_source = ? LIMIT 1)", [source.id]
    ).fetchall()[0][0]
    if not misplaced:
        return
    if table == "declared_state":
        moved = f"SELECT data_source, {VISITOR_ID_TEXT.format('vid')}, sid FROM visitor_state"
        keep = ""
    else:  # only 38-digit IDs can be visitor IDs: others could never match a profile
        moved = "SELECT data_source, CAST(id AS HUGEINT), sid FROM declared_state"
        keep = " AND coalesce(regexp_full_match(id, '[0-9]{38}'), false)"
    con.execute(f"INSERT INTO {table} {moved} WHERE data_source = ?{keep}", [source.id])
    con.execute(f"DELETE FROM {other} WHERE data_source = ?", [source.id])


def _read_part(
    con: duckdb.DuckDBPyConnection, reader: OutboundReader, name: str, rejects: Rejects
) -> None:
    # A visitor ID becomes a 128-bit integer here, once, as the rows go in: the reader gives
    # its two 19-digit halves (numbers read while parsing), DuckDB multiplies and adds (a
    # fifth of the cost of casting the text). _stage's id is HUGEINT for visitor IDs.
    ids = "CAST(id_high AS HUGEINT) * 10000000000000000000 + id_low" if reader.integer_ids else "id"
    for chunk in reader:
        con.register("_pairs", chunk.pairs)
        con.execute(f"INSERT INTO _stage SELECT {ids}, sid, op FROM _pairs")
        con.unregister("_pairs")
        rejects.add(name, chunk.rejects)


class PartRead(Protocol):
    """What reading a part tells about its bytes (an :class:`OutboundReader` after reading)."""

    md5: str | None
    newline_count: int
    last_line_open: bool


def disagreement(batch: Batch, f: DropFile, reader: PartRead) -> str | None:
    """How the part just read disagrees with the ``.info`` entries that list it, if it does."""
    for entry in batch.entries_for(f.name.name):
        if entry.md5 is not None and reader.md5 != entry.md5:
            return f"{f.name.name}: md5 differs"
        if not line_count_agrees(entry, reader.newline_count, reader.last_line_open):
            lines = reader.newline_count + (1 if reader.last_line_open else 0)
            return f"{f.name.name}: {lines} lines, expected {entry.line_count}"
    return None


def _stage(
    con: duckdb.DuckDBPyConnection,
    drop: Drop,
    batch: Batch,
    source: DataSource,
    progress: Callable[[int], None] | None,
    config: WorkspaceConfig,
    rejects: Rejects,
) -> tuple[int, int, dict[str, str]] | str:
    """Read every part of ``batch`` into the temporary table ``_stage`` (id, sid, op).

    Returns:
        ``(rows, rejected, md5s)`` (``md5s``: each part's checksum, computed while reading it),
        or why the batch waits: a part that cannot be decompressed or passes a size limit, or a
        checksum or line count that disagrees with the ``.info``.
    """
    con.execute("DROP TABLE IF EXISTS _stage")
    id_type = "HUGEINT" if source.reconciliation == "visitor_id" else "VARCHAR"
    con.execute(f"CREATE TEMP TABLE _stage (id {id_type}, sid BIGINT, op TINYINT)")
    rows = rejected = 0
    md5s: dict[str, str] = {}
    limits = Limits(
        max_line_bytes=config.max_line_bytes,
        max_uncompressed_bytes=config.max_uncompressed_bytes,
        max_compression_ratio=config.max_compression_ratio,
    )
    for f in batch.files:
        reader = OutboundReader(
            f.name.name,
            id_rule=source.reconciliation,
            lowercase_ids=source.lowercase_ids,
            md5=True,
            opener=partial(drop.open, f.name.name),
            header_rows=source.outbound_header_rows,
            separator=source.outbound_separator,
            limits=limits,
            keep_rejects=rejects.remaining,
            integer_ids=source.reconciliation == "visitor_id",
        )
        try:
            _read_part(con, reader, f.name.name, rejects)
        except InputError as exc:
            # A compressed part that cannot be read may still be arriving: the batch waits.
            con.execute("DROP TABLE IF EXISTS _stage")
            return exc.message
        problem = disagreement(batch, f, reader)
        if problem:
            con.execute("DROP TABLE IF EXISTS _stage")
            return problem
        md5s[f.name.name] = str(reader.md5)
        rows += reader.rows_total
        rejected += reader.rejected_total
        if progress is not None:
            progress(f.size)
    return rows, rejected, md5s


def _apply_staged(con: duckdb.DuckDBPyConnection, batch: Batch, source: DataSource) -> None:
    """Apply the staged pairs: ``full`` replaces the state; ``iter`` removes then adds."""
    if source.reconciliation != "visitor_id":
        uncompressed_writes(con)  # text IDs; integers compress cheaply (see uncompressed_writes)
    table, col = state_table(source)
    if batch.mode == "full":
        con.execute(f"DELETE FROM {table} WHERE data_source = ?", [source.id])
        pairs = (
            "_stage WHERE op = 1" if _pairs_distinct(con)
            else "(SELECT DISTINCT id, sid FROM _stage WHERE op = 1)"
        )
        with unordered_inserts(con):
            con.execute(f"INSERT INTO {table} SELECT ?, id, sid FROM {pairs}", [source.id])
        return
    con.execute(
        f"""
        DELETE FROM {table} s
        USING (SELECT DISTINCT id, sid FROM _stage WHERE op = 0) r
        WHERE s.data_source = ? AND s.{col} = r.id AND s.sid = r.sid
        """,
        [source.id],
    )
    with unordered_inserts(con):
        con.execute(
            f"""
            INSERT INTO {table}
            SELECT ?, a.id, a.sid FROM (SELECT DISTINCT id, sid FROM _stage WHERE op = 1) a
            ANTI JOIN (SELECT {col} AS id, sid FROM {table} WHERE data_source = ?) s
              ON s.id = a.id AND s.sid = a.sid
            """,
            [source.id, source.id],
        )


def _pairs_distinct(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the staged pairs to add are all different, proved cheaply when they are.

    Equal pairs hash equally: when every 64-bit hash differs, so does every pair, and the rows
    go in without a DISTINCT. The hashes are compared sorted, in numpy (15 M of them in 0.3 s
    of CPU, against 3.5 s for DuckDB's ``count(DISTINCT hash(id, sid))``); a repeated hash
    (a repeated pair, or a rare collision) leaves the DISTINCT to DuckDB.
    """
    hashes = con.execute("SELECT hash(id, sid) AS h FROM _stage WHERE op = 1").fetchnumpy()["h"]
    hashes = np.sort(np.asarray(hashes, dtype=np.uint64))
    return not bool(np.any(hashes[1:] == hashes[:-1]))


def batch_report(config: WorkspaceConfig, con: duckdb.DuckDBPyConnection) -> dict[str, object]:
    """What ``audtools batches --json`` prints: per data source, batches by status."""
    found = scan_drop(config, con)
    out: dict[str, object] = {}
    for source_id, sb in found.sources.items():
        applied = [
            root
            for (root,) in con.execute(
                "SELECT root FROM batches WHERE data_source = ? ORDER BY timestamp_ms, root",
                [source_id],
            ).fetchall()
        ]
        out[source_id] = {
            "applied": applied,
            "ready": [b.root for b in sb.with_status("ready")],
            "waiting": [{"name": b.root, "reason": b.reason} for b in sb.with_status("waiting")],
            "skipped": [{"name": b.root, "reason": b.reason} for b in sb.with_status("skipped")],
            "last_file": sb.last_file,
        }
    return {"data_sources": out, "ignored": [i.to_json() for i in found.ignored]}
