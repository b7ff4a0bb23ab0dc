"""AAM outbound batch files: their names and their ``.info`` manifests (SPEC 4.1, 4.2).

A batch's rows are streamed by :class:`OutboundReader` (:mod:`audtools.formats.outbound_rows`,
which parses each block with :mod:`audtools.formats.outbound_parse`); the reader and its schemas
are importable from here too.

Example:
    >>> name = parse_name("ftp_46390_14016_iter_1486140844000-1.sync.gz")
    >>> name.root, name.split, name.gzip
    ('ftp_46390_14016_iter_1486140844000', 1, True)
    >>> reader = OutboundReader("in/" + name.name, id_rule="visitor_id")
    >>> for chunk in reader:  # doctest: +SKIP
    ...     chunk.pairs  # line, id, sid, op
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Literal

from audtools.errors import InputError
from audtools.formats.outbound_parse import REJECT_REASONS, IdRule
from audtools.formats.outbound_rows import (
    PAIRS_SCHEMA,
    REJECTS_SCHEMA,
    OutboundReader,
    PathLike,
    RowChunk,
    count_newlines,
)

__all__ = [
    "PAIRS_SCHEMA",
    "REJECTS_SCHEMA",
    "REJECT_REASONS",
    "IdRule",
    "InfoEntry",
    "OutboundName",
    "OutboundReader",
    "PathLike",
    "RowChunk",
    "check_entry",
    "count_newlines",
    "file_md5",
    "info_name",
    "parse_name",
    "read_info",
]

Mode = Literal["full", "iter"]

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
