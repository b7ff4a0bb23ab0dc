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
    """Every run's ``result.json``, newest first (runs without one are left out)."""
    ws = as_workspace(workspace)
    out = []
    if ws.runs_dir.is_dir():
        for folder in ws.runs_dir.iterdir():
            path = folder / RESULT_NAME
            if not path.is_file():
                continue
            try:
                out.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                log.warning("%s cannot be read; skipped", path)
    out.sort(
        key=lambda r: (r.get("started_at") or "", r.get("finished_at") or "", r.get("run_id") or ""),
        reverse=True,
    )
    return out


