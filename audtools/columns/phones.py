"""Phone numbers to E.164 over whole columns: the fast path of :func:`audtools.columns.identifiers.normalise_phone`.

:func:`to_e164` reproduces ``phonenumbers.parse`` + E.164 formatting for inputs made only of ASCII
digits, spaces, dots, dashes and parentheses, optionally starting with one '+'. It follows parse()
step by step with each region's own patterns (national prefix, general description, international
prefix; see :mod:`audtools.columns.phone_metadata`), run by Arrow's RE2 over whole columns; the patterns
use only syntax on which RE2 and Python's re agree (leftmost-first alternation, no backreferences)
and only ASCII digits reach them. Whatever this path cannot settle exactly (an international
prefix, a national prefix with a transform rule, an unknown country code after '+', any other
character) goes to phonenumbers itself.
"""

from __future__ import annotations

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers.phonenumberutil import SUPPORTED_REGIONS, region_code_for_country_code

from audtools.columns.chunks import (
    NULL_STRING,
    as_mask,
    assemble,
    buffers,
    byte_lengths,
    from_buffers,
)
from audtools.columns.phone_metadata import (
    MAX_INPUT,
    Meta,
    country_codes,
    meta_for_code,
    meta_for_region,
)

__all__ = ["to_e164"]

_MIN_NSN = 2
_MAX_NSN = 17


def _may_start(digits: pa.Array, first: np.ndarray) -> np.ndarray:
    """Which values start with a byte that ``first`` (a table by byte) allows."""
    offsets, data = buffers(digits)
    firsts = np.append(data, np.uint8(0))[offsets[:-1]]
    return (np.diff(offsets) > 0) & first[firsts]




def _matches_general(digits: pa.Array, meta: Meta) -> np.ndarray:
    """phonenumbers' ``_match_national_number(number, general_desc, False)``: a full match."""
    if not meta.general:
        return np.zeros(len(digits), dtype=bool)
    return as_mask(pc.match_substring_regex(digits, f"^(?:{meta.general})$"))


def _strip_national_prefix(digits: pa.Array, meta: Meta) -> tuple[pa.Array, np.ndarray]:
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
        hit[hit] = as_mask(pc.match_substring_regex(digits.filter(hit), pattern))
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


def _finish(nat: pa.Array, meta: Meta) -> tuple[pa.Array, np.ndarray]:
    """The end of phonenumbers' parse() once the calling code is known.

    Returns:
        The national significant numbers (null where parse() raises), and where the result
        needs phonenumbers instead.
    """
    lengths = byte_lengths(nat)
    stripped, slow = _strip_national_prefix(nat, meta)
    keep = meta.keep_stripped[np.minimum(byte_lengths(stripped), MAX_INPUT)]
    final = pc.if_else(pa.array(keep), stripped, nat)
    final_len = byte_lengths(final)
    error = (lengths < _MIN_NSN) | (final_len < _MIN_NSN) | (final_len > _MAX_NSN)
    final = pc.if_else(pa.array(error), NULL_STRING, final)
    return final, slow


def _with_prefix(prefix: str, arr: pa.Array) -> pa.StringArray:
    """``prefix + value`` for each value (nulls give empty strings: filter them first)."""
    offsets, data = buffers(arr)
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
    return from_buffers(new_offsets, out)


def _e164(country_code: int, positions: np.ndarray, nat: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """A part of the result: ``+CC`` and each non-null national number, at ``positions``."""
    valid = as_mask(pc.is_valid(nat))
    return positions[valid], _with_prefix(f"+{country_code}", nat.filter(valid))


def _phone_one(value: str, region: str) -> str | None:
    """The reference: phonenumbers on one value; None when it does not parse."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


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
    table = country_codes()
    offsets, data = buffers(digits)
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
        hit[candidate] = as_mask(found)
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
            final, need = _finish(nat, meta_for_code(code))
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
    meta = meta_for_region(region)
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
            idd[idd] = as_mask(pc.match_substring_regex(digits.filter(idd), f"^(?:{meta.idd})"))
        slow.append(np.flatnonzero(idd))
        todo &= ~idd
    code = meta.country_code
    code_text = str(code)
    starts = todo & as_mask(pc.starts_with(digits, code_text))
    if starts.any():
        # parse() takes a leading calling code of the region as such when the number is not
        # a national number as written but is one without it, or is too long as written.
        full = digits.filter(starts)
        potential, need = _strip_national_prefix(
            pc.utf8_slice_codeunits(full, len(code_text)), meta
        )
        was = _matches_general(full, meta)
        now = _matches_general(potential, meta)
        too_long = meta.too_long[np.minimum(byte_lengths(full), MAX_INPUT)]
        taken = ((~was & now) | too_long) & ~need
        positions = np.flatnonzero(starts)
        slow.append(positions[need])
        todo[positions[need | taken]] = False
        if taken.any():
            code_meta = meta
            if region_code_for_country_code(code) != region:
                code_meta = meta_for_code(code)
            final, need2 = _finish(potential.filter(taken), code_meta)
            taken_pos = positions[taken]
            slow.append(taken_pos[need2])
            parts.append(_e164(code, taken_pos[~need2], final.filter(~need2)))
    final, need = _finish(digits.filter(todo), meta)
    rest = np.flatnonzero(todo)
    slow.append(rest[need])
    parts.append(_e164(code, rest[~need], final.filter(~need)))
    return parts, np.concatenate(slow)


def to_e164(trimmed: pa.Array, region: str) -> pa.StringArray:
    """Trimmed phone numbers as E.164, exactly as ``phonenumbers.parse`` + ``format_number``.

    The common shapes are settled in bulk; every other value goes to phonenumbers, once per
    distinct value.

    Args:
        trimmed: one chunk of strings, already trimmed of ASCII whitespace (no ``large_string``).
        region: the region of numbers written without a country code.

    Returns:
        E.164 strings; null where the input is null or does not parse.
    """
    n = len(trimmed)
    offsets, data = buffers(trimmed)
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
    present = as_mask(pc.is_valid(trimmed))
    shaped = present & (n_other == 0) & (lengths > 0) & (lengths <= MAX_INPUT)
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
            fast_offsets, fast_data = buffers(trimmed.filter(fast))
            fast_body = fast_data[fast_offsets[0] : fast_offsets[-1]]
        digit_offsets = np.zeros(len(fast_pos) + 1, dtype=np.int64)
        np.cumsum(n_digits[fast_pos], out=digit_offsets[1:])
        is_digit = (fast_body - np.uint8(ord("0"))) < 10
        digits = from_buffers(digit_offsets, fast_body[is_digit])
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
    return assemble(n, parts)


def _spread(n: int, positions: np.ndarray) -> np.ndarray:
    """A boolean mask of length ``n``, true at ``positions``."""
    mask = np.zeros(n, dtype=bool)
    mask[positions] = True
    return mask

