"""Export targeted profiles as a shared audience (SPEC §6): Campaign's *Save audience* activity.

:func:`export_audience` (alias :func:`save_audience`) checks every refusal first, targets the
profiles, derives each one's IDs for the data source (visitor IDs, or its one declared ID:
normalised, hashed or encrypted exactly as the import compares them), keeps only the IDs never
exported to that shared audience through that data source (the ledger), and writes them to the
export drop as AAM onboarding files (:mod:`audtools.formats.onboarding`).

Crash safety is a small protocol (DESIGN.md, "Atomic by construction"):

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

:func:`settle_pending_exports`, registered in :data:`audtools.store.STARTUP_HOOKS` when this module
is imported, runs first in every session: a pending export whose parts all reached their final
names is rolled forward; any other is rolled back (its temporary files and any part already renamed
are deleted, and a failed ``result.json`` says so). Tests replace :func:`_crash_point` to stop the
protocol between any two steps.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import derived, store
from .auth import check_operator
from .config import DataSource
from .errors import AudtoolsError, RefusedError
from .formats import onboarding
from .formats.catalog import SharedAudience
from .progress import bar
from .runs import now_utc, run_log, sync_window, write_result
from .sharing import catalog_entries, find_shared_audience
from .targeting import Targeting, validate_condition
from .workspace import Workspace, as_workspace, new_run_id, utc_text

__all__ = ["ExportResult", "export_audience", "save_audience", "settle_pending_exports"]

log = logging.getLogger("audtools")

CHUNK_ROWS = 256 * 1024
_RECORD_VERSION = 1


def _crash_point(name: str) -> None:
    """Nothing: tests replace it to stop an export between two steps of the protocol.

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
    source = cfg.data_sources.get(data_source)
    if source is None:
        known = ", ".join(cfg.data_sources) or "none"
        raise RefusedError(
            f"Unknown data source {data_source!r} (configured: {known}); see audtools.toml.",
            code="unknown_data_source",
        )
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
                f"targeting must come from audtools.targeting (query, union, ...), not "
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
        from . import crypto

        key = crypto.load_key(key_env=source.key_env, key_file=source.key_file, base_dir=cfg.root)
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
    if plan.condition:
        con.execute(
            f"CREATE TEMP TABLE _x_targeted AS SELECT profile_id FROM profiles WHERE ({plan.condition}) IS TRUE"
        )
    else:
        con.execute("CREATE TEMP TABLE _x_targeted AS SELECT profile_id FROM profiles")
    if source.reconciliation == "visitor_id":
        semi = "SEMI JOIN _x_targeted t ON v.profile_id = t.profile_id" if plan.condition else ""
        con.execute(
            f"CREATE TEMP TABLE _x_pairs AS SELECT v.profile_id, v.visitor_id AS id FROM visitors v {semi}"
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
    # Each new ID once, even when several profiles share it.
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
    targeted, exported, ids_total = con.execute(
        "SELECT (SELECT count(*) FROM _x_targeted), (SELECT count(DISTINCT profile_id) FROM _x_pairs), "
        "(SELECT count(*) FROM _x_ids)"
    ).fetchall()[0]
    new_ids = _arrow(con, "SELECT id FROM _x_new")
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
    with contextlib.suppress(duckdb.Error):
        con.execute("DROP VIEW IF EXISTS _x_new")
    for table in ("_x_new", "_x_ids", "_x_pairs", "_x_targeted"):
        with contextlib.suppress(duckdb.Error):
            con.execute(f"DROP TABLE IF EXISTS {table}")


def _arrow(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> pa.Table:
    """A query's result as an Arrow table, without the extra copy of a DB-API result."""
    complete = getattr(con, "complete", None)
    if complete is not None:  # DuckDB 2: finish a result left half-read by an earlier execute()
        complete()
    rel = con.sql(sql, params=params or None)
    fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    return fetch()


def _encrypt_pairs(con: duckdb.DuckDBPyConnection, keys: str, plan: _Plan) -> None:
    """``_x_pairs`` from the cached normalised plaintexts, encrypted with the key read now."""
    from . import crypto

    source = plan.source
    assert plan.key is not None and source.iv is not None
    plain = _arrow(con, keys, [source.id])
    con.execute("CREATE TEMP TABLE _x_pairs (profile_id VARCHAR, id VARCHAR)")
    for start in range(0, plain.num_rows, CHUNK_ROWS):
        part = plain.slice(start, CHUNK_ROWS)
        cipher = crypto.encrypt(part["id"].combine_chunks(), plan.key, source.iv, source.encoding)
        con.register("_x_chunk", pa.table({"profile_id": part["profile_id"], "id": cipher}))
        con.execute("INSERT INTO _x_pairs SELECT profile_id, id FROM _x_chunk WHERE id IS NOT NULL")
        con.unregister("_x_chunk")


def _transition_tables(con: duckdb.DuckDBPyConnection) -> tuple[pa.Table, pa.Table]:
    """Both transitions as Arrow tables (``profile_id, id`` and ``profile_id``)."""
    return _arrow(con, _OUTBOUND_SQL), _arrow(con, _COMPLEMENT_SQL)


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
            :func:`audtools.targeting.validate_condition`); all profiles without one.
        targeting: instead of ``where``, a :class:`~audtools.targeting.Targeting`.
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
                (kind, Path(path).resolve())
                for kind, path in (
                    ("outbound", outbound_transition),
                    ("complement", complement_transition),
                )
                if path is not None
            ]
            with run_log(ws, run_id):
                _protocol(ws, con, plan, prep, result, run_id, started, gzip, transitions, progress)
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


save_audience = export_audience
"""Campaign's name for :func:`export_audience` (the *Save audience* activity, shared in the
Experience Cloud)."""


def _protocol(
    ws: Workspace,
    con: duckdb.DuckDBPyConnection,
    plan: _Plan,
    prep: _Prepared,
    result: ExportResult,
    run_id: str,
    started: dt.datetime,
    gzip: bool,
    transitions: list[tuple[str, Path]],
    progress: bool | None,
) -> None:
    """Steps 1 to 4 of the module docstring; ``result`` gets its files and finish time."""
    source, shared = plan.source, plan.shared
    drop = ws.config.export_drop
    drop.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    if prep.parts:
        stamp = onboarding.free_timestamp(
            drop, source.dpid, int(started.timestamp()), len(prep.parts), gzip=gzip
        )
        names = onboarding.part_names(source.dpid, stamp, len(prep.parts), gzip=gzip)
    result.files = list(names)
    record: dict[str, Any] = {
        "version": _RECORD_VERSION,
        "run_id": run_id,
        "state": "planned",
        "drop": str(drop),
        "parts": [
            {"final": name, "temp": onboarding.temp_name(run_id, i), "rows": p.rows, "size": None}
            for i, (name, p) in enumerate(zip(names, prep.parts, strict=True), 1)
        ],
        "transitions": [
            {
                "kind": kind,
                "final": str(path),
                "temp": str(path.with_name(f".audtools-{run_id}-{path.name}.tmp")),
            }
            for kind, path in transitions
        ],
        "ledger": {"sid": shared.sid, "data_source": source.id, "rows": prep.ids_exported},
        "shared_audience": {"sid": shared.sid, "name": shared.name, "created": plan.created},
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
        total = sum(p.nbytes for p in prep.parts)
        with bar(total, "writing onboarding files", progress) as pbar:
            sizes = onboarding.write_parts(
                (b.column(0) for b in prep.new_ids.to_batches(max_chunksize=CHUNK_ROWS)),
                shared.sid,
                prep.parts,
                [drop / p["temp"] for p in record["parts"]],
                gzip=gzip,
                after_part=lambda i: _crash_point(f"after_write_part_{i}"),
                progress=pbar.update,
            )
        for part, size in zip(record["parts"], sizes, strict=True):
            part["size"] = size
        for item in record["transitions"]:
            _write_transition(con, item["kind"], Path(item["temp"]))
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
        _commit(con, record, now_utc(), prep.new_ids)
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


def _write_transition(con: duckdb.DuckDBPyConnection, kind: str, temp: Path) -> None:
    """A transition CSV under its temporary name, fsynced."""
    temp.parent.mkdir(parents=True, exist_ok=True)
    sql = _OUTBOUND_SQL if kind == "outbound" else _COMPLEMENT_SQL
    target = str(temp).replace("'", "''")
    con.execute(f"COPY ({sql}) TO '{target}' (FORMAT CSV, HEADER, DELIMITER ',')")
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
    if isinstance(error, AudtoolsError):
        code, message = error.code, error.message
    elif error is not None:
        code, message = "internal", f"{type(error).__name__}: {error}"
    else:
        code = "interrupted"
        message = (
            "The export was interrupted before all its files were in place; its files were "
            "removed and nothing was shared. Run it again."
        )
    log.error("export %s rolled back: %s", run_id, message)
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
