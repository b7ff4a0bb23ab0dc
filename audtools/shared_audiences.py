"""The shared audiences a workspace sees: the drop's catalog and those its exports created.

The read-only view behind ``audtools catalog``, and the lookup imports and exports name shared
audiences by (SPEC §4.4).
"""

from __future__ import annotations

import os

import duckdb

from audtools.formats.catalog import SharedAudience, read_catalog, resolve
from audtools.workspace import Workspace, as_workspace


def catalog_entries(ws: Workspace, con: duckdb.DuckDBPyConnection) -> list[SharedAudience]:
    """The drop's ``catalog.json`` entries, then the shared audiences created by exports."""
    entries = read_catalog(ws.config.import_drop)
    for sid, name in con.execute("SELECT sid, name FROM shared_audiences ORDER BY sid").fetchall():
        entries.append(SharedAudience(sid=int(sid), name=name, type="segment", source="campaign"))
    return entries


def catalog(workspace: str | os.PathLike[str] | Workspace | None = None) -> list[SharedAudience]:
    """The shared audiences that can be picked (SPEC §4.4).

    Example:
        >>> [a.display for a in catalog("data/demo")][:1]      # doctest: +SKIP
        ['High value visitors (10603117)']
    """
    ws = as_workspace(workspace)
    with ws.session(purpose="catalog") as con:
        return catalog_entries(ws, con)


def find_shared_audience(
    ws: Workspace, con: duckdb.DuckDBPyConnection, ref: str | int
) -> SharedAudience:
    """The shared audience named by sid or exact name (see :func:`formats.catalog.resolve`)."""
    return resolve(catalog_entries(ws, con), ref)

