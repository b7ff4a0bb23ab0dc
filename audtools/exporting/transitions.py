"""The transition CSVs of an export: where they may be written, and what they hold.

A transition path is the analyst's (``--outbound-transition``, ``--complement-transition``), so
it is checked before anything runs: it must not exist (unless ``overwrite``), and it must not
name a file of the workspace that a CSV would destroy: the database, the configuration, a key,
a drop. Symbolic links and ``..`` are resolved first.

The ``profile_id`` column is made safe for spreadsheets (a value starting with ``=``, ``@``,
``+``, ``-``, a tab or a carriage return gets a leading ``'``) unless ``raw_csv`` asks for the
values as they are; the ``id`` column never changes, as it must equal the onboarding files byte
for byte (a base64 ciphertext may start with ``+``).
"""

from __future__ import annotations

import os
from pathlib import Path

from audtools.errors import RefusedError
from audtools.exporting.pairs import COMPLEMENT_SQL, OUTBOUND_SQL
from audtools.workspace import Workspace
from audtools.workspace.records import spreadsheet_safe

__all__ = ["check_transition_path", "transition_sql"]


def _protected(ws: Workspace) -> list[tuple[Path, str]]:
    """The workspace's files and folders a transition may not touch, resolved, with their names."""
    config = ws.config
    out = [
        (config.path, "the workspace's configuration"),
        (config.database, "the workspace's database"),
        (config.import_drop, "the import drop"),
        (config.export_drop, "the export drop"),
        (ws.root / "keys", "the workspace's keys"),
        (ws.root / ".audtools.lock", "the workspace's lock"),
    ]
    for source in config.data_sources.values():
        if source.key_file:
            key = Path(source.key_file).expanduser()
            out.append((key if key.is_absolute() else ws.root / key, f"the key file of {source.id}"))
    return [(Path(os.path.realpath(path)), what) for path, what in out]


def check_transition_path(ws: Workspace, path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """The resolved path of a transition CSV, once it is known safe to write.

    Raises:
        RefusedError: ``bad_output`` when the path is a folder, exists (without ``overwrite``),
            or is (or is inside) the database, the configuration, a key or a drop.
    """
    given = Path(path).expanduser()
    final = Path(os.path.realpath(given))
    for protected, what in _protected(ws):
        database_file = final.parent == protected.parent and final.name.startswith(protected.name)
        if final == protected or protected in final.parents or (
            what == "the workspace's database" and database_file
        ):
            raise RefusedError(
                f"The transition {given} would overwrite {what}; write it elsewhere.",
                code="bad_output",
            )
    if final.is_dir():
        raise RefusedError(f"The transition {given} is a folder; give a file name.", code="bad_output")
    if final.exists() and not overwrite:
        raise RefusedError(
            f"The transition {given} exists; give another path, or --overwrite to replace it.",
            code="bad_output",
        )
    return final


def transition_sql(kind: str, *, raw_csv: bool) -> str:
    """The query of the ``outbound`` or ``complement`` transition, spreadsheet-safe unless
    ``raw_csv``."""
    sql = OUTBOUND_SQL if kind == "outbound" else COMPLEMENT_SQL
    if raw_csv:
        return sql
    columns = "profile_id, id" if kind == "outbound" else "profile_id"
    safe = columns.replace("profile_id", f"{spreadsheet_safe('profile_id')} AS profile_id", 1)
    return f"SELECT {safe} FROM ({sql})"
