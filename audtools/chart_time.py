"""Time in the history charts: by delivery or by run start, dates across, captions, chart data.

Helpers of :mod:`audtools.charts`: an import's *delivery time* is the AAM timestamp of the newest
batch it reflects (``delivered_at`` of its ``result.json``); two weeks of daily deliveries
imported within minutes are spread over two weeks by it. Each chart made by
:mod:`audtools.charts` keeps a one-sentence caption (:func:`caption`) and the points it drew
(:func:`chart_data`), for reports, the runs index and tests.
"""

from __future__ import annotations

import weakref
from typing import Any

import matplotlib.dates as mdates
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["caption", "chart_data"]

# What each chart made here says and shows, kept beside the figure (captions, chart data).
_CAPTIONS: weakref.WeakKeyDictionary[Figure, str] = weakref.WeakKeyDictionary()
_POINTS: weakref.WeakKeyDictionary[Figure, list[dict[str, Any]]] = weakref.WeakKeyDictionary()


def _when(frame: pd.DataFrame, time: str | None) -> str:
    """The column that places points: ``delivered_at`` when asked, or by default when every
    drawn import has one; else ``started_at``."""
    if time not in (None, "delivered_at", "started_at"):
        raise ValueError(f"time is 'delivered_at' or 'started_at', not {time!r}")
    if time is None:
        usable = "delivered_at" in frame and len(frame) and frame["delivered_at"].notna().all()
        return "delivered_at" if usable else "started_at"
    return time


def _deliveries(frame: pd.DataFrame, when: str) -> pd.DataFrame:
    """By delivery, one row per data source and delivery: a re-import of the same delivery
    (no new batch) replaces the earlier one instead of adding a point."""
    if when != "delivered_at" or frame.empty:
        return frame
    frame = frame[frame[when].notna()]
    return frame.drop_duplicates(["data_source", "label", when], keep="last")


def _time_label(when: str) -> str:
    return ("delivery time (UTC, AAM timestamp of the newest batch)" if when == "delivered_at"
            else "run start (UTC)")


def _date_axis(ax: Axes, times: pd.Series) -> None:
    """Dates across, readable from one run to weeks of daily deliveries."""
    first, last = times.min().tz_localize(None), times.max().tz_localize(None)
    if last - first < pd.Timedelta(hours=2):
        # Runs minutes apart (a demo, a retry): a few hours around them, to read the day.
        middle = first + (last - first) / 2
        ax.set_xlim(middle - pd.Timedelta(hours=3), middle + pd.Timedelta(hours=3))
    else:
        pad = (last - first) * 0.04
        ax.set_xlim(first - pad, last + pad)
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=8))
    span = max(last - first, pd.Timedelta(hours=6))
    ax.xaxis.set_major_formatter(mdates.DateFormatter(
        "%d %b\n%H:%M" if span < pd.Timedelta(days=3) else "%d %b"))


def _caption(fig: Figure, ax: Axes, own: bool, text: str) -> None:
    """The chart's one-sentence caption: kept for :func:`caption` and, on figures made here,
    written under the chart (so it travels with the PNG)."""
    _CAPTIONS[fig] = text
    if own:
        fig.text(0.0, 0.0, text, ha="left", va="top", fontsize=8.5, color="#444444",
                 style="italic", wrap=True)


def _iso(value: Any) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def caption(fig: Figure) -> str:
    """The one-sentence caption of a chart made here ("" for other figures)."""
    return _CAPTIONS.get(fig, "")


def chart_data(fig: Figure) -> list[dict[str, Any]]:
    """The points a history chart drew: ``data_source`` (or ``reason``), ``x`` (UTC) and ``y``.

    For reports and tests: what the PNG shows, as data.
    """
    return list(_POINTS.get(fig, []))
