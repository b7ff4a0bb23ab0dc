"""A drop that is a folder of this machine."""

from __future__ import annotations

import contextlib
import os
import stat as stat_mode
from pathlib import Path
from typing import BinaryIO

from audtools.drops.base import Drop, DropEntry

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class LocalDrop(Drop):
    """A drop in a local folder.

    Args:
        path: the folder (created on the first write when missing).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.url = str(self.path)

    def __repr__(self) -> str:
        return f"LocalDrop({self.url!r})"

    def _entry(self, name: str, st: os.stat_result) -> DropEntry:
        return DropEntry(name, st.st_size, st.st_mtime, stat_mode.S_ISLNK(st.st_mode))

    def list(self) -> list[DropEntry]:
        """Every file of the folder, links included (marked), sub-folders left out."""
        if not self.path.is_dir():
            return []
        entries = []
        with os.scandir(self.path) as it:
            for item in it:
                st = item.stat(follow_symlinks=False)
                if stat_mode.S_ISDIR(st.st_mode):
                    continue
                entries.append(self._entry(item.name, st))
        return sorted(entries, key=lambda e: e.name)

    def stat(self, name: str) -> DropEntry | None:
        """The entry of ``name`` (a link is described, not followed)."""
        try:
            st = os.lstat(self.path / name)
        except FileNotFoundError:
            return None
        if stat_mode.S_ISDIR(st.st_mode):
            return None
        return self._entry(name, st)

    def open(self, name: str) -> BinaryIO:
        """``name`` opened for reading; a link is refused (``OSError``), never followed."""
        fd = os.open(self.path / name, os.O_RDONLY | _NOFOLLOW)
        return os.fdopen(fd, "rb")

    def create(self, name: str) -> BinaryIO:
        """A new file ``name``, opened for writing; ``FileExistsError`` if it exists."""
        self.path.mkdir(parents=True, exist_ok=True)
        return open(self.path / name, "xb")  # noqa: SIM115 - the caller closes it

    def publish(self, temp: str, final: str) -> None:
        """Rename ``temp`` to ``final`` without ever replacing a file.

        A hard link then an unlink: the link fails on an existing name. On a file system without
        hard links: a check, then a rename (the workspace lock keeps other audtools runs out).
        """
        src, dst = self.path / temp, self.path / final
        try:
            os.link(src, dst)
        except FileExistsError:
            raise
        except OSError:
            if dst.exists():
                raise FileExistsError(final) from None
            os.rename(src, dst)
            return
        os.unlink(src)

    def published_from(self, temp: str, final: str) -> bool:
        """Whether ``final`` and ``temp`` are one file: :meth:`publish` linked it and was cut
        short before it unlinked ``temp``."""
        try:
            a, b = os.lstat(self.path / temp), os.lstat(self.path / final)
        except FileNotFoundError:
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    def remove(self, name: str) -> None:
        """Delete ``name`` if present."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path / name)

    def sync(self) -> None:
        """fsync the folder, so renames and creations survive a power loss."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)
