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

from collections.abc import Mapping
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from audtools.chart_style import (
    COLOURS,
    GREY,
    axes_for,
    empty,
    figure_png,
    style,
    thousands,
    window_text,
)
from audtools.chart_time import (
    _POINTS,
    _caption,
    _date_axis,
    _deliveries,
    _iso,
    _time_label,
    _when,
    caption,
    chart_data,
)
from audtools.privacy import plain_text

__all__ = [
    "exports_chart",
    "figure_png",
    "funnel_chart",
    "caption",
    "chart_data",
    "match_rate_chart",
    "members_chart",
    "rejects_chart",
    "unmatched_chart",
]

_MAX_BARS = 30  # per-run bar charts keep the latest runs only, to stay readable


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
    own = ax is None
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
    fig, ax = axes_for(ax, (8, 0.55 * len(stages) + 1.6))
    # Labels are typed by people: scrubbed, and drawn as plain text (never as mathtext).
    label = plain_text(audience.get("label")) or "the import"
    title = f"Funnel of {label}"
    if not members:
        empty(ax, title, "No members: the shared audience holds no ID of this data source.")
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
    ax.xaxis.set_major_formatter(FuncFormatter(thousands))
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    window = window_text(data.get("available_from"), data.get("available_to"))
    rate = f"match rate {data.get('match_rate', 0):.1%}"
    _titles(ax, title, f"{rate}; {window}" if window else rate)
    _caption(fig, ax, own, "How many of this import's members made it through each step, "
             "from the IDs in the shared audience to the profiles they match.")
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


def _lines(runs: pd.DataFrame, column: str, *, data_source: str | None, ax: Axes | None,
           time: str | None, title: str, ylabel: str, scale: float = 1.0
           ) -> tuple[Figure, Axes, pd.DataFrame, str]:
    """One line per data source of ``column`` over time; records the points drawn."""
    fig, ax = axes_for(ax, (9, 3.8))
    frame = _imports(runs, data_source)
    when = _when(frame, time)
    frame = _deliveries(frame, when)
    points: list[dict[str, Any]] = []
    _POINTS[fig] = points
    if frame.empty:
        empty(ax, title, "No import yet.")
        return fig, ax, frame, when
    frame = frame.sort_values(when)
    for i, (source, group) in enumerate(frame.groupby("data_source", sort=True)):
        values = group[column].astype(float).fillna(0) * scale
        ax.plot(group[when].dt.tz_localize(None), values, marker="o", markersize=4,
                linewidth=1.8, color=COLOURS[i % len(COLOURS)], label=plain_text(str(source)))
        points += [{"data_source": str(source), "x": _iso(x), "y": float(y)}
                   for x, y in zip(group[when], values, strict=True)]
    ax.set_ylabel(ylabel)
    ax.set_xlabel(_time_label(when))
    _date_axis(ax, frame[when])
    style(ax)
    # Beside the plot, never over its points.
    ax.legend(title="data source", fontsize=8, title_fontsize=8, frameon=False,
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title, loc="left", fontweight="bold")
    return fig, ax, frame, when


def match_rate_chart(
    runs: pd.DataFrame,
    *,
    data_source: str | None = None,
    ax: Axes | None = None,
    time: str | None = None,
) -> Figure:
    """The match rate of every import over time, one line per data source.

    Args:
        runs: the run history of :func:`audtools.jobs.runner.runs`; succeeded imports are drawn.
        data_source: draw only this data source.
        ax: draw on these axes instead of a new figure.
        time: ``"delivered_at"`` places each point at its delivery (the AAM timestamp of the
            newest batch the import reflects; a re-import of the same delivery replaces the
            point), ``"started_at"`` at the run's start; by default delivery time when every
            import drawn records one.

    Returns:
        The figure: time (UTC) across, the match rate (% of members matched) up, and a caption
        (:func:`caption`).
    """
    own = ax is None
    title = "Match rate of every import over time, per data source"
    fig, ax, frame, when = _lines(runs, "match_rate", data_source=data_source, ax=ax, time=time,
                                  title=title, ylabel="match rate (% of members)", scale=100)
    if not frame.empty:
        ax.set_ylim(0, 105)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.0f}%"))
    by = "delivery" if when == "delivered_at" else "run start"
    _caption(fig, ax, own, f"Share of each audience's members matched to a profile, by {by}: "
             "a jump means new profiles or IDs, a drop new members without a profile.")
    return fig


def members_chart(
    runs: pd.DataFrame,
    *,
    data_source: str | None = None,
    ax: Axes | None = None,
    time: str | None = None,
) -> Figure:
    """How many members each audience has after each import, one line per data source.

    Args:
        runs: the run history; succeeded imports are drawn.
        data_source: draw only this data source.
        ax: draw on these axes instead of a new figure.
        time: as for :func:`match_rate_chart`.

    Returns:
        The figure: time across, members (IDs) up, and a caption.
    """
    own = ax is None
    fig, ax, frame, when = _lines(runs, "members", data_source=data_source, ax=ax, time=time,
                                  title="Members of each audience over time, per data source",
                                  ylabel="members (IDs)")
    if not frame.empty:
        ax.set_ylim(0, float(frame["members"].astype(float).max()) * 1.12 or 1)
        ax.yaxis.set_major_formatter(FuncFormatter(thousands))
    _caption(fig, ax, own, "Size of each imported audience after each delivery: a rising "
             "line is a segment that grows.")
    return fig


def rejects_chart(
    runs: pd.DataFrame,
    *,
    data_source: str | None = None,
    ax: Axes | None = None,
    time: str | None = None,
) -> Figure:
    """Batch rows rejected by each import (malformed rows), one line per data source.

    Args:
        runs: the run history; succeeded imports are drawn.
        data_source: draw only this data source.
        ax: draw on these axes instead of a new figure.
        time: as for :func:`match_rate_chart`.

    Returns:
        The figure: time across, rows rejected up, and a caption.
    """
    own = ax is None
    fig, ax, frame, when = _lines(runs, "rows_rejected", data_source=data_source, ax=ax,
                                  time=time, title="Rows rejected per import, per data source",
                                  ylabel="rows rejected")
    if not frame.empty:
        top = float(frame["rows_rejected"].astype(float).fillna(0).max())
        high = max(top * 1.12, 5)
        ax.set_ylim(-high * 0.03, high)  # lines at 0 stay visible above the axis
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_formatter(FuncFormatter(thousands))
    _caption(fig, ax, own, "Malformed batch rows each import set aside (listed in the run's "
             "rejects.csv): a spike means a partner sent bad rows.")
    return fig


def _run_names(frame: pd.DataFrame) -> list[str]:
    return [
        f"{plain_text(label)}\n{started:%d %b %H:%M}"
        for label, started in zip(frame["label"].fillna(""), frame["started_at"], strict=True)
    ]


def _totals(ax: Axes, positions: list[int], totals: list[int]) -> None:
    """Each stacked bar's total above it, and room for it: no bar touches the axis's top."""
    top = max(totals, default=0) or 1
    for x, total in zip(positions, totals, strict=True):
        ax.text(x, total + top * 0.02, f"{total:,}", ha="center", va="bottom", fontsize=7)
    ax.set_ylim(0, top * 1.18)


def _unmatched_bars(frame: pd.DataFrame, when: str) -> tuple[list[str], pd.DataFrame]:
    """Per run (by run start), or per delivery summed over the data sources (by delivery)."""
    counts = pd.DataFrame({
        "no_profile": frame["no_profile"].fillna(0).astype(int).to_numpy(),
        "undecryptable": frame["undecryptable"].fillna(0).astype(int).to_numpy(),
        "x": frame[when].to_numpy(),
    })
    if when != "delivered_at":
        return _run_names(frame), counts.tail(_MAX_BARS)
    summed = counts.groupby("x", sort=True).sum().reset_index().tail(_MAX_BARS)
    span = summed["x"].max() - summed["x"].min()
    form = "%d %b" if span >= pd.Timedelta(days=2) else "%d %b\n%H:%M"
    return [pd.Timestamp(x).strftime(form) for x in summed["x"]], summed


def unmatched_chart(
    runs: pd.DataFrame,
    *,
    data_source: str | None = None,
    ax: Axes | None = None,
    time: str | None = None,
) -> Figure:
    """Why members did not match, stacked per import run or per delivery: undecryptable and no
    profile.

    Args:
        runs: the run history of :func:`audtools.jobs.runner.runs`; succeeded imports are drawn (the
            latest 30 bars).
        data_source: draw only this data source.
        ax: draw on these axes instead of a new figure.
        time: ``"delivered_at"``: one bar per delivery, summed over the data sources drawn;
            ``"started_at"``: one bar per run; by default as for :func:`match_rate_chart`.

    Returns:
        The figure: stacked bars of unmatched members (IDs), oldest on the left, each with its
        total above it, and a caption.
    """
    own = ax is None
    frame = _imports(runs, data_source)
    when = _when(frame, time)
    frame = _deliveries(frame, when).sort_values(when) if len(frame) else frame
    wide = 9.0 if when == "delivered_at" else max(8.0, 0.8 * min(len(frame), _MAX_BARS) + 3)
    fig, ax = axes_for(ax, (wide, 3.8))
    points: list[dict[str, Any]] = []
    _POINTS[fig] = points
    title = "Unmatched members per import, by reason"
    if frame.empty:
        empty(ax, title, "No import yet.")
        return fig
    names, bars = _unmatched_bars(frame, when)
    positions = list(range(len(bars)))
    no_profile, undecryptable = bars["no_profile"].to_list(), bars["undecryptable"].to_list()
    ax.bar(positions, no_profile, color=COLOURS[1], label="no profile", width=0.6)
    ax.bar(positions, undecryptable, bottom=no_profile, color=COLOURS[5],
           label="undecryptable", width=0.6)
    _totals(ax, positions, [a + b for a, b in zip(no_profile, undecryptable, strict=True)])
    ax.set_xticks(positions, names, fontsize=8 if when == "delivered_at" else 7,
                  rotation=30 if when != "delivered_at" else 0,
                  ha="right" if when != "delivered_at" else "center")
    _slots(ax, len(bars))
    ax.set_ylabel("unmatched members (IDs)")
    ax.set_xlabel(_time_label(when))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(thousands))
    style(ax)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title, loc="left", fontweight="bold")
    for x, row in zip(bars["x"], bars.itertuples(), strict=True):
        points += [{"reason": "no_profile", "x": _iso(x), "y": float(row.no_profile)},
                   {"reason": "undecryptable", "x": _iso(x), "y": float(row.undecryptable)}]
    whose = "all imports drawn, summed per delivery" if when == "delivered_at" else "each run"
    _caption(fig, ax, own, f"Why members did not match, for {whose}: no profile holds their ID, "
             "or their encrypted ID could not be decrypted.")
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
    own = ax is None
    if runs.empty or "kind" not in runs:
        frame = runs.iloc[0:0]
    else:
        frame = runs[(runs["kind"] == "export") & (runs["status"] == "succeeded")]
        if shared_audience is not None:
            frame = frame[frame["label"] == shared_audience]
        frame = frame.sort_values("started_at").tail(_MAX_BARS)
    fig, ax = axes_for(ax, (max(8.0, 0.8 * len(frame) + 3), 3.8))
    title = "IDs sent per export: new versus already shared"
    if frame.empty:
        empty(ax, title, "No export yet.")
        return fig
    positions = range(len(frame))
    new = frame["ids_exported"].fillna(0).astype(int).to_list()
    old = frame["ids_already_shared"].fillna(0).astype(int).to_list()
    ax.bar(positions, new, color=COLOURS[2], label="exported (new IDs)", width=0.6)
    ax.bar(positions, old, bottom=new, color=GREY, label="already shared (not sent again)",
           width=0.6)
    _totals(ax, list(positions), [a + b for a, b in zip(new, old, strict=True)])
    ax.set_xticks(list(positions), _run_names(frame), fontsize=7, rotation=30, ha="right")
    _slots(ax, len(frame))
    ax.set_ylabel("IDs")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(thousands))
    style(ax)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    last = frame.iloc[-1]
    window = window_text(last.get("available_from"), last.get("available_to"))
    _titles(ax, title, f"latest export {window}" if window else "")
    _caption(fig, ax, own, "IDs each export sent to Audience Manager, and those it did not "
             "send again because an earlier export had shared them.")
    return fig
