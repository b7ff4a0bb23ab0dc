"""The ``[engine]`` table of ``audtools.toml`` (SPEC §2.1): where the heavy steps run.

Without ``[engine]`` (or with ``kind = "embedded"``) the workspace's DuckDB database does
everything. With ``kind = "dask"`` the heavy steps of an import run on a Dask cluster, over
Parquet datasets hash-partitioned into buckets under ``storage`` (see :mod:`audtools.engine`)::

    [engine]
    kind = "dask"
    scheduler = "local"          # a LocalCluster of `workers` processes on 127.0.0.1,
                                 # or "tcp://HOST:8786", a running scheduler
    workers = 2                  # "local" only
    worker_memory = "4GiB"       # "local" only: each worker's memory limit (default: shared out)
    storage = "engine"           # a folder every worker reads (relative: to the workspace)
    buckets = 0                  # 0: chosen from the data's size (2 M keys a bucket, 8 or more)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["EngineSettings", "parse_engine"]

EngineKind = Literal["embedded", "dask"]

_KEYS = ("buckets", "kind", "scheduler", "storage", "worker_memory", "workers")
_SCHEDULER = re.compile(r"^tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")
_MEMORY = re.compile(r"^[0-9]+(\.[0-9]+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")


@dataclass(frozen=True)
class EngineSettings:
    """The validated ``[engine]`` table.

    Attributes:
        kind: ``embedded`` (DuckDB in the workspace does everything) or ``dask``.
        scheduler: ``local`` or a ``tcp://HOST:PORT`` scheduler address.
        workers: worker processes of a ``local`` cluster.
        worker_memory: each local worker's memory limit (Dask's notation, e.g. ``"1GiB"``),
            None to share the machine's memory out.
        storage: the folder of the engine's datasets (absolute).
        buckets: buckets per dataset; 0 chooses from the data's size.
    """

    kind: EngineKind = "embedded"
    scheduler: str = "local"
    workers: int = 2
    worker_memory: str | None = None
    storage: Path = Path("engine")
    buckets: int = 0

    @property
    def on_cluster(self) -> bool:
        """Whether the heavy steps run on a Dask cluster."""
        return self.kind == "dask"


def parse_engine(data: dict[str, Any], root: Path, problems: list[str]) -> EngineSettings:
    """The ``[engine]`` table's settings, defaults filled in, problems noted."""
    table = data.get("engine", {})
    if not isinstance(table, dict):
        problems.append("[engine] must be a table")
        return EngineSettings(storage=(root / "engine").resolve())
    for key in table:
        if key not in _KEYS:
            problems.append(f"[engine]: unknown key '{key}' (allowed: {', '.join(_KEYS)})")
    kind = table.get("kind", "embedded")
    if kind not in ("embedded", "dask"):
        problems.append(f"[engine]: 'kind' is {kind!r}; allowed: embedded, dask")
        kind = "embedded"
    scheduler = table.get("scheduler", "local")
    if not isinstance(scheduler, str) or not (scheduler == "local" or _SCHEDULER.match(scheduler)):
        problems.append(
            "[engine]: 'scheduler' must be \"local\" or a scheduler address \"tcp://HOST:PORT\""
        )
        scheduler = "local"
    workers = _whole(table, "workers", 2, 1, problems)
    buckets = _whole(table, "buckets", 0, 0, problems)
    memory = table.get("worker_memory")
    if memory is not None and (not isinstance(memory, str) or not _MEMORY.match(memory)):
        problems.append(
            "[engine]: 'worker_memory' must be a size such as \"1GiB\" or \"4GB\""
        )
        memory = None
    storage = table.get("storage", "engine")
    if not isinstance(storage, str) or not storage:
        problems.append("[engine]: 'storage' must be a folder (text)")
        storage = "engine"
    elif "://" in storage:
        problems.append(
            f"[engine]: 'storage' is {storage!r}; allowed: a folder every worker reads "
            "(a shared file system); object stores are not supported yet"
        )
        storage = "engine"
    return EngineSettings(
        kind=kind,
        scheduler=scheduler,
        workers=workers,
        worker_memory=memory,
        storage=(root / storage).resolve(),
        buckets=buckets,
    )


def _whole(table: dict[str, Any], key: str, default: int, least: int, problems: list[str]) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        problems.append(f"[engine]: '{key}' must be a whole number, {least} or more")
        return default
    return value
