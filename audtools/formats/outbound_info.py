"""AAM transfer-control files (``.info``) and the checks of a file against them (SPEC §4.2).

An ``.info`` is JSON, also accepted with unquoted keys, listing ``Files`` with ``FileName``,
``FileLineCount``, ``FileByteSize`` and optionally ``md5``. Unquoted keys are quoted by a single
linear pass (:func:`quote_keys`), never by a regular expression that could backtrack, and an
``.info`` over :data:`MAX_INFO_BYTES` is unreadable ("too large").

Example:
    >>> entries = parse_info(b'{Files: [{FileName: "a.sync", FileLineCount: 2, FileByteSize: 9}]}', "a.info")
    >>> entries[0].file_name, entries[0].line_count
    ('a.sync', 2)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any, BinaryIO

from audtools.errors import InputError

__all__ = [
    "MAX_INFO_BYTES",
    "InfoEntry",
    "check_entry",
    "file_md5",
    "stream_md5",
    "line_count_agrees",
    "parse_info",
    "quote_keys",
    "read_info",
]

PathLike = str | os.PathLike[str]

MAX_INFO_BYTES = 1 << 20
"""An ``.info`` larger than this is unreadable ("too large"): AAM's list a few hundred files."""

@dataclass(frozen=True)
class InfoEntry:
    """One ``Files`` entry of a ``.info`` manifest.

    Attributes:
        file_name: the bare name of the listed file.
        line_count: lines of its uncompressed content (a last line without newline counted;
            its newline count is accepted too).
        byte_size: its size as stored (compressed bytes for a ``.gz``).
        md5: lower-case hex MD5 of the file as stored, when the manifest gives one.
    """

    file_name: str
    line_count: int
    byte_size: int
    md5: str | None


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


def quote_keys(text: str) -> str:
    """Quote the bare keys of a JSON-like text (``{Files: [...]}``), in one linear pass.

    Strings are copied as they are; a bare word (letters, digits, ``_``, ``$``, not starting with a
    digit) followed by optional whitespace and ``:`` is quoted. Values such as ``true`` are left.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif ch.isascii() and (ch.isalpha() or ch in "_$"):
            j = i + 1
            while j < n and text[j].isascii() and (text[j].isalnum() or text[j] in "_$"):
                j += 1
            k = j
            while k < n and text[k] in " \t\r\n":
                k += 1
            word = text[i:j]
            out.append(f'"{word}"' if k < n and text[k] == ":" else word)
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def parse_info(data: bytes, name: str) -> list[InfoEntry]:
    """The ``Files`` entries of an ``.info``'s content.

    The manifest is JSON, also accepted with unquoted keys. ``Totals`` and any other key, at the top
    level or inside an entry, are ignored.

    Args:
        data: the file's bytes (at most :data:`MAX_INFO_BYTES`).
        name: its bare name, for messages.

    Returns:
        One entry per listed file, in the manifest's order.

    Raises:
        InputError: code ``bad_info`` when the file is too large, not UTF-8 or not JSON, has no
            ``Files`` list, an entry lacks ``FileName``, ``FileLineCount`` or ``FileByteSize``, a
            value has the wrong type, or a name is listed twice.
    """
    if len(data) > MAX_INFO_BYTES:
        raise _bad_info(name, f"it is too large (over {MAX_INFO_BYTES} bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _bad_info(name, f"it is not UTF-8 ({exc})") from exc
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested thousands of levels deep
        try:
            doc = json.loads(quote_keys(text))
        except (ValueError, RecursionError) as exc:
            raise _bad_info(name, f"it is not JSON ({exc})") from exc
    return _entries(name, doc)


def _entries(path: PathLike, doc: Any) -> list[InfoEntry]:
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


def read_info(path: PathLike) -> list[InfoEntry]:
    """Read the ``Files`` entries of an ``.info`` file; see :func:`parse_info`.

    Raises:
        InputError: code ``bad_info`` (also when the file cannot be read).
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_INFO_BYTES + 1)
    except OSError as exc:
        raise _bad_info(path, f"it cannot be read ({exc})") from exc
    return parse_info(data, os.path.basename(os.fspath(path)))


def line_count_agrees(entry: InfoEntry, newlines: int, last_line_open: bool) -> bool:
    """Whether ``FileLineCount`` agrees: lines (a last line without newline included) or newlines.

    Args:
        entry: the manifest entry.
        newlines: newline characters of the uncompressed content.
        last_line_open: whether the content ends with a line without newline.
    """
    return entry.line_count in (newlines, newlines + (1 if last_line_open else 0))


def stream_md5(stored: BinaryIO) -> str:
    """The lower-case hex MD5 of an open file as stored, read in 1 MiB blocks."""
    digest = hashlib.md5(usedforsecurity=False)
    while block := stored.read(1 << 20):
        digest.update(block)
    return digest.hexdigest()


def file_md5(path: PathLike) -> str:
    """The lower-case hex MD5 of a file as stored (see :func:`stream_md5`)."""
    with open(path, "rb") as f:
        return stream_md5(f)


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
