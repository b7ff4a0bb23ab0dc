"""Profiles and their visitor IDs: load them from CSV or Parquet.

:func:`load_profiles` reads a file with a ``profile_id`` column and any others and merges it into
the ``profiles`` table by ``profile_id`` (or replaces the table with ``replace=True``);
:func:`load_visitors` adds ``profile_id,visitor_id`` rows (checked by
:mod:`audtools.profiles.visitors`). Erasing profiles is :mod:`audtools.profiles.deletion`. Each
call is one transaction under the workspace lock, and every step is a bulk DuckDB statement over
the whole file, so millions of rows load in seconds.

Files are read and typed by :mod:`audtools.profiles.files` (SPEC §7, its docstring says how):
``profile_id``, ``email``, ``mobile_phone`` and every data source's ``reconciliation_key`` column
are text, as written; other columns are typed from all their values, and merging a column with an
existing column of another type widens the column.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from audtools.columns.identifiers import ASCII_WHITESPACE
from audtools.errors import InputError
from audtools.profiles.files import FileKind, Staged, cast, stage, widen
from audtools.profiles.tables import PathLike, WorkspaceArg, count, dropping, profile_columns
from audtools.profiles.visitors import VISITORS, add_visitors
from audtools.workspace import Workspace, as_workspace
from audtools.workspace import database as store
from audtools.workspace.database import sql_identifier

__all__ = ["ProfileLoad", "load_profiles", "load_visitors", "profile_columns"]

log = logging.getLogger("audtools")

#: Columns that are always text, whatever their values look like.
TEXT_COLUMNS = ("profile_id", "email", "mobile_phone")

# SPEC §3 whitespace, as a DuckDB expression: chr(32) || chr(9) || ...
_ASCII_SPACE = " || ".join(f"chr({ord(c)})" for c in ASCII_WHITESPACE)
_ASCII_CODES = ", ".join(str(ord(c)) for c in ASCII_WHITESPACE)

_PROFILES = FileKind("_audtools_profiles_in", ("profile_id",), "bad_profiles", "profiles", False)


@dataclass(frozen=True)
class ProfileLoad:
    """What :func:`load_profiles` or :func:`load_visitors` did.

    Attributes:
        profiles_read: data rows of the profiles file (0 for :func:`load_visitors`).
        profiles_inserted: profiles that did not exist before.
        profiles_updated: existing profiles that got the file's values.
        profiles_total: profiles in the table afterwards.
        columns: the profile columns afterwards, ``profile_id`` first.
        visitors_read: data rows of the visitors file (0 without one).
        visitors_added: new ``(profile_id, visitor_id)`` pairs stored: a pair repeated in the
            file counts once, a pair already stored not at all.
        visitors_rejected: rows refused because their visitor ID is not 38 ASCII digits or their
            profile does not exist (after this call's profiles are loaded).
    """

    profiles_read: int = 0
    profiles_inserted: int = 0
    profiles_updated: int = 0
    profiles_total: int = 0
    columns: list[str] = field(default_factory=list)
    visitors_read: int = 0
    visitors_added: int = 0
    visitors_rejected: int = 0

    def to_json(self) -> dict[str, Any]:
        """The object ``audtools profiles load --json`` prints."""
        data = asdict(self)
        data["columns"] = list(self.columns)
        return data


# -- public API -----------------------------------------------------------------------------------


def load_profiles(
    workspace: WorkspaceArg,
    profiles: PathLike,
    *,
    visitors: PathLike | None = None,
    replace: bool = False,
    delimiter: str | None = None,
    encoding: str | None = None,
) -> ProfileLoad:
    """Load profiles (and optionally visitor IDs) into the workspace, in one transaction.

    Profiles are matched by ``profile_id``: a profile in the file gets the file's values for the
    file's columns (an empty field sets null), a new one is inserted, a new column is added, and
    profiles and columns absent from the file are kept. With ``replace=True`` the table becomes
    the file (its columns too, ``profile_id`` first) and the visitor IDs of profiles that no
    longer exist are dropped. Either way the cache of derived IDs is emptied.

    Args:
        workspace: the workspace folder or a :class:`~audtools.workspace.Workspace`.
        profiles: a CSV file (a header row; ``.gz`` allowed) or a Parquet file (``.parquet`` or
            ``.pq``) with a ``profile_id`` column.
        visitors: a CSV (or Parquet) file with ``profile_id`` and ``visitor_id`` columns, loaded
            after the profiles in the same transaction.
        replace: replace every profile instead of updating them.
        delimiter: the CSV column delimiter of both files (default ``,``).
        encoding: the text encoding of both CSV files (default UTF-8; any Python codec name).

    Returns:
        The counts, as :class:`ProfileLoad`.

    Raises:
        InputError: ``bad_input`` when a file cannot be read or decoded; ``bad_profiles`` when
            the profiles have no ``profile_id`` column, a row without a ``profile_id``, or
            duplicate or unnamed columns; ``duplicate_profile_id`` when a ``profile_id`` appears
            twice; ``bad_visitors`` when the visitors file lacks a column. Nothing is written.
        RefusedError: ``bad_encoding`` for an unknown encoding, ``bad_delimiter`` for an empty
            delimiter.
        WorkspaceBusy: when another process holds the workspace past ``lock_timeout``.

    Example:
        >>> load_profiles("ws", "profiles.csv", visitors="visitors.csv").profiles_total  # doctest: +SKIP
        1000
    """
    ws = as_workspace(workspace)
    text = _text_columns(ws)
    with (
        ws.session(purpose="profiles load") as con,
        dropping(con, _PROFILES.table, VISITORS.table),
    ):
        staged = stage(con, Path(profiles), _PROFILES, delimiter, encoding, text)
        _check_profile_ids(con, staged)
        staged_visitors = None
        if visitors is not None:
            staged_visitors = stage(con, Path(visitors), VISITORS, delimiter, encoding)
        with store.transaction(con):
            inserted, updated = _merge_profiles(con, staged, replace=replace)
            _invalidate_derived_ids(con)
            v_read = v_added = v_rejected = 0
            if staged_visitors is not None:
                v_read, v_added, v_rejected = add_visitors(con, staged_visitors)
            total = count(con, "SELECT count(*) FROM profiles")
            columns = list(profile_columns(con))
    result = ProfileLoad(
        profiles_read=staged.rows,
        profiles_inserted=inserted,
        profiles_updated=updated,
        profiles_total=total,
        columns=columns,
        visitors_read=v_read,
        visitors_added=v_added,
        visitors_rejected=v_rejected,
    )
    log.info(
        "loaded %s: %d profiles read, %d inserted, %d updated, %d in all%s",
        Path(profiles).name,
        result.profiles_read,
        inserted,
        updated,
        total,
        " (replaced)" if replace else "",
    )
    return result


def load_visitors(
    workspace: WorkspaceArg,
    visitors: PathLike,
    *,
    delimiter: str | None = None,
    encoding: str | None = None,
) -> ProfileLoad:
    """Add visitor IDs to existing profiles, in one transaction.

    Rows are ``profile_id,visitor_id`` (a header; other columns are ignored). A row is rejected
    and counted when its visitor ID is not exactly 38 ASCII digits or its profile does not exist.
    A pair already stored, or repeated in the file, is added once.

    Args:
        workspace: the workspace folder or a :class:`~audtools.workspace.Workspace`.
        visitors: a CSV (or Parquet) file with ``profile_id`` and ``visitor_id`` columns.
        delimiter: the CSV column delimiter (default ``,``).
        encoding: the CSV text encoding (default UTF-8).

    Returns:
        A :class:`ProfileLoad` whose ``profiles_*`` read/insert/update counts are 0.

    Raises:
        InputError: ``bad_input`` for an unreadable file, ``bad_visitors`` for a missing column.
        WorkspaceBusy: when another process holds the workspace past ``lock_timeout``.
    """
    ws = as_workspace(workspace)
    with ws.session(purpose="profiles load") as con, dropping(con, VISITORS.table):
        staged = stage(con, Path(visitors), VISITORS, delimiter, encoding)
        with store.transaction(con):
            v_read, v_added, v_rejected = add_visitors(con, staged)
            total = count(con, "SELECT count(*) FROM profiles")
            columns = list(profile_columns(con))
    return ProfileLoad(
        profiles_total=total,
        columns=columns,
        visitors_read=v_read,
        visitors_added=v_added,
        visitors_rejected=v_rejected,
    )


# -- writing --------------------------------------------------------------------------------------


def _check_profile_ids(con: duckdb.DuckDBPyConnection, staged: Staged) -> None:
    """Refuse rows without a ``profile_id`` and a ``profile_id`` that appears twice."""
    pid = staged.column("profile_id")
    # Blank IDs are trimmed only when the first character is a space (trim costs five times the
    # test); the rows of a repeated ID are looked up only when the IDs are not all different.
    is_blank = (
        f"{pid} IS NULL OR {pid} = '' OR (ascii({pid}) IN ({_ASCII_CODES}) "
        f"AND trim({pid}, {_ASCII_SPACE}) = '')"
    )
    blank = con.execute(
        f"SELECT count(*), min(rowid) FROM {staged.table} WHERE {is_blank}"
    ).fetchone()
    assert blank is not None
    if blank[0]:
        raise InputError(
            f"{staged.path}: {blank[0]} row{'s have' if blank[0] > 1 else ' has'} no profile_id "
            f"(first: row {staged.row_label(blank[1])}{_row_note(staged)}). Give every row a "
            "profile_id and load again.",
            code="bad_profiles",
            file=str(staged.path),
        )
    if count(con, f"SELECT count(DISTINCT {pid}) FROM {staged.table}") == staged.rows:
        return
    dup = con.execute(
        f"SELECT count(*), arg_min(id, first), sum(n) FROM "
        f"(SELECT {pid} AS id, min(rowid) AS first, count(*) AS n FROM {staged.table} "
        f"GROUP BY {pid} HAVING count(*) > 1)"
    ).fetchone()
    assert dup is not None
    if dup[0]:
        example = dup[1]
        rows = [
            staged.row_label(r[0])
            for r in con.execute(
                f"SELECT rowid FROM {staged.table} WHERE {pid} = ? ORDER BY rowid LIMIT 3",
                [example],
            ).fetchall()
        ]
        n_ids = int(dup[0])
        raise InputError(
            f"{staged.path}: {n_ids} profile_id{'s appear' if n_ids > 1 else ' appears'} more "
            f"than once ({int(dup[2])} rows in all); for example '{example}' on rows "
            f"{_and(rows)}{_row_note(staged)}. Keep one row per profile_id and load again; "
            "nothing was loaded.",
            code="duplicate_profile_id",
            file=str(staged.path),
            ids=n_ids,
            example=example,
            rows=rows,
        )


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _row_note(staged: Staged) -> str:
    return "; the header is row 1" if staged.kind == "csv" else ""


def _merge_profiles(
    con: duckdb.DuckDBPyConnection, staged: Staged, *, replace: bool
) -> tuple[int, int]:
    """Merge (or replace) the staged profiles; returns (inserted, updated)."""
    pid = staged.column("profile_id")
    before = count(con, "SELECT count(*) FROM profiles")
    updated = 0
    if before:
        updated = count(
            con,
            f"SELECT count(*) FROM {staged.table} WHERE {pid} IN "
            "(SELECT profile_id FROM profiles WHERE profile_id IS NOT NULL)",
        )
    others = [i for i, n in enumerate(staged.names) if n.lower() != "profile_id"]
    if replace:
        _replace_profiles(con, staged, others)
    elif before:
        _merge_into_profiles(con, staged, _target_columns(con, staged, others))
    else:
        _insert_profiles(con, staged, _target_columns(con, staged, others))
    return staged.rows - updated, updated


def _replace_profiles(con: duckdb.DuckDBPyConnection, staged: Staged, others: list[int]) -> None:
    """The profiles table becomes the staged file; visitor IDs of vanished profiles go."""
    selects = [f"{staged.column('profile_id')} AS profile_id"]
    for i in others:
        kind = staged.types[i] or "VARCHAR"
        selects.append(f"{cast(f'c{i}', kind, staged)} AS {sql_identifier(staged.names[i])}")
    con.execute(
        f"CREATE OR REPLACE TABLE profiles AS SELECT {', '.join(selects)} FROM {staged.table}"
    )
    dropped = count(
        con,
        "DELETE FROM visitor_keys WHERE profile_id IS NULL OR profile_id NOT IN "
        "(SELECT profile_id FROM profiles WHERE profile_id IS NOT NULL)",
    )
    if dropped:
        log.info("dropped %d visitor IDs of profiles that no longer exist", dropped)


def _target_columns(
    con: duckdb.DuckDBPyConnection, staged: Staged, others: list[int]
) -> list[tuple[str, str]]:
    """Add the file's new columns and widen those whose type changes.

    Returns:
        ``(table column, value expression)`` for each staged column but ``profile_id``.
    """
    existing = profile_columns(con)
    by_lower = {name.lower(): name for name in existing}
    targets: list[tuple[str, str]] = []
    for i in others:
        name = staged.names[i]
        found = by_lower.get(name.lower())
        if found is None:
            kind = staged.types[i] or "VARCHAR"
            con.execute(f"ALTER TABLE profiles ADD COLUMN {sql_identifier(name)} {kind}")
            log.info("added the profile column %s (%s)", name, kind)
            column = name
        else:
            column = found
            old = existing[found]
            kind = widen(old, staged.types[i] or old)
            if kind != old:
                con.execute(f"ALTER TABLE profiles ALTER COLUMN {sql_identifier(found)} TYPE {kind}")
                log.warning(
                    "the profile column %s was %s; it is now %s to hold the values of %s",
                    found,
                    old,
                    kind,
                    staged.path.name,
                )
        targets.append((column, cast(f"c{i}", kind, staged)))
    return targets


def _merge_into_profiles(
    con: duckdb.DuckDBPyConnection, staged: Staged, targets: list[tuple[str, str]]
) -> None:
    """Update the profiles of the file with its values and insert the new ones (one MERGE)."""
    pid = staged.column("profile_id")
    source = ", ".join([f"{pid} AS profile_id"] + [f"{e} AS {sql_identifier(c)}" for c, e in targets])
    matched = ""
    if targets:
        sets = ", ".join(f"{sql_identifier(c)} = s.{sql_identifier(c)}" for c, _ in targets)
        matched = f"WHEN MATCHED THEN UPDATE SET {sets} "
    columns = ", ".join(["profile_id"] + [sql_identifier(c) for c, _ in targets])
    values = ", ".join(["s.profile_id"] + [f"s.{sql_identifier(c)}" for c, _ in targets])
    con.execute(
        f"MERGE INTO profiles AS p USING (SELECT {source} FROM {staged.table}) AS s "
        f"ON p.profile_id = s.profile_id {matched}"
        f"WHEN NOT MATCHED THEN INSERT ({columns}) VALUES ({values})"
    )


def _insert_profiles(
    con: duckdb.DuckDBPyConnection, staged: Staged, targets: list[tuple[str, str]]
) -> None:
    """Insert the staged profiles into the empty table: a MERGE would join for nothing."""
    pid = staged.column("profile_id")
    columns = ", ".join(["profile_id"] + [sql_identifier(c) for c, _ in targets])
    values = ", ".join([pid] + [e for _, e in targets])
    # Without keeping the file's order: DuckDB's order-keeping insert leaves row groups that the
    # checkpoint at close writes a second time (10 M profiles: 11 s more, measured).
    with _any_order(con):
        con.execute(f"INSERT INTO profiles ({columns}) SELECT {values} FROM {staged.table}")


@contextlib.contextmanager
def _any_order(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Let DuckDB write rows in any order for the block (the setting is restored after)."""
    (before,) = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone() or (
        True,
    )
    con.execute("SET preserve_insertion_order = false")
    try:
        yield
    finally:
        con.execute(f"SET preserve_insertion_order = {'true' if before else 'false'}")


def _invalidate_derived_ids(con: duckdb.DuckDBPyConnection) -> None:
    """Empty the derived-ID cache: it is rebuilt from the new profiles when next needed."""
    con.execute("DELETE FROM derived_ids")
    con.execute("DELETE FROM derived_state")


def _text_columns(ws: Workspace) -> set[str]:
    keys = {s.reconciliation_key for s in ws.config.data_sources.values() if s.reconciliation_key}
    return {name.strip().lower() for name in (*TEXT_COLUMNS, *keys)}


