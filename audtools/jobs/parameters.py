"""The parameters of the job notebooks: checked first, in the notebook, before anything runs.

papermill does not type parameters, so each notebook's first cell after its ``parameters`` cell
calls :func:`import_parameters`, :func:`export_parameters` or :func:`report_parameters`: they
check types and allowed values and raise :class:`JobError` (``bad_parameter``) naming the
parameter, what it must be and what it is. In a kernel, audtools errors show as one line
(``audtools error [code]: message``, :meth:`audtools.errors.AudtoolsError._render_traceback_`),
which :func:`audtools.jobs.runner.run_job` reads back as the job's error. Keys are never
parameters.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from audtools.errors import JobError, MatchRateLow
from audtools.workspace import Workspace, as_workspace
from audtools.workspace.records import RUN_ID_TIME, now_utc, utc_text
from audtools.workspace.runs import load_runs, write_result

__all__ = [
    "Period",
    "export_parameters",
    "import_parameters",
    "record_report",
    "report_parameters",
    "require_match_rate",
]

_RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    return f"a {type(value).__name__}"


def _bad(name: str, wanted: str, value: Any, hint: str = "") -> JobError:
    shown = repr(value) if not isinstance(value, str) or len(value) <= 40 else repr(value[:37] + "...")
    return JobError(
        f"The parameter {name} must be {wanted}, not {shown} ({_kind_of(value)}); "
        + (hint or f"set it with -p {name} VALUE."),
        code="bad_parameter",
    )


def _text(name: str, value: Any, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # YAML read a number; a label or name of digits is still a name
    if not isinstance(value, str) or not value.strip():
        raise _bad(name, "non-empty text", value)
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _bad(name, "true or false", value)
    return value


def _sid_or_name(name: str, value: Any, *, optional: bool = False) -> int | str | None:
    if value is None and optional:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.strip():
        return value
    raise _bad(name, "a sid (a positive number) or the exact name of a shared audience", value,
               "see 'audtools catalog'.")


def _data_source(ws: Workspace, name: str, value: Any, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    known = list(ws.config.data_sources)
    if not isinstance(value, str) or value not in ws.config.data_sources:
        raise _bad(name, f"one of the data sources of audtools.toml ({', '.join(known)})", value,
                   "see audtools.toml.")
    return value


def _start(workspace: Any, run_id: Any) -> Workspace:
    if run_id is not None and (not isinstance(run_id, str) or not _RUN_ID.match(run_id)):
        raise _bad("run_id", "a run ID (YYYYMMDDTHHMMSSZ-xxxxxx) or null", run_id,
                   "audtools run sets it; leave it null when running the notebook by hand.")
    if workspace is not None and not isinstance(workspace, str | os.PathLike):
        raise _bad("workspace", "the path of a workspace", workspace)
    return as_workspace(workspace)


def import_parameters(
    workspace: Any,
    run_id: Any,
    *,
    label: Any,
    shared_audience: Any,
    data_source: Any,
    force_reconciliation: Any = False,
    operator: Any = None,
    min_match_rate: Any = None,
) -> dict[str, Any]:
    """Check the parameters of ``import_audience.ipynb``; the keyword arguments of
    :func:`audtools.import_audience` (``min_match_rate`` is checked, not returned).

    Raises:
        JobError: ``bad_parameter``, naming the parameter, what it must be and what it is.
    """
    ws = _start(workspace, run_id)
    out = {
        "label": _text("label", label),
        "shared_audience": _sid_or_name("shared_audience", shared_audience),
        "data_source": _data_source(ws, "data_source", data_source),
        "force_reconciliation": _flag("force_reconciliation", force_reconciliation),
        "operator": _text("operator", operator, optional=True),
    }
    _rate("min_match_rate", min_match_rate)
    return out


def _rate(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise _bad(name, "a number from 0 to 1 or null", value)
    return float(value)


def require_match_rate(result: Any, min_match_rate: float | None) -> None:
    """Fail the job (``match_rate_low``) when the import's match rate is below
    ``min_match_rate``; the run stays recorded, as with ``audtools import --min-match-rate``."""
    minimum = _rate("min_match_rate", min_match_rate)
    if minimum is not None and result.match_rate < minimum:
        raise MatchRateLow(result, minimum)


def export_parameters(
    workspace: Any,
    run_id: Any,
    *,
    shared_audience: Any = None,
    segment_name: Any = None,
    data_source: Any,
    where: Any = None,
    outbound_transition: Any = None,
    complement_transition: Any = None,
    gzip: Any = False,
    max_file_bytes: Any = None,
    operator: Any = None,
) -> dict[str, Any]:
    """Check the parameters of ``export_audience.ipynb``; the keyword arguments of
    :func:`audtools.exporting.flow.export_audience`. Relative transition paths are relative to the
    run's folder ``runs/RUN_ID/`` (to the workspace in a notebook run by hand, without a run ID).

    Raises:
        JobError: ``bad_parameter``, naming the parameter, what it must be and what it is.
    """
    ws = _start(workspace, run_id)
    if (shared_audience is None) == (segment_name is None):
        raise JobError(
            "Give exactly one of the parameters shared_audience (an existing segment) and "
            "segment_name (a new one).",
            code="bad_parameter",
        )
    out: dict[str, Any] = {
        "shared_audience": _sid_or_name("shared_audience", shared_audience, optional=True),
        "segment_name": _text("segment_name", segment_name, optional=True),
        "data_source": _data_source(ws, "data_source", data_source),
        "where": _text("where", where, optional=True),
        "gzip": _flag("gzip", gzip),
        "operator": _text("operator", operator, optional=True),
    }
    for name, value in (("outbound_transition", outbound_transition),
                        ("complement_transition", complement_transition)):
        text = _text(name, value, optional=True)
        if text is not None:
            if not text.lower().endswith(".csv"):
                raise _bad(name, "the path of a .csv file", value)
            # A relative path lands in the run's folder, never over a file of the workspace.
            base = ws.run_dir(run_id) if isinstance(run_id, str) and run_id else ws.root
            out[name] = str((base / Path(text).expanduser()).resolve())
    if max_file_bytes is not None:
        if isinstance(max_file_bytes, bool) or not isinstance(max_file_bytes, int) or max_file_bytes < 1:
            raise _bad("max_file_bytes", "a whole number of bytes, 1 or more, or null", max_file_bytes)
        out["max_file_bytes"] = max_file_bytes
    return out


@dataclass(frozen=True)
class Period:
    """A period of the run history: runs that started in ``[start, end)`` (UTC; None: open)."""

    text: str
    start: pd.Timestamp | None
    end: pd.Timestamp | None

    def contains(self, started: pd.Series) -> pd.Series:
        """Which of these start times fall in the period."""
        keep = pd.Series(True, index=started.index)
        if self.start is not None:
            keep &= started >= self.start
        if self.end is not None:
            keep &= started < self.end
        return keep


_PERIOD = re.compile(r"^(?P<n>\d+)\s*(?P<unit>[dw])$")
_RANGE = re.compile(r"^(?P<a>\d{4}-\d{2}-\d{2})\s*\.\.\s*(?P<b>\d{4}-\d{2}-\d{2})$")


def report_parameters(
    workspace: Any, run_id: Any, *, period: Any = "30d", data_source: Any = None
) -> tuple[Period, str | None]:
    """Check the parameters of ``match_rate_report.ipynb``.

    ``period`` is ``all``, ``Nd`` (the last N days), ``Nw`` (the last N weeks), a number of days,
    or ``YYYY-MM-DD..YYYY-MM-DD`` (both days included). ``data_source`` is null (every one) or a
    data source of ``audtools.toml`` or of the run history.

    Returns:
        The :class:`Period` and the data source.
    """
    ws = _start(workspace, run_id)
    now = pd.Timestamp(now_utc())
    wanted = "all, Nd, Nw (the last N days or weeks) or YYYY-MM-DD..YYYY-MM-DD"
    if isinstance(period, int) and not isinstance(period, bool) and period > 0:
        period = f"{period}d"
    if not isinstance(period, str):
        raise _bad("period", wanted, period)
    text = period.strip().lower()
    if text == "all":
        chosen = Period("all runs", None, None)
    elif (m := _PERIOD.match(text)) and int(m["n"]) > 0:
        days = int(m["n"]) * (7 if m["unit"] == "w" else 1)
        chosen = Period(f"the last {days} days", now - pd.Timedelta(days=days), None)
    elif m := _RANGE.match(text):
        try:
            start = pd.Timestamp(m["a"], tz="UTC")
            end = pd.Timestamp(m["b"], tz="UTC") + pd.Timedelta(days=1)
        except ValueError:
            raise _bad("period", wanted, period) from None
        if end <= start:
            raise _bad("period", "a range whose end is not before its start", period)
        chosen = Period(f"{m['a']} to {m['b']}", start, end)
    else:
        raise _bad("period", wanted, period)
    if data_source is not None:
        history = {r.get("data_source") or (r.get("audience") or {}).get("data_source")
                   for r in load_runs(ws)}
        if not isinstance(data_source, str) or (
            data_source not in ws.config.data_sources and data_source not in history
        ):
            raise _bad("data_source", "null or a data source of audtools.toml or of past runs",
                       data_source, "see audtools.toml.")
    return chosen, data_source


def record_report(workspace: Any, run_id: str | None, summary: Mapping[str, Any]) -> dict[str, Any] | None:
    """Write the ``result.json`` of a report job (``kind: report``); nothing without a run ID
    (a notebook run by hand)."""
    if run_id is None:
        return None
    ws = as_workspace(workspace)
    started = dt.datetime.strptime(run_id[:16], RUN_ID_TIME).replace(tzinfo=dt.UTC)
    data = {
        "run_id": run_id,
        **{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()},
        "kind": "report",
        "status": "succeeded",
        "started_at": utc_text(started),
        "finished_at": utc_text(now_utc()),
    }
    write_result(ws, run_id, data)
    return data
