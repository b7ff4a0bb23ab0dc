"""What the three screens share: the message line, the busy state with Retry, the workspace
opened per action and the catalog.

A screen never keeps a database connection between two events: every action opens the workspace
(:meth:`Screen.workspace`), runs one library call that takes the workspace lock and closes its
connection, and shows what happened. Waiting for another process's lock is capped by the screen's
``lock_wait`` so the screen never stays frozen for the workspace's whole ``lock_timeout``; past
it, the screen names the run that holds the workspace and offers Retry.
"""

from __future__ import annotations

import dataclasses
import html
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as W

from audtools.config import DataSource, WorkspaceConfig
from audtools.errors import AudtoolsError, WorkspaceBusy
from audtools.formats.catalog import SharedAudience
from audtools.widgets._parts import (
    busy_sentence,
    catalog_options,
    drop_text,
    quiet_library_logs,
    show,
    unexpected_sentence,
)
from audtools.workspace import Workspace
from audtools.workspace.runs import load_runs

log = logging.getLogger("audtools")

#: Seconds an action waits for another process's lock before the screen says the workspace is
#: busy (the workspace's ``lock_timeout`` when that is shorter).
DEFAULT_LOCK_WAIT = 3.0

# ipywidgets give HTML widgets the line height of a form row; text and tables need less.
_CSS = (
    ".audtools-screen .widget-html-content{line-height:1.45}"
    ".audtools-screen table.audtools-table th,.audtools-screen table.audtools-table td,"
    ".audtools-screen table.dataframe th,.audtools-screen table.dataframe td{line-height:1.45;"
    "padding-top:3px;padding-bottom:3px}"
    ".audtools-screen table.dataframe td{padding-left:6px;padding-right:10px}"
)

_COLOURS = {
    "info": "#444444",
    "working": "#0b5cad",
    "done": "#1a7f37",
    "error": "#b3261e",
    "busy": "#8a5300",
    "refused": "#b3261e",
}
_ICONS = {"working": "⏳ ", "done": "✔ ", "error": "⚠ ", "busy": "⏸ ", "refused": "⛔ "}

_ICONS = {"working": "⏳ ", "done": "✔ ", "error": "⚠ ", "busy": "⏸ ", "refused": "⛔ "}


class Screen:
    """The parts every screen has: the workspace, the operator, the message line, Retry.

    Args:
        workspace: the workspace folder (default: ``$AUDTOOLS_WORKSPACE``, else the current
            folder) or a :class:`~audtools.workspace.Workspace`.
        operator: the Campaign operator using the screen (default: the workspace's
            ``default_operator``); only IMS operators may use it.
        lock_wait: seconds an action waits for another process's lock before saying the
            workspace is busy.
        progress: show tqdm bars (None: only in a notebook).
    """

    title = ""
    subtitle = ""
    css = "audtools-screen"
    #: The drop the screen reads ("import") or writes ("export"), shown under the title.
    drop_kind: str | None = None

    def __init__(
        self,
        workspace: str | os.PathLike[str] | Workspace | None = None,
        *,
        operator: str | None = None,
        lock_wait: float = DEFAULT_LOCK_WAIT,
        progress: bool | None = None,
    ) -> None:
        if isinstance(workspace, Workspace):
            root: str | os.PathLike[str] = workspace.root
        else:
            root = workspace or os.environ.get("AUDTOOLS_WORKSPACE") or "."
        self.root = Path(root).resolve()
        self.operator = operator
        self.lock_wait = float(lock_wait)
        self.progress = progress
        self.config: WorkspaceConfig | None = None
        #: Why the screen is disabled for this operator (None: it is not).
        self.refusal: str | None = None
        #: The last message shown, and its kind: info, working, done, error, busy or refused.
        self.message = ""
        self.message_kind = "info"
        self.working = False
        self._retry_action: Callable[[], Any] | None = None

        self.header = W.HTML(
            f"<style>{_CSS}</style>"
            f"<h3 style='margin:4px 0'>{html.escape(self.title)}</h3>"
            f"<div style='color:#555;margin-bottom:6px'>{html.escape(self.subtitle)}</div>"
        )
        self.status = W.HTML().add_class("audtools-status")
        #: The URL of the drop the screen reads or writes, once the workspace was read.
        self.drop_url: str | None = None
        self.drop_line = W.HTML().add_class("audtools-drop")
        self.retry = W.Button(description="Retry", tooltip="Try the last action again")
        self.retry.add_class("audtools-retry")
        self.retry.on_click(lambda _b: self.retry_last())
        show(self.retry, False)
        self.progress_area = W.Output().add_class("audtools-progress")
        self.history = W.HTML().add_class("audtools-history")
        self.setup()

    def setup(self) -> None:
        """Make the screen's own widgets, last thing in ``__init__`` (overridden by each screen)."""

    # -- the widget ---------------------------------------------------------------------------

    def form(self) -> list[W.Widget]:
        """The screen's own widgets, top to bottom (overridden by each screen)."""
        return []

    def build(self) -> W.VBox:
        """The whole screen: header, form, message line with Retry, progress, history."""
        box = W.VBox(
            [
                self.header,
                self.drop_line,
                *self.form(),
                W.HBox([self.status, self.retry], layout=W.Layout(align_items="center")),
                self.progress_area,
                *self.result_widgets(),
                self.history,
            ],
            layout=W.Layout(padding="4px 8px"),
        )
        box.add_class("audtools-screen")
        box.add_class(self.css)
        return box

    def result_widgets(self) -> list[W.Widget]:
        """The widgets that show an action's result (overridden by each screen)."""
        return []

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # -- workspace and operator --------------------------------------------------------------

    def workspace(self) -> Workspace:
        """The workspace, opened now, with its lock wait capped at ``lock_wait``."""
        ws = Workspace(self.root)
        wait = min(ws.config.lock_timeout, self.lock_wait)
        ws.config = dataclasses.replace(ws.config, lock_timeout=wait)
        self.config = ws.config
        if self.drop_kind is not None:
            self.drop_url, self.drop_line.value = drop_text(ws.config, self.drop_kind)
        return ws

    def check_operator(self, config: WorkspaceConfig) -> None:
        """Disable the screen, with the reason, for an operator who may not share audiences."""
        from audtools.workspace.operators import check_operator

        try:
            check_operator(config, self.operator)
        except AudtoolsError as exc:
            self.refusal = f"This screen is disabled: {exc.message}"
        else:
            self.refusal = None

    def source(self, source_id: str | None) -> DataSource | None:
        """The configured data source ``source_id``, if any."""
        if self.config is None or source_id is None:
            return None
        return self.config.data_sources.get(source_id)

    # -- messages and actions ------------------------------------------------------------------

    def say(self, kind: str, text: str) -> None:
        """Show one message (a sentence) in the message line."""
        self.message, self.message_kind = text, kind
        colour = _COLOURS.get(kind, _COLOURS["info"])
        icon = _ICONS.get(kind, "")
        self.status.value = (
            f"<div class='audtools-message audtools-{kind}' style='color:{colour};"
            f"padding:4px 0;max-width:900px'>{icon}{html.escape(text)}</div>"
            if text
            else ""
        )
        show(self.retry, kind == "busy")

    def controls(self) -> list[W.Widget]:
        """The widgets an action disables while it runs (overridden by each screen)."""
        return []

    def sync(self) -> None:
        """Enable or disable the controls from the screen's state (overridden by each screen)."""

    def act(
        self,
        working: str,
        action: Callable[[], Any],
        *,
        retry: Callable[[], Any] | None = None,
        keep_message: bool = False,
    ) -> bool:
        """Run ``action`` with a visible working state; show any error as one sentence.

        Args:
            working: what the screen says while the action runs.
            action: the work; it shows its own result and message.
            retry: what Retry does when the workspace is busy (default: the same action).
            keep_message: put back the message shown before, when the action succeeds.

        Returns:
            True when the action finished without an error.
        """
        before = (self.message_kind, self.message)
        self.say("working", working)
        self.working = True
        for widget in self.controls():
            widget.disabled = True
        ok = False
        with self.progress_area:
            try:
                with quiet_library_logs():
                    action()
                ok = True
            except WorkspaceBusy as exc:
                self._retry_action = retry or (
                    lambda: self.act(working, action, retry=retry, keep_message=keep_message)
                )
                self.say("busy", busy_sentence(exc))
            except AudtoolsError as exc:
                self.say("error", exc.message)
            except Exception as exc:  # noqa: BLE001 - the screen shows one sentence, never a traceback
                log.debug("a screen action failed", exc_info=True)
                self.say("error", unexpected_sentence(exc))
        self.progress_area.clear_output()
        self.working = False
        if ok and self.message_kind == "working":
            if keep_message and before[0] in ("info", "done", "refused"):
                self.say(*before)
            else:
                self.say("info", "")
        self.sync()
        return ok

    def retry_last(self) -> None:
        """Retry the action the busy workspace stopped."""
        action, self._retry_action = self._retry_action, None
        show(self.retry, False)
        if action is not None:
            action()

    def refresh_history(self, kind: str) -> None:
        """The last run of ``kind`` in one line, read from the runs' ``result.json`` files (never
        the database, so it works while a job holds the workspace)."""
        try:
            runs = [r for r in load_runs(self.root) if r.get("kind") == kind]
        except AudtoolsError:
            runs = []
        if not runs:
            self.history.value = ""
            return
        last = runs[0]
        what = ""
        if kind == "import" and isinstance(last.get("audience"), dict):
            what = f" — {last['audience'].get('label', '')}"
            if "match_rate" in last:
                what += f", match rate {float(last['match_rate']):.1%}"
        elif kind == "export" and isinstance(last.get("shared_audience"), dict):
            shared = last["shared_audience"]
            what = f" — {shared.get('name', '')} ({shared.get('sid', '')})"
            if "ids_exported" in last:
                what += f", {int(last['ids_exported']):,} IDs exported"
        finished = str(last.get("finished_at") or "").replace("T", " ").rstrip("Z")
        self.history.value = (
            f"<div style='color:#777;font-size:90%;margin-top:8px'>Last {kind}: run "
            f"{html.escape(str(last.get('run_id')))}, {html.escape(str(last.get('status')))}"
            f"{html.escape(what)}{', finished ' + html.escape(finished) + ' UTC' if finished else ''}"
            "</div>"
        )

    @property
    def widget(self) -> W.VBox:
        """The screen's widget tree (built once)."""
        built: W.VBox | None = getattr(self, "_widget", None)
        if built is None:
            built = self._widget = self.build()
        return built


class CatalogScreen(Screen):
    """A screen on the catalog: it reads the configuration and the catalog when it opens and on
    :meth:`reload`, and disables every control for a refused operator, while an action runs, or
    when the workspace could not be read.

    A screen makes its widgets in :meth:`setup` (ending with :meth:`reload`), fills them from the
    workspace in :meth:`fill`, and follows a load that was not refused with :meth:`loaded`.
    """

    #: The catalog's entries by sid, as last loaded.
    entries: dict[int, SharedAudience]
    #: The dropdown of shared audiences (see :func:`shared_audience_field`).
    shared_audience: W.Dropdown

    def locked(self) -> bool:
        """Whether the controls are disabled: a refused operator, an action running, or a
        workspace that could not be read."""
        return self.refusal is not None or self.working or self.config is None

    def sync(self) -> None:
        """Disable everything for a refused operator or while working."""
        disabled = self.locked()
        for widget in self.controls():
            widget.disabled = disabled

    def reload(self) -> bool:
        """Read the configuration and the catalog again (one short session), then
        :meth:`loaded`."""
        ok = self.act("Loading the catalog…", self._load, retry=self.reload)
        if ok and self.refusal is None:
            self.loaded()
        return ok

    def _load(self) -> None:
        ws = self.workspace()
        self.check_operator(ws.config)
        self.fill(ws)
        if self.refusal:
            self.say("refused", self.refusal)

    def fill(self, ws: Workspace) -> None:
        """Fill the form from the opened workspace (overridden by each screen)."""

    def loaded(self) -> None:
        """What follows a load that was not refused (overridden by each screen)."""

    def set_catalog(
        self,
        entries: Iterable[SharedAudience],
        verb: str,
        *,
        extra: Sequence[tuple[str, Any]] = (),
        select: Any = None,
    ) -> None:
        """Keep ``entries`` and offer them in :attr:`shared_audience` after the ``extra`` options,
        keeping the choice (or choosing ``select``) when it is still offered."""
        entries = list(entries)
        self.entries = {e.sid: e for e in entries}
        keep = self.shared_audience.value if select is None else select
        options: list[tuple[str, Any]] = [*extra, *catalog_options(entries, verb)]
        self.shared_audience.options = options
        self.shared_audience.value = keep if keep in [v for _label, v in options] else None

    def form_problem(self) -> str | None:
        """Why no action can run whatever the form says (None: one can)."""
        if self.refusal:
            return self.refusal
        if self.config is None:
            return "The workspace could not be read; press Retry or fix the workspace."
        return None
