"""An import's heavy steps on a Dask cluster (``[engine] kind = "dask"``, SPEC §2.1).

The flow (:mod:`audtools.importing.flow`) stays the same; two of its steps run on the cluster,
bucket by bucket (:mod:`audtools.engine`):

- :class:`ClusterState` is the segment state as buckets of Parquet: the command copies each part
  of a batch from the drop to the engine's storage (workers never connect to the drops), one task
  per part parses it into buckets, one task per bucket writes the state's new version, and the
  version becomes current in the import's transaction;
- :func:`audtools.importing.cluster_reconcile.reconcile_on_cluster` joins the members with the
  profiles' keys, bucket by bucket.

What the cluster runs today: imports of every data source but an encrypted visitor-ID one (which
keeps running on the embedded engine, as exports do; the log says so).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb

from audtools.config import DataSource, WorkspaceConfig
from audtools.drops import Drop
from audtools.engine import datasets, tasks
from audtools.engine.cluster import Cluster, open_cluster
from audtools.importing.batches import Batch
from audtools.importing.rejects import Rejects
from audtools.importing.state import Staged, disagreement, settle_state_kind, state_table
from audtools.workspace.database import transaction

__all__ = ["ClusterState", "ImportEngine", "import_engine", "on_cluster"]

log = logging.getLogger("audtools")

_COPY_BYTES = 8 * 2**20


def on_cluster(config: WorkspaceConfig, source: DataSource) -> bool:
    """Whether an import of ``source`` runs its heavy steps on the cluster."""
    return config.engine.on_cluster and not (
        source.encrypted and source.reconciliation == "visitor_id"
    )


@dataclass
class ImportEngine:
    """One import's cluster, its storage folders and the state it writes."""

    cluster: Cluster
    root: Path
    work: Path
    keys: datasets.Version
    state: ClusterState


@contextlib.contextmanager
def import_engine(
    con: duckdb.DuckDBPyConnection, config: WorkspaceConfig, source: DataSource
) -> Iterator[ImportEngine | None]:
    """The cluster for an import of ``source``, or None when it runs on the embedded engine.

    On the cluster, before the import's transaction: versions left by an earlier run are
    collected (and again after it), the profiles' keys (visitor IDs, or the source's declared
    IDs) are bucketed if they changed, and a state the embedded engine kept is moved to
    storage. On the embedded engine, a state kept in storage (the workspace's ``[engine]`` was
    removed) is moved back to the database.
    """
    storage = config.engine.storage
    if not on_cluster(config, source):
        if config.engine.on_cluster:
            log.info("%s runs on the embedded engine (not yet on the cluster)", source.id)
        has_root = con.execute("SELECT count(*) FROM meta WHERE key = 'engine_id'").fetchall()[0][0]
        if has_root:
            datasets.move_state_back(con, datasets.storage_root(con, storage), source)
        yield None
        return
    root = datasets.storage_root(con, storage)
    datasets.collect(con, root)
    kind = datasets.id_kind(source)
    state = datasets.current(con, root, datasets.state_name(source))
    if state is not None and (state.fingerprint or "visitor") != kind:
        # The source's kind of ID changed: its state goes back, is settled, and comes out.
        datasets.move_state_back(con, root, source)
        with transaction(con):
            settle_state_kind(con, source)
    with open_cluster(config.engine) as cluster:
        keys = datasets.keys(con, root, source, config.engine.buckets)
        datasets.move_state_out(con, root, source, keys.buckets, *state_table(source))
        work = root / "work" / uuid.uuid4().hex[:12]
        work.mkdir(parents=True)
        store = ClusterState(cluster, con, root, work, source, keys.buckets)
        try:
            yield ImportEngine(cluster, root, work, keys, store)
        finally:
            # The import committed or rolled back: versions no longer current are garbage.
            with contextlib.suppress(duckdb.Error):
                datasets.collect(con, root)
            shutil.rmtree(work, ignore_errors=True)


@dataclass
class _PartRead:
    md5: str | None
    newline_count: int
    last_line_open: bool


class ClusterState:
    """A data source's segment state as buckets of Parquet (a :class:`StateStore`).

    ``version`` is the state as this import sees it: the current one, then each new version
    written by :meth:`apply` (made current in the import's transaction).
    """

    def __init__(
        self,
        cluster: Cluster,
        con: duckdb.DuckDBPyConnection,
        root: Path,
        work: Path,
        source: DataSource,
        buckets: int,
    ) -> None:
        self.cluster = cluster
        self.root = root
        self.work = work
        self.buckets = buckets
        self.kind = datasets.id_kind(source)
        self.version = datasets.current(con, root, datasets.state_name(source))
        self._staged: list[str] = []

    def stage(
        self,
        con: duckdb.DuckDBPyConnection,
        drop: Drop,
        batch: Batch,
        source: DataSource,
        progress: Callable[[int], None] | None,
        config: WorkspaceConfig,
        rejects: Rejects,
    ) -> Staged:
        """Copy the batch's parts to storage, parse them on the cluster (one task per part)."""
        folder = self.work / uuid.uuid4().hex[:8]
        folder.mkdir()
        copies = []
        started = time.monotonic()
        for index, f in enumerate(batch.files):
            copy = folder / f"part{index}"
            with drop.open(f.name.name) as src, open(copy, "wb") as dst:
                shutil.copyfileobj(src, dst, _COPY_BYTES)
            copies.append(copy)
            if progress is not None:
                progress(f.size)
        log.info("engine: %d parts staged in %.1f s", len(copies), time.monotonic() - started)
        reader = {
            "id_rule": source.reconciliation,
            "lowercase_ids": source.lowercase_ids,
            "header_rows": source.outbound_header_rows,
            "separator": source.outbound_separator,
            "limits": {
                "max_line_bytes": config.max_line_bytes,
                "max_uncompressed_bytes": config.max_uncompressed_bytes,
                "max_compression_ratio": config.max_compression_ratio,
            },
        }
        calls = [
            (str(copy), f.name.name, reader, self.buckets, f"{copy}.buckets", rejects.remaining,
             self.kind)
            for copy, f in zip(copies, batch.files, strict=True)
        ]
        results = self.cluster.map(tasks.parse_part, calls, what=f"parsing {batch.root}")
        rows = rejected = 0
        md5s: dict[str, str] = {}
        for f, done in zip(batch.files, results, strict=True):
            if "problem" in done:
                return str(done["problem"])
            rejects.add(f.name.name, done["rejects"])
            read = _PartRead(done["md5"], done["newline_count"], done["last_line_open"])
            problem = disagreement(batch, f, read)
            if problem:
                return problem
            md5s[f.name.name] = str(done["md5"])
            rows += done["rows"]
            rejected += done["rejected"]
        self._staged = [call[4] for call in calls]
        return rows, rejected, md5s

    def apply(self, con: duckdb.DuckDBPyConnection, batch: Batch, source: DataSource) -> None:
        """Write the state's new version, one task per bucket; switch to it in the caller's
        transaction."""
        new = datasets.new_version(self.root, datasets.state_name(source), self.buckets, self.kind)
        old_folder = None if self.version is None else str(self.version.folder)
        same_buckets = self.version is not None and self.version.buckets == self.buckets
        calls = []
        for bucket in range(self.buckets):
            if old_folder is None or batch.mode == "full":
                old: list[str] = []
            elif same_buckets:
                old = tasks.bucket_files(old_folder, bucket)
            else:  # another bucket count: every file may hold the bucket's IDs
                old = sorted(str(p) for p in Path(old_folder).glob("b=*/*.parquet"))
            staged = [f for folder in self._staged for f in tasks.bucket_files(folder, bucket)]
            calls.append((bucket, self.buckets, batch.mode, old, staged, str(new.folder), self.kind))
        self.cluster.map(tasks.state_bucket, calls, what=f"applying {batch.root}")
        datasets.switch(con, new)
        self.version = new
