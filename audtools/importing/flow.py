"""Import a shared audience (SPEC §5): apply the drop's batches, reconcile members, store.

:func:`import_audience` is the whole flow, in named steps:

1. :func:`~audtools.importing.refusals.check_refusals`: every refusal, before anything is written;
2. the derived-ID cache of the data source is made current (committed on its own: a cache);
3. in one transaction: the complete new batches are applied to the segment state
   (:mod:`audtools.importing.state`), the members of the shared audience listed and decrypted
   (:mod:`audtools.importing.members`), reconciled with the profiles
   (:mod:`audtools.importing.reconcile`), and the audience, the run and its rejects stored.

A failure rolls everything back and records a failed run; a dry run rolls back on purpose and
records nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
from typing import Any

import duckdb
from tqdm.auto import tqdm

from audtools.errors import MatchRateLow, describe
from audtools.importing import state as segments
from audtools.importing.cluster import ImportEngine, import_engine
from audtools.importing.cluster_reconcile import reconcile_on_cluster
from audtools.importing.members import member_keys
from audtools.importing.reconcile import Reconciled, reconcile
from audtools.importing.refusals import ImportPlan, check_refusals
from audtools.importing.rejects import Rejects
from audtools.importing.result import ImportResult
from audtools.profiles import declared_ids as derived
from audtools.workspace import Workspace, as_workspace, new_run_id, utc_text
from audtools.workspace.database import uncompressed_writes, unordered_inserts
from audtools.workspace.progress import hide_bars
from audtools.workspace.runs import now_utc, run_log, sync_window, write_failure, write_result

__all__ = ["ImportResult", "MatchRateLow", "import_audience"]

log = logging.getLogger("audtools")


def import_audience(
    workspace: str | os.PathLike[str] | Workspace | None,
    label: str,
    shared_audience: str | int,
    data_source: str,
    *,
    force_reconciliation: bool = False,
    operator: str | None = None,
    dry_run: bool = False,
    min_match_rate: float | None = None,
    progress: bool | None = None,
    keep_members: bool = True,
    run_id: str | None = None,
) -> ImportResult:
    """Import a shared audience into the workspace as the audience ``label``.

    A dry run (SPEC §5 step 9) does everything an import does on a copy of the segment state
    and writes no audience, segment state, batch record, run or file (no ``runs/RUN_ID``
    folder, no ``rejects.csv``): the transaction that applied the batches is rolled back. It
    may refresh internal caches: the data source's derived IDs are rebuilt and kept when the
    profiles or the data source's settings changed since they were last derived.

    Args:
        workspace: the workspace (path or :class:`Workspace`).
        label: the audience's label (case-sensitive); an existing audience of the same shared
            audience and data source has its members replaced.
        shared_audience: a ``sid`` or an exact catalog name.
        data_source: the ID of a configured data source.
        force_reconciliation: reconcile encrypted email/SMS IDs with profiles (an Experience
            Cloud audience) instead of keeping every address (a File audience).
        operator: the operator (default: the workspace's ``default_operator``); must use IMS.
        dry_run: compute everything, write nothing (no run either; see above).
        min_match_rate: raise :class:`MatchRateLow` after recording a run below this rate.
        progress: show progress bars (None: only on a terminal or in a notebook).
        keep_members: keep each member's outcome for :attr:`ImportResult.member_outcomes`.
        run_id: the run ID to use (jobs allocate it); a new one by default.

    Returns:
        The :class:`ImportResult`.

    Raises:
        AudtoolsError: a refusal (nothing written, no run), ``corrupt_gzip`` and other failures
            (nothing applied; a failed run is recorded, except for a dry run), or
            :class:`MatchRateLow`.

    Example:
        >>> r = import_audience("data/demo", "High value", 10603117, "samplesVisitorId")  # doctest: +SKIP
        >>> r.match_rate                                                                  # doctest: +SKIP
    """
    ws = as_workspace(workspace)
    run_id = run_id or new_run_id()
    started = now_utc()
    with ws.session(run_id=run_id, purpose="import") as con:
        plan = check_refusals(ws, con, label, shared_audience, data_source, force_reconciliation, operator)
        logs = contextlib.nullcontext() if dry_run else run_log(ws, run_id)
        with logs:
            try:
                derived.refresh(con, ws.config, plan.source)  # a cache: kept by a dry run too
                with import_engine(con, ws.config, plan.source) as engine:
                    if dry_run:
                        result = _dry_run(ws, con, plan, label, started, progress, keep_members, engine)
                    else:
                        result = _import(
                            ws, con, plan, label, run_id, started, progress, keep_members, engine
                        )
            except Exception as exc:
                if not dry_run:
                    _record_failure(ws, run_id, started, label, plan, exc)
                raise
    if min_match_rate is not None and result.match_rate < min_match_rate:
        raise MatchRateLow(result, min_match_rate)
    return result


def _dry_run(
    ws: Workspace,
    con: duckdb.DuckDBPyConnection,
    plan: ImportPlan,
    label: str,
    started: dt.datetime,
    progress: bool | None,
    keep_members: bool,
    engine: ImportEngine | None,
) -> ImportResult:
    """Steps 2 to 6 inside a transaction that is rolled back (SPEC §5 step 9): the batches are
    applied to a copy of the state and nothing is recorded (no batch, state, audience, run or
    file). Only the derived-ID cache, refreshed before this transaction, is kept: a cache."""
    con.execute("BEGIN TRANSACTION")
    try:
        applied = _apply_batches(ws, con, plan, None, progress, None, engine)
        found = _reconcile(ws, con, plan, engine, audience=False, outcomes=keep_members)
        result = _result(plan, label, None, started, applied, found)
        result.delivered_at = _delivered_at(con, plan.source.id)
    finally:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
    result.finished_at = utc_text(now_utc())
    return result


def _import(
    ws: Workspace,
    con: duckdb.DuckDBPyConnection,
    plan: ImportPlan,
    label: str,
    run_id: str,
    started: dt.datetime,
    progress: bool | None,
    keep_members: bool,
    engine: ImportEngine | None,
) -> ImportResult:
    """Steps 2 to 8 in one transaction: a failure rolls every step back (and removes the
    rejects written so far)."""
    rejects = Rejects(ws.config.max_rejects_kept, ws.run_dir(run_id) / "rejects.csv")
    con.execute("BEGIN TRANSACTION")
    try:
        applied = _apply_batches(ws, con, plan, run_id, progress, rejects, engine)
        found = _reconcile(ws, con, plan, engine, audience=True, outcomes=keep_members)
        result = _result(plan, label, run_id, started, applied, found)
        result.delivered_at = _delivered_at(con, plan.source.id)
        assert found.audience is not None
        _store_audience(con, plan, label, run_id, found.audience)
        result.finished_at = utc_text(now_utc())
        payload = _record_run(con, result, started)
        rejects.publish()
        con.execute("COMMIT")
    except BaseException:
        rejects.discard()
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise
    write_result(ws, run_id, payload)
    log.info("import %s: %d members, %d matched", label, result.members, result.matched)
    return result


def _apply_batches(
    ws: Workspace,
    con: duckdb.DuckDBPyConnection,
    plan: ImportPlan,
    run_id: str | None,
    progress: bool | None,
    rejects: Rejects | None,
    engine: ImportEngine | None,
) -> segments.ApplyResult:
    """Step 2: the complete, new batches of the data source, applied to its segment state (in
    the database, or in the engine's buckets); the first ``max_rejects_kept`` rejects go to
    ``rejects`` as they are read."""
    source = plan.source
    with tqdm(desc=f"reading batches of {source.id}", unit="B", unit_scale=True, leave=False,
              disable=hide_bars(progress)) as pbar:
        applied = segments.apply_ready(
            con, ws.config, source, run_id=run_id, progress=pbar.update, rejects=rejects,
            store=engine.state if engine else None,
        )
    log.info(
        "%s: %d batches applied, %d rows read, %d rejected, %d waiting",
        source.id,
        len(applied.batches_applied),
        applied.rows_read,
        applied.rows_rejected,
        applied.batches_waiting,
    )
    return applied


def _delivered_at(con: duckdb.DuckDBPyConnection, source_id: str) -> str | None:
    """The UTC time of the newest applied batch's AAM timestamp (this run's, or an earlier
    run's when this one applied none): when the data the audience reflects was delivered."""
    row = con.execute(
        "SELECT max(timestamp_ms) FROM batches WHERE data_source = ?", [source_id]
    ).fetchone()
    if not row or row[0] is None:
        return None
    return utc_text(dt.datetime.fromtimestamp(row[0] / 1000, dt.UTC))


def _reconcile(
    ws: Workspace,
    con: duckdb.DuckDBPyConnection,
    plan: ImportPlan,
    engine: ImportEngine | None,
    *,
    audience: bool,
    outcomes: bool,
) -> Reconciled:
    """Steps 3 to 6: the members, their keys, and their reconciliation with the profiles (on
    the cluster, bucket by bucket, when ``engine`` is one)."""
    if engine is not None:
        return reconcile_on_cluster(
            con, engine, plan, ws.config.default_region, audience=audience, outcomes=outcomes
        )
    members = member_keys(
        con, plan.source, plan.shared.sid, key=plan.key, region=ws.config.default_region
    )
    return reconcile(
        con,
        plan.source,
        members,
        file_audience=plan.file_audience,
        audience=audience,
        outcomes=outcomes,
    )


def _result(
    plan: ImportPlan,
    label: str,
    run_id: str | None,
    started: dt.datetime,
    applied: segments.ApplyResult,
    found: Reconciled,
) -> ImportResult:
    window = sync_window(started, plan.shared.source)
    return ImportResult(
        run_id=run_id,
        label=label,
        audience_type=plan.audience_type,
        shared_audience=plan.shared,
        data_source=plan.source.id,
        rows_read=applied.rows_read,
        rows_rejected=applied.rows_rejected,
        rejects_kept=applied.rejects_kept,
        batches_applied=len(applied.batches_applied),
        batches_waiting=applied.batches_waiting,
        batches_skipped=applied.batches_skipped,
        available_from=window[0],
        available_to=window[1],
        dry_run=run_id is None,
        started_at=utc_text(started),
        outcomes=found.outcomes,
        members=found.members,
        undecryptable=found.undecryptable,
        matched=found.matched,
        profiles=found.profiles,
        addresses=found.addresses,
    )


def _store_audience(
    con: duckdb.DuckDBPyConnection, plan: ImportPlan, label: str, run_id: str, members: str
) -> None:
    """Step 7: create the audience ``label`` or replace its members (its type may change) by
    the rows of the table ``members``."""
    now = now_utc().replace(tzinfo=None)
    row = con.execute("SELECT created_at FROM audiences WHERE label = ?", [label]).fetchone()
    created = row[0] if row else now
    con.execute("DELETE FROM audiences WHERE label = ?", [label])
    con.execute("DELETE FROM audience_members WHERE label = ?", [label])
    con.execute(
        "INSERT INTO audiences VALUES (?, ?, ?, ?, ?, ?, ?)",
        [label, plan.audience_type, plan.shared.sid, plan.source.id, created, now, run_id],
    )
    if plan.source.reconciliation != "visitor_id":
        uncompressed_writes(con)  # as the segment state of text IDs (see uncompressed_writes)
    with unordered_inserts(con):
        con.execute(
            f"INSERT INTO audience_members SELECT ?, profile_id, address FROM {members}", [label]
        )


def _record_run(
    con: duckdb.DuckDBPyConnection, result: ImportResult, started: dt.datetime
) -> dict[str, Any]:
    """Step 8: the run's row in ``runs``; returns its record (``result.json``)."""
    payload = {**result.to_json(), "kind": "import", "status": "succeeded",
               "started_at": result.started_at, "finished_at": result.finished_at}
    con.execute(
        "INSERT INTO runs VALUES (?, 'import', 'succeeded', ?, ?, ?)",
        [result.run_id, started.replace(tzinfo=None), now_utc().replace(tzinfo=None),
         json.dumps(payload, ensure_ascii=False)],
    )
    return payload


def _record_failure(
    ws: Workspace, run_id: str, started: dt.datetime, label: str, plan: ImportPlan, exc: Exception
) -> None:
    log.info("import failed: %s", describe(exc)[1])  # the CLI prints the error itself, once
    write_failure(
        ws,
        run_id,
        "import",
        started,
        exc,
        audience={
            "label": label,
            "type": plan.audience_type,
            "shared_audience": {"sid": plan.shared.sid, "name": plan.shared.name},
            "data_source": plan.source.id,
        },
    )
