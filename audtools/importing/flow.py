"""Import a shared audience (SPEC §5): apply the drop's batches, reconcile members, store.

:func:`import_audience` is the whole flow. Every refusal is checked before anything is written.
Then, in one transaction, the complete new batches of the data source are applied to its segment
state, the members of the shared audience are listed, decrypted when the data source is
encrypted, reconciled with the profiles, and the audience and the run are stored. A failure rolls
everything back; a dry run rolls back on purpose.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from audtools.columns import aes as crypto
from audtools.columns import identifiers as ids
from audtools.columns.chunks import map_chunks
from audtools.config import DataSource
from audtools.errors import AudtoolsError, RefusedError, describe
from audtools.formats.catalog import SharedAudience
from audtools.importing import state as segments
from audtools.profiles import declared_ids as derived
from audtools.shared_audiences import find_shared_audience
from audtools.workspace import Workspace, as_workspace, new_run_id, utc_text
from audtools.workspace.database import CHUNK_ROWS, arrow, sql_string, uncompressed_writes
from audtools.workspace.keys import load_key
from audtools.workspace.operators import check_operator
from audtools.workspace.progress import bar
from audtools.workspace.runs import now_utc, run_log, sync_window, write_failure, write_result

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("audtools")

AudienceType = str  # "experience_cloud" or "file"


class MatchRateLow(AudtoolsError):
    """The import was recorded, but its match rate is below ``--min-match-rate``."""

    code = "match_rate_low"

    def __init__(self, result: ImportResult, minimum: float) -> None:
        self.result = result
        if result.dry_run:
            message = (
                f"The dry run's match rate is {result.match_rate:.4f}, below the minimum "
                f"{minimum:g}; nothing was written. Look at the unmatched reasons."
            )
        else:
            message = (
                f"The match rate of run {result.run_id} is {result.match_rate:.4f}, below the "
                f"minimum {minimum:g}; the run and the audience were recorded. Look at the "
                "unmatched reasons."
            )
        super().__init__(message)


@dataclass
class ImportResult:
    """What an import did: the counts of SPEC §5, the funnel and the members' outcomes.

    ``to_json()`` gives the object ``audtools import --json`` prints; ``funnel`` and
    ``member_outcomes`` are DataFrames for notebooks.
    """

    run_id: str | None
    label: str
    audience_type: str
    shared_audience: SharedAudience
    data_source: str
    rows_read: int
    rows_rejected: int
    members: int
    undecryptable: int
    matched: int
    profiles: int
    addresses: int
    batches_applied: int
    batches_waiting: int
    batches_skipped: list[dict[str, str]]
    available_from: str
    available_to: str
    dry_run: bool
    started_at: str = ""
    finished_at: str = ""
    outcomes: pa.Table | None = field(default=None, repr=False)

    @property
    def unmatched(self) -> int:
        """Members that are neither undecryptable nor matched."""
        return self.members - self.undecryptable - self.matched

    @property
    def match_rate(self) -> float:
        """``matched / members``, 0 without members."""
        return self.matched / self.members if self.members else 0.0

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object of SPEC §5, keys in the documented order."""
        return {
            "run_id": self.run_id,
            "audience": {
                "label": self.label,
                "type": self.audience_type,
                "shared_audience": {"sid": self.shared_audience.sid, "name": self.shared_audience.name},
                "data_source": self.data_source,
            },
            "rows_read": self.rows_read,
            "rows_rejected": self.rows_rejected,
            "members": self.members,
            "undecryptable": self.undecryptable,
            "matched": self.matched,
            "unmatched": self.unmatched,
            "profiles": self.profiles,
            "addresses": self.addresses,
            "match_rate": self.match_rate,
            "unmatched_reasons": {"undecryptable": self.undecryptable, "no_profile": self.unmatched},
            "batches_applied": self.batches_applied,
            "batches_waiting": self.batches_waiting,
            "batches_skipped": self.batches_skipped,
            "available_from": self.available_from,
            "available_to": self.available_to,
            "dry_run": self.dry_run,
        }

    @property
    def funnel(self) -> pd.DataFrame:
        """Members → decrypted → matched → profiles (or addresses), with the batch rows beside.

        Columns: ``stage``, ``count`` and ``share`` (of the members).
        """
        stages: list[tuple[str, int]] = [
            ("batch rows read", self.rows_read),
            ("batch rows rejected", self.rows_rejected),
            ("members", self.members),
            ("decrypted", self.members - self.undecryptable),
            ("matched", self.matched),
        ]
        if self.audience_type == "file":
            stages.append(("addresses", self.addresses))
        else:
            stages.append(("profiles", self.profiles))
        import pandas as pd  # imported here: the CLI never builds a DataFrame

        frame = pd.DataFrame(stages, columns=["stage", "count"])
        frame["share"] = [
            (count / self.members if self.members else 0.0) if i >= 2 else float("nan")
            for i, (_, count) in enumerate(stages)
        ]
        return frame

    @property
    def member_outcomes(self) -> pd.DataFrame:
        """One row per member: ``id`` and ``outcome`` (``matched``, ``no_profile`` or
        ``undecryptable``). Empty when the import was run with ``keep_members=False``."""
        import pandas as pd

        if self.outcomes is None:
            return pd.DataFrame({"id": pd.Series(dtype=str), "outcome": pd.Series(dtype=str)})
        return self.outcomes.to_pandas()

    def _repr_html_(self) -> str:
        import pandas as pd

        kind = "File" if self.audience_type == "file" else "Experience Cloud"
        rows = "".join(
            f"<tr><td>{html.escape(str(s))}</td><td style='text-align:right'>{c:,}</td>"
            f"<td style='text-align:right'>{'' if pd.isna(p) else f'{p:.1%}'}</td></tr>"
            for s, c, p in self.funnel.itertuples(index=False)
        )
        title = "Dry run of " if self.dry_run else ""
        return (
            f"<div><b>{title}{html.escape(self.label)}</b> — {kind} audience of "
            f"{html.escape(self.shared_audience.display)} through {html.escape(self.data_source)}"
            f"<br>match rate <b>{self.match_rate:.1%}</b>; available from {self.available_from} "
            f"to {self.available_to}; batches applied {self.batches_applied}, waiting "
            f"{self.batches_waiting}, skipped {len(self.batches_skipped)}"
            f"<table><tr><th>stage</th><th>count</th><th>share of members</th></tr>{rows}</table></div>"
        )


@dataclass
class _Plan:
    source: DataSource
    shared: SharedAudience
    key: bytes | None
    file_audience: bool


def _refusals(
    ws: Workspace,
    con: duckdb.DuckDBPyConnection,
    label: str,
    shared_audience: str | int,
    data_source: str,
    force_reconciliation: bool,
    operator: str | None,
) -> _Plan:
    """Check every refusal of SPEC §5.1; nothing has been written yet."""
    cfg = ws.config
    check_operator(cfg, operator)
    source = cfg.data_source(data_source)
    shared = find_shared_audience(ws, con, shared_audience)
    if shared.type != "segment":
        raise RefusedError(
            f"{shared.display} is a {shared.type}, not a segment: only segments can be imported.",
            code="not_a_segment",
        )
    if force_reconciliation and not source.encrypted:
        raise RefusedError(
            f"--force-reconciliation only applies to encrypted data sources; {source.id} is not "
            "encrypted. Run without it.",
            code="not_encrypted",
        )
    if not label or not label.strip():
        raise RefusedError("The audience label is empty; give a label.", code="bad_label")
    row = con.execute(
        "SELECT sid, data_source FROM audiences WHERE label = ?", [label]
    ).fetchone()
    if row is not None and (int(row[0]) != shared.sid or row[1] != source.id):
        raise RefusedError(
            f"The label {label!r} is held by the audience of shared audience {row[0]} through "
            f"{row[1]}; choose another label.",
            code="label_in_use",
        )
    key = None
    if source.encrypted:
        key = load_key(key_env=source.key_env, key_file=source.key_file, base_dir=cfg.root)
    file_audience = source.encrypted and source.channel in ("email", "sms") and not force_reconciliation
    return _Plan(source, shared, key, file_audience)


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

    Args:
        workspace: the workspace (path or :class:`Workspace`).
        label: the audience's label (case-sensitive); an existing audience of the same shared
            audience and data source has its members replaced.
        shared_audience: a ``sid`` or an exact catalog name.
        data_source: the ID of a configured data source.
        force_reconciliation: reconcile encrypted email/SMS IDs with profiles (an Experience
            Cloud audience) instead of keeping every address (a File audience).
        operator: the operator (default: the workspace's ``default_operator``); must use IMS.
        dry_run: compute everything, write nothing (no run either).
        min_match_rate: raise :class:`MatchRateLow` after recording a run below this rate.
        progress: show progress bars (None: only on a terminal or in a notebook).
        keep_members: keep each member's outcome for :attr:`ImportResult.member_outcomes`.
        run_id: the run ID to use (jobs allocate it); a new one by default.

    Returns:
        The :class:`ImportResult`.

    Raises:
        AudtoolsError: a refusal (nothing written, no run), ``corrupt_gzip`` and other failures
            (nothing applied; a failed run is recorded), or :class:`MatchRateLow`.

    Example:
        >>> r = import_audience("data/demo", "High value", 10603117, "samplesVisitorId")  # doctest: +SKIP
        >>> r.match_rate                                                                  # doctest: +SKIP
    """
    ws = as_workspace(workspace)
    run_id = run_id or new_run_id()
    started = now_utc()
    with ws.session(run_id=run_id, purpose="import") as con:
        plan = _refusals(ws, con, label, shared_audience, data_source, force_reconciliation, operator)
        logs = contextlib.nullcontext() if dry_run else run_log(ws, run_id)
        with logs:
            try:
                result = _import(ws, con, plan, label, run_id, started, dry_run, progress, keep_members)
            except Exception as exc:
                if not dry_run:
                    _record_failure(ws, run_id, started, label, plan, exc)
                raise
    if min_match_rate is not None and result.match_rate < min_match_rate:
        raise MatchRateLow(result, min_match_rate)
    return result


def _record_failure(
    ws: Workspace, run_id: str, started: dt.datetime, label: str, plan: _Plan, exc: Exception
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
            "type": "file" if plan.file_audience else "experience_cloud",
            "shared_audience": {"sid": plan.shared.sid, "name": plan.shared.name},
            "data_source": plan.source.id,
        },
    )


def _import(
    ws: Workspace,
    con: duckdb.DuckDBPyConnection,
    plan: _Plan,
    label: str,
    run_id: str,
    started: dt.datetime,
    dry_run: bool,
    progress: bool | None,
    keep_members: bool,
) -> ImportResult:
    cfg = ws.config
    source, shared = plan.source, plan.shared
    derived.refresh(con, cfg, source)
    recorded = None if dry_run else run_id
    rejects_path = ws.run_dir(run_id) / "rejects.csv"
    con.execute("BEGIN TRANSACTION")
    try:
        with bar(None, f"reading batches of {source.id}", progress) as pbar:
            applied = segments.apply_ready(con, cfg, source, run_id=recorded, progress=pbar.update)
        log.info(
            "%s: %d batches applied, %d rows read, %d rejected, %d waiting",
            source.id,
            len(applied.batches_applied),
            applied.rows_read,
            applied.rows_rejected,
            applied.batches_waiting,
        )
        unique = _member_keys(con, cfg.default_region, plan, shared.sid)
        counts = _reconcile(con, plan, outcomes=keep_members, store=not dry_run, keys_unique=unique)
        outcomes = None
        if keep_members:
            outcomes = arrow(con, "SELECT id, outcome FROM _outcomes ORDER BY id")
        window = sync_window(started, shared.source)
        result = ImportResult(
            run_id=recorded,
            label=label,
            audience_type="file" if plan.file_audience else "experience_cloud",
            shared_audience=shared,
            data_source=source.id,
            rows_read=applied.rows_read,
            rows_rejected=applied.rows_rejected,
            batches_applied=len(applied.batches_applied),
            batches_waiting=applied.batches_waiting,
            batches_skipped=applied.batches_skipped,
            available_from=window[0],
            available_to=window[1],
            dry_run=dry_run,
            started_at=utc_text(started),
            outcomes=outcomes,
            members=counts["members"],
            undecryptable=counts["undecryptable"],
            matched=counts["matched"],
            profiles=counts["profiles"],
            addresses=counts["addresses"],
        )
        if dry_run:
            con.execute("ROLLBACK")
            result.finished_at = utc_text(now_utc())
            return result
        _store_audience(con, plan, label, run_id)
        result.finished_at = utc_text(now_utc())
        payload = {**result.to_json(), "kind": "import", "status": "succeeded",
                   "started_at": result.started_at, "finished_at": result.finished_at}
        con.execute(
            "INSERT INTO runs VALUES (?, 'import', 'succeeded', ?, ?, ?)",
            [run_id, started.replace(tzinfo=None), now_utc().replace(tzinfo=None),
             _json(payload)],
        )
        _write_rejects(con, applied.rejects_table(), rejects_path)
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise
    write_result(ws, run_id, payload)
    log.info("import %s: %d members, %d matched", label, result.members, result.matched)
    return result


def _json(data: dict[str, Any]) -> str:
    import json

    return json.dumps(data, ensure_ascii=False)


def _member_keys(
    con: duckdb.DuckDBPyConnection, region: str, plan: _Plan, sid: int
) -> bool:
    """Make ``_mkeys(id, k)``: each member and the key it is reconciled by (NULL when it
    cannot be decrypted).

    The state holds each (data source, ID, segment) once, so the members need no DISTINCT.
    Unencrypted members are their own keys: ``_mkeys`` is then a temporary view on the state
    (copying every ID twice into a table cost more than the few scans of the state that read
    it). Encrypted members are decrypted chunk by chunk and their keys handed to DuckDB as one
    Arrow table (a scan of it costs less than an insert).

    Returns:
        Whether no two members share a key (then the counts need no DISTINCT on keys).
    """
    source = plan.source
    _drop_member_keys(con)
    if not source.encrypted:
        con.execute(
            "CREATE TEMP VIEW _mkeys AS SELECT id, id AS k FROM segment_state "
            f"WHERE data_source = {sql_string(source.id)} AND sid = {int(sid)}"
        )
        return True
    assert plan.key is not None and source.iv is not None
    members = arrow(
        con,
        "SELECT id FROM segment_state WHERE data_source = ? AND sid = ?",
        [source.id, sid],
    )
    kind = derived.kind_of(source)
    key, iv = plan.key, source.iv

    def keys_of(part: pa.Array) -> tuple[pa.Array, bool]:
        plain = crypto.decrypt(part, key, iv, source.encoding)
        norm = ids.normalise(plain, kind, region)
        if kind == "sms":
            # A decrypted number that does not parse is kept trimmed (SPEC §5.5).
            norm = pc.if_else(pc.is_null(norm), ids.trim_ascii(plain), norm)
        keys = pc.if_else(ids.is_declared_id(norm), norm, pa.scalar(None, pa.string()))
        # Different canonical base64 texts are different ciphertexts, hence different
        # plaintexts: keys can only coincide where normalising changed a plaintext (hex
        # accepts either case).
        same = pc.all(pc.equal(keys, plain).fill_null(True)).as_py() is not False
        return keys, same

    parts = [
        members["id"].slice(start, CHUNK_ROWS).combine_chunks()
        for start in range(0, members.num_rows, CHUNK_ROWS)
    ]
    done = map_chunks(keys_of, parts)  # chunks side by side on the machine's cores
    table = pa.table(
        {
            "id": pa.chunked_array(parts, pa.string()),
            "k": pa.chunked_array([keys for keys, _ in done], pa.string()),
        }
    )
    con.register("_mkeys", table)
    return source.encoding == "base64" and all(same for _, same in done)


def _drop_member_keys(con: duckdb.DuckDBPyConnection) -> None:
    """Forget the ``_mkeys`` of an earlier import on this connection (view or Arrow table)."""
    for (kind,) in con.execute(
        "SELECT 'VIEW' FROM duckdb_views() WHERE temporary AND view_name = '_mkeys'"
    ).fetchall():
        con.execute(f"DROP {kind} _mkeys")
    with contextlib.suppress(duckdb.Error, KeyError):
        con.unregister("_mkeys")


def _reconcile(
    con: duckdb.DuckDBPyConnection,
    plan: _Plan,
    *,
    outcomes: bool = False,
    store: bool = True,
    keys_unique: bool = False,
) -> dict[str, int]:
    """Join the members (``_mkeys``) with the profiles and count.

    With ``store``, fills ``_audience(profile_id, address, …)``, what the audience will hold;
    with ``outcomes``, ``_outcomes(id, outcome)`` for :attr:`ImportResult.member_outcomes`.
    Without a table of links when it can: a dry run's counts come from one aggregate over the
    join, an audience of profiles from one grouping of it. ``keys_unique`` says
    that no two members share a key; with the derived-ID cache's own flag (no two profiles share
    one), each member then matches at most one profile and the reverse, and the counts need no
    DISTINCT.

    Returns:
        ``members``, ``undecryptable``, ``matched``, ``profiles`` and ``addresses``.
    """
    source = plan.source
    for table in ("_links", "_outcomes", "_audience"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    # A member matches one profile at most (and a profile one member at most).
    one_profile = derived.unique_keys(con, source)
    # A profile has many visitor IDs, but one declared ID per data source.
    one_member = one_profile and keys_unique and source.reconciliation == "declared_id"
    if source.reconciliation == "visitor_id":
        join, params = "JOIN visitors p ON p.visitor_id = m.k", []
    else:
        join, params = "JOIN derived_ids p ON p.declared_id = m.k AND p.data_source = ?", [source.id]
    members, undecryptable = con.execute(
        "SELECT count(*), count(*) FILTER (k IS NULL) FROM _mkeys"
    ).fetchall()[0]
    if plan.file_audience and store:  # the addresses themselves, counted once made
        _file_audience(con, keys_unique)
        (size,) = con.execute("SELECT count(*) FROM _audience").fetchall()[0]
    elif plan.file_audience:
        (size,) = con.execute(
            f"SELECT count({'' if keys_unique else 'DISTINCT '}k) FROM _mkeys"
        ).fetchall()[0]
    if store and not outcomes and one_profile and not plan.file_audience:
        # Each link is another member: the profiles and how many members each matched, in one
        # pass over the join (no table of links).
        links = "1" if one_member else "count(*)"
        group = "" if one_member else "GROUP BY p.profile_id"
        con.execute(
            f"CREATE TEMP TABLE _audience AS SELECT p.profile_id, NULL::VARCHAR AS address, "
            f"{links} AS links FROM _mkeys m {join} {group}",
            params,
        )
        size, matched = con.execute(
            "SELECT count(*), coalesce(sum(links), 0) FROM _audience"
        ).fetchall()[0]
    elif not outcomes and (not store or plan.file_audience):
        # The counts from one aggregate over the join.
        matched_sql = "count(*)" if one_profile else "count(DISTINCT m.id)"
        profiles_sql = (
            "count(*)" if one_member else "count(DISTINCT m.k)" if one_profile
            else "count(DISTINCT p.profile_id)"
        )
        matched, profiles = con.execute(
            f"SELECT {matched_sql}, {profiles_sql} FROM _mkeys m {join}", params
        ).fetchall()[0]
        if not plan.file_audience:
            size = profiles
    else:
        con.execute(f"CREATE TEMP TABLE _links AS SELECT m.id, p.profile_id FROM _mkeys m {join}", params)
        (matched,) = con.execute(
            f"SELECT count({'' if one_profile else 'DISTINCT '}id) FROM _links"
        ).fetchall()[0]
        if store and not plan.file_audience:  # a File audience's is made above
            con.execute(
                f"CREATE TEMP TABLE _audience AS SELECT {'' if one_member else 'DISTINCT '}"
                "profile_id, NULL::VARCHAR AS address FROM _links"
            )
            (size,) = con.execute("SELECT count(*) FROM _audience").fetchall()[0]
        elif not plan.file_audience:
            (size,) = con.execute("SELECT count(DISTINCT profile_id) FROM _links").fetchall()[0]
        if outcomes:
            linked = "_links" if one_profile else "(SELECT DISTINCT id FROM _links)"
            con.execute(
                f"""
                CREATE TEMP TABLE _outcomes AS
                SELECT m.id,
                       CASE WHEN m.k IS NULL THEN 'undecryptable'
                            WHEN l.id IS NOT NULL THEN 'matched'
                            ELSE 'no_profile' END AS outcome
                FROM _mkeys m LEFT JOIN {linked} l ON l.id = m.id
                """
            )
        con.execute("DROP TABLE _links")
    return {
        "members": int(members),
        "undecryptable": int(undecryptable),
        "matched": int(matched),
        "profiles": 0 if plan.file_audience else int(size),
        "addresses": int(size) if plan.file_audience else 0,
    }


def _file_audience(con: duckdb.DuckDBPyConnection, keys_unique: bool) -> None:
    """``_audience`` of a File audience: every decrypted address once."""
    con.execute(
        f"CREATE TEMP TABLE _audience AS SELECT {'' if keys_unique else 'DISTINCT '}"
        "NULL::VARCHAR AS profile_id, k AS address FROM _mkeys WHERE k IS NOT NULL"
    )


def _store_audience(con: duckdb.DuckDBPyConnection, plan: _Plan, label: str, run_id: str) -> None:
    """Create the audience ``label`` or replace its members (its type may change)."""
    now = now_utc().replace(tzinfo=None)
    row = con.execute("SELECT created_at FROM audiences WHERE label = ?", [label]).fetchone()
    created = row[0] if row else now
    con.execute("DELETE FROM audiences WHERE label = ?", [label])
    con.execute("DELETE FROM audience_members WHERE label = ?", [label])
    con.execute(
        "INSERT INTO audiences VALUES (?, ?, ?, ?, ?, ?, ?)",
        [label, "file" if plan.file_audience else "experience_cloud", plan.shared.sid,
         plan.source.id, created, now, run_id],
    )
    uncompressed_writes(con)
    con.execute("INSERT INTO audience_members SELECT ?, profile_id, address FROM _audience", [label])


def _write_rejects(con: duckdb.DuckDBPyConnection, rejects: pa.Table, path: Path) -> None:
    """``runs/RUN_ID/rejects.csv``: ``file,line,reason`` (never the row's content)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".rejects.csv.tmp")
    con.register("_rejects", rejects.select(["file", "line", "reason"]))
    con.execute(
        f"COPY (SELECT file, line, reason FROM _rejects ORDER BY file, line) "
        f"TO {sql_string(str(tmp))} (HEADER, DELIMITER ',')"
    )
    con.unregister("_rejects")
    os.replace(tmp, path)
