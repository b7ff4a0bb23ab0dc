"""``audtools check``: validate a workspace without running anything."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from audtools.config import WorkspaceConfig
from audtools.drops import DropUnreachable, export_drop, import_drop
from audtools.errors import AudtoolsError
from audtools.formats.onboarding import GLOBAL_DPIDS
from audtools.workspace import Workspace, as_workspace


def check_workspace(workspace: str | os.PathLike[str] | Workspace | None = None) -> dict[str, Any]:
    """Check the configuration, the keys that are set, the key columns and the drops.

    A configuration error raises (every problem listed). Everything else is collected.

    Returns:
        ``{"workspace", "problems": [...], "warnings": [...], "data_sources": {id: {...}},
        "profiles", "drops": {"import": {...}, "export": {...}}}``; no problem means the
        workspace is ready.
    """
    from audtools.importing.scan import scan_drop
    from audtools.shared_audiences import catalog_entries
    from audtools.workspace.keys import load_key

    ws = as_workspace(workspace)
    cfg = ws.config
    problems: list[str] = []
    warnings: list[str] = []
    sources: dict[str, dict[str, Any]] = {}
    drops = _check_drops(cfg, problems)
    with ws.session(purpose="check") as con:
        columns = {row[0] for row in con.execute("DESCRIBE profiles").fetchall()}
        (profiles,) = con.execute("SELECT count(*) FROM profiles").fetchone() or (0,)
        try:
            catalog_entries(ws, con)
        except AudtoolsError as exc:
            problems.append(exc.message)
        problems.extend(_future_batches(con))
        found = scan_drop(cfg, con) if drops["import"]["reachable"] else None
    if found is not None:
        problems.extend(_info_problems(found))
        for ignored in found.ignored:
            warnings.append(f"import drop: {ignored.name} is ignored: {ignored.reason}")
    for source in cfg.data_sources.values():
        status = "ok"
        if source.dpid in GLOBAL_DPIDS and source.target_data_owner is None:
            warnings.append(
                f"data source {source.id}: dpid {source.dpid} is one of AAM's global data "
                "sources, whose onboarding files need a target data owner: set "
                "target_data_owner (the AAM data source that owns the data)"
            )
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
        "drops": drops,
    }


def _check_drops(cfg: WorkspaceConfig, problems: list[str]) -> dict[str, dict[str, Any]]:
    """Connect to each drop: list the import drop, and write then remove, in the export drop, a
    file under a name no one takes for an onboarding file (SPEC §2.2).

    Returns:
        ``{"import": {"location", "reachable", "files"}, "export": {"location", "reachable",
        "writable"}}``; each failure is added to ``problems``.
    """
    out: dict[str, dict[str, Any]] = {}
    for what, location, opener in (
        ("import", cfg.import_drop, import_drop),
        ("export", cfg.export_drop, export_drop),
    ):
        with opener(cfg) as drop:
            entry: dict[str, Any] = {"location": drop.url, "reachable": False}
            entry.update({"files": None} if what == "import" else {"writable": False})
            out[what] = entry
            if isinstance(location, Path) and not location.is_dir():
                problems.append(
                    f"the {what} drop {location} is not a folder; create it or fix audtools.toml"
                )
                continue
            try:
                files = drop.list()
                entry["reachable"] = True
                if what == "import":
                    entry["files"] = len(files)
                else:
                    drop.check_writable()
                    entry["writable"] = True
            except DropUnreachable as exc:
                problems.append(f"the {what} drop: {exc.message}")
            except OSError as exc:
                problems.append(
                    f"the {what} drop {drop.url} cannot be "
                    f"{'listed' if what == 'import' else 'written'}: {exc.strerror or exc}"
                )
    return out


def _info_problems(found: Any) -> list[str]:
    """The ``.info`` files of the drop that cannot be read (their batch waits)."""
    problems: list[str] = []
    for sb in found.sources.values():
        for batch in sb.batches:
            if batch.info_problem and batch.info_problem not in problems:
                problems.append(batch.info_problem)
    for ignored in found.ignored:
        if ignored.name.lower().endswith(".info") and ignored.reason.startswith("cannot be read"):
            problems.append(f"{ignored.name} {ignored.reason}")
    return problems


def _future_batches(con: Any) -> list[str]:
    """Applied batches whose timestamp was more than a day ahead when they were applied."""
    from audtools.importing.decide import applied_in_future

    return [
        f"data source {source_id}: batch {root} was applied while its timestamp was more than a "
        "day in the future; later batches are compared with the batch before it (see CHANGELOG)"
        for source_id, root, timestamp_ms, applied_at in con.execute(
            "SELECT data_source, root, timestamp_ms, applied_at FROM batches ORDER BY data_source, root"
        ).fetchall()
        if applied_in_future(timestamp_ms, applied_at)
    ]
