"""Onboarding file names: ``ftp_dpm_DPID[_OWNER]_TIMESTAMP.sync[.N][.gz]`` (SPEC §6.5).

``OWNER`` is the data source's ``target_data_owner``, which AAM requires for IDs of its global data
sources. :func:`free_timestamp` finds the first timestamp at which no file of the drop shares an
export's root; parts are written under :func:`temp_name` first. :mod:`audtools.formats.onboarding`
re-exports every name here.

Example:
    >>> file_name(20915, 1764359400, owner=14016)
    'ftp_dpm_20915_14016_1764359400.sync'
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

__all__ = [
    "OnboardingName", "file_name", "free_timestamp", "parse_name", "part_names", "temp_name",
]

_NAME = re.compile(
    r"ftp_dpm_(?P<dpid>[0-9]+)(?:_(?P<owner>[0-9]+))?_(?P<ts>[0-9]{10})"
    r"\.sync(?:\.(?P<part>[1-9][0-9]*))?(?P<gz>\.gz)?"
)


@dataclass(frozen=True)
class OnboardingName:
    """The parts of an onboarding file name ``ftp_dpm_DPID[_OWNER]_TIMESTAMP.sync[.N][.gz]``."""

    name: str
    dpid: int
    timestamp: int
    part: int | None
    gzip: bool
    owner: int | None = None

    @property
    def root(self) -> str:
        """``ftp_dpm_DPID[_OWNER]_TIMESTAMP``: what all parts of one export share."""
        return f"{_prefix(self.dpid, self.owner)}{self.timestamp:010d}"



def _prefix(dpid: int, owner: int | None) -> str:
    return f"ftp_dpm_{int(dpid)}_" + ("" if owner is None else f"{int(owner)}_")


def file_name(
    dpid: int,
    timestamp: int,
    part: int | None = None,
    *,
    gzip: bool = False,
    owner: int | None = None,
) -> str:
    """The onboarding file name of a data source, a time and an optional part number.

    Args:
        dpid: the AAM data source ID of the IDs.
        timestamp: UTC seconds (10 digits).
        part: the part number (from 1), or None for a file that is not split.
        gzip: whether the file is gzip-compressed.
        owner: the data source's ``target_data_owner`` (AAM's global data sources need one).

    Example:
        >>> file_name(14016, 1764359400, 3)
        'ftp_dpm_14016_1764359400.sync.3'
        >>> file_name(20915, 1764359400, owner=14016)
        'ftp_dpm_20915_14016_1764359400.sync'
    """
    name = f"{_prefix(dpid, owner)}{int(timestamp):010d}.sync"
    if part is not None:
        name += f".{int(part)}"
    return name + (".gz" if gzip else "")


def part_names(
    dpid: int, timestamp: int, parts: int, *, gzip: bool = False, owner: int | None = None
) -> list[str]:
    """The names of an export of ``parts`` parts: ``.sync`` for one, ``.sync.1`` … for more."""
    if parts == 1:
        return [file_name(dpid, timestamp, gzip=gzip, owner=owner)]
    return [file_name(dpid, timestamp, n, gzip=gzip, owner=owner) for n in range(1, parts + 1)]


def parse_name(name: str) -> OnboardingName | None:
    """Parse an onboarding file name; None when ``name`` is not one.

    Example:
        >>> parse_name("ftp_dpm_14016_1764359400.sync.2.gz").part
        2
    """
    m = _NAME.fullmatch(name)
    if m is None:
        return None
    return OnboardingName(
        name=name,
        dpid=int(m["dpid"]),
        timestamp=int(m["ts"]),
        part=int(m["part"]) if m["part"] else None,
        gzip=m["gz"] is not None,
        owner=int(m["owner"]) if m["owner"] else None,
    )


def free_timestamp(
    existing: Collection[str],
    dpid: int,
    start: int,
    parts: int,
    *,
    gzip: bool = False,
    owner: int | None = None,
) -> int:
    """The first timestamp from ``start`` at which every part name of the export is free.

    A timestamp counts as taken when any name of ``existing`` (the drop's file names) has the
    root ``ftp_dpm_DPID_TS`` (a plain, split or gzip file, or a name that merely starts that
    way), so an export never shares a timestamp with another file of its data source.

    Example:
        >>> free_timestamp({"ftp_dpm_14016_1764359400.sync"}, 14016, 1764359400, 1)
        1764359401
    """
    taken: set[int] = set()
    prefix = _prefix(dpid, owner)
    for name in existing:
        if name.startswith(prefix):
            digits = name[len(prefix) : len(prefix) + 10]
            if (
                digits.isascii()
                and digits.isdigit()
                and name[len(prefix) + 10 : len(prefix) + 11] in ("", ".")
            ):
                taken.add(int(digits))
    ts = int(start)
    while ts in taken or any(
        n in existing for n in part_names(dpid, ts, parts, gzip=gzip, owner=owner)
    ):
        ts += 1
    return ts


def temp_name(run_id: str, index: int) -> str:
    """The temporary name of part ``index`` (from 1) of run ``run_id``.

    It starts with a dot and carries neither ``ftp_dpm`` nor ``.sync``, so nothing that picks up
    onboarding files takes a part before it is whole.
    """
    return f".audtools-{run_id}-part{int(index)}.tmp"
