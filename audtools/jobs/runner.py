"""Sync jobs: parameterised notebooks executed by papermill, each one run of the workspace.

:func:`run_job` is ``audtools run``: it finds the notebook (``import_audience``,
``export_audience``, ``match_rate_report`` — shipped in the package under
``audtools/templates/notebooks/`` — or a path), checks the parameters' names against the
notebook's ``parameters`` cell, allocates the run ID, and only then creates ``runs/RUN_ID/``. The
notebook runs there under papermill with ``workspace`` and ``run_id`` injected, widget state off
and no progress bars; its import or export *is* the run (it is given ``run_id``). Afterwards the
run folder holds the executed notebook, ``result.json`` and ``report.html`` (see
:mod:`audtools.jobs.rendering`), and ``runs/index.html`` is refreshed.

The notebooks stay thin: their first cell after the parameters calls
:func:`import_parameters`, :func:`export_parameters` or :func:`report_parameters` (from
:mod:`audtools.jobs.parameters`), which check types and allowed values and stop the job with one line
(``audtools error [code]: message``) before anything is written. Keys are never parameters: data sources name their keys in
``audtools.toml``, and the kernel inherits the environment.

Example:
    >>> from audtools.jobs.runner import run_job
    >>> result = run_job("data/demo", "import_audience", {"label": "High value",
    ...     "shared_audience": 10603117, "data_source": "samplesVisitorId"})   # doctest: +SKIP
    >>> result["report"]                                                       # doctest: +SKIP
    'runs/20261128T204056Z-f616ea/report.html'
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from audtools.errors import JobFailed
from audtools.jobs.notebooks import (
    NOTEBOOKS,
    Scalar,
    check_names,
    notebook_kind,
    notebook_parameters,
    notebook_path,
    read_parameters,
    scalar_parameter,
)
from audtools.jobs.parameters import (
    Period,
    export_parameters,
    import_parameters,
    record_report,
    report_parameters,
    require_match_rate,
)
from audtools.workspace import Workspace, as_workspace, new_run_id, utc_text
from audtools.workspace.records import owner_only
from audtools.workspace.runs import RESULT_NAME, load_runs, now_utc, write_result

__all__ = [
    "NOTEBOOKS",
    "Period",
    "export_parameters",
    "import_parameters",
    "notebook_path",
    "read_parameters",
    "record_report",
    "report_parameters",
    "require_match_rate",
    "run_job",
    "runs",
]

log = logging.getLogger("audtools")

_ONE_LINE = re.compile(r"^audtools error \[(?P<code>[a-z0-9_]+)\]: (?P<message>.*)$", re.S)



# -- running ------------------------------------------------------------------------------------


def run_job(
    workspace: str | os.PathLike[str] | Workspace | None,
    notebook: str | os.PathLike[str],
    parameters: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run a notebook as a sync job: one run of the workspace, with its report.

    Args:
        workspace: the workspace (path or :class:`~audtools.workspace.Workspace`).
        notebook: ``import_audience``, ``export_audience``, ``match_rate_report`` or the path
            of a notebook with a ``parameters`` cell.
        parameters: values for names of the ``parameters`` cell (scalars); ``workspace`` and
            ``run_id`` are injected and cannot be given.
        timeout: seconds a cell may run (default: no limit).
        progress: called with a line of text as the job moves on (the notebook starts, ends,
            the report is written); jobs show no progress bars.

    Returns:
        The run's ``result.json`` object with ``report`` (the path of ``report.html``, relative
        to the workspace).

    Raises:
        JobError: the notebook, a parameter name or value refused before the run exists.
        JobFailed: the notebook failed (exit 1); ``.result`` is its ``result.json``. A failed
            import or export changes nothing; a run whose match rate is below
            ``min_match_rate`` is recorded and then fails.

    Example:
        >>> run_job("ws", "export_audience", {"segment_name": "Adults",
        ...         "data_source": "defaultDataSource", "where": "age >= 18"})  # doctest: +SKIP
    """
    ws = as_workspace(workspace)
    path = notebook_path(notebook)
    params = {str(k): scalar_parameter(str(k), v, "parameters") for k, v in (parameters or {}).items()}
    check_names(path, notebook_parameters(path), params)
    say = progress or (lambda line: None)
    # The run folder, the executed notebook, the report and whatever the kernel writes (it
    # inherits the umask) are the owner's only.
    with owner_only():
        run = _start_run(ws, path, notebook, params)
        say(f"run {run.run_id}: running {run.job['notebook']}")
        error = _run_notebook(run, path, params, timeout)
        result = _job_result(run, error)

        elapsed = (now_utc() - run.started).total_seconds()
        say(f"run {run.run_id}: notebook {'failed' if error else 'done'} in {elapsed:.0f} s; "
            "writing the report")
        error = _write_report(run, result, error)
    if error:
        code, message = error
        raise JobFailed(result, code, message)
    return result


@dataclass
class _Run:
    """A job's run once its folder exists: where it runs and what ``result.json`` says of it."""

    ws: Workspace
    run_id: str
    started: dt.datetime
    kind: str
    folder: Path
    executed: Path
    job: dict[str, Any]


def _start_run(ws: Workspace, path: Path, notebook: str | os.PathLike[str], params: dict[str, Scalar]) -> _Run:
    """Allocate the run ID and create ``runs/RUN_ID/`` (only once the parameters are known good)."""
    kind = notebook_kind(path)
    run_id = new_run_id()
    started = now_utc()
    folder = ws.run_dir(run_id)
    folder.mkdir(parents=True, exist_ok=False)
    executed = folder / path.name
    job = {
        "notebook": path.stem if os.fspath(notebook) in NOTEBOOKS else os.fspath(notebook),
        "parameters": params,
        "executed": _relative(executed, ws.root),
    }
    return _Run(ws, run_id, started, kind, folder, executed, job)


def _run_notebook(
    run: _Run, path: Path, params: dict[str, Scalar], timeout: float | None
) -> tuple[str, str] | None:
    """Execute the notebook in the run folder; an interrupted job leaves a failed run behind."""
    injected = {**params, "workspace": str(run.ws.root), "run_id": run.run_id}
    try:
        return _execute(path, run.executed, injected, run.folder, timeout)
    except BaseException:
        # Interrupted (Ctrl-C, the scheduler's kill): the run stays listed, as failed, unless
        # its import or export got to record it.
        if _read_result(run.folder) is None:
            write_result(run.ws, run.run_id, {
                "run_id": run.run_id, "kind": run.kind, "status": "failed",
                "error": {"code": "interrupted", "message": "The job was interrupted; run it again."},
                "started_at": utc_text(run.started), "finished_at": utc_text(now_utc()),
                "job": run.job})
        raise


def _job_result(run: _Run, error: tuple[str, str] | None) -> dict[str, Any]:
    """The run's ``result.json`` as the notebook's import or export wrote it, or one made for a
    notebook that recorded nothing; ``job`` added."""
    result = _read_result(run.folder)
    if result is None:
        status = "failed" if error else "succeeded"
        result = {"run_id": run.run_id, "kind": run.kind, "status": status}
        if error:
            result["error"] = {"code": error[0], "message": error[1]}
        result["started_at"] = utc_text(run.started)
        result["finished_at"] = utc_text(now_utc())
    elif error and result.get("status") != "failed":
        # The run itself was recorded (an import below min_match_rate, or a later cell): the
        # run keeps its status; the job's failure is kept beside it.
        run.job["error"] = {"code": error[0], "message": error[1]}
    result.setdefault("started_at", utc_text(run.started))
    result["job"] = run.job
    return result


def _write_report(run: _Run, result: dict[str, Any], error: tuple[str, str] | None) -> tuple[str, str] | None:
    """Render ``report.html``, write ``result.json`` and refresh the index; the job's error, which
    becomes ``report_failed`` when only the report could not be rendered."""
    from audtools.jobs import rendering

    html = run.folder / "report.html"
    try:
        rendering.render_report(run.executed, html, run.ws, result)
        result["report"] = _relative(html, run.ws.root)
    except Exception as exc:  # noqa: BLE001 - the run stands; its report is missing
        log.error("the report of run %s cannot be rendered: %s", run.run_id, exc)
        if not error:
            error = ("report_failed", f"The report of run {run.run_id} cannot be rendered: {exc}.")
            run.job["error"] = {"code": error[0], "message": error[1]}
    write_result(run.ws, run.run_id, result)
    try:
        rendering.write_index(run.ws)
    except Exception as exc:  # noqa: BLE001 - the index is refreshed by the next job or report
        log.error("runs/index.html cannot be refreshed: %s", exc)
    return error


def _execute(
    source: Path, executed: Path, parameters: dict[str, Any], cwd: Path, timeout: float | None
) -> tuple[str, str] | None:
    """Execute the notebook; the failing cell's error as ``(code, one line)``, or None."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    try:
        papermill.execute_notebook(
            str(source),
            str(executed),
            parameters=parameters,
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
            cwd=str(cwd),
            execution_timeout=timeout,
            store_widget_state=False,
            # The kernel's own log would reach the terminal of `audtools run`: start-up warnings,
            # and at shutdown "KeyboardInterrupt caught in kernel." (logged as an ERROR: the
            # kernel manager interrupts the kernel before asking it to stop), which reads as a
            # failure. A failing cell is reported by papermill, not by this log.
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
        )
    except PapermillExecutionError as exc:
        trace = [line for line in (exc.traceback or []) if line.strip()]
        if len(trace) == 1 and (match := _ONE_LINE.match(trace[0])):
            return match["code"], match["message"]
        where = f" in cell [{exc.exec_count}]" if exc.exec_count else ""
        return "notebook_error", f"{exc.ename}{where}: {_first_line_text(exc.evalue)}"
    except Exception as exc:  # noqa: BLE001 - a dead kernel, a timeout: the job failed
        return "notebook_error", f"{type(exc).__name__}: {_first_line_text(str(exc))}"
    return None


def _first_line_text(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"


def _read_result(folder: Path) -> dict[str, Any] | None:
    path = folder / RESULT_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def runs(workspace: str | os.PathLike[str] | Workspace | None = None) -> pd.DataFrame:
    """The run history, newest first: one row per run, flat columns (see
    :func:`audtools.jobs.history.runs_frame`). Reads ``result.json`` files, not the database."""
    from audtools.jobs.history import runs_frame

    return runs_frame(load_runs(workspace))
