"""Which batches of the import drop are complete, waiting or skipped (SPEC §4.1, §4.2, §4.3).

:func:`scan_drop` lists the drop through :mod:`audtools.drops`, reads each name with every data
source's template (compiled once, when the configuration was read), ties ``.info`` files to the
batches of the files they list, and decides each batch's status from the database's record of
applied batches: ``applied``, ``ready``, ``waiting`` (with the reason) or ``skipped`` (``stale``,
``conflict``, ``late``, ``future``, ``superseded``). Drop files that look like batches or ``.info``
files but belong to no batch are listed as ``ignored``, with the reason. Only names, sizes and
modification times are compared here; md5 and line counts are checked while applying
(:mod:`audtools.importing.state`).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from dataclasses import dataclass

import duckdb

from audtools import drops
from audtools.config import WorkspaceConfig
from audtools.drops import Drop, DropEntry
from audtools.errors import AudtoolsError
from audtools.formats.outbound_info import MAX_INFO_BYTES, InfoEntry, parse_info
from audtools.formats.outbound_names import BATCH_ENDINGS, NOT_BATCHES, NameMatcher, OutboundName
from audtools.importing.batches import Batch, DropFile, Ignored, SourceBatches
from audtools.importing.decide import decide
from audtools.workspace import info_files
from audtools.workspace.info_files import InfoContent

# .info contents by (drop, name, size, mtime), and whether they are lasting (see _read_info):
# read once per process and version of the file, also where no database is at hand.
_INFO_CACHE: dict[tuple[str, str, int, float], tuple[InfoContent, bool]] = {}


@dataclass
class DropScan:
    """What :func:`scan_drop` found: batches per data source, and the ignored files. Used as a
    context manager, it closes the drop (its connection, on SFTP and S3) when the block ends."""

    drop: Drop
    sources: dict[str, SourceBatches]
    ignored: list[Ignored]

    def __enter__(self) -> DropScan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.drop.close()  # an SFTP or S3 drop's connection is not left to the garbage collector


def import_drop(config: WorkspaceConfig) -> Drop:
    """The workspace's import drop: a folder, SFTP or S3 (:func:`audtools.drops.import_drop`)."""
    return drops.import_drop(config)


class _Grouping:
    """Drop files grouped into batches per data source, and the ignored ones."""

    def __init__(self, config: WorkspaceConfig) -> None:
        self.matcher = NameMatcher(config.data_sources.values())
        self.by_source: dict[str, dict[str, Batch]] = {s: {} for s in config.data_sources}
        self.ignored: list[Ignored] = []
        # Batches whose files were not listed in part order, by id: only these are sorted.
        self.unsorted: dict[int, Batch] = {}

    def batch(self, source_id: str, name: OutboundName) -> Batch:
        batches = self.by_source[source_id]
        found = batches.get(name.root)
        if found is None:
            found = batches[name.root] = Batch(
                source_id, name.root, name.mode, name.timestamp_ms, name.ts_text
            )
        return found

    def append(self, batch: Batch, name: OutboundName, entry: DropEntry) -> None:
        """Add a file to ``batch``, noting the batch as unsorted when the file comes before the
        last one in part order (``_part_order``; drops mostly list parts in order)."""
        files = batch.files
        if files:
            last = files[-1].name
            part, last_part = name.split or 0, last.split or 0
            if part < last_part or (part == last_part and name.name < last.name):
                self.unsorted[id(batch)] = batch
        files.append(DropFile(name, entry.size, entry.mtime))

    def add_entries(self, entries: list[DropEntry]) -> list[DropEntry]:
        """Group the batch files of ``entries`` in listing order, and return the ``.info`` files
        (read next). One loop, its lookups hoisted: drops list up to hundreds of thousands of
        files, and most are read by :meth:`NameMatcher.sole`."""
        infos: list[DropEntry] = []
        sole = self.matcher.sole
        by_source = self.by_source
        unsorted = self.unsorted
        for entry in entries:
            text = entry.name
            lower = text.lower()
            if not lower.endswith(BATCH_ENDINGS) or lower.startswith(NOT_BATCHES):
                continue  # as looks_like_batch(), on the lower-case name computed once
            if entry.is_link:
                self.ignored.append(Ignored(text, "a link (links are never read)"))
            elif lower.endswith(".info"):
                infos.append(entry)
            elif (read := sole(text)) is not None:  # the common case, without a Claim
                source_id, name = read
                batch = by_source[source_id].get(name.root) or self.batch(source_id, name)
                files = batch.files
                if files:  # as append(), without its call
                    last = files[-1].name
                    part, last_part = name.split or 0, last.split or 0
                    if part < last_part or (part == last_part and text < last.name):
                        unsorted[id(batch)] = batch
                files.append(DropFile(name, entry.size, entry.mtime))
            else:
                self.add_claimed(entry)
        return infos

    def add_claimed(self, entry: DropEntry) -> None:
        """Add a batch file that :meth:`NameMatcher.sole` does not read, by who claims it."""
        claim = self.matcher.claim(entry.name)
        readings = claim.readings
        if not readings:
            if claim.problems:
                reason = "; ".join(sorted(set(claim.problems.values())))
                self.ignored.append(Ignored(entry.name, reason, tuple(claim.problems)))
            else:
                reason, concerned = self.matcher.why_ignored(entry.name)
                self.ignored.append(Ignored(entry.name, reason, tuple(concerned)))
            return
        if len(readings) == 1:  # the common case, without the loop's steps
            ((source_id, name),) = readings.items()
            self.append(self.by_source[source_id].get(name.root) or self.batch(source_id, name), name, entry)
            return
        claimed = f"claimed by {' and '.join(sorted(readings))}"
        for source_id, name in readings.items():
            batch = self.batch(source_id, name)
            self.append(batch, name, entry)
            batch.claimed = batch.claimed or claimed

    def add_info(self, entry: DropEntry, content: list[InfoEntry] | str) -> None:
        if isinstance(content, str):
            root = entry.name[: -len(".info")]
            readings = self.matcher.claim(root + ".sync").readings
            for source_id, name in readings.items():
                self.batch(source_id, name).info_problem = f"{entry.name} cannot be read: {content}"
            if not readings:
                self.ignored.append(Ignored(entry.name, f"cannot be read: {content}"))
            return
        governs = False
        for item in content:
            for source_id, name in self.matcher.claim(item.file_name).readings.items():
                self.batch(source_id, name).infos.append((entry.name, item))
                governs = True
        if not governs:
            self.ignored.append(Ignored(entry.name, "lists no file of any data source"))


def _read_info(drop: Drop, entry: DropEntry) -> tuple[InfoContent, bool]:
    """An ``.info``'s entries, or why it cannot be read, and whether that is what its bytes say
    (lasting, remembered in the database) rather than a failure to read them (tried again by
    the next process). Remembered in this process per (drop, name, size, mtime)."""
    key = (drop.url, entry.name, entry.size, entry.mtime)
    cached = _INFO_CACHE.get(key)
    if cached is not None:
        return cached
    lasting = False
    try:
        data = drop.read_bytes(entry.name, MAX_INFO_BYTES)
        lasting = True
        content: InfoContent = parse_info(data, entry.name)
    except AudtoolsError as exc:
        content = exc.message
    except OSError as exc:
        content = f"it cannot be read ({exc.strerror or exc})"
    if len(_INFO_CACHE) > 10_000:
        _INFO_CACHE.clear()
    _INFO_CACHE[key] = content, lasting
    return content, lasting


def _read_infos(
    drop: Drop, entries: list[DropEntry], con: duckdb.DuckDBPyConnection | None
) -> list[InfoContent]:
    """What each ``.info`` of ``entries`` says, read once per (name, size, modification time):
    remembered in the workspace database when there is a connection (SPEC §4.2), else in this
    process only. The database then remembers exactly the versions listed now."""
    before = info_files.remembered(con, drop.url) if con is not None else {}
    found: dict[info_files.InfoKey, InfoContent] = {}
    out: list[InfoContent] = []
    for entry in entries:
        key = (entry.name, entry.size, round(entry.mtime * 1e9))
        content = before.get(key)
        lasting = content is not None
        if content is None:
            content, lasting = _read_info(drop, entry)
        if lasting:
            found[key] = content
        out.append(content)
    if con is not None:
        info_files.remember(con, drop.url, found, before)
    return out


@contextlib.contextmanager
def _no_collection() -> Iterator[None]:
    """Python's cycle collector paused: reading a drop of 100,000 names builds several hundred
    thousand small objects and no cycles, and the collector's passes over them took a third of
    the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _part_order(f: DropFile) -> tuple[int, str]:
    return f.name.part, f.name.name


def group_drop(
    config: WorkspaceConfig, drop: Drop, con: duckdb.DuckDBPyConnection | None = None
) -> tuple[dict[str, dict[str, Batch]], list[Ignored]]:
    """The drop's batches per data source and root, and the files that belong to none.

    With ``con``, ``.info`` contents are remembered in the workspace database across runs.
    """
    grouping = _Grouping(config)
    entries = drop.list()
    with _no_collection():
        infos = grouping.add_entries(entries)
        for entry, content in zip(infos, _read_infos(drop, infos, con), strict=True):
            grouping.add_info(entry, content)
        for batch in grouping.unsorted.values():
            batch.files.sort(key=_part_order)
    grouping.ignored.sort(key=lambda i: i.name)
    return grouping.by_source, grouping.ignored


def scan_drop(
    config: WorkspaceConfig,
    con: duckdb.DuckDBPyConnection,
    *,
    sources: list[str] | None = None,
    now: float | None = None,
    keep_open: bool = False,
) -> DropScan:
    """The status of every batch of the drop, per data source, and the ignored files.

    Args:
        config: the workspace configuration.
        con: an open database connection.
        sources: only these data source IDs (default: all configured).
        now: the current time in seconds since the epoch (default: the drop's clock once it is
            listed: on S3 the time of the listing answer, elsewhere the local clock).
        keep_open: keep the drop open to read the batches (then use the result as a context
            manager, which closes it); by default its connection is closed before returning.
    """
    drop = import_drop(config)
    try:
        by_source, ignored = group_drop(config, drop, con)
        now = drop.now() if now is None else now
        out: dict[str, SourceBatches] = {}
        for source_id, source in config.data_sources.items():
            if sources is not None and source_id not in sources:
                continue
            batches = sorted(by_source[source_id].values(), key=lambda b: (b.timestamp_ms, b.root))
            out[source_id] = decide(con, config, source, batches, drop, now)
    except BaseException:
        drop.close()
        raise
    if not keep_open:
        drop.close()
    return DropScan(drop, out, ignored)


def scan(
    config: WorkspaceConfig,
    con: duckdb.DuckDBPyConnection,
    *,
    sources: list[str] | None = None,
) -> dict[str, SourceBatches]:
    """``{source_id: SourceBatches}``: :func:`scan_drop` without the ignored files."""
    return scan_drop(config, con, sources=sources).sources


__all__ = [
    "DropScan",
    "group_drop",
    "import_drop",
    "scan",
    "scan_drop",
]
