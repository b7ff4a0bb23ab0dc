"""Stream the rows of an AAM outbound batch file by chunks (SPEC 4.2).

:class:`OutboundReader` reads the content (and gunzips it) in a helper thread, in blocks of at most
4 MiB cut at the last newline, and has each block classified at once by
:func:`audtools.formats.outbound_parse.parse_block`. No Python code runs per row, so gigabyte files
go through at millions of rows per second in bounded memory. :func:`count_newlines` counts a file's
lines as its ``.info`` manifest does.

Example:
    >>> reader = OutboundReader("in/ftp_46390_14016_iter_1486140844000.sync", id_rule="visitor_id")
    >>> for chunk in reader:  # doctest: +SKIP
    ...     chunk.pairs  # line, id, sid, op
"""

from __future__ import annotations

import gzip
import hashlib
import os
import queue
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audtools.columns.chunks import imap_chunks
from audtools.errors import InputError
from audtools.formats.outbound_parse import (
    REASON_NAMES,
    REJECT_REASONS,
    IdRule,
    Parsed,
    parse_block,
)

__all__ = [
    "PAIRS_SCHEMA",
    "REJECTS_SCHEMA",
    "REJECT_REASONS",
    "OutboundReader",
    "RowChunk",
    "count_newlines",
]

PathLike = str | os.PathLike[str]

_BOM = b"\xef\xbb\xbf"
# Blocks parsed at once: small enough to stay in cache and be reused by the allocator.
_PARSE_BYTES = 4 * 2**20

PAIRS_SCHEMA = pa.schema(
    [("line", pa.int64()), ("id", pa.string()), ("sid", pa.int64()), ("op", pa.int8())]
)
"""The schema of :attr:`RowChunk.pairs`."""
REJECTS_SCHEMA = pa.schema([("line", pa.int64()), ("reason", pa.string())])
"""The schema of :attr:`RowChunk.rejects`."""


@dataclass(frozen=True)
class RowChunk:
    """The parsed rows of one chunk of a batch file.

    Attributes:
        pairs: one row per (valid row, segment token): ``line`` (int64, 1-based line number in
            the uncompressed content, blank lines counted), ``id`` (string), ``sid`` (int64) and
            ``op`` (int8: 1 from ``SEGMENTS``, 0 from ``REMOVED``).
        rows: rows in this chunk, valid and rejected (blank lines are not rows).
        rejects: ``line`` (int64) and ``reason`` (string, one of :data:`REJECT_REASONS`).
    """

    pairs: pa.Table
    rows: int
    rejects: pa.Table


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


def _stored_size(stored: Any) -> int:
    """The size of an open file as stored: a folder's from its descriptor, a remote drop's
    (no descriptor) by seeking to its end and back."""
    try:
        return os.fstat(stored.fileno()).st_size
    except (AttributeError, OSError):
        end = int(stored.seek(0, os.SEEK_END))
        stored.seek(0)
        return end


def _content_blocks(
    path: PathLike, size: int, digest: Any = None, opener: Opener | None = None
) -> Iterator[bytes]:
    """Yield the uncompressed content of a batch file in blocks of about ``size`` bytes.

    With ``digest`` (a ``hashlib`` object), every byte of the file as stored is fed to it as it is
    read, so that once the blocks are exhausted it holds the checksum of the whole file. With
    ``opener``, the file is opened by it (a drop's ``open``, which never follows a link).

    Raises:
        InputError: ``corrupt_gzip`` for a ``.gz`` or ``.zip`` that cannot be decompressed,
            ``bad_input`` for a file that cannot be read.
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
            if _stored_size(stored) == 0:
                raise _corrupt(name, "the file is empty")
            if lower.endswith(".zip") and digest is not None:
                # A zip is read from its end: the checksum is taken in one pass first.
                while raw.read(1 << 20):
                    pass
                stored.seek(0)
            yield from _decompressed(stored, raw, name, size)
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


def _line_blocks(
    path: PathLike, size: int, digest: Any = None, opener: Opener | None = None
) -> Iterator[bytes]:
    """Yield the content in blocks of whole lines (the last may lack its newline), BOM dropped."""
    pending: list[bytes] = []
    first = True
    for block in _content_blocks(path, size, digest, opener):
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            pending.append(block)
            continue
        pending.append(block[:cut] if cut < len(block) else block)
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending = [block[cut:]] if cut < len(block) else []
        if first:
            data, first = data.removeprefix(_BOM), False
        yield data
    data = b"".join(pending)
    if first:
        data = data.removeprefix(_BOM)
    if data:
        yield data


def _read_ahead(blocks: Iterator[bytes], depth: int = 2) -> Iterator[bytes]:
    """Run ``blocks`` in a thread, ``depth`` blocks ahead, so reading and gunzip (which release
    the GIL) overlap with parsing. Errors are raised in order; closing the iterator stops it."""
    slots: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for block in blocks:
                if not put(("block", block)):
                    return
            put(("end", None))
        except BaseException as exc:  # handed over to the consumer, raised there
            put(("error", exc))
        finally:
            close = getattr(blocks, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=run, name="audtools-outbound-read", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = slots.get()
            if kind == "block":
                yield item
            elif kind == "error":
                raise item
            else:
                return
    finally:
        stop.set()
        worker.join()


def count_newlines(path: PathLike, *, chunk_bytes: int = 32 * 2**20) -> int:
    """Count the newline characters of a batch file's uncompressed content, as ``wc -l`` does.

    Raises:
        InputError: code ``corrupt_gzip`` for a ``.gz`` that cannot be decompressed.
    """
    return sum(block.count(b"\n") for block in _content_blocks(path, chunk_bytes))


class OutboundReader:
    """Stream the rows of an outbound batch file (``.sync`` or ``.sync.gz``) by chunks.

    Iterating yields one :class:`RowChunk` per ``chunk_bytes`` or so of uncompressed content
    that holds rows; chunks end at a newline, so results do not depend on the chunk size. After
    iteration, ``newline_count``, ``rows_total`` and ``rejected_total`` hold the file's totals.

    Args:
        path: the batch file; a name ending in ``.gz`` is decompressed as a stream.
        id_rule: ``visitor_id`` (38 ASCII digits) or ``declared_id`` (non-empty, no ``:``).
        lowercase_ids: lower-case the IDs (hashed IDs and hex ciphertexts).
        chunk_bytes: uncompressed bytes per chunk (read and parsed in blocks of at most 4 MiB).
        md5: also compute the MD5 of the file as stored while reading it; after a complete
            iteration, ``md5`` holds its lower-case hex digest (None otherwise).

    Raises:
        InputError: while iterating, code ``corrupt_gzip`` for a ``.gz`` that cannot be
            decompressed.

    Example:
        >>> reader = OutboundReader(path, id_rule="visitor_id")  # doctest: +SKIP
        >>> pairs = pa.concat_tables(c.pairs for c in reader)  # doctest: +SKIP
    """

    def __init__(
        self,
        path: PathLike,
        *,
        id_rule: IdRule,
        lowercase_ids: bool = False,
        chunk_bytes: int = 32 * 2**20,
        md5: bool = False,
        opener: Opener | None = None,
    ) -> None:
        if id_rule not in ("visitor_id", "declared_id"):
            raise ValueError(f"id_rule must be 'visitor_id' or 'declared_id', not {id_rule!r}")
        if chunk_bytes < 1:
            raise ValueError("chunk_bytes must be positive")
        self.path = path
        self.name = os.path.basename(os.fspath(path))
        self.id_rule: IdRule = id_rule
        self.lowercase_ids = lowercase_ids
        self.chunk_bytes = chunk_bytes
        self.newline_count = 0
        self.rows_total = 0
        self.rejected_total = 0
        self._simple = True
        self._want_md5 = md5
        self.md5: str | None = None
        self._opener = opener
        self.last_line_open = False

    def __iter__(self) -> Iterator[RowChunk]:
        """Read the file from the start, yielding its chunks in line order."""
        self.newline_count = self.rows_total = self.rejected_total = 0
        self.md5 = None
        digest = hashlib.md5(usedforsecurity=False) if self._want_md5 else None
        lines_before = 0
        pairs: list[pa.Table] = []
        rejects: list[pa.Table] = []
        rows = size = 0
        self.last_line_open = False
        blocks = _line_blocks(self.path, min(self.chunk_bytes, _PARSE_BYTES), digest, self._opener)

        def parse(data: bytes) -> tuple[Parsed, int, bool]:
            if len(data) >= 2**31 - 1:
                raise InputError(
                    f"{self.name} has a line of more than 2 GiB. Check that it is an outbound "
                    "batch file.",
                    code="bad_input",
                    file=self.name,
                )
            parsed = parse_block(data, self.id_rule, self.lowercase_ids, simple=self._simple)
            return parsed, len(data), not data.endswith(b"\n")

        # Blocks are parsed side by side on the machine's cores, and used in line order.
        for parsed, data_size, open_end in imap_chunks(parse, _read_ahead(blocks)):
            self.last_line_open = open_end
            first_line = lines_before + 1
            pairs.append(
                pa.table(
                    [
                        pa.array(parsed.pair_line + first_line, pa.int64()),
                        parsed.ids,
                        parsed.sids,
                        pa.array(parsed.ops, pa.int8()),
                    ],
                    schema=PAIRS_SCHEMA,
                )
            )
            rejected = np.flatnonzero(parsed.reason > 0)
            rejects.append(
                pa.table(
                    [
                        pa.array(rejected + first_line, pa.int64()),
                        pc.take(REASON_NAMES, pa.array(parsed.reason[rejected])),
                    ],
                    schema=REJECTS_SCHEMA,
                )
            )
            block_rows = int(np.count_nonzero(parsed.reason >= 0))
            lines_before += len(parsed.reason)
            self.newline_count += parsed.newlines
            self.rows_total += block_rows
            self.rejected_total += len(rejected)
            rows += block_rows
            size += data_size
            if size >= self.chunk_bytes:
                if rows:
                    yield RowChunk(pa.concat_tables(pairs), rows, pa.concat_tables(rejects))
                pairs, rejects, rows, size = [], [], 0, 0
        if digest is not None:
            self.md5 = digest.hexdigest()
        if rows:
            yield RowChunk(pa.concat_tables(pairs), rows, pa.concat_tables(rejects))

