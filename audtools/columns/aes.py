"""AES-CBC of declared IDs, in batches (SPEC §3, §5 step 4).

Values are encrypted with AES in CBC mode, a fixed IV per data source and PKCS7 padding, then
written as standard padded base64 or lower-case hex. Whole columns go through the cipher at once:

- decryption is parallel by nature: one AES-ECB call decrypts every ciphertext block of a chunk,
  then each block is XORed with the ciphertext block before it (the IV for a value's first block)
  in numpy, and the padding is checked and stripped in numpy;
- encryption is sequential inside a value but parallel across values: block position by block
  position, every value's block is XORed with its previous ciphertext block, then all of them are
  encrypted in one AES-ECB call.

:func:`encrypt_one` and :func:`decrypt_one` are the plain one-value references the tests compare
with. Ciphertexts become text (base64, hex) in :mod:`audtools.columns.ciphertexts`; keys are read
by the workspace (:mod:`audtools.workspace.keys`): this module never sees a file or a variable.

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
import re
import threading
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from audtools.columns.chunks import CHUNK_ROWS, buffers, map_chunks
from audtools.columns.ciphertexts import (
    BLOCK,
    as_buffer,
    base64_by_blocks,
    decode_base64,
    decode_hex,
    hex_by_blocks,
    utf8_or_null,
)
from audtools.errors import AudtoolsError, KeyProblem

__all__ = [
    "Encoding",
    "decrypt",
    "decrypt_one",
    "encrypt",
    "encrypt_one",
    "parse_iv",
]

Encoding = Literal["base64", "hex"]

_HEX = re.compile(r"[0-9a-fA-F]*")
# PKCS7 padding of p bytes, as UTF-8 strings (bytes 1..16 are ASCII control characters).
_PADDINGS = pa.array([chr(p) * p for p in range(1, BLOCK + 1)], pa.string())
_PAD_CHARACTERS = "".join(chr(p) for p in range(1, BLOCK + 1))
# For p = 0..17: the block of 16 bytes p, and the mask of its last p bytes (p = 0 and 17, which
# are never valid padding, have an empty mask: the check of p itself refuses them).
_PAD_WORDS = np.array([[p] * BLOCK for p in range(BLOCK + 2)], dtype=np.uint8).view(np.uint64)
_PAD_MASKS = np.array(
    [[0] * (BLOCK - p) + [255] * p if 1 <= p <= BLOCK else [0] * BLOCK for p in range(BLOCK + 2)],
    dtype=np.uint8,
).view(np.uint64)


# ---------------------------------------------------------------------------------------------
# IVs and checks


def parse_iv(text: str) -> bytes:
    """Read an IV written as hex text (16 bytes: 32 hex digits, either case).

    Args:
        text: the ``iv`` setting of a data source.

    Returns:
        The 16 IV bytes.

    Raises:
        AudtoolsError: ``bad_config`` when the text is not 32 hex digits.
    """
    if not isinstance(text, str) or len(text) != 2 * BLOCK or not _HEX.fullmatch(text):
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
    if len(iv) != BLOCK:
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
    if not cipher or len(cipher) % BLOCK:
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
        if len(self._out) < size + BLOCK:
            self._out = np.empty(size + BLOCK, dtype=np.uint8)
        if size == 0:
            return self._out[:0]
        written = self._ctx.update_into(as_buffer(blocks), self._out.data)
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
    nblocks = lengths // BLOCK + 1
    # Longest first, so that the values still going at block position k are the first ones.
    order = np.argsort(-nblocks, kind="stable")
    nblocks = nblocks[order]
    pads = _PADDINGS.take(pa.array(nblocks * BLOCK - lengths[order] - 1))
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
        encoded = hex_by_blocks(cipher_bytes, nblocks)
    else:
        encoded = base64_by_blocks(cipher_bytes, nblocks)
    return _scatter(n, where[order], encoded)


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


def _decrypt_chunk(chunk: pa.Array, ecb: _Ecb, iv_block: np.ndarray, encoding: str) -> pa.Array:
    n = len(chunk)
    where, cipher, cipher_len = (decode_hex if encoding == "hex" else decode_base64)(chunk)
    if len(where) == 0:
        return pa.nulls(n, pa.string())
    m = len(where)
    blocks = cipher.reshape(-1, BLOCK)
    nblocks = cipher_len // BLOCK
    first_block = np.zeros(m, dtype=np.int64)
    np.cumsum(nblocks[:-1], out=first_block[1:])
    last_block = first_block + nblocks - 1
    previous = np.empty_like(blocks)
    previous[1:] = blocks[:-1]
    previous[first_block] = iv_block
    plain = ecb(blocks).reshape(-1, BLOCK) ^ previous
    # PKCS7: the last byte p is 1 to 16 and the last p bytes all equal p. Compared as two
    # 64-bit words per value against the padding block of p, under the mask of its last p bytes.
    last = plain[last_block]
    pad = last[:, -1]
    p = np.minimum(pad, BLOCK + 1)
    words = np.ascontiguousarray(last).view(np.uint64)
    differ = (words ^ _PAD_WORDS[p]) & _PAD_MASKS[p]
    good = (pad >= 1) & (pad <= BLOCK) & (differ[:, 0] == 0) & (differ[:, 1] == 0)
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
    text_values = utf8_or_null(padded)
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
