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

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "AudtoolsError": "errors",
    "ExportResult": "exporting",
    "ImportResult": "importing",
    "Targeting": "targeting",
    "Workspace": "workspace",
    "audience_members": "audiences",
    "batches": "sharing",
    "catalog": "sharing",
    "delete_audience": "audiences",
    "delete_profiles": "profiles",
    "exclusion": "targeting",
    "export_audience": "exporting",
    "import_audience": "importing",
    "init_workspace": "workspace",
    "intersection": "targeting",
    "list_audiences": "audiences",
    "load_profiles": "profiles",
    "query": "targeting",
    "run_job": "jobs",
    "runs": "jobs",
    "save_audience": "exporting",
    "union": "targeting",
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
    from .audiences import audience_members, delete_audience, list_audiences
    from .errors import AudtoolsError
    from .exporting import ExportResult, export_audience, save_audience
    from .importing import ImportResult, import_audience
    from .jobs import run_job, runs
    from .profiles import delete_profiles, load_profiles
    from .sharing import batches, catalog
    from .targeting import Targeting, exclusion, intersection, query, union
    from .workspace import Workspace, init_workspace


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'audtools' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
