"""``audtools run``, ``audtools runs`` and ``audtools report`` (SPEC §7): jobs and reports.

They are added to the group by :mod:`audtools.cli.main`, like every other command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from audtools.cli.common import CONTEXT, emit, handle_errors, json_option, workspace_options


@click.command("run", context_settings=CONTEXT)
@click.argument("notebook")
@click.option("-p", "--parameter", "pairs", nargs=2, multiple=True, metavar="NAME VALUE",
              help="A parameter of the notebook. VALUE is taken as written when the notebook "
                   "gives the parameter a text default, and read as a YAML scalar (number, "
                   "true/false, null) otherwise; to pass YAML on purpose, use -f. Repeat for more.")
@click.option("-f", "--parameters-file", "files", multiple=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path), metavar="PARAMS.yaml",
              help="A YAML mapping of parameters (typed values: numbers, true/false, null), read "
                   "before -p (which wins).")
@workspace_options
@json_option
@handle_errors
def run_cmd(
    notebook: str,
    pairs: tuple[tuple[str, str], ...],
    files: tuple[Path, ...],
    workspace: Path,
    quiet: bool,
    verbose: bool,
    as_json: bool,
) -> None:
    """Run NOTEBOOK as a sync job with papermill: one run with its report.

    NOTEBOOK is import_audience, export_audience, match_rate_report or the path of a notebook
    with a 'parameters' cell. workspace and run_id are injected; every other name must be one
    of the notebook's parameters. runs/RUN_ID/ gets the executed notebook, result.json and a
    self-contained report.html, and runs/index.html is refreshed.

    Example: audtools run -w ws import_audience -p label "High value"
    -p shared_audience 10603117 -p data_source defaultDataSource
    """
    from audtools.errors import JobFailed
    from audtools.jobs.notebooks import notebook_parameters, notebook_path, read_parameters
    from audtools.jobs.runner import run_job

    declared = notebook_parameters(notebook_path(notebook)) if pairs else {}
    parameters = read_parameters(files, pairs, declared)
    # Text lines, no bars, and only to a terminal (standard error stays one line on failure).
    show = not quiet and not as_json and sys.stderr.isatty()
    try:
        result = run_job(workspace, notebook, parameters,
                         progress=(lambda line: click.echo(line, err=True)) if show else None)
    except JobFailed as exc:
        if as_json:
            click.echo(json.dumps({**exc.result, **exc.to_json()}, ensure_ascii=False))
        where = f"run {exc.result.get('run_id')}; report {exc.result.get('report', '-')}"
        click.echo(f"audtools: error: {exc.message} ({where})", err=True)
        sys.exit(1)
    emit(result, as_json, lambda: _run_text(result))


def _run_text(result: dict[str, Any]) -> str:
    from audtools.jobs.history import runs_frame
    from audtools.jobs.report import counts_text, window

    row = runs_frame([result]).iloc[0].to_dict()
    kind = result.get("kind")
    head = f"{kind.capitalize()} job" if kind in ("import", "export", "report") else "Job"
    lines = [f"{head} {result['job']['notebook']}: run {result['run_id']} {result.get('status')}"]
    counts = counts_text(row)
    if counts:
        lines.append(f"  {row['label'] or kind}: {counts}")
    if result.get("available_from"):
        lines.append(f"  available  {window(result['available_from'], result['available_to'])}")
    lines.append(f"  report     {result.get('report', '-')}")
    lines.append("  index      runs/index.html")
    return "\n".join(lines)


@click.command("runs", context_settings=CONTEXT)
@workspace_options
@json_option
@handle_errors
def runs_cmd(workspace: Path, quiet: bool, verbose: bool, as_json: bool) -> None:
    """List the runs, newest first, from their result.json files (not the database).

    Example: audtools runs -w ws --json
    """
    import pandas as pd

    from audtools.jobs.history import runs_frame
    from audtools.jobs.report import counts_text
    from audtools.workspace import as_workspace
    from audtools.workspace.runs import load_runs

    ws = as_workspace(workspace)
    ws.settle_if_free()
    records = load_runs(ws)

    def text() -> str:
        frame = runs_frame(records)
        lines = [f"{'started (UTC)':<17} {'run':<23} {'kind':<6} {'status':<9} label: counts"]
        for row in frame.to_dict("records"):
            started = "" if pd.isna(row["started_at"]) else f"{row['started_at']:%Y-%m-%d %H:%M}"
            lines.append(
                f"{started:<17} {row['run_id']:<23} {row['kind'] or '':<6} {row['status'] or '':<9} "
                f"{row['label'] or '-'}: {counts_text(row)}"
            )
        return "\n".join(lines)

    emit({"runs": records}, as_json, text)


@click.command("report", context_settings=CONTEXT)
@workspace_options
@json_option
@handle_errors
def report_cmd(workspace: Path, quiet: bool, verbose: bool, as_json: bool) -> None:
    """Refresh runs/index.html: the match rate over time per data source, then every run with
    a link to its report. Self-contained: open it offline, or send it.

    Example: audtools report -w ws
    """
    from audtools.jobs.rendering import write_index
    from audtools.workspace import as_workspace
    from audtools.workspace.runs import load_runs

    ws = as_workspace(workspace)
    ws.settle_if_free()
    path = write_index(ws)
    count = len(load_runs(ws))
    relative = path.relative_to(ws.root).as_posix()
    emit({"index": relative, "runs": count}, as_json, f"Wrote {path} ({count} runs)")
