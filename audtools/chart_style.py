"""The look every chart of :mod:`audtools.charts` shares: colours, axes, empty charts, numbers.

Kept apart from the charts themselves so that each chart module stays short; nothing here draws
data.
"""

from __future__ import annotations

import io

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["COLOURS", "figure_png"]

#: Colours, chosen to stay apart for readers with a colour-vision deficiency (Okabe-Ito).
COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
GREY = "#8c8c8c"


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (for reports and the runs index)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def axes_for(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        fig = ax.get_figure()
        assert isinstance(fig, Figure)
        return fig, ax
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def empty(ax: Axes, title: str, text: str) -> None:
    ax.set_title(title, loc="left", fontweight="bold")
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color=GREY)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def style(ax: Axes) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(axis="y", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)


def thousands(value: float, _pos: int) -> str:
    return f"{value:,.0f}"


def window_text(available_from: str | None, available_to: str | None) -> str:
    if not available_from or not available_to:
        return ""
    start = pd.Timestamp(available_from)
    end = pd.Timestamp(available_to)
    return f"available {start:%d %b %H:%M} to {end:%d %b %H:%M} UTC"
