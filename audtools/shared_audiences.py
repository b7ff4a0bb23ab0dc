"""The shared audiences a workspace sees: the drop's catalog and those its exports created.

The read-only view behind ``audtools catalog``, and the lookup imports and exports name shared
audiences by (SPEC §4.4).
"""

from __future__ import annotations

import os

import duckdb

from audtools.drops import Drop, import_drop
from audtools.errors import InputError
from audtools.formats.catalog import CATALOG_NAME, SharedAudience, parse_catalog, resolve
from audtools.workspace import Workspace, as_workspace

#: The largest ``catalog.json`` read (it is parsed whole, unlike batch files).
MAX_CATALOG_BYTES = 256 << 20


def read_drop_catalog(drop: Drop) -> list[SharedAudience]:
    """The entries of the import drop's ``catalog.json`` (none when it is absent), read through
    the drop whatever its kind (SPEC §2.2)."""
    entry = drop.stat(CATALOG_NAME)
    if entry is None:
        return []
    where = f"{drop.url.rstrip('/')}/{CATALOG_NAME}"
    if entry.is_link:
        raise InputError(f"{CATALOG_NAME} is a link; links are never read: replace it with the file.",
                         code="bad_catalog", file=where)
    try:
        content = drop.read_bytes(CATALOG_NAME, MAX_CATALOG_BYTES)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise InputError(f"{CATALOG_NAME} cannot be read ({exc}); fix or remove it.",
                         code="bad_catalog", file=where) from None
    if len(content) > MAX_CATALOG_BYTES:
        raise InputError(f"{CATALOG_NAME} is larger than {MAX_CATALOG_BYTES} bytes; fix it.",
                         code="bad_catalog", file=where)
    return parse_catalog(content, where)


def catalog_entries(ws: Workspace, con: duckdb.DuckDBPyConnection) -> list[SharedAudience]:
    """The drop's ``catalog.json`` entries, then the shared audiences created by exports."""
    with import_drop(ws.config) as drop:
        entries = read_drop_catalog(drop)
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

