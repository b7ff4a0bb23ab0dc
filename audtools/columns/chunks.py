"""Arrow string columns seen as numpy buffers: the helpers the vectorised ID rules share.

:mod:`audtools.columns.identifiers`, :mod:`audtools.columns.phones` and :mod:`audtools.columns.aes` work on whole columns.
They read a string array's offsets and bytes with numpy, build new arrays from such buffers, turn
Arrow booleans into numpy masks and scatter partial results back into place; this module does
each of those once for all three.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "CHUNK_ROWS",
    "NULL_STRING",
    "as_mask",
    "as_strings",
    "assemble",
    "buffers",
    "byte_lengths",
    "derive_pairs",
    "from_buffers",
    "imap_chunks",
    "map_chunks",
]

_In = TypeVar("_In")
_Out = TypeVar("_Out")

CHUNK_ROWS = 256 * 1024
"""Rows (or values) handled at once: Arrow slices and batches between DuckDB and Python, and the
chunks the ID rules work on in threads (fresh memory fills slowly, so big columns are split)."""

MAX_THREADS = 4
"""At most this many threads (and no more than the machine's cores) work on chunks at once."""

NULL_STRING = pa.scalar(None, pa.string())
"""A null of type ``string``, for ``if_else`` and the like."""


def as_strings(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous ``string`` array (chunked, large, dictionary or null input accepted).

    Args:
        arr: an Arrow array or chunked array.

    Returns:
        The values as a single ``string`` array.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], arr.type)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if not pa.types.is_string(arr.type):
        arr = arr.cast(pa.string())
    return arr


def as_mask(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow result as a numpy bool array, null read as False.

    Args:
        arr: a boolean array or chunked array.

    Returns:
        A numpy ``bool`` array of the same length.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.fill_null(False).to_numpy(zero_copy_only=False)


def byte_lengths(arr: pa.Array) -> np.ndarray:
    """Byte lengths as int64, 0 for nulls.

    Args:
        arr: a string or binary array.

    Returns:
        A numpy ``int64`` array of the same length.
    """
    return pc.binary_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)


def assemble(n: int, parts: list[tuple[np.ndarray, pa.Array]]) -> pa.StringArray:
    """Scatter ``(positions, values)`` parts into one array of length ``n``; the rest is null.

    Args:
        n: the length of the result.
        parts: positions (disjoint) and the values to put there, one value per position.

    Returns:
        A ``string`` array.
    """
    pos = np.full(n, -1, dtype=np.int64)
    arrays = []
    start = 0
    for where, values in parts:
        if len(where) == 0:
            continue
        pos[where] = np.arange(start, start + len(where))
        start += len(where)
        arrays.append(values.cast(pa.string()))
    if not arrays:
        return pa.nulls(n, pa.string())
    combined = pa.concat_arrays(arrays)
    missing = pos < 0
    return combined.take(pa.array(np.where(missing, 0, pos), mask=missing))


def buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The offsets (int64, rebased to 0) and the data bytes of a string or binary array.

    Args:
        arr: a string, large string, binary or large binary array (nulls are not looked at).

    Returns:
        ``offsets`` (one more than the values, starting at 0) and ``data`` (``uint8``), so that
        value ``i`` is ``data[offsets[i]:offsets[i + 1]]``.
    """
    n = len(arr)
    if n == 0:
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.uint8)
    bufs = arr.buffers()
    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    width = 8 if large else 4
    offsets = np.frombuffer(
        bufs[1], dtype=np.int64 if large else np.int32, count=n + 1, offset=arr.offset * width
    ).astype(np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    data = data[offsets[0] : offsets[-1]]
    return offsets - offsets[0], data


def from_buffers(offsets: np.ndarray, data: bytes | np.ndarray) -> pa.Array:
    """A string array without nulls from int64 offsets (from 0) and data.

    Args:
        offsets: one more than the values, starting at 0.
        data: the bytes of the values, end to end.

    Returns:
        A ``string`` array, or ``large_string`` when the data passes 2 GiB.
    """
    n = len(offsets) - 1
    if offsets[-1] < 2**31:
        return pa.StringArray.from_buffers(
            n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)
        )
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def map_chunks(fn: Callable[[_In], _Out], items: Iterable[_In]) -> list[_Out]:
    """``[fn(item) for item in items]``, on a few threads when there are several items.

    The column work of this package (numpy, Arrow kernels, OpenSSL's AES) runs mostly outside
    Python's global lock, so chunks of a column go through ``fn`` side by side: 10 M AES
    decryptions take 2.3 s on two cores instead of 4. ``fn`` must not share mutable state
    between calls. Results keep the order of ``items``; the first error is raised.
    """
    todo = list(items)
    workers = min(MAX_THREADS, os.cpu_count() or 1, len(todo))
    if workers <= 1:
        return [fn(item) for item in todo]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="audtools") as pool:
        return list(pool.map(fn, todo))


def imap_chunks(fn: Callable[[_In], _Out], items: Iterable[_In]) -> Iterator[_Out]:
    """Like :func:`map_chunks`, but lazily: results come in order as they are ready, with only
    a few items taken from ``items`` ahead of the one being consumed (memory stays bounded
    while streaming a file). Closing the iterator waits for the work in flight."""
    workers = min(MAX_THREADS, os.cpu_count() or 1)
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="audtools") as pool:
        flight: deque[Future[_Out]] = deque()
        try:
            for item in items:
                flight.append(pool.submit(fn, item))
                if len(flight) > workers:
                    yield flight.popleft().result()
            while flight:
                yield flight.popleft().result()
        finally:
            for future in flight:
                future.cancel()


def derive_pairs(
    table: pa.Table,
    column: str,
    derive: Callable[[pa.Array], pa.Array],
    name: str,
    chunk_rows: int,
) -> pa.Table:
    """``(profile_id, name)``: each row's ``derive(column)``, rows deriving null left out.

    ``table`` holds ``profile_id`` and ``column``; it is derived ``chunk_rows`` rows at a time
    on a few threads (:func:`map_chunks`) and comes back as one table of string columns, ready
    to hand to DuckDB.
    """

    def pairs_of(part: pa.Table) -> pa.Table:
        values = derive(part[column].combine_chunks())
        pairs = pa.table({"profile_id": part["profile_id"].combine_chunks(), name: values})
        return pairs.filter(pc.is_valid(values)) if values.null_count else pairs

    chunks = map_chunks(
        pairs_of, [table.slice(start, chunk_rows) for start in range(0, table.num_rows, chunk_rows)]
    )
    schema = pa.schema([("profile_id", pa.string()), (name, pa.string())])
    return pa.Table.from_batches([b for c in chunks for b in c.cast(schema).to_batches()], schema)
