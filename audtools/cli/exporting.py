"""``audtools export`` (SPEC §6): share targeted profiles as onboarding files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from audtools.cli.common import (
    CONTEXT,
    emit,
    handle_errors,
    json_option,
    show_progress,
    workspace_options,
)


@click.command("export", context_settings=CONTEXT)
@click.option("--where", metavar="CONDITION",
              help="Target the profiles for which this boolean DuckDB expression over profile "
                   "columns is true (default: all profiles).")
@click.option("--shared-audience", "shared_audience", metavar="SID_OR_NAME",
              help="Share to this segment: its sid or exact name (see 'audtools catalog').")
@click.option("--segment-name", "segment_name", metavar="NAME",
              help="Share to a new segment of this name (sid = largest known sid + 1).")
@click.option("--data-source", "data_source", required=True, metavar="ID",
              help="The shared data source of the IDs (an id of audtools.toml).")
@click.option("--outbound-transition", "outbound_transition", metavar="PATH.csv",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Write profile_id,id for every ID of each exported profile.")
@click.option("--complement-transition", "complement_transition", metavar="PATH.csv",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Write profile_id of the targeted profiles without an ID.")
@click.option("--overwrite", is_flag=True,
              help="Replace transition CSVs that exist (refused otherwise).")
@click.option("--raw-csv", "raw_csv", is_flag=True,
              help="Write transition values as they are, even those a spreadsheet would run as "
                   "formulas (=, @, +, -); for programs, not spreadsheets.")
@click.option("--gzip", "gzip", is_flag=True, help="Write .sync.gz files.")
@click.option("--max-file-bytes", "max_file_bytes", type=click.IntRange(min=1, max=5 * 10**9),
              metavar="N", default=10**9, show_default=True,
              help="Split the onboarding file above this many uncompressed bytes "
                   "(at most 5000000000, AAM's limit).")
@click.option("--operator", help="The operator (default: the workspace's default_operator).")
@click.option("--dry-run", is_flag=True, help="Count; write nothing.")
@workspace_options
@json_option
@handle_errors
def export_cmd(
    where: str | None,
    shared_audience: str | None,
    segment_name: str | None,
    data_source: str,
    outbound_transition: Path | None,
    complement_transition: Path | None,
    overwrite: bool,
    raw_csv: bool,
    gzip: bool,
    max_file_bytes: int,
    operator: str | None,
    dry_run: bool,
    workspace: Path,
    quiet: bool,
    verbose: bool,
    as_json: bool,
) -> None:
    """Share targeted profiles as a segment: write their new IDs as AAM onboarding files.

    Give --shared-audience (only IDs never exported to it through the data source are written)
    or --segment-name (a new shared audience).

    Example: audtools export -w ws --where "loyalty_points >= 1000" --segment-name "Loyal"
    --data-source defaultDataSource --json
    """
    if (shared_audience is None) == (segment_name is None):
        raise click.UsageError("Give exactly one of --shared-audience and --segment-name.")
    from audtools.exporting.flow import export_audience

    result = export_audience(
        workspace,
        shared_audience=shared_audience,
        segment_name=segment_name,
        data_source=data_source,
        where=where,
        outbound_transition=outbound_transition,
        complement_transition=complement_transition,
        overwrite=overwrite,
        raw_csv=raw_csv,
        gzip=gzip,
        max_file_bytes=max_file_bytes,
        operator=operator,
        dry_run=dry_run,
        progress=show_progress(quiet, as_json),
        keep_transitions=False,
    )
    data = result.to_json()
    emit(data, as_json, lambda: _export_text(data))


def _export_text(data: dict[str, Any]) -> str:
    sa = data["shared_audience"]
    head = "Dry run: " if data["dry_run"] else ""
    made = (" (to be created)" if data["dry_run"] else " (created)") if sa["created"] else ""
    verb = "to write" if data["dry_run"] else "written"
    none = "none" if data["dry_run"] else "none (nothing new)"
    lines = [
        f"{head}Export to {sa['name']} ({sa['sid']}){made} through {data['data_source']}"
        + (f", run {data['run_id']}" if data["run_id"] else ""),
        f"  profiles   {data['profiles_targeted']} targeted, {data['profiles_exported']} exported, "
        f"{data['profiles_without_id']} without an ID",
        f"  IDs        {data['ids_exported']} {verb}, {data['ids_already_shared']} already shared",
        f"  files      {', '.join(data['files']) or none}",
        f"  available  {data['available_from']} to {data['available_to']}",
    ]
    return "\n".join(lines)
