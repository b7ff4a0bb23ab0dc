"""``.info`` files of the import drop remembered in the database (SPEC §4.2).

An ``.info`` is read once per (name, size, modification time) and remembered across runs: on an
SFTP or S3 drop every read is a download, and a drop keeps its ``.info`` files for as long as it
keeps their batches. What is remembered is what the file's bytes say (its entries, or why they
are not a valid ``.info``), never a failure to read it (a connection that broke off): that is
tried again next time. Only the versions the drop lists now are kept, so the table follows the
drop instead of growing with every file it ever held.
"""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa

from audtools.formats.outbound_info import InfoEntry

__all__ = ["InfoContent", "InfoKey", "remember", "remembered"]

InfoContent = list[InfoEntry] | str
"""An ``.info``'s entries, or why its content is not a valid ``.info``."""

InfoKey = tuple[str, int, int]
"""``(name, size, mtime_ns)``: one version of an ``.info`` file."""


def remembered(con: duckdb.DuckDBPyConnection, drop_url: str) -> dict[InfoKey, InfoContent]:
    """Every ``.info`` version remembered for the drop at ``drop_url``."""
    rows = con.execute(
        "SELECT name, size, mtime_ns, entries, problem FROM info_files WHERE drop_url = ?",
        [drop_url],
    ).fetchall()
    out: dict[InfoKey, InfoContent] = {}
    for name, size, mtime_ns, entries, problem in rows:
        out[(name, int(size), int(mtime_ns))] = (
            problem if entries is None else [InfoEntry(*item) for item in json.loads(entries)]
        )
    return out


def remember(
    con: duckdb.DuckDBPyConnection,
    drop_url: str,
    found: dict[InfoKey, InfoContent],
    before: dict[InfoKey, InfoContent],
) -> None:
    """Make ``found`` the drop's remembered ``.info`` versions; all others are forgotten.

    Nothing is written when ``found`` holds the same versions as ``before`` (what
    :func:`remembered` gave): a scan of an unchanged drop writes nothing. A workspace has one
    import drop, so the rows of any other drop (one moved or configured anew) go too.

    Args:
        con: an open connection (inside the caller's transaction, if any).
        drop_url: the drop, as :attr:`audtools.drops.Drop.url` shows it.
        found: the versions the drop lists now, with what their content says.
        before: the versions remembered until now.
    """
    if found.keys() == before.keys():
        return
    con.execute("DELETE FROM info_files")
    if not found:
        return
    keys = list(found)
    contents = [found[k] for k in keys]
    table = pa.table({
        "drop_url": pa.array([drop_url] * len(keys), pa.string()),
        "name": pa.array([k[0] for k in keys], pa.string()),
        "size": pa.array([k[1] for k in keys], pa.int64()),
        "mtime_ns": pa.array([k[2] for k in keys], pa.int64()),
        "entries": pa.array([None if isinstance(c, str) else _entries_json(c) for c in contents], pa.string()),
        "problem": pa.array([c if isinstance(c, str) else None for c in contents], pa.string()),
    })
    con.register("_info_files_new", table)
    try:
        con.execute(
            "INSERT INTO info_files SELECT drop_url, name, size, mtime_ns, entries, problem "
            "FROM _info_files_new"
        )
    finally:
        con.unregister("_info_files_new")


def _entries_json(entries: list[InfoEntry]) -> str:
    return json.dumps([[e.file_name, e.line_count, e.byte_size, e.md5] for e in entries])
