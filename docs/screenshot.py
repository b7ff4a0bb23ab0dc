"""Make the README's pictures from the demo workspace (`make demo`, data/demo).

    make demo && .venv/bin/python docs/screenshot.py data/demo

writes docs/report.png (the top of the latest import job's report), docs/index.png (the charts of
runs/index.html: two weeks of deliveries) and docs/screens/explore_match_rates.png (the explorer
on the demo's High value visitors, its past deliveries beside the what-if table; Voila serves
notebooks/ on 127.0.0.1 for it). The Create and Save audience screens come from the browser test:
`AUDTOOLS_SCREENSHOTS=1 .venv/bin/python -m pytest tests/test_widgets_browser.py`.

Needs Debian's chromium (/usr/bin/chromium), Playwright's Python package and Voila (the dev extra).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from audtools.workspace.runs import load_runs

DOCS = Path(__file__).parent
OUT = DOCS / "report.png"
INDEX = DOCS / "index.png"
EXPLORER = DOCS / "screens" / "explore_match_rates.png"
NOTEBOOKS = DOCS.parent / "notebooks"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update"]
HIGH_VALUE = 10603117


def latest_import_report(root: Path) -> Path:
    """The report of the workspace's newest import job."""
    for run in load_runs(root):
        if run.get("kind") == "import" and run.get("report"):
            return root / run["report"]
    raise SystemExit(f"{root} has no import job with a report; run 'make demo' first.")


def screenshot(report: Path, out: Path = OUT, height: int = 1010, *, top: str | None = None) -> None:
    """A 1000-pixel-wide picture of a page: its top, or from the element ``top`` down."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": height}, device_scale_factor=1)
        page.goto(report.resolve().as_uri(), wait_until="load")
        if top is None:
            page.screenshot(path=str(out), full_page=False)
        else:
            y = page.evaluate(f"() => document.querySelector({top!r}).getBoundingClientRect().top")
            page.screenshot(path=str(out), full_page=True,
                            clip={"x": 0, "y": max(0, y - 12), "width": 1000, "height": height})
        browser.close()


@contextmanager
def voila(workspace: Path) -> Iterator[str]:
    """Voila serving notebooks/ on 127.0.0.1 for ``workspace``; its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, AUDTOOLS_WORKSPACE=str(workspace.resolve()),
                   JUPYTER_RUNTIME_DIR=f"{home}/runtime", JUPYTER_PLATFORM_DIRS="1")
        proc = subprocess.Popen(
            [sys.executable, "-m", "voila", str(NOTEBOOKS), "--no-browser", f"--port={port}",
             "--Voila.ip=127.0.0.1", "--Voila.port_retries=0"],
            cwd=home, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(base + "/", timeout=5):
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise SystemExit("Voila did not start") from None
                    time.sleep(0.3)
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def explorer(workspace: Path, out: Path = EXPLORER) -> None:
    """The explorer on High value visitors through the visitor-ID data source."""
    with voila(workspace) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page: Any = browser.new_page(viewport={"width": 1100, "height": 900})
        page.set_default_timeout(90_000)
        page.goto(f"{base}/voila/render/explore_match_rates.ipynb", timeout=90_000)
        page.wait_for_selector(".audtools-match-rates", timeout=90_000)
        page.locator(".audtools-shared-audience select").select_option(
            label=f"High value visitors ({HIGH_VALUE})")
        page.locator(".audtools-data-sources select").select_option(
            label="Samples - Recipient - Visitor ID (samplesVisitorId)")
        page.locator(".audtools-summary tr[data-source='samplesVisitorId']").wait_for()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.audtools-past img, img.audtools-past')]"
            ".some(i => i.naturalWidth > 0)")
        bottom = page.evaluate(
            "() => document.querySelector('.audtools-screen').getBoundingClientRect().bottom")
        page.set_viewport_size({"width": 1100, "height": min(int(bottom) + 24, 4000)})
        page.wait_for_timeout(300)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        browser.close()


def main() -> None:
    """Every picture, from the demo workspace named on the command line (default data/demo)."""
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "data/demo")
    screenshot(latest_import_report(root))
    screenshot(root / "runs" / "index.html", INDEX, 1340, top="figure.aud-figure")
    explorer(root)
    sys.stdout.write(f"wrote {OUT}, {INDEX} and {EXPLORER}\n")


if __name__ == "__main__":
    main()
