"""The one exception family of audtools.

Every error the library raises on purpose is an :class:`AudtoolsError` with a stable ``code`` (a
word such as ``unknown_data_source``), a message that says what went wrong and what to do, and,
where it helps, the file, line or field at fault. The CLI turns it into one line on standard error
and exit status 1; with ``--json`` it also prints ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

from typing import Any


class AudtoolsError(Exception):
    """Base class of every error audtools raises on purpose.

    Args:
        message: what went wrong, ending with what to do about it.
        code: a stable word that scripts can test (defaults to the class's ``code``).
        **details: data about the failure (file, line, field, ...), kept in ``details``.
    """

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def to_json(self) -> dict[str, Any]:
        """The ``{"error": {...}}`` object the CLI prints with ``--json``."""
        return {"error": {"code": self.code, "message": self.message}}


def describe(exc: BaseException) -> tuple[str, str]:
    """``(code, message)`` of any exception: its own for an :class:`AudtoolsError`, else
    ``internal`` and the exception's type and text (how failed runs record it)."""
    if isinstance(exc, AudtoolsError):
        return exc.code, exc.message
    return "internal", f"{type(exc).__name__}: {exc}"


class ConfigError(AudtoolsError):
    """``audtools.toml`` is invalid; ``problems`` lists every problem found."""

    code = "bad_config"

    def __init__(self, problems: list[str], path: str = "audtools.toml") -> None:
        self.problems = list(problems)
        text = "; ".join(self.problems)
        super().__init__(f"{path} is invalid: {text}. Fix these entries and run again.")


class WorkspaceError(AudtoolsError):
    """The workspace is missing, already exists, or cannot be used as it is."""

    code = "bad_workspace"


class WorkspaceBusy(AudtoolsError):
    """Another process holds the workspace for longer than ``lock_timeout``."""

    code = "workspace_busy"


class KeyProblem(AudtoolsError):
    """An encryption key is missing (``missing_key``) or malformed (``bad_key``)."""

    code = "missing_key"


class RefusedError(AudtoolsError):
    """A command was refused before anything was written (operator, names, flags)."""

    code = "refused"


class InputError(AudtoolsError):
    """An input file cannot be used as a whole (corrupt gzip, unreadable profiles file, ...)."""

    code = "bad_input"
