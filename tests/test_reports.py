"""Reports: self-contained HTML that asks nothing of any host, opened in headless Chromium,
with a stakeholder summary first, and no personal data anywhere."""

from __future__ import annotations

import csv
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import CHROMIUM, require_browser, sample_import

from audtools.cli.main import cli
from audtools.errors import JobFailed
from audtools.jobs import report
from audtools.jobs.rendering import TEMPLATE_NAME, index_html, template_dir
from audtools.jobs.runner import run_job
from audtools.samples import create_samples
from audtools.workspace import init_workspace
from audtools.workspace.runs import load_runs, write_result

EMAIL = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(r"\+\d{8,15}\b|\(?\b\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b")
ID38 = re.compile(r"(?<!\d)\d{38}(?!\d)")
DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sample workspace after four jobs: a File audience of encrypted emails, an export whose
    condition names an email address, a failed export that echoes one, and a report job."""
    root = tmp_path_factory.mktemp("reports") / "ws"
    create_samples(init_workspace(root))
    run_job(root, "import_audience", {"label": "Cart abandoners",
                                      "shared_audience": "Cart abandoners",
                                      "data_source": "samplesEmailAes"})
    run_job(root, "export_audience", {
        "segment_name": "Loyal", "data_source": "samplesVisitorId",
        "where": "email <> 'jack.roux1@example.com' AND loyalty_points >= 2500"})
    with pytest.raises(JobFailed):
        run_job(root, "export_audience", {"segment_name": "Typo", "data_source": "samplesVisitorId",
                                          "where": "email = 'hugo.smith2@example.net' AND nope = 1"})
    run_job(root, "match_rate_report", {"period": "all"})
    return root


def _pages(root: Path) -> list[Path]:
    pages = sorted(root.glob("runs/*/report.html")) + [root / "runs" / "index.html"]
    assert len(pages) == 5
    return pages


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "action", "poster") and value:
                self.refs.append((tag, name, value))


@pytest.mark.slow
def test_reports_ask_nothing_of_any_host(rendered: Path) -> None:
    for page in _pages(rendered):
        text = page.read_text(encoding="utf-8")
        parser = _Refs()
        parser.feed(text)
        for tag, name, value in parser.refs:
            assert not (tag == "script" and name == "src"), f"{page}: <script src={value}>"
            assert not (tag == "link" and name == "href"), f"{page}: <link href={value}>"
            if tag == "img":
                assert value.startswith("data:image/png;base64,"), f"{page}: {value[:60]}"
            else:
                assert not re.match(r"(https?:)?//", value), f"{page}: <{tag} {name}={value}>"
        for script in re.findall(r"<script[^>]*>(.*?)</script>", text, flags=re.S):
            assert not re.search(r"https?://|import\(", script), f"{page}: a script loads {script[:80]}"
        for url in re.findall(r"url\(([^)]*)\)", text):
            assert url.strip("'\" ").startswith(("data:", "#")), f"{page}: css url({url})"


def _personal_values(root: Path) -> list[str]:
    values: list[str] = []
    with open(root / "samples" / "profiles.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            for key in ("email", "mobile_phone"):
                value = (row[key] or "").strip()
                if len(value) >= 7 and any(c.isdigit() or c == "@" for c in value):
                    values += [value, value.lower()]
    with open(root / "samples" / "visitors.csv", newline="", encoding="utf-8") as fh:
        values += [row["visitor_id"] for row in csv.DictReader(fh)]
    return values


@pytest.mark.slow
def test_reports_show_no_personal_data(rendered: Path) -> None:
    values = _personal_values(rendered)
    crm_ids = set()
    with open(rendered / "samples" / "profiles.csv", newline="", encoding="utf-8") as fh:
        crm_ids = {row["crm_id"] for row in csv.DictReader(fh) if row["crm_id"]}
    for page in _pages(rendered):
        text = DATA_URI.sub("data:", page.read_text(encoding="utf-8"))
        assert not EMAIL.findall(text), f"{page}: {EMAIL.findall(text)[:3]}"
        assert not PHONE.findall(text), f"{page}: {PHONE.findall(text)[:3]}"
        assert not ID38.findall(text), f"{page}: {ID38.findall(text)[:3]}"
        found = [v for v in values if v in text]
        assert not found, f"{page}: {found[:3]}"
        tokens = set(re.findall(r"(?<![\w.-])\d{6,}(?![\w.-])", text))
        assert not tokens & crm_ids, f"{page}: {sorted(tokens & crm_ids)[:3]}"


@pytest.mark.slow
def test_reports_start_with_the_stakeholder_summary_and_show_no_code(rendered: Path) -> None:
    runs = {r["kind"] + ("-failed" if r["status"] == "failed" else ""): r
            for r in load_runs(rendered)}
    cart = sample_import(rendered, "Samples - Cart abandoners (file)")["expected"]
    rate = f"{cart['matched'] / cart['members']:.1%}"
    for kind, head, facts in (
        ("import", "Import: Cart abandoners", ["Available in Campaign", f"Match rate {rate}",
                                               "File audience", "first run of this label"]),
        ("export", "Export: Loyal", ["Available in the Experience Cloud",
                                     "<code>email &lt;&gt; '…' AND loyalty_points &gt;= 2500</code>"]),
        ("report", "Match rate report", ["samplesEmailAes", rate]),
        ("export-failed", "This export failed: nothing was exported.", ["bad_condition"]),
    ):
        page = (rendered / runs[kind]["report"]).read_text(encoding="utf-8")
        body = page[page.index("<main"):]
        first = re.search(r"<h1>(.*?)</h1>", body)
        assert first and first.group(1) == head, (kind, first and first.group(1))
        for fact in facts:
            assert fact in body, (kind, fact)
        assert "jp-InputArea-editor" not in body and "import audtools" not in body
        assert "report-remove" not in body and "audtools run -w" not in body


def test_summary_says_how_the_match_rate_moved(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    base = {
        "kind": "import", "status": "succeeded",
        "audience": {"label": "HV", "type": "experience_cloud",
                     "shared_audience": {"sid": 5, "name": "High value"}, "data_source": "defaultDataSource"},
        "rows_read": 0, "rows_rejected": 0, "members": 100, "undecryptable": 0, "unmatched": 30,
        "profiles": 70, "addresses": 0, "unmatched_reasons": {"undecryptable": 0, "no_profile": 30},
        "batches_applied": 0, "batches_waiting": 0, "batches_skipped": [],
        "available_from": "2026-01-03T00:00:00Z", "available_to": "2026-01-03T12:00:00Z",
    }
    write_result(ws, "20260101T000000Z-aaaaaa", {**base, "run_id": "20260101T000000Z-aaaaaa",
                 "matched": 70, "match_rate": 0.7, "started_at": "2026-01-01T00:00:00Z"})
    write_result(ws, "20251231T000000Z-cccccc", {**base, "run_id": "20251231T000000Z-cccccc",
                 "audience": {**base["audience"], "label": "Other"}, "matched": 10,
                 "match_rate": 0.1, "started_at": "2025-12-31T00:00:00Z"})
    now = {**base, "run_id": "20260102T000000Z-bbbbbb", "matched": 75, "match_rate": 0.75,
           "started_at": "2026-01-02T00:00:00Z"}
    text = str(report.import_summary(ws, now))
    assert "Match rate 75.0%: 75 of 100 members matched a profile." in text
    assert "Up 5.0 points since the previous run of this label (70.0% on Thu 01 Jan 2026, 00:00 UTC)" in text
    assert "Available in Campaign from Sat 03 Jan 2026, 00:00 UTC to Sat 03 Jan 2026, 12:00 UTC (24 to 36 hours after the run)" in text
    assert "Recipient - Visitor ID (defaultDataSource)" in text
    first = str(report.import_summary(ws, {**now, "audience": {**base["audience"], "label": "New"}}))
    assert "This is the first run of this label." in first


def test_scrub_and_redact() -> None:
    assert report.scrub("mail a.b+c@example.co.uk or +33612345678 / (201) 555-0107, id "
                        + "1" * 38) == "mail … or … / …, id …"
    assert report.scrub("run 20260101T000000Z-aaaaaa, sid 10603117") == (
        "run 20260101T000000Z-aaaaaa, sid 10603117")
    assert report.redact_condition("email = 'x@y.z' AND age >= 18 OR crm_id = \"12\"") == (
        "email = '…' AND age >= 18 OR crm_id = '…'")
    assert report.redact_condition(None) == "all profiles"


def test_the_offline_template_ships_with_the_package() -> None:
    folder = template_dir() / TEMPLATE_NAME
    assert json.loads((folder / "conf.json").read_text())["base_template"] == "lab"
    source = (folder / "index.html.j2").read_text()
    assert "{%- extends 'lab/index.html.j2' -%}" in source
    for block in ("html_head_js", "html_head_js_mathjax", "html_head_js_requirejs", "mathjax",
                  "jupyter_widgets", "html_head_js_mermaidjs"):
        assert re.search(r"\{%-? block " + block + r" -?%\}\s*\{%-? endblock", source), block
    assert (folder / "static" / "audtools.css").is_file()


def test_a_browser_test_skips_locally_but_fails_in_ci_without_chromium(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = str(tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-chromium"):
        require_browser(chromium=missing)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run them"):
        require_browser(chromium=missing)
    with pytest.raises(pytest.fail.Exception, match="no_such_module_for_audtools"):
        require_browser("no_such_module_for_audtools")
    assert require_browser().sync_playwright  # here, with everything installed, it passes


def test_index_of_an_empty_workspace(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    page = index_html(ws)
    assert "No run yet." in page and "No import yet." not in page  # the chart says it, as an image
    assert "<img class='aud-chart'" in page


@pytest.mark.slow
def test_reports_open_offline_in_headless_chromium(rendered: Path, tmp_path: Path) -> None:
    with require_browser().sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update"],
        )
        try:
            page = browser.new_page()
            requested: list[str] = []
            page.on("request", lambda r: requested.append(r.url))
            for path in _pages(rendered):
                requested.clear()
                page.goto(path.as_uri(), wait_until="load")
                page.wait_for_timeout(200)
                outside = [u for u in requested if not u.startswith(("data:", "file:"))]
                assert not outside, f"{path}: {outside}"
                widths = page.evaluate("Array.from(document.images).map(i => i.naturalWidth)")
                assert 0 not in widths, f"{path}: an image did not load"
                kind = json.loads((path.parent / "result.json").read_text())["kind"] \
                    if path.name == "report.html" else "index"
                if kind in ("import", "index", "report"):
                    assert widths, f"{path}: no chart"
                links = page.evaluate("Array.from(document.links).map(a => a.href)")
                for link in links:
                    if link.startswith("file:") and "#" not in link:
                        assert Path(link.removeprefix("file://")).is_file(), link
            page.goto((rendered / "runs" / "index.html").as_uri())
            page.screenshot(path=str(tmp_path / "index.png"), full_page=True)
            assert (tmp_path / "index.png").stat().st_size > 10_000
        finally:
            browser.close()


@pytest.mark.slow
def test_report_job_links_every_run(rendered: Path) -> None:
    job = next(r for r in load_runs(rendered) if r["kind"] == "report")
    page = (rendered / job["report"]).read_text(encoding="utf-8")
    others = [r for r in load_runs(rendered) if r["run_id"] != job["run_id"]]
    for run in others:
        assert f"../{run['run_id']}/report.html" in page
    assert "href='/" not in page and str(rendered) not in page


def _paths_in(record: Any) -> list[str]:
    """Every value of a run record that names a file of the workspace (``runs/...``)."""
    if isinstance(record, dict):
        return [p for value in record.values() for p in _paths_in(value)]
    if isinstance(record, list):
        return [p for value in record for p in _paths_in(value)]
    return [record] if isinstance(record, str) and record.startswith("runs/") else []


@pytest.mark.slow
def test_the_workspace_can_move(rendered: Path, tmp_path: Path, runner: CliRunner) -> None:
    """A copy of the whole folder elsewhere lists its runs, finds their files and renders."""
    moved = tmp_path / "elsewhere" / "ws"
    shutil.copytree(rendered, moved)
    listed = runner.invoke(cli, ["runs", "-w", str(moved), "--json"])
    assert listed.exit_code == 0, listed.output
    records = json.loads(listed.stdout)["runs"]
    assert [r["run_id"] for r in records] == [r["run_id"] for r in load_runs(rendered)]
    assert str(rendered) not in listed.stdout  # nothing names the old place
    paths = [p for record in records for p in _paths_in(record)]
    assert len(paths) >= 2 * len(records)  # an executed notebook and a report per job
    for path in paths:
        assert not Path(path).is_absolute() and (moved / path).is_file(), path
    rendered_again = runner.invoke(cli, ["report", "-w", str(moved), "--json"])
    assert rendered_again.exit_code == 0, rendered_again.output
    assert json.loads(rendered_again.stdout) == {"index": "runs/index.html", "runs": len(records)}
    for page in _pages(moved):
        text = page.read_text(encoding="utf-8")
        assert str(rendered) not in text and str(moved) not in text, page
        parser = _Refs()
        parser.feed(text)
        for _, _, ref in parser.refs:
            if not ref.startswith(("data:", "#", "http:", "https:")):
                assert (page.parent / ref.split("#")[0]).resolve().is_file(), (page, ref)
