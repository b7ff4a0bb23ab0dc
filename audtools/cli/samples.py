"""``audtools samples``: a sample workspace with its independently computed counts.
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


@click.command("samples", context_settings=CONTEXT)
@workspace_options
@click.option("--history", "history_days", type=click.IntRange(min=0), default=0,
              show_default=True, metavar="DAYS",
              help="Also write DAYS daily deliveries under deliveries/ (the demo's two weeks: 14).")
@json_option
@handle_errors
def samples_cmd(
    workspace: Path, quiet: bool, verbose: bool, as_json: bool, history_days: int
) -> None:
    """Fill a new workspace with generated sample data from a fixed seed.

    Profiles, visitor IDs, batches, a catalog, sample data sources, a demo key and
    samples.json with the counts each sample import must give.

    Example: audtools samples -w ws --history 14
    """
    from audtools.samples import create_samples

    data = create_samples(workspace, history_days=history_days)
    emit(data, as_json, lambda: counts_text("Created the samples", data))
