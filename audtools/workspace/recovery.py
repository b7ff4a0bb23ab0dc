"""Completes or removes an interrupted export: the settling end of the pending-export protocol.

An export (:mod:`audtools.exporting.publish`) first records itself in ``pending_exports``, then
writes its parts under temporary names, renames them, and commits (DESIGN.md, "Atomic by
construction"). The record, a JSON object, holds everything needed to finish or undo it:

- ``run_id``, ``state`` (``planned``, ``written``, ``committed``), ``started_at``;
- ``drop``: the export drop's location; ``parts``: each part's ``final`` and ``temp`` names, its
  ``rows`` and its stored ``size`` (known from ``written`` on, before any rename);
- ``transitions``: the transition CSVs' ``final`` and ``temp`` paths (outside the drop);
- ``ledger`` and ``shared_audience``: what the commit inserts; ``result``: the run's JSON.

:func:`settle_pending_exports` runs in every :meth:`~audtools.workspace.Workspace.session`, right
after the database is opened and before the command does anything else: an export whose parts
all reached their final names is rolled forward (its ledger rows are read back from those parts,
which are exactly what was shared); any other is rolled back (its temporary files and any part
already renamed are deleted) and its ``result.json`` says it failed. :func:`commit_export` and
:func:`roll_back` serve the export itself too, so both ends share one commit and one undo.

Every file of the drop is listed, read, renamed and removed through :mod:`audtools.drops`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from audtools import drops
from audtools.drops import Drop, DropUnreachable
from audtools.errors import AudtoolsError, ErrorCode, describe
from audtools.formats import onboarding
from audtools.workspace import database as store
from audtools.workspace import utc_text
from audtools.workspace.runs import now_utc, write_result

if TYPE_CHECKING:
    from audtools.workspace import Workspace

__all__ = [
    "commit_export",
    "export_drop",
    "forget_record",
    "roll_back",
    "save_record",
    "settle_pending_exports",
]

log = logging.getLogger("audtools")


def export_drop(ws: Workspace, record: dict[str, Any] | None = None) -> Drop:
    """The drop of a pending export (its recorded location), or the workspace's export drop: a
    folder, SFTP or S3, with the workspace's ``[sftp]``/``[s3.export]`` settings."""
    return drops.export_drop(ws.config, (record or {}).get("drop"))


def save_record(
    con: duckdb.DuckDBPyConnection, record: dict[str, Any], *, insert: bool = False
) -> None:
    """Insert (``insert=True``) or update the pending record of ``record["run_id"]``."""
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


def forget_record(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Delete the pending record of a settled export."""
    con.execute("DELETE FROM pending_exports WHERE run_id = ?", [run_id])


# -- commit -------------------------------------------------------------------------------------


def commit_export(
    con: duckdb.DuckDBPyConnection,
    record: dict[str, Any],
    drop: Drop,
    finished: dt.datetime,
    new_ids: pa.Table | None = None,
) -> None:
    """The ledger, the new shared audience and the run in one transaction, the record marked
    ``committed`` in it too.

    The ledger gets ``new_ids``, or, when an interrupted export is rolled forward, the IDs read
    back from its parts in ``drop``.
    """
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
        _insert_ledger(con, record, [new_ids] if new_ids is not None else _ids_from_parts(record, drop))
        if shared["created"]:
            con.execute(
                "INSERT INTO shared_audiences VALUES (?, ?, ?, ?)",
                [shared["sid"], shared["name"], started, record["run_id"]],
            )
        con.execute(
            "INSERT INTO runs VALUES (?, 'export', 'succeeded', ?, ?, ?)",
            [
                record["run_id"],
                started,
                finished.replace(tzinfo=None),
                json.dumps(payload, ensure_ascii=False),
            ],
        )
        record["state"] = "committed"
        record["result"] = payload
        save_record(con, record)


def _insert_ledger(
    con: duckdb.DuckDBPyConnection, record: dict[str, Any], blocks: Iterable[pa.Table | pa.Array]
) -> None:
    ledger = record["ledger"]
    for block in blocks:
        table = block if isinstance(block, pa.Table) else pa.table({"id": block})
        con.register("_x_ledger", table)
        con.execute(
            "INSERT INTO export_ledger SELECT ?, ?, id, ? FROM _x_ledger",
            [ledger["sid"], ledger["data_source"], record["run_id"]],
        )
        con.unregister("_x_ledger")


def _ids_from_parts(record: dict[str, Any], drop: Drop) -> Iterator[pa.Array]:
    """The IDs of an export's parts, read back from their final names."""
    for part in record["parts"]:
        with drop.open(part["final"]) as fh:
            yield from onboarding.read_ids(fh, record["ledger"]["sid"])


# -- roll back ----------------------------------------------------------------------------------


def roll_back(
    ws: Workspace,
    con: duckdb.DuckDBPyConnection,
    record: dict[str, Any],
    *,
    also_delete: Iterable[str] = (),
    error: BaseException | None = None,
) -> None:
    """Remove every file of an export that will not be committed, then its pending record.

    Args:
        ws: the workspace (for the drop when the record lacks one, and ``result.json``).
        con: the session's connection.
        record: the pending record.
        also_delete: what the export put in place itself (known to be its own): final names of
            parts in the drop, and transition paths.
        error: what failed the export; None for an interrupted one (``interrupted``).
    """
    run_id = record["run_id"]
    drop = export_drop(ws, record)
    try:
        _remove_files(drop, record, also_delete)
    except DropUnreachable:
        # The record stays: the next command that can reach the drop removes the files.
        log.warning("export %s: its files cannot be removed now; it stays pending", run_id)
        raise
    forget_record(con, run_id)
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


def _remove_files(drop: Drop, record: dict[str, Any], also_delete: Iterable[str]) -> None:
    """Delete an export's temporary files and the parts it renamed, never another file."""
    for part in record.get("parts", []):
        temp, final = drop.stat(part["temp"]), drop.stat(part["final"])
        if temp is not None:
            if final is not None and drop.published_from(part["temp"], part["final"]):
                # Published, but cut short before the temporary name went: both are ours.
                drop.remove(part["final"])
            drop.remove(part["temp"])
        elif final is not None and part.get("size") is not None and final.size == part["size"]:
            # Renamed by this export: sizes are recorded before any rename.
            drop.remove(part["final"])
    for item in record.get("transitions", []):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(item["temp"])
    transitions = {item["final"] for item in record.get("transitions", [])}
    for name in also_delete:
        if name in transitions:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
        else:
            drop.remove(name)
    prefix = f".audtools-{record['run_id']}-"
    for entry in drop.list():
        if entry.name.startswith(prefix):
            drop.remove(entry.name)
    drop.sync()


# -- settling -----------------------------------------------------------------------------------


def settle_pending_exports(
    ws: Workspace, con: duckdb.DuckDBPyConnection, *, writes_export_drop: bool = True
) -> None:
    """Complete or remove every export a crash interrupted (called by every session first).

    An export whose parts all reached their final names is rolled forward: leftover temporary
    names are removed, transitions renamed, the ledger, shared audience and run committed and
    ``result.json`` written. Any other is rolled back: its temporary files and the parts already
    renamed are deleted, its record dropped, and ``result.json`` says it failed
    (``interrupted``).

    An export whose drop cannot be reached stays pending (SPEC §2.2): a command that writes the
    export drop fails; any other goes on, with a warning.

    Args:
        ws: the workspace.
        con: the session's connection.
        writes_export_drop: whether the command writes the export drop (``export``).

    Raises:
        AudtoolsError: ``unsettled_export`` when an interrupted export's files cannot be removed;
            ``drop_unreachable`` when the export drop cannot be reached and
            ``writes_export_drop`` is set.
    """
    rows = con.execute(
        "SELECT run_id, record FROM pending_exports ORDER BY created_at, run_id"
    ).fetchall()
    for run_id, text in rows:
        try:
            record = json.loads(text)
        except (TypeError, ValueError):
            record = {"run_id": run_id, "parts": [], "transitions": []}
        try:
            _settle(ws, con, record)
        except DropUnreachable as exc:
            if writes_export_drop:
                raise
            log.warning(
                "export %s is still pending: %s It is settled by the next command once the drop "
                "can be reached; an export fails until then.", run_id, exc.message
            )


def _settle(ws: Workspace, con: duckdb.DuckDBPyConnection, record: dict[str, Any]) -> None:
    """Complete or remove one interrupted export (see :func:`settle_pending_exports`)."""
    run_id = record["run_id"]
    drop = export_drop(ws, record)
    state = record.get("state")
    if state == "committed":
        log.warning("completing export %s (committed before an interruption)", run_id)
        _finish(ws, con, record)
    elif state == "written" and _parts_final(record, drop):
        log.warning("rolling forward export %s: all its files are in place", run_id)
        try:
            _roll_forward(con, record, drop)
        except DropUnreachable:
            raise  # not a reason to undo: the export stays pending until the drop is back
        except Exception as exc:  # noqa: BLE001 - a part that cannot be read back: undo instead
            log.error("export %s cannot be rolled forward (%s); rolling it back", run_id, exc)
            _settle_back(ws, con, record, exc)
        else:
            _finish(ws, con, record)
    else:
        log.warning("rolling back export %s: interrupted before its files were in place", run_id)
        _settle_back(ws, con, record, None)


def _parts_final(record: dict[str, Any], drop: Drop) -> bool:
    """Whether every part of a written export reached its final name (with its size)."""
    for part in record["parts"]:
        entry = drop.stat(part["final"])
        if entry is None or entry.size != part["size"]:
            return False
    return True


def _roll_forward(con: duckdb.DuckDBPyConnection, record: dict[str, Any], drop: Drop) -> None:
    for part in record["parts"]:
        drop.remove(part["temp"])
    for item in record["transitions"]:
        if os.path.exists(item["temp"]):
            os.replace(item["temp"], item["final"])
    drop.sync()
    commit_export(con, record, drop, now_utc())


def _finish(ws: Workspace, con: duckdb.DuckDBPyConnection, record: dict[str, Any]) -> None:
    """After the commit: ``result.json``, then the pending record goes."""
    write_result(ws, record["run_id"], record["result"])
    forget_record(con, record["run_id"])


def _settle_back(
    ws: Workspace, con: duckdb.DuckDBPyConnection, record: dict[str, Any], error: Exception | None
) -> None:
    try:
        roll_back(ws, con, record, error=error)
    except OSError as exc:
        raise AudtoolsError(
            f"The interrupted export {record.get('run_id')} cannot be undone ({exc}); fix the "
            "export drop's permissions and run any audtools command again.",
            code="unsettled_export",
        ) from None
