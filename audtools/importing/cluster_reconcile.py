"""Steps 3 to 6 of an import on the Dask engine: the members reconciled with the profiles' keys,
bucket by bucket (see :mod:`audtools.importing.cluster`).

Unencrypted members are their own keys: one task per bucket joins bucket *i* of the members with
bucket *i* of the profiles' keys (:func:`audtools.engine.tasks.reconcile_bucket`). Encrypted
members take two rounds: one task per bucket of the state decrypts its members and files each
under the bucket of its key; one task per key bucket joins them with the profiles' keys
(:mod:`audtools.engine.key_tasks`). Counts add up over buckets, as each member is in one bucket;
a profile matched in several buckets is counted once here, in the workspace database, which
makes the audience's table as the embedded engine does.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from audtools.engine import key_tasks, tasks
from audtools.engine.ids import Ids
from audtools.importing.cluster import ImportEngine
from audtools.importing.reconcile import AUDIENCE, Reconciled
from audtools.importing.refusals import ImportPlan
from audtools.profiles import declared_ids as derived
from audtools.workspace.database import VISITOR_ID_TEXT, arrow, sql_string

__all__ = ["reconcile_on_cluster"]


def reconcile_on_cluster(
    con: duckdb.DuckDBPyConnection,
    engine: ImportEngine,
    plan: ImportPlan,
    region: str,
    *,
    audience: bool,
    outcomes: bool,
) -> Reconciled:
    """Reconcile the members of the shared audience with the profiles, on the cluster.

    Args:
        con: the workspace database, inside the import's transaction.
        engine: the import's cluster and datasets.
        plan: the import's plan (data source, segment, key, File audience or not).
        region: the workspace's ``default_region``, for phone numbers.
        audience: make the table :data:`~audtools.importing.reconcile.AUDIENCE`.
        outcomes: give each member's outcome.

    Returns:
        The same counts, audience table and outcomes as the embedded engine's.
    """
    con.execute(f"DROP TABLE IF EXISTS {AUDIENCE}")
    out = engine.work / ("reconcile-" + uuid.uuid4().hex[:8])
    if plan.source.encrypted:
        counts = _encrypted(engine, plan, region, out, outcomes)
    else:
        counts = _plain(engine, plan.shared.sid, out, outcomes)
    if plan.file_audience:
        made = f"SELECT DISTINCT NULL::VARCHAR AS profile_id, address FROM {_glob(out / 'addresses')}"
    else:
        made = f"SELECT DISTINCT profile_id, NULL::VARCHAR AS address FROM {_glob(out / 'profiles')}"
    con.execute(f"CREATE TEMP TABLE {AUDIENCE} AS {made}")
    (rows,) = con.execute(f"SELECT count(*) FROM {AUDIENCE}").fetchall()[0]
    if not audience:
        con.execute(f"DROP TABLE {AUDIENCE}")
    return Reconciled(
        members=counts["members"],
        undecryptable=counts["undecryptable"],
        matched=counts["matched"],
        profiles=0 if plan.file_audience else int(rows),
        addresses=int(rows) if plan.file_audience else 0,
        audience=AUDIENCE if audience else None,
        outcomes=_outcomes(con, engine, out) if outcomes else None,
        shape="buckets",
    )


def _state_files(engine: ImportEngine, bucket: int) -> list[str]:
    """The state's files that may hold ``bucket``'s IDs (all of them when the state has another
    number of buckets than the keys: each task then keeps its own)."""
    state = engine.state.version
    if state is None:
        return []
    if state.buckets == engine.keys.buckets:
        return tasks.bucket_files(str(state.folder), bucket)
    return sorted(str(p) for p in state.folder.glob("b=*/*.parquet"))


def _plain(engine: ImportEngine, sid: int, out: Path, outcomes: bool) -> dict[str, int]:
    keys = engine.keys
    calls = [
        (bucket, keys.buckets, _state_files(engine, bucket),
         tasks.bucket_files(str(keys.folder), bucket), int(sid), str(out), outcomes,
         engine.state.kind)
        for bucket in range(keys.buckets)
    ]
    done = engine.cluster.map(tasks.reconcile_bucket, calls, what="reconciling")
    return {"members": sum(c["members"] for c in done), "undecryptable": 0,
            "matched": sum(c["matched"] for c in done)}


def _encrypted(
    engine: ImportEngine, plan: ImportPlan, region: str, out: Path, outcomes: bool
) -> dict[str, int]:
    source, keys = plan.source, engine.keys
    assert plan.key is not None and source.iv is not None
    secret = key_tasks.Secret({"key": plan.key, "iv": source.iv, "encoding": source.encoding,
                               "kind": derived.kind_of(source), "region": region})
    shuffled = str(out / "members")
    calls: list[tuple[Any, ...]] = [
        (bucket, keys.buckets, _state_files(engine, bucket), int(plan.shared.sid), secret, shuffled)
        for bucket in range(keys.buckets)
    ]
    decrypted = engine.cluster.map(key_tasks.decrypt_bucket, calls, what="decrypting")
    calls = [
        (bucket, key_tasks.shuffled_files(shuffled, bucket),
         tasks.bucket_files(str(keys.folder), bucket), str(out), outcomes, plan.file_audience)
        for bucket in range(keys.buckets)
    ]
    joined = engine.cluster.map(key_tasks.join_keys_bucket, calls, what="reconciling keys")
    return {"members": sum(c["members"] for c in decrypted),
            "undecryptable": sum(c["undecryptable"] for c in decrypted),
            "matched": sum(c["matched"] for c in joined)}


def _outcomes(con: duckdb.DuckDBPyConnection, engine: ImportEngine, out: Path) -> pa.Table:
    """Each member's ID (as text) and outcome, in the order of the IDs."""
    ids = Ids(engine.state.kind)
    text = VISITOR_ID_TEXT.format(ids.value()) if ids.kind == "visitor" else "id"
    return arrow(
        con, f"SELECT {text} AS id, outcome FROM {_glob(out / 'outcomes')} ORDER BY {ids.names()}"
    )


def _glob(folder: Path) -> str:
    """SQL reading every bucket file under ``folder`` (each bucket task writes one)."""
    if not any(folder.glob("b=*/*.parquet")):
        raise RuntimeError(f"no bucket files under {folder}")
    pattern = sql_string(str(folder / "b=*" / "*.parquet"))
    return f"read_parquet({pattern}, hive_partitioning = false)"
