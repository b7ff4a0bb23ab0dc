"""How reports say things: HTML that notebooks display, times and sync windows for people, tables,
embedded charts, and the scrubbing that keeps addresses, phone numbers and IDs out of reports.

:mod:`audtools.jobs.report` (the summaries notebooks show) and :mod:`audtools.jobs.rendering`
(``report.html`` and ``runs/index.html``) write through these.
"""

from __future__ import annotations

import base64
import html
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from audtools import charts
from audtools.privacy import scrub

log = logging.getLogger("audtools")

__all__ = [
    "Html",
    "chart_html",
    "chart_or_note",
    "delay",
    "escape",
    "html_table",
    "percent",
    "redact_condition",
    "scrub",
    "short_when",
    "short_window",
    "thousands",
    "when",
    "window",
]


@dataclass(frozen=True)
class Html:
    """A piece of HTML that notebooks display as such (and as plain text elsewhere)."""

    html: str

    def _repr_html_(self) -> str:
        return self.html

    def __str__(self) -> str:
        text = re.sub(r"</?(?:b|i|code|span|a|em|strong)(?:\s[^>]*)?>", "", self.html)
        text = re.sub(r"<[^>]+>", " ", text)
        return re.sub(r"\s+", " ", html.unescape(text)).strip()


# -- privacy ------------------------------------------------------------------------------------

_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")


def redact_condition(condition: str | None) -> str:
    """A targeting condition fit for a report: its literals of text become ``'…'`` and long
    numbers ``…``, so ``email = 'a@b.example'`` shows as ``email = '…'``."""
    if not condition:
        return "all profiles"
    return scrub(_QUOTED.sub("'…'", condition))


# -- formatting ---------------------------------------------------------------------------------


def escape(value: Any) -> str:
    """``value`` as HTML text (quotes escaped too)."""
    return html.escape(str(value), quote=True)


def thousands(value: Any) -> str:
    """A count with thousands separators (``–`` when unknown)."""
    return "–" if value is None or pd.isna(value) else f"{int(value):,}"


def percent(value: Any) -> str:
    """A rate as a percentage with one decimal (``–`` when unknown)."""
    return "–" if value is None or pd.isna(value) else f"{float(value):.1%}"


def when(value: Any) -> str:
    """A UTC time for people: ``Sat 29 Nov 2025, 20:40 UTC``."""
    stamp = pd.to_datetime(value, utc=True, errors="coerce")
    return "–" if stamp is None or pd.isna(stamp) else f"{stamp:%a %d %b %Y, %H:%M} UTC"


def window(available_from: Any, available_to: Any) -> str:
    """The sync window for people: ``Sat 29 Nov 2025, 20:40 UTC to Sun 30 Nov 2025, 08:40 UTC``."""
    if not available_from or not available_to or pd.isna(available_from):
        return "–"
    return f"{when(available_from)} to {when(available_to)}"


def delay(data: Mapping[str, Any]) -> str:
    """`` (24 to 36 hours after the run)``, from the run's start and its sync window."""
    start = pd.to_datetime(data.get("started_at"), utc=True, errors="coerce")
    low = pd.to_datetime(data.get("available_from"), utc=True, errors="coerce")
    high = pd.to_datetime(data.get("available_to"), utc=True, errors="coerce")
    if any(v is None or pd.isna(v) for v in (start, low, high)):
        return ""
    hours = [round((v - start).total_seconds() / 3600) for v in (low, high)]
    return f" ({hours[0]} to {hours[1]} hours after the run)"


def short_when(value: Any) -> str:
    """A UTC time for tables: ``28 Nov 2025 20:40``."""
    stamp = pd.to_datetime(value, utc=True, errors="coerce")
    return "–" if stamp is None or pd.isna(stamp) else f"{stamp:%d %b %Y %H:%M}"


def short_window(available_from: Any, available_to: Any) -> str:
    """The sync window for tables: ``29 Nov 20:40 to 30 Nov 08:40 UTC``."""
    low = pd.to_datetime(available_from, utc=True, errors="coerce")
    high = pd.to_datetime(available_to, utc=True, errors="coerce")
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return "–"
    return f"{low:%d %b %H:%M} to {high:%d %b %H:%M} UTC"


def html_table(head: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    """A report table: ``head``, then ``rows`` of HTML cells, numeric from column ``numeric_from``."""
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(
            f"<td class='num'>{c}</td>" if i >= numeric_from else f"<td>{c}</td>"
            for i, c in enumerate(row)
        ) + "</tr>"
        for row in rows
    )
    return f"<table class='aud-table'><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def chart_html(fig: Any, alt: str) -> str:
    """An ``<img>`` of the chart, embedded as a PNG ``data:`` URI, with its alternative text."""
    png = base64.b64encode(charts.figure_png(fig)).decode("ascii")
    return f"<img class='aud-chart' alt='{escape(alt)}' src='data:image/png;base64,{png}'>"


def chart_or_note(fig: Any, alt: str) -> str:
    """:func:`chart_html` of ``fig`` (a figure, or a function that makes one), or, when drawing
    fails, a note saying so: a chart never fails a run that is already recorded."""
    try:
        return chart_html(fig() if callable(fig) else fig, alt)
    except Exception as exc:  # noqa: BLE001 - any drawing failure becomes a note
        log.warning("The chart %r could not be drawn: %s", alt, type(exc).__name__)
        return (
            f"<p class='aud-meta'>The chart “{escape(alt)}” could not be drawn "
            f"({escape(type(exc).__name__)}); the run itself is not affected.</p>"
        )
