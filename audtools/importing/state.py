"""Segment state: which segments each ID of a data source belongs to (SPEC §4.3).

The import drop holds AAM outbound batches. :func:`scan` reads the drop and the database and says,
for each data source, which batches are applied, which wait (and which check failed), which are
skipped (and why), and which are ready. :func:`apply_ready` applies the ready batches in timestamp
order, inside the caller's transaction, so an import applies its batches and stores its audience
atomically.

A ``full`` batch replaces the state of its data source; an ``iter`` batch removes each ID's
``REMOVED`` segments, then adds its ``SEGMENTS``. A batch is applied once, recorded by name, size
and checksum; behind an incomplete batch, later ones wait too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import duckdb
import pyarrow as pa

from audtools.config import DataSource, WorkspaceConfig
from audtools.errors import AudtoolsError, InputError
from audtools.formats.outbound import (
    OutboundName,
    OutboundReader,
    check_entry,
    count_newlines,
    file_md5,
    parse_name,
    read_info,
)
from audtools.workspace.database import uncompressed_writes

log = logging.getLogger("audtools")

BatchStatus = Literal["applied", "ready", "waiting", "skipped"]
REJECT_SCHEMA = pa.schema([("file", pa.string()), ("line", pa.int64()), ("reason", pa.string())])


@dataclass
class DropFile:
    """A batch file found in the import drop."""

    path: Path
    name: OutboundName
    size: int
    mtime_ns: int


@dataclass
class Batch:
    """All parts of one root name, with their ``.info`` if any, and what the scan found."""

    source_id: str
    root: str
    mode: str
    timestamp_ms: int
    files: list[DropFile] = field(default_factory=list)
    info_path: Path | None = None
    status: BatchStatus = "ready"
    reason: str | None = None

    @property
    def names(self) -> list[str]:
        """The bare names of the parts, in part order."""
        return [f.name.name for f in self.files]

    def to_json(self) -> dict[str, object]:
        """``{"name", "status", "reason", "files"}`` as ``audtools batches --json`` shows it."""
        out: dict[str, object] = {"name": self.root, "status": self.status, "files": self.names}
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass
class SourceBatches:
    """The batches of one data source, in timestamp order, and its last processed file."""

    source_id: str
    batches: list[Batch]
    last_file: str | None = None

    def with_status(self, status: BatchStatus) -> list[Batch]:
        """The batches that have ``status``."""
        return [b for b in self.batches if b.status == status]


@dataclass
class ApplyResult:
    """What :func:`apply_ready` did for one data source."""

    batches_applied: list[str] = field(default_factory=list)
    batches_waiting: int = 0
    batches_skipped: list[dict[str, str]] = field(default_factory=list)
    rows_read: int = 0
    rows_rejected: int = 0
    rejects: list[pa.Table] = field(default_factory=list)

    def rejects_table(self) -> pa.Table:
        """Every rejected row of this run: ``file, line, reason``."""
        if not self.rejects:
            return REJECT_SCHEMA.empty_table()
        return pa.concat_tables(self.rejects)


def _drop_files(config: WorkspaceConfig) -> tuple[dict[str, dict[str, Batch]], dict[str, Path]]:
    """Group the drop's batch files by data source and root; collect ``.info`` files by root."""
    by_source: dict[str, dict[str, Batch]] = {}
    infos: dict[str, Path] = {}
    drop = config.import_drop
    if not drop.is_dir():
        return by_source, infos
    for path in sorted(drop.iterdir()):
        if not path.is_file():
            continue
        if path.name.endswith(".info"):
            infos[path.name[: -len(".info")]] = path
            continue
        name = parse_name(path.name)
        if name is None:
            continue
        source = config.source_by_dpid(name.master_dpid)
        if source is None:
            continue
        stat = path.stat()
        batches = by_source.setdefault(source.id, {})
        batch = batches.get(name.root)
        if batch is None:
            batch = batches[name.root] = Batch(
                source_id=source.id, root=name.root, mode=name.mode, timestamp_ms=name.timestamp_ms
            )
        batch.files.append(DropFile(path, name, stat.st_size, stat.st_mtime_ns))
    for batches in by_source.values():
        for batch in batches.values():
            batch.files.sort(key=lambda f: (f.name.split or 0, f.name.name))
            batch.info_path = infos.get(batch.root)
    return by_source, infos


def _info_batches(config: WorkspaceConfig, infos: dict[str, Path], by_source: dict[str, dict[str, Batch]]) -> None:
    """Batches announced by an ``.info`` whose parts have not arrived yet wait too."""
    for root, path in infos.items():
        name = parse_name(root + ".sync")
        if name is None:
            continue
        source = config.source_by_dpid(name.master_dpid)
        if source is None:
            continue
        batches = by_source.setdefault(source.id, {})
        if root not in batches:
            batches[root] = Batch(
                source_id=source.id,
                root=root,
                mode=name.mode,
                timestamp_ms=name.timestamp_ms,
                info_path=path,
            )


def scan(
    config: WorkspaceConfig,
    con: duckdb.DuckDBPyConnection,
    *,
    sources: Iterable[str] | None = None,
    count_lines: bool = True,
    check_md5: bool = True,
) -> dict[str, SourceBatches]:
    """The status of every batch of the drop, per data source, without applying anything.

    Args:
        config: the workspace configuration.
        con: an open database connection.
        sources: only these data source IDs (default: all configured).
        count_lines: check ``FileLineCount`` of ``.info`` manifests (reads the files); when
            False, the line counts are checked while applying.
        check_md5: check the ``.info`` checksums of batches not applied yet (reads the files);
            when False, they are checked while applying.

    Returns:
        ``{source_id: SourceBatches}`` with each batch's status ``applied``, ``ready``,
        ``waiting`` (reason: the check that failed) or ``skipped`` (reason: ``stale``,
        ``conflict`` or ``late``).
    """
    wanted = set(sources) if sources is not None else set(config.data_sources)
    by_source, infos = _drop_files(config)
    _info_batches(config, infos, by_source)
    out: dict[str, SourceBatches] = {}
    for source_id in config.data_sources:
        if source_id not in wanted:
            continue
        batches = sorted(by_source.get(source_id, {}).values(), key=lambda b: (b.timestamp_ms, b.root))
        applied = {
            root: ts
            for root, ts in con.execute(
                "SELECT root, timestamp_ms FROM batches WHERE data_source = ?", [source_id]
            ).fetchall()
        }
        known = {
            (root, name): (size, md5, mtime)
            for root, name, size, md5, mtime in con.execute(
                "SELECT root, name, size, md5, mtime_ns FROM batch_files WHERE data_source = ?",
                [source_id],
            ).fetchall()
        }
        row = con.execute(
            "SELECT last_file, last_timestamp_ms FROM source_state WHERE data_source = ?", [source_id]
        ).fetchone()
        last_file, last_ts = (row[0], row[1]) if row else (None, None)
        blocked = False
        for batch in batches:
            if batch.root in applied:
                batch.status, batch.reason = "applied", None
                for f in batch.files:
                    seen = known.get((batch.root, f.name.name))
                    if seen is None:
                        batch.status, batch.reason = "skipped", "late"
                        break
                    size, md5, mtime = seen
                    if size != f.size or (mtime != f.mtime_ns and file_md5(f.path) != md5):
                        batch.status, batch.reason = "skipped", "conflict"
                        break
                continue
            if last_ts is not None and batch.timestamp_ms <= last_ts:
                batch.status, batch.reason = "skipped", "stale"
                continue
            if blocked:
                batch.status, batch.reason = "waiting", "behind an incomplete batch"
                continue
            problem = _completeness_problem(batch, count_lines=count_lines, check_md5=check_md5)
            if problem:
                batch.status, batch.reason = "waiting", problem
                blocked = True
            else:
                batch.status, batch.reason = "ready", None
                # A later batch with the same timestamp is not newer than this one.
                last_ts = batch.timestamp_ms
        out[source_id] = SourceBatches(source_id, batches, last_file)
    return out


def _completeness_problem(batch: Batch, *, count_lines: bool, check_md5: bool = True) -> str | None:
    """Why the batch is not complete yet (``None`` when it is), from its ``.info``."""
    if batch.info_path is None:
        return None if batch.files else "no files"
    try:
        entries = read_info(batch.info_path)
    except AudtoolsError as exc:
        return f"{batch.info_path.name} cannot be read: {exc.message}"
    present = {f.name.name: f for f in batch.files}
    for entry in entries:
        f = present.get(entry.file_name)
        if f is None:
            return f"{entry.file_name}: missing"
        problem = check_entry(f.path, entry if check_md5 else dataclasses.replace(entry, md5=None), None)
        if problem:
            return f"{entry.file_name}: {problem}"
        if count_lines:
            try:
                lines = count_newlines(f.path)
            except InputError:
                return None  # applying will fail the import with the decompression error
            if lines != entry.line_count:
                return f"{entry.file_name}: {lines} lines, expected {entry.line_count}"
    if not entries:
        return f"{batch.info_path.name} lists no files"
    return None


def apply_ready(
    con: duckdb.DuckDBPyConnection,
    config: WorkspaceConfig,
    source: DataSource,
    *,
    run_id: str | None,
    progress: Callable[[int], None] | None = None,
) -> ApplyResult:
    """Apply the complete, new batches of ``source`` to its segment state, in timestamp order.

    Must run inside the caller's transaction: on an exception the caller rolls back and the
    state is as it was. Line counts and checksums of ``.info`` manifests are checked while reading
    (the checksum of each file is computed once, as it is read); a batch whose counts or checksums
    disagree is left waiting, with every later one.

    Args:
        con: the open database connection, inside a transaction.
        config: the workspace configuration.
        source: the data source whose batches are applied.
        run_id: recorded with each applied batch.
        progress: called with the number of bytes read, for progress bars.

    Returns:
        The batches applied, waiting and skipped, the rows read and rejected, and the rejects.

    Raises:
        InputError: ``corrupt_gzip`` when a part cannot be decompressed (nothing is applied once
            the caller rolls back).
    """
    result = ApplyResult()
    found = scan(config, con, sources=[source.id], count_lines=False, check_md5=False)[source.id]
    result.batches_skipped = [
        {"name": b.root, "reason": b.reason or ""} for b in found.with_status("skipped")
    ]
    ready = found.with_status("ready")
    waiting = len(found.with_status("waiting"))
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for index, batch in enumerate(ready):
        staged = _stage(con, batch, source, progress)
        if staged is None:
            waiting += len(ready) - index
            break
        if staged == "md5":
            # As a scan checking the checksums first would have found it (batches applied
            # above are applied now, inside this transaction).
            found = scan(config, con, sources=[source.id], count_lines=False)[source.id]
            result.batches_skipped = [
                {"name": b.root, "reason": b.reason or ""} for b in found.with_status("skipped")
            ]
            waiting = len(found.with_status("waiting")) + len(found.with_status("ready"))
            break
        rows, rejected, rejects, md5s = staged
        _apply_staged(con, batch, source)
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
        result.batches_applied.append(batch.root)
        result.rows_read += rows
        result.rows_rejected += rejected
        result.rejects.extend(rejects)
    result.batches_waiting = waiting
    return result


def _stage(
    con: duckdb.DuckDBPyConnection,
    batch: Batch,
    source: DataSource,
    progress: Callable[[int], None] | None,
) -> tuple[int, int, list[pa.Table], dict[str, str]] | Literal["md5"] | None:
    """Read every part of ``batch`` into the temporary table ``_stage`` (id, sid, op).

    Returns:
        ``(rows, rejected, rejects, md5s)`` (``md5s``: each part's checksum, computed while
        reading it), ``None`` when a line count disagrees with the ``.info``, or ``"md5"`` when
        a checksum does.
    """
    con.execute("DROP TABLE IF EXISTS _stage")
    con.execute("CREATE TEMP TABLE _stage (id VARCHAR, sid BIGINT, op TINYINT)")
    expected: dict[str, int] = {}
    expected_md5: dict[str, str] = {}
    if batch.info_path is not None:
        entries = read_info(batch.info_path)
        expected = {e.file_name: e.line_count for e in entries}
        expected_md5 = {e.file_name: e.md5 for e in entries if e.md5 is not None}
    rows = rejected = 0
    rejects: list[pa.Table] = []
    md5s: dict[str, str] = {}
    for index, f in enumerate(batch.files):
        reader = OutboundReader(
            f.path, id_rule=source.reconciliation, lowercase_ids=source.lowercase_ids, md5=True
        )
        try:
            for chunk in reader:
                con.register("_pairs", chunk.pairs)
                con.execute("INSERT INTO _stage SELECT id, sid, op FROM _pairs")
                con.unregister("_pairs")
                if chunk.rejects.num_rows:
                    names = pa.array([f.name.name] * chunk.rejects.num_rows, pa.string())
                    rejects.append(
                        pa.table(
                            [names, chunk.rejects["line"], chunk.rejects["reason"]],
                            schema=REJECT_SCHEMA,
                        )
                    )
        except InputError:
            # A batch with a part whose checksum disagrees is still arriving: it waits, as a
            # scan checking the checksums first would have said.
            if _md5_disagrees(batch.files[index:], expected_md5):
                con.execute("DROP TABLE IF EXISTS _stage")
                return "md5"
            raise
        md5s[f.name.name] = reader.md5 if reader.md5 is not None else file_md5(f.path)
        want = expected_md5.get(f.name.name)
        if want is not None and md5s[f.name.name] != want:
            log.info("%s: md5 differs from the .info; the batch waits", f.name.name)
            con.execute("DROP TABLE IF EXISTS _stage")
            return "md5"
        rows += reader.rows_total
        rejected += reader.rejected_total
        if progress is not None:
            progress(f.size)
        if f.name.name in expected and reader.newline_count != expected[f.name.name]:
            log.info(
                "%s: %d lines, the .info says %d; the batch waits",
                f.name.name,
                reader.newline_count,
                expected[f.name.name],
            )
            con.execute("DROP TABLE IF EXISTS _stage")
            return "md5" if _md5_disagrees(batch.files[index + 1 :], expected_md5) else None
    return rows, rejected, rejects, md5s


def _md5_disagrees(files: list[DropFile], expected_md5: dict[str, str]) -> bool:
    """Whether one of ``files`` has a checksum other than its ``.info`` entry's."""
    return any(
        f.name.name in expected_md5 and file_md5(f.path) != expected_md5[f.name.name] for f in files
    )


def _apply_staged(con: duckdb.DuckDBPyConnection, batch: Batch, source: DataSource) -> None:
    """Apply the staged pairs: ``full`` replaces the state; ``iter`` removes then adds."""
    uncompressed_writes(con)
    if batch.mode == "full":
        con.execute("DELETE FROM segment_state WHERE data_source = ?", [source.id])
        # Equal pairs hash equally: when every 64-bit hash differs, so does every pair, and
        # the rows go in as they are (counting the hashes costs half the DISTINCT).
        total, hashes = con.execute(
            "SELECT count(*), count(DISTINCT hash(id, sid)) FROM _stage WHERE op = 1"
        ).fetchall()[0]
        pairs = (
            "_stage WHERE op = 1" if total == hashes
            else "(SELECT DISTINCT id, sid FROM _stage WHERE op = 1)"
        )
        con.execute(f"INSERT INTO segment_state SELECT ?, id, sid FROM {pairs}", [source.id])
        return
    con.execute(
        """
        DELETE FROM segment_state s
        USING (SELECT DISTINCT id, sid FROM _stage WHERE op = 0) r
        WHERE s.data_source = ? AND s.id = r.id AND s.sid = r.sid
        """,
        [source.id],
    )
    con.execute(
        """
        INSERT INTO segment_state
        SELECT ?, a.id, a.sid FROM (SELECT DISTINCT id, sid FROM _stage WHERE op = 1) a
        ANTI JOIN (SELECT id, sid FROM segment_state WHERE data_source = ?) s
          ON s.id = a.id AND s.sid = a.sid
        """,
        [source.id, source.id],
    )


def batch_report(config: WorkspaceConfig, con: duckdb.DuckDBPyConnection) -> dict[str, object]:
    """What ``audtools batches --json`` prints: per data source, batches by status."""
    found = scan(config, con)
    out: dict[str, object] = {}
    for source_id, sb in found.items():
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
    return {"data_sources": out}
