"""AAM onboarding files: the files an export writes to the ``exportSharedAudience`` drop (SPEC §6.5).

A file is named ``ftp_dpm_DPID_TIMESTAMP.sync`` (``TIMESTAMP``: 10-digit UTC seconds), is UTF-8
with LF line ends, and holds one row per ID: ``ID<TAB>d_sid=SID``. Above ``max_file_bytes``
(uncompressed) the rows are split into parts numbered from 1, ``.sync.1``, ``.sync.2``, …; a row
never spans two parts, and an export that fits in one file writes ``.sync`` with no number
**(chosen: SPEC splits only "above" the limit)**. ``gzip=True`` adds ``.gz`` to every name.

Names never replace a file: :func:`free_timestamp` moves the timestamp on by one second until no
file of the drop shares the root ``ftp_dpm_DPID_TIMESTAMP`` (so two exports never share a
timestamp, whatever their compression or split). Parts are written under temporary names that do
not look like onboarding files (:func:`temp_name`), then renamed by the caller.

This module knows the format only: it never touches the export drop itself. The caller lists the
drop's names for :func:`free_timestamp`, hands :func:`write_parts` the files the drop creates, and
:func:`read_ids` the file the drop opens (:mod:`audtools.drops`).

Rows are built and written in blocks: each block of IDs becomes one Arrow string array whose data
buffer *is* the bytes of the rows, written with one call, so no Python code runs per row.

Example:
    >>> file_name(14016, 1764359400)
    'ftp_dpm_14016_1764359400.sync'
    >>> part_names(14016, 1764359400, 2, gzip=True)
    ['ftp_dpm_14016_1764359400.sync.1.gz', 'ftp_dpm_14016_1764359400.sync.2.gz']
"""

from __future__ import annotations

import contextlib
import gzip as gzip_module
import io
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audtools.errors import RefusedError
from audtools.formats.onboarding_names import (
    OnboardingName,
    file_name,
    free_timestamp,
    parse_name,
    part_names,
    temp_name,
)

__all__ = [
    "DEFAULT_MAX_FILE_BYTES", "GLOBAL_DPIDS", "MAX_FILE_BYTES", "MAX_ROW_BYTES", "OnboardingName",
    "PartPlan", "file_name", "free_timestamp", "max_id_bytes", "parse_name", "part_names",
    "plan_parts", "read_ids", "read_rows", "row_suffix", "temp_name", "write_parts",
]

DEFAULT_MAX_FILE_BYTES = 10**9
"""1 GB of uncompressed rows per file (SPEC §6.5)."""
MAX_FILE_BYTES = 5 * 10**9
"""The largest ``--max-file-bytes``: AAM's limit on an onboarding file."""
MAX_ROW_BYTES = 102_400
"""AAM drops longer lines (without the line end): an ID whose row would be longer is not written."""
GLOBAL_DPIDS = frozenset({20914, 20915})
"""AAM's global data sources (Android, iOS): their onboarding files name a target data owner."""

_WRITE_BLOCK = 8 << 20  # bytes gathered before one write() call
_GZIP_LEVEL = 6
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class PartPlan:
    """Which rows (in the order written) go to one part, and how many bytes they take."""

    start: int
    stop: int
    nbytes: int

    @property
    def rows(self) -> int:
        """The number of rows of the part."""
        return self.stop - self.start


def row_suffix(sid: int) -> str:
    """What follows the ID in each row: ``<TAB>d_sid=SID<LF>``."""
    return f"\td_sid={int(sid)}\n"


def max_id_bytes(sid: int) -> int:
    """The longest ID, in UTF-8 bytes, whose row fits AAM's line limit (:data:`MAX_ROW_BYTES`)."""
    return MAX_ROW_BYTES - len(row_suffix(sid).rstrip("\n").encode())


def plan_parts(lengths: np.ndarray, sid: int, max_file_bytes: int) -> list[PartPlan]:
    """Cut rows into parts of at most ``max_file_bytes`` bytes, in order, greedily.

    Args:
        lengths: the UTF-8 byte length of each ID, in the order the rows are written.
        sid: the shared audience's sid (its digits count in each row).
        max_file_bytes: the largest part, in uncompressed bytes.

    Returns:
        The parts, none when there are no rows.

    Raises:
        RefusedError: ``bad_max_file_bytes`` when one row alone is longer than the limit.
    """
    n = len(lengths)
    if n == 0:
        return []
    rows = np.asarray(lengths, dtype=np.int64) + len(row_suffix(sid).encode())
    longest = int(rows.max())
    if longest > max_file_bytes:
        raise RefusedError(
            f"--max-file-bytes {max_file_bytes} is smaller than one row ({longest} bytes); "
            "give a larger limit.",
            code="bad_max_file_bytes",
        )
    ends = np.concatenate(([0], np.cumsum(rows)))  # ends[k]: bytes of the first k rows
    plans = []
    start = 0
    while start < n:
        stop = int(np.searchsorted(ends, ends[start] + max_file_bytes, side="right")) - 1
        stop = min(max(stop, start + 1), n)
        plans.append(PartPlan(start, stop, int(ends[stop] - ends[start])))
        start = stop
    return plans


def _rows_block(ids: pa.Array, suffix: pa.Scalar) -> tuple[memoryview, np.ndarray]:
    """The bytes of ``ID<suffix>`` rows and the offset of each row in them."""
    rows = pc.binary_join_element_wise(ids, suffix, "")
    if isinstance(rows, pa.ChunkedArray):
        rows = rows.combine_chunks()
    if rows.null_count:
        raise ValueError("an ID to write is null")
    offsets = np.frombuffer(
        rows.buffers()[1], dtype=np.int32, count=len(rows) + 1, offset=rows.offset * 4
    )
    data = rows.buffers()[2]
    view = memoryview(data) if data is not None else memoryview(b"")
    return view, offsets


class _PartFile:
    """One part being written into ``raw`` (a new file of the drop): buffered, optionally
    gzip-compressed, made durable on close."""

    def __init__(self, raw: BinaryIO, gzip: bool) -> None:
        self._raw = raw
        self._out: BinaryIO = (
            gzip_module.GzipFile(  # type: ignore[assignment]
                filename="", mode="wb", fileobj=raw, compresslevel=_GZIP_LEVEL, mtime=0
            )
            if gzip
            else raw
        )
        self._pending: list[memoryview] = []
        self._pending_bytes = 0
        self.rows = 0
        self.nbytes = 0
        self.stored = 0  # bytes handed to the drop's file (compressed for gzip)

    def add(self, block: memoryview, rows: int) -> None:
        self._pending.append(block)
        self._pending_bytes += len(block)
        self.rows += rows
        self.nbytes += len(block)
        if self._pending_bytes >= _WRITE_BLOCK:
            self._flush()

    def _flush(self) -> None:
        if len(self._pending) == 1:
            self._out.write(self._pending[0])
        elif self._pending:
            self._out.write(b"".join(self._pending))
        self._pending = []
        self._pending_bytes = 0

    def close(self) -> int:
        """Flush, make durable and close; return the size of the file as stored."""
        self._flush()
        if self._out is not self._raw:
            self._out.close()
        self._raw.flush()
        # A local file is fsynced before it is renamed (its bytes must be on disk before its
        # name); a remote drop's file has no descriptor and is whole once closed.
        with contextlib.suppress(AttributeError, OSError, io.UnsupportedOperation):
            os.fsync(self._raw.fileno())
        size = self._raw.tell()
        self._raw.close()
        return size

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            if self._out is not self._raw:
                self._out.close()
        with contextlib.suppress(Exception):
            self._raw.close()


def write_parts(
    blocks: Iterable[pa.Array],
    sid: int,
    plans: list[PartPlan],
    create: Callable[[int], BinaryIO],
    *,
    gzip: bool = False,
    after_part: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[int]:
    """Write the rows of ``blocks`` (IDs, in the planned order) into the planned parts.

    Each part is a new file from ``create`` (the drop never replaces a file), written, made
    durable and closed before the next one is created.

    Args:
        blocks: arrays of IDs, in the order :func:`plan_parts` saw their lengths.
        sid: the shared audience's sid.
        plans: the parts from :func:`plan_parts`.
        create: called with the part number (from 1): a new file of the drop, open for writing
            (under the part's temporary name).
        gzip: compress each part.
        after_part: called with the part number (from 1) once a part is complete on disk.
        progress: called with the uncompressed bytes written.

    Returns:
        The size of each part as stored (compressed for gzip).

    Raises:
        ValueError: when the IDs differ from the plan (count or bytes): nothing is renamed then.
    """
    suffix = pa.scalar(row_suffix(sid), pa.string())
    sizes: list[int] = []
    index = 0  # the part being written
    current: _PartFile | None = None
    row = 0  # rows handed over so far
    try:
        for ids in blocks:
            if isinstance(ids, pa.ChunkedArray):
                ids = ids.combine_chunks()
            if len(ids) == 0:
                continue
            view, offsets = _rows_block(ids, suffix)
            pos = 0
            while pos < len(ids):
                if index >= len(plans):
                    raise ValueError("more IDs than planned")
                if current is None:
                    current = _PartFile(create(index + 1), gzip)
                take = min(plans[index].stop - row, len(ids) - pos)
                block = view[int(offsets[pos]) : int(offsets[pos + take])]
                current.add(block, take)
                if progress is not None:
                    progress(len(block))
                pos += take
                row += take
                if row == plans[index].stop:
                    if current.nbytes != plans[index].nbytes:
                        raise ValueError(f"part {index + 1} does not have its planned size")
                    sizes.append(current.close())
                    current = None
                    index += 1
                    if after_part is not None:
                        after_part(index)
        if index != len(plans):
            raise ValueError("fewer IDs than planned")
    except BaseException:
        if current is not None:
            current.abort()
        raise
    return sizes


def _decoded(fh: BinaryIO, block_bytes: int) -> Iterator[bytes]:
    """The bytes of an onboarding file, gunzipped when it is gzip (one member, as written)."""
    block = fh.read(block_bytes)
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if block[:2] == _GZIP_MAGIC else None
    while block:
        yield inflate.decompress(block) if inflate is not None else block
        block = fh.read(block_bytes)
    if inflate is not None and (not inflate.eof or inflate.unused_data):
        raise ValueError("a gzip onboarding file is cut short or holds more than one member")


def read_ids(fh: BinaryIO, sid: int, *, block_bytes: int = 64 << 20) -> Iterator[pa.Array]:
    """Stream the IDs of an onboarding file written for ``sid`` (gzip or not), block by block.

    Used to roll an interrupted export forward: the files that reached their final names are
    exactly what was shared, so the ledger is rebuilt from them.

    Args:
        fh: the file, opened by its drop for a binary read.
        sid: the shared audience's sid every row must carry.
        block_bytes: how many bytes are read at a time.

    Raises:
        ValueError: when a row is not ``ID<TAB>d_sid=SID``.
    """
    name = getattr(fh, "name", "the onboarding file")
    suffix = row_suffix(sid).encode()
    tail = suffix[:-1]  # without the LF, which the split removes
    rest = b""
    for block in _decoded(fh, block_bytes):
        data = rest + block
        cut = data.rfind(b"\n") + 1
        data, rest = data[:cut], data[cut:]
        if not data:
            continue
        rows = pc.list_flatten(pc.split_pattern(pa.array([data], pa.large_binary()), b"\n"))
        rows = rows.slice(0, len(rows) - 1)  # after the last LF
        ends = pc.binary_slice(rows, -len(tail))
        if not pc.all(pc.equal(ends, pa.scalar(tail, pa.large_binary()))).as_py():
            raise ValueError(f"{name}: a row is not ID<TAB>d_sid={sid}")
        ids = pc.binary_slice(rows, 0, -len(tail))
        yield ids.cast(pa.large_string()).cast(pa.string())
    if rest:
        raise ValueError(f"{name} does not end with a newline")


def read_rows(data: bytes) -> list[tuple[str, int]]:
    """The ``(ID, SID)`` rows of an onboarding file's bytes (gzip or not), for checks and tests."""
    if data[:2] == _GZIP_MAGIC:
        data = gzip_module.decompress(data)
    out = []
    for line in data.decode("utf-8").split("\n")[:-1]:
        ident, _, seg = line.partition("\t")
        if not seg.startswith("d_sid="):
            raise ValueError(f"not an onboarding row: {line!r}")
        out.append((ident, int(seg[len("d_sid=") :])))
    return out
