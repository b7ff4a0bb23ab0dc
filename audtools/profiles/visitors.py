"""Visitor IDs of profiles: adding ``profile_id,visitor_id`` rows that are checked (SPEC §3, §7)."""

from __future__ import annotations

import logging

import duckdb

from audtools.profiles.files import FileKind, Staged
from audtools.profiles.tables import count
from audtools.workspace import database as store

__all__ = ["VISITORS", "add_visitors"]

log = logging.getLogger("audtools")

VISITORS = FileKind(
    "_audtools_visitors_in", ("profile_id", "visitor_id"), "bad_visitors", "visitors", True
)
"""A visitors file: ``profile_id`` and ``visitor_id`` columns (others are ignored)."""

_VISITOR_ID = "[0-9]{38}"  # RE2: ASCII digits only, as SPEC §3 requires


def add_visitors(con: duckdb.DuckDBPyConnection, staged: Staged) -> tuple[int, int, int]:
    """Add the staged visitor rows (inside the caller's transaction).

    A row is rejected when its visitor ID is not 38 ASCII digits or its profile does not exist;
    a pair already stored, or repeated in the file, is added once.

    Returns:
        ``(read, added, rejected)``.
    """
    pid, vid, table = staged.column("profile_id"), staged.column("visitor_id"), staged.table
    good = f"coalesce(regexp_full_match({vid}, '{_VISITOR_ID}'), false)"
    known = f"EXISTS (SELECT 1 FROM profiles AS p WHERE p.profile_id = {table}.{pid})"
    read = staged.rows
    # Stored as 128-bit integers (38 digits fit a HUGEINT), cast once here, in bulk; the view
    # ``visitors`` shows them as the 38-digit text they were read as. This statement is kept
    # as it was, to the letter: the order of the rows it stores (that of the DISTINCT, which
    # the plan decides) is the order in which an export writes the IDs, and any change to it
    # (grouping on the integer, a join instead of EXISTS, another filter) changes that order.
    added = count(
        con,
        f"INSERT INTO visitor_keys (profile_id, vid) "
        f"SELECT n.profile_id, n.vid FROM (SELECT d.profile_id, CAST(d.visitor_id AS HUGEINT) "
        f"AS vid FROM (SELECT DISTINCT {pid} AS profile_id, {vid} AS visitor_id FROM {table} "
        f"WHERE {good} AND {known}) AS d) AS n "
        "WHERE NOT EXISTS (SELECT 1 FROM visitor_keys AS v "
        "WHERE v.profile_id = n.profile_id AND v.vid = n.vid)",
    )
    bad_ids = unknown = 0
    if added < read:
        # Some row was not added (rejected, repeated or already stored): count the rejected.
        row = con.execute(
            f"SELECT count(*) FILTER (WHERE NOT {good}), "
            f"count(*) FILTER (WHERE {good} AND NOT {known}) FROM {table}"
        ).fetchone()
        assert row is not None
        bad_ids, unknown = int(row[0]), int(row[1])
    if added:
        # Recorded for the import: when no visitor ID belongs to two profiles, the count of
        # matched members needs no DISTINCT (deleting rows later keeps it true).
        con.execute(f"DELETE FROM meta WHERE key = '{store.VISITOR_IDS_UNIQUE}'")
        con.execute(
            f"INSERT INTO meta SELECT '{store.VISITOR_IDS_UNIQUE}', "
            "(count(*) = count(DISTINCT vid))::VARCHAR FROM visitor_keys"
        )
    rejected = bad_ids + unknown
    log.info(
        "visitors from %s: %d read, %d added, %d rejected (%d not 38 digits, %d unknown profile)",
        staged.path.name,
        read,
        added,
        rejected,
        bad_ids,
        unknown,
    )
    return read, added, rejected
