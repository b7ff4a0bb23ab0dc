"""The run history as data: every run's ``result.json`` as one flat DataFrame.

Reports, charts and the runs index read the history from here; nothing here opens the database,
so the history stays readable while a job holds the workspace.

Example:
    >>> from audtools.jobs import history
    >>> from audtools.workspace.runs import load_runs
    >>> history.runs_frame(load_runs("data/demo"))[["run_id", "kind", "match_rate"]]   # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

__all__ = ["COLUMNS", "data_source_rows", "previous_run", "runs_frame", "select_runs"]

_COUNTS = [
    "rows_read", "rows_rejected", "members", "undecryptable", "matched", "unmatched", "no_profile",
    "profiles", "addresses", "batches_applied", "batches_waiting", "batches_skipped",
    "profiles_targeted", "profiles_exported", "profiles_without_id", "ids_exported",
    "ids_already_shared", "files", "runs_in_period",
]
COLUMNS = [
    "run_id", "kind", "status", "started_at", "finished_at", "delivered_at", "label", "audience_type",
    "shared_audience", "sid", "data_source", *_COUNTS[:9], "match_rate", *_COUNTS[9:],
    "created", "available_from", "available_to", "error_code", "error_message", "notebook",
    "report",
]


def _flatten(record: Mapping[str, Any]) -> dict[str, Any]:
    kind = record.get("kind")
    audience = record.get("audience") or {}
    shared = audience.get("shared_audience") or record.get("shared_audience") or {}
    params = (record.get("job") or {}).get("parameters") or {}
    if kind == "import":
        label = audience.get("label") or params.get("label")
    elif kind == "export":
        label = shared.get("name") or params.get("segment_name") or params.get("shared_audience")
    elif kind == "report":
        label = "Match rate report"
    else:
        label = (record.get("job") or {}).get("notebook")
    error = record.get("error") or (record.get("job") or {}).get("error") or {}
    skipped = record.get("batches_skipped")
    files = record.get("files")
    row: dict[str, Any] = {
        "run_id": record.get("run_id"),
        "kind": kind,
        "status": record.get("status"),
        "started_at": record.get("started_at"),
        "finished_at": record.get("finished_at"),
        "delivered_at": record.get("delivered_at"),
        "label": None if label is None else str(label),
        "audience_type": audience.get("type"),
        "shared_audience": f"{shared['name']} ({shared['sid']})" if shared.get("name") else None,
        "sid": shared.get("sid"),
        "data_source": audience.get("data_source") or record.get("data_source")
        or params.get("data_source"),
        "no_profile": (record.get("unmatched_reasons") or {}).get("no_profile"),
        "batches_skipped": len(skipped) if isinstance(skipped, list) else None,
        "files": len(files) if isinstance(files, list) else None,
        "match_rate": record.get("match_rate"),
        "created": shared.get("created"),
        "available_from": record.get("available_from"),
        "available_to": record.get("available_to"),
        "error_code": error.get("code"),
        "error_message": error.get("message"),
        "notebook": (record.get("job") or {}).get("notebook"),
        "report": record.get("report"),
    }
    for key in _COUNTS:
        if key not in ("no_profile", "batches_skipped", "files"):
            row[key] = record.get(key)
    return row


def _whole_number(value: Any) -> int | None:
    # Anything that is not a whole number fitting 64 bits (a damaged or odd result.json) is missing.
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip()) if len(value.strip()) <= 18 else None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if -(2**63) < value < 2**63 else None


def _whole_numbers(values: pd.Series) -> pd.Series:
    return pd.Series([_whole_number(v) for v in values], index=values.index, dtype="Int64")


def runs_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The run history as a flat DataFrame, in the order given (``load_runs``: newest first).

    Columns: ``run_id``, ``kind`` (import, export, report), ``status``, ``started_at`` and
    ``finished_at`` (UTC timestamps), ``delivered_at`` (UTC timestamp of the AAM timestamp of the
    newest batch the import reflects; missing for other runs and older imports), ``label`` (the audience's label, the export's shared
    audience), ``audience_type``, ``shared_audience`` (``Name (sid)``), ``sid``,
    ``data_source``, the counts of SPEC §5 and §6 (nullable integers), ``match_rate``,
    ``batches_skipped`` and ``files`` (how many), ``created``, ``available_from`` and
    ``available_to`` (text, UTC), ``error_code``, ``error_message``, ``notebook`` and ``report``
    (the job's, relative to the workspace).
    """
    frame = pd.DataFrame([_flatten(r) for r in records], columns=COLUMNS)
    for column in ("started_at", "finished_at", "delivered_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True, errors="coerce", format="ISO8601")
    for column in _COUNTS:
        frame[column] = _whole_numbers(frame[column])
    frame["match_rate"] = pd.to_numeric(frame["match_rate"], errors="coerce").astype(float)
    frame["sid"] = _whole_numbers(frame["sid"])
    return frame.reset_index(drop=True)


def previous_run(frame: pd.DataFrame, run: Mapping[str, Any], *, kind: str, same: list[str]) -> pd.Series | None:
    """The latest succeeded run of ``kind`` that started before ``run`` and has its values of
    the columns ``same`` (``label``, ``data_source``), or None."""
    if frame.empty:
        return None
    keep = (frame["kind"] == kind) & (frame["status"] == "succeeded") & (frame["run_id"] != run.get("run_id"))
    started = pd.to_datetime(run.get("started_at"), utc=True, errors="coerce")
    if started is not None and not pd.isna(started):
        keep &= frame["started_at"] < started
    for column in same:
        keep &= frame[column] == run.get(column)
    found = frame[keep].sort_values("started_at")
    return None if found.empty else found.iloc[-1]


def data_source_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Per data source, its latest succeeded import and how its match rate moved since the
    previous run of the same label."""
    imports = frame[(frame["kind"] == "import") & (frame["status"] == "succeeded")]
    out = []
    for source, group in imports.sort_values("started_at").groupby("data_source", sort=True):
        last = group.iloc[-1]
        same = group[(group["label"] == last["label"]) & (group["run_id"] != last["run_id"])]
        before = same.iloc[-1] if not same.empty else None
        out.append({
            "data_source": str(source),
            "imports": len(group),
            "label": last["label"],
            "started_at": last["started_at"],
            "match_rate": float(last["match_rate"]),
            "change": None if before is None else float(last["match_rate"] - before["match_rate"]),
            "available_from": last["available_from"],
            "available_to": last["available_to"],
        })
    return out


def select_runs(frame: pd.DataFrame, period: Any, data_source: str | None = None) -> pd.DataFrame:
    """The runs of ``frame`` that started in ``period`` (a :class:`audtools.jobs.runner.Period`) and,
    when given, of one data source."""
    keep = period.contains(frame["started_at"]) if len(frame) else pd.Series([], dtype=bool)
    if data_source is not None and len(frame):
        keep &= frame["data_source"] == data_source
    return frame[keep.fillna(False).astype(bool)] if len(frame) else frame
