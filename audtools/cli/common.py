"""What every command shares: the context settings, the option decorators, error handling and output.

Every command module imports from here (never from :mod:`audtools.cli.main`, which assembles the
group from them), so the imports of the command line point one way.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

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
            click.echo(terminal_text(f"audtools: error: {exc.message}"), err=True)
            sys.exit(1)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - one readable line, the traceback with -v
            if verbose:
                traceback.print_exc(file=sys.stderr)
            message = f"unexpected {type(exc).__name__}: {exc}. Run again with -v for details."
            if as_json:
                click.echo(json.dumps({"error": {"code": "internal", "message": message}}))
            click.echo(terminal_text(f"audtools: error: {message}"), err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def show_progress(quiet: bool, as_json: bool) -> bool:
    """Progress bars only go to a terminal, never with ``--json`` or ``--quiet``."""
    return not quiet and not as_json and sys.stderr.isatty()


# Control characters (C0, DEL, C1) and the bidirectional overrides that reorder what a terminal
# shows: a partner's file or segment name must not move the cursor, recolour or rewrite a line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(value: Any) -> str:
    """``value`` as text fit for a terminal: control characters written as escapes (``\\x1b``),
    newlines and tabs included, so that a name holds on one line."""
    return _CONTROL.sub(_escaped, str(value))


def terminal_text(text: str) -> str:
    """A whole text fit for a terminal: as :func:`shown`, its own line breaks kept."""
    return "\n".join(shown(line) for line in text.split("\n"))


def emit(data: dict[str, Any], as_json: bool, text: str | Callable[[], str]) -> None:
    """Print ``data`` as JSON, or the human text (control characters escaped)."""
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
    else:
        click.echo(terminal_text(text() if callable(text) else text))


def counts_text(title: str, data: dict[str, Any]) -> str:
    """``title``, then one aligned ``key  value`` line per item of ``data`` (lists joined)."""
    width = max(len(k) for k in data)
    lines = [title]
    for key, value in data.items():
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        lines.append(f"  {key:<{width}}  {value}")
    return "\n".join(lines)
