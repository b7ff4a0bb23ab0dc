"""Export targeted profiles as a shared audience (SPEC §6): Campaign's *Save audience* activity.

:func:`export_audience` (alias :func:`save_audience`) runs in named steps, each in its module:

1. :func:`_refusals`: every refusal of SPEC §6.1, before anything is written;
2. :func:`audtools.exporting.pairs.prepare`: the targeted profiles
   (:mod:`audtools.exporting.targeting` checks the condition), each one's IDs for the data source
   (visitor IDs, or its one declared ID: normalised, hashed or encrypted exactly as the import
   compares them), and the IDs never exported to that shared audience through that data source;
3. :func:`audtools.exporting.publish.write_export`: the crash-safe protocol that writes them to
   the export drop as AAM onboarding files and commits the ledger, the shared audience and the
   run (DESIGN.md, "Atomic by construction"). An export a crash interrupted is settled by the
   next session (:mod:`audtools.workspace.recovery`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from audtools.config import DataSource
from audtools.errors import RefusedError
from audtools.exporting import publish
from audtools.exporting.condition import validate_condition
from audtools.exporting.pairs import (
    Prepared,
    drop_temporaries,
    prepare,
    transition_tables,
)
from audtools.exporting.result import ExportResult
from audtools.exporting.targeting import Targeting
from audtools.exporting.transitions import check_transition_path, transition_sql
from audtools.formats import onboarding
from audtools.formats.catalog import MAX_LABEL_CHARS, SharedAudience
from audtools.shared_audiences import catalog_entries, find_shared_audience
from audtools.workspace import Workspace, as_workspace, new_run_id, utc_text
from audtools.workspace.operators import check_operator
from audtools.workspace.runs import now_utc, run_log, sync_window, write_failure

__all__ = ["ExportResult", "export_audience", "save_audience"]

log = logging.getLogger("audtools")

PathLike = str | os.PathLike[str]


# -- 1. refusals --------------------------------------------------------------------------------


@dataclass
class _Plan:
    source: DataSource
    shared: SharedAudience
    created: bool
    condition: str | None
    key: bytes | None


def _refusals(
    ws: Workspace,
    con: duckdb.DuckDBPyConnection,
    *,
    shared_audience: str | int | None,
    segment_name: str | None,
    data_source: str,
    where: str | Targeting | None,
    targeting: Targeting | None,
    max_file_bytes: int,
    operator: str | None,
    outbound_transition: PathLike | None,
    complement_transition: PathLike | None,
) -> _Plan:
    """Check every refusal of SPEC §6.1, in the order of the checks; nothing is written yet."""
    cfg = ws.config
    _check_arguments(
        shared_audience, segment_name, where, targeting, outbound_transition, complement_transition
    )
    check_operator(cfg, operator)
    source = cfg.data_source(data_source)
    shared, created = _shared_audience(ws, con, shared_audience, segment_name)
    condition = _condition(con, where, targeting)
    if (
        isinstance(max_file_bytes, bool)
        or not isinstance(max_file_bytes, int)
        or not 1 <= max_file_bytes <= onboarding.MAX_FILE_BYTES
    ):
        raise RefusedError(
            "--max-file-bytes must be a whole number of bytes, from 1 to "
            f"{onboarding.MAX_FILE_BYTES} (AAM's limit) (got {max_file_bytes!r}).",
            code="bad_max_file_bytes",
        )
    key = None
    if source.encrypted:
        from audtools.workspace.keys import load_key

        key = load_key(key_env=source.key_env, key_file=source.key_file, base_dir=cfg.root)
    return _Plan(source, shared, created, condition, key)


def _check_arguments(
    shared_audience: str | int | None,
    segment_name: str | None,
    where: str | Targeting | None,
    targeting: Targeting | None,
    outbound_transition: PathLike | None,
    complement_transition: PathLike | None,
) -> None:
    """The arguments that exclude each other."""
    if (shared_audience is None) == (segment_name is None):
        raise RefusedError(
            "Give either a shared audience (--shared-audience) or a new segment name "
            "(--segment-name), not both or neither.",
            code="bad_arguments",
        )
    if (
        outbound_transition is not None
        and complement_transition is not None
        and Path(outbound_transition).resolve() == Path(complement_transition).resolve()
    ):
        raise RefusedError(
            "The outbound and complement transitions name the same file; give two paths.",
            code="bad_arguments",
        )
    if where is not None and targeting is not None:
        raise RefusedError(
            "Give either a condition or a targeting, not both.", code="bad_arguments"
        )


def _shared_audience(
    ws: Workspace,
    con: duckdb.DuckDBPyConnection,
    shared_audience: str | int | None,
    segment_name: str | None,
) -> tuple[SharedAudience, bool]:
    """The segment exported to, and whether this export creates it."""
    entries = catalog_entries(ws, con)
    if shared_audience is not None:
        shared = find_shared_audience(ws, con, shared_audience)
        if shared.type != "segment":
            raise RefusedError(
                f"{shared.display} is a {shared.type}, not a segment: only segments can be shared "
                "by an export. Choose a segment or create one with --segment-name.",
                code="not_a_segment",
            )
        return shared, False
    name = str(segment_name)
    if not name.strip():
        raise RefusedError("The segment name is empty; give a name.", code="bad_segment_name")
    if len(name) > MAX_LABEL_CHARS:
        # Not quoted: a name this long is pasted text, which may hold anything.
        raise RefusedError(
            f"The segment name has {len(name):,} characters; a segment name has at most "
            f"{MAX_LABEL_CHARS}. Give a shorter name.",
            code="bad_segment_name",
        )
    if name.isascii() and name.isdigit():
        raise RefusedError(
            f"The segment name {name!r} is only digits, which would be read as a sid; "
            "choose a name with letters.",
            code="bad_segment_name",
        )
    same = [e for e in entries if e.name == name]
    if same:
        sids = ", ".join(str(e.sid) for e in same)
        raise RefusedError(
            f"The segment name {name!r} is already in the catalog (sid {sids}); export to it "
            "with --shared-audience or choose another name.",
            code="segment_name_in_use",
        )
    sid = max((e.sid for e in entries), default=0) + 1
    return SharedAudience(sid=sid, name=name, type="segment", source="campaign"), True


def _condition(
    con: duckdb.DuckDBPyConnection, where: str | Targeting | None, targeting: Targeting | None
) -> str | None:
    """The checked condition of ``where`` or ``targeting``; None targets every profile."""
    if isinstance(where, Targeting):
        where, targeting = None, where
    if where is not None:
        return validate_condition(con, where)
    if targeting is not None:
        if not isinstance(targeting, Targeting):
            raise RefusedError(
                f"targeting must come from audtools.exporting.targeting (query, union, ...), not "
                f"{type(targeting).__name__}.",
                code="bad_condition",
            )
        return validate_condition(con, targeting.condition)
    return None


# -- the export ---------------------------------------------------------------------------------


def export_audience(
    workspace: str | os.PathLike[str] | Workspace | None,
    *,
    shared_audience: str | int | None = None,
    segment_name: str | None = None,
    data_source: str,
    where: str | Targeting | None = None,
    targeting: Targeting | None = None,
    outbound_transition: PathLike | None = None,
    complement_transition: PathLike | None = None,
    gzip: bool = False,
    max_file_bytes: int = onboarding.DEFAULT_MAX_FILE_BYTES,
    operator: str | None = None,
    dry_run: bool = False,
    progress: bool | None = None,
    run_id: str | None = None,
    keep_transitions: bool = True,
    overwrite: bool = False,
    raw_csv: bool = False,
) -> ExportResult:
    """Share targeted profiles as a segment: write their new IDs to the export drop (SPEC §6).

    Args:
        workspace: the workspace (path or :class:`~audtools.workspace.Workspace`).
        shared_audience: an existing segment, by sid or exact name: only IDs never exported to it
            through ``data_source`` are written.
        segment_name: instead, the name of a new shared audience (sid = largest known sid + 1).
        data_source: the ID of a configured data source.
        where: a condition over the profile columns (see
            :func:`audtools.exporting.targeting.validate_condition`); all profiles without one.
        targeting: instead of ``where``, a :class:`~audtools.exporting.targeting.Targeting`.
        outbound_transition: a CSV to write with ``profile_id,id`` for every ID of each exported
            profile, new or already shared.
        complement_transition: a CSV to write with ``profile_id`` of the targeted profiles
            without an ID.
        gzip: write ``.sync.gz`` files.
        max_file_bytes: split files above this many uncompressed bytes (default 1 GB).
        operator: the operator (default: the workspace's ``default_operator``); must use IMS.
        dry_run: count, write nothing (no file, no ledger, no run).
        progress: show a progress bar (None: only on a terminal or in a notebook).
        run_id: the run ID to use (jobs allocate it); a new one by default.
        keep_transitions: keep both transitions as Arrow tables on the result (DataFrames on
            access); the CLI turns this off.
        overwrite: replace a transition CSV that exists (refused otherwise).
        raw_csv: write the transitions' ``profile_id`` as it is, even when a spreadsheet would
            read it as a formula (for machine consumers); ``id`` is never changed.

    Returns:
        The :class:`ExportResult`.

    Raises:
        RefusedError: ``bad_arguments``, ``not_ims``, ``unknown_operator``,
            ``unknown_data_source``, ``not_a_segment``, ``segment_name_in_use``,
            ``bad_segment_name``, ``bad_condition``, ``bad_max_file_bytes``, ``bad_output`` (a
            transition path that exists or names a file of the workspace; nothing written).
        AudtoolsError: ``unknown_shared_audience``; :class:`~audtools.errors.KeyProblem`
            (``missing_key``, ``bad_key``); a failure while writing (everything written is
            removed and a failed run recorded).

    Example:
        >>> r = export_audience("ws", segment_name="Adults", data_source="defaultDataSource",
        ...                     where="age >= 18")                       # doctest: +SKIP
        >>> r.files                                                       # doctest: +SKIP
        ['ftp_dpm_14016_1764359400.sync']
    """
    ws = as_workspace(workspace)
    paths = {
        kind: check_transition_path(ws, path, overwrite=overwrite)
        for kind, path in (("outbound", outbound_transition), ("complement", complement_transition))
        if path is not None
    }
    run_id = run_id or new_run_id()
    started = now_utc()
    with ws.session(run_id=run_id, purpose="export") as con:
        plan = _refusals(
            ws,
            con,
            shared_audience=shared_audience,
            segment_name=segment_name,
            data_source=data_source,
            where=where,
            targeting=targeting,
            max_file_bytes=max_file_bytes,
            operator=operator,
            outbound_transition=outbound_transition,
            complement_transition=complement_transition,
        )
        try:
            prep = prepare(
                ws, con, plan.source, plan.shared.sid, plan.condition, plan.key, max_file_bytes
            )
            result = _result(plan, prep, run_id, started, dry_run)
            if keep_transitions:
                result.outbound, result.complement = transition_tables(con)
            if dry_run:
                result.finished_at = utc_text(now_utc())
                return result
            transitions = [
                (kind, path, transition_sql(kind, raw_csv=raw_csv)) for kind, path in paths.items()
            ]
            _publish(ws, con, result, plan, prep, run_id, started, transitions, gzip, progress)
        finally:
            drop_temporaries(con)
    log.info(
        "export %s to %s: %d IDs written in %d files, %d already shared",
        run_id,
        plan.shared.display,
        result.ids_exported,
        len(result.files),
        result.ids_already_shared,
    )
    return result


def _result(
    plan: _Plan, prep: Prepared, run_id: str, started: Any, dry_run: bool
) -> ExportResult:
    """The export's result before anything is written (no files, no finish time yet)."""
    available_from, available_to = sync_window(started, None)
    return ExportResult(
        run_id=None if dry_run else run_id,
        shared_audience=plan.shared,
        created=plan.created,
        data_source=plan.source.id,
        profiles_targeted=prep.profiles_targeted,
        profiles_exported=prep.profiles_exported,
        profiles_without_id=prep.profiles_targeted - prep.profiles_exported,
        ids_exported=prep.ids_exported,
        ids_already_shared=prep.ids_already_shared,
        ids_too_long=prep.ids_too_long,
        files=[],
        available_from=available_from,
        available_to=available_to,
        dry_run=dry_run,
        started_at=utc_text(started),
    )


def _publish(
    ws: Workspace,
    con: duckdb.DuckDBPyConnection,
    result: ExportResult,
    plan: _Plan,
    prep: Prepared,
    run_id: str,
    started: Any,
    transitions: list[tuple[str, Path, str]],
    gzip: bool,
    progress: bool | None,
) -> None:
    """Run the crash-safe protocol, its log in the run's folder."""
    try:
        with run_log(ws, run_id):
            publish.write_export(
                ws,
                con,
                result,
                run_id=run_id,
                started=started,
                source=plan.source,
                parts=prep.parts,
                new_ids=prep.new_ids,
                transitions=transitions,
                gzip=gzip,
                progress=progress,
            )
    except Exception as exc:
        # A failure before the protocol could record its own outcome still leaves a
        # failed run, never a run folder without result.json.
        if not (ws.run_dir(run_id) / "result.json").exists():
            _record_failure(ws, run_id, started, plan, exc)
        raise


def _record_failure(ws: Workspace, run_id: str, started: Any, plan: Any, exc: Exception) -> None:
    shared = {"sid": plan.shared.sid, "name": plan.shared.name, "created": plan.created}
    write_failure(
        ws, run_id, "export", started, exc, shared_audience=shared, data_source=plan.source.id
    )


save_audience = export_audience
"""Campaign's name for :func:`export_audience` (the *Save audience* activity, shared in the
Experience Cloud)."""
