"""Erasing profiles with everything that names them (SPEC §7, ``audtools profiles delete``)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from audtools.profiles.files import FileKind, stage
from audtools.profiles.tables import PathLike, WorkspaceArg, count, dropping
from audtools.workspace import as_workspace
from audtools.workspace import database as store

__all__ = ["ProfileDelete", "delete_profiles"]

log = logging.getLogger("audtools")

_IDS = FileKind("_audtools_delete_in", ("profile_id",), "bad_profiles", "profile IDs", True)


@dataclass(frozen=True)
class ProfileDelete:
    """What :func:`delete_profiles` did.

    Attributes:
        ids_read: data rows of the IDs file.
        profiles_deleted: profile rows removed.
        visitors_deleted: visitor-ID rows removed.
        memberships_deleted: audience-membership rows removed.
    """

    ids_read: int = 0
    profiles_deleted: int = 0
    visitors_deleted: int = 0
    memberships_deleted: int = 0

    def to_json(self) -> dict[str, Any]:
        """The object ``audtools profiles delete --json`` prints."""
        return asdict(self)


def delete_profiles(workspace: WorkspaceArg, ids: PathLike) -> ProfileDelete:
    """Erase profiles: their rows, visitor IDs, audience memberships and cached derived IDs.

    Everything happens in one transaction. IDs that match no profile are ignored (compare
    ``profiles_deleted`` with ``ids_read``); empty IDs match nothing.

    Args:
        workspace: the workspace folder or a :class:`~audtools.workspace.Workspace`.
        ids: a CSV (or Parquet) file with a ``profile_id`` column (other columns are ignored).

    Returns:
        The counts, as :class:`ProfileDelete`.

    Raises:
        InputError: ``bad_input`` for an unreadable file, ``bad_profiles`` without a
            ``profile_id`` column.
        WorkspaceBusy: when another process holds the workspace past ``lock_timeout``.

    Example:
        >>> delete_profiles("ws", "erase.csv").profiles_deleted  # doctest: +SKIP
        2
    """
    ws = as_workspace(workspace)
    with (
        ws.session(purpose="profiles delete") as con,
        dropping(con, _IDS.table, "_audtools_delete_ids"),
    ):
        staged = stage(con, Path(ids), _IDS, None, None)
        pid = staged.column("profile_id")
        with store.transaction(con):
            con.execute(
                f"CREATE TEMP TABLE _audtools_delete_ids AS SELECT DISTINCT {pid} AS profile_id "
                f"FROM {staged.table} WHERE {pid} IS NOT NULL"
            )
            where = "WHERE profile_id IN (SELECT profile_id FROM _audtools_delete_ids)"
            memberships = count(con, f"DELETE FROM audience_members {where}")
            visitors = count(con, f"DELETE FROM visitor_keys {where}")
            con.execute(f"DELETE FROM derived_ids {where}")
            deleted = count(con, f"DELETE FROM profiles {where}")
    result = ProfileDelete(
        ids_read=staged.rows,
        profiles_deleted=deleted,
        visitors_deleted=visitors,
        memberships_deleted=memberships,
    )
    log.info(
        "deleted %d profiles (%d IDs read), %d visitor IDs, %d audience memberships",
        deleted,
        staged.rows,
        visitors,
        memberships,
    )
    return result
