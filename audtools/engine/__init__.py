"""The Dask engine: an import's heavy steps on a cluster, DuckDB in every task (SPEC §2.1).

Dask schedules, DuckDB computes. The big tables (the profiles' visitor IDs, the segment state)
are Parquet datasets under ``[engine] storage``, hash-partitioned by ID into buckets that each fit
a worker (:mod:`audtools.engine.datasets`); each task runs an in-memory DuckDB over one batch part
or one bucket (:mod:`audtools.engine.tasks`); :mod:`audtools.engine.cluster` connects to the
scheduler or starts a local cluster. The workspace database keeps the configuration, catalog, runs,
batch records, audiences and each dataset's current version, switched in one transaction.
"""
