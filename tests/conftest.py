"""Shared fixtures: fresh workspaces in tmp_path, and a click runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from audtools.workspace import Workspace, init_workspace

DATA = Path(__file__).parent / "data"
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
def runner() -> CliRunner:
    """A click runner that keeps standard error apart from standard output."""
    return CliRunner()


def settled(*paths: Path, age: float = 3600) -> None:
    """Give files a modification time ``age`` seconds ago: a delivery that has settled
    (SPEC §4.2, ``settle_seconds``), as files written by a test are otherwise brand new."""
    import os
    import time

    past = time.time() - age
    for path in paths:
        os.utime(path, (past, past))
