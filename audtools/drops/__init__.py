"""The one door to the drops: list, open for streaming reads, publish whole, remove.

Every read and write of the import drop (AAM's outbound batches, ``.info`` files,
``catalog.json``) and of the export drop (onboarding files) goes through a :class:`Drop`. Today a
drop is a local folder (:class:`~audtools.drops.local.LocalDrop`); SFTP and S3 drops come behind
the same door.

Example:
    >>> drop = open_drop("drops/import", base=ws.root)     # doctest: +SKIP
    >>> [entry.name for entry in drop.list()]               # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

from audtools.drops.base import Drop, DropEntry
from audtools.drops.local import LocalDrop

__all__ = ["Drop", "DropEntry", "LocalDrop", "open_drop"]


def open_drop(location: str | os.PathLike[str], *, base: Path | None = None) -> Drop:
    """The drop at ``location``: a folder (relative to ``base``, the workspace folder).

    Args:
        location: the ``import_drop`` or ``export_drop`` value of ``audtools.toml``, or a path.
        base: the folder relative paths start from.
    """
    path = Path(location)
    if not path.is_absolute() and base is not None:
        path = base / path
    return LocalDrop(path)
