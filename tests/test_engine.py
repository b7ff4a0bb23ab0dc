"""The Dask engine (issue 16): the same imports on a real 2-worker ``LocalCluster`` as embedded.

The cluster is a ``distributed.LocalCluster`` of two worker processes on 127.0.0.1, started once
for the module; workspaces point ``[engine] scheduler`` at its address. Results are compared with
the embedded engine's on the same workspace (and with ``samples.json``, computed without the
import code).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import samples_json

from audtools.config import load_config
from audtools.errors import ConfigError
from audtools.importing.flow import import_audience
from audtools.samples import create_samples
from audtools.samples.demo import play_history
from audtools.workspace import init_workspace

_VOLATILE = ("run_id", "started_at", "finished_at", "available_from", "available_to")


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A real 2-worker cluster (processes, TCP on 127.0.0.1); its scheduler's address."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, memory_limit="2GiB",
    ) as cluster:
        yield cluster.scheduler_address


def _on_cluster(root: Path, scheduler: str, buckets: int = 3) -> None:
    with (root / "audtools.toml").open("a", encoding="utf-8") as fh:
        fh.write(
            f'\n[engine]\nkind = "dask"\nscheduler = "{scheduler}"\nbuckets = {buckets}\n'
        )


def _result(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in _VOLATILE}


def _audiences(root: Path) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(root / "campaign.duckdb"), read_only=True) as con:
        return con.execute(
            "SELECT label, profile_id, address FROM audience_members ORDER BY ALL"
        ).fetchall()


def _rejects(root: Path) -> list[str]:
    return sorted(p.read_text(encoding="utf-8") for p in (root / "runs").glob("*/rejects.csv"))


def _import_all(root: Path) -> list[dict[str, Any]]:
    out = []
    for item in samples_json(root)["imports"]:
        result = import_audience(
            root, item["label"], item["shared_audience"], item["data_source"],
            force_reconciliation=item["force_reconciliation"], progress=False,
        )
        outcomes = None if result.outcomes is None else result.outcomes.to_pylist()
        out.append({**_result(result.to_json()), "outcomes": outcomes})
    return out


def test_the_sample_workspace_imports_the_same_on_the_cluster(
    sample_template: Path, tmp_path: Path, scheduler: str
) -> None:
    embedded, dask = tmp_path / "embedded", tmp_path / "dask"
    shutil.copytree(sample_template, embedded)
    shutil.copytree(sample_template, dask)
    _on_cluster(dask, scheduler)
    first = _import_all(embedded)
    second = _import_all(dask)
    assert second == first
    for item, got in zip(samples_json(dask)["imports"], second, strict=True):
        assert got["audience"]["type"] == item["expected"]["type"]
        for key, value in item["expected"].items():
            assert key == "type" or got[key] == value, (item["label"], key)
    assert _audiences(dask) == _audiences(embedded)
    assert _rejects(dask) == _rejects(embedded) != []
    # The visitor-ID state is in the engine's buckets, not in the database.
    with duckdb.connect(str(dask / "campaign.duckdb"), read_only=True) as con:
        names = [n for (n,) in con.execute("SELECT name FROM engine_datasets ORDER BY 1").fetchall()]
        rows = con.execute("SELECT count(*) FROM visitor_state").fetchall()[0][0]
    assert names == ["state/samplesAppVisitorId", "state/samplesVisitorId", "visitor_keys"]
    assert rows == 0


def test_a_history_of_iter_batches_and_a_profiles_load_agree_on_the_cluster(
    tmp_path: Path, scheduler: str
) -> None:
    """Day by day: iter batches, malformed rows, a CRM load that changes the visitor IDs."""
    days = 9
    roots = []
    for name in ("embedded", "dask"):
        root = tmp_path / name / "ws"
        create_samples(init_workspace(root), history_days=days)
        roots.append(root)
    _on_cluster(roots[1], scheduler, buckets=2)
    lines_embedded, ok_embedded = play_history(roots[0], jobs=())
    lines_dask, ok_dask = play_history(roots[1], jobs=())
    assert ok_embedded and ok_dask
    assert lines_dask == lines_embedded
    assert _audiences(roots[1]) == _audiences(roots[0])


def test_a_workspace_moves_its_state_between_engines(
    sample_template: Path, tmp_path: Path, scheduler: str
) -> None:
    """Embedded, then on the cluster, then embedded again: the state follows, counts agree."""
    root = tmp_path / "ws"
    shutil.copytree(sample_template, root)
    item = samples_json(root)["imports"][0]
    args = (item["label"], item["shared_audience"], item["data_source"])
    before = _result(import_audience(root, *args, progress=False).to_json())
    config = (root / "audtools.toml").read_text(encoding="utf-8")
    _on_cluster(root, scheduler)
    on_cluster = _result(import_audience(root, *args, progress=False).to_json())
    (root / "audtools.toml").write_text(config, encoding="utf-8")
    after = _result(import_audience(root, *args, progress=False).to_json())
    assert before["batches_applied"] > 0
    assert on_cluster == after == {**before, "batches_applied": 0, "rows_read": 0,
                                   "rows_rejected": 0, "rejects_kept": 0}
    with duckdb.connect(str(root / "campaign.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM engine_datasets WHERE name LIKE 'state/%'"
                           ).fetchall()[0][0] == 0


def test_a_dry_run_on_the_cluster_records_nothing(
    sample_template: Path, tmp_path: Path, scheduler: str
) -> None:
    root = tmp_path / "ws"
    shutil.copytree(sample_template, root)
    _on_cluster(root, scheduler)
    item = samples_json(root)["imports"][0]
    dry = import_audience(root, item["label"], item["shared_audience"], item["data_source"],
                          dry_run=True, progress=False)
    assert dry.members == item["expected"]["members"]
    with duckdb.connect(str(root / "campaign.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM batches").fetchall()[0][0] == 0
        assert con.execute("SELECT name FROM engine_datasets").fetchall() == [("visitor_keys",)]
    # The dry run's state version and work files are gone from storage.
    storage = next((root / "engine").iterdir())
    assert list((storage / "state").glob("*/*")) == []
    assert list((storage / "work").glob("*")) == []


def test_engine_settings_are_checked(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    init_workspace(root)
    with (root / "audtools.toml").open("a", encoding="utf-8") as fh:
        fh.write('\n[engine]\nkind = "spark"\nscheduler = "http://x:1"\nworkers = 0\n'
                 'storage = "s3://b/p"\nworker_memory = "lots"\ncolour = 1\n')
    with pytest.raises(ConfigError) as caught:
        load_config(root)
    text = str(caught.value)
    for word in ("'kind'", "'scheduler'", "'workers'", "'storage'", "'worker_memory'", "'colour'"):
        assert word in text
