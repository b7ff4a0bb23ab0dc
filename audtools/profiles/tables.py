"""What the profile modules share: the profile columns, counting rows, dropping staged tables."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import duckdb

from audtools.workspace import Workspace

__all__ = ["PathLike", "WorkspaceArg", "count", "dropping", "profile_columns"]

PathLike = str | os.PathLike[str]
WorkspaceArg = PathLike | Workspace


def profile_columns(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The columns of the ``profiles`` table, in order, with their DuckDB types.

    Args:
        con: an open connection to the workspace database.

    Returns:
        ``{name: type}``, e.g. ``{"profile_id": "VARCHAR", "age": "BIGINT"}``.
    """
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'main' "
        "AND table_name = 'profiles' ORDER BY column_index"
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows}


def count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    """The first value of the first row of ``sql`` as an int (0 for none)."""
    row = con.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


@contextlib.contextmanager
def dropping(con: duckdb.DuckDBPyConnection, *tables: str) -> Iterator[None]:
    """Drop the temporary tables when the block ends (the connection may be kept by a caller)."""
    try:
        yield
    finally:
        for table in tables:
            with contextlib.suppress(duckdb.Error):
                con.execute(f"DROP TABLE IF EXISTS temp.{table}")
