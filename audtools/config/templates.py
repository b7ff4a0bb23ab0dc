"""AAM outbound file-name templates (``outbound_name``, ``outbound_timestamp``; SPEC §4.1).

A template is the destination Format's File Name in AAM's macros. It is compiled once per data
source, while the configuration is read, into :class:`NameTemplate`: a regular expression that
reads names of that data source's dpid (and a generic one for diagnosing names that no data source
claims). Reading a matched name (timestamps, split numbers) is done by
:mod:`audtools.formats.outbound_names`.

It lives in the configuration layer because configuration validation needs it and configuration is
below the file formats in the layers; it is pure text processing, with no I/O.

Example:
    >>> t = compile_template(DEFAULT_TEMPLATE, "auto", dpid=14016)
    >>> t.own.fullmatch("ftp_46390_14016_iter_1486140844000.sync")["mode"]
    'iter'
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

__all__ = [
    "DEFAULT_TEMPLATE",
    "NameTemplate",
    "TemplateError",
    "compile_template",
    "timestamp_fields",
]

DEFAULT_TEMPLATE = "<SYNC_TYPE>_<ORDER_ID>_<MASTER_DPID>[_<PID_ALIAS>]_<SYNC_MODE>_<TIMESTAMP>"
NUMERIC_TIMESTAMPS = ("auto", "milliseconds", "seconds")
GROUPS = ("sync", "order", "dpid", "master", "alias", "mode", "ts", "digits", "dash", "xsplit", "comp", "ext")
"""The named groups of a compiled template's patterns, in the order of ``NameTemplate.groups``."""

_MACRO_PATTERNS = {
    "SYNC_TYPE": r"(?P<sync>(?i:ftp|s3|http))",
    "ORDER_ID": r"(?P<order>[0-9]+)",
    "DPID": r"(?P<dpid>[0-9]+)",
    "MASTER_DPID": r"(?P<master>[0-9]+)",
    # Greedy: among readings, the longest alias wins (SPEC §4.1).
    "PID_ALIAS": r"(?P<alias>[^/.\-]+)",
    "SYNC_MODE": r"(?P<mode>full|iter)",
}
# Timestamp format fields (Java's pattern letters, both spellings analysts copy) → width, part.
_FIELDS = {
    "yyyy": "year", "YYYY": "year", "MM": "month", "dd": "day", "DD": "day",
    "HH": "hour", "hh": "hour", "mm": "minute", "ss": "second",
}
_FIELD_TOKEN = re.compile(r"yyyy|YYYY|MM|dd|DD|HH|hh|mm|ss|[-_.T]")
_MACRO = re.compile(r"<\s*([A-Z_]+)\s*(?:;\s*format\s*=\s*(?:\"([^\"]*)\"|'([^']*)'))?\s*>")
_EXTENSION = re.compile(r"(\.[A-Za-z0-9]+)+$")


class TemplateError(ValueError):
    """A template or timestamp setting that cannot be used; the message says why."""


@dataclass(frozen=True)
class NameTemplate:
    """A compiled ``outbound_name`` for one data source.

    Attributes:
        text: the template as configured.
        timestamp: ``auto``, ``milliseconds``, ``seconds`` or a format (``yyyyMMddHHmmss``).
        fields: for a format, the date fields in order (``year``, ``month`` ...), else empty.
        split_after_timestamp: True when the split follows ``<TIMESTAMP>`` (no ``SPLITNUM``
            elsewhere in the template).
        own: reads names whose ``MASTER_DPID`` (else ``DPID``) is the data source's own dpid.
        generic: reads names of any dpid (a first pass shared by the data sources with the same
            template, and for saying why a name is ignored).
        ts_regex: for a format, reads its fields.
        dpid_fixed: True when a name has only one reading of its dpid (only digit macros and
            literal text before it), so that the generic pattern's dpid is the only candidate.
        head: with ``dpid_fixed``, the start of the generic pattern up to the dpid (group ``head``), to
            find the data source of a name with one anchored match before reading it whole.
        groups: the positions in ``match.groups()`` of :data:`GROUPS` (-1: not in the template);
            reading a tuple is several times faster than named groups.
        reads_by_prefix: True when a name's reading is settled by the text before its timestamp:
            a numeric ``<TIMESTAMP>`` ends the template, a literal that ends in a non-digit comes
            just before it, and no literal has ``-`` or ``.`` (which no other macro matches). The
            pattern then cannot read into the timestamp's digits nor into ``-N.sync.gz``, and
            names that share that text read alike but for the timestamp, split and compression.
    """

    text: str
    timestamp: str
    fields: tuple[str, ...]
    split_after_timestamp: bool
    own: re.Pattern[str]
    generic: re.Pattern[str]
    ts_regex: re.Pattern[str] | None = None
    dpid_fixed: bool = False
    head: re.Pattern[str] | None = None
    groups: tuple[int, ...] = ()
    reads_by_prefix: bool = False


def timestamp_fields(fmt: str) -> tuple[tuple[str, ...], str]:
    """The date fields of a timestamp format and the regular expression that reads it.

    Raises:
        TemplateError: for text other than the fields and ``-``, ``_``, ``.``, ``T``, a field used
            twice, or no field at all.
    """
    pos = 0
    fields: list[str] = []
    pattern: list[str] = []
    while pos < len(fmt):
        m = _FIELD_TOKEN.match(fmt, pos)
        if m is None:
            raise TemplateError(
                f"timestamp format {fmt!r}: {fmt[pos]!r} is not a field; allowed: yyyy (or YYYY), "
                "MM, dd (or DD), HH (or hh), mm, ss, with - _ . T between them"
            )
        token = m[0]
        if token in _FIELDS:
            part = _FIELDS[token]
            if part in fields:
                raise TemplateError(f"timestamp format {fmt!r}: the {part} appears twice")
            fields.append(part)
            pattern.append(f"([0-9]{{{len(token)}}})")
        else:
            pattern.append(re.escape(token))
        pos = m.end()
    if not fields:
        raise TemplateError(f"timestamp format {fmt!r} has no date field")
    return tuple(fields), "".join(pattern)


def _split_template(text: str) -> tuple[str, list[tuple[str, str | None]]]:
    """Tokens of a template: ``("macro", NAME)``, ``("format", F)``, ``("lit", TEXT)``,
    ``("[", None)``, ``("]", None)``, ``("split", None)``; trailing ``.sync`` removed."""
    body = text
    ext = _EXTENSION.search(body)
    if ext is not None and ">" not in ext[0] and "]" not in ext[0]:
        if ext[0].lower() != ".sync":
            raise TemplateError(
                f"the template ends in {ext[0]!r}; AAM adds .sync (and .gz or .zip) itself: "
                "leave the extension out or end the template in .sync"
            )
        body = body[: ext.start()]
    tokens: list[tuple[str, str | None]] = []
    pos = 0
    literal = ""
    while pos < len(body):
        ch = body[pos]
        if ch == "<":
            m = _MACRO.match(body, pos)
            if m is None:
                raise TemplateError(f"the template has an unclosed or malformed macro at {body[pos:]!r}")
            if literal:
                tokens.append(("lit", literal))
                literal = ""
            tokens.append(("macro", m[1]))
            if m[2] is not None or m[3] is not None:
                tokens.append(("format", m[2] if m[2] is not None else m[3]))
            pos = m.end()
        elif ch in "[]":
            if literal:
                tokens.append(("lit", literal))
                literal = ""
            tokens.append((ch, None))
            pos += 1
        elif body.startswith("SPLITNUM", pos):
            if literal:
                tokens.append(("lit", literal))
                literal = ""
            tokens.append(("split", None))
            pos += len("SPLITNUM")
        else:
            literal += ch
            pos += 1
    if literal:
        tokens.append(("lit", literal))
    return body, tokens


def _timestamp_setting(configured: str | None, from_template: str | None) -> str:
    if from_template is not None:
        timestamp_fields(from_template)
        if configured not in (None, "auto", from_template):
            raise TemplateError(
                f"outbound_timestamp is {configured!r} but the template's <TIMESTAMP> has "
                f"format={from_template!r}; make them agree or drop outbound_timestamp"
            )
        return from_template
    setting = configured or "auto"
    if setting not in NUMERIC_TIMESTAMPS:
        timestamp_fields(setting)
    return setting


# Compiled once per (template, setting, dpid): data sources without outbound_name share it.
@functools.lru_cache(maxsize=1024)
def compile_template(text: str, timestamp: str | None, *, dpid: int) -> NameTemplate:
    """Compile ``outbound_name`` (with ``outbound_timestamp``) for the data source ``dpid``.

    Args:
        text: the template in AAM's macros.
        timestamp: ``outbound_timestamp`` (None: ``auto`` unless the template sets a format).
        dpid: the data source's dpid, which the name's ``MASTER_DPID`` (else ``DPID``) must be.

    Raises:
        TemplateError: for a template without ``DPID``/``MASTER_DPID``, ``SYNC_MODE`` or
            ``TIMESTAMP``, an unknown macro, unbalanced ``[ ]``, a macro used twice, another
            extension than ``.sync``, or a timestamp format that is invalid or disagrees.
    """
    _, tokens = _split_template(text)
    names = [value for kind, value in tokens if kind == "macro"]
    for name in names:
        if name not in _MACRO_PATTERNS and name not in ("TIMESTAMP", "SPLITNUM"):
            allowed = ", ".join([*_MACRO_PATTERNS, "TIMESTAMP", "SPLITNUM"])
            raise TemplateError(f"unknown macro <{name}>; allowed: {allowed}")
        if names.count(name) > 1:
            raise TemplateError(f"the macro <{name}> appears twice")
    if "DPID" not in names and "MASTER_DPID" not in names:
        raise TemplateError("the template has neither <DPID> nor <MASTER_DPID>: it cannot tell the data source")
    if "SYNC_MODE" not in names:
        raise TemplateError("the template has no <SYNC_MODE>: it cannot tell full from iter files")
    if "TIMESTAMP" not in names:
        raise TemplateError("the template has no <TIMESTAMP>: it cannot order the batches")
    fmt = next((value for kind, value in tokens if kind == "format"), None)
    setting = _timestamp_setting(timestamp, fmt)
    fields, ts_pattern = ((), "[0-9]+") if setting in NUMERIC_TIMESTAMPS else timestamp_fields(setting)
    # Splits of a named SPLITNUM directly after the timestamp are read as the default position.
    explicit_split = any(kind == "split" or (kind == "macro" and value == "SPLITNUM") for kind, value in tokens)
    owner = "master" if "MASTER_DPID" in names else "dpid"
    own, _ = _pattern(tokens, ts_pattern, explicit_split, owner, str(dpid))
    generic, head = _pattern(tokens, ts_pattern, explicit_split, owner, None)
    patterns = {"own": re.compile(own, re.DOTALL), "generic": re.compile(generic, re.DOTALL)}
    fixed = _dpid_fixed(tokens, "MASTER_DPID" if owner == "master" else "DPID")
    return NameTemplate(
        text=text,
        timestamp=setting,
        fields=fields,
        split_after_timestamp=not explicit_split,
        own=patterns["own"],
        generic=patterns["generic"],
        ts_regex=re.compile(ts_pattern) if fields else None,
        dpid_fixed=fixed,
        head=re.compile(head, re.DOTALL) if fixed else None,
        groups=tuple(patterns["own"].groupindex.get(g, 0) - 1 for g in GROUPS),
        reads_by_prefix=not fields and not explicit_split and _text_then_timestamp(tokens),
    )


def _pattern(
    tokens: list[tuple[str, str | None]], ts_pattern: str, explicit_split: bool, owner: str, dpid: str | None
) -> tuple[str, str]:
    """The regular expression of a template, and its start up to the dpid (group ``head``).

    ``dpid`` None reads any dpid; else the owner macro matches that dpid only.
    """
    owner_macro = "MASTER_DPID" if owner == "master" else "DPID"
    parts: list[str] = []
    head = ""
    depth = 0
    for kind, value in tokens:
        if kind == "lit":
            parts.append(re.escape(str(value)))
        elif kind == "[":
            parts.append("(?:")
            depth += 1
        elif kind == "]":
            if depth == 0:
                raise TemplateError("the template has a ']' without '['")
            # Lazy: a name without the optional part is read without it at once (the greedy
            # alias would scan to the end and back). A reading with it can only exist when the
            # one without fails: what follows is the mode then digits.
            parts.append(")??")
            depth -= 1
        elif kind == "format":
            continue
        elif kind == "split" or value == "SPLITNUM":
            parts.append(r"(?P<xsplit>-?[0-9]+)?")
        elif value == "TIMESTAMP":
            parts.append(f"(?P<ts>{ts_pattern})")
            if not explicit_split:
                parts.append(r"(?P<digits>[0-9]*)(?:-(?P<dash>[0-9]+))?")
        elif value == owner_macro:
            head = "".join(parts) + "(?P<head>[0-9]+)(?![0-9])"
            parts.append(f"(?P<{owner}>{dpid or '[0-9]+'})")
        else:
            parts.append(_MACRO_PATTERNS[str(value)])
    if depth:
        raise TemplateError("the template has a '[' without ']'")
    parts.append(r"(?P<ext>\.(?i:sync)(?:\.(?P<comp>(?i:gz|zip)))?)")
    return "".join(parts), head


def _text_then_timestamp(tokens: list[tuple[str, str | None]]) -> bool:
    """Whether ``<TIMESTAMP>`` ends the template after a literal that ends in a non-digit, and no
    literal has ``-`` or ``.`` (see ``NameTemplate.reads_by_prefix``)."""
    if len(tokens) < 2 or tokens[-1] != ("macro", "TIMESTAMP") or tokens[-2][0] != "lit":
        return False
    before = str(tokens[-2][1])
    literals = "".join(str(value) for kind, value in tokens if kind == "lit")
    return not before[-1].isdigit() and "-" not in literals and "." not in literals


def _dpid_fixed(tokens: list[tuple[str, str | None]], owner: str) -> bool:
    """Whether only ``SYNC_TYPE``, ``ORDER_ID``, ``DPID`` and literals that start with a non-digit
    come before the owner macro (then a name's dpid has one reading)."""
    previous = "lit"
    for kind, value in tokens:
        if kind == "macro" and value == owner:
            return previous == "lit"
        if kind == "macro" and value in ("SYNC_TYPE", "ORDER_ID", "DPID", "MASTER_DPID"):
            if previous == "macro":
                return False
            previous = "macro"
        elif kind == "lit" and value and not value[0].isdigit():
            previous = "lit"
        else:
            return False
    return False
