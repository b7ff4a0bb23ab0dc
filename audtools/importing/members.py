"""Steps 3 and 4 of an import (SPEC §5): the members of a segment and the keys they reconcile by.

:func:`member_keys` puts on the connection a relation ``(id, k)``: every member of the shared
audience in the data source's segment state, and the key it is reconciled by. Unencrypted members
are their own keys; encrypted members are decoded, decrypted and normalised, and those that fail
have a NULL key (they are *undecryptable*).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from audtools.columns.chunks import CHUNK_ROWS, map_chunks
from audtools.columns.member_keys import decrypted_keys
from audtools.config import DataSource
from audtools.importing.state import settle_state_kind, state_table
from audtools.profiles import declared_ids as derived
from audtools.workspace.database import VISITOR_ID_TEXT, arrow, sql_string

MEMBERS = "_mkeys"
"""The name of the members' relation on the connection."""


@dataclass(frozen=True)
class Members:
    """The members of one shared audience, as a relation ``(id, k)`` on the connection.

    Attributes:
        relation: the name of the relation (a temporary view or a registered Arrow table).
        keys_unique: whether no two members share a key (NULL keys aside), a fact
            :func:`~audtools.importing.reconcile.reconcile` may use to skip a DISTINCT.
        visitor_keys: whether ``id`` and ``k`` are visitor IDs as 128-bit integers (joined with
            ``visitor_keys.vid``); otherwise both are text.
    """

    relation: str
    keys_unique: bool
    visitor_keys: bool = False


def member_keys(
    con: duckdb.DuckDBPyConnection,
    source: DataSource,
    sid: int,
    *,
    key: bytes | None,
    region: str,
) -> Members:
    """List the members of segment ``sid`` in the segment state of ``source``, with their keys.

    The state holds each (data source, ID, segment) once, so the members need no DISTINCT.
    Unencrypted members are their own keys: the relation is then a temporary view on the state
    (copying every ID twice into a table cost more than the few scans of the state that read
    it). Encrypted members are decrypted chunk by chunk and their keys handed to DuckDB as one
    Arrow table (a scan of it costs less than an insert).

    Args:
        con: the open database connection (inside the import's transaction, so that the state
            includes the batches just applied).
        source: the data source.
        sid: the shared audience's segment ID.
        key: the data source's AES key (required with encryption).
        region: the workspace's ``default_region``, for phone numbers.

    Returns:
        The members' relation, which replaces any earlier one on this connection.
    """
    drop_members(con)
    settle_state_kind(con, source)
    table, col = state_table(source)
    if not source.encrypted:
        con.execute(
            f"CREATE TEMP VIEW {MEMBERS} AS SELECT {col} AS id, {col} AS k FROM {table} "
            f"WHERE data_source = {sql_string(source.id)} AND sid = {int(sid)}"
        )
        return Members(MEMBERS, keys_unique=True, visitor_keys=col == "vid")
    assert key is not None and source.iv is not None
    # Ciphertexts are text (a visitor-ID data source with encryption reads its IDs as text).
    text = VISITOR_ID_TEXT.format(col) if col == "vid" else col
    members = arrow(
        con,
        f"SELECT {text} AS id FROM {table} WHERE data_source = ? AND sid = ?",
        [source.id, sid],
    )
    parts = [
        members["id"].slice(start, CHUNK_ROWS).combine_chunks()
        for start in range(0, members.num_rows, CHUNK_ROWS)
    ]
    kind, iv = derived.kind_of(source), source.iv

    def keys_of(part: pa.Array) -> tuple[pa.Array, bool]:
        return decrypted_keys(part, key, iv, source.encoding, kind, region)

    done = map_chunks(keys_of, parts)  # chunks side by side on the machine's cores
    table = pa.table(
        {
            "id": pa.chunked_array(parts, pa.string()),
            "k": pa.chunked_array([keys for keys, _ in done], pa.string()),
        }
    )
    con.register(MEMBERS, table)
    return Members(MEMBERS, keys_unique=source.encoding == "base64" and all(s for _, s in done))


def drop_members(con: duckdb.DuckDBPyConnection) -> None:
    """Forget the members' relation of an earlier import on this connection (view or table)."""
    for (kind,) in con.execute(
        f"SELECT 'VIEW' FROM duckdb_views() WHERE temporary AND view_name = '{MEMBERS}'"
    ).fetchall():
        con.execute(f"DROP {kind} {MEMBERS}")
    with contextlib.suppress(duckdb.Error, KeyError):
        con.unregister(MEMBERS)
