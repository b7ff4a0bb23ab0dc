"""Rows of an outbound batch file, one block of whole lines at a time (SPEC 4.2).

:func:`parse_block` classifies every line of a block: a valid row gives its ``(ID, segment)``
pairs, any other line a reject reason (:data:`REJECT_REASONS`). A block that is plain ASCII
without spaces or control characters is parsed with numpy over its bytes, any other with Arrow
string kernels; no Python code runs per row. :mod:`audtools.formats.outbound_rows` streams a
file through it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audtools.columns.chunks import buffers

__all__ = ["REASON_NAMES", "REJECT_REASONS", "SEPARATORS", "IdRule", "Parsed", "parse_block",
           "visitor_id_halves"]

SEPARATORS = (",", ";", "|", " ")
"""The separators of segment lists a data source may set (``outbound_separator``)."""

IdRule = Literal["visitor_id", "declared_id"]

REJECT_REASONS: tuple[str, ...] = (
    "bad_encoding",
    "bad_syntax",
    "bad_id",
    "bad_segment",
    "no_segments",
)
"""Reasons a row is rejected, highest precedence first."""

_OK, _ENC, _SYNTAX, _ID, _SEG, _NOSEG, _BLANK = 0, 1, 2, 3, 4, 5, -1
REASON_NAMES = pa.array(("",) + REJECT_REASONS, pa.string())
"""The name of each reason code of :attr:`Parsed.reason` that is not negative (0: a valid row)."""
# Unicode category Cc but tab; in RE2's UTF-8 mode \x{9f} is the code point U+009F.
_CONTROL_RE = r"[\x00-\x08\x0a-\x1f\x7f-\x{9f}]"


def _blank_bad_lines(data: bytes) -> tuple[bytes, list[int]]:
    """Empty the lines that are not valid UTF-8, keeping their newlines, in one linear pass.

    The block is decoded once with ``surrogateescape``: each byte that is not part of valid UTF-8
    becomes one lone surrogate (valid UTF-8 never decodes to one), so the bad lines are those
    holding a surrogate, found with numpy over the decoded code points.

    Returns:
        The cleaned bytes and the 0-based indexes of the emptied lines.
    """
    try:
        data.decode("utf-8")
        return data, []
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", "surrogateescape")
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
    point_newline = points == 10
    point_line = np.cumsum(point_newline) - point_newline  # a newline belongs to its line
    lines = int(point_line[-1]) + 1
    is_bad = np.bincount(point_line[(points >= 0xDC80) & (points <= 0xDCFF)], minlength=lines) > 0
    bad = np.flatnonzero(is_bad)
    u8 = np.frombuffer(data, np.uint8)
    newline = u8 == 10
    keep = newline | ~is_bad[np.cumsum(newline) - newline]
    cleaned = u8[keep].tobytes()
    if is_bad[-1] and not data.endswith(b"\n"):
        cleaned += b"x"  # an open last line stays a line: its reason is set by the caller
    return cleaned, bad.tolist()


@dataclass
class Parsed:
    """A parsed block: a reason code per line and the pairs of its valid rows.

    Attributes:
        reason: a code per line: 0 for a valid row, -1 for a blank line, else a reject (its name
            is ``REASON_NAMES[code]``).
        pair_line: the 0-based line of each pair.
        ids: the ID of each pair (None when parsed with ``integer_ids``).
        sids: the segment ID of each pair (int64).
        ops: per pair, True when it comes from ``SEGMENTS``, False from ``REMOVED``.
        newlines: newline characters in the block.
        id_halves: with ``integer_ids``, each pair's visitor ID as two uint64 numbers, its first
            19 digits and its last 19 (the ID is ``high * 10**19 + low``); else None.
    """

    reason: np.ndarray  # int8 per line: _OK, _BLANK or a reject
    pair_line: np.ndarray  # 0-based line index of each pair
    ids: pa.Array | None
    sids: pa.Array
    ops: np.ndarray  # bool: True for SEGMENTS
    newlines: int
    id_halves: tuple[np.ndarray, np.ndarray] | None = None


def visitor_id_halves(u8: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 38-digit visitor IDs starting at ``starts`` in ``u8`` as two uint64 numbers each:
    the first 19 digits and the last 19 (19 digits fit 64 bits; 38 do not).

    Every ID must be 38 ASCII digits (a valid row's). The digits are read as a matrix and
    summed column by column, about 0.1 us per ID, so that DuckDB makes each 128-bit integer
    with a multiply and an add: a fifth of the CPU of casting 38 characters of text.
    """
    if not len(starts):
        empty = np.zeros(0, np.uint64)
        return empty, empty.copy()
    digits = np.lib.stride_tricks.sliding_window_view(u8, 38)[starts] - np.uint8(48)
    high = digits[:, 0].astype(np.uint64)
    low = digits[:, 19].astype(np.uint64)
    ten = np.uint64(10)
    for j in range(1, 19):
        high *= ten
        high += digits[:, j]
        low *= ten
        low += digits[:, 19 + j]
    return high, low


def _string_halves(ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """:func:`visitor_id_halves` of a string array of valid visitor IDs (38 bytes each)."""
    offsets, data = buffers(ids)
    return visitor_id_halves(data, offsets[:-1])


def _np(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False))


def _mask(values: np.ndarray) -> pa.Array:
    return pa.array(values, pa.bool_())


def _reasons(
    n: int,
    syntax: np.ndarray,
    id_ok: np.ndarray,
    tok_line: np.ndarray,
    tok_bad: np.ndarray,
    blank: np.ndarray,
) -> np.ndarray:
    """Combine the checks by precedence; ``tok_line`` holds the lines of non-empty tokens."""
    reason = np.full(n, _OK, dtype=np.int8)
    reason[np.bincount(tok_line, minlength=n) == 0] = _NOSEG
    reason[np.bincount(tok_line[tok_bad], minlength=n) > 0] = _SEG
    reason[~id_ok] = _ID
    reason[syntax] = _SYNTAX
    reason[blank] = _BLANK
    return reason


def _in_spans(positions: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Whether each span ``[start, end)`` holds one of the sorted ``positions``."""
    return np.searchsorted(positions, ends) > np.searchsorted(positions, starts)


def _parse_simple(
    data: bytes,
    id_rule: IdRule,
    lowercase_ids: bool,
    separator: str = ",",
    integer_ids: bool = False,
) -> Parsed | None:
    """Parse an ASCII block without spaces, CR or DEL with numpy alone, or return None.

    Pieces are the spans between tabs, separators and newlines. Rather than copying them, one
    string array over ``data`` alternates pieces and their one-byte delimiters.
    """
    if id_rule == "declared_id" and b"%" in data:
        return None  # a possible %3A in an ID: the general parser checks it
    sep = ord(separator)
    u8 = np.frombuffer(data, np.uint8)
    is_delim = (u8 < 11) | (u8 == sep)
    delims = np.flatnonzero(is_delim)
    kinds = u8[delims]
    if np.count_nonzero(u8 < 32) != np.count_nonzero(kinds != sep) or (kinds < 9).any():
        return None  # control characters
    m = len(delims)
    all_starts = np.concatenate(([0], delims + 1))
    all_ends = np.concatenate((delims, [len(data)]))
    before = np.concatenate(([10], kinds)).astype(np.uint8)
    newlines = int(np.count_nonzero(kinds == 10))
    pieces = m if data.endswith(b"\n") else m + 1  # a final newline leaves an empty last piece
    line_start = before[:pieces] == 10
    line = np.cumsum(line_start) - 1
    first = np.flatnonzero(line_start)
    n = len(first)
    tabs_so_far = np.cumsum(before[:pieces] == 9)
    col = tabs_so_far - tabs_so_far[first][line]
    if ((before[:pieces] == sep) & (col == 0)).any():
        return None  # a separator in an ID: let the general parser keep the ID whole
    starts, ends = all_starts[:pieces], all_ends[:pieces]
    last = np.append(first[1:] - 1, pieces - 1)
    tabs = col[last]
    blank = ends[last] - starts[first] == tabs
    syntax = (tabs == 0) | (tabs > 2)
    size = ends - starts

    bounds = np.empty(2 * m + 2, dtype=np.int32)
    bounds[0::2], bounds[1::2] = all_starts, all_ends
    buffer = pa.py_buffer(data.lower() if lowercase_ids else data)
    alternating = pa.StringArray.from_buffers(2 * m + 1, pa.py_buffer(bounds), buffer)

    token = ((col == 1) | (col == 2)) & (size > 0)
    tok_index = np.flatnonzero(token)
    tok_line = line[tok_index]
    tok_bad = size[tok_index] > 18
    id_size = size[first]
    if id_rule == "visitor_id":
        id_ok = id_size == 38
    else:
        id_ok = id_size > 0
        if b":" in data:
            id_ok &= ~_in_spans(np.flatnonzero(u8 == 58), starts[first], ends[first])
    if np.count_nonzero((u8 < 48) | (u8 > 57)) > m:  # non-digits besides the delimiters
        tok_text = pc.take(alternating, pa.array(2 * tok_index))
        tok_bad |= ~_np(pc.ascii_is_decimal(tok_text))
        if id_rule == "visitor_id":
            id_ok &= _np(pc.ascii_is_decimal(pc.take(alternating, pa.array(2 * first))))
    reason = _reasons(n, syntax, id_ok, tok_line, tok_bad, blank)

    kept = tok_index[reason[tok_line] == _OK]
    pair_line = line[kept]
    ids, halves = _pair_ids(alternating, u8, first, starts, reason, pair_line, integer_ids)
    return Parsed(
        reason=reason,
        pair_line=pair_line,
        ids=ids,
        sids=pc.cast(pc.take(alternating, pa.array(2 * kept)), pa.int64()),
        ops=col[kept] == 1,
        newlines=newlines,
        id_halves=halves,
    )


def _pair_ids(
    alternating: pa.Array,
    u8: np.ndarray,
    first: np.ndarray,
    starts: np.ndarray,
    reason: np.ndarray,
    pair_line: np.ndarray,
    integer_ids: bool,
) -> tuple[pa.Array | None, tuple[np.ndarray, np.ndarray] | None]:
    """Each pair's ID for :func:`_parse_simple`: its text (piece ``2 * first[i]`` of
    ``alternating`` is the ID of line ``i``, starting at byte ``starts[first[i]]``), or with
    ``integer_ids`` its halves, each valid line's ID read once."""
    if not integer_ids:
        return pc.take(alternating, pa.array(2 * first[pair_line])), None
    valid = np.flatnonzero(reason == _OK)
    high, low = np.zeros(len(reason), np.uint64), np.zeros(len(reason), np.uint64)
    high[valid], low[valid] = visitor_id_halves(u8, starts[first[valid]])
    return None, (high[pair_line], low[pair_line])


def _split_columns(
    lines: pa.Array, blank: np.ndarray, spaces: bool, double_spaces: bool, separator: str
) -> pa.ListArray:
    """Split lines into columns: on each tab, or, in a row without a tab, on runs of spaces
    (with the separator ``" "``: the ID, then the segments)."""
    cols = pc.split_pattern(lines, "\t")
    if not spaces:
        return cols  # a line without tab or space is a single column either way
    spaced = (_np(pc.list_value_length(cols)) == 1) & ~blank
    if not spaced.any():
        return cols
    subset = pc.filter(lines, _mask(spaced))
    if separator == " ":
        subset = pc.replace_substring_regex(subset, " +", "\t", max_replacements=1)
    elif double_spaces:
        subset = pc.replace_substring_regex(subset, f" *{re.escape(separator)} *", separator)
        subset = pc.replace_substring_regex(subset, " +", "\t")
    else:  # single spaces only: the same edits without regular expressions, 5x faster
        subset = pc.replace_substring(subset, f"{separator} ", separator)
        subset = pc.replace_substring(subset, f" {separator}", separator)
        subset = pc.replace_substring(subset, " ", "\t")
    return pc.split_pattern(pc.replace_with_mask(lines, _mask(spaced), subset), "\t")


def _parse_general(
    data: bytes, id_rule: IdRule, lowercase_ids: bool, separator: str = ","
) -> Parsed:
    """Parse any block of valid UTF-8 with Arrow string kernels."""
    ascii_only = data.isascii()
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int32))
    whole = pa.StringArray.from_buffers(1, offsets, pa.py_buffer(data))
    lines = pc.split_pattern(whole, "\n").flatten()
    newlines = len(lines) - 1
    if data.endswith(b"\n"):
        lines = lines.slice(0, newlines)
    n = len(lines)

    # Blank lines are empty or start with a space or tab: test the few candidates fully.
    blank = _np(pc.binary_length(lines)) == 0
    spaces = b" " in data
    maybe = blank | _np(pc.starts_with(lines, "\t"))
    if spaces:
        maybe |= _np(pc.starts_with(lines, " "))
    if maybe.any():
        where = np.flatnonzero(maybe)
        test = pc.match_substring_regex(pc.take(lines, pa.array(where)), r"^[ \t]*$")
        blank[where] = _np(test)

    cols = _split_columns(lines, blank, spaces, spaces and b"  " in data, separator)
    ncols = _np(pc.list_value_length(cols))
    syntax = (ncols == 1) | (ncols > 3)
    u8 = np.frombuffer(data, np.uint8)
    controls = np.count_nonzero(u8 < 0x20)
    tabs = np.count_nonzero(u8 == 0x09) if spaces else ncols.sum() - n
    if controls != newlines + tabs or b"\x7f" in data or (not ascii_only and b"\xc2" in data):
        syntax |= _np(pc.match_substring_regex(lines, _CONTROL_RE))

    flat = cols.flatten()
    starts = _np(cols.offsets)[:-1] - cols.offsets[0].as_py()
    ids = pc.take(flat, pa.array(starts))
    id_len = _np(pc.binary_length(ids))
    if id_rule == "visitor_id":
        id_ok = (id_len == 38) & _np(pc.ascii_is_decimal(ids))
    else:
        id_ok = (id_len > 0) & ~_np(pc.match_substring(ids, ":"))
        if b"%" in data:  # AAM forbids the encoded colon too, in any case
            id_ok &= ~_np(pc.match_substring(ids, "%3a", ignore_case=True))
    if lowercase_ids:
        ids = pc.ascii_lower(ids) if ascii_only else pc.utf8_lower(ids)

    # Columns 2 and 3 (SEGMENTS, REMOVED), then their tokens.
    col_line = np.repeat(np.arange(n), ncols)
    col_pos = np.arange(len(flat)) - np.repeat(starts, ncols)
    segment_col = (col_pos == 1) | (col_pos == 2)
    tok_lists = pc.split_pattern(pc.filter(flat, _mask(segment_col)), separator)
    tok_col = _np(pc.list_parent_indices(tok_lists))
    tokens = tok_lists.flatten()
    if spaces:
        tokens = pc.utf8_trim(tokens, " ")
    tok_len = _np(pc.binary_length(tokens))
    present = tok_len > 0
    tok_line = col_line[segment_col][tok_col][present]
    tok_op = (col_pos[segment_col][tok_col] == 1)[present]
    tokens = pc.filter(tokens, _mask(present))
    tok_bad = (tok_len[present] > 18) | ~_np(pc.ascii_is_decimal(tokens))
    reason = _reasons(n, syntax, id_ok, tok_line, tok_bad, blank)

    kept = reason[tok_line] == _OK
    pair_line = tok_line[kept]
    return Parsed(
        reason=reason,
        pair_line=pair_line,
        ids=pc.take(ids, pa.array(pair_line)),
        sids=pc.cast(pc.filter(tokens, _mask(kept)), pa.int64()),
        ops=tok_op[kept],
        newlines=newlines,
    )


def parse_block(
    data: bytes,
    id_rule: IdRule,
    lowercase_ids: bool,
    *,
    simple: bool = True,
    separator: str = ",",
    integer_ids: bool = False,
) -> Parsed:
    """Parse a block of whole lines (only the file's last line may lack its newline).

    Args:
        data: the block.
        id_rule: the ID rule of the data source.
        lowercase_ids: lower-case the IDs.
        simple: try the numpy parser first (tests turn it off to compare both parsers).
        separator: the separator of the segment lists: ``,``, ``;``, ``|`` or a space.
        integer_ids: give visitor IDs as :attr:`Parsed.id_halves` instead of text
            (``id_rule`` must be ``visitor_id``).

    Returns:
        The block's :class:`Parsed` lines.
    """
    bad_lines: list[int] = []
    ascii_only = data.isascii()
    if not ascii_only:
        data, bad_lines = _blank_bad_lines(data)
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")  # strips one CR per line end; lone CRs stay
    parsed = None
    if separator not in SEPARATORS:
        raise ValueError(f"separator must be one of {SEPARATORS}, not {separator!r}")
    if integer_ids and id_rule != "visitor_id":
        raise ValueError("integer_ids needs the visitor_id rule")
    if simple and ascii_only and not (b" " in data or b"\r" in data or b"\x7f" in data):
        parsed = _parse_simple(data, id_rule, lowercase_ids, separator, integer_ids)
    if parsed is None:
        parsed = _parse_general(data, id_rule, lowercase_ids, separator)
        if integer_ids and parsed.ids is not None:
            parsed.id_halves, parsed.ids = _string_halves(parsed.ids), None
    parsed.reason[bad_lines] = _ENC
    return parsed
