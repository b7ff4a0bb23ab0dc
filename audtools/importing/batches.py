"""The batches of the import drop as the scan sees them: files, ``.info`` entries, status."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

from audtools.formats.outbound_info import InfoEntry
from audtools.formats.outbound_names import OutboundName

__all__ = ["FUTURE_MS", "Batch", "BatchStatus", "DropFile", "Ignored", "SourceBatches"]

BatchStatus = Literal["applied", "ready", "waiting", "skipped"]

FUTURE_MS = 86_400_000
"""A batch whose timestamp is more than this after the current time is in the future."""

@dataclass(slots=True)
class DropFile:
    """A batch file found in the import drop."""

    name: OutboundName
    size: int
    mtime: float

    @property
    def mtime_ns(self) -> int:
        """The modification time in nanoseconds, as recorded with applied files."""
        return round(self.mtime * 1e9)


@dataclass(slots=True)
class Batch:
    """All parts of one root name, the ``.info`` entries that name them, and what the scan found."""

    source_id: str
    root: str
    mode: str
    timestamp_ms: int
    ts_text: str = ""
    files: list[DropFile] = field(default_factory=list)
    infos: list[tuple[str, InfoEntry]] = field(default_factory=list)
    info_problem: str | None = None
    claimed: str | None = None
    status: BatchStatus = "ready"
    reason: str | None = None

    @property
    def names(self) -> list[str]:
        """The bare names of the parts, in part order."""
        return [f.name.name for f in self.files]

    def fingerprint(self) -> str:
        """A text that changes when a part or an ``.info`` entry of the batch changes."""
        parts = sorted((f.name.name, f.size, f.mtime_ns) for f in self.files)
        infos = sorted((info, repr(entry)) for info, entry in self.infos)
        return hashlib.sha1(repr((parts, infos)).encode(), usedforsecurity=False).hexdigest()

    def entries_for(self, name: str) -> list[InfoEntry]:
        """The ``.info`` entries that list ``name``."""
        return [entry for _, entry in self.infos if entry.file_name == name]

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


@dataclass(frozen=True)
class Ignored:
    """A drop file that looks like a batch or an ``.info`` but belongs to no batch."""

    name: str
    reason: str
    data_sources: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        """``{"name", "reason", "data_sources"}``."""
        return {"name": self.name, "reason": self.reason, "data_sources": list(self.data_sources)}
