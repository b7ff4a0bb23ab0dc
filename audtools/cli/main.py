"""The ``audtools`` command line: a thin adapter over the library.

Each command parses its flags, calls one library function, prints its result (a short text, or
one JSON object with ``--json``) and turns an :class:`~audtools.errors.AudtoolsError` into one line
on standard error and exit status 1. Exit status 2 is left to click for what the parser rejects.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from audtools import __version__
from audtools.errors import AudtoolsError

F = TypeVar("F", bound=Callable[..., Any])
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def workspace_options(func: F) -> F:
    """``-w/--workspace``, ``-q/--quiet`` and ``-v/--verbose``, shared by every command."""
    func = click.option(
        "-v", "--verbose", is_flag=True, help="Log what happens; show tracebacks of errors."
    )(func)
    func = click.option("-q", "--quiet", is_flag=True, help="No progress bars.")(func)
    func = click.option(
        "-w",
        "--workspace",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="AUDTOOLS_WORKSPACE",
        default=".",
        show_default="$AUDTOOLS_WORKSPACE, else the current folder",
        help="The workspace folder.",
    )(func)
    return func


def json_option(func: F) -> F:
    """``--json``: print one JSON object instead of text."""
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(func)


def handle_errors(func: F) -> F:
    """Run a command, mapping errors to one line on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verbose = bool(kwargs.get("verbose"))
        as_json = bool(kwargs.get("as_json"))
        level = logging.INFO if verbose else logging.WARNING
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(level)  # run logs raise the logger's level; the terminal keeps its own
        handler.setFormatter(logging.Formatter("audtools: %(message)s"))
        logging.basicConfig(level=level, handlers=[handler], force=True)
        try:
            return func(*args, **kwargs)
        except AudtoolsError as exc:
            if verbose:
                traceback.print_exc(file=sys.stderr)
            if as_json:
                click.echo(json.dumps(exc.to_json()))
            click.echo(f"audtools: error: {exc.message}", err=True)
            sys.exit(1)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - one readable line, the traceback with -v
            if verbose:
                traceback.print_exc(file=sys.stderr)
            message = f"unexpected {type(exc).__name__}: {exc}. Run again with -v for details."
            if as_json:
                click.echo(json.dumps({"error": {"code": "internal", "message": message}}))
            click.echo(f"audtools: error: {message}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def show_progress(quiet: bool, as_json: bool) -> bool:
    """Progress bars only go to a terminal, never with ``--json`` or ``--quiet``."""
    return not quiet and not as_json and sys.stderr.isatty()


def emit(data: dict[str, Any], as_json: bool, text: str | Callable[[], str]) -> None:
    """Print ``data`` as JSON, or the human text."""
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
    else:
        click.echo(text() if callable(text) else text)


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="audtools")
def cli() -> None:
    """Share audiences between a Campaign database and Adobe Audience Manager.

    Import AAM segments and reconcile their IDs with profiles, export targeted profiles as shared
    segments, and measure how well IDs reconcile. Run 'audtools COMMAND -h' for each command.
    """


# -- workspace ----------------------------------------------------------------------------------


@cli.command("init", context_settings=CONTEXT)
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


@cli.command("check", context_settings=CONTEXT)
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


# -- profiles -----------------------------------------------------------------------------------


@cli.group("profiles", context_settings=CONTEXT)
def profiles_group() -> None:
    """Load and delete the profiles of the Campaign database."""


@profiles_group.command("load", context_settings=CONTEXT)
@click.argument("profiles", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--visitors", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A CSV of profile_id,visitor_id rows to add.")
@click.option("--replace", is_flag=True, help="Replace all profiles instead of updating them.")
@click.option("--delimiter", help="CSV column delimiter (default ',').")
@click.option("--encoding", help="CSV text encoding (default UTF-8).")
@workspace_options
@json_option
@handle_errors
def profiles_load_cmd(
    profiles: Path,
    visitors: Path | None,
    replace: bool,
    delimiter: str | None,
    encoding: str | None,
    workspace: Path,
    quiet: bool,
    verbose: bool,
    as_json: bool,
) -> None:
    """Load profiles from CSV or Parquet (a profile_id column and any others).

    Updates profiles by profile_id and keeps absent ones; --replace replaces them all.

    Example: audtools profiles load -w ws profiles.csv --visitors visitors.csv
    """
    from audtools.profiles.loading import load_profiles

    result = load_profiles(
        workspace, profiles, visitors=visitors, replace=replace, delimiter=delimiter, encoding=encoding
    )
    data = result.to_json()
    emit(data, as_json, lambda: _counts_text("Loaded profiles", data))


@profiles_group.command("delete", context_settings=CONTEXT)
@click.argument("ids", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@workspace_options
@json_option
@handle_errors
def profiles_delete_cmd(ids: Path, workspace: Path, quiet: bool, verbose: bool, as_json: bool) -> None:
    """Remove the profiles listed in IDS (a CSV with a profile_id column): an erasure request.

    Their visitor IDs and audience memberships go too.

    Example: audtools profiles delete -w ws erase.csv
    """
    from audtools.profiles.deletion import delete_profiles

    data = delete_profiles(workspace, ids).to_json()
    emit(data, as_json, lambda: _counts_text("Deleted profiles", data))


def _counts_text(title: str, data: dict[str, Any]) -> str:
    width = max(len(k) for k in data)
    lines = [title]
    for key, value in data.items():
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        lines.append(f"  {key:<{width}}  {value}")
    return "\n".join(lines)


# -- drop, catalog ------------------------------------------------------------------------------


@cli.command("catalog", context_settings=CONTEXT)
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
        lines += [f"{e.sid:>12}  {e.type:<9}  {e.source:<19}  {e.name}" for e in entries]
        return "\n".join(lines)

    emit(data, as_json, text)


@cli.command("batches", context_settings=CONTEXT)
@workspace_options
@json_option
@handle_errors
def batches_cmd(workspace: Path, quiet: bool, verbose: bool, as_json: bool) -> None:
    """Show, per data source, the batches applied, waiting, skipped, and the last file.

    Applies nothing.

    Example: audtools batches -w ws
    """
    from audtools.shared_audiences import batches

    data = batches(workspace)

    def text() -> str:
        lines: list[str] = []
        sources: dict[str, Any] = data["data_sources"]  # type: ignore[assignment]
        for source_id, info in sources.items():
            lines.append(f"{source_id} (last processed file: {info['last_file'] or '-'})")
            for name in info["applied"]:
                lines.append(f"  applied  {name}")
            for name in info["ready"]:
                lines.append(f"  ready    {name}")
            for item in info["waiting"]:
                lines.append(f"  waiting  {item['name']}: {item['reason']}")
            for item in info["skipped"]:
                lines.append(f"  skipped  {item['name']}: {item['reason']}")
        return "\n".join(lines)

    emit(data, as_json, text)


# -- import -------------------------------------------------------------------------------------


@cli.command("import", context_settings=CONTEXT)
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


# -- export -------------------------------------------------------------------------------------


@cli.command("export", context_settings=CONTEXT)
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
@click.option("--gzip", "gzip", is_flag=True, help="Write .sync.gz files.")
@click.option("--max-file-bytes", "max_file_bytes", type=click.IntRange(min=1), metavar="N",
              default=10**9, show_default=True,
              help="Split the onboarding file above this many uncompressed bytes.")
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


# -- audiences ----------------------------------------------------------------------------------


@cli.group("audiences", context_settings=CONTEXT, invoke_without_command=True)
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
@workspace_options
@json_option
@handle_errors
def audiences_members_cmd(
    label: str, output: Path, workspace: Path, quiet: bool, verbose: bool, as_json: bool
) -> None:
    """Write the members of audience LABEL: profile_id (Experience Cloud) or address (File).

    Example: audtools audiences members -w ws "High value" -o members.csv
    """
    from audtools.workspace.audiences import export_members

    count = export_members(workspace, label, output)
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


# -- samples ------------------------------------------------------------------------------------


@cli.command("samples", context_settings=CONTEXT)
@workspace_options
@json_option
@handle_errors
def samples_cmd(workspace: Path, quiet: bool, verbose: bool, as_json: bool) -> None:
    """Fill a new workspace with generated sample data from a fixed seed.

    Profiles, visitor IDs, batches, a catalog, sample data sources, a demo key and
    samples.json with the counts each sample import must give.

    Example: audtools samples -w ws
    """
    from audtools.samples import create_samples

    data = create_samples(workspace)
    emit(data, as_json, lambda: _counts_text("Created the samples", data))


# The job commands (audtools run, runs, report) live in their own module and register themselves.
from audtools.cli import jobs as jobs_cli  # noqa: E402, F401


def main() -> None:
    """Entry point of the ``audtools`` console script."""
    cli(prog_name="audtools")


if __name__ == "__main__":
    main()
