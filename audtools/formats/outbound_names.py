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

import datetime as dt
import re
from collections.abc import Iterable
from typing import Literal, NamedTuple

from audtools.config import DataSource
from audtools.config.templates import DEFAULT_TEMPLATE, NameTemplate, compile_template

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
SplitForm = Literal["dash", "digits"]

# AAM's inbound and ID-synchronisation files: never batches, never listed (SPEC §4.1).
NOT_BATCHES = ("ftp_dpm_", "c2c_id_", "adobe_id_")
BATCH_ENDINGS = (".sync", ".sync.gz", ".sync.zip", ".info")
_DEFAULT = compile_template(DEFAULT_TEMPLATE, "auto", dpid=0)


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


def _numeric(setting: str, digits: str, dash: str | None) -> tuple[int, str, str | None, SplitForm | None] | str:
    """``(timestamp_ms, ts_text, split, form)`` of a numeric timestamp, or why it is not one."""
    n = len(digits)
    width = {"seconds": 10, "milliseconds": 13}.get(setting)
    if width is None:  # auto: 10 is seconds, 13 milliseconds, 16 or more milliseconds + split
        width = 10 if n == 10 else 13
        if n not in (10, 13) and n < 16:
            return f"timestamp of {n} digits: set outbound_timestamp"
    if n == width:
        ts, split, form = digits, dash, ("dash" if dash is not None else None)
    elif n >= width + 3 and dash is None:
        ts, split, form = digits[:width], digits[width:], "digits"
    else:
        return f"timestamp of {n} digits, not {width} (outbound_timestamp = {setting!r})"
    return int(ts) * (1000 if width == 10 else 1), ts, split, form  # type: ignore[return-value]


def _formatted(template: NameTemplate, text: str) -> int | str:
    """The UTC milliseconds of a formatted timestamp, or ``bad timestamp``."""
    m = template.ts_regex.fullmatch(text) if template.ts_regex is not None else None
    if m is None:
        return "bad timestamp"
    values = dict(zip(template.fields, (int(g) for g in m.groups()), strict=True))
    try:
        when = dt.datetime(
            values.get("year", 1970), values.get("month", 1), values.get("day", 1),
            values.get("hour", 0), values.get("minute", 0), values.get("second", 0),
            tzinfo=dt.UTC,
        )
    except ValueError:
        return "bad timestamp"
    return int(when.timestamp()) * 1000


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


def _split(template: NameTemplate, dash: str | None, extra: str, ts: str) -> tuple[int, str, str | None, SplitForm | None] | str:
    """``(timestamp_ms, ts_text, split, form)`` of a timestamp and what follows it, or why not."""
    if template.fields:
        when = _formatted(template, ts)
        if isinstance(when, str):
            return when
        if extra and (len(extra) < 3 or dash is not None):
            return "bad timestamp"
        form: SplitForm | None = "digits" if extra else ("dash" if dash is not None else None)
        return when, ts, extra or dash, form
    return _numeric(template.timestamp, ts + extra, dash)


def reading(template: NameTemplate, m: re.Match[str], name: str) -> OutboundName | str:
    """The parts of ``name`` from a match of one of ``template``'s patterns (see
    :func:`read_name`). Drops list up to hundreds of thousands of names: the common case (a
    numeric timestamp whose split follows it) is read without a further call."""
    g = m.groups()
    i_sync, i_order, i_dpid, i_master, i_alias, i_mode, i_ts, i_digits, i_dash, i_x, i_comp, i_ext = template.groups
    ts = g[i_ts] or ""
    x = None
    if template.split_after_timestamp:
        dash, extra = g[i_dash], g[i_digits] or ""
        setting = template.timestamp
        n = len(ts) + len(extra)
        if not template.fields and ((setting == "milliseconds" and n == 13) or (setting == "seconds" and n == 10)
                                    or (setting == "auto" and n in (10, 13))):
            # A whole numeric timestamp, with a dash split or none.
            ts_text = ts + extra
            read: tuple[int, str, str | None, SplitForm | None] | str = (
                int(ts_text) * (1000 if n == 10 else 1), ts_text, dash, None if dash is None else "dash"
            )
        else:
            read = _split(template, dash, extra, ts)
    else:
        read = _split(template, None, "", ts)
        x = g[i_x] if i_x >= 0 else None
    if isinstance(read, str):
        return read
    timestamp_ms, ts_text, split, form = read
    if template.split_after_timestamp:
        root = name[: m.start(i_ts + 1) + len(ts_text)]
    elif x is not None:
        split, form = x.lstrip("-"), ("dash" if x.startswith("-") else "digits")
        root = name[: m.start(i_x + 1)] + name[m.end(i_x + 1) : m.start(i_ext + 1)]
    else:
        root = name[: m.start(i_ext + 1)]
    sync = g[i_sync] if i_sync >= 0 else None
    order = g[i_order] if i_order >= 0 else None
    comp = g[i_comp]
    dpid = (g[i_master] if i_master >= 0 else None) or g[i_dpid]
    return OutboundName(
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
    )


def parse_name(name: str) -> OutboundName | None:
    """Read ``name`` with the default template and ``outbound_timestamp = "auto"``.

    Example:
        >>> parse_name("s3_1_2_my_alias_full_1486140844000001.sync").split
        1
    """
    read = read_name(_DEFAULT, name, generic=True)
    return read if isinstance(read, OutboundName) else None


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

    def sole(self, name: str) -> tuple[str, OutboundName] | None:
        """``(source_id, name)`` when exactly one data source can read ``name`` and it does,
        else None (then :meth:`claim` says who claims it and why not): the common case of a
        drop's names, read without building a :class:`Claim`."""
        if self._only_head is None:
            return None
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
