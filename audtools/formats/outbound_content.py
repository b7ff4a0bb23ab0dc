"""The content of an AAM outbound batch file, in blocks of whole lines (SPEC §4.1, §2.1).

:func:`content_blocks` reads a file as stored, or decompresses a ``.gz`` or ``.zip`` as a
stream, within its size limits (:class:`Limits`); :func:`line_blocks` cuts the content into
blocks of whole lines, a line over ``max_line_bytes`` replaced as its bytes arrive, so that no
file costs more memory than a few blocks; :func:`blank_header` empties a Format's header lines.
"""

from __future__ import annotations

import gzip
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from audtools.errors import InputError

__all__ = [
    "LONG_LINE",
    "Limits",
    "Opener",
    "PathLike",
    "blank_header",
    "content_blocks",
    "count_newlines",
    "line_blocks",
]

PathLike = str | os.PathLike[str]

_BOM = b"\xef\xbb\xbf"


def _corrupt(name: str, why: object) -> InputError:
    return InputError(
        f"{name} cannot be decompressed: {why}. Ask the sender to resend the file; "
        "nothing was imported.",
        code="corrupt_gzip",
        file=name,
    )


class _HashingFile:
    """A binary file read through ``read`` only, feeding every byte read to ``digest``."""

    def __init__(self, raw: Any, digest: Any) -> None:
        self._raw = raw
        self._digest = digest

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._digest.update(data)
        return data


Opener = Callable[[], BinaryIO]


def _zip_member(stored: Any, name: str) -> zipfile.ZipInfo:
    """The one file of a ``.sync.zip`` (``__MACOSX/`` entries ignored), stored or deflated."""
    try:
        archive = zipfile.ZipFile(stored)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise _corrupt(name, exc) from exc
    members = [
        i for i in archive.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")
    ]
    if len(members) != 1:
        raise _corrupt(name, f"it holds {len(members)} files, not one")
    member = members[0]
    if member.flag_bits & 0x1:
        raise _corrupt(name, "it is encrypted")
    if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _corrupt(name, "it is neither stored nor deflated")
    return member


def _decompressed(stored: Any, raw: Any, name: str, size: int) -> Iterator[bytes]:
    """The blocks of a ``.gz`` or ``.zip`` file's content."""
    lower = name.lower()
    if lower.endswith(".zip"):
        member = _zip_member(stored, name)
        try:
            with zipfile.ZipFile(stored) as archive, archive.open(member) as f:
                while block := f.read(size):
                    yield block
        except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
            raise _corrupt(name, exc) from exc
        return
    try:
        with gzip.GzipFile(fileobj=raw, mode="rb") as f:
            while block := f.read(size):
                yield block
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise _corrupt(name, exc) from exc


@dataclass(frozen=True)
class Limits:
    """What one file may cost (SPEC §2.1): beyond a size limit, its batch waits.

    Attributes:
        max_line_bytes: a longer line is a ``bad_syntax`` row, skipped in bounded memory.
        max_uncompressed_bytes: the largest content of a compressed file.
        max_compression_ratio: the largest content of a compressed file, per stored byte.
    """

    max_line_bytes: int = 8_388_608
    max_uncompressed_bytes: int = 53_687_091_200
    max_compression_ratio: float = 200.0


def _too_large(name: str, limit: int, setting: str) -> InputError:
    return InputError(
        f"{name} decompresses to more than {limit} bytes ({setting}). Check the file with its "
        f"sender; if it is genuine, raise {setting} in audtools.toml.",
        code="bad_input",
        file=name,
    )


def _bounded(blocks: Iterator[bytes], name: str, stored: int, limits: Limits) -> Iterator[bytes]:
    """The blocks of a compressed file's content, stopped as soon as they pass a limit."""
    by_ratio = int(limits.max_compression_ratio * stored)
    limit, setting = min(
        (limits.max_uncompressed_bytes, "max_uncompressed_bytes"),
        (by_ratio, "max_compression_ratio"),
    )
    total = 0
    for block in blocks:
        total += len(block)
        if total > limit:
            raise _too_large(name, limit, setting)
        yield block


def content_blocks(
    path: PathLike,
    size: int,
    digest: Any = None,
    opener: Opener | None = None,
    limits: Limits | None = None,
) -> Iterator[bytes]:
    """Yield the uncompressed content of a batch file in blocks of about ``size`` bytes.

    With ``digest`` (a ``hashlib`` object), every byte of the file as stored is fed to it as it is
    read, so that once the blocks are exhausted it holds the checksum of the whole file. With
    ``opener``, the file is opened by it (a drop's ``open``, which never follows a link). With
    ``limits``, a compressed file's content may not pass its size limits.

    Raises:
        InputError: ``corrupt_gzip`` for a ``.gz`` or ``.zip`` that cannot be decompressed,
            ``bad_input`` for one whose content passes ``limits``, ``bad_input`` for a file that
            cannot be read.
    """
    name = os.path.basename(os.fspath(path))
    lower = name.lower()
    try:
        with opener() if opener is not None else open(path, "rb") as stored:
            raw: Any = stored if digest is None else _HashingFile(stored, digest)
            if not lower.endswith((".gz", ".zip")):
                while block := raw.read(size):
                    yield block
                return
            stored_size = _stored_size(stored)
            if stored_size == 0:
                raise _corrupt(name, "the file is empty")
            if lower.endswith(".zip") and digest is not None:
                # A zip is read from its end: the checksum is taken in one pass first.
                while raw.read(1 << 20):
                    pass
                stored.seek(0)
            content = _decompressed(stored, raw, name, size)
            if limits is not None:
                content = _bounded(content, name, stored_size, limits)
            yield from content
            if digest is not None and not lower.endswith(".zip"):
                while raw.read(1 << 20):  # whatever gzip left unread still counts
                    pass
    except InputError:
        raise
    except OSError as exc:
        raise InputError(
            f"{name} cannot be read: {exc.strerror or exc}. Check the file and its permissions.",
            file=name,
        ) from exc


LONG_LINE = b"\x00"
"""What stands for a line over ``max_line_bytes``: a control character, so a ``bad_syntax`` row."""


def _cap_lines(data: bytes, max_line: int) -> bytes:
    """Replace each line of ``data`` longer than ``max_line`` bytes by :data:`LONG_LINE`."""
    if len(data) <= max_line:
        return data
    newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    starts = np.concatenate(([0], newlines + 1))
    ends = np.append(newlines, len(data))
    long = np.flatnonzero(ends - starts > max_line)
    if not len(long):
        return data
    parts: list[bytes] = []
    pos = 0
    for i in long.tolist():
        parts += [data[pos : int(starts[i])], LONG_LINE]
        pos = int(ends[i])
    parts.append(data[pos:])
    return b"".join(parts)


def _without_bom(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """The blocks, without a byte order mark at the very start of the content."""
    start = b""
    for block in blocks:
        if len(start) >= len(_BOM):
            yield block
            continue
        start += block
        if len(start) >= len(_BOM):
            if rest := start.removeprefix(_BOM):
                yield rest
    if len(start) < len(_BOM) and (rest := start.removeprefix(_BOM)):
        yield rest


def line_blocks(blocks: Iterator[bytes], max_line: int) -> Iterator[bytes]:
    """Yield the content in blocks of whole lines (the last may lack its newline), BOM dropped.

    A line longer than ``max_line`` bytes is replaced by :data:`LONG_LINE` as its bytes
    arrive: at most ``max_line`` bytes of it are ever held.
    """
    pending: list[bytes] = []
    pending_size = 0
    skipping = False  # inside a line too long: its bytes are dropped up to its newline
    for block in _without_bom(blocks):
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            if not skipping:
                pending.append(block)
                pending_size += len(block)
                if pending_size > max_line:
                    pending, pending_size, skipping = [], 0, True
            continue
        head = block[:cut] if cut < len(block) else block
        if skipping:
            head, skipping = LONG_LINE + head[head.find(b"\n") :], False
        elif pending:
            head = b"".join([*pending, head])
        tail = block[cut:]
        pending, pending_size = ([tail], len(tail)) if tail else ([], 0)
        if pending_size > max_line:
            pending, pending_size, skipping = [], 0, True
        yield _cap_lines(head, max_line)
    if skipping:
        yield LONG_LINE
    elif pending:
        yield _cap_lines(b"".join(pending), max_line)


def blank_header(blocks: Iterator[bytes], rows: int) -> Iterator[bytes]:
    """Empty the first ``rows`` lines (a header): they stay lines, not rows (SPEC §4.1)."""
    for data in blocks:
        if rows:
            out: list[bytes] = []
            pos = 0
            while rows and pos < len(data):
                newline = data.find(b"\n", pos)
                out.append(b" " if newline < 0 else b"\n")  # blank: an open line stays open
                pos = len(data) if newline < 0 else newline + 1
                rows -= 1
            data = b"".join(out) + data[pos:]
        yield data


def count_newlines(path: PathLike, *, chunk_bytes: int = 32 * 2**20) -> int:
    """Count the newline characters of a batch file's uncompressed content, as ``wc -l`` does.

    Raises:
        InputError: code ``corrupt_gzip`` for a ``.gz`` that cannot be decompressed.
    """
    return sum(block.count(b"\n") for block in content_blocks(path, chunk_bytes))


def _stored_size(stored: Any) -> int:
    """The size of an open file as stored: a folder's from its descriptor, a remote drop's
    (no descriptor) by seeking to its end and back."""
    try:
        return os.fstat(stored.fileno()).st_size
    except (AttributeError, OSError):
        end = int(stored.seek(0, os.SEEK_END))
        stored.seek(0)
        return end
