"""Sync jobs (SPEC §7 ``audtools run``, ``runs``, ``report``): the notebooks, the runner, failures
that leave nothing half-done, and counts equal to those of the matching command.

The papermill runs are real (a kernel each, ~5 s): they are marked ``slow`` and share one sample
workspace, built once and copied for each test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest
from click.testing import CliRunner
from conftest import sample_import

from audtools.cli.main import cli
from audtools.errors import JobError
from audtools.jobs import runner as jobs
from audtools.jobs.notebooks import read_parameters
from audtools.workspace import Workspace
from audtools.workspace.runs import load_runs, write_result

REPO = Path(__file__).parent.parent
NOTEBOOKS = REPO / "notebooks"
SHIPPED = REPO / "audtools" / "templates" / "notebooks"
IMPORT_COUNTS = ("rows_read", "rows_rejected", "members", "undecryptable", "matched", "unmatched",
                 "profiles", "addresses", "match_rate", "unmatched_reasons", "batches_applied",
                 "batches_waiting", "batches_skipped", "audience", "dry_run")
EXPORT_COUNTS = ("shared_audience", "data_source", "profiles_targeted", "profiles_exported",
                 "profiles_without_id", "ids_exported", "ids_already_shared", "dry_run")


@pytest.fixture
def template(sample_template: Path) -> Path:
    """The sample workspace, built once for the session; tests work on copies."""
    return sample_template


@pytest.fixture
def copy(template: Path, tmp_path: Path) -> Any:
    def make(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(template, target)
        return target

    return make


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args])


def snapshot(root: Path) -> dict[str, Any]:
    """Everything a failed job must leave as it was: audiences, segment state, batches,
    ledger, shared audiences, the database's runs, and every file of both drops."""
    with Workspace(root).session() as con:
        tables = {
            table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
            for table in ("audiences", "audience_members", "segment_state", "batches",
                          "batch_files", "source_state", "shared_audiences", "export_ledger",
                          "pending_exports", "runs")
        }
    files = sorted(
        (p.relative_to(root).as_posix(), p.read_bytes())
        for p in (root / "drops").rglob("*") if p.is_file()
    )
    return {"tables": tables, "files": files}


# -- the notebooks --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", jobs.NOTEBOOKS)
def test_notebooks_are_committed_clean_with_one_parameters_cell(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.metadata["language_info"]["name"] == "python"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    params = papermill.inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb"))
    assert {"workspace", "run_id"} <= set(params)
    assert not [p for p in params if "key" in p.lower()], "keys are never parameters"
    # The first cell after the parameters checks them, before anything else runs.
    after = nb.cells[nb.cells.index(tagged[0]) + 1]
    assert "_parameters(" in after.source


@pytest.mark.parametrize("name", jobs.NOTEBOOKS)
def test_shipped_notebooks_are_the_repository_notebooks(name: str) -> None:
    shipped = SHIPPED / f"{name}.ipynb"
    assert shipped.read_bytes() == (NOTEBOOKS / f"{name}.ipynb").read_bytes(), (
        f"copy notebooks/{name}.ipynb to {shipped.relative_to(REPO)}: the package ships that copy"
    )
    assert jobs.notebook_path(name) == shipped


def test_parameters_are_named_like_the_commands_options() -> None:
    imported = set(papermill.inspect_notebook(str(NOTEBOOKS / "import_audience.ipynb")))
    exported = set(papermill.inspect_notebook(str(NOTEBOOKS / "export_audience.ipynb")))
    assert {"label", "shared_audience", "data_source", "force_reconciliation", "operator"} <= imported
    assert {"where", "segment_name", "outbound_transition", "shared_audience", "data_source",
            "operator"} <= exported


# -- parameters, refusals before the run exists ----------------------------------------------------


def test_parameters_file_then_pairs_later_wins(tmp_path: Path) -> None:
    first = tmp_path / "a.yaml"
    first.write_text("label: From file\nshared_audience: 10603117\nforce_reconciliation: yes\n")
    second = tmp_path / "b.yaml"
    second.write_text("operator: analyst\n")
    params = read_parameters([first, second], [("label", "High value"), ("where", "age: 3"),
                                               ("min_match_rate", "0.7"), ("operator", "null")])
    assert params == {"label": "High value", "shared_audience": 10603117,
                      "force_reconciliation": True, "operator": None, "where": "age: 3",
                      "min_match_rate": 0.7}


def test_parameters_file_must_be_a_mapping_of_scalars(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("label: [a, b]\n")
    with pytest.raises(JobError) as err:
        read_parameters([bad])
    assert err.value.code == "bad_parameter"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(JobError) as err:
        read_parameters([bad])
    assert err.value.code == "bad_parameters_file"


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["import_audience", "-p", "labell", "x"], "unknown_parameter", "no parameter labell"),
        (["import_audience", "-p", "run_id", "x"], "reserved_parameter", "run_id cannot be set"),
        (["import_audience", "-p", "workspace", "/tmp"], "reserved_parameter", "cannot be set"),
        (["no_such_notebook"], "unknown_notebook", "Unknown notebook"),
    ],
)
def test_refused_before_the_run_exists(copy: Any, args: list[str], code: str, words: str) -> None:
    ws = copy("ws")
    result = invoke("run", "-w", ws, *args, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0]
    assert not [p for p in (ws / "runs").iterdir()], "no run was created"


def test_parameter_checks_say_what_is_wrong(copy: Any) -> None:
    ws = copy("ws")
    good = {"label": "L", "shared_audience": 10603117, "data_source": "samplesVisitorId"}
    assert jobs.import_parameters(ws, None, **good)["label"] == "L"
    assert jobs.import_parameters(ws, None, **{**good, "label": 2024})["label"] == "2024"
    for bad, words in (
        ({"label": ""}, "label must be non-empty text"),
        ({"label": True}, "label must be non-empty text"),
        ({"shared_audience": 1.5}, "shared_audience must be a sid"),
        ({"data_source": "nope"}, "data_source must be one of the data sources"),
        ({"force_reconciliation": "maybe"}, "force_reconciliation must be true or false"),
        ({"min_match_rate": 1.5}, "min_match_rate must be a number from 0 to 1"),
    ):
        with pytest.raises(JobError, match=words) as err:
            jobs.import_parameters(ws, None, **{**good, **bad})
        assert err.value.code == "bad_parameter"
    with pytest.raises(JobError, match="exactly one"):
        jobs.export_parameters(ws, None, data_source="samplesVisitorId")
    with pytest.raises(JobError, match="max_file_bytes"):
        jobs.export_parameters(ws, None, segment_name="S", data_source="samplesVisitorId",
                               max_file_bytes=0)
    args = jobs.export_parameters(ws, None, segment_name="S", data_source="samplesVisitorId",
                                  outbound_transition="out/t.csv")
    assert args["outbound_transition"] == str((ws / "out" / "t.csv").resolve())
    with pytest.raises(JobError, match="run_id must be a run ID"):
        jobs.import_parameters(ws, "not-a-run", **good)


def test_report_periods(copy: Any) -> None:
    ws = copy("ws")
    assert jobs.report_parameters(ws, None, period="all")[0].start is None
    assert jobs.report_parameters(ws, None, period="2w")[0].text == "the last 14 days"
    assert jobs.report_parameters(ws, None, period=7)[0].text == "the last 7 days"
    period, _ = jobs.report_parameters(ws, None, period="2026-01-01..2026-01-31")
    assert (period.start.isoformat(), period.end.isoformat()) == (
        "2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00")
    for bad in ("yesterday", "0d", "2026-02-01..2026-01-01", True):
        with pytest.raises(JobError, match="period must be"):
            jobs.report_parameters(ws, None, period=bad)
    with pytest.raises(JobError, match="data_source"):
        jobs.report_parameters(ws, None, data_source="nope")


# -- runs and report, from result.json files only ---------------------------------------------------


def _fake_runs(ws: Path) -> None:
    root = Workspace(ws)
    write_result(root, "20260101T000000Z-aaaaaa", {
        "run_id": "20260101T000000Z-aaaaaa", "kind": "import", "status": "succeeded",
        "audience": {"label": "Old", "type": "experience_cloud",
                     "shared_audience": {"sid": 1, "name": "S"}, "data_source": "samplesVisitorId"},
        "members": 10, "matched": 5, "unmatched": 5, "undecryptable": 0, "profiles": 5,
        "addresses": 0, "match_rate": 0.5, "unmatched_reasons": {"undecryptable": 0, "no_profile": 5},
        "available_from": "2026-01-02T00:00:00Z", "available_to": "2026-01-02T12:00:00Z",
        "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:01Z"})
    write_result(root, "20260102T000000Z-bbbbbb", {
        "run_id": "20260102T000000Z-bbbbbb", "kind": "import", "status": "failed",
        "error": {"code": "corrupt_gzip", "message": "x.sync.gz cannot be decompressed."},
        "started_at": "2026-01-02T00:00:00Z", "finished_at": "2026-01-02T00:00:01Z"})


def test_runs_lists_newest_first_from_result_files(copy: Any) -> None:
    ws = copy("ws")
    _fake_runs(ws)
    (ws / "campaign.duckdb").rename(ws / "elsewhere.duckdb")  # runs never opens the database
    result = invoke("runs", "-w", ws, "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)["runs"]
    assert [r["run_id"] for r in listed] == ["20260102T000000Z-bbbbbb", "20260101T000000Z-aaaaaa"]
    assert listed[0]["status"] == "failed" and listed[0]["error"]["code"] == "corrupt_gzip"
    text = invoke("runs", "-w", ws)
    assert text.exit_code == 0
    lines = text.stdout.splitlines()
    assert "20260102T000000Z-bbbbbb" in lines[1] and "failed" in lines[1]
    assert "10 members · 5 matched (50.0%)" in lines[2]
    frame = jobs.runs(ws)
    assert list(frame["run_id"]) == [r["run_id"] for r in listed]
    assert frame.loc[1, "match_rate"] == 0.5 and frame.loc[1, "label"] == "Old"


def test_report_command_refreshes_the_index(copy: Any) -> None:
    ws = copy("ws")
    _fake_runs(ws)
    result = invoke("report", "-w", ws, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"index": "runs/index.html", "runs": 2}
    page = (ws / "runs" / "index.html").read_text().split("Every run, newest first")[1]
    # Newest first: the failed run of 2 January, with its error, then the import of the 1st.
    assert page.index("02 Jan 2026 00:00") < page.index("01 Jan 2026 00:00")
    assert "x.sync.gz cannot be decompressed." in page and ">Old<" in page
    assert "10 members · 5 matched (50.0%) · 5 profiles" in page
    head = (ws / "runs" / "index.html").read_text().split("Every run")[0]
    assert "<img class='aud-chart' alt='Match rate of every import" in head


# -- real jobs --------------------------------------------------------------------------------------


def _counts(data: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: data[k] for k in keys}


@pytest.mark.slow
@pytest.mark.parametrize("sample", [0, 4], ids=["visitor-id", "aes-email-file-audience"])
def test_import_job_counts_equal_the_import_command(copy: Any, sample: int) -> None:
    job_ws, cli_ws = copy("job"), copy("cli")
    item = json.loads((job_ws / "samples.json").read_text())["imports"][sample]
    assert not item["force_reconciliation"]
    ran = invoke("run", "-w", job_ws, "import_audience", "-p", "label", item["label"],
                 "-p", "shared_audience", str(item["shared_audience"]),
                 "-p", "data_source", item["data_source"], "--json")
    assert ran.exit_code == 0, ran.output + ran.stderr
    printed = json.loads(ran.stdout)
    run_dir = job_ws / "runs" / printed["run_id"]
    on_disk = json.loads((run_dir / "result.json").read_text())
    assert printed == on_disk
    assert printed["report"] == f"runs/{printed['run_id']}/report.html"
    assert printed["status"] == "succeeded" and printed["kind"] == "import"

    direct = invoke("import", "-w", cli_ws, "--label", item["label"], "--shared-audience",
                    str(item["shared_audience"]), "--data-source", item["data_source"], "--json")
    assert direct.exit_code == 0, direct.output
    assert _counts(printed, IMPORT_COUNTS) == _counts(json.loads(direct.stdout), IMPORT_COUNTS)
    for key, value in item["expected"].items():
        assert (printed["audience"]["type"] if key == "type" else printed[key]) == value

    # The run folder: the executed notebook (workspace and run_id injected), its report, the
    # import's own rejects.csv and log; and the refreshed index links to the report.
    executed = nbformat.read(run_dir / "import_audience.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert f"run_id = \"{printed['run_id']}\"" in injected[0].source
    assert "widgets" not in executed.metadata
    assert {"result.json", "report.html", "import_audience.ipynb", "rejects.csv", "log"} <= {
        p.name for p in run_dir.iterdir()}
    index = (job_ws / "runs" / "index.html").read_text()
    assert f"{printed['run_id']}/report.html" in index


@pytest.mark.slow
def test_export_job_counts_equal_the_export_command(copy: Any) -> None:
    job_ws, cli_ws = copy("job"), copy("cli")
    params = {"segment_name": "Big spenders", "data_source": "samplesVisitorId",
              "where": "loyalty_points >= 500", "outbound_transition": "transitions/out.csv"}
    lines: list[str] = []
    result = jobs.run_job(job_ws, "export_audience", params, progress=lines.append)
    assert result["status"] == "succeeded" and result["kind"] == "export"
    run_id = result["run_id"]
    assert lines[0] == f"run {run_id}: running export_audience"  # text progress, no bars
    assert lines[1].startswith(f"run {run_id}: notebook done in ") and len(lines) == 2
    assert result == json.loads((job_ws / result["report"]).parent.joinpath("result.json").read_text())
    # A relative transition path of a job lands in the run's folder (issue 13, item 8).
    assert (job_ws / "runs" / run_id / "transitions" / "out.csv").is_file()
    assert not (job_ws / "transitions").exists()
    assert [p.name for p in (job_ws / "drops" / "export").iterdir()] == result["files"]

    if "export" in cli.commands:
        direct = invoke("export", "-w", cli_ws, "--segment-name", "Big spenders", "--data-source",
                        "samplesVisitorId", "--where", "loyalty_points >= 500", "--json")
        assert direct.exit_code == 0, direct.output
        expected = json.loads(direct.stdout)
    else:  # the export command is being added to cli.py; the library is what it calls
        from audtools.exporting.flow import export_audience

        expected = export_audience(cli_ws, segment_name="Big spenders",
                                   data_source="samplesVisitorId", where="loyalty_points >= 500",
                                   progress=False).to_json()
    assert _counts(result, EXPORT_COUNTS) == _counts(expected, EXPORT_COUNTS)
    assert len(result["files"]) == len(expected["files"])


@pytest.mark.slow
def test_match_rate_report_job_counts_equal_the_runs_command(copy: Any) -> None:
    ws = copy("ws")
    assert invoke("import", "-w", ws, "--label", "A", "--shared-audience", "10603117",
                  "--data-source", "samplesVisitorId").exit_code == 0
    assert invoke("import", "-w", ws, "--label", "B", "--shared-audience", "10603119",
                  "--data-source", "samplesCrmId").exit_code == 0
    _fake_runs(ws)  # January 2026: outside the last 30 days
    ran = invoke("run", "-w", ws, "match_rate_report", "-p", "period", "30d", "--json")
    assert ran.exit_code == 0, ran.output + ran.stderr
    report = json.loads(ran.stdout)
    assert report["kind"] == "report" and report["status"] == "succeeded"
    listed = json.loads(invoke("runs", "-w", ws, "--json").stdout)["runs"]
    recent = [r for r in listed if r["started_at"] >= "2026-11" and r["kind"] != "report"]
    assert report["runs_in_period"] == len(recent) == 2
    assert report["imports"] == 2 and report["exports"] == 0 and report["failed"] == 0
    assert report["match_rates"] == {r["audience"]["data_source"]: r["match_rate"] for r in recent}
    assert report["run_id"] in {r["run_id"] for r in listed if r["started_at"] == listed[0]["started_at"]}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("notebook", "params", "code", "words"),
    [
        ("import_audience",
         ["label", "X", "shared_audience", "10603117", "data_source", "samplesVisitorId",
          "force_reconciliation", "maybe"],
         "bad_parameter", "force_reconciliation must be true or false"),
        ("import_audience",
         ["label", "X", "shared_audience", "Nobody's segment", "data_source", "samplesVisitorId"],
         "unknown_shared_audience", "No shared audience is named"),
        ("export_audience",
         ["shared_audience", "424242", "data_source", "samplesVisitorId", "where", "age > 1"],
         "unknown_shared_audience", "No shared audience is named"),
    ],
    ids=["bad-parameter", "unknown-shared-audience", "export-unknown-shared-audience"],
)
def test_a_failed_job_changes_nothing_and_stays_listed(
    copy: Any, notebook: str, params: list[str], code: str, words: str
) -> None:
    ws = copy("ws")
    before = snapshot(ws)
    args = [a for i in range(0, len(params), 2) for a in ("-p", params[i], params[i + 1])]
    ran = invoke("run", "-w", ws, notebook, *args)
    assert ran.exit_code == 1
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("audtools: error: ") and words in lines[0]
    assert snapshot(ws) == before
    listed = json.loads(invoke("runs", "-w", ws, "--json").stdout)["runs"]
    assert len(listed) == 1
    run = listed[0]
    assert run["status"] == "failed" and run["error"]["code"] == code
    assert words in run["error"]["message"]
    assert (ws / run["report"]).is_file()
    assert "failed" in (ws / run["report"]).read_text()


@pytest.mark.slow
def test_a_low_match_rate_fails_the_job_after_recording_the_run(copy: Any) -> None:
    ws = copy("ws")
    ran = invoke("run", "-w", ws, "import_audience", "-p", "label", "HV", "-p", "shared_audience",
                 "10603117", "-p", "data_source", "samplesVisitorId", "-p", "min_match_rate",
                 "0.95", "--json")
    assert ran.exit_code == 1
    printed = json.loads(ran.stdout)
    assert printed["error"]["code"] == "match_rate_low"
    assert printed["status"] == "succeeded" and printed["job"]["error"]["code"] == "match_rate_low"
    assert load_runs(ws)[0]["matched"] == sample_import(ws, "Samples - High value visitors")["expected"]["matched"]
    assert "match rate" in ran.stderr and len(ran.stderr.strip().splitlines()) == 1


def test_an_interrupted_job_stays_listed_as_failed(copy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = copy("ws")

    def interrupted(*_args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs, "_execute", interrupted)
    with pytest.raises(KeyboardInterrupt):
        jobs.run_job(ws, "match_rate_report", {"period": "all"})
    (run,) = load_runs(ws)
    assert run["status"] == "failed" and run["error"]["code"] == "interrupted"
    assert run["kind"] == "report" and run["job"]["parameters"] == {"period": "all"}
