"""Ciphertexts as text, over whole columns: standard base64 and hex, both ways (SPEC §3).

:mod:`audtools.columns.aes` works on blocks of bytes; this module turns them into the text AAM's
files carry and back, a whole chunk per call: one call (pybase64 for base64, ``binascii`` for hex) encodes or decodes every value
of a chunk, and numpy finds the values that are not canonical. The plaintexts that come out of
the cipher are checked for UTF-8 here too.
"""

from __future__ import annotations

import binascii

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pybase64

from audtools.columns.chunks import as_mask, buffers, from_buffers

__all__ = [
    "BLOCK",
    "as_buffer",
    "base64_by_blocks",
    "decode_base64",
    "decode_hex",
    "hex_by_blocks",
    "utf8_or_null",
]

BLOCK = 16
"""AES's block size in bytes."""

# Canonical standard base64: whole quads of the 64 standard characters, '=' only as the last
# one or two characters, and zero in the bits that the padding leaves over in the character
# before it (otherwise several texts would decode to one ciphertext).
_BASE64_CANONICAL = (
    r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=|[A-Za-z0-9+/][AQgw]==)?$"
)
_HEX_BLOCKS = r"^(?:[0-9a-fA-F]{32})+$"
_UTF8_SPLIT_BELOW = 512


def as_buffer(arr: np.ndarray) -> memoryview:
    """The bytes of an array, as a flat buffer for ``binascii`` and ``cryptography``."""
    return np.ascontiguousarray(arr).view(np.uint8).reshape(-1).data


def hex_by_blocks(data: np.ndarray, nblocks: np.ndarray) -> pa.Array:
    """Lower-case hex of consecutive values of ``nblocks`` blocks each.

    Args:
        data: the ciphertexts, end to end (``uint8``).
        nblocks: each value's length in blocks.

    Returns:
        A string array without nulls.
    """
    text = binascii.hexlify(as_buffer(data))
    offsets = np.zeros(len(nblocks) + 1, dtype=np.int64)
    np.cumsum(nblocks * 2 * BLOCK, out=offsets[1:])
    return from_buffers(offsets, text)


def base64_by_blocks(data: np.ndarray, nblocks: np.ndarray) -> pa.Array:
    """Standard padded base64 of consecutive values of ``nblocks`` blocks each.

    Args:
        data: the ciphertexts, end to end (``uint8``).
        nblocks: each value's length in blocks, grouped: equal counts are adjacent (one
            call encodes each group).

    Returns:
        A string array without nulls.
    """
    lengths = nblocks * BLOCK
    out_lengths = 4 * ((lengths + 2) // 3)
    pieces = []
    starts = np.flatnonzero(np.r_[True, nblocks[1:] != nblocks[:-1]])
    ends = np.r_[starts[1:], len(nblocks)]
    byte_start = np.zeros(len(nblocks) + 1, dtype=np.int64)
    np.cumsum(lengths, out=byte_start[1:])
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        size = int(lengths[s])
        rows = data[byte_start[s] : byte_start[e]].reshape(e - s, size)
        spare = (-size) % 3
        if spare:
            # Zero bytes make each value a whole number of 3-byte groups, so that one call
            # encodes them all; their characters then become the '=' padding.
            wide = np.zeros((e - s, size + spare), dtype=np.uint8)
            wide[:, :size] = rows
            rows = wide
        text = np.frombuffer(pybase64.b64encode(as_buffer(rows)), dtype=np.uint8)
        text = text.reshape(e - s, -1)
        if spare:
            text = text.copy()
            text[:, -spare:] = ord("=")
        pieces.append(text.reshape(-1))
    offsets = np.zeros(len(nblocks) + 1, dtype=np.int64)
    np.cumsum(out_lengths, out=offsets[1:])
    return from_buffers(offsets, np.concatenate(pieces))


def decode_hex(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode the values that are hex of whole blocks (either case).

    Returns:
        Their positions, their ciphertexts one after the other, and their lengths.
    """
    ok = as_mask(pc.match_substring_regex(chunk, _HEX_BLOCKS))
    where = np.flatnonzero(ok)
    if len(where) == 0:
        return where, np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int64)
    offsets, text = buffers(chunk.filter(ok) if len(where) < len(chunk) else chunk)
    cipher = np.frombuffer(binascii.unhexlify(as_buffer(text)), dtype=np.uint8)
    return where, cipher, np.diff(offsets) // 2


def decode_base64(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode the values that are canonical standard padded base64 of whole blocks.

    Canonical: whole quads of the 64 standard characters, '=' only as the last one or two
    characters, and zero in the bits that the padding leaves over (otherwise several texts
    would stand for one ciphertext).

    Returns:
        Their positions, their ciphertexts one after the other, and their lengths.
    """
    pad_chars = as_mask(pc.ends_with(chunk, "=")).astype(np.int64)
    pad_chars += as_mask(pc.ends_with(chunk, "=="))
    text_len = pc.binary_length(chunk).fill_null(0).to_numpy(zero_copy_only=False)
    text_len = text_len.astype(np.int64)
    cipher_len = 3 * (text_len // 4) - pad_chars
    ok = (text_len % 4 == 0) & (cipher_len > 0) & (cipher_len % BLOCK == 0)
    ok &= chunk.is_valid().to_numpy(zero_copy_only=False)
    # Usually every such value is clean base64 and one decoding settles all; when one is not,
    # the chunk is checked value by value first.
    decoded = _decode_whole_quads(chunk, ok, pad_chars)
    if decoded is None:
        ok &= as_mask(pc.match_substring_regex(chunk, _BASE64_CANONICAL))
        decoded = _decode_whole_quads(chunk, ok, pad_chars)
        assert decoded is not None, "values checked by the regex decode"
    where, cipher, canonical = decoded
    lengths = cipher_len[where]
    if not canonical.all():
        # Left-over bits set: drop those values and their blocks.
        cipher = cipher.reshape(-1, BLOCK)[np.repeat(canonical, lengths // BLOCK)].reshape(-1)
        where, lengths = where[canonical], lengths[canonical]
    return where, cipher, lengths


def _decode_whole_quads(
    chunk: pa.Array, ok: np.ndarray, pad_chars: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Decode the base64 values where ``ok`` (whole quads, whole blocks once decoded).

    Returns:
        Their positions, their ciphertexts one after the other and whether each is canonical;
        None when some value holds a character outside the alphabet or an inner '='.
    """
    where = np.flatnonzero(ok)
    if len(where) == 0:
        return where, np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=bool)
    offsets, text = buffers(chunk.filter(ok) if len(where) < len(chunk) else chunk)
    pads = pad_chars[where]
    ends = offsets[1:]
    # The padding read as 'A' (zero bits): every value is whole quads, so one call decodes
    # them all; the one or two bytes that the padding stands for are then dropped.
    text = text.copy()
    text[ends[pads >= 1] - 1] = ord("A")
    text[ends[pads == 2] - 2] = ord("A")
    if (text == ord("=")).any():
        return None
    try:
        # pybase64: SIMD decoding, 20 times binascii's; ``validate`` refuses any character
        # outside the alphabet (binascii skipped them).
        decoded = np.frombuffer(pybase64.b64decode(as_buffer(text), validate=True), dtype=np.uint8)
    except (binascii.Error, ValueError):
        return None
    if len(decoded) != 3 * len(text) // 4:
        return None
    decoded_end = 3 * ends // 4
    one, two = decoded_end[pads >= 1] - 1, decoded_end[pads == 2] - 2
    canonical = np.ones(len(where), dtype=bool)
    canonical[pads >= 1] &= decoded[one] == 0
    canonical[pads == 2] &= decoded[two] == 0
    keep = np.ones(len(decoded), dtype=bool)
    keep[one] = False
    keep[two] = False
    return where, decoded[keep] if len(one) else decoded, canonical


def utf8_or_null(binary: pa.Array) -> pa.Array:
    """The values as strings; null for those that are not valid UTF-8.

    Arrow validates a whole array at once; when that fails, halves are tried until the bad
    values are found, and small pieces are checked one value at a time.
    """
    target = pa.large_string() if pa.types.is_large_binary(binary.type) else pa.string()
    try:
        return binary.cast(target)
    except pa.ArrowInvalid:
        pass
    if len(binary) <= _UTF8_SPLIT_BELOW:
        out = []
        for value in binary.to_pylist():
            try:
                out.append(None if value is None else value.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(None)
        return pa.array(out, target)
    half = len(binary) // 2
    return pa.concat_arrays(
        [utf8_or_null(binary.slice(0, half)), utf8_or_null(binary.slice(half))]
    )
