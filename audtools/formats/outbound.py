"""AAM outbound batch files: their names, their ``.info`` manifests and their rows (SPEC 4.1, 4.2).

Rows stream: the content is read (and gunzipped) by a helper thread in blocks of at most 4 MiB cut
at the last newline, and each block is classified at once, with numpy over its bytes when it is
plain ASCII without spaces or control characters, else with Arrow string kernels. No Python code
runs per row, so gigabyte files go through at millions of rows per second in bounded memory.

Example:
    >>> name = parse_name("ftp_46390_14016_iter_1486140844000-1.sync.gz")
    >>> name.root, name.split, name.gzip
    ('ftp_46390_14016_iter_1486140844000', 1, True)
    >>> reader = OutboundReader("in/" + name.name, id_rule="visitor_id")
    >>> for chunk in reader:  # doctest: +SKIP
    ...     chunk.pairs  # line, id, sid, op
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import json
import os
import queue
import re
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audtools.errors import InputError

__all__ = [
    "PAIRS_SCHEMA",
    "REJECTS_SCHEMA",
    "REJECT_REASONS",
    "InfoEntry",
    "OutboundName",
    "OutboundReader",
    "RowChunk",
    "check_entry",
    "count_newlines",
    "file_md5",
    "info_name",
    "parse_name",
    "read_info",
]

IdRule = Literal["visitor_id", "declared_id"]
Mode = Literal["full", "iter"]
PathLike = str | os.PathLike[str]

# ---------------------------------------------------------------------------------------------
# Names

_NAME = re.compile(
    r"(?P<sync>(?i:ftp|s3|http))_(?P<did>[0-9]+)_(?P<dpid>[0-9]+)"
    # Greedy alias: MODE is the last `_full_` / `_iter_` that the timestamp follows.
    r"(?:_(?P<alias>.+))?_(?P<mode>full|iter)_"
    r"(?:(?P<ts13>[0-9]{13})(?:(?P<digits>[0-9]{3,})|-(?P<dash13>[0-9]+))?"
    r"|(?P<ts10>[0-9]{10})(?:-(?P<dash10>[0-9]+))?)"
    r"(?P<ext>(?i:\.sync)(?P<gz>(?i:\.gz))?)",
    re.DOTALL,
)


@dataclass(frozen=True)
class OutboundName:
    """The parts of an outbound file name ``SYNCTYPE_DID_MASTERDPID[_ALIAS]_MODE_TIMESTAMP[SPLIT]``.

    Attributes:
        name: the bare file name.
        sync_type: ``ftp``, ``s3`` or ``http`` (lower-cased).
        destination_id: the AAM destination ID (informational).
        master_dpid: the data source ID of the IDs in the rows.
        alias: the optional alias, which may contain ``_``.
        mode: ``full`` (all current members) or ``iter`` (changes since the last file).
        timestamp_ms: the batch time in UTC milliseconds (a 10-digit timestamp times 1000).
        split: the part number, or None for a file that is not split.
        root: the name without split and extensions; all parts of a batch share it.
        gzip: whether the file is gzip-compressed (``.sync.gz``).
    """

    name: str
    sync_type: str
    destination_id: int
    master_dpid: int
    alias: str | None
    mode: Mode
    timestamp_ms: int
    split: int | None
    root: str
    gzip: bool

    @property
    def info_name(self) -> str:
        """The name of the batch's transfer-control file, ``ROOT.info``."""
        return info_name(self.root)


def parse_name(name: str) -> OutboundName | None:
    """Parse an outbound batch file name.

    Args:
        name: a bare file name (no directory).

    Returns:
        The parts of the name, or None when it is not an outbound batch file (``.info`` files,
        ``catalog.json`` and anything else).

    Example:
        >>> parse_name("s3_1_2_my_alias_full_1486140844000001.sync").split
        1
    """
    m = _NAME.fullmatch(name)
    if m is None:
        return None
    if m["ts13"] is not None:
        timestamp_ms = int(m["ts13"])
        split_text = m["digits"] if m["digits"] is not None else m["dash13"]
    else:
        timestamp_ms = int(m["ts10"]) * 1000
        split_text = m["dash10"]
    return OutboundName(
        name=name,
        sync_type=m["sync"].lower(),
        destination_id=int(m["did"]),
        master_dpid=int(m["dpid"]),
        alias=m["alias"],
        mode="full" if m["mode"] == "full" else "iter",
        timestamp_ms=timestamp_ms,
        split=None if split_text is None else int(split_text),
        root=name[: m.start("ts13") + 13] if m["ts13"] is not None else name[: m.end("ts10")],
        gzip=m["gz"] is not None,
    )


def info_name(root: str) -> str:
    """The transfer-control file name of a batch root: ``ROOT.info``."""
    return f"{root}.info"


# ---------------------------------------------------------------------------------------------
# .info manifests


@dataclass(frozen=True)
class InfoEntry:
    """One ``Files`` entry of a ``.info`` manifest.

    Attributes:
        file_name: the bare name of the listed file.
        line_count: newline characters of its uncompressed content (``wc -l``).
        byte_size: its size as stored (compressed bytes for a ``.gz``).
        md5: lower-case hex MD5 of the file as stored, when the manifest gives one.
    """

    file_name: str
    line_count: int
    byte_size: int
    md5: str | None


# A JSON string, or a bare identifier used as a key (AAM writes some manifests that way).
_INFO_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|([A-Za-z_$][A-Za-z0-9_$]*)(?=\s*:)', re.DOTALL)
_MD5 = re.compile(r"[0-9A-Fa-f]{32}")


def _bad_info(path: PathLike, why: str) -> InputError:
    name = os.path.basename(os.fspath(path))
    return InputError(
        f"{name} is not a valid transfer-control file: {why}. "
        "Replace it with a valid .info file (or remove it) and run again.",
        code="bad_info",
        file=name,
    )


def _count_field(path: PathLike, item: dict[str, Any], key: str, index: int) -> int:
    value = item.get(key)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad_info(path, f"Files[{index}].{key} must be a non-negative integer")
    return value


def read_info(path: PathLike) -> list[InfoEntry]:
    """Read the ``Files`` entries of a ``ROOT.info`` manifest.

    The manifest is JSON, also accepted with unquoted keys. ``Totals`` and any other key, at the top
    level or inside an entry, are ignored.

    Args:
        path: the ``.info`` file.

    Returns:
        One entry per listed file, in the manifest's order.

    Raises:
        InputError: code ``bad_info`` when the file cannot be read or parsed, has no ``Files``
            list, an entry lacks ``FileName``, ``FileLineCount`` or ``FileByteSize``, a value has
            the wrong type, or a name is listed twice.
    """
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad_info(path, f"it cannot be read ({exc})") from exc
    try:
        doc = json.loads(text)
    except ValueError:
        quoted = _INFO_TOKEN.sub(lambda m: f'"{m[1]}"' if m[1] else m[0], text)
        try:
            doc = json.loads(quoted)
        except ValueError as exc:
            raise _bad_info(path, f"it is not JSON ({exc})") from exc
    files = doc.get("Files") if isinstance(doc, dict) else None
    if not isinstance(files, list):
        raise _bad_info(path, "it has no Files list")
    entries: list[InfoEntry] = []
    seen: set[str] = set()
    for index, item in enumerate(files):
        if not isinstance(item, dict):
            raise _bad_info(path, f"Files[{index}] is not an object")
        file_name = item.get("FileName")
        if (
            not isinstance(file_name, str)
            or file_name in ("", ".", "..")
            or "/" in file_name
            or "\\" in file_name
        ):
            raise _bad_info(path, f"Files[{index}].FileName must be a bare file name")
        if file_name in seen:
            raise _bad_info(path, f"{file_name} is listed twice")
        seen.add(file_name)
        line_count = _count_field(path, item, "FileLineCount", index)
        byte_size = _count_field(path, item, "FileByteSize", index)
        md5 = item.get("md5")
        if md5 is not None and not (isinstance(md5, str) and _MD5.fullmatch(md5)):
            raise _bad_info(path, f"Files[{index}].md5 must be 32 hex digits")
        entries.append(InfoEntry(file_name, line_count, byte_size, md5.lower() if md5 else None))
    return entries


def file_md5(path: PathLike) -> str:
    """The lower-case hex MD5 of a file as stored, read in 1 MiB blocks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def check_entry(path: PathLike, entry: InfoEntry, newline_count: int | None) -> str | None:
    """Check a stored file against its ``.info`` entry.

    Args:
        path: the file as stored.
        entry: its manifest entry.
        newline_count: newline characters of its uncompressed content (``OutboundReader``'s
            ``newline_count`` or :func:`count_newlines`); None skips the line-count check.

    Returns:
        None when the file agrees, else a short reason: ``"missing"``,
        ``"size 120, expected 118"``, ``"md5 differs"``, ``"12 lines, expected 13"`` (checked in
        that order), or ``"unreadable (...)"``.
    """
    try:
        size = os.stat(path).st_size
        if size != entry.byte_size:
            return f"size {size}, expected {entry.byte_size}"
        if entry.md5 is not None and file_md5(path) != entry.md5:
            return "md5 differs"
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if newline_count is not None and newline_count != entry.line_count:
        return f"{newline_count} lines, expected {entry.line_count}"
    return None


# ---------------------------------------------------------------------------------------------
# Rows

REJECT_REASONS: tuple[str, ...] = (
    "bad_encoding",
    "bad_syntax",
    "bad_id",
    "bad_segment",
    "no_segments",
)
"""Reasons a row is rejected, highest precedence first."""

_OK, _ENC, _SYNTAX, _ID, _SEG, _NOSEG, _BLANK = 0, 1, 2, 3, 4, 5, -1
_REASON_NAMES = pa.array(("",) + REJECT_REASONS, pa.string())
_BOM = b"\xef\xbb\xbf"
# Unicode category Cc but tab; in RE2's UTF-8 mode \x{9f} is the code point U+009F.
_CONTROL_RE = r"[\x00-\x08\x0a-\x1f\x7f-\x{9f}]"
# Blocks parsed at once: small enough to stay in cache and be reused by the allocator.
_PARSE_BYTES = 4 * 2**20

PAIRS_SCHEMA = pa.schema(
    [("line", pa.int64()), ("id", pa.string()), ("sid", pa.int64()), ("op", pa.int8())]
)
REJECTS_SCHEMA = pa.schema([("line", pa.int64()), ("reason", pa.string())])


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


def _corrupt(name: str, why: object) -> InputError:
    return InputError(
        f"{name} cannot be decompressed: {why}. Ask the sender to resend the file; "
        "nothing was imported.",
        code="corrupt_gzip",
        file=name,
    )


def _content_blocks(path: PathLike, size: int) -> Iterator[bytes]:
    """Yield the uncompressed content of a batch file in blocks of about ``size`` bytes.

    Raises:
        InputError: ``corrupt_gzip`` for a ``.gz`` that cannot be decompressed, ``bad_input``
            for a file that cannot be read.
    """
    name = os.path.basename(os.fspath(path))
    try:
        with open(path, "rb") as raw:
            if not name.lower().endswith(".gz"):
                while block := raw.read(size):
                    yield block
                return
            if os.fstat(raw.fileno()).st_size == 0:
                raise _corrupt(name, "the file is empty")
            try:
                with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                    while block := f.read(size):
                        yield block
            except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
                raise _corrupt(name, exc) from exc
    except InputError:
        raise
    except OSError as exc:
        raise InputError(
            f"{name} cannot be read: {exc.strerror or exc}. Check the file and its permissions.",
            file=name,
        ) from exc


def _line_blocks(path: PathLike, size: int) -> Iterator[bytes]:
    """Yield the content in blocks of whole lines (the last may lack its newline), BOM dropped."""
    pending: list[bytes] = []
    first = True
    for block in _content_blocks(path, size):
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            pending.append(block)
            continue
        pending.append(block[:cut] if cut < len(block) else block)
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending = [block[cut:]] if cut < len(block) else []
        if first:
            data, first = data.removeprefix(_BOM), False
        yield data
    data = b"".join(pending)
    if first:
        data = data.removeprefix(_BOM)
    if data:
        yield data


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


def count_newlines(path: PathLike, *, chunk_bytes: int = 32 * 2**20) -> int:
    """Count the newline characters of a batch file's uncompressed content, as ``wc -l`` does.

    Raises:
        InputError: code ``corrupt_gzip`` for a ``.gz`` that cannot be decompressed.
    """
    return sum(block.count(b"\n") for block in _content_blocks(path, chunk_bytes))


def _blank_bad_lines(data: bytes) -> tuple[bytes, list[int]]:
    """Empty the lines that are not valid UTF-8, keeping their newlines.

    Returns:
        The cleaned bytes and the 0-based indexes of the emptied lines. The cost is one decode of
        the data plus work proportional to the bad lines.
    """
    try:
        data.decode("utf-8")
        return data, []
    except UnicodeDecodeError:
        pass
    view = memoryview(data)
    out = bytearray()
    bad: list[int] = []
    pos = 0  # a line start, or the newline that ends an emptied line
    newlines_before = 0  # newlines in data[:pos]
    while pos < len(data):
        try:
            codecs.utf_8_decode(view[pos:], "strict", True)
        except UnicodeDecodeError as exc:
            err = pos + exc.start
            start = data.rfind(b"\n", pos, err) + 1 or pos
            end = data.find(b"\n", err)
            end = len(data) if end < 0 else end
            out += view[pos:start]
            newlines_before += data.count(b"\n", pos, start)
            bad.append(newlines_before)
            pos = end
            continue
        out += view[pos:]
        break
    return bytes(out), bad


@dataclass
class _Parsed:
    """A parsed block: a reason code per line and the pairs of its valid rows."""

    reason: np.ndarray  # int8 per line: _OK, _BLANK or a reject
    pair_line: np.ndarray  # 0-based line index of each pair
    ids: pa.Array
    sids: pa.Array
    ops: np.ndarray  # bool: True for SEGMENTS
    newlines: int


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


def _parse_simple(data: bytes, id_rule: IdRule, lowercase_ids: bool) -> _Parsed | None:
    """Parse an ASCII block without spaces, CR or DEL with numpy alone, or return None.

    Pieces are the spans between tabs, commas and newlines. Rather than copying them, one string
    array over ``data`` alternates pieces and their one-byte delimiters.
    """
    u8 = np.frombuffer(data, np.uint8)
    is_delim = (u8 < 11) | (u8 == 44)
    delims = np.flatnonzero(is_delim)
    kinds = u8[delims]
    if np.count_nonzero(u8 < 32) != np.count_nonzero(kinds != 44) or (kinds < 9).any():
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
    if ((before[:pieces] == 44) & (col == 0)).any():
        return None  # a comma in an ID: let the general parser keep the ID whole
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
    return _Parsed(
        reason=reason,
        pair_line=pair_line,
        ids=pc.take(alternating, pa.array(2 * first[pair_line])),
        sids=pc.cast(pc.take(alternating, pa.array(2 * kept)), pa.int64()),
        ops=col[kept] == 1,
        newlines=newlines,
    )


def _split_columns(
    lines: pa.Array, blank: np.ndarray, spaces: bool, double_spaces: bool
) -> pa.ListArray:
    """Split lines into columns: on each tab, or, in a row without a tab, on runs of spaces."""
    cols = pc.split_pattern(lines, "\t")
    if not spaces:
        return cols  # a line without tab or space is a single column either way
    spaced = (_np(pc.list_value_length(cols)) == 1) & ~blank
    if not spaced.any():
        return cols
    subset = pc.filter(lines, _mask(spaced))
    if double_spaces:
        subset = pc.replace_substring_regex(subset, " *, *", ",")
        subset = pc.replace_substring_regex(subset, " +", "\t")
    else:  # single spaces only: the same edits without regular expressions, 5x faster
        subset = pc.replace_substring(pc.replace_substring(subset, ", ", ","), " ,", ",")
        subset = pc.replace_substring(subset, " ", "\t")
    return pc.split_pattern(pc.replace_with_mask(lines, _mask(spaced), subset), "\t")


def _parse_general(data: bytes, id_rule: IdRule, lowercase_ids: bool) -> _Parsed:
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

    cols = _split_columns(lines, blank, spaces, spaces and b"  " in data)
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
    if lowercase_ids:
        ids = pc.ascii_lower(ids) if ascii_only else pc.utf8_lower(ids)

    # Columns 2 and 3 (SEGMENTS, REMOVED), then their comma-separated tokens.
    col_line = np.repeat(np.arange(n), ncols)
    col_pos = np.arange(len(flat)) - np.repeat(starts, ncols)
    segment_col = (col_pos == 1) | (col_pos == 2)
    tok_lists = pc.split_pattern(pc.filter(flat, _mask(segment_col)), ",")
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
    return _Parsed(
        reason=reason,
        pair_line=pair_line,
        ids=pc.take(ids, pa.array(pair_line)),
        sids=pc.cast(pc.filter(tokens, _mask(kept)), pa.int64()),
        ops=tok_op[kept],
        newlines=newlines,
    )


def _parse_block(
    data: bytes, id_rule: IdRule, lowercase_ids: bool, *, simple: bool = True
) -> _Parsed:
    """Parse a block of whole lines (only the file's last line may lack its newline).

    Args:
        data: the block.
        id_rule: the ID rule of the data source.
        lowercase_ids: lower-case the IDs.
        simple: try the numpy parser first (tests turn it off to compare both parsers).
    """
    bad_lines: list[int] = []
    ascii_only = data.isascii()
    if not ascii_only:
        data, bad_lines = _blank_bad_lines(data)
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")  # strips one CR per line end; lone CRs stay
    parsed = None
    if simple and ascii_only and not (b" " in data or b"\r" in data or b"\x7f" in data):
        parsed = _parse_simple(data, id_rule, lowercase_ids)
    if parsed is None:
        parsed = _parse_general(data, id_rule, lowercase_ids)
    parsed.reason[bad_lines] = _ENC
    return parsed


class OutboundReader:
    """Stream the rows of an outbound batch file (``.sync`` or ``.sync.gz``) by chunks.

    Iterating yields one :class:`RowChunk` per ``chunk_bytes`` or so of uncompressed content
    that holds rows; chunks end at a newline, so results do not depend on the chunk size. After
    iteration, ``newline_count``, ``rows_total`` and ``rejected_total`` hold the file's totals.

    Args:
        path: the batch file; a name ending in ``.gz`` is decompressed as a stream.
        id_rule: ``visitor_id`` (38 ASCII digits) or ``declared_id`` (non-empty, no ``:``).
        lowercase_ids: lower-case the IDs (hashed IDs and hex ciphertexts).
        chunk_bytes: uncompressed bytes per chunk (read and parsed in blocks of at most 4 MiB).

    Raises:
        InputError: while iterating, code ``corrupt_gzip`` for a ``.gz`` that cannot be
            decompressed.

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
    ) -> None:
        if id_rule not in ("visitor_id", "declared_id"):
            raise ValueError(f"id_rule must be 'visitor_id' or 'declared_id', not {id_rule!r}")
        if chunk_bytes < 1:
            raise ValueError("chunk_bytes must be positive")
        self.path = path
        self.name = os.path.basename(os.fspath(path))
        self.id_rule: IdRule = id_rule
        self.lowercase_ids = lowercase_ids
        self.chunk_bytes = chunk_bytes
        self.newline_count = 0
        self.rows_total = 0
        self.rejected_total = 0
        self._simple = True

    def __iter__(self) -> Iterator[RowChunk]:
        """Read the file from the start, yielding its chunks in line order."""
        self.newline_count = self.rows_total = self.rejected_total = 0
        lines_before = 0
        pairs: list[pa.Table] = []
        rejects: list[pa.Table] = []
        rows = size = 0
        blocks = _line_blocks(self.path, min(self.chunk_bytes, _PARSE_BYTES))
        for data in _read_ahead(blocks):
            if len(data) >= 2**31 - 1:
                raise InputError(
                    f"{self.name} has a line of more than 2 GiB. Check that it is an outbound "
                    "batch file.",
                    code="bad_input",
                    file=self.name,
                )
            parsed = _parse_block(data, self.id_rule, self.lowercase_ids, simple=self._simple)
            first_line = lines_before + 1
            pairs.append(
                pa.table(
                    [
                        pa.array(parsed.pair_line + first_line, pa.int64()),
                        parsed.ids,
                        parsed.sids,
                        pa.array(parsed.ops, pa.int8()),
                    ],
                    schema=PAIRS_SCHEMA,
                )
            )
            rejected = np.flatnonzero(parsed.reason > 0)
            rejects.append(
                pa.table(
                    [
                        pa.array(rejected + first_line, pa.int64()),
                        pc.take(_REASON_NAMES, pa.array(parsed.reason[rejected])),
                    ],
                    schema=REJECTS_SCHEMA,
                )
            )
            block_rows = int(np.count_nonzero(parsed.reason >= 0))
            lines_before += len(parsed.reason)
            self.newline_count += parsed.newlines
            self.rows_total += block_rows
            self.rejected_total += len(rejected)
            rows += block_rows
            size += len(data)
            if size >= self.chunk_bytes:
                if rows:
                    yield RowChunk(pa.concat_tables(pairs), rows, pa.concat_tables(rejects))
                pairs, rejects, rows, size = [], [], 0, 0
        if rows:
            yield RowChunk(pa.concat_tables(pairs), rows, pa.concat_tables(rejects))
