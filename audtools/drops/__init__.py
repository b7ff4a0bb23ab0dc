"""The one door to the drops: list, open for streaming reads, publish whole, remove.

Every read and write of the import drop (AAM's outbound batches, ``.info`` files,
``catalog.json``) and of the export drop (onboarding files) goes through a :class:`Drop`: a local
folder (:class:`~audtools.drops.local.LocalDrop`), an SFTP server
(:class:`~audtools.drops.sftp.SftpDrop`) or an S3 bucket (:class:`~audtools.drops.s3.S3Drop`),
chosen by :func:`open_drop` from the location's form (SPEC §2.2). A remote drop that cannot be
reached raises :class:`DropUnreachable` (``drop_unreachable``) after retrying transient failures.

Example:
    >>> drop = open_drop("drops/import", base=ws.root)     # doctest: +SKIP
    >>> [entry.name for entry in drop.list()]               # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from audtools.config.remote import (
    S3Location,
    S3Settings,
    SftpLocation,
    SftpSettings,
    is_remote,
    parse_location,
    redact,
)
from audtools.drops.base import Drop, DropEntry, DropUnreachable
from audtools.drops.local import LocalDrop
from audtools.errors import ConfigError

if TYPE_CHECKING:
    from audtools.config import WorkspaceConfig

__all__ = [
    "Drop",
    "DropEntry",
    "DropUnreachable",
    "LocalDrop",
    "S3Settings",
    "SftpSettings",
    "export_drop",
    "import_drop",
    "is_remote",
    "open_drop",
]


def open_drop(
    location: str | os.PathLike[str],
    *,
    base: Path | None = None,
    sftp: SftpSettings | None = None,
    s3: S3Settings | None = None,
) -> Drop:
    """The drop at ``location``: a folder (relative to ``base``, the workspace folder), an
    ``sftp://`` or an ``s3://`` URL. A remote drop connects on its first use.

    Args:
        location: the ``import_drop`` or ``export_drop`` value of ``audtools.toml``, or a path.
        base: the folder relative paths start from.
        sftp: the ``[sftp]`` settings (for an ``sftp://`` drop).
        s3: the ``[s3]`` settings with the drop's own table applied (for an ``s3://`` drop).

    Raises:
        ConfigError: a URL of another kind, or one with a password in it.
    """
    if isinstance(location, str):
        try:
            remote = parse_location(location)
        except ValueError as exc:
            raise ConfigError([f"drop {redact(location)!r}: {exc}"]) from None
        if isinstance(remote, SftpLocation):
            from audtools.drops.sftp import SftpDrop

            return SftpDrop(remote, sftp)
        if isinstance(remote, S3Location):
            from audtools.drops.s3 import S3Drop

            return S3Drop(remote, s3)
    path = Path(location)
    if not path.is_absolute() and base is not None:
        path = base / path
    return LocalDrop(path)


def import_drop(config: WorkspaceConfig) -> Drop:
    """The workspace's import drop, with its ``[sftp]`` or ``[s3]``/``[s3.import]`` settings."""
    remote = config.remote
    return open_drop(config.import_drop, base=config.root, sftp=remote.sftp, s3=remote.s3_import)


def export_drop(config: WorkspaceConfig, location: str | None = None) -> Drop:
    """The workspace's export drop (or the one at ``location``, where a pending export was
    written), with its ``[sftp]`` or ``[s3]``/``[s3.export]`` settings."""
    remote = config.remote
    where = location if location else config.export_drop
    return open_drop(where, base=config.root, sftp=remote.sftp, s3=remote.s3_export)
