"""``audtools audiences`` and its ``members`` and ``delete`` commands: the stored audiences.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from audtools.cli.common import CONTEXT, emit, handle_errors, json_option, workspace_options


@click.group("audiences", context_settings=CONTEXT, invoke_without_command=True)
@workspace_options
@json_option
@click.pass_context
@handle_errors
def audiences_group(ctx: click.Context, workspace: Path, quiet: bool, verbose: bool, as_json: bool) -> None:
    """List the audiences; 'members' extracts one, 'delete' removes one.

    Example: audtools audiences -w ws --json
    """
    if ctx.invoked_subcommand is not None:
        return
    from audtools.workspace.audiences import audiences_json

    data = audiences_json(workspace)

    def text() -> str:
        lines = [f"{'label':<30} {'type':<16} {'sid':>10} {'data source':<22} {'size':>9}"]
        audiences: list[dict[str, Any]] = data["audiences"]  # type: ignore[assignment]
        for a in audiences:
            lines.append(
                f"{a['label']:<30} {a['type']:<16} {a['sid']:>10} {a['data_source']:<22} {a['size']:>9}"
            )
        return "\n".join(lines)

    emit(data, as_json, text)


@audiences_group.command("members", context_settings=CONTEXT)
@click.argument("label")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="FILE.csv or FILE.parquet.")
@click.option("--raw-csv", "raw_csv", is_flag=True,
              help="Write values as they are, even those a spreadsheet would run as formulas "
                   "(=, @, +, -); for programs, not spreadsheets.")
@workspace_options
@json_option
@handle_errors
def audiences_members_cmd(
    label: str, output: Path, raw_csv: bool, workspace: Path, quiet: bool, verbose: bool,
    as_json: bool,
) -> None:
    """Write the members of audience LABEL: profile_id (Experience Cloud) or address (File).

    Example: audtools audiences members -w ws "High value" -o members.csv
    """
    from audtools.workspace.audiences import export_members

    count = export_members(workspace, label, output, raw_csv=raw_csv)
    emit({"label": label, "members": count, "output": str(output)}, as_json,
         f"Wrote {count} members of {label!r} to {output}")


@audiences_group.command("delete", context_settings=CONTEXT)
@click.argument("label")
@workspace_options
@json_option
@handle_errors
def audiences_delete_cmd(label: str, workspace: Path, quiet: bool, verbose: bool, as_json: bool) -> None:
    """Delete audience LABEL and its members.

    Example: audtools audiences delete -w ws "High value"
    """
    from audtools.workspace.audiences import delete_audience

    count = delete_audience(workspace, label)
    emit({"label": label, "members_deleted": count}, as_json,
         f"Deleted {label!r} ({count} members)")
