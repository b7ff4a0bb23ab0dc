"""Export targeted profiles as a shared audience (SPEC §6): Campaign's *Save audience* activity.

:func:`export_audience` (alias :func:`save_audience`) checks every refusal first, targets the
profiles, derives each one's IDs for the data source (visitor IDs, or its one declared ID:
normalised, hashed or encrypted exactly as the import compares them), keeps only the IDs never
exported to that shared audience through that data source (the ledger), and writes them to the
export drop as AAM onboarding files (:mod:`audtools.formats.onboarding`).

Writing is crash safe: :mod:`audtools.exporting.publish` records a pending export, writes and renames its
files, then commits (DESIGN.md, "Atomic by construction"); :func:`settle_pending_exports`, which
completes or undoes an export a crash interrupted, runs first in every session. Tests replace
:func:`_crash_point` to stop the protocol between any two steps.
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from audtools.columns.chunks import derive_pairs
from audtools.config import DataSource
from audtools.errors import AudtoolsError, RefusedError
from audtools.exporting import publish as pending
from audtools.exporting.publish import settle_pending_exports
from audtools.exporting.targeting import Targeting, validate_condition
from audtools.formats import onboarding
from audtools.formats.catalog import SharedAudience
from audtools.profiles import declared_ids as derived
from audtools.shared_audiences import catalog_entries, find_shared_audience
from audtools.workspace import Workspace, as_workspace, new_run_id, utc_text
from audtools.workspace.database import CHUNK_ROWS, arrow
from audtools.workspace.operators import check_operator
from audtools.workspace.runs import now_utc, run_log, sync_window, write_failure

__all__ = ["ExportResult", "export_audience", "save_audience", "settle_pending_exports"]

log = logging.getLogger("audtools")


def _crash_point(name: str) -> None:
    """Nothing: tests replace it to stop an export between two steps of the protocol.

    :mod:`audtools.exporting.publish` looks it up here at each step, so replacing it here is enough.

    Names, in order: ``after_pending``, ``after_write_part_N``, ``after_write_transitions``,
    ``after_written``, ``after_link_part_N``, ``after_rename_part_N``, ``after_renames``,
    ``after_commit``, ``after_result``.
    """


# -- result -------------------------------------------------------------------------------------


@dataclass
class ExportResult:
    """What an export did: the counts of SPEC §6 and the two transitions.

    ``to_json()`` gives the object ``audtools export --json`` prints; :attr:`outbound_transition`
    (``profile_id, id``) and :attr:`complement_transition` (``profile_id``) are DataFrames.
    """

    run_id: str | None
    shared_audience: SharedAudience
    created: bool
    data_source: str
    profiles_targeted: int
    profiles_exported: int
    profiles_without_id: int
    ids_exported: int
    ids_already_shared: int
    files: list[str]
    available_from: str
    available_to: str
    dry_run: bool
    started_at: str = ""
    finished_at: str = ""
    outbound: pa.Table | None = field(default=None, repr=False)
    complement: pa.Table | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The object ``audtools export --json`` prints (SPEC §6)."""
        return {
            "run_id": self.run_id,
            "shared_audience": {
                "sid": self.shared_audience.sid,
                "name": self.shared_audience.name,
                "created": self.created,
            },
            "data_source": self.data_source,
            "profiles_targeted": self.profiles_targeted,
            "profiles_exported": self.profiles_exported,
            "profiles_without_id": self.profiles_without_id,
            "ids_exported": self.ids_exported,
            "ids_already_shared": self.ids_already_shared,
            "files": list(self.files),
            "available_from": self.available_from,
            "available_to": self.available_to,
            "dry_run": self.dry_run,
        }

    @property
    def outbound_transition(self) -> pd.DataFrame:
        """One row per ID of each exported profile, new or already shared: ``profile_id, id``.

        Raises:
            AudtoolsError: ``transitions_not_kept`` when the export ran with
                ``keep_transitions=False``.
        """
        return self._frame(self.outbound, "outbound")

    @property
    def complement_transition(self) -> pd.DataFrame:
        """The targeted profiles without an ID: ``profile_id``.

        Raises:
            AudtoolsError: ``transitions_not_kept`` when the export ran with
                ``keep_transitions=False``.
        """
        return self._frame(self.complement, "complement")

    @staticmethod
    def _frame(table: pa.Table | None, kind: str) -> pd.DataFrame:
        if table is None:
            raise AudtoolsError(
                f"The {kind} transition was not kept by this export; run it with "
                "keep_transitions=True, or write it with --{kind}-transition.",
                code="transitions_not_kept",
            )
        return table.to_pandas()

    def _repr_html_(self) -> str:
        head = "Dry run of an export" if self.dry_run else f"Export {html.escape(str(self.run_id))}"
        rows = "".join(
            f"<tr><td>{k}</td><td style='text-align:right'>{v:,}</td></tr>"
            for k, v in (
                ("profiles targeted", self.profiles_targeted),
                ("profiles exported", self.profiles_exported),
                ("profiles without ID", self.profiles_without_id),
                ("IDs exported", self.ids_exported),
                ("IDs already shared", self.ids_already_shared),
            )
        )
        files = ", ".join(html.escape(f) for f in self.files) or "none"
        return (
            f"<div><b>{head}</b> to {html.escape(self.shared_audience.display)}"
            f"{' (created)' if self.created else ''} through {html.escape(self.data_source)}"
            f"<table>{rows}</table>files: {files}<br>available from {self.available_from} to "
            f"{self.available_to}</div>"
        )


# -- refusals -----------------------------------------------------------------------------------


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
    outbound_transition: str | os.PathLike[str] | None,
    complement_transition: str | os.PathLike[str] | None,
) -> _Plan:
    """Check every refusal of SPEC §6.1; nothing has been written yet."""
    cfg = ws.config
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
    check_operator(cfg, operator)
    source = cfg.data_source(data_source)
    entries = catalog_entries(ws, con)
    if shared_audience is not None:
        shared = find_shared_audience(ws, con, shared_audience)
        if shared.type != "segment":
            raise RefusedError(
                f"{shared.display} is a {shared.type}, not a segment: only segments can be shared "
                "by an export. Choose a segment or create one with --segment-name.",
                code="not_a_segment",
            )
        created = False
    else:
        name = str(segment_name)
        if not name.strip():
            raise RefusedError("The segment name is empty; give a name.", code="bad_segment_name")
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
        shared = SharedAudience(sid=sid, name=name, type="segment", source="campaign")
        created = True
    if isinstance(where, Targeting):
        where, targeting = None, where
    condition: str | None = None
    if where is not None:
        condition = validate_condition(con, where)
    elif targeting is not None:
        if not isinstance(targeting, Targeting):
            raise RefusedError(
                f"targeting must come from audtools.exporting.targeting (query, union, ...), not "
                f"{type(targeting).__name__}.",
                code="bad_condition",
            )
        condition = validate_condition(con, targeting.condition)
    if (
        isinstance(max_file_bytes, bool)
        or not isinstance(max_file_bytes, int)
        or max_file_bytes < 1
    ):
        raise RefusedError(
            f"--max-file-bytes must be a whole number of bytes, 1 or more (got {max_file_bytes!r}).",
            code="bad_max_file_bytes",
        )
    key = None
    if source.encrypted:
        from audtools.workspace.keys import load_key

        key = load_key(key_env=source.key_env, key_file=source.key_file, base_dir=cfg.root)
    return _Plan(source, shared, created, condition, key)


# -- targeting and IDs --------------------------------------------------------------------------


@dataclass
class _Prepared:
    profiles_targeted: int
    profiles_exported: int
    ids_exported: int
    ids_already_shared: int
    new_ids: pa.Table  # one column "id", in the order the rows are written
    parts: list[onboarding.PartPlan]


def _prepare(
    ws: Workspace, con: duckdb.DuckDBPyConnection, plan: _Plan, max_file_bytes: int
) -> _Prepared:
    """Fill the temporary tables ``_x_targeted``, ``_x_pairs`` and ``_x_new``; count."""
    source, sid = plan.source, plan.shared.sid
    _drop_temporaries(con)
    # profile_id is unique in profiles, and (profile_id, visitor_id) in visitors, whose rows
    # always belong to a profile and hold 38-digit IDs: profiles.load_profiles sees to it.
    # Without a condition the targeted profiles and their IDs are views, not copies.
    if plan.condition:
        con.execute(
            f"CREATE TEMP TABLE _x_targeted AS SELECT profile_id FROM profiles WHERE ({plan.condition}) IS TRUE"
        )
    else:
        con.execute("CREATE TEMP VIEW _x_targeted AS SELECT profile_id FROM profiles")
    if source.reconciliation == "visitor_id":
        semi = "SEMI JOIN _x_targeted t ON v.profile_id = t.profile_id" if plan.condition else ""
        kind = "TABLE" if plan.condition else "VIEW"
        con.execute(
            f"CREATE TEMP {kind} _x_pairs AS SELECT v.profile_id, v.visitor_id AS id FROM visitors v {semi}"
        )
    else:
        derived.refresh(con, ws.config, source)
        semi = "SEMI JOIN _x_targeted t ON d.profile_id = t.profile_id" if plan.condition else ""
        keys = (
            f"SELECT d.profile_id, d.declared_id AS id FROM derived_ids d {semi} "
            "WHERE d.data_source = ? AND d.declared_id IS NOT NULL"
        )
        if not source.encrypted:
            con.execute(f"CREATE TEMP TABLE _x_pairs AS {keys}", [source.id])
        else:
            _encrypt_pairs(con, keys, plan)
    # Each new ID once, even when several profiles share it; when no two profiles share one
    # (recorded when profiles are loaded), the IDs are the pairs' own.
    unique = derived.unique_keys(con, source)
    if unique:
        con.execute("CREATE TEMP VIEW _x_ids AS SELECT id FROM _x_pairs")
    else:
        con.execute("CREATE TEMP TABLE _x_ids AS SELECT DISTINCT id FROM _x_pairs")
    shared_before = con.execute(
        "SELECT count(*) FROM export_ledger WHERE sid = ? AND data_source = ?", [sid, source.id]
    ).fetchall()[0][0]
    if shared_before:
        con.execute(
            "CREATE TEMP TABLE _x_new AS SELECT i.id FROM _x_ids i ANTI JOIN "
            "(SELECT id FROM export_ledger WHERE sid = ? AND data_source = ?) l ON i.id = l.id",
            [sid, source.id],
        )
    else:
        con.execute("CREATE TEMP VIEW _x_new AS SELECT id FROM _x_ids")
    # A profile has one declared ID per data source at most, but may have many visitor IDs.
    exported_sql = (
        "count(*)" if source.reconciliation == "declared_id" else "count(DISTINCT profile_id)"
    )
    targeted, exported, ids_total = con.execute(
        f"SELECT (SELECT count(*) FROM _x_targeted), (SELECT {exported_sql} FROM _x_pairs), "
        "(SELECT count(*) FROM _x_ids)"
    ).fetchall()[0]
    new_ids = arrow(con, "SELECT id FROM _x_new")
    lengths = pc.binary_length(new_ids["id"]).to_numpy() if new_ids.num_rows else np.zeros(0)
    parts = onboarding.plan_parts(lengths, sid, max_file_bytes)
    return _Prepared(
        profiles_targeted=int(targeted),
        profiles_exported=int(exported),
        ids_exported=new_ids.num_rows,
        ids_already_shared=int(ids_total) - new_ids.num_rows,
        new_ids=new_ids,
        parts=parts,
    )


def _drop_temporaries(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the export's temporary tables and views (each name is one or the other)."""
    for name in ("_x_new", "_x_ids", "_x_pairs", "_x_targeted"):
        for kind in ("VIEW", "TABLE"):
            with contextlib.suppress(duckdb.Error):
                con.execute(f"DROP {kind} IF EXISTS {name}")
    with contextlib.suppress(duckdb.Error, KeyError):
        con.unregister("_x_pairs")  # the Arrow pairs of an encrypted data source


def _encrypt_pairs(con: duckdb.DuckDBPyConnection, keys: str, plan: _Plan) -> None:
    """``_x_pairs`` from the cached normalised plaintexts, encrypted with the key read now."""
    from audtools.columns import aes as crypto

    source = plan.source
    assert plan.key is not None and source.iv is not None
    plain = arrow(con, keys, [source.id])
    key, iv = plan.key, source.iv
    # Handed to DuckDB as Arrow (scanned in place) rather than inserted into a table.
    con.register("_x_pairs", derive_pairs(
        plain, "id", lambda v: crypto.encrypt(v, key, iv, source.encoding), "id", CHUNK_ROWS
    ))


def _transition_tables(con: duckdb.DuckDBPyConnection) -> tuple[pa.Table, pa.Table]:
    """Both transitions as Arrow tables (``profile_id, id`` and ``profile_id``)."""
    return arrow(con, _OUTBOUND_SQL), arrow(con, _COMPLEMENT_SQL)


_COMPLEMENT_SQL = (
    "SELECT t.profile_id FROM _x_targeted t ANTI JOIN _x_pairs p ON t.profile_id = p.profile_id "
    "ORDER BY t.profile_id"
)
_OUTBOUND_SQL = "SELECT profile_id, id FROM _x_pairs ORDER BY profile_id, id"


# -- the export ---------------------------------------------------------------------------------


def export_audience(
    workspace: str | os.PathLike[str] | Workspace | None,
    *,
    shared_audience: str | int | None = None,
    segment_name: str | None = None,
    data_source: str,
    where: str | Targeting | None = None,
    targeting: Targeting | None = None,
    outbound_transition: str | os.PathLike[str] | None = None,
    complement_transition: str | os.PathLike[str] | None = None,
    gzip: bool = False,
    max_file_bytes: int = onboarding.DEFAULT_MAX_FILE_BYTES,
    operator: str | None = None,
    dry_run: bool = False,
    progress: bool | None = None,
    run_id: str | None = None,
    keep_transitions: bool = True,
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

    Returns:
        The :class:`ExportResult`.

    Raises:
        RefusedError: ``bad_arguments``, ``not_ims``, ``unknown_operator``,
            ``unknown_data_source``, ``not_a_segment``, ``segment_name_in_use``,
            ``bad_segment_name``, ``bad_condition``, ``bad_max_file_bytes`` (nothing written).
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
            prep = _prepare(ws, con, plan, max_file_bytes)
            window = sync_window(started, None)
            result = ExportResult(
                run_id=None if dry_run else run_id,
                shared_audience=plan.shared,
                created=plan.created,
                data_source=plan.source.id,
                profiles_targeted=prep.profiles_targeted,
                profiles_exported=prep.profiles_exported,
                profiles_without_id=prep.profiles_targeted - prep.profiles_exported,
                ids_exported=prep.ids_exported,
                ids_already_shared=prep.ids_already_shared,
                files=[],
                available_from=window[0],
                available_to=window[1],
                dry_run=dry_run,
                started_at=utc_text(started),
            )
            if keep_transitions:
                result.outbound, result.complement = _transition_tables(con)
            if dry_run:
                result.finished_at = utc_text(now_utc())
                return result
            transitions = [
                (kind, Path(path).resolve(), sql)
                for kind, path, sql in (
                    ("outbound", outbound_transition, _OUTBOUND_SQL),
                    ("complement", complement_transition, _COMPLEMENT_SQL),
                )
                if path is not None
            ]
            try:
                with run_log(ws, run_id):
                    pending.write_export(
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
        finally:
            _drop_temporaries(con)
    log.info(
        "export %s to %s: %d IDs written in %d files, %d already shared",
        run_id,
        plan.shared.display,
        result.ids_exported,
        len(result.files),
        result.ids_already_shared,
    )
    return result


def _record_failure(ws: Workspace, run_id: str, started: Any, plan: Any, exc: Exception) -> None:
    shared = {"sid": plan.shared.sid, "name": plan.shared.name, "created": plan.created}
    write_failure(
        ws, run_id, "export", started, exc, shared_audience=shared, data_source=plan.source.id
    )


save_audience = export_audience
"""Campaign's name for :func:`export_audience` (the *Save audience* activity, shared in the
Experience Cloud)."""
