"""``audtools check``: validate a workspace without running anything."""

from __future__ import annotations

import os
from typing import Any

from audtools.errors import AudtoolsError
from audtools.workspace import Workspace, as_workspace


def check_workspace(workspace: str | os.PathLike[str] | Workspace | None = None) -> dict[str, Any]:
    """Check the configuration, the keys that are set, the key columns and the drops.

    A configuration error raises (every problem listed). Everything else is collected.

    Returns:
        ``{"workspace", "problems": [...], "warnings": [...], "data_sources": {id: {...}}}``;
        no problem means the workspace is ready.
    """
    from audtools.formats.outbound import read_info
    from audtools.shared_audiences import catalog_entries
    from audtools.workspace.keys import load_key

    ws = as_workspace(workspace)
    cfg = ws.config
    problems: list[str] = []
    warnings: list[str] = []
    sources: dict[str, dict[str, Any]] = {}
    for path, what in ((cfg.import_drop, "import drop"), (cfg.export_drop, "export drop")):
        if not path.is_dir():
            problems.append(f"the {what} {path} is not a folder; create it or fix audtools.toml")
    with ws.session(purpose="check") as con:
        columns = {row[0] for row in con.execute("DESCRIBE profiles").fetchall()}
        (profiles,) = con.execute("SELECT count(*) FROM profiles").fetchone() or (0,)
        try:
            catalog_entries(ws, con)
        except AudtoolsError as exc:
            problems.append(exc.message)
    if cfg.import_drop.is_dir():
        for info in sorted(cfg.import_drop.glob("*.info")):
            try:
                read_info(info)
            except AudtoolsError as exc:
                problems.append(exc.message)
    for source in cfg.data_sources.values():
        status = "ok"
        if source.reconciliation == "declared_id" and source.reconciliation_key not in columns:
            message = (
                f"data source {source.id}: the profiles have no column "
                f"'{source.reconciliation_key}' (its reconciliation_key)"
            )
            if profiles:
                problems.append(message + "; load profiles with that column or fix audtools.toml")
                status = "key column missing"
            else:
                warnings.append(message + " yet: no profiles are loaded")
        if source.encrypted:
            where = f"${source.key_env}" if source.key_env else str(source.key_file)
            is_set = bool(os.environ.get(source.key_env)) if source.key_env else (
                (cfg.root / str(source.key_file)).exists()
            )
            if not is_set:
                warnings.append(f"data source {source.id}: its key ({where}) is not set")
                status = "key not set"
            else:
                try:
                    load_key(key_env=source.key_env, key_file=source.key_file, base_dir=cfg.root)
                except AudtoolsError as exc:
                    problems.append(f"data source {source.id}: {exc.message}")
                    status = "bad key"
        sources[source.id] = {"status": status, "dpid": source.dpid}
    return {
        "workspace": str(ws.root),
        "problems": problems,
        "warnings": warnings,
        "data_sources": sources,
        "profiles": int(profiles),
    }
