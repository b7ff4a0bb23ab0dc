"""``audtools init`` and ``audtools check``: create a workspace, validate one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from audtools.cli.common import CONTEXT, emit, handle_errors, json_option, workspace_options


@click.command("init", context_settings=CONTEXT)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks of errors.")
@json_option
@handle_errors
def init_cmd(directory: Path, quiet: bool, verbose: bool, as_json: bool) -> None:
    """Create a new workspace in DIRECTORY with an example configuration.

    Refuses a folder that already holds an audtools.toml.

    Example: audtools init my-workspace
    """
    from audtools.workspace import init_workspace

    ws = init_workspace(directory)
    emit(
        {"workspace": str(ws.root), "config": str(ws.config.path)},
        as_json,
        f"Created the workspace {ws.root}. Edit {ws.config.path.name}, then load profiles with "
        f"'audtools profiles load -w {directory} PROFILES.csv'.",
    )


@click.command("check", context_settings=CONTEXT)
@workspace_options
@json_option
@handle_errors
def check_cmd(workspace: Path, quiet: bool, verbose: bool, as_json: bool) -> None:
    """Validate the configuration, keys, key columns and drops without running anything.

    Exits 1 when a problem is found.

    Example: audtools check -w my-workspace
    """
    from audtools.checks import check_workspace

    report = check_workspace(workspace)
    emit(report, as_json, lambda: _check_text(report))
    if report["problems"]:
        sys.exit(1)


def _check_text(report: dict[str, Any]) -> str:
    lines = [f"{'OK' if not report['problems'] else 'PROBLEMS'}: {report['workspace']}"]
    lines += [f"  problem: {p}" for p in report["problems"]]
    lines += [f"  warning: {w}" for w in report["warnings"]]
    for source_id, info in report["data_sources"].items():
        lines.append(f"  {source_id}: {info['status']}")
    return "\n".join(lines)
