"""The screens in a real browser: Voila serves the notebooks on 127.0.0.1, headless Chromium
(Debian's, driven by Playwright) fills the forms and reads the results.

Run with ``AUDTOOLS_SCREENSHOTS=1`` to save a screenshot of each screen to ``docs/screens/`` (the
pictures of the README); otherwise they go to the test's temporary folder.

Voila's page asks a CDN for Font Awesome's CSS; offline that only loses icons, so every request
that does not go to the local server is blocked, and the test checks there are no others.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CHROMIUM, require_browser, sample_import

from audtools.exporting.targeting import query
from audtools.samples import create_samples
from audtools.samples.batches import CART
from audtools.workspace import init_workspace
from audtools.workspace.audiences import list_audiences

pytestmark = pytest.mark.slow

REPO = Path(__file__).parent.parent
NOTEBOOKS = REPO / "notebooks"
SCREENS_DIR = REPO / "docs" / "screens"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
START_TIMEOUT = 90  # seconds for Voila to answer
PAGE_TIMEOUT = 90_000  # milliseconds for a page's kernel to run the notebook
ACTION_TIMEOUT = 60_000  # milliseconds for an action's result to appear

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser") / "ws"
    create_samples(init_workspace(root))
    return root


@pytest.fixture(scope="module")
def voila(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Voila serving ``notebooks/`` on 127.0.0.1; the notebooks read the workspace from
    ``AUDTOOLS_WORKSPACE``. Stopped when the module's tests end."""
    home = tmp_path_factory.mktemp("voila")
    port = _free_port()
    log_path = home / "voila.log"
    env = dict(
        os.environ,
        AUDTOOLS_WORKSPACE=str(workspace),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTER_PLATFORM_DIRS="1",
    )
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voila",
                str(NOTEBOOKS),
                "--no-browser",
                f"--port={port}",
                "--Voila.ip=127.0.0.1",
                "--Voila.port_retries=0",
            ],
            cwd=home,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"Voila exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(base + "/", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"Voila did not answer in {START_TIMEOUT} s:\n{log_path.read_text()}")
                time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium; without it (or Playwright, or Voila) the tests skip, or fail in CI."""
    with require_browser("voila").sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=60_000
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, voila: str) -> Iterator[Any]:
    """A page that reaches only the local server (Font Awesome's CDN request is blocked)."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(ACTION_TIMEOUT)
    outside: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith(voila):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    yield page
    context.close()
    assert all("fontawesome" in url for url in outside), outside


def _open(page: Any, base: str, notebook: str, css: str) -> None:
    page.goto(f"{base}/voila/render/{notebook}", timeout=PAGE_TIMEOUT)
    page.wait_for_selector(f".{css}", timeout=PAGE_TIMEOUT)


def _screenshot(page: Any, name: str, tmp_path: Path) -> None:
    wanted = os.environ.get("AUDTOOLS_SCREENSHOTS", "").strip()
    folder = SCREENS_DIR if wanted not in ("", "0") else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    # Voila scrolls inside its own container, so the page is made as tall as the screen.
    bottom = page.evaluate(
        "() => document.querySelector('.audtools-screen').getBoundingClientRect().bottom"
    )
    page.set_viewport_size({"width": 1100, "height": min(int(bottom) + 24, 4000)})
    page.wait_for_timeout(300)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def _cell(page: Any, key: str) -> str:
    return str(page.locator(f".audtools-result tr[data-key='{key}'] td").inner_text()).strip()


def test_create_audience_in_the_browser(page: Any, voila: str, workspace: Path, tmp_path: Path) -> None:
    item = next(
        i
        for i in json.loads((workspace / "samples.json").read_text())["imports"]
        if i["label"] == "Samples - Cart abandoners (file)"
    )
    expected = item["expected"]
    _open(page, voila, "create_audience.ipynb", "audtools-create-audience")
    force = page.locator(".audtools-force")
    assert not force.is_visible()
    page.locator(".audtools-label input").fill("Browser - Cart abandoners")
    page.locator(".audtools-shared-audience select").select_option(label=f"Cart abandoners ({CART})")
    page.locator(".audtools-data-source select").select_option(
        label="Samples - Email - Encrypted Declared ID (samplesEmailAes)"
    )
    force.wait_for(state="visible")
    assert "File audience of every decrypted address" in page.locator(".audtools-force-help").inner_text()
    page.locator("button.audtools-confirm").click()
    page.wait_for_selector(".audtools-result tr[data-key='members']")

    assert _cell(page, "type") == "File"
    assert _cell(page, "members") == f"{expected['members']:,}"
    assert _cell(page, "undecryptable") == f"{expected['undecryptable']:,}"
    assert _cell(page, "matched") == f"{expected['matched']:,}"
    assert _cell(page, "addresses") == f"{expected['addresses']:,}"
    assert "UTC" in _cell(page, "window")
    page.wait_for_selector(".audtools-status :text('was imported')")
    page.wait_for_function(
        "() => { const i = document.querySelector('.audtools-funnel'); "
        "return i && i.naturalWidth > 0; }"
    )
    audiences = list_audiences(workspace)
    row = audiences[audiences.label == "Browser - Cart abandoners"].iloc[0]
    assert (row.type, int(row["size"])) == ("file", expected["addresses"])
    _screenshot(page, "create_audience", tmp_path)


def test_save_audience_in_the_browser(page: Any, voila: str, workspace: Path, tmp_path: Path) -> None:
    _open(page, voila, "save_audience.ipynb", "audtools-save-audience")
    page.wait_for_selector(".audtools-count b")
    condition = "country = 'US' AND loyalty_points >= 200"
    page.locator(".audtools-condition textarea").fill(condition)
    page.locator(".audtools-condition textarea").press("Tab")
    targeted = query(workspace, condition).count(workspace)
    page.wait_for_function(
        "n => document.querySelector('.audtools-count').innerText.startsWith(n)",
        arg=f"{targeted:,} profiles targeted",
    )
    page.locator(".audtools-segment-name input").fill("Browser loyal Americans")
    page.locator("button.audtools-create").click()
    page.wait_for_function(
        "() => document.querySelector('.audtools-shared-audience select').selectedOptions[0]"
        "?.value.startsWith('Browser loyal Americans')"
    )
    page.locator(".audtools-data-source select").select_option(
        label="Samples - Recipient - Visitor ID (samplesVisitorId)"
    )
    page.locator(".audtools-outbound input").check()
    page.locator("button.audtools-confirm").click()
    page.wait_for_selector(".audtools-status :text('Settings confirmed')")
    page.locator("button.audtools-start:not([disabled])").click()
    page.wait_for_selector(".audtools-result tr[data-key='ids_exported']")

    files = sorted((workspace / "drops" / "export").glob("*.sync"))
    assert len(files) == 1
    rows = files[0].read_text().splitlines()
    assert _cell(page, "ids_exported") == f"{len(rows):,}"
    assert _cell(page, "ids_already_shared") == "0"
    assert _cell(page, "files") == files[0].name
    assert "Outbound transition" in page.locator(".audtools-transition").inner_text()
    _screenshot(page, "save_audience", tmp_path)


def _row_shows(page: Any, source: str, expected: dict[str, Any]) -> None:
    """Wait until the explorer's row of ``source`` shows ``expected`` (counts of samples.json,
    computed without audtools' import code), then check every cell."""
    kind = "File" if expected["type"] == "file" else "Experience Cloud"
    size = expected["addresses"] if expected["type"] == "file" else expected["profiles"]
    rate = expected["matched"] / expected["members"]
    want = {
        "type": kind, "members": f"{expected['members']:,}", "matched": f"{expected['matched']:,}",
        "match_rate": f"{rate:.1%}", "undecryptable": f"{expected['undecryptable']:,}",
        "no_profile": f"{expected['unmatched']:,}", "size": f"{size:,}",
    }
    row = f".audtools-summary tr[data-source='{source}']"
    page.wait_for_function(
        "([row, want]) => Object.entries(want).every(([k, v]) => "
        "document.querySelector(`${row} td[data-key='${k}']`)?.innerText.trim() === v)",
        arg=[row, want],
    )
    page.wait_for_selector(".audtools-status :text('nothing was written')")
    for key, value in want.items():
        assert page.locator(f"{row} td[data-key='{key}']").inner_text().strip() == value, (source, key)


def test_match_rate_explorer_in_the_browser(
    page: Any, voila: str, workspace: Path, tmp_path: Path
) -> None:
    file = sample_import(workspace, "Samples - Cart abandoners (file)")
    reconciled = sample_import(workspace, "Samples - Cart abandoners (reconciled)")
    visitors = sample_import(workspace, "Samples - High value visitors")
    sources = {
        "samplesEmailAes": "Samples - Email - Encrypted Declared ID (samplesEmailAes)",
        "samplesVisitorId": "Samples - Recipient - Visitor ID (samplesVisitorId)",
        "samplesEmailSha256": "Samples - Email - Hashed Declared ID (samplesEmailSha256)",
    }
    assert file["data_source"] == reconciled["data_source"] == "samplesEmailAes"
    assert file["shared_audience"] == reconciled["shared_audience"] == CART
    before = sorted(p.name for p in (workspace / "runs").glob("*"))
    _open(page, voila, "explore_match_rates.ipynb", "audtools-match-rates")
    page.locator(".audtools-shared-audience select").select_option(label=f"Cart abandoners ({CART})")
    page.locator(".audtools-data-sources select").select_option(label=list(sources.values()))
    for source in sources:
        page.locator(f".audtools-summary tr[data-source='{source}']").wait_for()
    _row_shows(page, "samplesEmailAes", file["expected"])
    page.wait_for_function(
        "() => [...document.querySelectorAll('.audtools-funnels img')]"
        ".filter(i => i.naturalWidth > 0).length === 3"
    )

    page.locator(".audtools-force input").check()
    _row_shows(page, "samplesEmailAes", reconciled["expected"])
    _screenshot(page, "explore_match_rates", tmp_path)

    page.locator(".audtools-shared-audience select").select_option(
        label=f"High value visitors ({visitors['shared_audience']})"
    )
    _row_shows(page, visitors["data_source"], visitors["expected"])
    assert sorted(p.name for p in (workspace / "runs").glob("*")) == before
