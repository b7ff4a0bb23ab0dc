"""Campaign's *Audiences > Create* screen for an Experience Cloud audience (SPEC §5).

:class:`CreateAudienceScreen` holds the form and its logic: Label, Type (only Experience Cloud
here), the shared audience (segments of the catalog as ``Name (sid)``; traits and rules shown as
not available, with the reason), the Shared Data Source, "Force reconciliation with a profile"
(shown only for an encrypted data source), and Confirm, which runs the import and shows the
audience type, the counts, the funnel and the sync window.

Example:
    >>> from audtools.widgets import CreateAudienceScreen
    >>> screen = CreateAudienceScreen("data/demo")        # doctest: +SKIP
    >>> screen                                            # doctest: +SKIP
"""

from __future__ import annotations

import html

import ipywidgets as W

from audtools.importing.flow import ImportResult, import_audience
from audtools.shared_audiences import catalog
from audtools.widgets._parts import (
    button_row,
    data_source_field,
    field,
    force_field,
    funnel_png,
    not_a_segment,
    number,
    shared_audience_field,
    show,
    source_options,
    table,
    window_text,
)
from audtools.widgets._screen import CatalogScreen
from audtools.workspace import Workspace

__all__ = ["FORCE_HELP", "TYPE_OPTIONS", "CreateAudienceScreen"]

#: Campaign's audience types; only Experience Cloud audiences are created from a shared audience.
TYPE_OPTIONS: list[tuple[str, str]] = [
    ("Experience Cloud", "experience_cloud"),
    ("List — not available here: made from a workflow or a file in Campaign", "list"),
    ("Query — not available here: made from a query in Campaign", "query"),
    ("File — not available here: made by uploading a file in Campaign", "file"),
]

#: What unticking "Force reconciliation with a profile" does, in one line.
FORCE_HELP = (
    "Unticked, an Email or SMS data source gives a File audience of every decrypted address, "
    "whether or not a profile has it; ticked, only the profiles those addresses reconcile with "
    "(an Experience Cloud audience)."
)
_FORCE_OTHER = (
    " This data source is neither Email nor SMS, so its members are reconciled with profiles "
    "either way."
)


class CreateAudienceScreen(CatalogScreen):
    """Create an Experience Cloud audience from a shared audience: the form and its logic.

    Tests drive it without a browser: set ``label.value``, ``shared_audience.value`` (a sid),
    ``data_source.value`` (an ID), ``force_reconciliation.value``, then ``confirm.click()``; the
    import's result is :attr:`result`, the message :attr:`message`.

    Args:
        workspace: the workspace folder or :class:`~audtools.workspace.Workspace`.
        operator: the operator using the screen (default: the workspace's ``default_operator``);
            a non-IMS operator sees the screen disabled, with the reason.
        lock_wait: seconds to wait for another process's lock before offering Retry.
        progress: show tqdm bars (None: only in a notebook).
    """

    title = "Create audience"
    subtitle = "Audiences > Create: import a shared audience of the Experience Cloud."
    css = "audtools-create-audience"
    drop_kind = "import"

    def setup(self) -> None:
        """The form's widgets, then the first load."""
        self.entries = {}
        #: The last import's result (None before the first).
        self.result: ImportResult | None = None

        self.label = field(W.Text(description="Label", placeholder="Audience label"), "audtools-label")
        self.audience_type = field(
            W.Dropdown(description="Type", options=TYPE_OPTIONS, value="experience_cloud"),
            "audtools-type",
        )
        self.shared_audience = shared_audience_field("Name of the shared audience")
        self.data_source = data_source_field()
        self.force_reconciliation = force_field()
        self.force_help = W.HTML().add_class("audtools-force-help")
        self.force_box = W.VBox([self.force_reconciliation, self.force_help])
        show(self.force_box, False)
        self.confirm = W.Button(description="Confirm", button_style="primary", tooltip="Import the shared audience")
        self.confirm.add_class("audtools-confirm")
        self.result_area = W.HTML().add_class("audtools-result")
        self.funnel = W.Image(format="png", layout=W.Layout(max_width="760px"))
        self.funnel.add_class("audtools-funnel")
        show(self.funnel, False)

        self.data_source.observe(lambda _c: self._source_changed(), names="value")
        self.confirm.on_click(lambda _b: self.confirm_import())
        self.reload()

    # -- layout -------------------------------------------------------------------------------

    def form(self) -> list[W.Widget]:
        """The fields, top to bottom, as Campaign lays them out."""
        return [
            self.label,
            self.audience_type,
            self.shared_audience,
            self.data_source,
            self.force_box,
            button_row(self.confirm),
        ]

    def result_widgets(self) -> list[W.Widget]:
        """The result: counts, sync window, funnel."""
        return [self.result_area, self.funnel]

    def controls(self) -> list[W.Widget]:
        """Everything the operator can change."""
        return [
            self.label,
            self.audience_type,
            self.shared_audience,
            self.data_source,
            self.force_reconciliation,
            self.confirm,
        ]

    # -- loading ------------------------------------------------------------------------------

    def fill(self, ws: Workspace) -> None:
        """The catalog, the data sources and the last import."""
        keep_source = self.data_source.value
        self.set_catalog(catalog(ws), "imported")
        self.data_source.options = source_options(ws.config)
        self.data_source.value = keep_source if keep_source in ws.config.data_sources else None
        self._source_changed()
        self.refresh_history("import")

    def _source_changed(self) -> None:
        """Show "Force reconciliation" only for an encrypted data source."""
        source = self.source(self.data_source.value)
        encrypted = source is not None and source.encrypted
        if not encrypted:
            self.force_reconciliation.value = False
        help_text = FORCE_HELP
        if source is not None and source.channel not in ("email", "sms"):
            help_text += _FORCE_OTHER
        self.force_help.value = (
            f"<div style='color:#555;font-size:90%;margin-left:216px;max-width:640px'>"
            f"{html.escape(help_text)}</div>"
        )
        show(self.force_box, encrypted)

    # -- confirm ------------------------------------------------------------------------------

    def problem(self) -> str | None:
        """Why Confirm cannot run as the form stands (None: it can)."""
        blocked = self.form_problem()
        if blocked:
            return blocked
        if self.audience_type.value != "experience_cloud":
            label = dict((v, k) for k, v in TYPE_OPTIONS)[self.audience_type.value].split(" —")[0]
            return (
                f"{label} audiences are not made from a shared audience: choose the type "
                "Experience Cloud."
            )
        if not self.label.value.strip():
            return "Give the audience a label."
        entry = self.entries.get(self.shared_audience.value)
        if entry is None:
            return "Choose the shared audience to import."
        if entry.type != "segment":
            return not_a_segment(entry, "imported")
        if self.source(self.data_source.value) is None:
            return "Choose the Shared Data Source of the IDs to import."
        return None

    def confirm_import(self) -> ImportResult | None:
        """Confirm: import the shared audience and show the result (or the reason it could not).

        Returns:
            The import's result, or None when it was refused or failed.
        """
        problem = self.problem()
        if problem:
            self.say("refused" if self.refusal else "error", problem)
            return None
        entry = self.entries[self.shared_audience.value]
        source = self.source(self.data_source.value)
        assert source is not None
        self.result = None
        ok = self.act(
            f"Working: importing {entry.display} through {source.label}…",
            lambda: self._import(entry.sid, source.id),
            retry=self.confirm_import,
        )
        return self.result if ok else None

    def _import(self, sid: int, source_id: str) -> None:
        ws = self.workspace()
        result = import_audience(
            ws,
            self.label.value,
            sid,
            source_id,
            force_reconciliation=bool(self.force_reconciliation.value),
            operator=self.operator,
            progress=self.progress,
            keep_members=False,
        )
        self.result = result
        self._show_result(result)
        self.refresh_history("import")
        kind = "File" if result.audience_type == "file" else "Experience Cloud"
        self.say(
            "done",
            f"The {kind} audience {result.label!r} was imported (run {result.run_id}): "
            f"{result.matched:,} of {result.members:,} members matched.",
        )

    def _show_result(self, result: ImportResult) -> None:
        source = self.source(result.data_source)
        self.result_area.value = result_html(result, source.label if source else result.data_source)
        self.funnel.value = funnel_png(result, encrypted=source.encrypted if source else None)
        show(self.funnel, True)


def result_html(result: ImportResult, source_label: str) -> str:
    """The import's result: audience type, counts, batches and the sync window."""
    kind = "File" if result.audience_type == "file" else "Experience Cloud"
    rows: list[tuple[str, str, str]] = [
        ("type", "Audience type", kind),
        ("members", "Members (IDs in the shared audience)", number(result.members)),
        ("undecryptable", "Undecryptable", number(result.undecryptable)),
        ("matched", "Matched with a profile", number(result.matched)),
        ("unmatched", "Unmatched (no profile)", number(result.unmatched)),
    ]
    if result.audience_type == "file":
        rows.append(("addresses", "Addresses in the audience", number(result.addresses)))
    else:
        rows.append(("profiles", "Profiles in the audience", number(result.profiles)))
    rows += [
        ("match_rate", "Match rate", f"{result.match_rate:.1%}"),
        ("rows", "Batch rows read / rejected", f"{result.rows_read:,} / {result.rows_rejected:,}"),
        (
            "batches",
            "Batches applied / waiting / skipped",
            f"{result.batches_applied:,} / {result.batches_waiting:,} / {len(result.batches_skipped):,}",
        ),
        ("window", "Sync window", window_text(result.available_from, result.available_to)),
    ]
    head = (
        f"<div style='margin:8px 0 4px'><b>{html.escape(result.label)}</b>: {kind} audience of "
        f"{html.escape(result.shared_audience.display)} through {html.escape(source_label)}"
        f"{' — run ' + html.escape(result.run_id) if result.run_id else ''}</div>"
    )
    return head + table(rows)


