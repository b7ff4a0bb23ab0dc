"""audtools: share audiences between a Campaign database and Adobe Audience Manager.

Import AAM segments and reconcile their IDs with profiles, export targeted profiles as shared
segments, and measure how well IDs reconcile.

Example:
    >>> import audtools
    >>> ws = audtools.init_workspace("my-ws")                         # doctest: +SKIP
    >>> audtools.load_profiles(ws, "profiles.csv", visitors="visitors.csv")  # doctest: +SKIP
    >>> result = audtools.import_audience(ws, "High value", 10603117, "defaultDataSource")  # doctest: +SKIP
    >>> result.funnel                                                 # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from .audiences import audience_members, delete_audience, list_audiences  # noqa: E402
from .errors import AudtoolsError  # noqa: E402
from .exporting import ExportResult, export_audience, save_audience  # noqa: E402
from .importing import ImportResult, import_audience  # noqa: E402
from .profiles import delete_profiles, load_profiles  # noqa: E402
from .sharing import batches, catalog  # noqa: E402
from .targeting import Targeting, exclusion, intersection, query, union  # noqa: E402
from .workspace import Workspace, init_workspace  # noqa: E402

__all__ = [
    "AudtoolsError",
    "ExportResult",
    "ImportResult",
    "Targeting",
    "Workspace",
    "__version__",
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
    "save_audience",
    "union",
]
