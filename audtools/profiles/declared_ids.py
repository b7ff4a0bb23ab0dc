"""The derived-ID cache: each profile's match key per declared-ID data source.

Deriving declared IDs (normalise, then hash) costs seconds on millions of profiles, so the keys are
kept in the table ``derived_ids`` per data source and rebuilt only when profiles are loaded (which
empties the cache) or when the way the data source derives them changes (its fingerprint).

For an encrypted data source the cached key is the *normalised* value: imports compare decrypted
members with it, and exports encrypt it with the key read at that moment, so no ciphertext made
with an old key is ever kept.
"""

from __future__ import annotations

import logging

import duckdb
import pyarrow as pa

from audtools.columns import identifiers as ids
from audtools.columns.chunks import CHUNK_ROWS, derive_pairs
from audtools.config import DataSource, WorkspaceConfig
from audtools.workspace.database import (
    VISITOR_IDS_UNIQUE,
    arrow,
    sql_identifier,
    transaction,
    uncompressed_writes,
)

log = logging.getLogger("audtools")

HASHED_KEY_SQL = "sha256(k)"
"""How the cache hashes a normalised key ``k`` (SPEC §3: lower-case hex SHA-256 of the UTF-8
value); DuckDB's digests equal :func:`audtools.columns.identifiers.sha256_hex`'s."""


def kind_of(source: DataSource) -> ids.NormaliserKind:
    """How the data source's key values are normalised (by channel, else by column name)."""
    return ids.normaliser_for(source.channel, source.reconciliation_key or "")


def fingerprint(config: WorkspaceConfig, source: DataSource) -> str:
    """What the cached keys depend on, besides the profiles."""
    return f"{source.fingerprint()}|{config.default_region}"


def profile_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The columns of the profiles table."""
    return [row[0] for row in con.execute("DESCRIBE profiles").fetchall()]


def refresh(con: duckdb.DuckDBPyConnection, config: WorkspaceConfig, source: DataSource) -> bool:
    """Make sure ``derived_ids`` holds the current keys of ``source``; commit them.

    Returns:
        True when the cache was rebuilt, False when it was already current.
    """
    if source.reconciliation != "declared_id":
        return False
    want = fingerprint(config, source)
    row = con.execute(
        "SELECT fingerprint, unique_keys FROM derived_state WHERE data_source = ?", [source.id]
    ).fetchone()
    if row is not None and row[0] == want:
        if row[1] is None:  # a cache built before audtools recorded this
            with transaction(con):
                con.execute(
                    "UPDATE derived_state SET unique_keys = ? WHERE data_source = ?",
                    [_all_different(con, source), source.id],
                )
        return False
    uncompressed_writes(con)
    with transaction(con):
        con.execute("DELETE FROM derived_ids WHERE data_source = ?", [source.id])
        con.execute("DELETE FROM derived_state WHERE data_source = ?", [source.id])
        _derive(con, config, source)
        con.execute(
            "INSERT INTO derived_state VALUES (?, ?, 0, ?)",
            [source.id, want, _all_different(con, source)],
        )
    log.info("rebuilt the derived IDs of %s", source.id)
    return True


def _derive(con: duckdb.DuckDBPyConnection, config: WorkspaceConfig, source: DataSource) -> None:
    """Insert every profile's key of ``source`` into ``derived_ids`` (inside the caller's
    transaction).

    The values are normalised and checked by :func:`audtools.columns.identifiers.declared_ids`
    over Arrow chunks; a hashed data source's keys are then hashed by DuckDB's ``sha256`` in the
    insert itself: the same lower-case hex digests as ``hashlib``, on every core (measured: 1 M
    short emails in about 0.5 s of CPU, against 0.8-0.9 s for a ``hashlib`` loop that threads
    cannot share).
    """
    column = source.reconciliation_key or ""
    if column not in profile_columns(con):
        log.warning(
            "the profiles have no column '%s' (the reconciliation_key of %s): "
            "no profile has a declared ID",
            column,
            source.id,
        )
        return
    name = sql_identifier(column)
    values = arrow(
        con, f"SELECT profile_id, {name}::VARCHAR AS v FROM profiles WHERE {name} IS NOT NULL"
    )

    def keys_of(values: pa.Array) -> pa.Array:
        return ids.declared_ids(
            values,
            kind=kind_of(source),
            default_region=config.default_region,
            hash="none",  # hashed below, in SQL
            encryption="none",  # the cache keeps the normalised value of encrypted sources
            encoding=source.encoding,
        )

    key = HASHED_KEY_SQL if source.hash == "sha256" else "k"
    # One insert of every chunk (one per chunk cost several times more).
    con.register("_chunk", derive_pairs(values, "v", keys_of, "k", CHUNK_ROWS))
    try:
        con.execute(f"INSERT INTO derived_ids SELECT ?, profile_id, {key} FROM _chunk", [source.id])
    finally:
        con.unregister("_chunk")


def _all_different(con: duckdb.DuckDBPyConnection, source: DataSource) -> bool:
    """Whether no two cached keys of ``source`` are equal. Equal keys hash equally, so when
    every 64-bit hash differs the keys do (half the cost of an exact DISTINCT, which settles
    the rare case of equal hashes)."""
    where = "FROM derived_ids WHERE data_source = ?"
    total, hashes = con.execute(
        f"SELECT count(*), count(DISTINCT hash(declared_id)) {where}", [source.id]
    ).fetchall()[0]
    if total == hashes:
        return True
    (keys,) = con.execute(f"SELECT count(DISTINCT declared_id) {where}", [source.id]).fetchall()[0]
    return bool(total == keys)


def unique_keys(con: duckdb.DuckDBPyConnection, source: DataSource) -> bool:
    """Whether no two profiles share a key of ``source`` (a visitor ID, or a cached declared
    ID), so that a member matches at most one profile. False when not known; for declared IDs
    call after :func:`refresh`."""
    if source.reconciliation == "visitor_id":
        row = con.execute("SELECT value FROM meta WHERE key = ?", [VISITOR_IDS_UNIQUE]).fetchone()
        return bool(row and row[0] == "true")
    row = con.execute(
        "SELECT unique_keys FROM derived_state WHERE data_source = ?", [source.id]
    ).fetchone()
    return bool(row and row[0])
