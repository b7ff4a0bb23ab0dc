"""The engine's datasets: Parquet folders under storage, their versions in the workspace database.

Layout under ``[engine] storage``, in a folder of its own per workspace (``meta.engine_id``)::

    ID/visitor_keys/VERSION/b=B/*.parquet   the profiles' visitor IDs (ID, profile_id), by bucket
    ID/derived/SOURCE/VERSION/b=B/*.parquet a declared-ID source's keys (ID, profile_id)
    ID/state/SOURCE/VERSION/b=B/*.parquet   a data source's segment state (ID, sid), by bucket
    ID/work/TOKEN/...                       one import's staged parts and task outputs

A dataset's current version is its row in ``engine_datasets``. A change writes a new version's
files first, then switches the row in the caller's transaction: a crash before the commit leaves
the old version current, and the new files are garbage that :func:`collect` removes on the next
run (the workspace lock keeps two runs from writing at once).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb

from audtools.config import DataSource
from audtools.engine.ids import IdKind, Ids
from audtools.engine.tasks import relation
from audtools.workspace.database import sql_string, transaction

__all__ = [
    "MIN_BUCKETS",
    "ROWS_PER_BUCKET",
    "Version",
    "collect",
    "current",
    "id_kind",
    "keys",
    "move_state_back",
    "move_state_out",
    "new_version",
    "state_name",
    "storage_root",
    "switch",
]

log = logging.getLogger("audtools")

ROWS_PER_BUCKET = 2_000_000
"""Visitor IDs per bucket when ``[engine] buckets`` is 0: a bucket of members and of visitor IDs
then takes a few hundred MB in a task's DuckDB, well within a worker of 1 GiB or more."""

MIN_BUCKETS = 8
"""The fewest buckets chosen: enough tasks for a small cluster's slots."""

VISITOR_KEYS = "visitor_keys"


@dataclass(frozen=True)
class Version:
    """One version of a dataset: its folder and number of buckets."""

    name: str
    version: str
    buckets: int
    folder: Path
    fingerprint: str = ""


def storage_root(con: duckdb.DuckDBPyConnection, storage: Path) -> Path:
    """This workspace's folder under ``storage`` (its ID made and kept in ``meta`` once), so
    that workspaces sharing a storage folder never collect each other's datasets."""
    row = con.execute("SELECT value FROM meta WHERE key = 'engine_id'").fetchone()
    if row is None:
        ident = uuid.uuid4().hex[:16]
        with transaction(con):
            con.execute("INSERT INTO meta VALUES ('engine_id', ?)", [ident])
    else:
        ident = row[0]
    return Path(storage) / ident


def id_kind(source: DataSource) -> IdKind:
    """The kind of ID ``source``'s state and keys hold."""
    return "visitor" if source.reconciliation == "visitor_id" else "text"


def state_name(source: DataSource) -> str:
    """The dataset name of ``source``'s segment state (its fingerprint: its kind of ID)."""
    return f"state/{source.id}"


def keys_name(source: DataSource) -> str:
    """The dataset name of the profiles' keys ``source`` reconciles with."""
    return VISITOR_KEYS if source.reconciliation == "visitor_id" else f"derived/{source.id}"


def _folder(root: Path, name: str, version: str) -> Path:
    if name == VISITOR_KEYS:
        return root / VISITOR_KEYS / version
    # Data source IDs are free text: their folder is a digest of it.
    kind, _, rest = name.partition("/")
    digest = hashlib.sha1(rest.encode(), usedforsecurity=False).hexdigest()[:16]
    return root / kind / digest / version


def current(con: duckdb.DuckDBPyConnection, root: Path, name: str) -> Version | None:
    """The current version of ``name``, or None when it has none."""
    row = con.execute(
        "SELECT version, buckets, fingerprint FROM engine_datasets WHERE name = ?", [name]
    ).fetchone()
    if row is None:
        return None
    return Version(name, row[0], int(row[1]), _folder(root, name, row[0]), row[2] or "")


def new_version(root: Path, name: str, buckets: int, fingerprint: str = "") -> Version:
    """A new, empty version of ``name`` (its folder made), not yet current."""
    version = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    folder = _folder(root, name, version)
    folder.mkdir(parents=True)
    return Version(name, version, buckets, folder, fingerprint)


def switch(con: duckdb.DuckDBPyConnection, version: Version) -> None:
    """Make ``version`` current, in the caller's transaction."""
    con.execute("DELETE FROM engine_datasets WHERE name = ?", [version.name])
    con.execute(
        "INSERT INTO engine_datasets VALUES (?, ?, ?, ?, ?)",
        [version.name, version.version, version.buckets, version.fingerprint,
         dt.datetime.now(dt.UTC).replace(tzinfo=None)],
    )


def collect(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """Remove every version that is not current, and every import's work folder."""
    keep = {
        _folder(root, name, version)
        for name, version in con.execute("SELECT name, version FROM engine_datasets").fetchall()
    }
    shutil.rmtree(root / "work", ignore_errors=True)
    versions = [*(root / VISITOR_KEYS).glob("*"), *(root / "state").glob("*/*"),
                *(root / "derived").glob("*/*")]
    for folder in versions:
        if folder not in keep:
            shutil.rmtree(folder, ignore_errors=True)


def _keys_rows(source: DataSource) -> str:
    """SQL of the profiles' keys of ``source``: ``v`` (as the database keeps it), ``profile_id``."""
    if source.reconciliation == "visitor_id":
        return "SELECT vid AS v, profile_id FROM visitor_keys"
    return (
        "SELECT declared_id AS v, profile_id FROM derived_ids "
        f"WHERE data_source = {sql_string(source.id)} AND declared_id IS NOT NULL"
    )


def _fingerprint(con: duckdb.DuckDBPyConnection, rows: str) -> tuple[int, str]:
    """How many keys there are, and a digest of them all (one scan)."""
    count, xor, total = con.execute(
        "SELECT count(*), coalesce(bit_xor(hash(v, profile_id)), 0), "
        f"coalesce(sum(hash(v, profile_id) % 1000003), 0) FROM ({rows})"
    ).fetchall()[0]
    return int(count), f"{count}:{xor}:{total}"


def keys(
    con: duckdb.DuckDBPyConnection, root: Path, source: DataSource, buckets: int
) -> Version:
    """The current buckets of the profiles' keys ``source`` reconciles with (visitor IDs, or
    its declared IDs from the derived-ID cache): written again when they changed.

    Args:
        con: the workspace database (outside a transaction: the switch commits on its own,
            as a cache does).
        root: this workspace's storage folder.
        source: the data source.
        buckets: ``[engine] buckets`` (0: one per :data:`ROWS_PER_BUCKET`, at least
            :data:`MIN_BUCKETS`). The count depends on the data only, not on the cluster's
            size: a state written with one count is read by tasks of the same count.
    """
    rows = _keys_rows(source)
    count, fingerprint = _fingerprint(con, rows)
    want = buckets or max(MIN_BUCKETS, math.ceil(count / ROWS_PER_BUCKET))
    name = keys_name(source)
    now = current(con, root, name)
    if now is not None and now.fingerprint == fingerprint and now.buckets == want:
        return now
    started = time.monotonic()
    version = new_version(root, name, want, fingerprint)
    _write_buckets(con, rows, "profile_id", want, version, Ids(id_kind(source)))
    with transaction(con):
        switch(con, version)
    log.info("engine: %d keys written in %d buckets in %.1f s", count, want,
             time.monotonic() - started)
    return version


def move_state_out(
    con: duckdb.DuckDBPyConnection, root: Path, source: DataSource, buckets: int,
    table: str, column: str,
) -> None:
    """Move ``source``'s segment state from the workspace database (``table``, IDs in
    ``column``) to the engine's storage (a workspace that imported on the embedded engine
    before), in one transaction."""
    found = con.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE data_source = ? LIMIT 1)",
        [source.id],
    ).fetchall()[0][0]
    if not found:
        return
    kind = id_kind(source)
    version = new_version(root, state_name(source), buckets, kind)
    rows = f"SELECT {column} AS v, sid FROM {table} WHERE data_source = {sql_string(source.id)}"
    _write_buckets(con, rows, "sid", buckets, version, Ids(kind))
    with transaction(con):
        switch(con, version)
        con.execute(f"DELETE FROM {table} WHERE data_source = ?", [source.id])


def move_state_back(con: duckdb.DuckDBPyConnection, root: Path, source: DataSource) -> None:
    """Move ``source``'s segment state from the engine's storage back to the workspace database
    (the workspace's ``[engine]`` was removed, or the source's kind of ID changed), into the
    table of the kind of ID it holds, in one transaction."""
    version = current(con, root, state_name(source))
    if version is None:
        return
    ids = Ids("text" if version.fingerprint == "text" else "visitor")
    table = "declared_state" if ids.kind == "text" else "visitor_state"
    files = sorted(str(p) for p in version.folder.glob("b=*/*.parquet"))
    with transaction(con):
        if files:
            rows = relation(files, {**ids.columns, "sid": "BIGINT"})
            con.execute(f"INSERT INTO {table} SELECT ?, {ids.value()}, sid FROM {rows}", [source.id])
        con.execute("DELETE FROM engine_datasets WHERE name = ?", [version.name])


def _write_buckets(
    con: duckdb.DuckDBPyConnection, rows: str, column: str, buckets: int, version: Version,
    ids: Ids,
) -> None:
    """Write ``rows`` (``v``, an ID as the database keeps it, and ``column``) of the workspace
    database as ``version``'s buckets."""
    stored = f"SELECT {ids.stored('v')}, {column} FROM ({rows})"
    con.execute(
        f"COPY (SELECT {ids.names()}, {column}, {ids.bucket(buckets)} AS b FROM ({stored})) "
        f"TO {sql_string(str(version.folder))} (FORMAT parquet, PARTITION_BY (b), OVERWRITE_OR_IGNORE)"
    )
