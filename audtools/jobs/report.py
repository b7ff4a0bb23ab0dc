"""Reports for stakeholders: the summaries, tables and charts that job notebooks display.

The job notebooks call these functions; :mod:`audtools.jobs.rendering` turns an executed notebook into
a self-contained ``report.html`` and writes ``runs/index.html``. Everything here shows counts,
rates, names of shared audiences and data sources, and times: never an ID, an email address or
a phone number. Free text that could hold one (error messages, targeting conditions) goes
through :func:`scrub` or :func:`redact_condition` first.

Example:
    >>> from audtools.jobs import report
    >>> report.import_summary("data/demo", result)   # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pandas as pd

from audtools.jobs.formatting import (
    Html,
    chart_html,
    chart_or_note,
    delay,
    escape,
    html_table,
    percent,
    redact_condition,
    scrub,
    short_when,
    short_window,
    thousands,
    when,
    window,
)
from audtools.jobs.history import data_source_rows, previous_run, runs_frame, select_runs
from audtools.workspace import Workspace, as_workspace
from audtools.workspace.runs import load_runs

__all__ = [
    "Html",
    "chart_html",
    "counts_text",
    "data_source_rows",
    "data_source_table",
    "drop_line",
    "export_details",
    "export_summary",
    "history_summary",
    "import_details",
    "import_summary",
    "redact_condition",
    "runs_frame",
    "runs_table",
    "scrub",
    "select_runs",
    "short_when",
    "short_window",
    "show",
    "when",
    "window",
]


def _dropped(data: dict[str, Any]) -> str:
    """Said when ``rejects.csv`` lists only the first ``max_rejects_kept`` rejects."""
    kept = data.get("rejects_kept")
    if kept is None or kept >= data["rows_rejected"]:
        return ""
    return f" (rejects.csv lists the first {thousands(kept)}; the others were counted, not listed)"


def _change(rate: float, previous: pd.Series | None, noun: str) -> str:
    if previous is None or pd.isna(previous["match_rate"]):
        return f"This is the first run of {noun}."
    delta = (rate - float(previous["match_rate"])) * 100
    move = "unchanged" if abs(delta) < 0.05 else f"{'up' if delta > 0 else 'down'} {abs(delta):.1f} points"
    return (f"{move.capitalize()} since the previous run of {noun} "
            f"({percent(previous['match_rate'])} on {when(previous['started_at'])}).")


def show(fig: Any, alt: str) -> None:
    """Display a chart in the notebook as an embedded PNG with alternative text, whatever the
    matplotlib backend (the figure is not kept by pyplot, so it is shown once).

    ``fig`` is a figure or a function that makes one; when drawing fails, a note is shown
    instead, so that a chart never fails a job whose run is already recorded.
    """
    from IPython.display import display

    display({"text/html": chart_or_note(fig, alt), "text/plain": f"[chart] {alt}"}, raw=True)


def _source_label(ws: Workspace, source: str | None) -> str:
    entry = ws.config.data_sources.get(source or "")
    return f"{entry.label} ({source})" if entry else str(source)


def _as_dict(result: Any) -> dict[str, Any]:
    if hasattr(result, "to_json"):
        data = result.to_json()
        data.setdefault("started_at", getattr(result, "started_at", None))
        return data
    return dict(result)


def drop_line(workspace: str | os.PathLike[str] | Workspace | None, kind: str) -> Html:
    """Where the job reads (``kind`` "import") or writes ("export"): the drop's URL as the drops
    layer shows it, never a credential (a password or passphrase is never part of it).

    The job notebooks show it to the analyst in a cell that the stakeholder report leaves out:
    an SFTP URL's ``login@host`` reads like an email address, which reports never show.
    """
    from audtools.drops import export_drop, import_drop

    ws = as_workspace(workspace)
    drop = import_drop(ws.config) if kind == "import" else export_drop(ws.config)
    what = "Reads the import drop" if kind == "import" else "Writes to the export drop"
    return Html(f"<p class='aud-meta'>{what} <code>{escape(drop.url)}</code>.</p>")


# -- summaries ----------------------------------------------------------------------------------


def import_summary(workspace: str | os.PathLike[str] | Workspace | None, result: Any) -> Html:
    """The stakeholder summary of one import: what was imported, when it is available in
    Campaign, the match rate and how it moved since the previous run of the same label."""
    ws = as_workspace(workspace)
    data = _as_dict(result)
    aud = data["audience"]
    shared = aud["shared_audience"]
    is_file = aud["type"] == "file"
    size = f"{thousands(data['addresses'])} addresses" if is_file else f"{thousands(data['profiles'])} profiles"
    kind = "File audience" if is_file else "Experience Cloud audience"
    history = runs_frame(load_runs(ws))
    previous = previous_run(history, {**data, "label": aud["label"]}, kind="import", same=["label"])
    rate = float(data["match_rate"])
    reasons = data.get("unmatched_reasons") or {}
    parts = [
        f"<h1>Import: {escape(scrub(aud['label']))}</h1>",
        "<p class='aud-lede'>The shared audience <b>" + escape(f"{scrub(shared['name'])} ({shared['sid']})")
        + "</b>, read through the data source <b>" + escape(_source_label(ws, aud["data_source"]))
        + f"</b>, is now the {kind} <b>{escape(scrub(aud['label']))}</b> of <b>{size}</b>.</p>",
        "<ul class='aud-facts'>",
        f"<li><b>Available in Campaign</b> from {escape(window(data.get('available_from'), data.get('available_to')))}"
        f"{escape(delay(data))}.</li>",
        f"<li><b>Match rate {percent(rate)}</b>: {thousands(data['matched'])} of {thousands(data['members'])} members "
        f"matched a profile. {escape(_change(rate, previous, 'this label'))}</li>",
        f"<li><b>Unmatched</b>: {thousands(data['unmatched'])} members: no profile "
        f"{thousands(reasons.get('no_profile'))}, could not be decrypted {thousands(reasons.get('undecryptable'))}.</li>",
        f"<li><b>Batches</b>: {thousands(data['batches_applied'])} applied, {thousands(data['batches_waiting'])} waiting, "
        f"{len(data.get('batches_skipped') or [])} skipped; {thousands(data['rows_read'])} rows read, "
        f"{thousands(data['rows_rejected'])} rejected{_dropped(data)}.</li>",
        "</ul>",
        f"<p class='aud-meta'>Run {escape(data.get('run_id') or 'not recorded')}, started "
        f"{escape(when(data.get('started_at')))}.</p>",
    ]
    return Html("<div class='aud-summary'>" + "".join(parts) + "</div>")


def import_details(workspace: str | os.PathLike[str] | Workspace | None, result: Any) -> Html:
    """The counts of one import, the batches skipped and the rejected rows by reason (from
    ``rejects.csv``: counts only)."""
    ws = as_workspace(workspace)
    data = _as_dict(result)
    members = data["members"] or 0
    size = (("addresses in the File audience", "addresses") if data["audience"]["type"] == "file"
            else ("profiles in the audience", "profiles"))
    rows = [
        [name, thousands(data[key]), percent(data[key] / members) if members else ""]
        for name, key in (
            ("members (IDs in the shared audience)", "members"),
            ("could not be decrypted", "undecryptable"),
            ("matched a profile", "matched"),
            ("unmatched", "unmatched"),
            size,
        )
    ]
    parts = ["<h2>Counts</h2>", html_table(["", "count", "share of members"], rows)]
    skipped = data.get("batches_skipped") or []
    if skipped:
        parts.append("<h2>Batches skipped</h2>")
        parts.append(html_table(["batch", "reason"], [[escape(scrub(s["name"], ids=False)), escape(scrub(s["reason"], ids=False))]
                                 for s in skipped], 9))
    rejects = ws.run_dir(str(data.get("run_id"))) / "rejects.csv" if data.get("run_id") else None
    if rejects is not None and rejects.is_file():
        table = pd.read_csv(rejects, dtype=str)
        if not table.empty:
            counts = table.groupby("reason").size().sort_values(ascending=False)
            parts.append("<h2>Rejected batch rows, by reason</h2>")
            parts.append(html_table(["reason", "rows"], [[escape(r), thousands(c)] for r, c in counts.items()]))
            parts.append("<p class='aud-meta'>Each rejected row is listed with its file and line "
                         "in rejects.csv beside this report; its content is not kept.</p>")
    return Html("".join(parts))


def export_summary(
    workspace: str | os.PathLike[str] | Workspace | None, result: Any, *, where: str | None = None
) -> Html:
    """The stakeholder summary of one export: what was shared, when it is available in the
    Experience Cloud, the share of targeted profiles with an ID and how it moved since the
    previous export to the same shared audience."""
    ws = as_workspace(workspace)
    data = _as_dict(result)
    shared = data["shared_audience"]
    targeted = data["profiles_targeted"] or 0
    rate = data["profiles_exported"] / targeted if targeted else 0.0
    history = runs_frame(load_runs(ws))
    if not history.empty:
        history = history.assign(match_rate=history["profiles_exported"] / history["profiles_targeted"].replace(0, pd.NA))
    previous = previous_run(history, {**data, "label": shared["name"]}, kind="export",
                         same=["label", "data_source"])
    files = data.get("files") or []
    created = " (created by this export)" if shared.get("created") else ""
    parts = [
        f"<h1>Export: {escape(scrub(shared['name']))}</h1>",
        f"<p class='aud-lede'><b>{thousands(data['ids_exported'])} new IDs</b> of "
        f"{thousands(data['profiles_exported'])} profiles were shared with the segment <b>"
        + escape(f"{scrub(shared['name'])} ({shared['sid']})") + f"</b>{created} through the data source <b>"
        + escape(_source_label(ws, data["data_source"])) + f"</b>, in {len(files)} onboarding "
        f"file{'s' if len(files) != 1 else ''}. "
        + (f"{thousands(data['ids_already_shared'])} IDs already shared earlier were not sent again."
           if data["ids_already_shared"] else "None of its IDs had been shared before.") + "</p>",
        "<ul class='aud-facts'>",
        f"<li><b>Available in the Experience Cloud</b> from "
        f"{escape(window(data.get('available_from'), data.get('available_to')))}.</li>",
        f"<li><b>Targeting</b>: <code>{escape(redact_condition(where))}</code>: {thousands(targeted)} profiles.</li>",
        f"<li><b>Profiles with an ID {percent(rate)}</b>: {thousands(data['profiles_exported'])} of "
        f"{thousands(targeted)} targeted profiles; {thousands(data['profiles_without_id'])} have none. "
        f"{escape(_change(rate, previous, 'an export to this shared audience'))}</li>",
        "</ul>",
        f"<p class='aud-meta'>Run {escape(data.get('run_id') or 'not recorded')}, started "
        f"{escape(when(data.get('started_at')))}.</p>",
    ]
    return Html("<div class='aud-summary'>" + "".join(parts) + "</div>")


def history_summary(
    frame: pd.DataFrame, period_text: str, data_source: str | None = None
) -> tuple[Html, dict[str, Any]]:
    """The summary of a period of the run history (``frame``: the runs in it).

    Returns:
        The HTML for stakeholders and the counts a report job records: ``runs_in_period``,
        ``imports``, ``exports``, ``failed``, ``match_rates`` (the latest per data source).
    """
    imports = frame[(frame["kind"] == "import") & (frame["status"] == "succeeded")]
    exports = frame[(frame["kind"] == "export") & (frame["status"] == "succeeded")]
    failed = frame[frame["status"] == "failed"]
    latest = data_source_rows(frame)
    counts = {
        "period": period_text,
        "data_source": data_source,
        "runs_in_period": len(frame),
        "imports": len(imports),
        "exports": len(exports),
        "failed": len(failed),
        "match_rates": {row["data_source"]: row["match_rate"] for row in latest},
    }
    scope = f" of the data source {escape(data_source)}" if data_source else ""
    parts = [
        "<h1>Match rate report</h1>",
        f"<p class='aud-lede'>Runs{scope} over {escape(period_text)}: <b>{len(frame)}</b> runs, "
        f"{len(imports)} imports and {len(exports)} exports succeeded, {len(failed)} failed.</p>",
    ]
    if latest:
        parts.append(data_source_table(latest))
    else:
        parts.append("<p>No import succeeded in this period.</p>")
    return Html("<div class='aud-summary'>" + "".join(parts) + "</div>"), counts


def data_source_table(rows: list[dict[str, Any]]) -> str:
    """The table of :func:`data_source_rows`."""
    body = []
    for row in rows:
        change = "first run" if row["change"] is None else f"{row['change'] * 100:+.1f} points"
        body.append([
            escape(row["data_source"]), escape(scrub(row["label"])), escape(short_when(row["started_at"])),
            percent(row["match_rate"]), escape(change),
            escape(short_window(row["available_from"], row["available_to"])), thousands(row["imports"]),
        ])
    return html_table(["data source", "latest import", "started (UTC)", "match rate", "change since "
                   "the previous run of its label", "available in Campaign", "imports"], body, 3)


def counts_text(row: Mapping[str, Any]) -> str:
    """The counts of one run in a few words (no ID)."""
    if row.get("status") == "failed":
        return scrub(row.get("error_message")) or "failed"
    kind = row.get("kind")
    if kind == "import":
        size = (f"{thousands(row.get('addresses'))} addresses" if row.get("audience_type") == "file"
                else f"{thousands(row.get('profiles'))} profiles")
        return (f"{thousands(row.get('members'))} members · {thousands(row.get('matched'))} matched "
                f"({percent(row.get('match_rate'))}) · {size}")
    if kind == "export":
        return (f"{thousands(row.get('profiles_targeted'))} targeted · {thousands(row.get('ids_exported'))} IDs "
                f"exported · {thousands(row.get('ids_already_shared'))} already shared")
    if kind == "report":
        return f"{thousands(row.get('runs_in_period'))} runs"
    return ""


def runs_table(frame: pd.DataFrame, *, link_prefix: str = "", reports: set[str] | None = None) -> Html:
    """Every run of ``frame`` in its order: start, kind, label, status, counts, sync window,
    and a link to its report (``link_prefix + RUN_ID/report.html``; only to the runs in
    ``reports`` when given)."""
    body = []
    for row in frame.to_dict("records"):
        run_id = str(row["run_id"])
        has_report = row.get("report") and (reports is None or run_id in reports)
        link = (f"<a href='{escape(link_prefix + run_id + '/report.html')}'>report</a>"
                if has_report else "")
        status = escape(row.get("status") or "")
        body.append([
            escape(short_when(row["started_at"])), escape(row.get("kind") or ""),
            escape(scrub(row.get("label")) or "–"), f"<span class='aud-{status}'>{status}</span>",
            escape(counts_text(row)),
            escape(short_window(row.get("available_from"), row.get("available_to"))), link,
        ])
    return Html(html_table(["started (UTC)", "kind", "label", "status", "counts", "available",
                        "report"], body, 9))


def export_details(result: Any) -> Html:
    """The counts of one export and the names of the onboarding files it wrote."""
    data = _as_dict(result)
    targeted = data["profiles_targeted"] or 0
    rows = [
        [name, thousands(data[key]), percent(data[key] / targeted) if targeted and share else ""]
        for name, key, share in (
            ("profiles targeted", "profiles_targeted", True),
            ("profiles with an ID (exported, new or already shared)", "profiles_exported", True),
            ("profiles without an ID", "profiles_without_id", True),
            ("IDs exported (new)", "ids_exported", False),
            ("IDs already shared (not sent again)", "ids_already_shared", False),
        )
    ]
    parts = ["<h2>Counts</h2>", html_table(["", "count", "share of targeted profiles"], rows)]
    files = data.get("files") or []
    parts.append("<h2>Onboarding files</h2>")
    parts.append(
        html_table(["file in the export drop"], [[escape(f)] for f in files], 9) if files
        else "<p>No file: every targeted ID was already shared.</p>"
    )
    return Html("".join(parts))
