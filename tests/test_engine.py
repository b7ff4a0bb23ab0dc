"""The Dask engine (issue 16): the same imports on a real 2-worker ``LocalCluster`` as embedded.

The cluster is a ``distributed.LocalCluster`` of two worker processes on 127.0.0.1, started once
for the module; workspaces point ``[engine] scheduler`` at its address. Results are compared with
the embedded engine's on the same workspace (and with ``samples.json``, computed without the
import code).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import samples_json, settled
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audtools.config import load_config
from audtools.errors import ConfigError
from audtools.importing.flow import import_audience
from audtools.profiles.loading import load_profiles
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
    # Every data source's state is in the engine's buckets, none in the database.
    sources = load_config(dask).data_sources.values()
    imported = {i["data_source"] for i in samples_json(dask)["imports"]}
    expected = {f"state/{i}" for i in imported} | {"visitor_keys"} | {
        f"derived/{s.id}" for s in sources if s.id in imported and s.reconciliation == "declared_id"}
    with duckdb.connect(str(dask / "campaign.duckdb"), read_only=True) as con:
        names = {n for (n,) in con.execute("SELECT name FROM engine_datasets").fetchall()}
        kept = con.execute("SELECT count(*) FROM shown.segment_state").fetchall()[0][0]
    assert names == expected
    assert kept == 0


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


# --- small random workspaces: both engines, the same results -------------------------------

_SIDS = (100, 200)


_CRM = ("A1", "a1", "B2", "b2 ", "C3", "D4")


def _small_workspace(root: Path, links: list[tuple[int, int]], batches: list[tuple[str, list[str]]],
                     scheduler: str | None, dpid: int = 14016) -> None:
    """Profiles ``P<i>`` with visitor IDs ``vid(n)`` from ``links`` and a CRM ID from
    :data:`_CRM`, and ``batches`` (mode, rows) in the import drop of the data source ``dpid``
    (the default visitor-ID one, or 14017, ``crmDeclaredId``)."""
    init_workspace(root)
    if scheduler:
        _on_cluster(root, scheduler, buckets=3)
    profiles = sorted({p for p, _ in links})
    (root / "profiles.csv").write_text(
        "profile_id,crm_id\n" + "".join(f"P{p},{_CRM[p % len(_CRM)]}\n" for p in profiles))
    (root / "visitors.csv").write_text(
        "profile_id,visitor_id\n" + "".join(f"P{p},{n:038d}\n" for p, n in links)
    )
    load_profiles(root, root / "profiles.csv", visitors=root / "visitors.csv")
    drop = root / "drops" / "import"
    segments = [{"sid": s, "name": f"S{s}", "type": "segment", "source": "audience_manager"}
                for s in _SIDS]
    (drop / "catalog.json").write_text(json.dumps({"segments": segments}))
    for index, (mode, rows) in enumerate(batches):
        path = drop / f"ftp_46390_{dpid}_{mode}_{1_700_000_000_000 + index * 1000}.sync"
        path.write_text("".join(r + "\n" for r in rows))
        settled(path)


_row = st.tuples(
    st.integers(0, 12),
    st.sets(st.sampled_from(_SIDS)),
    st.sets(st.sampled_from(_SIDS)),
    st.booleans(),
).map(lambda t: (f"{t[0]:038d}" if not t[3] else f"x{t[0]}") + "\t"
      + ",".join(map(str, sorted(t[1]))) + "\t" + ",".join(map(str, sorted(t[2]))))


_crm_row = st.tuples(
    st.sampled_from((*_CRM, "E5", " a1", "x:y")),
    st.sets(st.sampled_from(_SIDS)),
    st.sets(st.sampled_from(_SIDS)),
).map(lambda t: t[0] + "\t" + ",".join(map(str, sorted(t[1]))) + "\t"
      + ",".join(map(str, sorted(t[2]))))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    links=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 12)), min_size=1, max_size=12,
                   unique=True),
    batches=st.lists(st.tuples(st.sampled_from(["full", "iter"]), st.lists(_row, max_size=10)),
                     min_size=1, max_size=3),
)
def test_random_workspaces_agree_on_both_engines(
    tmp_path_factory: pytest.TempPathFactory, scheduler: str,
    links: list[tuple[int, int]], batches: list[tuple[str, list[str]]],
) -> None:
    _compare_engines(tmp_path_factory, scheduler, links, batches, 14016, "defaultDataSource")


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    links=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 3)), min_size=1, max_size=8,
                   unique=True),
    batches=st.lists(st.tuples(st.sampled_from(["full", "iter"]), st.lists(_crm_row, max_size=10)),
                     min_size=1, max_size=3),
)
def test_random_declared_id_workspaces_agree_on_both_engines(
    tmp_path_factory: pytest.TempPathFactory, scheduler: str,
    links: list[tuple[int, int]], batches: list[tuple[str, list[str]]],
) -> None:
    """Plain declared IDs (``crmDeclaredId``): keys trimmed, case kept, invalid IDs rejected."""
    _compare_engines(tmp_path_factory, scheduler, links, batches, 14017, "crmDeclaredId")


def _compare_engines(
    tmp_path_factory: pytest.TempPathFactory, scheduler: str, links: list[tuple[int, int]],
    batches: list[tuple[str, list[str]]], dpid: int, source: str,
) -> None:
    results = []
    for engine in (None, scheduler):
        root = tmp_path_factory.mktemp("random") / "ws"
        _small_workspace(root, links, batches, engine, dpid)
        runs = []
        for sid in _SIDS:
            r = import_audience(root, f"L{sid}", sid, source, progress=False)
            runs.append((_result(r.to_json()), r.outcomes.to_pylist() if r.outcomes else None))
        results.append((runs, _audiences(root)))
    assert results[1] == results[0]


# --- faults: a worker lost mid-import, the client killed mid-import --------------------------

_BIG_ROWS = 1_500_000


def _big_workspace(root: Path, scheduler: str | None) -> None:
    """A workspace whose one full batch (two parts of 1.5 M rows) takes each worker a second or
    two to parse: long enough to kill something while it runs."""
    links = [(p, p * 7) for p in range(2000)]
    rows = [f"{n * 3:038d}\t100,200" for n in range(_BIG_ROWS)]
    _small_workspace(root, links, [], scheduler)
    drop = root / "drops" / "import"
    for part, half in enumerate((rows[: _BIG_ROWS // 2], rows[_BIG_ROWS // 2:])):
        path = drop / f"ftp_46390_14016_full_1700000000000-{part + 1}.sync"
        path.write_text("\n".join(half) + "\n")
        settled(path)


def _embedded_result(tmp_path: Path) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    root = tmp_path / "embedded"
    _big_workspace(root, None)
    result = import_audience(root, "L", 100, "defaultDataSource", progress=False, keep_members=False)
    return _result(result.to_json()), _audiences(root)


def test_a_worker_lost_mid_import_changes_nothing_in_the_result(
    tmp_path: Path, scheduler: str
) -> None:
    from distributed import Client

    expected = _embedded_result(tmp_path)
    root = tmp_path / "dask"
    _big_workspace(root, scheduler)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = import_audience(
                root, "L", 100, "defaultDataSource", progress=False, keep_members=False)
        except BaseException as exc:  # noqa: BLE001  (the assertion below shows it)
            outcome["error"] = exc

    with Client(scheduler) as client:
        pids = client.run(os.getpid)
        thread = threading.Thread(target=run)
        thread.start()
        killed = None
        deadline = time.monotonic() + 120
        while killed is None and thread.is_alive() and time.monotonic() < deadline:
            for worker, keys in client.processing().items():
                if any("parse_part" in str(k) for k in keys):
                    os.kill(pids[worker], signal.SIGKILL)
                    killed = worker
                    break
            time.sleep(0.01)
        thread.join(300)
        client.wait_for_workers(2, timeout=60)
    assert killed is not None, "no parsing task was seen running"
    assert "error" not in outcome, outcome.get("error")
    assert (_result(outcome["result"].to_json()), _audiences(root)) == expected


def test_a_client_killed_mid_import_applies_nothing_and_the_next_run_succeeds(
    tmp_path: Path, scheduler: str
) -> None:
    expected = _embedded_result(tmp_path)
    root = tmp_path / "dask"
    _big_workspace(root, scheduler)
    exe = Path(sys.executable).with_name("audtools")
    command = [str(exe), "import", "-w", str(root), "--label", "L", "--shared-audience", "100",
               "--data-source", "defaultDataSource", "--json", "-q"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if list((root / "engine").glob("*/work/*/*/part*")):  # parts staged: tasks run
                break
            time.sleep(0.005)
    finally:
        process.kill()
        process.wait(30)
    assert process.returncode == -signal.SIGKILL
    with duckdb.connect(str(root / "campaign.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM batches").fetchall()[0][0] == 0
        assert con.execute("SELECT count(*) FROM audiences").fetchall()[0][0] == 0
        assert con.execute(
            "SELECT count(*) FROM engine_datasets WHERE name LIKE 'state/%'").fetchall()[0][0] == 0
    result = import_audience(root, "L", 100, "defaultDataSource", progress=False, keep_members=False)
    assert (_result(result.to_json()), _audiences(root)) == expected


def test_the_import_job_notebook_runs_unchanged_on_the_cluster(
    sample_template: Path, tmp_path: Path, scheduler: str
) -> None:
    """``audtools run import_audience``: papermill's kernel, a process of its own, imports on the
    cluster; its result and report are those of the embedded engine."""
    from audtools.jobs.runner import run_job

    item = samples_json(sample_template)["imports"][0]
    params = {"label": item["label"], "shared_audience": item["shared_audience"],
              "data_source": item["data_source"]}
    results = []
    for name in ("embedded", "dask"):
        root = tmp_path / name
        shutil.copytree(sample_template, root)
        if name == "dask":
            _on_cluster(root, scheduler)
        results.append(run_job(root, "import_audience", params))
    embedded, dask = results
    for doc in results:  # paths named by the run ID
        doc.pop("report")
        doc["job"].pop("executed")
    assert _result(dask) == _result(embedded)
    with duckdb.connect(str(tmp_path / "dask" / "campaign.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM engine_datasets WHERE name LIKE 'state/%'"
                           ).fetchall()[0][0] == 1
    assert (tmp_path / "dask" / "runs" / dask["run_id"] / "report.html").is_file()
    log = (tmp_path / "dask" / "runs" / dask["run_id"] / "log").read_text(encoding="utf-8")
    assert "engine: reconciling" in log


def test_no_form_of_a_key_reaches_storage_logs_or_worker_folders(
    sample_template: Path, tmp_path: Path, scheduler: str
) -> None:
    """AES keys travel to the workers as task arguments only (wrapped so that Dask's logs of
    a failed task show nothing): never in the engine's storage, the run logs, the command's
    output or the workers' folders."""
    from distributed import Client
    from test_importing import _key_forms

    from audtools.engine.key_tasks import Secret

    root = tmp_path / "ws"
    shutil.copytree(sample_template, root)
    _on_cluster(root, scheduler)
    exe = Path(sys.executable).with_name("audtools")
    printed = b""
    for item in samples_json(root)["imports"]:
        args = [str(exe), "import", "-w", str(root), "--json", "-v", "--label", item["label"],
                "--shared-audience", str(item["shared_audience"]),
                "--data-source", item["data_source"]]
        if item["force_reconciliation"]:
            args.append("--force-reconciliation")
        done = subprocess.run(args, capture_output=True, check=True, timeout=300)
        printed += done.stdout + done.stderr
    assert b"engine: decrypting" in printed
    forms = _key_forms((root / "keys" / "demo.key").read_text().strip())
    with Client(scheduler) as client:
        folders = [Path(f) for f in client.run(lambda dask_worker: dask_worker.local_directory).values()]
    for folder in [root, *folders]:
        for path in folder.rglob("*"):
            if path.is_file() and path != root / "keys" / "demo.key":
                data = path.read_bytes()
                assert not any(form in data for form in forms), f"a form of the key is in {path}"
    assert not any(form in printed for form in forms)
    assert "demo" not in repr(Secret(b"demo")) and "demo" not in str(Secret(b"demo"))
