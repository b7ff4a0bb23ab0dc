"""Crash-safe publication of an export: the pending-export protocol, run in four steps.

:func:`write_export` shares what :func:`audtools.exporting.flow.export_audience` prepared
(DESIGN.md, "Atomic by construction"):

1. record a pending export (run ID, final and temporary names, what to commit) in
   ``pending_exports``; commit;
2. write every part (and the transition CSVs) under a temporary name, make it durable, and
   record the parts' sizes in the pending record (state ``written``);
3. publish every part under its final name (the drop never replaces a file), then rename the
   transition CSVs;
4. commit the ledger, the new shared audience and the run in one transaction, which also marks the
   pending record ``committed``; write ``result.json``; delete the pending record.

The new IDs are not staged in the database: when an export is rolled forward, its ledger rows are
read back from its parts, which are exactly what was shared. This halves what a big export writes
to the database (10 M IDs: one ledger insert instead of a staging insert plus a copy).

Every file of the export drop is created, published, listed and removed through
:mod:`audtools.drops`. The commit and the undo are :mod:`audtools.workspace.recovery`'s, which
also settles, in the next session, an export this module could not finish. Tests replace
:func:`_crash_point` to stop the protocol between any two steps.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
from tqdm.auto import tqdm

from audtools.columns.chunks import CHUNK_ROWS
from audtools.config import DataSource
from audtools.drops import Drop
from audtools.errors import AudtoolsError
from audtools.formats import onboarding
from audtools.workspace import Workspace, recovery, utc_text
from audtools.workspace import database as store
from audtools.workspace.database import sql_string
from audtools.workspace.progress import hide_bars
from audtools.workspace.runs import now_utc, write_result

if TYPE_CHECKING:
    from audtools.exporting.result import ExportResult

__all__ = ["write_export"]

_RECORD_VERSION = 1


def _crash_point(name: str) -> None:
    """Nothing: tests replace it to stop an export between two steps of the protocol.

    Looked up in this module at each step, so replacing ``publish._crash_point`` is enough.

    Names, in order: ``after_pending``, ``after_write_part_N``, ``after_write_transitions``,
    ``after_written``, ``after_rename_part_N``, ``after_renames``, ``after_commit``,
    ``after_result``.
    """


def write_export(
    ws: Workspace,
    con: duckdb.DuckDBPyConnection,
    result: ExportResult,
    *,
    run_id: str,
    started: dt.datetime,
    source: DataSource,
    parts: list[onboarding.PartPlan],
    new_ids: pa.Table,
    transitions: list[tuple[str, Path, str]],
    gzip: bool,
    progress: bool | None,
) -> None:
    """Write and commit an export: steps 1 to 4 of the module docstring.

    Args:
        ws: the workspace.
        con: the session's connection, holding the export's temporary tables.
        result: the export's result so far; it gets its files and finish time.
        run_id: the export's run ID.
        started: when the export started (the files' timestamp and the run's start).
        source: the data source exported through.
        parts: the planned onboarding files.
        new_ids: the IDs to write (one column ``id``), in the order the rows are written.
        transitions: ``(kind, final path, query)`` of each transition CSV to write.
        gzip: write ``.sync.gz`` files.
        progress: show a progress bar (None: only on a terminal or in a notebook).

    Raises:
        AudtoolsError: a failure while writing (``name_taken`` when a final name appears);
            everything written is removed and a failed ``result.json`` written first.
    """
    drop = recovery.export_drop(ws)
    # A drop that cannot be looked into fails the export here, before there is anything to undo.
    drop.stat(onboarding.temp_name(run_id, 1))
    result.files = _final_names(drop, source, started, len(parts), gzip)
    record = _new_record(drop, result, run_id, started, source, parts, transitions)
    # Step 1: the pending export, committed before any file is written.
    with store.transaction(con):
        recovery.save_record(con, record, insert=True)
    _crash_point("after_pending")
    renamed: list[str] = []  # parts published, then transitions renamed, for an undo
    committed = False
    try:
        _write_files(con, drop, record, parts, new_ids, transitions, gzip, progress)
        _rename_files(drop, record, renamed)
        # Step 4: ledger, shared audience and run in one transaction.
        recovery.commit_export(con, record, drop, now_utc(), new_ids)
        committed = True
    except Exception as exc:
        if not committed:
            recovery.roll_back(ws, con, record, also_delete=renamed, error=exc)
        raise
    _crash_point("after_commit")
    write_result(ws, run_id, record["result"])
    _crash_point("after_result")
    recovery.forget_record(con, run_id)
    result.finished_at = record["result"]["finished_at"]


def _final_names(
    drop: Drop, source: DataSource, started: dt.datetime, parts: int, gzip: bool
) -> list[str]:
    """The parts' names, at the first timestamp from ``started`` where every one is free."""
    if not parts:
        return []
    existing = {entry.name for entry in drop.list()}
    owner = source.target_data_owner
    stamp = onboarding.free_timestamp(
        existing, source.dpid, int(started.timestamp()), parts, gzip=gzip, owner=owner
    )
    return onboarding.part_names(source.dpid, stamp, parts, gzip=gzip, owner=owner)


def _new_record(
    drop: Drop,
    result: ExportResult,
    run_id: str,
    started: dt.datetime,
    source: DataSource,
    parts: list[onboarding.PartPlan],
    transitions: list[tuple[str, Path, str]],
) -> dict[str, Any]:
    """The pending record (:mod:`audtools.workspace.recovery` describes it)."""
    shared = result.shared_audience
    return {
        "version": _RECORD_VERSION,
        "run_id": run_id,
        "state": "planned",
        "drop": drop.url,
        "parts": [
            {"final": name, "temp": onboarding.temp_name(run_id, i), "rows": p.rows, "size": None}
            for i, (name, p) in enumerate(zip(result.files, parts, strict=True), 1)
        ],
        "transitions": [
            {
                "kind": kind,
                "final": str(path),
                "temp": str(path.with_name(f".audtools-{run_id}-{path.name}.tmp")),
            }
            for kind, path, _ in transitions
        ],
        "ledger": {"sid": shared.sid, "data_source": source.id, "rows": result.ids_exported},
        "shared_audience": {"sid": shared.sid, "name": shared.name, "created": result.created},
        "started_at": utc_text(started),
        "result": result.to_json(),
    }


def _write_files(
    con: duckdb.DuckDBPyConnection,
    drop: Drop,
    record: dict[str, Any],
    parts: list[onboarding.PartPlan],
    new_ids: pa.Table,
    transitions: list[tuple[str, Path, str]],
    gzip: bool,
    progress: bool | None,
) -> None:
    """Step 2: every part and transition under its temporary name, then their sizes recorded."""
    temps = [p["temp"] for p in record["parts"]]
    with tqdm(total=sum(p.nbytes for p in parts), desc="writing onboarding files", unit="B",
              unit_scale=True, leave=False, disable=hide_bars(progress)) as pbar:
        sizes = onboarding.write_parts(
            (b.column(0) for b in new_ids.to_batches(max_chunksize=CHUNK_ROWS)),
            record["shared_audience"]["sid"],
            parts,
            lambda n: drop.create(temps[n - 1]),
            gzip=gzip,
            after_part=lambda i: _crash_point(f"after_write_part_{i}"),
            progress=pbar.update,
        )
    for part, size in zip(record["parts"], sizes, strict=True):
        part["size"] = size
    queries = {kind: sql for kind, _, sql in transitions}
    for item in record["transitions"]:
        _write_transition(con, queries[item["kind"]], Path(item["temp"]))
    _crash_point("after_write_transitions")
    record["state"] = "written"
    recovery.save_record(con, record)
    _crash_point("after_written")


def _rename_files(drop: Drop, record: dict[str, Any], renamed: list[str]) -> None:
    """Step 3: every part published under its final name, then the transitions renamed.

    ``renamed`` gets each final part name and transition path as soon as it is in place.
    """
    for i, part in enumerate(record["parts"], 1):
        try:
            drop.publish(part["temp"], part["final"])
        except FileExistsError:
            raise AudtoolsError(
                f"{part['final']} appeared in the export drop while the export was writing; "
                "nothing was shared. Run the export again.",
                code="name_taken",
            ) from None
        renamed.append(part["final"])
        _crash_point(f"after_rename_part_{i}")
    drop.sync()
    for item in record["transitions"]:
        # Transition CSVs are the analyst's files, outside the drop.
        os.replace(item["temp"], item["final"])
        renamed.append(item["final"])
        _fsync_folder(Path(item["final"]).parent)
    _crash_point("after_renames")


def _write_transition(con: duckdb.DuckDBPyConnection, sql: str, temp: Path) -> None:
    """A transition CSV (the rows of ``sql``) under its temporary name, fsynced."""
    temp.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY ({sql}) TO {sql_string(str(temp))} (FORMAT CSV, HEADER, DELIMITER ',')")
    with open(temp, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
