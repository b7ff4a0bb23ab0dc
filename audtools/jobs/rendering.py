"""Self-contained HTML: a job's ``report.html`` (nbconvert) and the workspace's ``runs/index.html``.

Both open offline and ask nothing of any host: the report template
(``audtools/templates/audtools_report``) extends JupyterLab's ``lab/index.html.j2`` and empties
the blocks that load require.js, MathJax, Mermaid and the widget manager from CDNs; code cells'
inputs are left out, and charts are PNGs embedded as ``data:`` URIs. Neither shows an ID, an
email address or a phone number (see :mod:`audtools.jobs.report`).
"""

from __future__ import annotations

import copy
import html
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from audtools import charts
from audtools.jobs import formatting, history, report
from audtools.workspace import Workspace, as_workspace
from audtools.workspace.runs import load_runs, now_utc, write_atomic

__all__ = ["INDEX_NAME", "TEMPLATE_NAME", "render_report", "template_dir", "write_index"]

TEMPLATE_NAME = "audtools_report"
INDEX_NAME = "index.html"
#: Cells with one of these tags are left out of reports: notes for analysts, the parameters,
#: and papermill's error markers (the report says why the job failed at the top instead).
REMOVE_TAGS = {"report-remove", "parameters", "injected-parameters", "papermill-error-cell-tag"}
_KINDS = {"import": "Import", "export": "Export", "report": "Match rate report"}


def template_dir() -> Path:
    """The folder of audtools' templates (shipped as package data)."""
    return Path(str(resources.files("audtools") / "templates"))


def _exporter() -> Any:
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor
    from traitlets.config import Config

    config = Config()
    config.HTMLExporter.exclude_input = True
    config.HTMLExporter.exclude_input_prompt = True
    config.HTMLExporter.exclude_output_prompt = True
    config.HTMLExporter.embed_images = True
    config.TagRemovePreprocessor.enabled = True
    config.TagRemovePreprocessor.remove_cell_tags = set(REMOVE_TAGS)
    exporter = HTMLExporter(
        config=config,
        template_name=TEMPLATE_NAME,
        extra_template_basedirs=[str(template_dir())],
    )
    exporter.register_preprocessor(TagRemovePreprocessor(config=config), enabled=True)
    return exporter


def _banner(result: dict[str, Any]) -> str | None:
    """The failure at the top of a failed job's report, as HTML (None when it succeeded)."""
    job_error = (result.get("job") or {}).get("error")
    if result.get("status") == "failed":
        error = result.get("error") or job_error or {}
        head = {"import": "This import failed: nothing was imported.",
                "export": "This export failed: nothing was exported."}.get(
                    str(result.get("kind")), "This job failed.")
    elif job_error:
        error = job_error
        head = "This job failed after its run was recorded."
    else:
        return None
    return (
        "<div class='aud-failed-banner'><h1>" + html.escape(head) + "</h1><p><b>"
        + html.escape(str(error.get("code") or "error")) + "</b>: "
        + html.escape(formatting.scrub(error.get("message"))) + "</p><p class='aud-meta'>Run "
        + html.escape(str(result.get("run_id"))) + ", started "
        + html.escape(formatting.when(result.get("started_at"))) + ".</p></div>"
    )


def render_report(
    executed: str | os.PathLike[str],
    output: str | os.PathLike[str],
    workspace: str | os.PathLike[str] | Workspace | None = None,
    result: dict[str, Any] | None = None,
) -> Path:
    """Render an executed job notebook as one self-contained HTML file, without code.

    Args:
        executed: the executed notebook (``runs/RUN_ID/NAME.ipynb``).
        output: the HTML file to write (atomically).
        workspace: the workspace (unused today; kept for links and titles).
        result: the run's ``result.json`` object: its kind and label make the page's title, and
            a failed run gets a banner with its error at the top.

    Returns:
        The path written.
    """
    import nbformat

    result = result or {}
    nb = nbformat.read(os.fspath(executed), as_version=4)
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            # Warnings and logs stay in the executed notebook; reports show results only.
            cell["outputs"] = [o for o in cell.get("outputs", [])
                               if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    banner = _banner(result)
    if banner:
        # The banner says why; the cells that never ran and the traceback (in the executed
        # notebook, for analysts) are left out.
        failed = [i for i, c in enumerate(nb.cells)
                  if c.get("metadata", {}).get("papermill", {}).get("exception")]
        if failed:
            nb.cells = nb.cells[: failed[0] + 1]
        for cell in nb.cells:
            if cell.get("cell_type") == "code":
                cell["outputs"] = [o for o in cell["outputs"] if o.get("output_type") != "error"]
        cell = nbformat.v4.new_code_cell(source="")
        cell["outputs"] = [nbformat.v4.new_output("display_data", data={
            "text/html": banner, "text/plain": formatting.Html(banner).__str__()})]
        nb.cells.insert(0, cell)
    row = history.runs_frame([result]).iloc[0] if result else None
    kind = _KINDS.get(str(result.get("kind")), "Job")
    label = formatting.scrub(row["label"]) if row is not None and row["label"] else ""
    nb.metadata["title"] = f"{kind}: {label}" if label else kind
    body, _resources = _exporter().from_notebook_node(nb)
    path = Path(output)
    write_atomic(path, body)
    return path


#: The runs index's charts: name (``data-chart``), chart function, alternative text.
INDEX_CHARTS = (
    ("match_rate", charts.match_rate_chart,
     "Match rate of every import by delivery time, one line per data source"),
    ("members", charts.members_chart,
     "Members of each imported audience by delivery time, one line per data source"),
    ("rows_rejected", charts.rejects_chart,
     "Batch rows rejected per import by delivery time, one line per data source"),
    ("unmatched", charts.unmatched_chart,
     "Unmatched members per delivery by reason, summed over the data sources"),
)


def _history_charts(frame: Any) -> list[str]:
    """The index's charts, by delivery time when the imports record it. Each is a ``<figure>``
    with its caption, and the points it drew as JSON in ``data-points`` (counts and dates only,
    never an ID), so that what the picture shows can be read as data."""
    parts = []
    for name, chart, alt in INDEX_CHARTS:
        try:
            fig = chart(frame, time="delivered_at" if _by_delivery(frame) else "started_at")
        except Exception:  # noqa: BLE001 - a chart never fails the index: a note says so
            parts.append(formatting.chart_or_note(lambda chart=chart: chart(frame), alt))
            continue
        points = json.dumps(charts.chart_data(fig), separators=(",", ":"))
        for text in list(fig.texts):
            if text.get_text() == charts.caption(fig):
                text.remove()  # the page's <figcaption> says it
        parts.append(
            f"<figure class='aud-figure' data-chart='{name}' data-points='{html.escape(points)}'>"
            + formatting.chart_html(fig, alt)
            + f"<figcaption class='aud-meta'>{html.escape(charts.caption(fig))}</figcaption>"
            + "</figure>")
    return parts


def _by_delivery(frame: Any) -> bool:
    """Whether some succeeded import records its delivery time (imports before ``delivered_at``
    existed are then left out of the charts by delivery)."""
    if not len(frame):
        return False
    imports = frame[(frame["kind"] == "import") & (frame["status"] == "succeeded")]
    return bool(len(imports) and imports["delivered_at"].notna().any())


def index_html(workspace: str | os.PathLike[str] | Workspace | None = None) -> str:
    """The HTML of ``runs/index.html``: the match rate over time per data source, the latest
    import of each data source, then every run, newest first, with a link to its report."""
    ws = as_workspace(workspace)
    frame = history.runs_frame(load_runs(ws))
    reports = {p.parent.name for p in ws.runs_dir.glob("*/report.html")}
    css = (template_dir() / TEMPLATE_NAME / "static" / "audtools.css").read_text(encoding="utf-8")
    latest = history.data_source_rows(frame)
    kinds = frame["kind"].value_counts() if len(frame) else {}
    failed = int((frame["status"] == "failed").sum()) if len(frame) else 0
    lede = (f"{len(frame)} runs: {kinds.get('import', 0)} imports, {kinds.get('export', 0)} "
            f"exports, {failed} failed.")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1.0'>",
        "<title>Audience runs</title><style>", css, "</style></head><body><div class='aud-page'>",
        "<div class='aud-summary'><h1>Audience runs</h1>",
        f"<p class='aud-lede'>{html.escape(lede)}</p>",
        "<p class='aud-meta'>Workspace " + html.escape(ws.root.name) + "; refreshed "
        + html.escape(formatting.when(now_utc())) + ". Each report opens from the table below.</p>",
        "</div>",
        "<h2>By delivery</h2>",
        "<p class='aud-meta'>Each point is a delivery: the time Audience Manager wrote the "
        "newest batch an import applied (its AAM timestamp, UTC), not the time the job ran.</p>",
        *_history_charts(frame),
    ]
    if latest:
        parts += ["<h2>Latest import per data source</h2>", report.data_source_table(latest)]
    parts += ["<h2>Every run, newest first</h2>",
              report.runs_table(frame, reports=reports).html if len(frame) else "<p>No run yet.</p>",
              "</div></body></html>\n"]
    return "".join(parts)


def write_index(workspace: str | os.PathLike[str] | Workspace | None = None) -> Path:
    """Refresh ``runs/index.html``, the stakeholders' entry point (self-contained)."""
    ws = as_workspace(workspace)
    path = ws.runs_dir / INDEX_NAME
    write_atomic(path, index_html(ws))
    return path
