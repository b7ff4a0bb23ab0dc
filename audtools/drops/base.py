"""What every drop offers, whatever holds its files (a folder, SFTP, S3)."""

from __future__ import annotations

import abc
import secrets
import time
from dataclasses import dataclass
from typing import BinaryIO

from audtools.errors import DropUnreachable

__all__ = ["Drop", "DropEntry", "DropUnreachable"]


@dataclass(frozen=True)
class DropEntry:
    """A file of a drop as its listing shows it.

    Attributes:
        name: the bare file name.
        size: its size in bytes, as stored (compressed bytes for ``.gz`` and ``.zip``).
        mtime: its modification time, in seconds since the epoch (UTC).
        is_link: True for a symbolic link (never read: links may point out of the drop).
    """

    name: str
    size: int
    mtime: float
    is_link: bool = False


class Drop(abc.ABC):
    """A flat folder of files: the import drop or the export drop.

    Names are bare file names: a drop has no sub-folders that audtools reads or writes. A drop
    may hold a connection: :meth:`close` it (or use the drop as a context manager) when done.
    """

    #: how the drop is shown to people: a path or a URL, never a credential.
    url: str

    @abc.abstractmethod
    def list(self) -> list[DropEntry]:
        """Every file of the drop (sub-folders left out), sorted by name."""

    @abc.abstractmethod
    def stat(self, name: str) -> DropEntry | None:
        """The entry of ``name``, or None when there is no such file."""

    @abc.abstractmethod
    def open(self, name: str) -> BinaryIO:
        """``name`` opened for a streaming binary read (never following a link)."""

    @abc.abstractmethod
    def create(self, name: str) -> BinaryIO:
        """A new file ``name`` opened for writing; fails if the name exists."""

    @abc.abstractmethod
    def publish(self, temp: str, final: str) -> None:
        """Give the whole file ``temp`` its ``final`` name, never replacing a file.

        Raises:
            FileExistsError: when ``final`` exists (``temp`` is left as it is).
        """

    @abc.abstractmethod
    def remove(self, name: str) -> None:
        """Delete ``name``; a missing file is not an error."""

    def exists(self, name: str) -> bool:
        """True when the drop holds a file ``name``."""
        return self.stat(name) is not None

    def read_bytes(self, name: str, limit: int | None = None) -> bytes:
        """The content of ``name``, or its first ``limit + 1`` bytes when ``limit`` is given (so
        that a caller can tell a file over its limit without reading it whole)."""
        with self.open(name) as fh:
            return fh.read() if limit is None else fh.read(limit + 1)

    def sync(self) -> None:  # noqa: B027 - optional: a drop without durability steps does nothing
        """Make the creations, renames and removals done so far durable."""

    def now(self) -> float:
        """The drop's current time, which file ages are measured against (SPEC §4.2): the local
        clock, unless the drop's server tells its own."""
        return time.time()

    def published_from(self, temp: str, final: str) -> bool:
        """Whether ``final`` is the file :meth:`publish` made of ``temp`` while ``temp`` is still
        there (a publication cut short before the temporary name went). False when unsure."""
        return False

    def check_writable(self) -> None:
        """Create, then remove, a file under a name no one takes for an onboarding file.

        Raises:
            OSError or DropUnreachable: when the drop cannot be written.
        """
        name = f".audtools-check-{secrets.token_hex(6)}.tmp"
        try:
            with self.create(name) as fh:
                fh.write(b"audtools check\n")
        finally:
            self.remove(name)

    def close(self) -> None:  # noqa: B027 - optional: a drop without a connection does nothing
        """Close the drop's connection, if it holds one."""

    def __enter__(self) -> Drop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
