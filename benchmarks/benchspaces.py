"""The workspaces of one run: copies of the template, new bare workspaces, the scratch cleared."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from benchdata import CATALOG, CONFIG, ensure_template, size_dir

# Whether a workspace made for a run is flushed to disk first (from 1 M IDs): ``run.py --no-sync``
# turns it off, to time the steps as a user runs them one after the other (issue 15's protocol).
SYNC = [True]


def fresh_workspace(n: int, name: str, drops: tuple[str, ...] = ()) -> Path:
    """A copy of the template in ``.cache/N/work/NAME`` with the batches of ``drops`` hard-linked
    into its import drop (audtools never modifies the drop), flushed to disk."""
    template = ensure_template(n)
    work = size_dir(n) / "work"
    work.mkdir(exist_ok=True)
    target = work / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(template, target)
    for drop in drops:
        link_drop(target, n, drop)
    if n >= 1_000_000 and SYNC[0]:
        os.sync()  # so that write-back of the copy does not compete with the measured run
    return target


def bare_workspace(n: int, name: str) -> Path:
    """A new workspace in ``.cache/N/work/NAME`` with the benchmark configuration and catalog and
    nothing loaded (what ``audtools profiles load`` starts from), flushed to disk."""
    from audtools.workspace import init_workspace

    work = size_dir(n) / "work"
    work.mkdir(exist_ok=True)
    target = work / name
    shutil.rmtree(target, ignore_errors=True)
    init_workspace(target)
    (target / "audtools.toml").write_text(CONFIG)
    (target / "drops" / "import" / "catalog.json").write_text(json.dumps(CATALOG, indent=2))
    if n >= 1_000_000 and SYNC[0]:
        os.sync()  # so that write-back of the previous step does not compete with the measured run
    return target


def link_drop(workspace: Path, n: int, drop: str) -> None:
    """Hard-link the batch files of ``drop`` into the workspace's import drop."""
    for f in sorted((size_dir(n) / drop).iterdir()):
        os.link(f, workspace / "drops" / "import" / f.name)


def remove_work(n: int, keep: tuple[str, ...] = ()) -> None:
    """Remove the scratch workspaces of size n, but those named in ``keep``."""
    work = size_dir(n) / "work"
    if not work.is_dir():
        return
    for child in work.iterdir():
        if child.name not in keep:
            shutil.rmtree(child, ignore_errors=True)
