"""Campaign's *Save audience* workflow activity, shared in the Experience Cloud (SPEC §6).

:class:`SaveAudienceScreen` holds the activity and its logic: a targeting condition with a live
count of the targeted profiles, "Share in Adobe Experience Cloud", the shared audience (an existing
segment, or a new Segment name and Create), the Shared Data Source, "Generate an outbound
transition", the check mark that confirms the settings (a dry run of the export), and Start,
which exports and shows the IDs exported, those already shared, the profiles without an ID, the
files written, the sync window and the outbound transition.

Example:
    >>> from audtools.widgets import SaveAudienceScreen
    >>> SaveAudienceScreen("data/demo")                   # doctest: +SKIP
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import ipywidgets as W

from audtools.exporting.flow import ExportResult, export_audience
from audtools.formats.catalog import SharedAudience
from audtools.shared_audiences import catalog_entries
from audtools.widgets._parts import (
    button_row,
    data_source_field,
    field,
    is_visible,
    not_a_segment,
    shared_audience_field,
    show,
    source_options,
)
from audtools.widgets._save_parts import (
    confirmed_sentence,
    count_targeted,
    result_html,
    segment_name_problem,
    transition_html,
)
from audtools.widgets._screen import CatalogScreen
from audtools.workspace import Workspace, new_run_id

__all__ = ["NEW_SEGMENT", "TRANSITION_NAME", "SaveAudienceScreen"]

#: The shared-audience value of a segment typed in and created on this screen.
NEW_SEGMENT = "__new_segment__"
#: The outbound transition's file, in the run's folder.
TRANSITION_NAME = "outbound_transition.csv"


class SaveAudienceScreen(CatalogScreen):
    """Share targeted profiles as a segment: the Save audience activity and its logic.

    Tests drive it without a browser: set ``condition.value`` (the count updates), pick
    ``shared_audience.value`` (a sid) or set ``segment_name.value`` and ``create.click()``, set
    ``data_source.value`` and ``outbound.value``, then ``confirm.click()`` and ``start.click()``;
    the export's result is :attr:`result`.

    Args:
        workspace: the workspace folder or :class:`~audtools.workspace.Workspace`.
        operator: the operator using the screen (default: the workspace's ``default_operator``);
            a non-IMS operator sees the screen disabled, with the reason.
        lock_wait: seconds to wait for another process's lock before offering Retry.
        progress: show tqdm bars (None: only in a notebook).
    """

    title = "Save audience"
    subtitle = "Workflow activity: share the targeted profiles in the Adobe Experience Cloud."
    css = "audtools-save-audience"
    drop_kind = "export"

    def setup(self) -> None:
        """The activity's widgets, then the first load and count."""
        self.entries = {}
        self.columns: list[str] = []
        #: Profiles the current condition targets (None: unknown, or the condition is refused).
        self.targeted: int | None = None
        #: The dry run behind the check mark; None until the settings are confirmed.
        self.preview: ExportResult | None = None
        #: The last export's result.
        self.result: ExportResult | None = None
        #: The outbound transition file of the last export, when one was generated.
        self.transition_path: Path | None = None
        self.new_segment: str | None = None
        self._loading = False
        self._make_fields()
        self.confirm = W.Button(
            description="✓", tooltip="Confirm the settings", button_style="success", layout=W.Layout(width="48px")
        ).add_class("audtools-confirm")
        self.start = W.Button(
            description="Start", button_style="primary", tooltip="Start the export"
        ).add_class("audtools-start")
        self.result_area = W.HTML().add_class("audtools-result")
        self.transition_area = W.HTML().add_class("audtools-transition")

        self.condition.observe(lambda _c: self._condition_changed(), names="value")
        self.share.observe(lambda _c: self._share_changed(), names="value")
        for widget in (self.shared_audience, self.data_source, self.outbound):
            widget.observe(lambda _c: self.unconfirm(), names="value")
        self.create.on_click(lambda _b: self.create_segment())
        self.confirm.on_click(lambda _b: self.confirm_settings())
        self.start.on_click(lambda _b: self.start_export())
        self.reload()

    def _make_fields(self) -> None:
        """The condition with its count, then "Share" and the shared-audience fields."""
        self.condition = field(
            W.Textarea(
                description="Targeting condition",
                placeholder="e.g. country = 'FR' AND loyalty_points >= 100  (empty: all profiles)",
                continuous_update=False,
                rows=2,
            ),
            "audtools-condition",
        )
        self.count = W.HTML().add_class("audtools-count")
        self.columns_help = W.HTML()
        self.share = field(
            W.Checkbox(description="Share in Adobe Experience Cloud", value=True), "audtools-share"
        )
        self.shared_audience = shared_audience_field("Shared audience")
        self.segment_name = field(
            W.Text(description="Segment name", placeholder="A new segment's name, then Create"),
            "audtools-segment-name",
        )
        self.segment_name.layout.width = "560px"
        self.create = W.Button(
            description="Create", tooltip="Create a new shared audience", layout=W.Layout(width="96px")
        ).add_class("audtools-create")
        self.data_source = data_source_field()
        self.outbound = field(
            W.Checkbox(description="Generate an outbound transition", value=False),
            "audtools-outbound",
        )
        self.share_box = W.VBox(
            [self.shared_audience, W.HBox([self.segment_name, self.create]), self.data_source, self.outbound]
        )

    # -- layout -------------------------------------------------------------------------------

    def form(self) -> list[W.Widget]:
        """The activity's fields, top to bottom."""
        return [
            self.condition,
            W.HBox([self.count, self.columns_help], layout=W.Layout(margin="0 0 6px 216px")),
            self.share,
            self.share_box,
            button_row(self.confirm, self.start),
        ]

    def result_widgets(self) -> list[W.Widget]:
        """The export's result and its outbound transition."""
        return [self.result_area, self.transition_area]

    def controls(self) -> list[W.Widget]:
        """Everything the operator can change or press."""
        return [self.condition, self.share, self.shared_audience, self.segment_name, self.create,
                self.data_source, self.outbound, self.confirm, self.start]

    def sync(self) -> None:
        """Start only after the check mark; nothing for a refused operator or while working."""
        super().sync()
        self.start.disabled = self.locked() or self.preview is None

    # -- loading ------------------------------------------------------------------------------

    def fill(self, ws: Workspace) -> None:
        """The catalog, the profile columns, the data sources and the last export."""
        with ws.session(purpose="save audience screen") as con:
            entries = catalog_entries(ws, con)
            self.columns = [r[0] for r in con.execute("DESCRIBE profiles").fetchall()]
        self._set_catalog(entries)
        keep = self.data_source.value
        self._loading = True
        try:
            self.data_source.options = source_options(ws.config)
            self.data_source.value = keep if keep in ws.config.data_sources else None
        finally:
            self._loading = False
        self.columns_help.value = (
            "<div style='color:#777;font-size:90%;margin-left:12px'>Profile columns: "
            f"{html.escape(', '.join(self.columns))}</div>"
        )
        self.refresh_history("export")

    def loaded(self) -> None:
        """Count the targeted profiles once the catalog is loaded."""
        self.update_count()

    def _set_catalog(self, entries: list[SharedAudience], select: int | str | None = None) -> None:
        extra = []
        if self.new_segment is not None:
            extra.append((f"{self.new_segment} (new segment, created at Start)", NEW_SEGMENT))
        self._loading = True
        try:
            self.set_catalog(entries, "shared", extra=extra, select=select)
        finally:
            self._loading = False

    # -- the live count -----------------------------------------------------------------------

    def _condition_changed(self) -> None:
        self.unconfirm()
        self.update_count()

    def update_count(self) -> int | None:
        """Count the profiles the condition targets: validate it, then one short read under the
        workspace lock (the connection is closed before the screen waits for the next event).

        Returns:
            The count, or None when the condition is refused or the workspace is busy.
        """
        condition = self.condition.value
        self.targeted = None
        self.count.value = "<span style='color:#0b5cad'>counting…</span>"

        def count() -> None:
            self.targeted = count_targeted(self.workspace(), condition)

        ok = self.act(
            "Counting the targeted profiles…", count, retry=self.update_count, keep_message=True
        )
        if ok and self.targeted is not None:
            self.count.value = f"<b>{self.targeted:,}</b> profiles targeted"
        elif self.message_kind == "error":
            self.count.value = f"<span style='color:#b3261e'>{html.escape(self.message)}</span>"
        else:
            self.count.value = "<span style='color:#8a5300'>count unavailable</span>"
        return self.targeted

    # -- shared audience ----------------------------------------------------------------------

    def _share_changed(self) -> None:
        show(self.share_box, bool(self.share.value))
        self.unconfirm()

    def create_segment(self) -> bool:
        """Create: the typed Segment name becomes the shared audience (made at Start, with its
        sid, in the same transaction as the export's ledger).

        Returns:
            True when the name was accepted.
        """
        name = self.segment_name.value
        problem = segment_name_problem(name, self.entries.values())
        if problem:
            self.say("error", problem)
            return False
        self.new_segment = name
        self._set_catalog(list(self.entries.values()), select=NEW_SEGMENT)
        self.unconfirm()
        self.say(
            "info",
            f"The segment {name!r} will be created in the Experience Cloud when the export starts.",
        )
        return True

    # -- check mark and Start -----------------------------------------------------------------

    def unconfirm(self) -> None:
        """A changed setting must be confirmed again."""
        if self._loading:
            return
        if self.preview is not None:
            self.preview = None
            if not self.working:
                self.say("info", "The settings changed: confirm them again (✓), then Start.")
        self.sync()

    def problem(self) -> str | None:
        """Why the settings cannot be confirmed as they stand (None: they can)."""
        blocked = self.form_problem()
        if blocked:
            return blocked
        if not self.share.value:
            return (
                "Tick 'Share in Adobe Experience Cloud': audtools saves audiences only by sharing "
                "them as a segment."
            )
        value = self.shared_audience.value
        if value is None:
            return "Pick a shared audience, or type a Segment name and press Create."
        if value != NEW_SEGMENT:
            entry = self.entries.get(value)
            if entry is None:
                return "Pick a shared audience, or type a Segment name and press Create."
            if entry.type != "segment":
                return not_a_segment(entry, "shared")
        if self.source(self.data_source.value) is None:
            return "Choose the Shared Data Source whose IDs are exported."
        return None

    def _target(self) -> dict[str, Any]:
        value = self.shared_audience.value
        if value == NEW_SEGMENT:
            return {"segment_name": self.new_segment}
        return {"shared_audience": value}

    def confirm_settings(self) -> ExportResult | None:
        """The check mark: check every setting with a dry run of the export (writes nothing).

        Returns:
            The dry run's result, or None when a setting is refused.
        """
        self.preview = None
        problem = self.problem()
        if problem:
            self.say("refused" if self.refusal else "error", problem)
            self.sync()
            return None
        condition = self.condition.value.strip() or None
        source_id = self.data_source.value
        target = self._target()

        def dry_run() -> None:
            preview = export_audience(
                self.workspace(),
                data_source=source_id,
                where=condition,
                operator=self.operator,
                dry_run=True,
                progress=False,
                keep_transitions=False,
                **target,
            )
            self.preview = preview
            self.say("done", confirmed_sentence(preview))

        self.act("Checking the settings…", dry_run, retry=self.confirm_settings)
        return self.preview

    def start_export(self) -> ExportResult | None:
        """Start: export the targeted profiles' new IDs and show the result.

        Returns:
            The export's result, or None when it was refused or failed.
        """
        if self.preview is None:
            self.say("error", "Confirm the settings with the check mark (✓) first, then Start.")
            return None
        problem = self.problem()
        if problem:
            self.say("error", problem)
            return None
        condition = self.condition.value.strip() or None
        source_id = self.data_source.value
        target = self._target()
        outbound = bool(self.outbound.value)
        self.result = None

        self.act("Working: exporting the targeted profiles…",
                 lambda: self._export(condition, source_id, target, outbound), retry=self.start_export)
        return self.result

    def _export(self, condition: str | None, source_id: str, target: dict[str, Any], outbound: bool) -> None:
        """The export itself, then the result, the refreshed catalog and the last run."""
        ws = self.workspace()
        run_id = new_run_id()
        path = ws.run_dir(run_id) / TRANSITION_NAME if outbound else None
        result = export_audience(
            ws,
            data_source=source_id,
            where=condition,
            outbound_transition=path,
            operator=self.operator,
            progress=self.progress,
            run_id=run_id,
            keep_transitions=outbound,
            **target,
        )
        self.result, self.transition_path = result, path
        self.preview = None
        if result.created:
            self.new_segment = None
            self.segment_name.value = ""
        with ws.session(purpose="save audience screen") as con:
            entries = catalog_entries(ws, con)
        self._set_catalog(entries, select=result.shared_audience.sid)
        self._show_result(result)
        self.refresh_history("export")
        self.say(
            "done",
            f"Export {result.run_id} done: {result.ids_exported:,} IDs shared with "
            f"{result.shared_audience.display}.",
        )

    def _show_result(self, result: ExportResult) -> None:
        source = self.source(result.data_source)
        self.result_area.value = result_html(result, source.label if source else result.data_source)
        if self.transition_path is None:
            self.transition_area.value = ""
            return
        relative = self.transition_path.relative_to(self.root).as_posix()
        self.transition_area.value = transition_html(result.outbound_transition, relative)

    @property
    def share_fields_visible(self) -> bool:
        """Whether the shared-audience fields are shown (with "Share" ticked)."""
        return is_visible(self.share_box)
