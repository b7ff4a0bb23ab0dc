"""Identifier rules, vectorised over Arrow arrays (SPEC §3).

Visitor IDs, the normalisers of declared IDs (email, phone, other), SHA-256, and the derivation of
each profile's declared ID. Every function takes and returns whole columns; Python runs per value
only where a fast path could differ from the reference (non-ASCII emails, unusual phone numbers).

Example:
    >>> import pyarrow as pa
    >>> from audtools import ids
    >>> ids.normalise(pa.array(["  John@Example.COM "]), "email", "US").to_pylist()
    ['john@example.com']
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers import PhoneMetadata
from phonenumbers.phonenumberutil import (
    COUNTRY_CODE_TO_REGION_CODE,
    SUPPORTED_REGIONS,
    region_code_for_country_code,
)

from . import crypto
from .crypto import Encoding
from .errors import AudtoolsError, KeyProblem

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

_NULL_STRING = pa.scalar(None, pa.string())
_CHUNK = 262_144
# Below this many values hashlib beats starting a DuckDB connection.
_DUCKDB_SHA256_MIN = 4096


# ---------------------------------------------------------------------------------------------
# Arrow helpers


def _strings(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous ``string`` array (chunked, large, dictionary or null input accepted)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], arr.type)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if not pa.types.is_string(arr.type):
        arr = arr.cast(pa.string())
    return arr


def _mask(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow result as a numpy bool array, null read as False."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.fill_null(False).to_numpy(zero_copy_only=False)


def _lengths(arr: pa.Array) -> np.ndarray:
    """Byte lengths as int64, 0 for nulls."""
    return pc.binary_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)


def _assemble(n: int, parts: list[tuple[np.ndarray, pa.Array]]) -> pa.StringArray:
    """Scatter ``(positions, values)`` parts into one array of length ``n``; the rest is null."""
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
    arr = _strings(arr)
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
    return pc.ascii_trim(_strings(arr), characters=ASCII_WHITESPACE)


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
    non_ascii = _mask(pc.invert(pc.string_is_ascii(trimmed)))
    if not non_ascii.any():
        return lowered
    where = np.flatnonzero(non_ascii)
    slow = pa.array([v.lower() for v in trimmed.take(where).to_pylist()], pa.string())
    return pc.replace_with_mask(lowered, pa.array(non_ascii), slow)


def is_declared_id(arr: pa.Array | pa.ChunkedArray) -> pa.BooleanArray:
    """Whether each value may be a declared ID: non-empty, with no tab, newline or ``:``.

    These are AAM's DPUUID rules (SPEC §3).

    Args:
        arr: strings; nulls give False.

    Returns:
        A boolean array without nulls.
    """
    arr = _strings(arr)
    non_empty = pc.greater(pc.binary_length(arr), 0)
    clean = pc.invert(pc.match_substring_regex(arr, "[\t\n:]"))
    return pc.and_(non_empty, clean).fill_null(False)


def sha256_hex(arr: pa.Array | pa.ChunkedArray) -> pa.StringArray:
    """Lower-case hex SHA-256 of each value's UTF-8 bytes.

    Large columns are hashed by DuckDB (in parallel, several million values a second); small
    ones by ``hashlib``.

    Args:
        arr: strings.

    Returns:
        64-character hex digests; nulls stay null.

    Example:
        >>> sha256_hex(pa.array(["johndoe@example.com"]))[0].as_py()[:16]
        '55e79200c1635b37'
    """
    arr = _strings(arr)
    if len(arr) < _DUCKDB_SHA256_MIN:
        return _sha256_hashlib(arr)
    import duckdb  # here, so that importing audtools.ids stays light

    con = duckdb.connect(
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "preserve_insertion_order": True,  # the default, relied on: digests in input order
        }
    )
    try:
        table = pa.table({"v": arr})
        con.register("_values", table)
        rel = con.sql("SELECT sha256(v) AS h FROM _values")
        fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
        out = fetch().column("h")
    finally:
        con.close()
    out = _strings(out)
    if len(out) != len(arr):  # pragma: no cover - defensive
        raise AudtoolsError("DuckDB returned the wrong number of SHA-256 digests.")
    return out


def _sha256_hashlib(arr: pa.Array) -> pa.StringArray:
    """The reference: ``hashlib`` one value at a time."""
    sha = hashlib.sha256
    binary = arr.cast(pa.binary())
    return pa.array(
        [None if v is None else sha(v).hexdigest() for v in binary.to_pylist()], pa.string()
    )


# ---------------------------------------------------------------------------------------------
# Phone numbers
#
# The fast path reproduces ``phonenumbers.parse`` + E.164 formatting for inputs made only of ASCII
# digits, spaces, dots, dashes and parentheses, optionally starting with one '+'. It follows
# parse() step by step with each region's own patterns (national prefix, general description,
# international prefix), run by Arrow's RE2 over whole columns; the patterns use only syntax on
# which RE2 and Python's re agree (leftmost-first alternation, no backreferences) and only ASCII
# digits reach them. Whatever this path cannot settle exactly (an international prefix, a
# national prefix with a transform rule, an unknown country code after '+', any other
# character) goes to phonenumbers itself.

_MIN_NSN = 2
_MAX_NSN = 17
_MAX_INPUT = 250


@dataclass(frozen=True)
class _Meta:
    """What the fast path needs of one region's metadata."""

    country_code: int
    prefix: str | None  # national_prefix_for_parsing
    transform: bool  # national_prefix_transform_rule is set
    general: str | None  # general_desc.national_number_pattern
    idd: str | None  # international_prefix
    keep_stripped: np.ndarray  # by length: _test_number_length not TOO_SHORT/LOCAL/INVALID
    too_long: np.ndarray  # by length: _test_number_length is TOO_LONG
    prefix_first: np.ndarray  # by byte: may start a match of the national prefix
    idd_first: np.ndarray  # by byte: may start a match of the international prefix


def _length_tables(metadata: PhoneMetadata) -> tuple[np.ndarray, np.ndarray]:
    """phonenumbers' ``_test_number_length(number, metadata)`` (type UNKNOWN), by length."""
    desc = metadata.general_desc
    possible = list(desc.possible_length or ()) if desc is not None else []
    local = set(desc.possible_length_local_only or ()) if desc is not None else set()
    keep = np.zeros(_MAX_INPUT + 1, dtype=bool)
    too_long = np.zeros(_MAX_INPUT + 1, dtype=bool)
    for n in range(_MAX_INPUT + 1):
        if not possible or possible[0] == -1:
            result = "invalid"
        elif n in local:
            result = "local"
        elif possible[0] == n:
            result = "possible"
        elif possible[0] > n:
            result = "too_short"
        elif possible[-1] < n:
            result = "too_long"
        elif n in possible[1:]:
            result = "possible"
        else:
            result = "invalid"
        keep[n] = result not in ("too_short", "local", "invalid")
        too_long[n] = result == "too_long"
    return keep, too_long


@functools.cache
def _meta_for_region(region: str) -> _Meta | None:
    metadata = PhoneMetadata.metadata_for_region(region, None)
    return None if metadata is None else _meta_of(metadata)


@functools.cache
def _meta_for_code(country_code: int) -> _Meta:
    region = region_code_for_country_code(country_code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    assert metadata is not None, "a known calling code has metadata"
    return _meta_of(metadata)


def _meta_of(metadata: PhoneMetadata) -> _Meta:
    keep, too_long = _length_tables(metadata)
    general = metadata.general_desc.national_number_pattern if metadata.general_desc else None
    assert metadata.country_code is not None
    return _Meta(
        country_code=metadata.country_code,
        prefix=metadata.national_prefix_for_parsing or None,
        transform=bool(metadata.national_prefix_transform_rule),
        general=general or None,
        idd=metadata.international_prefix or None,
        keep_stripped=keep,
        too_long=too_long,
        prefix_first=_byte_table(_first_digits(metadata.national_prefix_for_parsing)),
        idd_first=_byte_table(_first_digits(metadata.international_prefix)),
    )


def _byte_table(digits: frozenset[str]) -> np.ndarray:
    table = np.zeros(256, dtype=bool)
    table[[ord(d) for d in digits]] = True
    return table


def _may_start(digits: pa.Array, first: np.ndarray) -> np.ndarray:
    """Which values start with a byte that ``first`` (a table by byte) allows."""
    offsets, data = _buffers(digits)
    firsts = np.append(data, np.uint8(0))[offsets[:-1]]
    return (np.diff(offsets) > 0) & first[firsts]


_ALL_DIGITS = frozenset("0123456789")


def _first_digits(pattern: str | None) -> frozenset[str]:
    """The digits that can start a match of a phone-metadata regex: all ten when it can match
    the empty string or uses syntax beyond digits, ``\\d``, classes, groups, ``|``, ``?``,
    ``{m,n}`` and ``$`` (a safe answer: it only sends more values to the regex)."""
    if not pattern:
        return frozenset()

    class Unknown(Exception):
        pass

    pos = 0

    def alternation() -> tuple[frozenset[str], bool]:
        nonlocal pos
        first, nullable = sequence()
        while pos < len(pattern) and pattern[pos] == "|":
            pos += 1
            more, more_nullable = sequence()
            first, nullable = first | more, nullable or more_nullable
        return first, nullable

    def sequence() -> tuple[frozenset[str], bool]:
        nonlocal pos
        first: frozenset[str] = frozenset()
        nullable = True
        while pos < len(pattern) and pattern[pos] not in "|)":
            atom_first, atom_nullable = atom()
            atom_nullable = quantifier() or atom_nullable
            if nullable:
                first |= atom_first
            nullable = nullable and atom_nullable
        return first, nullable

    def atom() -> tuple[frozenset[str], bool]:
        nonlocal pos
        c = pattern[pos]
        pos += 1
        if c.isdigit() and c.isascii():
            return frozenset(c), False
        if c == "\\" and pattern[pos : pos + 1] == "d":
            pos += 1
            return _ALL_DIGITS, False
        if c == "$":
            return frozenset(), True
        if c == "[":
            end = pattern.index("]", pos)
            body, pos = pattern[pos:end], end + 1
            if not body or any(ch not in "0123456789-" for ch in body):
                raise Unknown
            digits = set()
            i = 0
            while i < len(body):
                if i + 2 < len(body) and body[i + 1] == "-":
                    digits |= {chr(d) for d in range(ord(body[i]), ord(body[i + 2]) + 1)}
                    i += 3
                else:
                    digits.add(body[i])
                    i += 1
            return frozenset(digits) & _ALL_DIGITS, False
        if c == "(":
            if pattern.startswith("?:", pos):
                pos += 2
            elif pattern[pos : pos + 1] == "?":
                raise Unknown
            inner = alternation()
            if pattern[pos : pos + 1] != ")":
                raise Unknown
            pos += 1
            return inner
        raise Unknown

    def quantifier() -> bool:
        """Skip a quantifier; True when it allows zero repetitions."""
        nonlocal pos
        if pos < len(pattern) and pattern[pos] in "?*":
            pos += 1
            return True
        if pos < len(pattern) and pattern[pos] == "+":
            pos += 1
            return False
        if pos < len(pattern) and pattern[pos] == "{":
            end = pattern.index("}", pos)
            low = pattern[pos + 1 : end].split(",")[0]
            pos = end + 1
            if not low.isdigit():
                raise Unknown
            return int(low) == 0
        return False

    try:
        first, nullable = alternation()
        if pos != len(pattern):
            raise Unknown
    except (Unknown, ValueError, IndexError):
        return _ALL_DIGITS
    return _ALL_DIGITS if nullable else first


@dataclass(frozen=True)
class _CountryCodes:
    """Calling codes by their first three digits (codes are prefix-free, so three digits
    decide), and an RE2 pattern matching digits whose national prefix may start right after
    their calling code."""

    length: np.ndarray  # by 3-digit prefix: length of the calling code, 0 if unknown
    code: np.ndarray  # by 3-digit prefix: the calling code
    may_hit: np.ndarray  # by 4-digit prefix: the national prefix may start after the code
    prefix_hit: str


@functools.lru_cache(maxsize=1)
def _country_codes() -> _CountryCodes:
    length = np.zeros(1000, dtype=np.int64)
    code_of = np.zeros(1000, dtype=np.int64)
    hits = []
    for code in sorted(COUNTRY_CODE_TO_REGION_CODE, key=str):
        text = str(code)
        span = 10 ** (3 - len(text))
        start = int(text) * span
        length[start : start + span] = len(text)
        code_of[start : start + span] = code
        meta = _meta_for_code(code)
        if meta.prefix:
            hits.append(f"{text}(?:{meta.prefix})")
    may_hit = np.zeros(10_000, dtype=bool)
    for prefix in range(10_000):
        size = length[prefix // 10]
        if size:
            text = f"{prefix:04d}"
            may_hit[prefix] = _meta_for_code(int(code_of[prefix // 10])).prefix_first[
                ord(text[size])
            ]
    return _CountryCodes(length, code_of, may_hit, "^(?:" + "|".join(hits) + ")")


def _matches_general(digits: pa.Array, meta: _Meta) -> np.ndarray:
    """phonenumbers' ``_match_national_number(number, general_desc, False)``: a full match."""
    if not meta.general:
        return np.zeros(len(digits), dtype=bool)
    return _mask(pc.match_substring_regex(digits, f"^(?:{meta.general})$"))


def _strip_national_prefix(digits: pa.Array, meta: _Meta) -> tuple[pa.Array, np.ndarray]:
    """phonenumbers' ``_maybe_strip_national_prefix_carrier_code``, number part only.

    Returns:
        The numbers after stripping, and where the result needs phonenumbers (a transform rule).
    """
    n = len(digits)
    none = np.zeros(n, dtype=bool)
    if not meta.prefix or n == 0:
        return digits, none
    pattern = f"^(?:{meta.prefix})"
    hit = _may_start(digits, meta.prefix_first)
    if hit.any():
        hit[hit] = _mask(pc.match_substring_regex(digits.filter(hit), pattern))
    if not hit.any():
        return digits, none
    if meta.transform:
        return digits, hit
    matched = digits.filter(hit)
    stripped = pc.replace_substring_regex(matched, pattern, "", max_replacements=1)
    refused = _matches_general(matched, meta) & ~_matches_general(stripped, meta)
    apply = hit.copy()
    apply[hit] = ~refused
    if not apply.any():
        return digits, none
    return pc.replace_with_mask(digits, pa.array(apply), stripped.filter(~refused)), none


def _finish(nat: pa.Array, meta: _Meta) -> tuple[pa.Array, np.ndarray]:
    """The end of phonenumbers' parse() once the calling code is known.

    Returns:
        The national significant numbers (null where parse() raises), and where the result
        needs phonenumbers instead.
    """
    lengths = _lengths(nat)
    stripped, slow = _strip_national_prefix(nat, meta)
    keep = meta.keep_stripped[np.minimum(_lengths(stripped), _MAX_INPUT)]
    final = pc.if_else(pa.array(keep), stripped, nat)
    final_len = _lengths(final)
    error = (lengths < _MIN_NSN) | (final_len < _MIN_NSN) | (final_len > _MAX_NSN)
    final = pc.if_else(pa.array(error), _NULL_STRING, final)
    return final, slow


def _with_prefix(prefix: str, arr: pa.Array) -> pa.StringArray:
    """``prefix + value`` for each value (nulls give empty strings: filter them first)."""
    offsets, data = _buffers(arr)
    body = data[offsets[0] : offsets[-1]]
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    k = len(head)
    n = len(arr)
    new_offsets = offsets - offsets[0] + k * np.arange(n + 1)
    out = np.empty(len(body) + k * n, dtype=np.uint8)
    is_body = np.ones(len(out), dtype=bool)
    for j in range(k):
        out[new_offsets[:-1] + j] = head[j]
        is_body[new_offsets[:-1] + j] = False
    out[is_body] = body
    return _from_buffers(new_offsets, out)


def _e164(country_code: int, positions: np.ndarray, nat: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """A part of the result: ``+CC`` and each non-null national number, at ``positions``."""
    valid = _mask(pc.is_valid(nat))
    return positions[valid], _with_prefix(f"+{country_code}", nat.filter(valid))


def _phone_one(value: str, region: str) -> str | None:
    """The reference: phonenumbers on one value; None when it does not parse."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The offsets (int64, one more than values) and the data bytes of a string array."""
    if len(arr) == 0:
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.uint8)
    bufs = arr.buffers()
    width = 8 if pa.types.is_large_string(arr.type) else 4
    offsets = np.frombuffer(
        bufs[1],
        dtype=np.int64 if width == 8 else np.int32,
        count=len(arr) + 1,
        offset=arr.offset * width,
    ).astype(np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return offsets, data


def _from_buffers(offsets: np.ndarray, data: np.ndarray | bytes) -> pa.StringArray:
    """A string array (no nulls) from int64 offsets starting at 0 and its data."""
    return pa.StringArray.from_buffers(
        len(offsets) - 1, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)
    )


# Bytes of the fast path's inputs: an ASCII digit counts 1, a separator 0, anything else 256.
# Summed over a value of at most 250 bytes (longer ones are never read) this cannot overflow.
_PHONE_WEIGHT = np.full(256, 256, dtype=np.uint16)
_PHONE_WEIGHT[ord("0") : ord("9") + 1] = 1
_PHONE_WEIGHT[[ord(c) for c in " ().-"]] = 0


def _phone_international(
    digits: pa.Array,
) -> tuple[np.ndarray, list[tuple[np.ndarray, pa.Array]], np.ndarray]:
    """Numbers written '+' then digits and separators (``digits``: their digits, three or more).

    Returns:
        Where the result is '+' and the digits, other parts of the result (positions in
        ``digits``, E.164 strings), and the positions that need phonenumbers.
    """
    table = _country_codes()
    offsets, data = _buffers(digits)
    lengths = np.diff(offsets)
    where = np.minimum(offsets[:-1, None] + np.arange(4), len(data) - 1)
    head = data[where].astype(np.int64) - ord("0")
    prefix = head[:, 0] * 100 + head[:, 1] * 10 + head[:, 2]
    code_len = table.length[prefix]
    codes = table.code[prefix]
    known = code_len > 0
    # An unknown code makes parse() retry the digits as a national number: leave that to it.
    slow = [np.flatnonzero(~known)]
    parts: list[tuple[np.ndarray, pa.Array]] = []
    # Only where the digit after the code may start its national prefix is the regex run.
    candidate = known & ((lengths < 4) | table.may_hit[np.clip(prefix * 10 + head[:, 3], 0, 9999)])
    hit = np.zeros(len(lengths), dtype=bool)
    if candidate.any():
        found = pc.match_substring_regex(digits.filter(candidate), table.prefix_hit)
        hit[candidate] = _mask(found)
    plain = known & ~hit
    nat_len = lengths - code_len
    # Without a national prefix to strip, the number stays '+' and its digits. Other lengths
    # make parse() raise TOO_SHORT_NSN or TOO_LONG: null, like every position left out.
    as_written = plain & (nat_len >= _MIN_NSN) & (nat_len <= _MAX_NSN)
    if hit.any():
        for code in np.unique(codes[hit]).tolist():
            sel = hit & (codes == code)
            positions = np.flatnonzero(sel)
            nat = pc.utf8_slice_codeunits(digits.filter(sel), len(str(code)))
            final, need = _finish(nat, _meta_for_code(code))
            slow.append(positions[need])
            parts.append(_e164(code, positions[~need], final.filter(~need)))
    return as_written, parts, np.concatenate(slow)


def _phone_national(
    digits: pa.Array, region: str
) -> tuple[list[tuple[np.ndarray, pa.Array]], np.ndarray]:
    """Numbers written without '+' (``digits``: their digits, three or more), read in ``region``.

    Returns:
        Parts of the result (positions in ``digits``, E.164 strings) and the positions that
        need phonenumbers.
    """
    meta = _meta_for_region(region)
    n = len(digits)
    if meta is None:  # pragma: no cover - region checked by the caller
        return [], np.arange(n)
    slow = [np.zeros(0, dtype=np.int64)]
    parts: list[tuple[np.ndarray, pa.Array]] = []
    todo = np.ones(n, dtype=bool)
    if meta.idd:
        # An international prefix: parse() reads a calling code after it.
        idd = _may_start(digits, meta.idd_first)
        if idd.any():
            idd[idd] = _mask(pc.match_substring_regex(digits.filter(idd), f"^(?:{meta.idd})"))
        slow.append(np.flatnonzero(idd))
        todo &= ~idd
    code = meta.country_code
    code_text = str(code)
    starts = todo & _mask(pc.starts_with(digits, code_text))
    if starts.any():
        # parse() takes a leading calling code of the region as such when the number is not
        # a national number as written but is one without it, or is too long as written.
        full = digits.filter(starts)
        potential, need = _strip_national_prefix(
            pc.utf8_slice_codeunits(full, len(code_text)), meta
        )
        was = _matches_general(full, meta)
        now = _matches_general(potential, meta)
        too_long = meta.too_long[np.minimum(_lengths(full), _MAX_INPUT)]
        taken = ((~was & now) | too_long) & ~need
        positions = np.flatnonzero(starts)
        slow.append(positions[need])
        todo[positions[need | taken]] = False
        if taken.any():
            code_meta = meta
            if region_code_for_country_code(code) != region:
                code_meta = _meta_for_code(code)
            final, need2 = _finish(potential.filter(taken), code_meta)
            taken_pos = positions[taken]
            slow.append(taken_pos[need2])
            parts.append(_e164(code, taken_pos[~need2], final.filter(~need2)))
    final, need = _finish(digits.filter(todo), meta)
    rest = np.flatnonzero(todo)
    slow.append(rest[need])
    parts.append(_e164(code, rest[~need], final.filter(~need)))
    return parts, np.concatenate(slow)


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
    chunks = [
        _phone_chunk(trimmed.slice(start, _CHUNK), default_region)
        for start in range(0, len(trimmed), _CHUNK)
    ]
    return pa.concat_arrays(chunks) if chunks else pa.array([], pa.string())


def _phone_chunk(trimmed: pa.Array, region: str) -> pa.StringArray:
    n = len(trimmed)
    offsets, data = _buffers(trimmed)
    body = data[offsets[0] : offsets[-1]]
    rel = offsets - offsets[0]
    lengths = np.diff(rel)
    # Per value: digits in the low byte, other characters above.
    weights = _PHONE_WEIGHT[body]
    sums = np.zeros(n, dtype=np.uint16)
    first = np.zeros(n, dtype=np.uint8)
    if n:
        # A trailing zero lets every value, empty ones included, start inside the array.
        sums = np.add.reduceat(np.append(weights, np.uint16(0)), rel[:-1])
        sums[lengths == 0] = 0
        first = np.where(lengths > 0, np.append(body, np.uint8(0))[rel[:-1]], 0)
    n_digits = (sums & 0xFF).astype(np.int64)
    leading_plus = first == ord("+")
    n_other = (sums >> 8).astype(np.int64) - leading_plus
    present = _mask(pc.is_valid(trimmed))
    shaped = present & (n_other == 0) & (lengths > 0) & (lengths <= _MAX_INPUT)
    plus = leading_plus & shaped
    national = ~leading_plus & shaped & (region in SUPPORTED_REGIONS)
    # Fewer than three digits is never viable after '+'; two digits alone may be: leave those.
    fast = (plus | national) & (n_digits >= 3)
    slow_mask = present & ~fast & ~(plus & (n_digits < 3))
    slow_parts = [np.flatnonzero(slow_mask)]
    parts: list[tuple[np.ndarray, pa.Array]] = []
    if fast.any():
        fast_pos = np.flatnonzero(fast)
        if len(fast_pos) == n:
            fast_body = body
        else:
            fast_offsets, fast_data = _buffers(trimmed.filter(fast))
            fast_body = fast_data[fast_offsets[0] : fast_offsets[-1]]
        digit_offsets = np.zeros(len(fast_pos) + 1, dtype=np.int64)
        np.cumsum(n_digits[fast_pos], out=digit_offsets[1:])
        is_digit = (fast_body - np.uint8(ord("0"))) < 10
        digits = _from_buffers(digit_offsets, fast_body[is_digit])
        is_plus = plus[fast_pos]
        if is_plus.any():
            positions = fast_pos[is_plus]
            as_written, group_parts, group_slow = _phone_international(digits.filter(is_plus))
            parts += [(positions[where], values) for where, values in group_parts]
            slow_parts.append(positions[group_slow])
            # '+' and digits: the value itself when written without separators.
            pure = as_written & (n_digits[positions] == lengths[positions] - 1)
            parts.append((positions[pure], trimmed.filter(_spread(n, positions[pure]))))
            spaced = as_written & ~pure
            if spaced.any():
                plus_digits = digits.filter(is_plus).filter(spaced)
                parts.append((positions[spaced], _with_prefix("+", plus_digits)))
        if not is_plus.all():
            positions = fast_pos[~is_plus]
            group_parts, group_slow = _phone_national(digits.filter(~is_plus), region)
            parts += [(positions[where], values) for where, values in group_parts]
            slow_parts.append(positions[group_slow])
    slow_pos = np.sort(np.concatenate(slow_parts))
    if len(slow_pos):
        cache: dict[str, str | None] = {}
        values = trimmed.take(pa.array(slow_pos)).to_pylist()
        for v in values:
            if v not in cache:
                cache[v] = _phone_one(v, region)
        parts.append((slow_pos, pa.array([cache[v] for v in values], pa.string())))
    return _assemble(n, parts)


def _spread(n: int, positions: np.ndarray) -> np.ndarray:
    """A boolean mask of length ``n``, true at ``positions``."""
    mask = np.zeros(n, dtype=bool)
    mask[positions] = True
    return mask


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
    encrypted (AES-CBC, see :func:`audtools.crypto.encrypt`).

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
    kept = pc.if_else(is_declared_id(normalised), normalised, _NULL_STRING)
    if hash == "sha256":
        return sha256_hex(kept)
    if encryption == "aes-cbc":
        if key is None:
            raise KeyProblem("Encryption needs a key: set key_env or key_file.", code="missing_key")
        if iv is None:
            raise AudtoolsError("Encryption needs an iv (16 bytes of hex).", code="bad_config")
        return crypto.encrypt(kept, key, iv, encoding)
    return kept
