"""The timestamp and split of an AAM outbound batch name, by ``outbound_timestamp`` (SPEC §4.1).

:mod:`audtools.formats.outbound_names` matches a name with its data source's template; this module
reads what the template's ``<TIMESTAMP>`` matched, and the digits or ``-N`` after it: a numeric
timestamp (``auto``, ``milliseconds``, ``seconds``) or a formatted one (``yyyyMMddHHmmss``).

Example:
    >>> from audtools.config.templates import DEFAULT_TEMPLATE, compile_template
    >>> timestamp_and_split(compile_template(DEFAULT_TEMPLATE, "seconds", dpid=1), None, "", "1566906141001")
    (1566906141000, '1566906141', '001', 'digits')
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from audtools.config.templates import NameTemplate

__all__ = ["SplitForm", "timestamp_and_split"]

SplitForm = Literal["dash", "digits"]


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


def timestamp_and_split(template: NameTemplate, dash: str | None, extra: str, ts: str) -> tuple[int, str, str | None, SplitForm | None] | str:
    """``(timestamp_ms, ts_text, split, form)`` of a timestamp ``ts`` and what follows it (the
    digits ``extra`` and the ``-N`` split ``dash`` of a template whose split follows the
    timestamp), or why they cannot be read."""
    if template.fields:
        when = _formatted(template, ts)
        if isinstance(when, str):
            return when
        if extra and (len(extra) < 3 or dash is not None):
            return "bad timestamp"
        form: SplitForm | None = "digits" if extra else ("dash" if dash is not None else None)
        return when, ts, extra or dash, form
    return _numeric(template.timestamp, ts + extra, dash)
