"""Charts of imports and exports: matplotlib figures for notebooks, reports and the runs index.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (so nothing is
shown, nor kept alive by pyplot's registry), or draws on the ``ax=`` it is given. None calls
``show()``. The history charts take the run history of :func:`audtools.jobs.runner.runs` (one row per
run, newest first); the funnel takes one import's result (``result.json`` or
:class:`~audtools.importing.flow.ImportResult`).

Charts show counts and rates only, never an ID.

Example:
    >>> from audtools import charts, jobs
    >>> fig = charts.match_rate_chart(jobs.runs("data/demo"))   # doctest: +SKIP
    >>> fig.savefig("match-rate.png")                            # doctest: +SKIP
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import matplotlib.dates as mdates
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from audtools.privacy import plain_text

__all__ = [
    "exports_chart",
    "figure_png",
    "funnel_chart",
    "match_rate_chart",
    "unmatched_chart",
]

#: Colours, chosen to stay apart for readers with a colour-vision deficiency (Okabe-Ito).
COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
_GREY = "#8c8c8c"
_MAX_BARS = 30  # per-run bar charts keep the latest runs only, to stay readable


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (for reports and the runs index)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def _axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        fig = ax.get_figure()
        assert isinstance(fig, Figure)
        return fig, ax
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def _empty(ax: Axes, title: str, text: str) -> None:
    ax.set_title(title, loc="left", fontweight="bold")
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color=_GREY)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _style(ax: Axes) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(axis="y", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)


def _thousands(value: float, _pos: int) -> str:
    return f"{value:,.0f}"


def _window_text(available_from: str | None, available_to: str | None) -> str:
    if not available_from or not available_to:
        return ""
    start = pd.Timestamp(available_from)
    end = pd.Timestamp(available_to)
    return f"available {start:%d %b %H:%M} to {end:%d %b %H:%M} UTC"


# -- one run ------------------------------------------------------------------------------------


def funnel_chart(
    result: Mapping[str, Any] | Any,
    *,
    encrypted: bool | None = None,
    ax: Axes | None = None,
) -> Figure:
    """The funnel of one import: members → decrypted → matched → profiles (or addresses).

    Args:
        result: the import's ``result.json`` object (or an
            :class:`~audtools.importing.flow.ImportResult`).
        encrypted: whether the data source is encrypted, which adds the *decrypted* stage; by
            default the stage is shown when some members could not be decrypted.
        ax: draw on these axes instead of a new figure.

    Returns:
        The figure: one horizontal bar per stage, with its count and its share of the members,
        and the sync window under the title.
    """
    data = result.to_json() if hasattr(result, "to_json") else dict(result)
    members = int(data.get("members") or 0)
    undecryptable = int(data.get("undecryptable") or 0)
    audience = data.get("audience") or {}
    is_file = audience.get("type") == "file"
    stages: list[tuple[str, int, str]] = [("members (IDs)", members, COLOURS[0])]
    if encrypted or (encrypted is None and (undecryptable or is_file)):
        stages.append(("decrypted (IDs)", members - undecryptable, COLOURS[4]))
    stages.append(("matched (IDs)", int(data.get("matched") or 0), COLOURS[2]))
    if is_file:
        stages.append(("addresses (distinct)", int(data.get("addresses") or 0), COLOURS[1]))
    else:
        stages.append(("profiles (distinct)", int(data.get("profiles") or 0), COLOURS[1]))
    fig, ax = _axes(ax, (8, 0.55 * len(stages) + 1.6))
    # Labels are typed by people: scrubbed, and drawn as plain text (never as mathtext).
    label = plain_text(audience.get("label")) or "the import"
    title = f"Funnel of {label}"
    if not members:
        _empty(ax, title, "No members: the shared audience holds no ID of this data source.")
        return fig
    names = [s[0] for s in stages][::-1]
    counts = [s[1] for s in stages][::-1]
    colours = [s[2] for s in stages][::-1]
    bars = ax.barh(names, counts, color=colours, height=0.6)
    top = max(counts) or 1
    for rect, count in zip(bars, counts, strict=True):
        ax.text(
            rect.get_width() + top * 0.01,
            rect.get_y() + rect.get_height() / 2,
            f"{count:,}  ({count / members:.1%} of members)",
            va="center",
            fontsize=9,
        )
    ax.set_xlim(0, top * 1.35)
    ax.set_xlabel("count")
    ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    window = _window_text(data.get("available_from"), data.get("available_to"))
    rate = f"match rate {data.get('match_rate', 0):.1%}"
    _titles(ax, title, f"{rate}; {window}" if window else rate)
    return fig


def _titles(ax: Axes, title: str, subtitle: str = "") -> None:
    """A bold title, and a smaller grey line under it (the sync window, the rate)."""
    ax.set_title(title, loc="left", fontweight="bold", pad=20 if subtitle else 6)
    if subtitle:
        ax.annotate(subtitle, xy=(0, 1), xycoords="axes fraction", xytext=(0, 6),
                    textcoords="offset points", fontsize=9, color="#444444", va="bottom")


def _slots(ax: Axes, count: int) -> None:
    """Keep bars narrow when there are few of them."""
    ax.set_xlim(-0.6, max(count, 6) - 0.4)


# -- history ------------------------------------------------------------------------------------


def _imports(runs: pd.DataFrame, data_source: str | None = None) -> pd.DataFrame:
    if runs.empty or "kind" not in runs:
        return runs.iloc[0:0]
    frame = runs[(runs["kind"] == "import") & (runs["status"] == "succeeded")]
    frame = frame[frame["match_rate"].notna()] if "match_rate" in frame else frame.iloc[0:0]
    if data_source is not None:
        frame = frame[frame["data_source"] == data_source]
    return frame.sort_values("started_at")


def match_rate_chart(
    runs: pd.DataFrame, *, data_source: str | None = None, ax: Axes | None = None
) -> Figure:
    """The match rate of every import over time, one line per data source.

    Args:
        runs: the run history of :func:`audtools.jobs.runner.runs`; succeeded imports are drawn.
        data_source: draw only this data source.
        ax: draw on these axes instead of a new figure.

    Returns:
        The figure: the run's start (UTC) across, the match rate (% of members matched) up.
    """
    fig, ax = _axes(ax, (8, 3.6))
    title = "Match rate of every import over time, per data source"
    frame = _imports(runs, data_source)
    if frame.empty:
        _empty(ax, title, "No import yet.")
        return fig
    for i, (source, group) in enumerate(frame.groupby("data_source", sort=True)):
        ax.plot(
            group["started_at"].dt.tz_localize(None),
            group["match_rate"] * 100,
            marker="o",
            markersize=5,
            linewidth=1.8,
            color=COLOURS[i % len(COLOURS)],
            label=plain_text(str(source)),
        )
    ax.set_ylim(0, 105)
    ax.set_ylabel("match rate (% of members)")
    ax.set_xlabel("run start (UTC)")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.0f}%"))
    first = frame["started_at"].min().tz_localize(None)
    last = frame["started_at"].max().tz_localize(None)
    if last - first < pd.Timedelta(hours=2):
        # Runs minutes apart (a demo, a retry): a few hours around them, to read the day.
        middle = first + (last - first) / 2
        ax.set_xlim(middle - pd.Timedelta(hours=3), middle + pd.Timedelta(hours=3))
    locator = mdates.AutoDateLocator(minticks=3, maxticks=7)
    ax.xaxis.set_major_locator(locator)
    span = max(last - first, pd.Timedelta(hours=6))
    ax.xaxis.set_major_formatter(
        mdates.DateFormatter("%d %b\n%H:%M" if span < pd.Timedelta(days=3) else "%d %b %Y")
    )
    _style(ax)
    ax.legend(title="data source", fontsize=8, title_fontsize=8, loc="lower left", frameon=False)
    ax.set_title(title, loc="left", fontweight="bold")
    return fig


def _run_names(frame: pd.DataFrame) -> list[str]:
    return [
        f"{plain_text(label)}\n{started:%d %b %H:%M}"
        for label, started in zip(frame["label"].fillna(""), frame["started_at"], strict=True)
    ]


def unmatched_chart(
    runs: pd.DataFrame, *, data_source: str | None = None, ax: Axes | None = None
) -> Figure:
    """Why members did not match, stacked per import run: undecryptable and no profile.

    Args:
        runs: the run history of :func:`audtools.jobs.runner.runs`; succeeded imports are drawn (the
            latest 30).
        data_source: draw only this data source.
        ax: draw on these axes instead of a new figure.

    Returns:
        The figure: one stacked bar of unmatched members (IDs) per run, oldest on the left.
    """
    frame = _imports(runs, data_source).tail(_MAX_BARS)
    fig, ax = _axes(ax, (max(8.0, 0.8 * len(frame) + 3), 3.8))
    title = "Unmatched members per import, by reason"
    if frame.empty:
        _empty(ax, title, "No import yet.")
        return fig
    names = _run_names(frame)
    positions = range(len(frame))
    undecryptable = frame["undecryptable"].fillna(0).astype(int).to_list()
    no_profile = frame["no_profile"].fillna(0).astype(int).to_list()
    ax.bar(positions, no_profile, color=COLOURS[1], label="no profile", width=0.6)
    ax.bar(positions, undecryptable, bottom=no_profile, color=COLOURS[5],
           label="undecryptable", width=0.6)
    ax.set_xticks(list(positions), names, fontsize=7, rotation=30, ha="right")
    _slots(ax, len(frame))
    ax.set_ylabel("unmatched members (IDs)")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
    _style(ax)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title, loc="left", fontweight="bold")
    return fig


def exports_chart(
    runs: pd.DataFrame, *, shared_audience: str | None = None, ax: Axes | None = None
) -> Figure:
    """IDs exported versus IDs already shared, stacked per export run.

    Args:
        runs: the run history of :func:`audtools.jobs.runner.runs`; succeeded exports are drawn (the
            latest 30).
        shared_audience: draw only the exports to this shared audience (its name).
        ax: draw on these axes instead of a new figure.

    Returns:
        The figure: one stacked bar per export, new IDs below, IDs already shared above, with
        the sync window of the latest export under the title.
    """
    if runs.empty or "kind" not in runs:
        frame = runs.iloc[0:0]
    else:
        frame = runs[(runs["kind"] == "export") & (runs["status"] == "succeeded")]
        if shared_audience is not None:
            frame = frame[frame["label"] == shared_audience]
        frame = frame.sort_values("started_at").tail(_MAX_BARS)
    fig, ax = _axes(ax, (max(8.0, 0.8 * len(frame) + 3), 3.8))
    title = "IDs sent per export: new versus already shared"
    if frame.empty:
        _empty(ax, title, "No export yet.")
        return fig
    positions = range(len(frame))
    new = frame["ids_exported"].fillna(0).astype(int).to_list()
    old = frame["ids_already_shared"].fillna(0).astype(int).to_list()
    ax.bar(positions, new, color=COLOURS[2], label="exported (new IDs)", width=0.6)
    ax.bar(positions, old, bottom=new, color=_GREY, label="already shared (not sent again)",
           width=0.6)
    ax.set_xticks(list(positions), _run_names(frame), fontsize=7, rotation=30, ha="right")
    _slots(ax, len(frame))
    ax.set_ylabel("IDs")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
    _style(ax)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    last = frame.iloc[-1]
    window = _window_text(last.get("available_from"), last.get("available_to"))
    _titles(ax, title, f"latest export {window}" if window else "")
    return fig
