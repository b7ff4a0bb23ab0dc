"""``audtools profiles load`` and ``audtools profiles delete``: the profiles of the Campaign database.
"""

from __future__ import annotations

from pathlib import Path

import click

from audtools.cli.common import (
    CONTEXT,
    counts_text,
    emit,
    handle_errors,
    json_option,
    workspace_options,
)


@click.group("profiles", context_settings=CONTEXT)
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
    emit(data, as_json, lambda: counts_text("Loaded profiles", data))


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
    emit(data, as_json, lambda: counts_text("Deleted profiles", data))
