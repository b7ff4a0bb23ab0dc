"""Campaign's screens as Jupyter widgets, on the same package as the command line.

Three screens, each a controller object that holds its widgets and all their logic (tests drive
them without a browser), shown by leaving the object last in a notebook cell:

- :class:`CreateAudienceScreen`: *Audiences > Create*, an Experience Cloud audience imported from a
  shared audience (SPEC §5);
- :class:`SaveAudienceScreen`: the *Save audience* workflow activity, shared in the Experience
  Cloud (SPEC §6);
- :class:`MatchRateExplorer`: match rates per data source from the import's dry run.

Every action opens the workspace for itself and closes it before the screen waits for the next
event; errors are shown as one sentence, and a workspace held by another process is named, with
Retry.

Example:
    >>> from audtools.widgets import CreateAudienceScreen
    >>> CreateAudienceScreen("data/demo")          # doctest: +SKIP
"""

from __future__ import annotations

from audtools.widgets.create_audience import CreateAudienceScreen
from audtools.widgets.match_rates import MatchRateExplorer
from audtools.widgets.save_audience import SaveAudienceScreen

__all__ = ["CreateAudienceScreen", "MatchRateExplorer", "SaveAudienceScreen"]
