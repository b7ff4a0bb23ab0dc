"""The command line: help, exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from audtools import __version__
from audtools.cli.main import cli

SAMPLES = Path(__file__).parent.parent / "data" / "samples"


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, command in group.commands.items():
        out.append((*prefix, name))
        if isinstance(command, click.Group):
            out.extend(_commands(command, (*prefix, name)))
    return out


COMMANDS = _commands(cli)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(runner: CliRunner, command: tuple[str, ...]) -> None:
    result = runner.invoke(cli, [*command, "-h"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    leaf = cli
    for part in command:
        leaf = leaf.commands[part]  # type: ignore[attr-defined]
    if not isinstance(leaf, click.Group) or leaf.invoke_without_command:
        assert "Example:" in result.output


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_appears_in_the_readme(command: tuple[str, ...]) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert f"audtools {' '.join(command)}" in readme


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_init_then_refuse_a_second_time(runner: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "ws"
    first = runner.invoke(cli, ["init", str(target)])
    assert first.exit_code == 0, first.output
    assert (target / "audtools.toml").is_file()
    second = runner.invoke(cli, ["init", str(target)])
    assert second.exit_code == 1
    assert second.stderr.count("\n") == 1
    assert second.stderr.startswith("audtools: error: ") and "already holds" in second.stderr
    assert "Traceback" not in second.stderr


def test_json_errors_print_an_error_object(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["catalog", "-w", str(tmp_path), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == "not_a_workspace"
    assert result.stderr.count("\n") == 1


def test_parser_errors_exit_2(runner: CliRunner) -> None:
    assert runner.invoke(cli, ["catalog", "--no-such-option"]).exit_code == 2
    assert runner.invoke(cli, ["import", "-w", "."]).exit_code == 2


def test_workspace_from_the_environment(runner: CliRunner, tmp_path: Path) -> None:
    runner.invoke(cli, ["init", str(tmp_path / "ws")])
    result = runner.invoke(cli, ["catalog", "--json"], env={"AUDTOOLS_WORKSPACE": str(tmp_path / "ws")})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"segments": []}


def test_catalog_and_batches_on_the_repository_samples(runner: CliRunner, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    runner.invoke(cli, ["init", str(ws)])
    for f in SAMPLES.iterdir():
        if f.name.endswith((".sync", ".gz", ".info", "catalog.json")):
            shutil.copy(f, ws / "drops/import" / f.name)
    result = runner.invoke(cli, ["catalog", "-w", str(ws), "--json"])
    assert result.exit_code == 0, result.output
    segments = json.loads(result.stdout)["segments"]
    assert segments and all({"sid", "name", "type", "source"} <= set(s) for s in segments)
    result = runner.invoke(cli, ["batches", "-w", str(ws), "--json"])
    assert result.exit_code == 0, result.output
    visitor = json.loads(result.stdout)["data_sources"]["defaultDataSource"]
    assert visitor["ready"] and not visitor["waiting"]


def test_check_reports_problems_and_exits_1(runner: CliRunner, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    runner.invoke(cli, ["init", str(ws)])
    ok = runner.invoke(cli, ["check", "-w", str(ws), "--json"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert report["problems"] == []
    assert any("AUDTOOLS_KEY_EMAIL" in w for w in report["warnings"])
    bad = runner.invoke(
        cli, ["check", "-w", str(ws), "--json"], env={"AUDTOOLS_KEY_EMAIL": "not-hex"}
    )
    assert bad.exit_code == 1
    problems = json.loads(bad.stdout)["problems"]
    assert any("emailEncrypted" in p for p in problems)
    assert "not-hex" not in bad.output


def test_bad_config_lists_every_problem_on_one_line(runner: CliRunner, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    runner.invoke(cli, ["init", str(ws)])
    text = (ws / "audtools.toml").read_text().replace('hash = "none"', 'hash = "md5"')
    text = text.replace("lock_timeout = 60", "lock_timeout = 60\ncolour = 1")
    (ws / "audtools.toml").write_text(text)
    result = runner.invoke(cli, ["catalog", "-w", str(ws), "--json"])
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "bad_config"
    assert "colour" in error["message"] and "md5" in error["message"]
    assert result.stderr.count("\n") == 1


def test_the_cli_and_the_package_start_without_pandas() -> None:
    import subprocess
    import sys

    code = "import sys, audtools, audtools.cli.main; assert 'pandas' not in sys.modules, 'pandas loaded'"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


# Run in a fresh interpreter: checks every name of audtools.__all__, imports every module of
# the package (a submodule named like a public name, such as the old audtools/runs.py, then
# replaces the name on the package), checks again and calls audtools.runs on a workspace.
_FRONT_DOOR = r"""
import importlib, inspect, pkgutil, sys, types
import audtools
from pandas import DataFrame

def check(when):
    for name in audtools.__all__:
        value = getattr(audtools, name)
        where = f"audtools.{name} ({when})"
        if name == "__version__":
            assert isinstance(value, str), where
            continue
        assert not isinstance(value, types.ModuleType), f"{where} is the module {value.__name__}"
        kind = inspect.isclass if name[0].isupper() else inspect.isfunction
        assert kind(value), f"{where} is {value!r}, not a {kind.__name__[2:]}"
        home = sys.modules[value.__module__]  # where it is defined
        assert home.__name__.startswith("audtools."), f"{where} comes from {home.__name__}"
        # The name the module gives it (an alias such as save_audience included).
        assert getattr(home, name, None) is value, f"{where} is {home.__name__}.{value.__name__}"

def import_everything():
    for info in pkgutil.walk_packages(audtools.__path__, "audtools."):
        importlib.import_module(info.name)

if sys.argv[1] == "names-first":
    check("first use")
import_everything()
check("after importing every module")
ws = audtools.init_workspace(sys.argv[2])
history = audtools.runs(ws)
assert isinstance(history, DataFrame) and len(history) == 0, history
print("ok")
"""


@pytest.mark.slow
@pytest.mark.parametrize("order", ["names-first", "modules-first"])
def test_the_front_door_names_are_the_functions_and_classes(order: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _FRONT_DOOR, order, str(tmp_path / "ws")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
