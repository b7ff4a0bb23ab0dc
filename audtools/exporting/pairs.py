"""Each targeted profile's IDs for the data source, and the ledger anti-join (SPEC §6.2 to §6.4).

:func:`prepare` fills the session's temporary tables, in running order:

- ``_x_targeted``: the profiles for which the condition is true (all without one);
- ``_x_pairs``: ``(profile_id, id)``, each targeted profile's visitor IDs, or its one declared ID
  (from the derived-ID cache; encrypted with the key read for this export);
- ``_x_ids``: each ID once, even when several profiles share it;
- ``_x_new``: the IDs never exported to the shared audience through the data source (the ledger).

It counts, reads the new IDs as Arrow and plans the onboarding files' parts. The transitions are
queries over the same tables (:data:`OUTBOUND_SQL`, :data:`COMPLEMENT_SQL`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audtools.columns.chunks import CHUNK_ROWS, derive_pairs
from audtools.config import DataSource
from audtools.exporting.evaluation import evaluating
from audtools.formats import onboarding
from audtools.profiles import declared_ids as derived
from audtools.workspace import Workspace
from audtools.workspace.database import VISITOR_ID_TEXT, arrow

__all__ = [
    "COMPLEMENT_SQL",
    "OUTBOUND_SQL",
    "Prepared",
    "drop_temporaries",
    "prepare",
    "transition_tables",
]


@dataclass
class Prepared:
    """The counts of an export and what it will write."""

    profiles_targeted: int
    profiles_exported: int
    ids_exported: int
    ids_already_shared: int
    ids_too_long: int
    new_ids: pa.Table  # one column "id", in the order the rows are written
    parts: list[onboarding.PartPlan]


def prepare(
    ws: Workspace,
    con: duckdb.DuckDBPyConnection,
    source: DataSource,
    sid: int,
    condition: str | None,
    key: bytes | None,
    max_file_bytes: int,
) -> Prepared:
    """Fill ``_x_targeted``, ``_x_pairs``, ``_x_ids`` and ``_x_new``; count; plan the parts.

    Args:
        ws: the workspace (its configuration, for the derived-ID cache).
        con: the session's connection; the temporary tables stay on it.
        source: the data source exported through.
        sid: the shared audience's sid (its ledger, and the digits of each row).
        condition: a checked condition over the profile columns, or None for all profiles.
        key: the AES key of an encrypted data source.
        max_file_bytes: the largest part, in uncompressed bytes.
    """
    drop_temporaries(con)
    _target(con, condition)
    _pairs(ws, con, source, condition, key)
    too_long = _drop_too_long(con, source, sid)
    _new(con, source, sid)
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
    return Prepared(
        profiles_targeted=int(targeted),
        profiles_exported=int(exported),
        ids_exported=new_ids.num_rows,
        ids_already_shared=int(ids_total) - new_ids.num_rows,
        ids_too_long=too_long,
        new_ids=new_ids,
        parts=onboarding.plan_parts(lengths, sid, max_file_bytes),
    )


def _target(con: duckdb.DuckDBPyConnection, condition: str | None) -> None:
    """``_x_targeted``: the profiles for which ``condition`` is true (NULL is not)."""
    # profile_id is unique in profiles, and (profile_id, visitor_id) in visitors, whose rows
    # always belong to a profile and hold 38-digit IDs: profiles.load_profiles sees to it.
    # Without a condition the targeted profiles and their IDs are views, not copies.
    if condition:
        with evaluating(con):
            con.execute(
                "CREATE TEMP TABLE _x_targeted AS SELECT profile_id FROM profiles "
                f"WHERE ({condition}) IS TRUE"
            )
    else:
        con.execute("CREATE TEMP VIEW _x_targeted AS SELECT profile_id FROM profiles")


def _pairs(
    ws: Workspace,
    con: duckdb.DuckDBPyConnection,
    source: DataSource,
    condition: str | None,
    key: bytes | None,
) -> None:
    """``_x_pairs``: each targeted profile's IDs for the data source."""
    if source.reconciliation == "visitor_id":
        # Visitor IDs are stored as integers: their text (what the files, the ledger and the
        # transitions hold) is made once, here, into a table, rather than by each query that
        # reads the pairs (the text of a HUGEINT costs about half a microsecond per ID).
        semi = "SEMI JOIN _x_targeted t ON v.profile_id = t.profile_id" if condition else ""
        con.execute(
            f"CREATE TEMP TABLE _x_pairs AS SELECT v.profile_id, "
            f"{VISITOR_ID_TEXT.format('v.vid')} AS id FROM visitor_keys v {semi}"
        )
        return
    derived.refresh(con, ws.config, source)
    semi = "SEMI JOIN _x_targeted t ON d.profile_id = t.profile_id" if condition else ""
    keys = (
        f"SELECT d.profile_id, d.declared_id AS id FROM derived_ids d {semi} "
        "WHERE d.data_source = ? AND d.declared_id IS NOT NULL"
    )
    if not source.encrypted:
        con.execute(f"CREATE TEMP TABLE _x_pairs AS {keys}", [source.id])
    else:
        _encrypt_pairs(con, keys, source, key)


def _drop_too_long(con: duckdb.DuckDBPyConnection, source: DataSource, sid: int) -> int:
    """Leave out of ``_x_pairs`` the IDs whose row would pass AAM's line limit (SPEC §6.5).

    They are not written and not recorded as shared; a profile left without an ID counts in
    ``profiles_without_id``. Returns how many distinct IDs were left out. Visitor IDs (38
    digits) always fit: only declared IDs are measured.
    """
    if source.reconciliation != "declared_id":
        return 0
    limit = onboarding.max_id_bytes(sid)
    longest = con.execute("SELECT max(strlen(id)) FROM _x_pairs").fetchall()[0][0]
    if longest is None or longest <= limit:
        return 0
    too_long = con.execute(
        f"SELECT count(DISTINCT id) FROM _x_pairs WHERE strlen(id) > {int(limit)}"
    ).fetchall()[0][0]
    con.execute(
        "CREATE TEMP TABLE _x_fitting AS SELECT profile_id, id FROM _x_pairs "
        f"WHERE strlen(id) <= {int(limit)}"
    )
    for kind in ("VIEW", "TABLE"):
        with contextlib.suppress(duckdb.Error):
            con.execute(f"DROP {kind} IF EXISTS _x_pairs")
    with contextlib.suppress(duckdb.Error, KeyError):
        con.unregister("_x_pairs")
    con.execute("ALTER TABLE _x_fitting RENAME TO _x_pairs")
    return int(too_long)


def _new(con: duckdb.DuckDBPyConnection, source: DataSource, sid: int) -> None:
    """``_x_ids`` (each ID once) and ``_x_new`` (those the ledger does not hold)."""
    # Each new ID once, even when several profiles share it; when no two profiles share one
    # (recorded when profiles are loaded), the IDs are the pairs' own.
    if derived.unique_keys(con, source):
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


def drop_temporaries(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the export's temporary tables and views (each name is one or the other)."""
    for name in ("_x_new", "_x_ids", "_x_pairs", "_x_targeted"):
        for kind in ("VIEW", "TABLE"):
            with contextlib.suppress(duckdb.Error):
                con.execute(f"DROP {kind} IF EXISTS {name}")
    with contextlib.suppress(duckdb.Error, KeyError):
        con.unregister("_x_pairs")  # the Arrow pairs of an encrypted data source


def _encrypt_pairs(
    con: duckdb.DuckDBPyConnection, keys: str, source: DataSource, key: bytes | None
) -> None:
    """``_x_pairs`` from the cached normalised plaintexts, encrypted with the key read now."""
    from audtools.columns import aes as crypto

    assert key is not None and source.iv is not None
    plain = arrow(con, keys, [source.id])
    iv = source.iv
    # Handed to DuckDB as Arrow (scanned in place) rather than inserted into a table.
    con.register("_x_pairs", derive_pairs(
        plain, "id", lambda v: crypto.encrypt(v, key, iv, source.encoding), "id", CHUNK_ROWS
    ))


COMPLEMENT_SQL = (
    "SELECT t.profile_id FROM _x_targeted t ANTI JOIN _x_pairs p ON t.profile_id = p.profile_id "
    "ORDER BY t.profile_id"
)
"""The complement transition: the targeted profiles without an ID."""

OUTBOUND_SQL = "SELECT profile_id, id FROM _x_pairs ORDER BY profile_id, id"
"""The outbound transition: every ID of each exported profile, new or already shared."""


def transition_tables(con: duckdb.DuckDBPyConnection) -> tuple[pa.Table, pa.Table]:
    """Both transitions as Arrow tables (``profile_id, id`` and ``profile_id``)."""
    return arrow(con, OUTBOUND_SQL), arrow(con, COMPLEMENT_SQL)
