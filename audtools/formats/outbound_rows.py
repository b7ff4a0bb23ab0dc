"""Stream the rows of an AAM outbound batch file by chunks (SPEC 4.2).

:class:`OutboundReader` reads the content (:mod:`audtools.formats.outbound_content`) in a helper thread, in blocks of at most
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

import hashlib
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audtools.columns.chunks import imap_chunks
from audtools.errors import InputError
from audtools.formats.outbound_content import (
    Limits,
    Opener,
    PathLike,
    blank_header,
    content_blocks,
    count_newlines,
    line_blocks,
)
from audtools.formats.outbound_parse import (
    REASON_NAMES,
    REJECT_REASONS,
    SEPARATORS,
    IdRule,
    Parsed,
    parse_block,
)

__all__ = [
    "PAIRS_KEYS_SCHEMA",
    "PAIRS_SCHEMA",
    "REJECTS_SCHEMA",
    "REJECT_REASONS",
    "Limits",
    "OutboundReader",
    "RowChunk",
    "count_newlines",
]

# Blocks parsed at once: small enough to stay in cache and be reused by the allocator.
_PARSE_BYTES = 4 * 2**20
# Lines parsed at once at most (about): real rows are 40 bytes or more, 160,000 in a block.
_BLOCK_LINES = 1 << 18

PAIRS_SCHEMA = pa.schema(
    [("line", pa.int64()), ("id", pa.string()), ("sid", pa.int64()), ("op", pa.int8())]
)
"""The schema of :attr:`RowChunk.pairs`."""
PAIRS_KEYS_SCHEMA = pa.schema(
    [
        ("line", pa.int64()),
        ("id_high", pa.uint64()),
        ("id_low", pa.uint64()),
        ("sid", pa.int64()),
        ("op", pa.int8()),
    ]
)
"""The schema of :attr:`RowChunk.pairs` read with ``integer_ids``: each visitor ID is
``id_high * 10**19 + id_low`` (its first 19 digits and its last 19)."""
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


def _dense_split(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """Cut blocks of very short lines into pieces of at most about :data:`_BLOCK_LINES` lines:
    parsing costs memory per line, so that a block of millions of tiny lines (junk) costs no
    more than a block of real rows."""
    for data in blocks:
        lines = data.count(b"\n")
        if lines <= _BLOCK_LINES:
            yield data
            continue
        step = len(data) // -(-lines // _BLOCK_LINES)
        pos = 0
        while pos < len(data):
            cut = data.find(b"\n", pos + step) + 1 if pos + step < len(data) else 0
            cut = cut or len(data)
            yield data[pos:cut]
            pos = cut


class OutboundReader:
    """Stream the rows of an outbound batch file (``.sync``, ``.sync.gz``, ``.sync.zip``) by chunks.

    Iterating yields one :class:`RowChunk` per ``chunk_bytes`` or so of uncompressed content
    that holds rows; chunks end at a newline, so results do not depend on the chunk size. After
    iteration, ``newline_count``, ``rows_total`` and ``rejected_total`` hold the file's totals.

    Args:
        path: the batch file; a name ending in ``.gz`` or ``.zip`` is decompressed as a stream.
        id_rule: ``visitor_id`` (38 ASCII digits) or ``declared_id`` (non-empty, no ``:``, no
            ``%3A`` in any case).
        lowercase_ids: lower-case the IDs (hashed IDs and hex ciphertexts).
        chunk_bytes: uncompressed bytes per chunk (read and parsed in blocks of at most 4 MiB).
        md5: also compute the MD5 of the file as stored while reading it; after a complete
            iteration, ``md5`` holds its lower-case hex digest (None otherwise).
        opener: opens the file (a drop's ``open``); the path is opened by default.
        header_rows: lines at the top of the file (after a byte order mark) that are a header:
            not rows, not rejected, counted in ``newline_count``.
        separator: the separator of the segment lists (``,``, ``;``, ``|`` or a space).
        limits: the size limits of a line and of a compressed file's content.
        keep_rejects: at most this many rejects are listed in the chunks' ``rejects`` (all are
            counted in ``rejected_total``); None lists them all.
        integer_ids: give each visitor ID as two integers (:data:`PAIRS_KEYS_SCHEMA`) instead
            of text; ``id_rule`` must be ``visitor_id``.

    Raises:
        InputError: while iterating, code ``corrupt_gzip`` for a compressed file that cannot be
            decompressed, ``bad_input`` for one whose content passes ``limits``.

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
        header_rows: int = 0,
        separator: str = ",",
        limits: Limits | None = None,
        keep_rejects: int | None = None,
        integer_ids: bool = False,
    ) -> None:
        if id_rule not in ("visitor_id", "declared_id"):
            raise ValueError(f"id_rule must be 'visitor_id' or 'declared_id', not {id_rule!r}")
        if integer_ids and id_rule != "visitor_id":
            raise ValueError("integer_ids needs id_rule 'visitor_id'")
        if chunk_bytes < 1:
            raise ValueError("chunk_bytes must be positive")
        if separator not in SEPARATORS:
            raise ValueError(f"separator must be one of {SEPARATORS}, not {separator!r}")
        self.path = path
        self.name = os.path.basename(os.fspath(path))
        self.id_rule: IdRule = id_rule
        self.lowercase_ids = lowercase_ids
        self.chunk_bytes = chunk_bytes
        self.header_rows = header_rows
        self.separator = separator
        self.limits = limits or Limits()
        self.keep_rejects = keep_rejects
        self.integer_ids = integer_ids
        self.newline_count = 0
        self.rows_total = 0
        self.rejected_total = 0
        self._simple = True
        self._want_md5 = md5
        self.md5: str | None = None
        self._opener = opener
        self.last_line_open = False

    def _blocks(self, digest: Any) -> Iterator[bytes]:
        """The file's content in blocks of whole lines, long lines capped, header emptied."""
        size = min(self.chunk_bytes, _PARSE_BYTES)
        content = content_blocks(self.path, size, digest, self._opener, self.limits)
        blocks = line_blocks(content, self.limits.max_line_bytes)
        if self.header_rows:
            blocks = blank_header(blocks, self.header_rows)
        return _dense_split(blocks)

    def _parse(self, data: bytes) -> tuple[Parsed, int, bool]:
        if len(data) >= 2**31 - 1:
            raise InputError(
                f"{self.name} has a line of more than 2 GiB. Check that it is an outbound "
                "batch file.",
                code="bad_input",
                file=self.name,
            )
        parsed = parse_block(
            data,
            self.id_rule,
            self.lowercase_ids,
            simple=self._simple,
            separator=self.separator,
            integer_ids=self.integer_ids,
        )
        return parsed, len(data), not data.endswith(b"\n")

    def __iter__(self) -> Iterator[RowChunk]:
        """Read the file from the start, yielding its chunks in line order."""
        self.newline_count = self.rows_total = self.rejected_total = 0
        self.md5 = None
        digest = hashlib.md5(usedforsecurity=False) if self._want_md5 else None
        keep = self.keep_rejects
        lines_before = 0
        pairs: list[pa.Table] = []
        rejects: list[pa.Table] = []
        rows = size = 0
        self.last_line_open = False
        # Blocks are parsed side by side on the machine's cores, and used in line order.
        for parsed, data_size, open_end in imap_chunks(self._parse, _read_ahead(self._blocks(digest))):
            self.last_line_open = open_end
            first_line = lines_before + 1
            pairs.append(_pairs_table(parsed, first_line))
            rejected = np.flatnonzero(parsed.reason > 0)
            listed = rejected if keep is None else rejected[:keep]
            if keep is not None:
                keep -= len(listed)
            rejects.append(_rejects_table(parsed, listed, first_line))
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


def _pairs_table(parsed: Parsed, first_line: int) -> pa.Table:
    lines = pa.array(parsed.pair_line + first_line, pa.int64())
    ops = pa.array(parsed.ops, pa.int8())
    if parsed.id_halves is not None:
        high, low = parsed.id_halves
        return pa.table([lines, high, low, parsed.sids, ops], schema=PAIRS_KEYS_SCHEMA)
    return pa.table([lines, parsed.ids, parsed.sids, ops], schema=PAIRS_SCHEMA)


def _rejects_table(parsed: Parsed, listed: np.ndarray, first_line: int) -> pa.Table:
    return pa.table(
        [
            pa.array(listed + first_line, pa.int64()),
            pc.take(REASON_NAMES, pa.array(parsed.reason[listed])),
        ],
        schema=REJECTS_SCHEMA,
    )
