"""The ``audtools`` command line: a thin adapter over the library.

Each command parses its flags, calls one library function, prints its result (a short text, or
one JSON object with ``--json``) and turns an :class:`~audtools.errors.AudtoolsError` into one line
on standard error and exit status 1. Exit status 2 is left to click for what the parser rejects.

This module only assembles the group: each command family lives in its own module
(:mod:`~audtools.cli.workspace`, :mod:`~audtools.cli.profiles`, :mod:`~audtools.cli.importing`,
:mod:`~audtools.cli.exporting`, :mod:`~audtools.cli.audiences`, :mod:`~audtools.cli.jobs`,
:mod:`~audtools.cli.samples`), all built on :mod:`~audtools.cli.common`, and is added here by name.
The library is imported inside each command, so that ``audtools --help`` starts fast.
"""

from __future__ import annotations

import click

from audtools.cli.audiences import audiences_group
from audtools.cli.common import CONTEXT
from audtools.cli.exporting import export_cmd
from audtools.cli.importing import batches_cmd, catalog_cmd, import_cmd
from audtools.cli.jobs import report_cmd, run_cmd, runs_cmd
from audtools.cli.profiles import profiles_group
from audtools.cli.samples import samples_cmd
from audtools.cli.workspace import check_cmd, init_cmd
from audtools.version import __version__


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="audtools")
def cli() -> None:
    """Share audiences between a Campaign database and Adobe Audience Manager.

    Import AAM segments and reconcile their IDs with profiles, export targeted profiles as shared
    segments, and measure how well IDs reconcile. Run 'audtools COMMAND -h' for each command.
    """


for _command in (
    init_cmd,
    check_cmd,
    profiles_group,
    catalog_cmd,
    batches_cmd,
    import_cmd,
    export_cmd,
    audiences_group,
    samples_cmd,
    run_cmd,
    runs_cmd,
    report_cmd,
):
    cli.add_command(_command)


def main() -> None:
    """Entry point of the ``audtools`` console script."""
    cli(prog_name="audtools")


if __name__ == "__main__":
    main()
