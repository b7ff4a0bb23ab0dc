"""Make docs/report.png, the README's picture of a job's report, the way `make demo` makes one.

    .venv/bin/python docs/screenshot.py            # builds a sample workspace in a temporary folder
    .venv/bin/python docs/screenshot.py data/demo  # or uses the latest import job of a workspace

Needs Debian's chromium (/usr/bin/chromium) and Playwright's Python package (the dev extra).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from audtools.jobs.runner import run_job
from audtools.samples import create_samples
from audtools.samples.demo import compare_samples
from audtools.workspace import init_workspace
from audtools.workspace.runs import load_runs

OUT = Path(__file__).parent / "report.png"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update"]


def sample_report(folder: Path) -> Path:
    """`make demo` in short: the samples, every sample import, then one import job."""
    root = folder / "demo"
    create_samples(init_workspace(root))
    compare_samples(root)
    result = run_job(root, "import_audience", {"label": "Samples - High value visitors",
                                               "shared_audience": 10603117,
                                               "data_source": "samplesVisitorId"})
    run_job(root, "match_rate_report", {"period": "all"})
    return root / result["report"]


def latest_import_report(root: Path) -> Path:
    for run in load_runs(root):
        if run.get("kind") == "import" and run.get("report"):
            return root / run["report"]
    raise SystemExit(f"{root} has no import job with a report; run 'audtools run' first.")


def screenshot(report: Path, out: Path = OUT, height: int = 1010) -> None:
    """A 1000-pixel-wide picture of the top of the report (summary, funnel, counts)."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": height}, device_scale_factor=1)
        page.goto(report.resolve().as_uri(), wait_until="load")
        page.screenshot(path=str(out), full_page=False)
        browser.close()


def main() -> None:
    if len(sys.argv) > 1:
        screenshot(latest_import_report(Path(sys.argv[1])))
    else:
        with tempfile.TemporaryDirectory() as folder:
            screenshot(sample_report(Path(folder)))
    sys.stdout.write(f"wrote {OUT}\n")


if __name__ == "__main__":
    main()
