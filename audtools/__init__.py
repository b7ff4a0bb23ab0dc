"""audtools: share audiences between a Campaign database and Adobe Audience Manager.

Import AAM segments and reconcile their IDs with profiles, export targeted profiles as shared
segments, and measure how well IDs reconcile.

Example:
    >>> import audtools
    >>> ws = audtools.init_workspace("my-ws")                         # doctest: +SKIP
    >>> audtools.load_profiles(ws, "profiles.csv", visitors="visitors.csv")  # doctest: +SKIP
    >>> result = audtools.import_audience(ws, "High value", 10603117, "defaultDataSource")  # doctest: +SKIP
    >>> result.funnel                                                 # doctest: +SKIP

The names below are loaded on first use, so that ``import audtools`` (and every command of the
CLI) starts without paying for pandas and the modules it does not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from audtools.version import __version__

# public name -> the module that defines it
_EXPORTS = {
    "AudtoolsError": "errors",
    "ExportResult": "exporting.flow",
    "ImportResult": "importing.result",
    "Targeting": "exporting.targeting",
    "Workspace": "workspace",
    "audience_members": "workspace.audiences",
    "batches": "importing.drop_status",
    "catalog": "shared_audiences",
    "delete_audience": "workspace.audiences",
    "delete_profiles": "profiles.deletion",
    "exclusion": "exporting.targeting",
    "export_audience": "exporting.flow",
    "import_audience": "importing.flow",
    "init_workspace": "workspace",
    "intersection": "exporting.targeting",
    "list_audiences": "workspace.audiences",
    "load_profiles": "profiles.loading",
    "query": "exporting.targeting",
    "run_job": "jobs.runner",
    "runs": "jobs.runner",
    "save_audience": "exporting.flow",
    "union": "exporting.targeting",
}

__all__ = [
    "__version__",
    "AudtoolsError",
    "ExportResult",
    "ImportResult",
    "Targeting",
    "Workspace",
    "audience_members",
    "batches",
    "catalog",
    "delete_audience",
    "delete_profiles",
    "exclusion",
    "export_audience",
    "import_audience",
    "init_workspace",
    "intersection",
    "list_audiences",
    "load_profiles",
    "query",
    "run_job",
    "runs",
    "save_audience",
    "union",
]

if TYPE_CHECKING:
    from audtools.errors import AudtoolsError
    from audtools.exporting.flow import ExportResult, export_audience, save_audience
    from audtools.exporting.targeting import Targeting, exclusion, intersection, query, union
    from audtools.importing.drop_status import batches
    from audtools.importing.flow import import_audience
    from audtools.importing.result import ImportResult
    from audtools.jobs.runner import run_job, runs
    from audtools.profiles.deletion import delete_profiles
    from audtools.profiles.loading import load_profiles
    from audtools.shared_audiences import catalog
    from audtools.workspace import Workspace, init_workspace
    from audtools.workspace.audiences import audience_members, delete_audience, list_audiences


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'audtools' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
