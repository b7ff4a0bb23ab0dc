"""AES-CBC of declared IDs, in batches, and the keys it needs (SPEC §2.1, §3, §5 step 4).

Values are encrypted with AES in CBC mode, a fixed IV per data source and PKCS7 padding, then
written as standard padded base64 or lower-case hex. Whole columns go through the cipher at once:

- decryption is parallel by nature: one AES-ECB call decrypts every ciphertext block of a chunk,
  then each block is XORed with the ciphertext block before it (the IV for a value's first block)
  in numpy, and the padding is checked and stripped in numpy;
- encryption is sequential inside a value but parallel across values: block position by block
  position, every value's block is XORed with its previous ciphertext block, then all of them are
  encrypted in one AES-ECB call.

:func:`encrypt_one` and :func:`decrypt_one` are the plain one-value references the tests compare
with.

Example:
    >>> import pyarrow as pa
    >>> key, iv = bytes(range(16)), bytes(16)
    >>> text = encrypt(pa.array(["john@example.com"]), key, iv, "base64")
    >>> decrypt(text, key, iv, "base64").to_pylist()
    ['john@example.com']
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from audtools.columns.chunks import CHUNK_ROWS, as_mask, buffers, from_buffers, map_chunks
from audtools.errors import AudtoolsError, KeyProblem

__all__ = [
    "Encoding",
    "decrypt",
    "decrypt_one",
    "encrypt",
    "encrypt_one",
    "load_key",
    "parse_iv",
]

Encoding = Literal["base64", "hex"]

_BLOCK = 16
_KEY_HEX_LENGTHS = (32, 48, 64)
_HEX = re.compile(r"[0-9a-fA-F]*")
# Canonical standard base64: whole quads of the 64 standard characters, '=' only as the last
# one or two characters, and zero in the bits that the padding leaves over in the character
# before it (otherwise several texts would decode to one ciphertext).
_BASE64_CANONICAL = (
    r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=|[A-Za-z0-9+/][AQgw]==)?$"
)
_HEX_BLOCKS = r"^(?:[0-9a-fA-F]{32})+$"
# PKCS7 padding of p bytes, as UTF-8 strings (bytes 1..16 are ASCII control characters).
_PADDINGS = pa.array([chr(p) * p for p in range(1, _BLOCK + 1)], pa.string())
_PAD_CHARACTERS = "".join(chr(p) for p in range(1, _BLOCK + 1))
_UTF8_SPLIT_BELOW = 512


# ---------------------------------------------------------------------------------------------
# Keys and IVs


def load_key(*, key_env: str | None, key_file: str | Path | None, base_dir: Path) -> bytes:
    """Read a data source's AES key, given as hex text (16, 24 or 32 bytes).

    Exactly one of ``key_env`` and ``key_file`` is given. Surrounding whitespace is ignored. A
    key file must be readable by its owner only. No message ever shows the key or a part of it.

    Args:
        key_env: the environment variable holding the key.
        key_file: the file holding the key; relative paths are relative to ``base_dir``.
        base_dir: the workspace folder.

    Returns:
        The key bytes.

    Raises:
        KeyProblem: ``missing_key`` when the variable is unset or empty or the file does not
            exist; ``bad_key`` when the key is not hex of the right length, or the file is
            readable by group or others, or cannot be read.
        AudtoolsError: ``bad_config`` when both or neither of ``key_env`` and ``key_file`` are
            given.
    """
    if (key_env is None) == (key_file is None):
        raise AudtoolsError(
            "Give exactly one of key_env and key_file for an encrypted data source.",
            code="bad_config",
        )
    if key_env is not None:
        raw = os.environ.get(key_env)
        where = f"the environment variable {key_env}"
        if raw is None or not raw.strip():
            state = "is not set" if raw is None else "is empty"
            raise KeyProblem(
                f"The key is missing: {where} {state}. Set it to the key as hex text "
                "(32, 48 or 64 hex digits).",
                code="missing_key",
                variable=key_env,
            )
        return _parse_key(raw, where, variable=key_env)
    assert key_file is not None
    path = Path(key_file)
    if not path.is_absolute():
        path = Path(base_dir) / path
    where = f"the key file {path}"
    try:
        info = path.stat()
    except FileNotFoundError:
        raise KeyProblem(
            f"The key is missing: {where} does not exist. Create it with the key as hex text "
            f"and run `chmod 600 {path}`.",
            code="missing_key",
            file=str(path),
        ) from None
    except OSError as exc:
        raise KeyProblem(
            f"{_cap(where)} cannot be read ({exc.strerror}). Check the path and its rights.",
            code="bad_key",
            file=str(path),
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise KeyProblem(
            f"{_cap(where)} is not a regular file. Point key_file at the file holding the key.",
            code="bad_key",
            file=str(path),
        )
    if info.st_mode & 0o044:
        raise KeyProblem(
            f"{_cap(where)} is readable by group or others, so it is refused. Run "
            f"`chmod 600 {path}` and try again.",
            code="bad_key",
            file=str(path),
        )
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise KeyProblem(
            f"{_cap(where)} cannot be read ({exc.strerror}). Check its owner and rights.",
            code="bad_key",
            file=str(path),
        ) from None
    try:
        raw = raw_bytes.decode("ascii")
    except UnicodeDecodeError:
        raise KeyProblem(
            f"{_cap(where)} does not hold hex text. Write the key as 32, 48 or 64 hex digits.",
            code="bad_key",
            file=str(path),
        ) from None
    return _parse_key(raw, where, file=str(path))


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _parse_key(raw: str, where: str, **details: str) -> bytes:
    text = raw.strip()
    if not _HEX.fullmatch(text):
        raise KeyProblem(
            f"The key in {where} is not hex text. Write it as 32, 48 or 64 hex digits "
            "(a 128-, 192- or 256-bit AES key).",
            code="bad_key",
            **details,
        )
    if len(text) not in _KEY_HEX_LENGTHS:
        raise KeyProblem(
            f"The key in {where} has {len(text)} hex digits; an AES key has 32, 48 or 64 "
            "(16, 24 or 32 bytes). Replace it with a key of one of these lengths.",
            code="bad_key",
            **details,
        )
    return bytes.fromhex(text)


def parse_iv(text: str) -> bytes:
    """Read an IV written as hex text (16 bytes: 32 hex digits, either case).

    Args:
        text: the ``iv`` setting of a data source.

    Returns:
        The 16 IV bytes.

    Raises:
        AudtoolsError: ``bad_config`` when the text is not 32 hex digits.
    """
    if not isinstance(text, str) or len(text) != 2 * _BLOCK or not _HEX.fullmatch(text):
        raise AudtoolsError(
            "The iv must be 16 bytes written as 32 hex digits, such as "
            "'000102030405060708090a0b0c0d0e0f'. Fix the data source's iv.",
            code="bad_config",
        )
    return bytes.fromhex(text)


def _check(key: bytes, iv: bytes, encoding: str) -> None:
    if len(key) not in (16, 24, 32):
        raise KeyProblem(
            f"An AES key has 16, 24 or 32 bytes, not {len(key)}. Check the data source's key.",
            code="bad_key",
        )
    if len(iv) != _BLOCK:
        raise AudtoolsError(
            f"The iv must have 16 bytes, not {len(iv)}. Fix the data source's iv.",
            code="bad_config",
        )
    if encoding not in ("base64", "hex"):
        raise AudtoolsError(
            f"Unknown encoding {encoding!r}: use 'base64' or 'hex'.", code="bad_config"
        )


# ---------------------------------------------------------------------------------------------
# One value at a time: the references


def encrypt_one(value: str, key: bytes, iv: bytes, encoding: Encoding = "base64") -> str:
    """Encrypt one value (the reference for :func:`encrypt`).

    Args:
        value: the text to encrypt (as UTF-8).
        key: the AES key, 16, 24 or 32 bytes.
        iv: the 16-byte IV.
        encoding: ``"base64"`` (standard, padded) or ``"hex"`` (lower case).

    Returns:
        The encoded ciphertext.
    """
    _check(key, iv, encoding)
    padder = padding.PKCS7(128).padder()
    plain = padder.update(value.encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    cipher = encryptor.update(plain) + encryptor.finalize()
    if encoding == "hex":
        return cipher.hex()
    return base64.b64encode(cipher).decode("ascii")


def decrypt_one(text: str, key: bytes, iv: bytes, encoding: Encoding = "base64") -> str | None:
    """Decrypt one value (the reference for :func:`decrypt`).

    Args:
        text: the encoded ciphertext.
        key: the AES key, 16, 24 or 32 bytes.
        iv: the 16-byte IV.
        encoding: ``"base64"`` (standard, padded, canonical) or ``"hex"`` (either case).

    Returns:
        The plaintext, or None when the text is undecryptable: not canonical base64 or not hex,
        empty or not whole blocks, wrong padding, or not UTF-8 once decrypted.
    """
    _check(key, iv, encoding)
    try:
        if encoding == "hex":
            if not _HEX.fullmatch(text):
                return None
            cipher = bytes.fromhex(text)
        else:
            cipher = base64.b64decode(text, validate=True)
            if base64.b64encode(cipher).decode("ascii") != text:
                return None
    except (ValueError, binascii.Error):
        return None
    if not cipher or len(cipher) % _BLOCK:
        return None
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    plain = decryptor.update(cipher) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        data = unpadder.update(plain) + unpadder.finalize()
        return data.decode("utf-8")
    except ValueError:  # bad padding, or UnicodeDecodeError
        return None


# ---------------------------------------------------------------------------------------------
# Whole columns


def _chunks(values: pa.Array | pa.ChunkedArray) -> Iterator[pa.Array]:
    """Slices of at most CHUNK_ROWS string values."""
    arrays = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    for arr in arrays:
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        for start in range(0, len(arr), CHUNK_ROWS):
            part = arr.slice(start, CHUNK_ROWS)
            yield part if pa.types.is_string(part.type) else part.cast(pa.string())


def _concat(parts: list[pa.Array]) -> pa.StringArray:
    if not parts:
        return pa.array([], pa.string())
    return pa.concat_arrays(parts) if len(parts) > 1 else parts[0]


def _scatter(n: int, where: np.ndarray, values: pa.Array) -> pa.StringArray:
    """An array of length ``n`` holding ``values`` at positions ``where`` and nulls elsewhere."""
    values = values.cast(pa.string())
    pos = np.zeros(n, dtype=np.int64)
    pos[where] = np.arange(len(where))
    if len(where) == n:
        if np.array_equal(where, np.arange(n)):
            return values
        return values.take(pa.array(pos))
    missing = np.ones(n, dtype=bool)
    missing[where] = False
    return values.take(pa.array(pos, mask=missing))


def _view(arr: np.ndarray) -> memoryview:
    """The bytes of an array, as a flat buffer for ``binascii`` and ``cryptography``."""
    return np.ascontiguousarray(arr).view(np.uint8).reshape(-1).data


def _per_thread(key: bytes, *, decrypt: bool) -> Callable[[], _Ecb]:
    """A function giving each thread its own :class:`_Ecb` (contexts and buffers are not
    shared between threads), made once per thread."""
    local = threading.local()

    def get() -> _Ecb:
        ecb = getattr(local, "ecb", None)
        if ecb is None:
            ecb = local.ecb = _Ecb(key, decrypt=decrypt)
        return ecb

    return get


class _Ecb:
    """One AES-ECB context and a reused output buffer (``update_into``)."""

    def __init__(self, key: bytes, *, decrypt: bool) -> None:
        cipher = Cipher(algorithms.AES(key), modes.ECB())
        self._ctx = cipher.decryptor() if decrypt else cipher.encryptor()
        self._out = np.empty(0, dtype=np.uint8)

    def __call__(self, blocks: np.ndarray) -> np.ndarray:
        """Run the cipher over whole blocks; the result lives until the next call."""
        size = blocks.nbytes
        if len(self._out) < size + _BLOCK:
            self._out = np.empty(size + _BLOCK, dtype=np.uint8)
        if size == 0:
            return self._out[:0]
        written = self._ctx.update_into(_view(blocks), self._out.data)
        return self._out[:written]


def encrypt(
    values: pa.Array | pa.ChunkedArray, key: bytes, iv: bytes, encoding: Encoding = "base64"
) -> pa.StringArray:
    """Encrypt each value with AES-CBC, a fixed IV and PKCS7 padding, then encode it.

    Args:
        values: strings, encrypted as their UTF-8 bytes.
        key: the AES key, 16, 24 or 32 bytes.
        iv: the 16-byte IV.
        encoding: ``"base64"`` (standard, padded) or ``"hex"`` (lower case).

    Returns:
        The encoded ciphertexts; nulls stay null.

    Raises:
        KeyProblem: ``bad_key`` for a key of the wrong length.
        AudtoolsError: ``bad_config`` for a wrong IV or an unknown encoding.
    """
    _check(key, iv, encoding)
    iv_words = np.frombuffer(iv, dtype=np.uint64)
    ecb = _per_thread(key, decrypt=False)
    return _concat(map_chunks(
        lambda c: _encrypt_chunk(c, ecb(), iv_words, encoding), _chunks(values)
    ))


def _encrypt_chunk(chunk: pa.Array, ecb: _Ecb, iv_words: np.ndarray, encoding: str) -> pa.Array:
    n = len(chunk)
    valid = chunk.is_valid().to_numpy(zero_copy_only=False)
    where = np.flatnonzero(valid)
    present = chunk.filter(valid) if len(where) < n else chunk
    if len(present) == 0:
        return pa.nulls(n, pa.string())
    lengths = pc.binary_length(present).to_numpy(zero_copy_only=False).astype(np.int64)
    nblocks = lengths // _BLOCK + 1
    # Longest first, so that the values still going at block position k are the first ones.
    order = np.argsort(-nblocks, kind="stable")
    nblocks = nblocks[order]
    pads = _PADDINGS.take(pa.array(nblocks * _BLOCK - lengths[order] - 1))
    padded = pc.binary_join_element_wise(present.take(pa.array(order)), pads, "")
    _, plain = buffers(padded)
    plain = plain.view(np.uint64).reshape(-1, 2)
    first_block = np.zeros(len(nblocks), dtype=np.int64)
    np.cumsum(nblocks[:-1], out=first_block[1:])
    still_going = np.searchsorted(-nblocks, -np.arange(int(nblocks[0])), side="left")
    cipher = np.empty_like(plain)
    previous = np.tile(iv_words, (len(nblocks), 1))
    for k, count in enumerate(still_going.tolist()):
        index = first_block[:count] + k
        mixed = plain[index] ^ previous[:count]
        out = ecb(mixed).view(np.uint64).reshape(-1, 2)
        cipher[index] = out
        previous[:count] = out
    cipher_bytes = cipher.view(np.uint8).reshape(-1)
    if encoding == "hex":
        text = binascii.hexlify(_view(cipher_bytes))
        out_offsets = np.zeros(len(nblocks) + 1, dtype=np.int64)
        np.cumsum(nblocks * 2 * _BLOCK, out=out_offsets[1:])
        encoded = from_buffers(out_offsets, text)
    else:
        encoded = _base64_by_blocks(cipher_bytes, nblocks)
    return _scatter(n, where[order], encoded)


def _base64_by_blocks(data: np.ndarray, nblocks: np.ndarray) -> pa.Array:
    """Standard padded base64 of consecutive values of ``nblocks`` blocks each (grouped: equal
    counts are adjacent)."""
    lengths = nblocks * _BLOCK
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
        text = np.frombuffer(binascii.b2a_base64(_view(rows), newline=False), dtype=np.uint8)
        text = text.reshape(e - s, -1)
        if spare:
            text = text.copy()
            text[:, -spare:] = ord("=")
        pieces.append(text.reshape(-1))
    offsets = np.zeros(len(nblocks) + 1, dtype=np.int64)
    np.cumsum(out_lengths, out=offsets[1:])
    return from_buffers(offsets, np.concatenate(pieces))


def decrypt(
    values: pa.Array | pa.ChunkedArray, key: bytes, iv: bytes, encoding: Encoding = "base64"
) -> pa.StringArray:
    """Decode and decrypt each value (AES-CBC, fixed IV, PKCS7 padding).

    A value is undecryptable, and gives null, when it is not canonical standard padded base64
    (or not hex, for ``"hex"``, either case), when it decodes to nothing or to a length that is
    not a whole number of 16-byte blocks, when its padding is wrong once decrypted (the last
    byte must be 1 to 16 and repeated that many times), or when the plaintext is not UTF-8.

    Args:
        values: the encoded ciphertexts.
        key: the AES key, 16, 24 or 32 bytes.
        iv: the 16-byte IV.
        encoding: ``"base64"`` or ``"hex"``.

    Returns:
        The plaintexts; null for null or undecryptable values.

    Raises:
        KeyProblem: ``bad_key`` for a key of the wrong length.
        AudtoolsError: ``bad_config`` for a wrong IV or an unknown encoding.
    """
    _check(key, iv, encoding)
    iv_block = np.frombuffer(iv, dtype=np.uint8)
    ecb = _per_thread(key, decrypt=True)
    return _concat(map_chunks(
        lambda c: _decrypt_chunk(c, ecb(), iv_block, encoding), _chunks(values)
    ))


def _decode_hex(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode the values that are hex of whole blocks (either case).

    Returns:
        Their positions, their ciphertexts one after the other, and their lengths.
    """
    ok = as_mask(pc.match_substring_regex(chunk, _HEX_BLOCKS))
    where = np.flatnonzero(ok)
    if len(where) == 0:
        return where, np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int64)
    offsets, text = buffers(chunk.filter(ok) if len(where) < len(chunk) else chunk)
    cipher = np.frombuffer(binascii.unhexlify(_view(text)), dtype=np.uint8)
    return where, cipher, np.diff(offsets) // 2


def _decode_base64(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    ok = (text_len % 4 == 0) & (cipher_len > 0) & (cipher_len % _BLOCK == 0)
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
        cipher = cipher.reshape(-1, _BLOCK)[np.repeat(canonical, lengths // _BLOCK)].reshape(-1)
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
        decoded = np.frombuffer(binascii.a2b_base64(_view(text)), dtype=np.uint8)
    except binascii.Error:
        return None
    # Characters outside the alphabet are skipped by the decoder, which shortens its output.
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


def _decrypt_chunk(chunk: pa.Array, ecb: _Ecb, iv_block: np.ndarray, encoding: str) -> pa.Array:
    n = len(chunk)
    where, cipher, cipher_len = (_decode_hex if encoding == "hex" else _decode_base64)(chunk)
    if len(where) == 0:
        return pa.nulls(n, pa.string())
    m = len(where)
    blocks = cipher.reshape(-1, _BLOCK)
    nblocks = cipher_len // _BLOCK
    first_block = np.zeros(m, dtype=np.int64)
    np.cumsum(nblocks[:-1], out=first_block[1:])
    last_block = first_block + nblocks - 1
    previous = np.empty_like(blocks)
    previous[1:] = blocks[:-1]
    previous[first_block] = iv_block
    plain = ecb(blocks).reshape(-1, _BLOCK) ^ previous
    # PKCS7: the last byte p is 1 to 16 and the last p bytes all equal p.
    last = plain[last_block]
    pad = last[:, -1]
    in_pad = np.arange(_BLOCK, dtype=np.uint8)[None, :] >= (_BLOCK - pad)[:, None]
    good = (pad >= 1) & (pad <= _BLOCK) & np.all((last == pad[:, None]) | ~in_pad, axis=1)
    offsets = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(cipher_len, out=offsets[1:])
    padded = pa.Array.from_buffers(
        pa.large_binary() if offsets[-1] >= 2**31 else pa.binary(),
        m,
        [
            pa.py_buffer(np.packbits(good, bitorder="little")),
            pa.py_buffer(offsets if offsets[-1] >= 2**31 else offsets.astype(np.int32)),
            pa.py_buffer(plain),
        ],
    )
    # Padding bytes are ASCII, so the padded text is UTF-8 exactly when the plaintext is.
    text_values = _utf8_or_null(padded)
    return _scatter(n, where, _strip_padding(text_values, np.where(good, pad, 0)))


def _strip_padding(padded: pa.Array, pad: np.ndarray) -> pa.Array:
    """Remove the last ``pad`` bytes (all equal to ``pad``, 1 to 16) of each string."""
    stripped = pc.ascii_rtrim(padded, characters=_PAD_CHARACTERS)
    want = pc.binary_length(padded).fill_null(0).to_numpy(zero_copy_only=False) - pad
    got = pc.binary_length(stripped).fill_null(0).to_numpy(zero_copy_only=False)
    # Trimming also took plaintext bytes 1 to 16 at the end of these few: cut them exactly.
    wrong = got != want
    if not wrong.any():
        return stripped
    where = np.flatnonzero(wrong)
    fixed = [
        None if v is None else v[: len(v) - p]
        for v, p in zip(padded.take(pa.array(where)).to_pylist(), pad[where].tolist(), strict=True)
    ]
    return pc.replace_with_mask(stripped, pa.array(wrong), pa.array(fixed, stripped.type))


def _utf8_or_null(binary: pa.Array) -> pa.Array:
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
        [_utf8_or_null(binary.slice(0, half)), _utf8_or_null(binary.slice(half))]
    )
