"""What audtools writes and draws from hostile input (issue 13, items 8, 14 to 16, 18 to 20):
transition paths, spreadsheet cells, file modes, chart text, -p values, kernel noise.

Each test is built from the reproduction of its item, on a real sample workspace or real files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import error_of, invoke

from audtools.jobs import history

SECRET = "00112233445566778899aabbccddeeff"


@pytest.fixture
def ws(sample_copy: Path) -> Path:
    return sample_copy


# -- 8: transition paths --------------------------------------------------------------------------


def _export(ws: Path, *extra: Any) -> Any:
    return invoke("export", "-w", ws, "--where", "loyalty_points >= 1000", "--segment-name", "T",
                  "--data-source", "samplesVisitorId", "--json", *extra)


@pytest.mark.parametrize(
    "target",
    ["campaign.duckdb", "campaign.duckdb.wal", "audtools.toml", "keys/demo.key",
     "drops/import/catalog.json", "drops/export/x.csv", "runs/../campaign.duckdb"],
)
def test_transition_never_overwrites_the_workspace(ws: Path, target: str) -> None:
    before = {p: p.read_bytes() for p in ws.rglob("*") if p.is_file() and p.name != ".audtools.lock"}
    for flag in ([], ["--overwrite"]):
        result = _export(ws, "--outbound-transition", ws / target, *flag)
        assert error_of(result)["code"] == "bad_output", result.output
    after = {p: p.read_bytes() for p in ws.rglob("*") if p.is_file() and p.name != ".audtools.lock"}
    assert after == before


def test_transition_through_a_link_is_checked_at_its_target(ws: Path, tmp_path: Path) -> None:
    (tmp_path / "link.csv").symlink_to(ws / "campaign.duckdb")
    assert error_of(_export(ws, "--outbound-transition", tmp_path / "link.csv", "--overwrite"))[
        "code"] == "bad_output"


def test_transition_that_exists_needs_overwrite(ws: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    out.write_text("mine\n")
    result = _export(ws, "--outbound-transition", out)
    assert error_of(result)["code"] == "bad_output" and "--overwrite" in result.stdout
    assert out.read_text() == "mine\n"
    assert _export(ws, "--outbound-transition", out, "--overwrite").exit_code == 0
    assert out.read_text().startswith("profile_id,id\n")


def test_job_transition_relative_path_lands_in_the_run(ws: Path) -> None:
    from audtools.jobs.parameters import export_parameters

    run_id = "20261207T000000Z-abcdef"
    args = export_parameters(str(ws), run_id, segment_name="S", data_source="samplesVisitorId",
                             outbound_transition="../../campaign.duckdb.csv")
    assert args["outbound_transition"] == str((ws / "campaign.duckdb.csv").resolve())
    args = export_parameters(str(ws), run_id, segment_name="S", data_source="samplesVisitorId",
                             outbound_transition="out.csv")
    assert args["outbound_transition"] == str(ws / "runs" / run_id / "out.csv")


# -- 15: files for spreadsheets -------------------------------------------------------------------


def _hostile_ids(ws: Path) -> None:
    import duckdb

    con = duckdb.connect(str(ws / "campaign.duckdb"))
    try:
        for old, new in (("P000001", "=HYPERLINK(\"http://x\")"), ("P000002", "+33612345678"),
                         ("P000003", "-1+2"), ("P000004", "@SUM(A1)")):
            for table in ("profiles", "visitor_keys"):
                con.execute(f"UPDATE {table} SET profile_id = ? WHERE profile_id = ?", [new, old])
    finally:
        con.close()


def test_transitions_neutralise_formulas_but_never_the_id(ws: Path, tmp_path: Path) -> None:
    import csv

    _hostile_ids(ws)
    safe, raw = tmp_path / "safe.csv", tmp_path / "raw.csv"
    result = invoke("export", "-w", ws, "--segment-name", "All", "--data-source",
                    "samplesVisitorId", "--json", "--outbound-transition", safe)
    assert result.exit_code == 0, result.output
    assert invoke("export", "-w", ws, "--shared-audience", "All", "--data-source",
                  "samplesVisitorId", "--json", "--outbound-transition", raw,
                  "--raw-csv").exit_code == 0
    with open(safe, newline="") as fh:
        safe_rows = list(csv.DictReader(fh))
    with open(raw, newline="") as fh:
        raw_rows = list(csv.DictReader(fh))
    ids = {r["profile_id"] for r in safe_rows}
    assert {"'=HYPERLINK(\"http://x\")", "+33612345678", "'-1+2", "'@SUM(A1)"} <= ids
    assert {"=HYPERLINK(\"http://x\")", "-1+2", "@SUM(A1)"} <= {r["profile_id"] for r in raw_rows}
    # The id column equals the onboarding files, byte for byte.
    written = set()
    for path in (ws / "drops" / "export").iterdir():
        for line in path.read_text().splitlines():
            written.add(line.split("\t")[0])
    assert safe_rows and {r["id"] for r in safe_rows} <= written
    assert [r["id"] for r in safe_rows] == [r["id"] for r in raw_rows]


def test_members_extract_neutralises_formulas(ws: Path, tmp_path: Path) -> None:
    _hostile_ids(ws)
    assert invoke("import", "-w", ws, "--label", "A", "--shared-audience", 10603117,
                  "--data-source", "samplesVisitorId").exit_code == 0
    import duckdb

    con = duckdb.connect(str(ws / "campaign.duckdb"))
    try:
        first = con.execute("SELECT min(profile_id) FROM audience_members WHERE label='A'").fetchone()
        con.execute("UPDATE audience_members SET profile_id = '=1+1' WHERE profile_id = ?", [first[0]])
    finally:
        con.close()
    out, raw = tmp_path / "m.csv", tmp_path / "raw.csv"
    assert invoke("audiences", "members", "-w", ws, "A", "-o", out).exit_code == 0
    assert invoke("audiences", "members", "-w", ws, "A", "-o", raw, "--raw-csv").exit_code == 0
    assert "'=1+1" in out.read_text().splitlines()
    assert "=1+1" in raw.read_text().splitlines()


# -- 16: owner-only files -------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.slow
def test_files_are_for_their_owner_only(tmp_path: Path) -> None:
    from audtools.samples import create_samples
    from audtools.workspace import init_workspace

    old = os.umask(0o022)
    try:
        root = tmp_path / "ws"
        create_samples(init_workspace(root))
        assert invoke("import", "-w", root, "--label", "A", "--shared-audience", 10603117,
                      "--data-source", "samplesVisitorId").exit_code == 0
        assert _export(root, "--outbound-transition", tmp_path / "t.csv").exit_code == 0
        assert invoke("audiences", "members", "-w", root, "A", "-o", tmp_path / "m.csv").exit_code == 0
        ran = invoke("run", "-w", root, "match_rate_report", "-p", "period", "all", "--json")
        assert ran.exit_code == 0, ran.output
        assert os.umask(0o022) == 0o022  # the process's umask is restored
    finally:
        os.umask(old)
    assert _mode(root / "campaign.duckdb") == 0o600
    assert _mode(root / "keys" / "demo.key") == 0o600
    assert _mode(tmp_path / "t.csv") == 0o600 and _mode(tmp_path / "m.csv") == 0o600
    assert _mode(root / "runs") == 0o700
    written = [p for p in (root / "runs").rglob("*") if p.is_file()]
    names = {p.name for p in written}
    assert {"result.json", "rejects.csv", "report.html", "match_rate_report.ipynb", "index.html"} <= names
    assert {p.name: oct(_mode(p)) for p in written if _mode(p) & 0o077} == {}


# -- 14 and 18: text drawn in charts, charts that fail --------------------------------------------

HOSTILE_LABEL = r"$\undefinedcmd$ jane.doe@example.com"


def test_charts_draw_labels_scrubbed_and_plain() -> None:
    from audtools import charts

    result = {"members": 10, "matched": 5, "profiles": 5, "match_rate": 0.5,
              "audience": {"label": HOSTILE_LABEL, "type": "experience_cloud"}}
    fig = charts.funnel_chart(result)
    title = fig.axes[0].get_title(loc="left")
    assert "jane.doe" not in title and "…" in title
    assert charts.figure_png(fig).startswith(b"\x89PNG")  # mathtext would raise here
    frame = history.runs_frame([{
        "run_id": "r1", "kind": "import", "status": "succeeded", "started_at": "2026-12-01T00:00:00Z",
        "audience": {"label": HOSTILE_LABEL, "data_source": "$x$"}, "match_rate": 0.5,
        "undecryptable": 0, "unmatched_reasons": {"no_profile": 3}}])
    for make in (charts.match_rate_chart, charts.unmatched_chart):
        fig = make(frame)
        texts = [t.get_text() for t in fig.axes[0].get_xticklabels()]
        assert not any("jane.doe" in t for t in texts)
        assert charts.figure_png(fig).startswith(b"\x89PNG")


def test_a_chart_that_fails_shows_a_note() -> None:
    from matplotlib.figure import Figure

    from audtools.jobs.formatting import chart_or_note

    fig = Figure()
    fig.add_subplot().set_title(r"$\undefinedcmd$")
    note = chart_or_note(fig, "The funnel")
    assert "could not be drawn" in note and "The funnel" in note
    assert "could not be drawn" in chart_or_note(lambda: 1 / 0, "x")


@pytest.mark.slow
def test_hostile_label_never_fails_recorded_jobs(ws: Path) -> None:
    from audtools.jobs.runner import run_job

    params = {"label": HOSTILE_LABEL, "shared_audience": 10603117, "data_source": "samplesVisitorId"}
    result = run_job(ws, "import_audience", params)
    assert result["status"] == "succeeded"
    report = (ws / result["report"]).read_text(encoding="utf-8")
    assert "jane.doe@example.com" not in report
    again = run_job(ws, "import_audience", {**params, "shared_audience": 10603118,
                                            "label": "Second"})
    assert again["status"] == "succeeded"
    assert run_job(ws, "match_rate_report", {"period": "all"})["status"] == "succeeded"


# -- 19: -p values --------------------------------------------------------------------------------


def test_p_values_of_text_parameters_are_taken_as_written() -> None:
    from audtools.jobs.notebooks import notebook_parameters, notebook_path, read_parameters

    export = notebook_parameters(notebook_path("export_audience"))
    where = "opt_in AND x <> 'y' #note"
    got = read_parameters((), [("where", where), ("segment_name", "007"), ("gzip", "true"),
                               ("max_file_bytes", "1000")], export)
    assert got == {"where": where, "segment_name": "007", "gzip": True, "max_file_bytes": 1000}
    imported = notebook_parameters(notebook_path("import_audience"))
    got = read_parameters((), [("label", "007"), ("shared_audience", "10603117"),
                               ("force_reconciliation", "true")], imported)
    assert got == {"label": "007", "shared_audience": "10603117", "force_reconciliation": True}
    help_text = " ".join(invoke("run", "-h").output.split())
    assert "taken as written" in help_text and "-f" in help_text


def test_p_label_007_is_the_label_007(ws: Path) -> None:
    result = invoke("run", "-w", ws, "import_audience", "-p", "label", "007", "-p",
                    "shared_audience", 10603117, "-p", "data_source", "samplesVisitorId", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["audience"]["label"] == "007"


# -- 20: no kernel noise --------------------------------------------------------------------------


@pytest.mark.slow
def test_job_output_has_no_kernel_log(ws: Path) -> None:
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("audtools")
    done = subprocess.run(
        [str(exe), "run", "-w", str(ws), "match_rate_report", "-p", "period", "all"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "IPKernelApp" not in done.stderr + done.stdout
    assert "KeyboardInterrupt" not in done.stderr + done.stdout
