"""``audtools catalog``, ``audtools batches`` and ``audtools import`` (SPEC §5): what can be imported, and
the import.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from audtools.cli.common import (
    CONTEXT,
    emit,
    handle_errors,
    json_option,
    show_progress,
    shown,
    workspace_options,
)


@click.command("catalog", context_settings=CONTEXT)
@workspace_options
@json_option
@handle_errors
def catalog_cmd(workspace: Path, quiet: bool, verbose: bool, as_json: bool) -> None:
    """List the shared audiences that can be picked: the drop's catalog.json and exports'.

    Example: audtools catalog -w ws --json
    """
    from audtools.shared_audiences import catalog

    entries = catalog(workspace)
    data = {"segments": [e.to_json() for e in entries]}

    def text() -> str:
        lines = [f"{'sid':>12}  {'type':<9}  {'source':<19}  name"]
        lines += [f"{e.sid:>12}  {e.type:<9}  {e.source:<19}  {shown(e.name)}" for e in entries]
        return "\n".join(lines)

    emit(data, as_json, text)


@click.command("batches", context_settings=CONTEXT)
@workspace_options
@json_option
@handle_errors
def batches_cmd(workspace: Path, quiet: bool, verbose: bool, as_json: bool) -> None:
    """Show, per data source, the batches applied, waiting, skipped, and the last file.

    Applies nothing.

    Example: audtools batches -w ws
    """
    from audtools.importing.drop_status import batches

    data = batches(workspace)
    emit(data, as_json, lambda: _batches_text(data))


def _batches_text(data: dict[str, Any]) -> str:
    lines: list[str] = []
    sources: dict[str, Any] = data["data_sources"]
    for source_id, info in sources.items():
        lines.append(f"{source_id} (last processed file: {shown(info['last_file'] or '-')})")
        for name in info["applied"]:
            lines.append(f"  applied  {shown(name)}")
        for name in info["ready"]:
            lines.append(f"  ready    {shown(name)}")
        for item in info["waiting"]:
            lines.append(f"  waiting  {shown(item['name'])}: {shown(item['reason'])}")
        for item in info["skipped"]:
            lines.append(f"  skipped  {shown(item['name'])}: {shown(item['reason'])}")
    # Files that look like batches or .info files but belong to none (SPEC §4.1): never
    # passed over without a word, in the text as in the JSON.
    ignored: list[dict[str, Any]] = data["ignored"]
    if ignored:
        lines.append(f"ignored drop files ({len(ignored)})")
        lines += [f"  {shown(item['name'])}: {shown(item['reason'])}" for item in ignored]
    return "\n".join(lines)


@click.command("import", context_settings=CONTEXT)
@click.option("--label", required=True, help="The audience's label (case-sensitive).")
@click.option("--shared-audience", "shared_audience", required=True, metavar="SID_OR_NAME",
              help="The shared audience: its sid or exact name (see 'audtools catalog').")
@click.option("--data-source", "data_source", required=True, metavar="ID",
              help="The shared data source of its IDs (an id of audtools.toml).")
@click.option("--force-reconciliation", is_flag=True,
              help="Encrypted email/SMS IDs: reconcile with profiles instead of a File audience.")
@click.option("--operator", help="The operator (default: the workspace's default_operator).")
@click.option("--dry-run", is_flag=True, help="Compute the counts; write nothing.")
@click.option("--min-match-rate", type=click.FloatRange(0, 1), metavar="RATE",
              help="Exit 1 (match_rate_low) after recording a run below this match rate.")
@workspace_options
@json_option
@handle_errors
def import_cmd(
    label: str,
    shared_audience: str,
    data_source: str,
    force_reconciliation: bool,
    operator: str | None,
    dry_run: bool,
    min_match_rate: float | None,
    workspace: Path,
    quiet: bool,
    verbose: bool,
    as_json: bool,
) -> None:
    """Import a shared audience: apply new batches, reconcile its IDs, store the audience.

    Example: audtools import -w ws --label "High value" --shared-audience 10603117
    --data-source defaultDataSource --json
    """
    from audtools.importing.flow import MatchRateLow, import_audience

    try:
        result = import_audience(
            workspace,
            label,
            shared_audience,
            data_source,
            force_reconciliation=force_reconciliation,
            operator=operator,
            dry_run=dry_run,
            min_match_rate=min_match_rate,
            progress=show_progress(quiet, as_json),
            keep_members=False,
        )
    except MatchRateLow as exc:
        if as_json:
            click.echo(json.dumps({**exc.result.to_json(), **exc.to_json()}))
        else:
            click.echo(_import_text(exc.result.to_json()))
        click.echo(f"audtools: error: {exc.message}", err=True)
        sys.exit(1)
    emit(result.to_json(), as_json, lambda: _import_text(result.to_json()))


def _import_text(data: dict[str, Any]) -> str:
    aud = data["audience"]
    kind = "File" if aud["type"] == "file" else "Experience Cloud"
    sa = aud["shared_audience"]
    head = "Dry run: " if data["dry_run"] else ""
    lines = [
        f"{head}{kind} audience {aud['label']!r} from {sa['name']} ({sa['sid']}) "
        f"through {aud['data_source']}" + (f", run {data['run_id']}" if data["run_id"] else ""),
        f"  batches    {data['batches_applied']} applied, {data['batches_waiting']} waiting, "
        f"{len(data['batches_skipped'])} skipped; rows read {data['rows_read']}, "
        f"rejected {data['rows_rejected']}",
        f"  members    {data['members']}",
        f"  matched    {data['matched']}  (match rate {data['match_rate']:.1%})",
        f"  unmatched  {data['unmatched']}  (undecryptable {data['undecryptable']}, "
        f"no profile {data['unmatched_reasons']['no_profile']})",
    ]
    if aud["type"] == "file":
        lines.append(f"  addresses  {data['addresses']}")
    else:
        lines.append(f"  profiles   {data['profiles']}")
    for item in data["batches_skipped"]:
        lines.append(f"  skipped    {item['name']}: {item['reason']}")
    lines.append(f"  available  {data['available_from']} to {data['available_to']}")
    return "\n".join(lines)
