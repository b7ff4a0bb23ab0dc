"""The workspace: a folder with ``audtools.toml``, the Campaign database, the drops and the runs.

:func:`init_workspace` creates one; :class:`Workspace` opens one and hands out database
sessions under the workspace lock. Every public function of audtools that touches a workspace
accepts a path or a :class:`Workspace`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import duckdb

from audtools.config import CONFIG_NAME, DEFAULT_CONFIG, WorkspaceConfig, load_config
from audtools.errors import WorkspaceError
from audtools.workspace import database as store
from audtools.workspace.records import new_run_id, owner_only, utc_text, write_atomic

__all__ = ["Workspace", "as_workspace", "init_workspace", "new_run_id", "utc_text"]

WorkspaceLike = "str | os.PathLike[str] | Workspace"


class Workspace:
    """An audtools workspace folder.

    Args:
        root: the folder holding ``audtools.toml``; default: ``$AUDTOOLS_WORKSPACE``, else the
            current folder.

    Raises:
        WorkspaceError: when the folder is not a workspace.
        ConfigError: when ``audtools.toml`` is invalid (every problem listed).

    Example:
        >>> ws = Workspace("data/demo")          # doctest: +SKIP
        >>> with ws.session() as con:            # doctest: +SKIP
        ...     con.sql("SELECT count(*) FROM profiles").fetchone()
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        if root is None:
            root = os.environ.get("AUDTOOLS_WORKSPACE") or "."
        self.root = Path(root).resolve()
        self.config: WorkspaceConfig = load_config(self.root)

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    @property
    def runs_dir(self) -> Path:
        """``ROOT/runs``: what each run leaves."""
        return self.root / "runs"

    def run_dir(self, run_id: str) -> Path:
        """``ROOT/runs/RUN_ID``."""
        return self.runs_dir / run_id

    def lock(self, run_id: str | None = None, purpose: str = "") -> store.WorkspaceLock:
        """The workspace lock (not yet taken)."""
        return store.WorkspaceLock(self.root, self.config.lock_timeout, run_id, purpose)

    @contextlib.contextmanager
    def session(
        self, run_id: str | None = None, purpose: str = ""
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """Take the lock, open and migrate the database, settle interrupted work, yield it.

        Before the block runs (before any refusal of the command), an export a crash interrupted
        is completed or removed (:func:`audtools.workspace.recovery.settle_pending_exports`).
        The connection is closed and the lock released when the block ends. Open one session per
        operation; never keep one across notebook cells.

        Raises:
            WorkspaceBusy: when another process holds the workspace past ``lock_timeout``.
            WorkspaceError: when a newer audtools migrated the database.
            AudtoolsError: ``unsettled_export`` when an interrupted export cannot be removed.
        """
        # Imported here: recovery writes run records, whose module needs this one's Workspace.
        from audtools.workspace.recovery import settle_pending_exports

        # Owner-only files for the whole session: the database, its log and spill files, and
        # every extract, transition and record written through the connection.
        with self.lock(run_id, purpose), owner_only():
            con = store.connect(self.config.database)
            # A database made before files were the owner's only becomes so now.
            with contextlib.suppress(OSError):
                os.chmod(self.config.database, 0o600)
            try:
                con = store.migrate(self.config.database, con)
                settle_pending_exports(self, con, writes_export_drop=purpose == "export")
                yield con
            finally:
                con.close()

    def settle_if_free(self) -> bool:
        """Settle interrupted work (a crashed export) unless another process holds the workspace.

        Read-only commands (``audtools runs``, ``audtools report``) call this: they never wait
        for a running job, but when the workspace is free they open it, like every command,
        so an interrupted export is completed or removed first.

        Returns:
            True when the workspace was free (and is now settled), False when it is busy.
        """
        from audtools.errors import WorkspaceBusy

        try:
            with store.WorkspaceLock(self.root, 0, None, "settle"), self.session(purpose="settle"):
                pass
        except WorkspaceBusy:
            return False
        return True


def as_workspace(workspace: str | os.PathLike[str] | Workspace | None) -> Workspace:
    """A :class:`Workspace` from a path (or a workspace, returned as is)."""
    if isinstance(workspace, Workspace):
        return workspace
    return Workspace(workspace)


def init_workspace(root: str | os.PathLike[str]) -> Workspace:
    """Create a new workspace in ``root`` with the example configuration of SPEC §2.1.

    Creates ``audtools.toml``, the database, ``drops/import``, ``drops/export`` and ``runs``.

    Raises:
        WorkspaceError: ``workspace_exists`` when the folder already holds an ``audtools.toml``.
    """
    path = Path(root)
    if (path / CONFIG_NAME).exists():
        raise WorkspaceError(
            f"{path} already holds an {CONFIG_NAME}; choose another folder or use this workspace.",
            code="workspace_exists",
        )
    path.mkdir(parents=True, exist_ok=True)
    for sub in ("drops/import", "drops/export"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    # What runs leave (results, reports, extracts) is the owner's only.
    (path / "runs").mkdir(mode=0o700, exist_ok=True)
    write_atomic(path / CONFIG_NAME, DEFAULT_CONFIG)
    ws = Workspace(path)
    with ws.session(purpose="init"):
        pass
    return ws
