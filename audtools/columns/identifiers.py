"""Identifier rules, vectorised over Arrow arrays (SPEC §3).

Visitor IDs, the normalisers of declared IDs (email, phone, other), SHA-256, and the derivation of
each profile's declared ID. Every function takes and returns whole columns; Python runs per value
only where a fast path could differ from the reference (non-ASCII emails, unusual phone numbers).
The phone fast path lives in :mod:`audtools.columns.phones`.

Example:
    >>> import pyarrow as pa
    >>> from audtools.columns import identifiers as ids
    >>> ids.normalise(pa.array(["  John@Example.COM "]), "email", "US").to_pylist()
    ['john@example.com']
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audtools.columns import aes as crypto
from audtools.columns import phones
from audtools.columns.aes import Encoding
from audtools.columns.chunks import (
    CHUNK_ROWS,
    NULL_STRING,
    as_mask,
    as_strings,
    buffers,
    map_chunks,
)
from audtools.columns.phone_metadata import meta_for_region as _meta_for_region  # noqa: F401 - tests read it here
from audtools.errors import AudtoolsError, KeyProblem

__all__ = [
    "Channel",
    "Encoding",
    "Encryption",
    "HashMode",
    "NormaliserKind",
    "declared_ids",
    "is_declared_id",
    "is_visitor_id",
    "normalise",
    "normalise_email",
    "normalise_other",
    "normalise_phone",
    "normaliser_for",
    "sha256_hex",
    "trim_ascii",
]

NormaliserKind = Literal["email", "sms", "other"]
Channel = Literal["email", "sms", "other"]
HashMode = Literal["none", "sha256"]
Encryption = Literal["none", "aes-cbc"]

ASCII_WHITESPACE = " \t\r\n\x0b\x0c"
"""What "trimmed" removes (SPEC §3): space, tab, CR, LF, VT, FF; no other Unicode space."""



# ---------------------------------------------------------------------------------------------
# Simple rules


def is_visitor_id(arr: pa.Array | pa.ChunkedArray) -> pa.BooleanArray:
    """Whether each value is a visitor ID (ECID): exactly 38 ASCII digits.

    Args:
        arr: strings; nulls give False.

    Returns:
        A boolean array without nulls. Digits of other scripts (Arabic-Indic, full-width) are
        not ASCII digits and give False.
    """
    arr = as_strings(arr)
    return pc.match_substring_regex(arr, r"^[0-9]{38}$").fill_null(False)


def trim_ascii(arr: pa.Array | pa.ChunkedArray) -> pa.StringArray:
    """Remove leading and trailing ASCII whitespace (space, tab, CR, LF, VT, FF).

    Other Unicode spaces, such as U+00A0, are kept.

    Args:
        arr: strings.

    Returns:
        The trimmed strings; nulls stay null.
    """
    # Byte-wise trimming is exact here: UTF-8 never uses ASCII bytes inside other characters.
    return pc.ascii_trim(as_strings(arr), characters=ASCII_WHITESPACE)


def normalise_other(arr: pa.Array | pa.ChunkedArray) -> pa.StringArray:
    """Normalise a declared ID of no particular kind: trimmed only.

    Args:
        arr: strings.

    Returns:
        The trimmed strings; nulls stay null.
    """
    return trim_ascii(arr)


def normalise_email(arr: pa.Array | pa.ChunkedArray) -> pa.StringArray:
    """Normalise email addresses: trimmed, then lower-cased exactly as Python's ``str.lower()``.

    ASCII values are lower-cased in bulk; the rare non-ASCII values go through ``str.lower()``,
    whose full Unicode case mapping ('İ' → 'i̇', final sigma) Arrow's does not reproduce.

    Args:
        arr: strings.

    Returns:
        The normalised strings; nulls stay null.
    """
    trimmed = trim_ascii(arr)
    lowered = pc.ascii_lower(trimmed)
    non_ascii = as_mask(pc.invert(pc.string_is_ascii(trimmed)))
    if not non_ascii.any():
        return lowered
    where = np.flatnonzero(non_ascii)
    slow = pa.array([v.lower() for v in trimmed.take(where).to_pylist()], pa.string())
    return pc.replace_with_mask(lowered, pa.array(non_ascii), slow)


def is_declared_id(arr: pa.Array | pa.ChunkedArray) -> pa.BooleanArray:
    """Whether each value may be a declared ID (SPEC §3, AAM's DPUUID rules).

    A declared ID is not empty and holds no tab, no line end (LF or CR), no ``:`` and not its
    encoded form ``%3A`` in any case.

    Args:
        arr: strings; nulls give False.

    Returns:
        A boolean array without nulls.
    """
    arr = as_strings(arr)
    # One pass over the bytes (a regex per value costs several times more on millions).
    offsets, data = buffers(arr)
    ok = offsets[1:] > offsets[:-1]
    suspect = (data == 9) | (data == 10) | (data == 13) | (data == 58) | (data == 37)
    hits = np.flatnonzero(suspect)
    if len(hits):
        # '%' is harmless unless '3A' or '3a' follows it inside the same value.
        percent = hits[data[hits] == 37]
        hits = hits[data[hits] != 37]
        percent = percent[percent + 2 < len(data)]
        encoded = percent[
            (data[percent + 1] == ord("3")) & ((data[percent + 2] | 0x20) == ord("a"))
        ]
        value = np.searchsorted(offsets, encoded, side="right") - 1
        bad = np.concatenate([hits, encoded[encoded + 3 <= offsets[value + 1]]])
        ok[np.searchsorted(offsets, bad, side="right") - 1] = False
    if arr.null_count:
        ok &= as_mask(arr.is_valid())
    return pa.array(ok, pa.bool_())


def sha256_hex(arr: pa.Array | pa.ChunkedArray) -> pa.StringArray:
    """Lower-case hex SHA-256 of each value's UTF-8 bytes, with ``hashlib``.

    About a million short values a second of one core: ``hashlib`` keeps Python's lock for
    inputs this short, so threads do not help. Where millions of values are hashed (the
    derived-ID cache), the caller hashes in DuckDB's SQL instead (``sha256(column)``, the same
    digests, on every core): this module stays free of any database.

    Args:
        arr: strings.

    Returns:
        64-character hex digests; nulls stay null.

    Example:
        >>> sha256_hex(pa.array(["johndoe@example.com"]))[0].as_py()[:16]
        '55e79200c1635b37'
    """
    sha = hashlib.sha256
    binary = as_strings(arr).cast(pa.binary())
    return pa.array(
        [None if v is None else sha(v).hexdigest() for v in binary.to_pylist()], pa.string()
    )


# ---------------------------------------------------------------------------------------------
# Phone numbers (the fast path is audtools.columns.phones)


def normalise_phone(arr: pa.Array | pa.ChunkedArray, default_region: str) -> pa.StringArray:
    """Normalise phone numbers to E.164, exactly as ``phonenumbers`` does.

    Each value is trimmed, parsed with ``phonenumbers.parse(value, default_region)`` and
    formatted as E.164 (``+`` and digits). Validity is not checked. The common shapes (digits
    with spaces, dots, dashes, parentheses, optionally after one '+') are settled in bulk
    following phonenumbers' own rules and region data; every other value goes to
    phonenumbers.

    Args:
        arr: strings.
        default_region: the region (e.g. ``"US"``) of numbers written without a country code.

    Returns:
        E.164 strings; null where the input is null or does not parse.
    """
    trimmed = trim_ascii(arr)
    chunks = map_chunks(
        lambda start: phones.to_e164(trimmed.slice(start, CHUNK_ROWS), default_region),
        range(0, len(trimmed), CHUNK_ROWS),
    )
    return pa.concat_arrays(chunks) if chunks else pa.array([], pa.string())


# ---------------------------------------------------------------------------------------------
# Dispatch and declared IDs


def normaliser_for(channel: str, column: str) -> NormaliserKind:
    """Which normaliser a data source uses (SPEC §3, chosen).

    An explicit channel ``email`` or ``sms`` wins; with channel ``other`` (the default) the key
    column's name decides: ``email`` → email, ``mobile_phone`` → sms, anything else → other.

    Args:
        channel: the data source's ``channel``.
        column: the data source's ``reconciliation_key`` column.

    Returns:
        ``"email"``, ``"sms"`` or ``"other"``.

    Raises:
        AudtoolsError: ``bad_config`` for an unknown channel.
    """
    if channel == "email":
        return "email"
    if channel == "sms":
        return "sms"
    if channel != "other":
        raise AudtoolsError(
            f"Unknown channel {channel!r}: use 'email', 'sms' or 'other'.", code="bad_config"
        )
    if column == "email":
        return "email"
    if column == "mobile_phone":
        return "sms"
    return "other"


def normalise(
    arr: pa.Array | pa.ChunkedArray, kind: NormaliserKind, default_region: str = "US"
) -> pa.StringArray:
    """Normalise declared-ID values of one kind.

    Args:
        arr: strings.
        kind: ``"email"``, ``"sms"`` or ``"other"`` (see :func:`normaliser_for`).
        default_region: the region of phone numbers written without a country code.

    Returns:
        The normalised strings; null where the input is null or (sms) does not parse.

    Raises:
        AudtoolsError: ``bad_config`` for an unknown kind.
    """
    if kind == "email":
        return normalise_email(arr)
    if kind == "sms":
        return normalise_phone(arr, default_region)
    if kind == "other":
        return normalise_other(arr)
    raise AudtoolsError(
        f"Unknown normaliser {kind!r}: use 'email', 'sms' or 'other'.", code="bad_config"
    )


def declared_ids(
    values: pa.Array | pa.ChunkedArray,
    *,
    kind: NormaliserKind,
    default_region: str = "US",
    hash: HashMode = "none",  # noqa: A002 - the name of the setting in audtools.toml
    encryption: Encryption = "none",
    key: bytes | None = None,
    iv: bytes | None = None,
    encoding: Encoding = "base64",
) -> pa.StringArray:
    """The declared ID of each profile key value (SPEC §3).

    The value is normalised; a null, empty or rule-breaking result (see :func:`is_declared_id`)
    gives no declared ID; the others are kept as they are, hashed (SHA-256, lower-case hex) or
    encrypted (AES-CBC, see :func:`audtools.columns.aes.encrypt`).

    Args:
        values: the profiles' key column.
        kind: the normaliser (see :func:`normaliser_for`).
        default_region: the region of phone numbers written without a country code.
        hash: ``"none"`` or ``"sha256"``.
        encryption: ``"none"`` or ``"aes-cbc"``.
        key: the AES key (16, 24 or 32 bytes), for encryption.
        iv: the 16-byte IV, for encryption.
        encoding: how ciphertexts are written, ``"base64"`` or ``"hex"``.

    Returns:
        One declared ID per value; null where the profile has none.

    Raises:
        AudtoolsError: ``bad_config`` for an unknown mode, or hashing and encryption together.
        KeyProblem: ``missing_key`` when encryption has no key.
    """
    if hash not in ("none", "sha256"):
        raise AudtoolsError(f"Unknown hash {hash!r}: use 'none' or 'sha256'.", code="bad_config")
    if encryption not in ("none", "aes-cbc"):
        raise AudtoolsError(
            f"Unknown encryption {encryption!r}: use 'none' or 'aes-cbc'.", code="bad_config"
        )
    if hash != "none" and encryption != "none":
        raise AudtoolsError(
            "A data source cannot both hash and encrypt its declared IDs: choose one.",
            code="bad_config",
        )
    normalised = normalise(values, kind, default_region)
    kept = pc.if_else(is_declared_id(normalised), normalised, NULL_STRING)
    if hash == "sha256":
        return sha256_hex(kept)
    if encryption == "aes-cbc":
        if key is None:
            raise KeyProblem("Encryption needs a key: set key_env or key_file.", code="missing_key")
        if iv is None:
            raise AudtoolsError("Encryption needs an iv (16 bytes of hex).", code="bad_config")
        return crypto.encrypt(kept, key, iv, encoding)
    return kept
