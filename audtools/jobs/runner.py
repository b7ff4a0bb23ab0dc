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
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from audtools.errors import JobError, JobFailed
from audtools.jobs.parameters import (
    Period,
    export_parameters,
    import_parameters,
    record_report,
    report_parameters,
    require_match_rate,
)
from audtools.workspace import Workspace, as_workspace, new_run_id, utc_text
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

#: The notebooks shipped with audtools, by the name ``audtools run`` knows them by.
NOTEBOOKS = ("import_audience", "export_audience", "match_rate_report")
#: Set by the job runner, never by the user.
RESERVED = ("workspace", "run_id")
_ONE_LINE = re.compile(r"^audtools error \[(?P<code>[a-z0-9_]+)\]: (?P<message>.*)$", re.S)
Scalar = str | int | float | bool | None


# -- finding notebooks and reading parameters ---------------------------------------------------


def notebook_path(notebook: str | os.PathLike[str]) -> Path:
    """The notebook file of a shipped name (``import_audience``, ...) or a path.

    Raises:
        JobError: ``unknown_notebook`` when it is neither.
    """
    text = os.fspath(notebook)
    if text in NOTEBOOKS:
        shipped = resources.files("audtools") / "templates" / "notebooks" / f"{text}.ipynb"
        return Path(str(shipped))
    path = Path(text).expanduser()
    if path.suffix == ".ipynb" and path.is_file():
        return path.resolve()
    raise JobError(
        f"Unknown notebook {text!r}: give one of {', '.join(NOTEBOOKS)} or the path of an "
        ".ipynb file.",
        code="unknown_notebook",
    )


def notebook_parameters(path: Path) -> dict[str, dict[str, Any]]:
    """The names of the notebook's ``parameters`` cell, with papermill's inferred type,
    default and help."""
    import papermill

    try:
        return dict(papermill.inspect_notebook(str(path)))
    except Exception as exc:  # noqa: BLE001 - an unreadable notebook is the user's input
        raise JobError(
            f"The notebook {path.name} cannot be read ({exc}); check that it is a Jupyter notebook.",
            code="bad_notebook",
        ) from None


def _scalar(name: str, value: Any, origin: str) -> Scalar:
    if isinstance(value, dt.datetime):
        return utc_text(value) if value.tzinfo else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise JobError(
        f"The parameter {name} in {origin} is a {type(value).__name__}, not a YAML scalar (text, "
        "number, true/false or null); give one value.",
        code="bad_parameter",
    )


def read_parameters(
    files: Iterable[str | os.PathLike[str]] = (), pairs: Iterable[tuple[str, str]] = ()
) -> dict[str, Scalar]:
    """Parameters from YAML files (``-f``), then ``NAME VALUE`` pairs (``-p``); the later wins.

    Values are YAML scalars: ``-p shared_audience 10603117`` is a number, ``-p
    force_reconciliation true`` a boolean, ``-p operator null`` nothing. A ``-p`` value that YAML
    reads as a list or mapping (``age: 3``) is kept as the text given.

    Raises:
        JobError: ``bad_parameters_file`` for a file that is not a YAML mapping of scalars.
    """
    import yaml

    out: dict[str, Scalar] = {}
    for file in files:
        path = Path(file)
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise JobError(
                f"{path} cannot be read as YAML ({_first_line(exc)}); fix the parameters file.",
                code="bad_parameters_file",
            ) from None
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise JobError(
                f"{path} must be a YAML mapping of parameter names to values (NAME: VALUE lines).",
                code="bad_parameters_file",
            )
        for name, value in doc.items():
            out[str(name)] = _scalar(str(name), value, str(path))
    for name, text in pairs:
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        if isinstance(value, list | dict):
            value = text
        out[name] = _scalar(name, value, "-p")
    return out


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _check_names(path: Path, declared: Mapping[str, Any], parameters: Mapping[str, Any]) -> None:
    reserved = [n for n in parameters if n in RESERVED]
    if reserved:
        raise JobError(
            f"{', '.join(reserved)} cannot be set: audtools run injects the workspace and the run "
            "ID. Use -w to choose the workspace.",
            code="reserved_parameter",
        )
    unknown = [n for n in parameters if n not in declared]
    if unknown:
        known = [n for n in declared if n not in RESERVED]
        raise JobError(
            f"The notebook {path.stem} has no parameter {', '.join(unknown)}; its parameters are: "
            f"{', '.join(known) or 'none'}.",
            code="unknown_parameter",
        )


def _notebook_kind(path: Path) -> str:
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - papermill reports unreadable notebooks itself
        return "job"
    return str(nb.metadata.get("audtools", {}).get("kind", "job"))


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
    params = {str(k): _scalar(str(k), v, "parameters") for k, v in (parameters or {}).items()}
    declared = notebook_parameters(path)
    _check_names(path, declared, params)
    kind = _notebook_kind(path)

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
    say = progress or (lambda line: None)
    say(f"run {run_id}: running {job['notebook']}")
    try:
        error = _execute(path, executed, {**params, "workspace": str(ws.root), "run_id": run_id},
                         folder, timeout)
    except BaseException:
        # Interrupted (Ctrl-C, the scheduler's kill): the run stays listed, as failed, unless
        # its import or export got to record it.
        if _read_result(folder) is None:
            write_result(ws, run_id, {
                "run_id": run_id, "kind": kind, "status": "failed",
                "error": {"code": "interrupted", "message": "The job was interrupted; run it again."},
                "started_at": utc_text(started), "finished_at": utc_text(now_utc()), "job": job})
        raise

    result = _read_result(folder)
    if result is None:
        status = "failed" if error else "succeeded"
        result = {"run_id": run_id, "kind": kind, "status": status}
        if error:
            result["error"] = {"code": error[0], "message": error[1]}
        result["started_at"] = utc_text(started)
        result["finished_at"] = utc_text(now_utc())
    elif error and result.get("status") != "failed":
        # The run itself was recorded (an import below min_match_rate, or a later cell): the
        # run keeps its status; the job's failure is kept beside it.
        job["error"] = {"code": error[0], "message": error[1]}
    result.setdefault("started_at", utc_text(started))
    result["job"] = job

    from audtools.jobs import rendering

    elapsed = (now_utc() - started).total_seconds()
    say(f"run {run_id}: notebook {'failed' if error else 'done'} in {elapsed:.0f} s; "
        "writing the report")
    html = folder / "report.html"
    try:
        rendering.render_report(executed, html, ws, result)
        result["report"] = _relative(html, ws.root)
    except Exception as exc:  # noqa: BLE001 - the run stands; its report is missing
        log.error("the report of run %s cannot be rendered: %s", run_id, exc)
        if not error:
            error = ("report_failed", f"The report of run {run_id} cannot be rendered: {exc}.")
            job["error"] = {"code": error[0], "message": error[1]}
    write_result(ws, run_id, result)
    try:
        rendering.write_index(ws)
    except Exception as exc:  # noqa: BLE001 - the index is refreshed by the next job or report
        log.error("runs/index.html cannot be refreshed: %s", exc)
    if error:
        code, message = error
        raise JobFailed(result, code, message)
    return result


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
            # The kernel's own start-up warnings would reach the terminal of `audtools run`.
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
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
