"""AAM outbound batch file names, read by each data source's Format (SPEC §4.1).

Each data source's ``outbound_name`` is compiled once, when the configuration is read
(:mod:`audtools.config.templates`); this module reads names with it: the timestamp by
``outbound_timestamp``, the split (``-N`` or 3 or more digits), the extension (``.sync``,
``.sync.gz``, ``.sync.zip``, any case), and which data source claims a name.

Example:
    >>> name = parse_name("ftp_46390_14016_iter_1486140844000-1.sync.gz")
    >>> name.root, name.split, name.gzip
    ('ftp_46390_14016_iter_1486140844000', 1, True)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal, NamedTuple, TypeVar

from audtools.config import DataSource
from audtools.config.templates import DEFAULT_TEMPLATE, NameTemplate, compile_template
from audtools.formats.outbound_timestamps import SplitForm, timestamp_and_split

__all__ = [
    "BATCH_ENDINGS",
    "NOT_BATCHES",
    "Claim",
    "NameMatcher",
    "OutboundName",
    "info_name",
    "looks_like_batch",
    "parse_name",
    "read_name",
]

Mode = Literal["full", "iter"]
_T = TypeVar("_T")

# AAM's inbound and ID-synchronisation files: never batches, never listed (SPEC §4.1).
NOT_BATCHES = ("ftp_dpm_", "c2c_id_", "adobe_id_")
BATCH_ENDINGS = (".sync", ".sync.gz", ".sync.zip", ".info")
_DEFAULT = compile_template(DEFAULT_TEMPLATE, "auto", dpid=0)
_new = tuple.__new__  # builds a named tuple without its __new__ written in Python


class OutboundName(NamedTuple):
    """A file name read by a data source's template (immutable; a named tuple, since drops list
    up to hundreds of thousands of names and a tuple is several times cheaper to build).

    Attributes:
        name: the bare file name.
        sync_type: ``ftp``, ``s3`` or ``http`` (lower-cased).
        destination_id: the ``ORDER_ID`` (informational), when the template has it.
        master_dpid: the data source the name belongs to (``MASTER_DPID``, else ``DPID``).
        alias: the ``PID_ALIAS``, which may contain ``_``.
        mode: ``full`` or ``iter``.
        timestamp_ms: the batch time in UTC milliseconds.
        split: the part number, or None for the file without split (part 0).
        split_form: ``dash`` (``-N``), ``digits`` (3 or more digits) or None.
        root: the name without split and extensions; all parts of a batch share it.
        compression: ``gz``, ``zip`` or None.
        ts_text: the timestamp's digits as written (for the ``auto`` ambiguity rule).
    """

    name: str
    sync_type: str
    destination_id: int | None
    master_dpid: int
    alias: str | None
    mode: Mode
    timestamp_ms: int
    split: int | None
    split_form: SplitForm | None
    root: str
    compression: str | None
    ts_text: str

    @property
    def gzip(self) -> bool:
        """Whether the file is gzip-compressed (``.sync.gz``)."""
        return self.compression == "gz"

    @property
    def part(self) -> int:
        """The part number: the split, 0 for the file without split."""
        return self.split or 0

    @property
    def info_name(self) -> str:
        """The transfer-control file named after the batch root, ``ROOT.info``."""
        return info_name(self.root)


def info_name(root: str) -> str:
    """The transfer-control file name of a batch root: ``ROOT.info``."""
    return f"{root}.info"


def looks_like_batch(name: str) -> bool:
    """Whether ``name`` ends like a batch or ``.info`` (any case), and is not an inbound file."""
    lower = name.lower()
    return lower.endswith(BATCH_ENDINGS) and not lower.startswith(NOT_BATCHES)


def read_name(template: NameTemplate, name: str, *, generic: bool = False) -> OutboundName | str | None:
    """Read ``name`` with a data source's compiled template.

    Args:
        template: the data source's compiled ``outbound_name``.
        name: a bare file name.
        generic: read names of any dpid (for diagnostics), not only the data source's own.

    Returns:
        The name's parts; a reason (``bad timestamp``, ``timestamp of N digits: ...``) when the
        template matches but the timestamp or split cannot be read; None when it does not match.
    """
    m = (template.generic if generic else template.own).fullmatch(name)
    if m is None:
        return None
    return reading(template, m, name)


def reading(template: NameTemplate, m: re.Match[str], name: str) -> OutboundName | str:
    """The parts of ``name`` from a match of one of ``template``'s patterns (see
    :func:`read_name`). Drops list up to hundreds of thousands of names: the common case (a
    whole numeric timestamp, a ``-N`` split or none) is read without a further call."""
    g = m.groups()
    i_sync, i_order, i_dpid, i_master, i_alias, i_mode, i_ts, i_digits, i_dash, i_x, i_comp, i_ext = template.groups
    ts = g[i_ts] or ""
    if template.split_after_timestamp:
        dash, extra = g[i_dash], g[i_digits] or ""
        setting = template.timestamp
        n = len(ts) + len(extra)
        if not template.fields and ((setting == "milliseconds" and n == 13) or (setting == "seconds" and n == 10)
                                    or (setting == "auto" and n in (10, 13))):
            # A whole numeric timestamp, with a dash split or none.
            ts_text = ts + extra if extra else ts
            timestamp_ms = int(ts_text) * (1000 if n == 10 else 1)
            split: str | None = dash
            form: SplitForm | None = None if dash is None else "dash"
        else:
            read = timestamp_and_split(template, dash, extra, ts)
            if isinstance(read, str):
                return read
            timestamp_ms, ts_text, split, form = read
        root = name[: m.start(i_ts + 1) + len(ts_text)]
    else:
        read = timestamp_and_split(template, None, "", ts)
        if isinstance(read, str):
            return read
        timestamp_ms, ts_text, split, form = read
        x = g[i_x] if i_x >= 0 else None
        if x is not None:
            split, form = x.lstrip("-"), ("dash" if x.startswith("-") else "digits")
            root = name[: m.start(i_x + 1)] + name[m.end(i_x + 1) : m.start(i_ext + 1)]
        else:
            root = name[: m.start(i_ext + 1)]
    sync = g[i_sync] if i_sync >= 0 else None
    order = g[i_order] if i_order >= 0 else None
    comp = g[i_comp]
    dpid = (g[i_master] if i_master >= 0 else None) or g[i_dpid]
    return _new(OutboundName, (
        name,
        sync.lower() if sync else "",
        None if order is None else int(order),
        int(dpid or 0),
        g[i_alias] if i_alias >= 0 else None,
        "full" if g[i_mode] == "full" else "iter",
        timestamp_ms,
        None if split is None else int(split),
        form,
        root,
        comp.lower() if comp else None,
        ts_text,
    ))


def parse_name(name: str) -> OutboundName | None:
    """Read ``name`` with the default template and ``outbound_timestamp = "auto"``.

    Example:
        >>> parse_name("s3_1_2_my_alias_full_1486140844000001.sync").split
        1
    """
    read = read_name(_DEFAULT, name, generic=True)
    return read if isinstance(read, OutboundName) else None


_MAX_MEMO = 100_000
"""Roots and endings a :class:`NameMatcher` remembers at most (a drop lists one root per batch)."""
_DIGITS = "0123456789"
_COMPRESSION = {"sync": None, "sync.gz": "gz", "sync.zip": "zip"}
_UNSEEN: tuple[int, str | None] = (-1, "not read yet")


def _dash_ending(tail: str) -> tuple[int, str | None] | None:
    """``(split, compression)`` of what follows a name's last ``-`` when it is ``N.sync``,
    ``N.sync.gz`` or ``N.sync.zip`` (ASCII digits, any case of the extension), else None."""
    digits, _, extension = tail.partition(".")
    if not (digits.isdigit() and digits.isascii() and extension.isascii()):
        return None
    extension = extension.lower()
    if extension not in _COMPRESSION:
        return None
    return int(digits), _COMPRESSION[extension]


class Claim(NamedTuple):
    """Who claims a drop file name.

    Attributes:
        readings: ``{source_id: name}`` for each data source whose template reads it as its own.
        problems: ``{source_id: reason}`` for data sources whose template matches it but whose
            timestamp or split cannot be read.
    """

    readings: dict[str, OutboundName]
    problems: dict[str, str]


class NameMatcher:
    """Reads drop file names with every data source's template (compiled once, at configuration).

    Args:
        sources: the configured data sources.
    """

    def __init__(self, sources: Iterable[DataSource]) -> None:
        self.sources = {s.id: s for s in sources}
        self._templates = [(s.id, s.name_template) for s in self.sources.values()]
        self._by_dpid = {s.dpid: s.id for s in self.sources.values()}
        # Templates whose dpid has one reading (``dpid_fixed``): one anchored match of the
        # name's start (shared by the templates that start alike) gives the dpid, and only the
        # data sources with that dpid read the name whole. Other templates are tried one by one.
        self._heads: list[tuple[re.Pattern[str], dict[str, list[tuple[str, NameTemplate]]]]] = []
        heads: dict[str, dict[str, list[tuple[str, NameTemplate]]]] = {}
        self._loose: list[tuple[str, NameTemplate]] = []
        for s in self.sources.values():
            t = s.name_template
            if t.head is None:
                self._loose.append((s.id, t))
                continue
            if t.head.pattern not in heads:
                heads[t.head.pattern] = {}
                self._heads.append((t.head, heads[t.head.pattern]))
            heads[t.head.pattern].setdefault(str(s.dpid), []).append((s.id, t))
        # With one template start and no other template, :meth:`sole` reads the common case.
        self._only_head = self._heads[0] if len(self._heads) == 1 and not self._loose else None
        # For :meth:`sole`: readings by the text before the timestamp, and what follows a
        # name's last ``-``.
        self._prefixes: dict[str, tuple[str, str, int | None, int, str | None, Mode, str]] = {}
        self._endings: dict[str, tuple[int, str | None] | None] = {}

    def sole(self, name: str) -> tuple[str, OutboundName] | None:
        """``(source_id, name)`` when exactly one data source can read ``name`` and it does,
        else None (then :meth:`claim` says who claims it and why not): the common case of a
        drop's names, read without building a :class:`Claim`.

        A name ``PREFIX TIMESTAMP-N.sync[.gz|.zip]`` whose prefix (the text before the timestamp)
        was read here before, by a template that ``reads_by_prefix``, reuses that reading: such
        names differ in nothing but the timestamp, the split and the compression (see
        tests/test_outbound_names_parts.py, which checks it against whole readings).
        """
        if self._only_head is None:
            return None
        stem, dash, tail = name.rpartition("-")
        if dash:
            # The prefix ends in a non-digit: the timestamp is the last 13 digits (milliseconds,
            # most common) or 10 (seconds), never another width that reads whole.
            n = 13
            known = self._prefixes.get(stem[:-13])
            if known is None:
                n = 10
                known = self._prefixes.get(stem[:-10])
            if known is not None:
                ts = stem[-n:]
                source_id, sync, order, dpid, alias, mode, setting = known
                if ts.isdigit() and ts.isascii() and setting != ("seconds" if n == 13 else "milliseconds"):
                    ending = self._endings.get(tail, _UNSEEN)
                    if ending is _UNSEEN:
                        ending = self._remember(self._endings, tail, _dash_ending(tail))
                    if ending is not None:
                        return source_id, _new(OutboundName, (
                            name, sync, order, dpid, alias, mode, int(ts) if n == 13 else int(ts) * 1000,
                            ending[0], "dash", stem, ending[1], ts,
                        ))
        read = self._sole_whole(name)
        if read is not None and dash:
            self._learn(read, stem)
        return read

    def _sole_whole(self, name: str) -> tuple[str, OutboundName] | None:
        """:meth:`sole` without the reuse of earlier readings."""
        assert self._only_head is not None
        head, by_dpid = self._only_head
        m = head.match(name)
        if m is None:
            return None
        claimants = by_dpid.get(m.group("head"))
        if claimants is None or len(claimants) != 1:
            return None
        source_id, template = claimants[0]
        full = template.own.fullmatch(name)
        if full is None:
            return None
        result = reading(template, full, name)
        return None if isinstance(result, str) else (source_id, result)

    def _learn(self, read: tuple[str, OutboundName], stem: str) -> None:
        """Remember the prefix of a name that :meth:`_sole_whole` read, when later names with the
        same prefix can reuse its reading: its template ``reads_by_prefix``, the name ends in
        ``-N`` and an extension, and its data source is settled within the prefix."""
        source_id, result = read
        template = self.sources[source_id].name_template
        prefix = stem.rstrip(_DIGITS)
        if not (template.reads_by_prefix and result.split_form == "dash" and result.root == stem
                and len(prefix) + len(result.ts_text) == len(stem)):
            return
        assert self._only_head is not None
        head = self._only_head[0].match(prefix)
        if head is None or head.end() >= len(prefix):
            return  # the dpid's digits reach the timestamp: the prefix does not settle the source
        self._remember(self._prefixes, prefix, (
            source_id, result.sync_type, result.destination_id, result.master_dpid, result.alias,
            result.mode, template.timestamp,
        ))

    @staticmethod
    def _remember(memo: dict[str, _T], key: str, value: _T) -> _T:
        """``memo[key] = value``, the memo emptied first when it is full (it lives as long as the
        matcher, which may read more names than one drop lists)."""
        if len(memo) >= _MAX_MEMO:
            memo.clear()
        memo[key] = value
        return value

    def claim(self, name: str) -> Claim:
        """Every data source's reading of ``name`` (a batch file name, not an ``.info``)."""
        readings: dict[str, OutboundName] = {}
        problems: dict[str, str] = {}
        for head, by_dpid in self._heads:
            m = head.match(name)
            if m is None:
                continue
            for source_id, template in by_dpid.get(m.group("head"), ()):
                self._read_one(source_id, template, name, readings, problems)
        for source_id, template in self._loose:
            self._read_one(source_id, template, name, readings, problems)
        return Claim(readings, problems)

    @staticmethod
    def _read_one(
        source_id: str, template: NameTemplate, name: str,
        readings: dict[str, OutboundName], problems: dict[str, str],
    ) -> None:
        """Read ``name`` with one data source's own pattern into ``readings`` or ``problems``."""
        full = template.own.fullmatch(name)
        if full is None:
            return
        result = reading(template, full, name)
        if isinstance(result, str):
            problems[source_id] = result
        else:
            readings[source_id] = result

    def why_ignored(self, name: str) -> tuple[str, list[str]]:
        """Why no data source reads ``name``, and the data sources the reason concerns."""
        read = read_name(_DEFAULT, name, generic=True)
        if isinstance(read, OutboundName):
            source_id = self._by_dpid.get(read.master_dpid)
            if source_id is None:
                return f"no data source with DPID {read.master_dpid}", []
            return f"does not match the outbound_name of data source {source_id}", [source_id]
        for source_id, template in self._templates:
            if read_name(template, name, generic=True) is not None:
                return f"does not read as a name of data source {source_id} (its DPID differs)", []
        if isinstance(read, str):
            return read, []
        return "not an outbound batch name of any data source's outbound_name", []
