"""Visitor IDs of profiles: adding ``profile_id,visitor_id`` rows that are checked (SPEC §3, §7).

Visitor IDs are stored as 128-bit integers (38 digits fit a HUGEINT): the file is read once, each
ID checked and converted while it is read (NULL when it is not 38 ASCII digits), and every later
step (the profiles the rows belong to, repeats, pairs already stored) works on the integer.
Pairs are stored in the order of their first row in the file, so an export, which writes IDs in
the order it reads them, writes them in that order.
"""

from __future__ import annotations

import logging

import duckdb

from audtools.profiles.files import FileKind, Staged
from audtools.profiles.tables import count
from audtools.workspace import database as store

__all__ = ["VISITORS", "add_visitors"]

log = logging.getLogger("audtools")

_VISITOR_ID = "[0-9]{38}"  # RE2: ASCII digits only, as SPEC §3 requires

VISITORS = FileKind(
    "_audtools_visitors_in",
    ("profile_id", "visitor_id"),
    "bad_visitors",
    "visitors",
    True,
    (
        "visitor_id",
        f"CASE WHEN regexp_full_match({{}}, '{_VISITOR_ID}') THEN CAST({{}} AS HUGEINT) END",
        "HUGEINT",
    ),
)
"""A visitors file: ``profile_id`` and ``visitor_id`` columns (others are ignored), the visitor ID
staged as its integer, NULL when it is not 38 ASCII digits."""


DISTINCT_VISITOR_IDS = "SELECT count(*) FROM (SELECT vid FROM visitor_keys GROUP BY vid)"
"""How many different visitor IDs the profiles have. A grouping, not ``count(DISTINCT vid)``:
DuckDB's grouping spills to disk, while that aggregate ran out of the 2.3 GiB budget at 45 M
visitor IDs, beside the load's staged rows (30 M profiles)."""

def add_visitors(con: duckdb.DuckDBPyConnection, staged: Staged) -> tuple[int, int, int]:
    """Add the staged visitor rows (inside the caller's transaction).

    A row is rejected when its visitor ID is not 38 ASCII digits or its profile does not exist;
    a pair already stored, or repeated in the file, is added once.

    Returns:
        ``(read, added, rejected)``.
    """
    pid, vid, table = staged.column("profile_id"), staged.column("visitor_id"), staged.table
    read = staged.rows
    bad_ids = count(con, f"SELECT count(*) FROM {table} WHERE {vid} IS NULL")
    known = (
        f"SELECT s.{pid} AS profile_id, s.{vid} AS vid, s.rowid AS r FROM {table} s "
        f"SEMI JOIN profiles p ON s.{pid} = p.profile_id WHERE s.{vid} IS NOT NULL"
    )
    if count(con, "SELECT count(*) FROM visitor_keys"):
        added, unknown, unique = _add_to_stored(con, known, read - bad_ids)
    else:
        added, unknown, unique = _add_first(con, known, read - bad_ids)
    if added:
        # Recorded for the import: when no visitor ID belongs to two profiles, the count of
        # matched members needs no DISTINCT (deleting rows later keeps it true).
        con.execute(f"DELETE FROM meta WHERE key = '{store.VISITOR_IDS_UNIQUE}'")
        con.execute(
            f"INSERT INTO meta VALUES ('{store.VISITOR_IDS_UNIQUE}', ?)", [str(unique).lower()]
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


def _add_first(con: duckdb.DuckDBPyConnection, known: str, valid: int) -> tuple[int, int, bool]:
    """Into an empty ``visitor_keys``: every row of a known profile, then repeats removed.

    Returns:
        ``(added, rows of unknown profiles, no visitor ID belongs to two profiles)``.
    """
    rows = count(
        con, f"INSERT INTO visitor_keys (profile_id, vid) SELECT profile_id, vid FROM ({known})"
    )
    ids = count(con, DISTINCT_VISITOR_IDS)
    if ids == rows:  # each ID once: no repeated pair, and no ID of two profiles
        return rows, valid - rows, True
    # Rare: an ID of several profiles, or a pair repeated. The first row of each pair stays.
    repeats = count(
        con,
        "DELETE FROM visitor_keys WHERE rowid NOT IN "
        "(SELECT min(rowid) FROM visitor_keys GROUP BY profile_id, vid)",
    )
    return rows - repeats, valid - rows, ids == rows - repeats


def _add_to_stored(con: duckdb.DuckDBPyConnection, known: str, valid: int) -> tuple[int, int, bool]:
    """Into ``visitor_keys`` holding pairs: the file's new pairs, each once, in file order.

    Returns:
        ``(added, rows of unknown profiles, no visitor ID belongs to two profiles)``.
    """
    con.execute(f"CREATE OR REPLACE TEMP TABLE _audtools_visitors_known AS {known}")
    try:
        rows = count(con, "SELECT count(*) FROM _audtools_visitors_known")
        added = count(
            con,
            "INSERT INTO visitor_keys (profile_id, vid) SELECT n.profile_id, n.vid FROM "
            "(SELECT profile_id, vid, min(r) AS r FROM _audtools_visitors_known "
            "GROUP BY profile_id, vid) n ANTI JOIN visitor_keys v "
            "ON v.profile_id = n.profile_id AND v.vid = n.vid ORDER BY n.r",
        )
    finally:
        con.execute("DROP TABLE IF EXISTS temp._audtools_visitors_known")
    unique = count(
        con, f"SELECT ((SELECT count(*) FROM visitor_keys) = ({DISTINCT_VISITOR_IDS}))::INTEGER"
    )
    return added, valid - rows, bool(unique)
