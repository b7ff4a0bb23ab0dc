"""Crash-safe exports: the pending-export protocol, and the settling of interrupted ones.

:func:`write_export` shares what :func:`audtools.exporting.flow.export_audience` prepared, in four steps
(DESIGN.md, "Atomic by construction"):

1. record a pending export — run ID, final and temporary names, what to commit — in
   ``pending_exports``; commit;
2. write every part (and the transition CSVs) under a temporary name, fsync, and record the
   parts' sizes in the pending record (state ``written``);
3. rename every part to its final name (a hard link then an unlink, so no file is ever replaced),
   then the transition CSVs;
4. commit the ledger, the new shared audience and the run in one transaction, which also marks the
   pending record ``committed``; write ``result.json``; delete the pending record.

The new IDs are not staged in the database: when an export is rolled forward, its ledger rows are
read back from its parts, which are exactly what was shared (their sizes are checked against the
record). This halves what a big export writes to the database (10 M IDs: one ledger insert instead
of a staging insert plus a copy), and needs no table outside the migrations.

:func:`settle_pending_exports`, registered in :data:`audtools.workspace.database.STARTUP_HOOKS` when this module
is imported (``import audtools`` imports it, through :mod:`audtools.exporting.flow`), runs first in
every session: a pending export whose parts all reached their final names is rolled forward; any
other is rolled back (its temporary files and any part already renamed are deleted, and a failed
``result.json`` says so). Tests replace :func:`audtools.exporting.flow._crash_point` to stop the
protocol between any two steps.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
from tqdm.auto import tqdm

from audtools.columns.chunks import CHUNK_ROWS
from audtools.config import DataSource
from audtools.errors import AudtoolsError, ErrorCode, describe
from audtools.formats import onboarding
from audtools.workspace import Workspace, utc_text
from audtools.workspace import database as store
from audtools.workspace.database import sql_string
from audtools.workspace.progress import hide_bars
from audtools.workspace.runs import now_utc, write_result

if TYPE_CHECKING:
    from audtools.exporting.flow import ExportResult

__all__ = ["settle_pending_exports", "write_export"]

log = logging.getLogger("audtools")

_RECORD_VERSION = 1


def _crash_point(name: str) -> None:
    """Call :func:`audtools.exporting.flow._crash_point`, the hook tests replace, looked up each time."""
    from audtools.exporting import flow as exporting

    exporting._crash_point(name)


# -- the protocol -------------------------------------------------------------------------------


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
    shared = result.shared_audience
    drop = ws.config.export_drop
    drop.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    if parts:
        stamp = onboarding.free_timestamp(
            drop, source.dpid, int(started.timestamp()), len(parts), gzip=gzip
        )
        names = onboarding.part_names(source.dpid, stamp, len(parts), gzip=gzip)
    result.files = list(names)
    record: dict[str, Any] = {
        "version": _RECORD_VERSION,
        "run_id": run_id,
        "state": "planned",
        "drop": str(drop),
        "parts": [
            {"final": name, "temp": onboarding.temp_name(run_id, i), "rows": p.rows, "size": None}
            for i, (name, p) in enumerate(zip(names, parts, strict=True), 1)
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
    # Step 1: the pending export, committed before any file is written.
    with store.transaction(con):
        _save_record(con, record, insert=True)
    _crash_point("after_pending")
    renamed: list[Path] = []
    committed = False
    try:
        # Step 2: every part and transition under its temporary name, then their sizes recorded.
        total = sum(p.nbytes for p in parts)
        with tqdm(total=total, desc="writing onboarding files", unit="B", unit_scale=True,
                  leave=False, disable=hide_bars(progress)) as pbar:
            sizes = onboarding.write_parts(
                (b.column(0) for b in new_ids.to_batches(max_chunksize=CHUNK_ROWS)),
                shared.sid,
                parts,
                [drop / p["temp"] for p in record["parts"]],
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
        _save_record(con, record)
        _crash_point("after_written")
        # Step 3: renames, parts first, then transitions.
        for i, part in enumerate(record["parts"], 1):
            _publish(drop / part["temp"], drop / part["final"], i)
            renamed.append(drop / part["final"])
            _crash_point(f"after_rename_part_{i}")
        onboarding.fsync_dir(drop)
        for item in record["transitions"]:
            os.replace(item["temp"], item["final"])
            renamed.append(Path(item["final"]))
            onboarding.fsync_dir(Path(item["final"]).parent)
        _crash_point("after_renames")
        # Step 4: ledger, shared audience and run in one transaction.
        _commit(con, record, now_utc(), new_ids)
        committed = True
    except Exception as exc:
        if not committed:
            _roll_back(ws, con, record, also_delete=renamed, error=exc)
        raise
    _crash_point("after_commit")
    _finish(ws, con, record)
    result.finished_at = record["result"]["finished_at"]


def _save_record(
    con: duckdb.DuckDBPyConnection, record: dict[str, Any], *, insert: bool = False
) -> None:
    text = json.dumps(record, ensure_ascii=False)
    if insert:
        con.execute(
            "INSERT INTO pending_exports VALUES (?, ?, ?)",
            [record["run_id"], text, now_utc().replace(tzinfo=None)],
        )
    else:
        con.execute(
            "UPDATE pending_exports SET record = ? WHERE run_id = ?", [text, record["run_id"]]
        )


def _write_transition(con: duckdb.DuckDBPyConnection, sql: str, temp: Path) -> None:
    """A transition CSV (the rows of ``sql``) under its temporary name, fsynced."""
    temp.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY ({sql}) TO {sql_string(str(temp))} (FORMAT CSV, HEADER, DELIMITER ',')")
    with open(temp, "rb") as fh:
        os.fsync(fh.fileno())


def _publish(temp: Path, final: Path, index: int) -> None:
    """Give a part its final name without ever replacing a file."""
    try:
        os.link(temp, final)
    except FileExistsError:
        raise AudtoolsError(
            f"{final.name} appeared in the export drop while the export was writing; nothing was "
            "shared. Run the export again.",
            code="name_taken",
        ) from None
    except OSError:
        # A file system without hard links: check, then rename (the lock keeps audtools out).
        if final.exists():
            raise AudtoolsError(
                f"{final.name} appeared in the export drop while the export was writing; nothing "
                "was shared. Run the export again.",
                code="name_taken",
            ) from None
        os.rename(temp, final)
        return
    _crash_point(f"after_link_part_{index}")
    os.unlink(temp)


def _commit(
    con: duckdb.DuckDBPyConnection,
    record: dict[str, Any],
    finished: dt.datetime,
    new_ids: pa.Table | None = None,
) -> None:
    """Step 4: the ledger, the new shared audience and the run, and the record marked committed.

    The ledger gets ``new_ids``, or, when an interrupted export is rolled forward, the IDs read
    back from its parts.
    """
    run_id = record["run_id"]
    shared = record["shared_audience"]
    started = dt.datetime.strptime(record["started_at"], "%Y-%m-%dT%H:%M:%SZ")
    payload = {
        **record["result"],
        "kind": "export",
        "status": "succeeded",
        "started_at": record["started_at"],
        "finished_at": utc_text(finished),
    }
    store.uncompressed_writes(con)
    with store.transaction(con):
        ledger = record["ledger"]
        blocks = [new_ids] if new_ids is not None else _ids_from_parts(record)
        for block in blocks:
            table = block if isinstance(block, pa.Table) else pa.table({"id": block})
            con.register("_x_ledger", table)
            con.execute(
                "INSERT INTO export_ledger SELECT ?, ?, id, ? FROM _x_ledger",
                [ledger["sid"], ledger["data_source"], run_id],
            )
            con.unregister("_x_ledger")
        if shared["created"]:
            con.execute(
                "INSERT INTO shared_audiences VALUES (?, ?, ?, ?)",
                [shared["sid"], shared["name"], started, run_id],
            )
        con.execute(
            "INSERT INTO runs VALUES (?, 'export', 'succeeded', ?, ?, ?)",
            [
                run_id,
                started,
                finished.replace(tzinfo=None),
                json.dumps(payload, ensure_ascii=False),
            ],
        )
        record["state"] = "committed"
        record["result"] = payload
        _save_record(con, record)


def _ids_from_parts(record: dict[str, Any]) -> Iterator[pa.Array]:
    """The IDs of an export's parts, read back from their final names."""
    drop = Path(record["drop"])
    for part in record["parts"]:
        yield from onboarding.read_ids(drop / part["final"], record["ledger"]["sid"])


def _finish(ws: Workspace, con: duckdb.DuckDBPyConnection, record: dict[str, Any]) -> None:
    """After the commit: ``result.json``, then the pending record goes."""
    write_result(ws, record["run_id"], record["result"])
    _crash_point("after_result")
    con.execute("DELETE FROM pending_exports WHERE run_id = ?", [record["run_id"]])


def _roll_back(
    ws: Workspace,
    con: duckdb.DuckDBPyConnection,
    record: dict[str, Any],
    *,
    also_delete: Iterable[Path] = (),
    error: BaseException | None = None,
) -> None:
    """Remove every file of an export that will not be committed, then its pending record."""
    run_id = record["run_id"]
    drop = Path(record.get("drop") or ws.config.export_drop)
    for part in record.get("parts", []):
        temp, final = drop / part["temp"], drop / part["final"]
        if temp.exists():
            if final.exists() and _same_file(temp, final):
                final.unlink()
            temp.unlink()
        elif (
            final.exists() and part.get("size") is not None and final.stat().st_size == part["size"]
        ):
            # Renamed by this export: sizes are recorded before any rename.
            final.unlink()
    for item in record.get("transitions", []):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(item["temp"])
    for path in also_delete:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    with contextlib.suppress(FileNotFoundError):
        for leftover in drop.glob(f".audtools-{run_id}-*"):
            leftover.unlink()
    onboarding.fsync_dir(drop)
    con.execute("DELETE FROM pending_exports WHERE run_id = ?", [run_id])
    if error is not None:
        code, message = describe(error)
    else:
        code = ErrorCode.INTERRUPTED
        message = (
            "The export was interrupted before all its files were in place; its files were "
            "removed and nothing was shared. Run it again."
        )
    log.info("export %s rolled back: %s", run_id, message)  # the CLI prints the error once
    failed = {
        **record.get("result", {}),
        "files": [],
        "kind": "export",
        "status": "failed",
        "error": {"code": code, "message": message},
        "started_at": record.get("started_at"),
        "finished_at": utc_text(now_utc()),
    }
    with contextlib.suppress(OSError):
        write_result(ws, run_id, failed)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False



# -- settling interrupted exports ---------------------------------------------------------------


def _parts_final(record: dict[str, Any]) -> bool:
    """Whether every part of a written export reached its final name."""
    drop = Path(record["drop"])
    for part in record["parts"]:
        final = drop / part["final"]
        try:
            if final.stat().st_size != part["size"]:
                return False
        except FileNotFoundError:
            return False
    return True


def settle_pending_exports(ws: Workspace, con: duckdb.DuckDBPyConnection) -> None:
    """Complete or undo every export a crash interrupted (a startup hook of every session).

    An export whose parts all reached their final names is rolled forward: leftover temporary
    names are removed, transitions renamed, the ledger, shared audience and run committed and
    ``result.json`` written. Any other is rolled back: its temporary files and the parts already
    renamed are deleted, its record dropped, and ``result.json`` says it failed
    (``interrupted``).
    """
    rows = con.execute(
        "SELECT run_id, record FROM pending_exports ORDER BY created_at, run_id"
    ).fetchall()
    for run_id, text in rows:
        try:
            record = json.loads(text)
        except (TypeError, ValueError):
            record = {"run_id": run_id, "parts": [], "transitions": []}
        state = record.get("state")
        if state == "committed":
            log.warning("completing export %s (committed before an interruption)", run_id)
            _finish(ws, con, record)
        elif state == "written" and _parts_final(record):
            log.warning("rolling forward export %s: all its files are in place", run_id)
            try:
                _roll_forward(con, record)
            except Exception as exc:  # noqa: BLE001 - a part that cannot be read back: undo instead
                log.error("export %s cannot be rolled forward (%s); rolling it back", run_id, exc)
                _settle_back(ws, con, record, exc)
            else:
                _finish(ws, con, record)
        else:
            log.warning(
                "rolling back export %s: interrupted before its files were in place", run_id
            )
            _settle_back(ws, con, record, None)


def _roll_forward(con: duckdb.DuckDBPyConnection, record: dict[str, Any]) -> None:
    drop = Path(record["drop"])
    for part in record["parts"]:
        temp = drop / part["temp"]
        if temp.exists():
            temp.unlink()
    for item in record["transitions"]:
        if os.path.exists(item["temp"]):
            os.replace(item["temp"], item["final"])
    onboarding.fsync_dir(drop)
    _commit(con, record, now_utc())


def _settle_back(
    ws: Workspace, con: duckdb.DuckDBPyConnection, record: dict[str, Any], error: Exception | None
) -> None:
    try:
        _roll_back(ws, con, record, error=error)
    except OSError as exc:
        raise AudtoolsError(
            f"The interrupted export {record.get('run_id')} cannot be undone ({exc}); fix the "
            "export drop's permissions and run any audtools command again.",
            code="unsettled_export",
        ) from None


def _register() -> None:
    """Put :func:`settle_pending_exports` in the startup hooks once (replacing a reloaded one)."""
    store.STARTUP_HOOKS[:] = [
        h
        for h in store.STARTUP_HOOKS
        if not (
            getattr(h, "__module__", None) == __name__
            and getattr(h, "__name__", None) == "settle_pending_exports"
        )
    ]
    store.STARTUP_HOOKS.insert(0, settle_pending_exports)


_register()
