"""Run records: what each import or export leaves in ``runs/RUN_ID/`` and in the database.

A run's ``result.json`` is the command's ``--json`` object plus ``status``, ``kind``,
``started_at``, ``finished_at`` and, for a failed run, ``error``. Read-only views (``audtools
runs``, a widget's status) read these files rather than the database, so they stay responsive
while a job holds the workspace.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from audtools.errors import describe
from audtools.workspace import Workspace, as_workspace
from audtools.workspace.records import now_utc, utc_text, write_atomic

log = logging.getLogger("audtools")

RESULT_NAME = "result.json"


def sync_window(started: dt.datetime, source: str | None = None) -> tuple[str, str]:
    """When the shared audience will be available: 24 h to 36 h after the run's start, or 36 h
    to 60 h when the shared audience comes from Analytics."""
    low, high = (36, 60) if source == "analytics" else (24, 36)
    return (
        utc_text(started + dt.timedelta(hours=low)),
        utc_text(started + dt.timedelta(hours=high)),
    )


def write_result(ws: Workspace, run_id: str, result: dict[str, Any]) -> Path:
    """Write ``runs/RUN_ID/result.json`` atomically."""
    path = ws.run_dir(run_id) / RESULT_NAME
    write_atomic(path, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return path


def write_failure(
    ws: Workspace, run_id: str, kind: str, started: dt.datetime, exc: BaseException, **fields: Any
) -> Path:
    """Record a failed run: ``result.json`` with ``status: failed`` and the ``error`` of ``exc``,
    plus ``fields`` (what the run was about)."""
    code, message = describe(exc)
    return write_result(
        ws,
        run_id,
        {
            "run_id": run_id,
            "kind": kind,
            "status": "failed",
            "error": {"code": code, "message": message},
            **fields,
            "started_at": utc_text(started),
            "finished_at": utc_text(now_utc()),
        },
    )


@contextlib.contextmanager
def run_log(ws: Workspace, run_id: str) -> Iterator[Path]:
    """Copy the ``audtools`` logger's records of a run to ``runs/RUN_ID/log``."""
    folder = ws.run_dir(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("audtools")
    previous = logger.level
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.close()


def load_runs(workspace: str | os.PathLike[str] | Workspace | None = None) -> list[dict[str, Any]]:
    """Every run's ``result.json``, newest first.

    Runs without one are left out, and so are files that are not a run record (not JSON, not an
    object, fields of the wrong type), with a warning: one odd file never stops the history.
    """
    ws = as_workspace(workspace)
    out = []
    if ws.runs_dir.is_dir():
        for folder in ws.runs_dir.iterdir():
            path = folder / RESULT_NAME
            if not path.is_file():
                continue
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError, RecursionError):
                log.warning("%s cannot be read; skipped", path)
                continue
            problem = record_problem(record)
            if problem:
                log.warning("%s is not a run record (%s); skipped", path, problem)
                continue
            out.append(record)
    out.sort(
        key=lambda r: (r.get("started_at") or "", r.get("finished_at") or "", r.get("run_id") or ""),
        reverse=True,
    )
    return out


_TEXTS = ("run_id", "kind", "status", "started_at", "finished_at", "report", "data_source")
_TABLES = ("audience", "shared_audience", "job", "error", "unmatched_reasons")
_NUMBERS = (
    "rows_read", "rows_rejected", "members", "undecryptable", "matched", "unmatched",
    "profiles", "addresses", "batches_applied", "batches_waiting", "profiles_targeted",
    "profiles_exported", "profiles_without_id", "ids_exported", "ids_already_shared",
    "runs_in_period", "match_rate",
)


def record_problem(record: Any) -> str | None:
    """Why ``record`` (a parsed ``result.json``) cannot be shown as a run, or None.

    The fields the history reads must have their types: texts, tables (objects), numbers.
    Numbers may be of any size; the history shows those beyond 64 bits as missing.
    """
    if not isinstance(record, dict):
        return "not an object"
    for key in _TEXTS:
        if not isinstance(record.get(key), str | None):
            return f"'{key}' is not text"
    for key in _TABLES:
        if not isinstance(record.get(key), dict | None):
            return f"'{key}' is not an object"
    for key in _NUMBERS:
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float | None):
            return f"'{key}' is not a number"
    for outer, inner in (("job", "parameters"), ("job", "error"), ("audience", "shared_audience")):
        if not isinstance((record.get(outer) or {}).get(inner), dict | None):
            return f"'{outer}.{inner}' is not an object"
    return None
