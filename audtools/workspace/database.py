"""The Campaign database: connection, versioned schema and migrations, and the workspace lock.

The database is one DuckDB file. DuckDB lets one process write a file at a time, and while it
writes, no other process can even read it, so every command that opens the database first takes
the workspace lock (:class:`WorkspaceLock`): a file lock on ``.audtools.lock`` that the operating
system releases when its holder dies. A waiting command gives up after ``lock_timeout`` seconds with
``workspace_busy``, naming the run that holds the lock.

The schema is versioned: :data:`MIGRATIONS` lists the steps from an empty file to the current
version. Before migrating an existing database it is copied aside; a database migrated by a newer
audtools is refused.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import filelock
import pyarrow as pa

from audtools.errors import AudtoolsError, WorkspaceBusy, WorkspaceError
from audtools.version import __version__
from audtools.workspace.records import RUN_ID_TIME, now_utc, replaced_whole, utc_text

log = logging.getLogger("audtools")

LOCK_NAME = ".audtools.lock"
HOLDER_NAME = ".audtools.lock.json"

# Visitor IDs as 128-bit integers (38 digits fit a HUGEINT): stored in 16 bytes and joined
# as integers, shown as 38-digit text (leading zeros kept) by views of the same names in
# the schema `shown` (on connect()'s search path). The segment state of a data source whose
# every ID is 38 digits moves to visitor_state: which data sources reconcile visitor IDs is
# configuration, so a declared-ID source guessed wrong is moved back when next used
# (importing.state.settle_state_kind). Every statement is safe to run again on a database
# already converted (a table's old name is created empty first, then dropped).
VISITOR_KEYS_MIGRATION = """
    CREATE TABLE IF NOT EXISTS main.visitor_keys (profile_id VARCHAR, vid HUGEINT);
    CREATE TABLE IF NOT EXISTS main.visitors (profile_id VARCHAR, visitor_id VARCHAR);
    INSERT INTO main.visitor_keys
        SELECT profile_id, CAST(visitor_id AS HUGEINT) FROM main.visitors;
    DROP TABLE main.visitors;
    CREATE TABLE IF NOT EXISTS main.visitor_state (data_source VARCHAR, vid HUGEINT, sid BIGINT);
    CREATE TABLE IF NOT EXISTS main.declared_state (data_source VARCHAR, id VARCHAR, sid BIGINT);
    CREATE TABLE IF NOT EXISTS main.segment_state (data_source VARCHAR, id VARCHAR, sid BIGINT);
    CREATE TEMP TABLE _visitor_sources AS
        SELECT data_source FROM main.segment_state GROUP BY data_source
        HAVING bool_and(coalesce(regexp_full_match(id, '[0-9]{38}'), false));
    INSERT INTO main.visitor_state
        SELECT data_source, CAST(id AS HUGEINT), sid FROM main.segment_state
        WHERE data_source IN (SELECT data_source FROM _visitor_sources);
    INSERT INTO main.declared_state
        SELECT data_source, id, sid FROM main.segment_state
        WHERE data_source NOT IN (SELECT data_source FROM _visitor_sources);
    DROP TABLE main.segment_state;
    DROP TABLE _visitor_sources;
    CREATE SCHEMA IF NOT EXISTS shown;
    CREATE OR REPLACE VIEW shown.visitors AS
        SELECT profile_id, lpad(CAST(vid AS VARCHAR), 38, '0') AS visitor_id
        FROM main.visitor_keys;
    CREATE OR REPLACE VIEW shown.segment_state AS
        SELECT data_source, id, sid FROM main.declared_state
        UNION ALL
        SELECT data_source, lpad(CAST(vid AS VARCHAR), 38, '0') AS id, sid FROM main.visitor_state;
    """

# Each step takes the schema from version i to i + 1. Tables are internal: the contract is the
# files, the commands and the Python API (SPEC §2).
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (key VARCHAR, value VARCHAR);
    CREATE TABLE profiles (profile_id VARCHAR);
    CREATE TABLE visitors (profile_id VARCHAR, visitor_id VARCHAR);
    CREATE TABLE batches (
        data_source VARCHAR, root VARCHAR, mode VARCHAR, timestamp_ms BIGINT,
        files INTEGER, rows_read BIGINT, rows_rejected BIGINT, run_id VARCHAR,
        applied_at TIMESTAMP);
    CREATE TABLE batch_files (
        data_source VARCHAR, root VARCHAR, name VARCHAR, size BIGINT, md5 VARCHAR,
        mtime_ns BIGINT, run_id VARCHAR);
    CREATE TABLE source_state (
        data_source VARCHAR, last_file VARCHAR, last_root VARCHAR, last_timestamp_ms BIGINT);
    CREATE TABLE segment_state (data_source VARCHAR, id VARCHAR, sid BIGINT);
    CREATE TABLE shared_audiences (
        sid BIGINT, name VARCHAR, created_at TIMESTAMP, run_id VARCHAR);
    CREATE TABLE audiences (
        label VARCHAR, type VARCHAR, sid BIGINT, data_source VARCHAR,
        created_at TIMESTAMP, updated_at TIMESTAMP, run_id VARCHAR);
    CREATE TABLE audience_members (label VARCHAR, profile_id VARCHAR, address VARCHAR);
    CREATE TABLE export_ledger (sid BIGINT, data_source VARCHAR, id VARCHAR, run_id VARCHAR);
    CREATE TABLE pending_exports (run_id VARCHAR, record VARCHAR, created_at TIMESTAMP);
    CREATE TABLE runs (
        run_id VARCHAR, kind VARCHAR, status VARCHAR, started_at TIMESTAMP,
        finished_at TIMESTAMP, result VARCHAR);
    CREATE TABLE derived_ids (data_source VARCHAR, profile_id VARCHAR, declared_id VARCHAR);
    CREATE TABLE derived_state (data_source VARCHAR, fingerprint VARCHAR, profiles_version BIGINT);
    """,
    # Whether each data source's cached keys are all different: then one key matches at most one
    # profile and the import's counts need no DISTINCT (NULL: not known yet).
    """
    ALTER TABLE derived_state ADD COLUMN unique_keys BOOLEAN;
    """,
    # Why a batch failed its checks while being applied (md5, line counts, a compressed part
    # that cannot be read), for the files as they were then (fingerprint: names, sizes, times):
    # `audtools batches` shows the reason, and the files are read again only once they change.
    """
    CREATE TABLE IF NOT EXISTS batch_waits (
        data_source VARCHAR, root VARCHAR, fingerprint VARCHAR, reason VARCHAR, run_id VARCHAR);
    """,
    # What each .info file of an import drop says, per version of the file (name, size,
    # modification time): its entries as JSON, or why it is not a valid .info (SPEC §4.2: read
    # once and remembered; on SFTP and S3 each read is a download). See workspace/info_files.
    """
    CREATE TABLE IF NOT EXISTS info_files (
        drop_url VARCHAR, name VARCHAR, size BIGINT, mtime_ns BIGINT,
        entries VARCHAR, problem VARCHAR);
    """,
    VISITOR_KEYS_MIGRATION,
    # The current version of each dataset of the Dask engine (audtools.engine): its folder
    # under the engine's storage, its buckets, and what it was made from. Switching to a new
    # version is an UPDATE in the import's transaction: a crash leaves the old one current.
    """
    CREATE TABLE IF NOT EXISTS engine_datasets (
        name VARCHAR, version VARCHAR, buckets INTEGER, fingerprint VARCHAR,
        written_at TIMESTAMP);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

VISITOR_IDS_UNIQUE = "visitor_ids_unique"
"""The ``meta`` key saying whether no visitor ID belongs to two profiles ('true'/'false')."""

VISITOR_ID_TEXT = "lpad(CAST({} AS VARCHAR), 38, '0')"
"""SQL giving the text of a visitor ID stored as an integer (format with the column): 38 digits,
leading zeros kept, byte for byte the text it was read from."""

MEMORY_LIMIT_ENV = "AUDTOOLS_MEMORY_LIMIT"
DEFAULT_MEMORY_LIMIT = "2.5GB"
"""DuckDB's memory budget unless ``AUDTOOLS_MEMORY_LIMIT`` says otherwise (e.g. ``8GB``).

Past it DuckDB spills to a temporary folder beside the database instead of growing: the first
import of ten million visitor IDs peaks at 3.7 GiB (4.0 GiB with 3GB, 4.7 GiB unbounded) in
the same time, within the benchmark's noise. Raise it on a big machine for hundreds of millions
of IDs."""

_DUCKDB_CONFIG = {
    # Nothing may be fetched at run time.
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


def connect(path: Path | str, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file with extension downloads turned off and the memory budget set.

    Raises:
        AudtoolsError: ``bad_config`` when ``AUDTOOLS_MEMORY_LIMIT`` is not a size DuckDB reads.
    """
    limit = os.environ.get(MEMORY_LIMIT_ENV, "").strip() or DEFAULT_MEMORY_LIMIT
    con = duckdb.connect(str(path), read_only=read_only, config=dict(_DUCKDB_CONFIG))
    # audtools shows its own progress (tqdm, off with --quiet); DuckDB's bar would print on
    # long queries from scripts and notebooks whatever --quiet says.
    con.execute("SET enable_progress_bar = false")
    _show_text_views(con)
    try:
        con.execute(f"SET memory_limit = {sql_string(limit)}")
    except duckdb.Error as exc:
        con.close()
        raise AudtoolsError(
            f"{MEMORY_LIMIT_ENV}={limit!r} is not a memory size (write it like 3GB or 512MB): "
            f"{str(exc).splitlines()[0]}",
            code="bad_config",
        ) from None
    return con


def _show_text_views(con: duckdb.DuckDBPyConnection) -> None:
    """Put the schema ``shown`` (views showing integer visitor IDs as text) on the search path,
    after the tables, once a migration has created it."""
    (exists,) = con.execute(
        "SELECT count(*) FROM duckdb_schemas() WHERE schema_name = 'shown' "
        "AND database_name = current_database()"
    ).fetchall()[0]
    if exists:
        con.execute("SET search_path = 'main,shown'")


def schema_info(con: duckdb.DuckDBPyConnection) -> tuple[int, str | None]:
    """The schema version of an open database (0 when empty) and the audtools that migrated it."""
    has_meta = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
    ).fetchone()
    if not has_meta or not has_meta[0]:
        return 0, None
    rows = dict(con.execute("SELECT key, value FROM meta").fetchall())
    return int(rows.get("schema_version", "0")), rows.get("audtools_version")


def _version_key(version: str | None) -> tuple[int, ...]:
    """``"1.10.2"`` → ``(1, 10, 2)``, for comparing releases (unknown parts count as 0)."""
    if not version:
        return ()
    out = []
    for part in version.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def migrate(path: Path, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Bring the database at ``path`` (open as ``con``) to :data:`SCHEMA_VERSION`.

    An existing database is copied to ``NAME.vN-TIMESTAMP.bak`` before it is changed.

    Returns:
        An open connection to the migrated database (``con`` itself, or a new one after a copy).

    Raises:
        WorkspaceError: ``workspace_too_new`` when a newer audtools migrated the database.
    """
    version, by = schema_info(con)
    if version > SCHEMA_VERSION or _version_key(by) > _version_key(__version__):
        con.close()
        raise WorkspaceError(
            f"The workspace database was migrated by audtools {by} (schema {version}); this is "
            f"audtools {__version__} (schema {SCHEMA_VERSION}). Upgrade audtools to use it.",
            code="workspace_too_new",
        )
    if version == SCHEMA_VERSION:
        return con
    if version > 0:
        con.close()
        stamp = now_utc().strftime(RUN_ID_TIME)
        backup = path.with_name(f"{path.name}.v{version}-{stamp}.bak")
        shutil.copy2(path, backup)
        log.info("copied the database to %s before migrating it", backup.name)
        con = connect(path)
    con.execute("BEGIN TRANSACTION")
    try:
        for step in MIGRATIONS[version:]:
            con.execute(step)
        con.execute("DELETE FROM meta WHERE key IN ('schema_version', 'audtools_version')")
        con.execute(
            "INSERT INTO meta VALUES ('schema_version', ?), ('audtools_version', ?)",
            [str(SCHEMA_VERSION), __version__],
        )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    _show_text_views(con)
    return con


class WorkspaceLock:
    """An exclusive lock on a workspace folder, re-entrant within one process (across threads).

    The lock is :class:`filelock.FileLock` on ``ROOT/.audtools.lock``: ``flock`` on Linux and
    macOS, ``LockFileEx`` on Windows, both released by the operating system when the holder dies.
    While held, ``ROOT/.audtools.lock.json`` says which run holds it, so a waiting process can
    name it (a side file: Windows does not let others read a locked file).

    Args:
        root: the workspace folder.
        timeout: seconds to wait for another process before giving up.
        run_id: the run taking the lock (named to waiters), if any.
        purpose: what the holder is doing (``import``, ``profiles load``, ...).
    """

    def __init__(self, root: Path, timeout: float, run_id: str | None = None, purpose: str = "") -> None:
        self.path = Path(root) / LOCK_NAME
        self.holder_path = Path(root) / HOLDER_NAME
        self.timeout = timeout
        self.run_id = run_id
        self.purpose = purpose
        # One instance per file in the process, its holds counted across threads: re-entrant.
        # Never a "soft" lock file, which a killed holder would leave behind.
        self._lock = filelock.FileLock(
            self.path, thread_local=False, is_singleton=True, fallback_to_soft=False
        )

    def holder(self) -> dict[str, object]:
        """What the side file says about the current holder (may be empty)."""
        try:
            text = self.holder_path.read_text(encoding="utf-8")
            return json.loads(text) if text.strip() else {}
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        """Take the lock, waiting up to ``timeout`` seconds.

        Raises:
            WorkspaceBusy: when another process still holds it after ``timeout``.
        """
        try:
            self._lock.acquire(timeout=self.timeout, poll_interval=0.1)
        except filelock.Timeout:
            raise self._busy() from None
        if self._lock.lock_counter == 1:  # taken now, not re-entered: say who holds it
            info = {"run_id": self.run_id, "pid": os.getpid(), "purpose": self.purpose,
                    "since": utc_text(now_utc())}
            with replaced_whole(self.holder_path) as tmp:
                tmp.write_text(json.dumps(info), encoding="utf-8")

    def _busy(self) -> WorkspaceBusy:
        holder = self.holder()
        who = holder.get("run_id") or "a process without a run ID"
        what = f" ({holder['purpose']})" if holder.get("purpose") else ""
        pid = f", pid {holder['pid']}" if holder.get("pid") else ""
        return WorkspaceBusy(
            f"The workspace is busy: run {who}{what}{pid} has held it for more than "
            f"{self.timeout:g} s. Wait for it to finish and try again.",
            holder=holder,
        )

    def release(self) -> None:
        """Release the lock (or one level of re-entry)."""
        if self._lock.lock_counter == 1:  # still held: no other holder can have written it
            with contextlib.suppress(OSError):
                self.holder_path.unlink()
        self._lock.release()

    def __enter__(self) -> WorkspaceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def arrow(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> pa.Table:
    """Run a query and return its rows as an Arrow table, without an extra copy.

    DuckDB 2 refuses ``con.sql`` while an ``execute`` result is only partly fetched (after
    ``fetchone``), so that result is finished first.
    """
    con.complete()
    return con.sql(sql, params=params).to_arrow_table()


def uncompressed_writes(con: duckdb.DuckDBPyConnection) -> None:
    """From now until ``con`` closes, store new rows without DuckDB choosing a compression.

    For tens of millions of distinct IDs DuckDB's analysis of which string compression pays
    costs more than the insert itself (measured: 15 M segment-state rows in 3.5 s with it,
    1.4 s without); the rows are then stored as they are, about three times larger on disk.
    The setting stays until the connection closes because rows not yet written when the
    transaction commits are compressed by the checkpoint at close (an AES export of 10 M IDs
    took 18 s with the setting reset after the insert, 11.6 s without). Called before the
    inserts of the ID tables that a sync rewrites (segment state, audience members, the export
    ledger, the derived-ID cache), never by the profile loader. Rows keep the storage they were
    written with; everything reads them the same way.

    Not called by the imports of visitor-ID data sources: their IDs are integers, whose
    compression costs nothing measurable (10 M members in two segments, half unknown: the
    database after profiles load and one import is 0.99 GB with compression and 2.09 GB without,
    the import 22.1 s and 20.9 s, its peak memory 3.31 and 3.79 GiB).
    """
    with contextlib.suppress(duckdb.Error):  # a DuckDB without the setting: write as usual
        con.execute("SET force_compression = 'uncompressed'")


@contextlib.contextmanager
def unordered_inserts(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Within the block, let DuckDB write the rows of an ``INSERT … SELECT`` in any order.

    With ``preserve_insertion_order`` (DuckDB's default) a large insert is written in its
    source's order, and the row groups it leaves are rewritten by the next checkpoint (the
    close of every command): 15 M segment-state rows cost 2.6 s of CPU to insert and 1.4 s
    more at the checkpoint, against 2.9 s and nothing without it. The setting is global to the
    database, so it is restored when the block ends; no table audtools reads is read in its
    insertion order (every listing has an ``ORDER BY``).
    """
    (before,) = con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()[0]
    con.execute("SET preserve_insertion_order = false")
    try:
        yield con
    finally:
        con.execute(f"SET preserve_insertion_order = {'true' if before else 'false'}")


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """``BEGIN`` … ``COMMIT``, or ``ROLLBACK`` when the block raises."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def sql_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier, for a column named by a user's file.

    Example:
        >>> sql_identifier("signup date")
        '"signup date"'
    """
    return '"' + name.replace('"', '""') + '"'


def sql_string(text: str) -> str:
    """``text`` as a SQL string literal, e.g. a file path for ``COPY`` or ``read_csv``.

    Example:
        >>> sql_string("/tmp/it's.csv")
        "'/tmp/it''s.csv'"
    """
    return "'" + text.replace("'", "''") + "'"
