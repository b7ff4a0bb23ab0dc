"""The pieces the three screens are made of: form fields, catalog options, the sentences that
explain a refusal or a busy workspace, tables and the funnel picture. Nothing here holds state.
"""

from __future__ import annotations

import contextlib
import html
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import ipywidgets as W

from audtools.config import WorkspaceConfig
from audtools.errors import WorkspaceBusy
from audtools.formats.catalog import SharedAudience

log = logging.getLogger("audtools")

#: Widths shared by every form, so the fields line up.
FIELD_STYLE = {"description_width": "210px"}
FIELD_LAYOUT = {"width": "660px"}

_TYPE_WORDS = {"trait": "a trait", "rule": "a rule", "key_value": "a key-value pair"}

def field(widget: W.Widget, css: str) -> W.Widget:
    """Give a form widget the shared width and a CSS class (used by the browser test)."""
    if hasattr(widget, "style") and "description_width" in widget.style.keys:
        widget.style.description_width = FIELD_STYLE["description_width"]
    widget.layout.width = FIELD_LAYOUT["width"]
    widget.add_class(css)
    return widget


def shared_audience_field(description: str) -> W.Dropdown:
    """The dropdown of the catalog's shared audiences (options set when the catalog loads)."""
    return field(W.Dropdown(description=description, options=[], value=None), "audtools-shared-audience")


def data_source_field() -> W.Dropdown:
    """The dropdown of the configured data sources (options set when the screen loads)."""
    return field(W.Dropdown(description="Shared Data Source", options=[], value=None), "audtools-data-source")


def force_field() -> W.Checkbox:
    """The "Force reconciliation with a profile" checkbox."""
    return field(W.Checkbox(description="Force reconciliation with a profile", value=False), "audtools-force")


def button_row(*buttons: W.Widget) -> W.HBox:
    """The form's buttons, lined up under the fields."""
    return W.HBox(list(buttons), layout=W.Layout(margin="6px 0 0 216px"))


def show(widget: W.Widget, visible: bool) -> None:
    """Show or hide a widget without removing it from the screen."""
    widget.layout.display = None if visible else "none"


def is_visible(widget: W.Widget) -> bool:
    """Whether :func:`show` left the widget visible."""
    return widget.layout.display != "none"


def catalog_options(entries: Iterable[SharedAudience], verb: str) -> list[tuple[str, int]]:
    """Dropdown options: segments as ``Name (sid)``, then traits, rules and key-value pairs with
    the reason they cannot be picked (a Dropdown cannot disable single options)."""
    entries = list(entries)
    options = [(e.display, e.sid) for e in entries if e.type == "segment"]
    options += [
        (f"{e.display} — {_TYPE_WORDS.get(e.type, e.type)}: not available, only segments can be {verb}", e.sid)
        for e in entries
        if e.type != "segment"
    ]
    return options


def not_a_segment(entry: SharedAudience, verb: str) -> str:
    """The sentence that refuses a trait, rule or key-value pair."""
    return (
        f"{entry.display} is {_TYPE_WORDS.get(entry.type, entry.type)}, not a segment: only "
        f"segments can be {verb}. Pick a segment."
    )


def source_options(config: WorkspaceConfig) -> list[tuple[str, str]]:
    """Dropdown options of the configured data sources: ``Label (id)``."""
    return [(f"{s.label} ({s.id})", s.id) for s in config.data_sources.values()]


def busy_sentence(exc: WorkspaceBusy) -> str:
    """One sentence naming the run that holds the workspace, and what to do."""
    holder: dict[str, Any] = dict(exc.details.get("holder") or {})
    run = holder.get("run_id")
    who = f"run {run}" if run else "another process (without a run ID)"
    extra = [str(holder["purpose"])] if holder.get("purpose") else []
    if holder.get("pid"):
        extra.append(f"pid {holder['pid']}")
    if holder.get("since"):
        extra.append(f"since {str(holder['since']).replace('T', ' ').rstrip('Z')} UTC")
    detail = f" ({', '.join(extra)})" if extra else ""
    return (
        f"The workspace is busy: {who}{detail} is using it. Wait for it to finish, then press "
        "Retry."
    )


def unexpected_sentence(exc: BaseException) -> str:
    """One sentence for an error audtools did not raise on purpose (never a traceback)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return (
        f"Something unexpected went wrong ({detail}); check the workspace with 'audtools check' "
        "and try again."
    )


@contextlib.contextmanager
def quiet_library_logs() -> Iterator[None]:
    """Keep the library's warnings off the screen while an action runs.

    Without a handler, Python prints ``audtools`` warnings and errors to standard error, which a
    notebook shows under the widgets; the screen says what went wrong itself.
    """
    logger = logging.getLogger("audtools")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def table(rows: Sequence[tuple[str, str, str]], css: str = "audtools-table") -> str:
    """An HTML table of ``(key, label, value)`` rows; values are already HTML."""
    body = "".join(
        f"<tr data-key='{html.escape(key)}'><th style='text-align:left;padding:2px 14px 2px 0;"
        f"font-weight:normal'>{html.escape(label)}</th><td style='text-align:right;padding:2px 0'>"
        f"{value}</td></tr>"
        for key, label, value in rows
    )
    return f"<table class='{css}' style='border-collapse:collapse'>{body}</table>"


def number(value: int) -> str:
    """A count with thousands separators."""
    return f"{value:,}"


def drop_text(config: WorkspaceConfig, kind: str) -> tuple[str, str]:
    """The URL of the workspace's import (``kind`` "import") or export drop, as the drops layer
    shows it (never a credential), and the HTML line a screen shows it in."""
    from audtools.drops import export_drop, import_drop

    drop = import_drop(config) if kind == "import" else export_drop(config)
    what = "Import drop (read)" if kind == "import" else "Export drop (written)"
    line = (
        f"<div style='color:#555;font-size:90%;margin-bottom:6px'>{what}: "
        f"<code>{html.escape(drop.url)}</code></div>"
    )
    return drop.url, line


def window_text(available_from: str, available_to: str) -> str:
    """The sync window in words."""

    def short(text: str) -> str:
        return text.replace("T", " ")[:16]

    return f"from {short(available_from)} to {short(available_to)} UTC"


def funnel_png(result: Any, encrypted: bool | None, dpi: int = 90, title: str | None = None) -> bytes:
    """The funnel chart of one import (or dry run) as PNG bytes.

    Uses :func:`audtools.charts.funnel_chart`; draws a plain one when that module is unusable.

    Args:
        result: an :class:`~audtools.importing.flow.ImportResult`.
        encrypted: whether the data source is encrypted (adds the *decrypted* stage).
        dpi: the picture's resolution.
        title: what the chart is the funnel of (default: the audience's label).
    """
    data = result.to_json()
    if title is not None:
        data["audience"]["label"] = title
    try:
        from audtools.charts import figure_png, funnel_chart

        return figure_png(funnel_chart(data, encrypted=encrypted), dpi=dpi)
    except (ImportError, AttributeError, TypeError):
        log.debug("charts.funnel_chart unusable; drawing a plain funnel", exc_info=True)
        return _plain_funnel_png(result, dpi, title or result.label)


def _plain_funnel_png(result: Any, dpi: int, title: str) -> bytes:
    import io

    from matplotlib.figure import Figure

    frame = result.funnel
    frame = frame[frame["stage"].isin(["members", "decrypted", "matched", "profiles", "addresses"])]
    fig = Figure(figsize=(8, 2.8), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(frame["stage"][::-1], frame["count"][::-1], color="#0072B2")
    ax.set_title(f"Funnel of {title}", loc="left")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
