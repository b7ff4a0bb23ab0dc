"""``audtools batches``: the import drop as a workspace sees it, batch by batch (SPEC §4).

A read-only report: it applies nothing and records no run.
"""

from __future__ import annotations

import os

from audtools.importing.state import batch_report
from audtools.workspace import Workspace, as_workspace


def batches(workspace: str | os.PathLike[str] | Workspace | None = None) -> dict[str, object]:
    """Per data source: batches applied, ready, waiting (with the failed check), skipped (with
    the reason), and the last processed file. Applies nothing."""
    ws = as_workspace(workspace)
    with ws.session(purpose="batches") as con:
        return batch_report(ws.config, con)
