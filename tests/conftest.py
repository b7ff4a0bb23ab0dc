"""Shared fixtures: fresh workspaces in tmp_path, the sample workspace, a click runner, and the
one gate of every browser test (:func:`require_browser`)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner

from audtools.workspace import Workspace, init_workspace

DATA = Path(__file__).parent / "data"
#: Debian's Chromium, which every browser test drives through Playwright.
CHROMIUM = "/usr/bin/chromium"
SAMPLES = Path(__file__).parent.parent / "data" / "samples"


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """A new workspace with the example configuration of SPEC §2.1."""
    return init_workspace(tmp_path / "ws")


@pytest.fixture(scope="session")
def sample_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample workspace (``audtools samples``), built once per test session.

    Tests never change it: they work on copies (``shutil.copytree``).
    """
    from audtools.samples import create_samples

    root = tmp_path_factory.mktemp("samples") / "ws"
    create_samples(init_workspace(root))
    return root


@pytest.fixture
def sample_copy(sample_template: Path, tmp_path: Path) -> Path:
    """A copy of the sample workspace, for a test that changes it."""
    root = tmp_path / "ws"
    shutil.copytree(sample_template, root)
    return root


def invoke(*args: Any) -> Any:
    """The ``audtools`` command line run in this process with ``args`` (each made text)."""
    from audtools.cli.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def error_of(result: Any) -> dict[str, Any]:
    """The ``error`` object of a command's ``--json`` output."""
    doc: dict[str, Any] = json.loads(result.stdout)["error"]
    return doc


def samples_json(root: Path) -> dict[str, Any]:
    """The sample workspace's ``samples.json``: the counts ``audtools samples`` computed on its own,
    without the import code, which tests compare audtools with."""
    doc: dict[str, Any] = json.loads((root / "samples.json").read_text(encoding="utf-8"))
    return doc


def sample_import(root: Path, label: str) -> dict[str, Any]:
    """The sample import ``label`` of ``samples.json``: its shared audience, data source,
    ``force_reconciliation`` and ``expected`` counts."""
    return next(i for i in samples_json(root)["imports"] if i["label"] == label)


@pytest.fixture
def runner() -> CliRunner:
    """A click runner that keeps standard error apart from standard output."""
    return CliRunner()


def in_ci() -> bool:
    """Whether the tests run in CI (``.ci/run`` sets ``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_browser(*modules: str, chromium: str = CHROMIUM) -> ModuleType:
    """Playwright's sync API for a browser test, once Chromium and every module it needs are here.

    Without them the test skips on a developer's machine, but fails in CI: a CI run that skipped
    its browser tests would pass without having looked at a single screen or report.

    Args:
        modules: other modules the test needs (``voila``).
        chromium: the browser's executable.

    Returns:
        ``playwright.sync_api``.
    """
    missing = [chromium] if not Path(chromium).exists() else []
    missing += [m for m in ("playwright", *modules) if importlib.util.find_spec(m) is None]
    if missing:
        reason = (f"the browser tests need {', '.join(missing)} (apt-get install -y chromium; "
                  "pip install -e '.[dev]')")
        if in_ci():
            pytest.fail(f"{reason}: CI must run them, not skip them", pytrace=False)
        pytest.skip(reason)
    import playwright.sync_api

    return playwright.sync_api


def settled(*paths: Path, age: float = 3600) -> None:
    """Give files a modification time ``age`` seconds ago: a delivery that has settled
    (SPEC §4.2, ``settle_seconds``), as files written by a test are otherwise brand new."""
    import os
    import time

    past = time.time() - age
    for path in paths:
        os.utime(path, (past, past))


@pytest.fixture
def ssh(tmp_path: Path) -> Iterator[Any]:
    """Debian's OpenSSH server on 127.0.0.1, for this test (tests/servers.py)."""
    from servers import SshServer, require_servers

    require_servers(sshd=True)
    with SshServer(tmp_path / "sshd") as server:
        yield server


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's S3 server on 127.0.0.1 with a bucket of this test's own (``server.bucket``): moto
    keeps its buckets in the process."""
    from servers import S3Server, fake_aws_credentials, require_servers

    require_servers(moto=True)
    fake_aws_credentials(monkeypatch, tmp_path)
    with S3Server() as server:
        server.bucket = f"aam-{uuid.uuid4().hex[:12]}"
        server.client().create_bucket(Bucket=server.bucket)
        yield server
