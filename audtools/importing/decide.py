"""The status of each batch of one data source (SPEC §4.2, §4.3), from the drop and the database.

Applied batches are checked against their record (``late``, ``conflict``; a file's md5 is read
again only when its size is the same and its modification time changed, and the new time is then
recorded, so that an unchanged file is read once, not at every scan). The others are, in
timestamp order: ``future`` (more than a day ahead), ``stale`` (not newer than the newest applied
batch that was not in the future when applied), waiting (with the first reason found), ready, or
``superseded`` by a newer complete ``full`` batch; behind a waiting batch, later ones wait.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import duckdb

from audtools.config import DataSource, WorkspaceConfig
from audtools.drops import Drop
from audtools.formats.outbound_info import stream_md5
from audtools.formats.outbound_names import read_name
from audtools.importing.batches import FUTURE_MS, Batch, DropFile, SourceBatches

_BEHIND = "behind an incomplete batch"


def _applied(con: duckdb.DuckDBPyConnection, source_id: str) -> dict[str, tuple[int, dt.datetime]]:
    rows = con.execute(
        "SELECT root, timestamp_ms, applied_at FROM batches WHERE data_source = ?", [source_id]
    ).fetchall()
    return {root: (ts, applied_at) for root, ts, applied_at in rows}


def applied_in_future(timestamp_ms: int, applied_at: dt.datetime | None) -> bool:
    """Whether a batch's timestamp was more than a day after the time it was applied."""
    if applied_at is None:
        return False
    at_ms = int(applied_at.replace(tzinfo=dt.UTC).timestamp() * 1000)
    return timestamp_ms > at_ms + FUTURE_MS


def _stale_limit(applied: dict[str, tuple[int, dt.datetime]]) -> int | None:
    """The newest applied timestamp that was not in the future when it was applied."""
    good = [ts for ts, at in applied.values() if not applied_in_future(ts, at)]
    return max(good) if good else None


def _check_applied(
    batch: Batch, known: dict[tuple[str, str], tuple[int, str, int]], drop: Drop
) -> list[DropFile]:
    """Set ``applied``, or ``late``/``conflict``, for a batch already applied.

    Returns:
        The files whose modification time changed but whose bytes are the ones applied (md5
        read again): their new time is recorded, so that they are not read again next time.
    """
    batch.status, batch.reason = "applied", None
    touched: list[DropFile] = []
    for f in batch.files:
        seen = known.get((batch.root, f.name.name))
        if seen is None:
            batch.status, batch.reason = "skipped", "late"
            return []
        size, md5, mtime_ns = seen
        if size != f.size:
            batch.status, batch.reason = "skipped", "conflict"
            return []
        # Times go through a float in listings: a microsecond apart is the same time.
        if abs((mtime_ns or 0) - f.mtime_ns) > 2000:
            try:
                with drop.open(f.name.name) as stored:
                    same = stream_md5(stored) == md5
            except OSError:
                same = False
            if not same:
                batch.status, batch.reason = "skipped", "conflict"
                return []
            touched.append(f)
    return touched


def _record_times(con: duckdb.DuckDBPyConnection, source_id: str, batch: Batch, files: list[DropFile]) -> None:
    """Record the new modification time of applied files whose bytes were found unchanged."""
    for f in files:
        con.execute(
            "UPDATE batch_files SET mtime_ns = ? WHERE data_source = ? AND root = ? AND name = ?",
            [f.mtime_ns, source_id, batch.root, f.name.name],
        )


def _ambiguous(source: DataSource, batches: list[Batch], applied_names: list[str]) -> set[str]:
    """Roots that, under ``auto``, look like the parts of one batch with a 10-digit timestamp."""
    template = source.name_template
    if template.timestamp != "auto" or not template.split_after_timestamp:
        return set()
    groups: dict[tuple[str, str], dict[str, str]] = {}
    names = [(b.root, f.name.name) for b in batches for f in b.files]
    for name in applied_names:
        read = read_name(template, name)
        if not isinstance(read, str) and read is not None:
            names.append((read.root, name))
    for root, name in names:
        if len(root) < 13 or not root[-13:].isdigit():
            continue
        key = (root[:-3], name[len(root) :])
        groups.setdefault(key, {})[root[-3:]] = root
    roots: set[str] = set()
    for members in groups.values():
        if len(members) > 1 and "001" in members and "000" not in members:
            roots.update(members.values())
    return roots


def _parts_problem(batch: Batch) -> str | None:
    counts = Counter(f.name.part for f in batch.files)
    for part, count in sorted(counts.items()):
        if count > 1:
            return f"duplicate part {part}"
    if len({f.name.split_form for f in batch.files if f.name.split_form}) > 1:
        return "mixed split forms"
    return None


def _info_problem(batch: Batch) -> str | None:
    present = {f.name.name: f for f in batch.files}
    for _info, entry in batch.infos:
        f = present.get(entry.file_name)
        if f is None:
            return f"{entry.file_name}: missing"
        if f.size != entry.byte_size:
            return f"{entry.file_name}: size {f.size}, expected {entry.byte_size}"
    listed = {entry.file_name for _, entry in batch.infos}
    info_names = sorted({info for info, _ in batch.infos})
    for name in present:
        if name not in listed:
            return f"{name} not listed in {info_names[0]}"
    return None


def _no_info_problem(batch: Batch, source: DataSource, settle: float, now: float) -> str | None:
    if source.outbound_info == "required":
        return "no .info"
    numbered = sorted(f.name.split for f in batch.files if f.name.split is not None)
    for expected, part in enumerate(numbered, 1):
        if part != expected:
            return f"part {expected} missing (no .info)"
    for f in batch.files:
        age = max(0.0, now - f.mtime)
        if age < settle:
            return f"settling: {f.name.name} is {int(age)} s old (settle_seconds = {settle:g})"
    return None


def completeness_problem(batch: Batch, source: DataSource, settle: float, now: float) -> str | None:
    """Why ``batch`` cannot be applied yet (None when it is complete), by names and sizes."""
    if batch.claimed:
        return batch.claimed
    if batch.info_problem:
        return batch.info_problem
    problem = _parts_problem(batch)
    if problem:
        return problem
    if batch.infos:
        return _info_problem(batch)
    return _no_info_problem(batch, source, settle, now)


def _ambiguity_reason(batch: Batch) -> str:
    return (
        f"{batch.root} looks like a part of a batch with a 10-digit timestamp: set "
        'outbound_timestamp = "seconds" (one batch in parts) or "milliseconds" (separate batches)'
    )


def decide(
    con: duckdb.DuckDBPyConnection,
    config: WorkspaceConfig,
    source: DataSource,
    batches: list[Batch],
    drop: Drop,
    now: float,
) -> SourceBatches:
    """Set the status and reason of every batch of ``source`` (in timestamp order)."""
    applied = _applied(con, source.id)
    known = {
        (root, name): (size, md5, mtime)
        for root, name, size, md5, mtime in con.execute(
            "SELECT root, name, size, md5, mtime_ns FROM batch_files WHERE data_source = ?",
            [source.id],
        ).fetchall()
    }
    row = con.execute("SELECT last_file FROM source_state WHERE data_source = ?", [source.id]).fetchone()
    ambiguous = _ambiguous(source, batches, [name for _, name in known])
    failed = {
        (root, fingerprint): reason
        for root, fingerprint, reason in con.execute(
            "SELECT root, fingerprint, reason FROM batch_waits WHERE data_source = ?", [source.id]
        ).fetchall()
    }
    last_ts = _stale_limit(applied)
    now_ms = int(now * 1000)
    problems: dict[str, str | None] = {}
    for batch in batches:
        if batch.root in applied:
            _record_times(con, source.id, batch, _check_applied(batch, known, drop))
        elif batch.timestamp_ms > now_ms + FUTURE_MS:
            batch.status, batch.reason = "skipped", "future"
        elif last_ts is not None and batch.timestamp_ms <= last_ts:
            batch.status, batch.reason = "skipped", "stale"
        else:
            batch.status = "ready"
            problem = (
                _ambiguity_reason(batch) if batch.root in ambiguous
                else completeness_problem(batch, source, config.settle_seconds, now)
            )
            # Checks that failed while applying hold until a file of the batch changes.
            problems[batch.root] = problem or failed.get((batch.root, batch.fingerprint()))
    _order(batches, problems, last_ts)
    return SourceBatches(source.id, batches, row[0] if row else None)


def _order(batches: list[Batch], problems: dict[str, str | None], last_ts: int | None) -> None:
    """Ready, waiting or superseded, in timestamp order, for the batches in ``problems``."""
    pending = [b for b in batches if b.root in problems]
    blocked = False
    index = 0
    while index < len(pending):
        batch = pending[index]
        problem = problems[batch.root]
        if last_ts is not None and batch.timestamp_ms <= last_ts:
            batch.status, batch.reason = "skipped", "stale"
        elif problem is None and not blocked:
            batch.status, batch.reason = "ready", None
            last_ts = batch.timestamp_ms  # a later batch with the same timestamp is not newer
        else:
            # A complete full batch after this one supersedes everything up to it.
            later = [
                i for i in range(index + 1, len(pending))
                if pending[i].mode == "full" and problems[pending[i].root] is None
                and pending[i].timestamp_ms > batch.timestamp_ms
            ]
            if later and problems[pending[later[-1]].root] is None:
                for skipped in pending[index : later[-1]]:
                    skipped.status, skipped.reason = "skipped", "superseded"
                index = later[-1]
                blocked = False
                continue
            batch.status, batch.reason = "waiting", problem or _BEHIND
            blocked = True
        index += 1
