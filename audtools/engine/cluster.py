"""The Dask cluster a workspace's heavy steps run on, and the engine's storage folder.

:func:`open_cluster` connects to the scheduler of ``[engine]`` (``tcp://HOST:PORT``), or starts a
``LocalCluster`` of worker processes on 127.0.0.1 for ``scheduler = "local"``, and closes what it
started when the block ends. :class:`Cluster` maps tasks of :mod:`audtools.engine.tasks` over
it: Dask schedules, DuckDB computes, and a worker lost mid-task has its tasks run again.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

from audtools.config.engine import EngineSettings

__all__ = ["Cluster", "open_cluster"]

log = logging.getLogger("audtools")

T = TypeVar("T")

_CONNECT_SECONDS = 30


class Cluster:
    """A connected Dask client, the engine's settings and this workspace's storage folder.

    Attributes:
        settings: the ``[engine]`` settings.
        client: the ``distributed.Client``.
        root: the folder of this workspace's datasets under ``settings.storage``.
        threads: DuckDB threads per task (a local cluster shares the machine's cores out; on
            a remote one each DuckDB uses its worker's cores).
    """

    def __init__(self, settings: EngineSettings, client: Any, threads: int | None) -> None:
        self.settings = settings
        self.client = client
        self.root = settings.storage
        self.threads = threads

    def map(
        self,
        fn: Callable[..., T],
        calls: Sequence[tuple[Any, ...]],
        *,
        what: str,
        progress: bool = False,
    ) -> list[T]:
        """Run ``fn(*args)`` for each ``args`` of ``calls`` on the cluster; the results in order.

        A task that raises makes this raise the same exception (Dask re-raises it here); a
        worker that dies mid-task has its tasks run again elsewhere (Dask's ``allowed-failures``).
        Task names are the function's name and a random token: no argument's value. The log
        gives the tasks' median and longest times and median CPU time.
        """
        started = time.monotonic()
        name = getattr(fn, "__name__", "task")
        futures = [  # named by the function and a random token: no argument's value
            self.client.submit(_timed, fn, *args, threads=self.threads,
                               key=f"{name}-{uuid.uuid4().hex}")
            for args in calls
        ]
        from distributed import as_completed

        with tqdm(total=len(futures), desc=what, unit="task", leave=False, disable=not progress) as bar:
            for _ in as_completed(futures):
                bar.update(1)
        timed: list[tuple[T, float, float]] = self.client.gather(futures)
        walls = sorted(wall for _, wall, _ in timed)
        cpus = sorted(cpu for _, _, cpu in timed)
        log.info(
            "engine: %s, %d tasks in %.1f s (per task: median %.2f s, longest %.2f s, "
            "CPU median %.2f s)", what, len(futures), time.monotonic() - started,
            walls[len(walls) // 2] if walls else 0.0, walls[-1] if walls else 0.0,
            cpus[len(cpus) // 2] if cpus else 0.0,
        )
        return [result for result, _, _ in timed]


def _timed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float, float]:
    """Run a task; its result, wall time and CPU time (the worker runs one task at a time)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


_LOCAL: dict[tuple[int, str | None], Any] = {}
"""The local clusters this process started, by (workers, worker_memory): kept until it exits,
so that a notebook's second import does not wait for worker processes to start again."""


def _local_cluster(settings: EngineSettings) -> Any:
    from distributed import LocalCluster

    key = (settings.workers, settings.worker_memory)
    cluster = _LOCAL.get(key)
    if cluster is not None and cluster.status.name == "running":
        return cluster
    cluster = LocalCluster(
        n_workers=settings.workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        memory_limit=settings.worker_memory or "auto",
        silence_logs=logging.ERROR,
    )
    if not _LOCAL:
        atexit.register(_close_local)
    _LOCAL[key] = cluster
    return cluster


def _close_local() -> None:
    for cluster in _LOCAL.values():
        with contextlib.suppress(Exception):
            cluster.close()
    _LOCAL.clear()


@contextlib.contextmanager
def open_cluster(settings: EngineSettings) -> Iterator[Cluster]:
    """Connect to the cluster of ``settings`` (starting a local one, kept for the process's
    later imports), yield it, disconnect.

    Raises:
        AudtoolsError: (code ``error``) when the scheduler does not answer.
    """
    from distributed import Client

    from audtools.errors import AudtoolsError

    Path(settings.storage).mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if settings.scheduler == "local":
            client = stack.enter_context(Client(_local_cluster(settings)))
            threads: int | None = max(1, (os.cpu_count() or 1) // settings.workers)
        else:
            try:
                client = stack.enter_context(
                    Client(settings.scheduler, timeout=_CONNECT_SECONDS)
                )
            except (OSError, TimeoutError) as exc:
                raise AudtoolsError(
                    f"The Dask scheduler at {settings.scheduler} did not answer "
                    f"({type(exc).__name__}). Start it, or set [engine] scheduler = \"local\"."
                ) from exc
            threads = None
        log.info("engine: %s, %d task slots", settings.scheduler, sum(client.nthreads().values()))
        yield Cluster(settings, client, threads)
