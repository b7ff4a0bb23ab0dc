"""The match-rate explorer: how well a shared audience reconciles through each data source.

:class:`MatchRateExplorer` runs the import's dry run (SPEC §5 step 9: everything computed on a
copy of the state, nothing written, no run recorded) for the picked shared audience through each
picked data source, and shows the funnel, the match rate, the unmatched reasons and the batches
still waiting; beside this what-if table, the shared audience's match rate over its past imports
(by delivery time, from the run history). It updates whenever a choice changes.

Example:
    >>> from audtools.widgets import MatchRateExplorer
    >>> MatchRateExplorer("data/demo")                    # doctest: +SKIP
"""

from __future__ import annotations

import html
import time

import ipywidgets as W

from audtools.errors import AudtoolsError, WorkspaceBusy
from audtools.formats.catalog import SharedAudience
from audtools.importing.flow import ImportResult, import_audience
from audtools.shared_audiences import catalog
from audtools.widgets._parts import (
    button_row,
    field,
    force_field,
    funnel_png,
    not_a_segment,
    shared_audience_field,
    show,
    source_options,
)
from audtools.widgets._screen import CatalogScreen
from audtools.workspace import Workspace

__all__ = ["EXPLORER_LABEL", "MatchRateExplorer"]

#: The label the dry runs use (a dry run stores nothing, so no audience ever has it).
EXPLORER_LABEL = "(match-rate explorer dry run)"


class MatchRateExplorer(CatalogScreen):
    """Explore match rates without writing anything: the dry run of the import, live.

    Tests drive it without a browser: set ``shared_audience.value`` (a sid),
    ``data_sources.value`` (a tuple of IDs) and ``force_reconciliation.value``; each change runs
    :meth:`update`, whose outcome is in :attr:`results` (an :class:`ImportResult` or the sentence
    that refused it, per data source).

    Args:
        workspace: the workspace folder or :class:`~audtools.workspace.Workspace`.
        operator: the operator using the screen (default: the workspace's ``default_operator``);
            a non-IMS operator sees the screen disabled, with the reason.
        lock_wait: seconds to wait for another process's lock before offering Retry.
        progress: show tqdm bars (None: only in a notebook).
    """

    title = "Match-rate explorer"
    subtitle = (
        "How a shared audience would reconcile through each data source: the import's dry run, "
        "which writes nothing to the workspace."
    )
    css = "audtools-match-rates"
    drop_kind = "import"

    def setup(self) -> None:
        """The choices' widgets, then the first load and update."""
        self.entries = {}
        #: Per data source: the dry run's result, or the sentence that refused it.
        self.results: dict[str, ImportResult | str] = {}
        #: Seconds the last update took.
        self.elapsed: float | None = None
        self._loading = False

        self.shared_audience = shared_audience_field("Shared audience")
        self.data_sources = field(
            W.SelectMultiple(description="Shared Data Sources", options=[], value=(), rows=6),
            "audtools-data-sources",
        )
        self.force_reconciliation = force_field()
        self.force_help = W.HTML(
            "<div style='color:#555;font-size:90%;margin-left:216px;max-width:640px'>Applies to "
            "encrypted data sources only: unticked, an Email or SMS data source gives a File "
            "audience of every decrypted address; ticked, only the profiles they reconcile with."
            "</div>"
        )
        self.refresh = W.Button(description="Refresh", tooltip="Read the drop and the database again")
        self.refresh.add_class("audtools-refresh")
        self.summary = W.HTML().add_class("audtools-summary")
        self.funnels = W.VBox([])
        self.funnels.add_class("audtools-funnels")
        #: The match rate of the shared audience's past imports through the chosen data
        #: sources (a chart; hidden without any), and the points it shows.
        self.past = W.Image(format="png", layout=W.Layout(max_width="560px"))
        self.past.add_class("audtools-past")
        self.past_points: list[dict[str, object]] = []
        self.results_row = W.HBox(
            [self.summary, self.past],
            layout=W.Layout(flex_flow="row wrap", align_items="flex-start", grid_gap="16px"),
        )

        for widget in (self.shared_audience, self.data_sources, self.force_reconciliation):
            widget.observe(lambda _c: self._changed(), names="value")
        self.refresh.on_click(lambda _b: self.reload())
        self.reload()

    # -- layout -------------------------------------------------------------------------------

    def form(self) -> list[W.Widget]:
        """The choices, top to bottom."""
        return [
            self.shared_audience,
            self.data_sources,
            self.force_reconciliation,
            self.force_help,
            button_row(self.refresh),
        ]

    def result_widgets(self) -> list[W.Widget]:
        """The table with the past match rates beside it, and the funnels."""
        return [self.results_row, self.funnels]

    def controls(self) -> list[W.Widget]:
        """Everything the analyst can change."""
        return [self.shared_audience, self.data_sources, self.force_reconciliation, self.refresh]

    def sync(self) -> None:
        """Disable everything for a refused operator or while working (Refresh stays enabled
        when the workspace could not be read)."""
        super().sync()
        if self.config is None and not self.working:
            self.refresh.disabled = False

    # -- loading ------------------------------------------------------------------------------

    def fill(self, ws: Workspace) -> None:
        """The catalog and the data sources (their changes run no update while they load)."""
        entries = catalog(ws)
        keep_sources = self.data_sources.value
        self._loading = True
        try:
            self.set_catalog(entries, "imported")
            self.data_sources.options = source_options(ws.config)
            self.data_sources.value = tuple(s for s in keep_sources if s in ws.config.data_sources)
        finally:
            self._loading = False

    def loaded(self) -> None:
        """Update once the catalog is loaded."""
        self.update()

    def _changed(self) -> None:
        if not self._loading:
            self.update()

    # -- the dry runs -------------------------------------------------------------------------

    def update(self) -> dict[str, ImportResult | str]:
        """Dry-run the import of the shared audience through each chosen data source.

        Returns:
            Per data source, the dry run's result or the sentence that refused it.
        """
        self.results = {}
        if self.refusal:
            self.say("refused", self.refusal)
            return self.results
        entry = self.entries.get(self.shared_audience.value)
        chosen = [s for s in self.data_sources.value if self.source(s) is not None]
        if entry is None or not chosen:
            self.summary.value = (
                "<div style='color:#777'>Pick a shared audience and one or more data sources.</div>"
            )
            self.funnels.children = ()
            self.say("info", "")
            return self.results
        if entry.type != "segment":
            self.summary.value = ""
            self.funnels.children = ()
            self.say("error", not_a_segment(entry, "imported"))
            return self.results
        force = bool(self.force_reconciliation.value)
        names = ", ".join(chosen)

        def dry_runs() -> None:
            self._dry_runs(entry, chosen, force)

        self.act(f"Working: dry runs of {entry.display} through {names}…", dry_runs, retry=self.update)
        if self.message_kind == "info" and self.elapsed is not None and self.results:
            self.say(
                "info",
                f"Updated in {self.elapsed:.2f} s from a dry run: nothing was written to the "
                "workspace.",
            )
        return self.results

    def _dry_runs(self, entry: SharedAudience, chosen: list[str], force: bool) -> None:
        """The dry run of the import through each chosen data source, then the table."""
        started = time.perf_counter()
        ws = self.workspace()
        results: dict[str, ImportResult | str] = {}
        for source_id in chosen:
            source = ws.config.data_sources[source_id]
            try:
                results[source_id] = import_audience(
                    ws,
                    EXPLORER_LABEL,
                    entry.sid,
                    source_id,
                    force_reconciliation=force and source.encrypted,
                    operator=self.operator,
                    dry_run=True,
                    progress=self.progress,
                    keep_members=False,
                )
            except WorkspaceBusy:
                raise
            except AudtoolsError as exc:
                results[source_id] = exc.message
        self.results = results
        self.elapsed = time.perf_counter() - started
        self._show(entry, force)

    def _show(self, entry: SharedAudience, force: bool) -> None:
        """The table of :attr:`results` (one row per data source) and a funnel per dry run."""
        rows = []
        images = []
        for source_id, outcome in self.results.items():
            source = self.source(source_id)
            name = html.escape(source.label if source else source_id)
            if isinstance(outcome, str):
                rows.append(_refused_row(source_id, name, outcome))
                continue
            note = ""
            if force and source is not None and not source.encrypted:
                note = " <span style='color:#777'>(not encrypted: no forced reconciliation)</span>"
            rows.append(_result_row(source_id, f"{name}{note}", outcome))
            image = W.Image(
                value=funnel_png(
                    outcome,
                    encrypted=source.encrypted if source else None,
                    dpi=72,
                    title=f"{entry.display} through {source.label if source else source_id}",
                ),
                format="png",
                layout=W.Layout(max_width="640px"),
            )
            images.append(W.VBox([W.HTML(f"<b>{name}</b>"), image]))
        waiting = sum(
            r.batches_waiting for r in self.results.values() if isinstance(r, ImportResult)
        )
        self.summary.value = (
            f"<div style='margin:8px 0 4px'><b>{html.escape(entry.display)}</b></div>"
            f"<table class='audtools-table' style='border-collapse:collapse'>{_HEAD}{''.join(rows)}</table>"
            f"{_footnote(waiting)}"
        )
        self.funnels.children = tuple(images)
        show(self.funnels, bool(images))
        self._show_past(entry)

    def _show_past(self, entry: SharedAudience) -> None:
        """The match rate of the past imports of ``entry`` through the chosen data sources."""
        from audtools import charts
        from audtools.jobs.history import runs_frame
        from audtools.workspace.runs import load_runs

        frame = runs_frame(load_runs(self.workspace()))
        chosen = [s for s in self.results if isinstance(self.results[s], ImportResult)]
        frame = frame[(frame["sid"] == entry.sid) & frame["data_source"].isin(chosen)]
        from matplotlib.figure import Figure

        # Smaller than a report's chart, so that it reads at the screen's size.
        fig = Figure(figsize=(6.4, 3.0), layout="constrained")
        charts.match_rate_chart(frame, ax=fig.add_subplot())
        fig.axes[0].set_title(f"Past imports of {entry.display}", loc="left", fontweight="bold")
        fig.text(0.0, 0.0, charts.caption(fig), ha="left", va="top", fontsize=8,
                 color="#444444", style="italic", wrap=True)
        self.past_points = list(charts.chart_data(fig))
        self.past.value = charts.figure_png(fig, dpi=80) if self.past_points else b""
        show(self.past, bool(self.past_points))


# -- the table ------------------------------------------------------------------------------------

_HEADINGS = [
    "data source", "audience", "members", "matched", "match rate", "undecryptable", "no profile",
    "profiles / addresses", "batches ready", "batches waiting",
]
#: The ``data-key`` of each column (tests and the browser test read cells by it).
_KEYS = [
    "source", "type", "members", "matched", "match_rate", "undecryptable", "no_profile", "size",
    "batches_ready", "batches_waiting",
]
_HEAD = (
    "<tr>"
    + "".join(
        f"<th style='text-align:{'left' if i == 0 else 'right'};padding:2px 8px'>{h}</th>"
        for i, h in enumerate(_HEADINGS)
    )
    + "</tr>"
)


def _refused_row(source_id: str, name: str, message: str) -> str:
    return (
        f"<tr data-source='{html.escape(source_id)}'><td style='padding:2px 8px'>{name}</td>"
        f"<td colspan='9' style='color:#b3261e;padding:2px 8px'>{html.escape(message)}</td></tr>"
    )


def _result_row(source_id: str, name: str, r: ImportResult) -> str:
    kind = "File" if r.audience_type == "file" else "Experience Cloud"
    size = r.addresses if r.audience_type == "file" else r.profiles
    cells = [
        name,
        kind,
        f"{r.members:,}",
        f"{r.matched:,}",
        f"<b>{r.match_rate:.1%}</b>",
        f"{r.undecryptable:,}",
        f"{r.unmatched:,}",
        f"{size:,}",
        f"{r.batches_applied:,}",
        f"{r.batches_waiting:,}",
    ]
    return (
        f"<tr data-source='{html.escape(source_id)}'>"
        + "".join(
            f"<td data-key='{k}' style='text-align:{'left' if i == 0 else 'right'};"
            f"padding:2px 8px'>{c}</td>"
            for i, (k, c) in enumerate(zip(_KEYS, cells, strict=True))
        )
        + "</tr>"
    )


def _footnote(waiting: int) -> str:
    return (
        "<div style='color:#555;font-size:90%;margin-top:4px'>Batches ready are complete "
        "batches not imported yet: the dry run reads them without applying them. Batches "
        f"waiting ({waiting:,} in all) are incomplete and are read by no import until their "
        "files arrive.</div>"
    )
