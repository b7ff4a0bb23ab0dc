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


@pytest.fixture
def runner() -> CliRunner:
    """A click runner that keeps standard error apart from standard output."""
    return CliRunner()
