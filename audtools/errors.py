"""The one exception family of audtools.

Every error the library raises on purpose is an :class:`AudtoolsError` with a stable ``code`` (a
word such as ``unknown_data_source``), a message that says what went wrong and what to do, and,
where it helps, the file, line or field at fault. The CLI turns it into one line on standard error
and exit status 1; with ``--json`` it also prints ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol


class ErrorCode(StrEnum):
    """Every error code audtools can raise or print: the closed set scripts may test.

    The values are the words of SPEC §8; being ``str``, a member prints and serialises as its
    word, so ``{"error": {"code": ...}}`` reads the same whether it holds a member or a string.
    """

    # Any failure: the base class's default, an unexpected exception (``describe``), an export
    # or job cut short, a job notebook that failed outside audtools.
    ERROR = "error"
    INTERNAL = "internal"
    INTERRUPTED = "interrupted"
    NOTEBOOK_ERROR = "notebook_error"
    # The workspace, its configuration and keys.
    BAD_CONFIG = "bad_config"
    BAD_KEY = "bad_key"
    BAD_WORKSPACE = "bad_workspace"
    MISSING_KEY = "missing_key"
    NOT_A_WORKSPACE = "not_a_workspace"
    NO_WORKSPACE = "no_workspace"
    SAMPLES_CONFLICT = "samples_conflict"
    UNKNOWN_OPERATOR = "unknown_operator"
    WORKSPACE_BUSY = "workspace_busy"
    WORKSPACE_EXISTS = "workspace_exists"
    WORKSPACE_NOT_EMPTY = "workspace_not_empty"
    WORKSPACE_TOO_NEW = "workspace_too_new"
    # Input files: drops, the catalog, profiles.
    BAD_CATALOG = "bad_catalog"
    BAD_DELIMITER = "bad_delimiter"
    BAD_ENCODING = "bad_encoding"
    BAD_INFO = "bad_info"
    BAD_INPUT = "bad_input"
    BAD_PROFILES = "bad_profiles"
    BAD_VISITORS = "bad_visitors"
    CORRUPT_GZIP = "corrupt_gzip"
    DROP_UNREACHABLE = "drop_unreachable"
    DUPLICATE_PROFILE_ID = "duplicate_profile_id"
    # Naming what to import or export.
    AMBIGUOUS_SHARED_AUDIENCE = "ambiguous_shared_audience"
    NOT_A_SEGMENT = "not_a_segment"
    NOT_ENCRYPTED = "not_encrypted"
    NOT_IMS = "not_ims"
    UNKNOWN_AUDIENCE = "unknown_audience"
    UNKNOWN_DATA_SOURCE = "unknown_data_source"
    UNKNOWN_SHARED_AUDIENCE = "unknown_shared_audience"
    # Refusals of an import or an export.
    BAD_ARGUMENTS = "bad_arguments"
    BAD_CONDITION = "bad_condition"
    BAD_LABEL = "bad_label"
    BAD_MAX_FILE_BYTES = "bad_max_file_bytes"
    BAD_OUTPUT = "bad_output"
    BAD_SEGMENT_NAME = "bad_segment_name"
    BAD_TARGETING = "bad_targeting"
    LABEL_IN_USE = "label_in_use"
    MATCH_RATE_LOW = "match_rate_low"
    NAME_TAKEN = "name_taken"
    REFUSED = "refused"
    SEGMENT_NAME_IN_USE = "segment_name_in_use"
    TRANSITIONS_NOT_KEPT = "transitions_not_kept"
    UNSETTLED_EXPORT = "unsettled_export"
    # Jobs (``audtools run``).
    BAD_NOTEBOOK = "bad_notebook"
    BAD_PARAMETER = "bad_parameter"
    BAD_PARAMETERS_FILE = "bad_parameters_file"
    RESERVED_PARAMETER = "reserved_parameter"
    UNKNOWN_NOTEBOOK = "unknown_notebook"
    UNKNOWN_PARAMETER = "unknown_parameter"


class AudtoolsError(Exception):
    """Base class of every error audtools raises on purpose.

    Args:
        message: what went wrong, ending with what to do about it.
        code: a stable word that scripts can test (defaults to the class's ``code``); it must
            be an :class:`ErrorCode` value, or ``ValueError`` is raised.
        **details: data about the failure (file, line, field, ...), kept in ``details``.
    """

    code: ErrorCode = ErrorCode.ERROR

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = ErrorCode(code)
        self.details = details

    def to_json(self) -> dict[str, Any]:
        """The ``{"error": {...}}`` object the CLI prints with ``--json``."""
        return {"error": {"code": self.code, "message": self.message}}

    def _render_traceback_(self) -> list[str]:
        """How IPython shows the error: one line, ``audtools error [code]: message``.

        IPython asks an exception for this before formatting a traceback; the job runner
        (:func:`audtools.jobs.runner.run_job`) reads this one line back as the job's error.
        """
        return [f"audtools error [{self.code}]: {self.message}"]


def describe(exc: BaseException) -> tuple[ErrorCode, str]:
    """``(code, message)`` of any exception: its own for an :class:`AudtoolsError`, else
    ``internal`` and the exception's type and text (how failed runs record it)."""
    if isinstance(exc, AudtoolsError):
        return exc.code, exc.message
    return ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"


class ConfigError(AudtoolsError):
    """``audtools.toml`` is invalid; ``problems`` lists every problem found."""

    code = ErrorCode.BAD_CONFIG

    def __init__(self, problems: list[str], path: str = "audtools.toml") -> None:
        self.problems = list(problems)
        text = "; ".join(self.problems)
        super().__init__(f"{path} is invalid: {text}. Fix these entries and run again.")


class WorkspaceError(AudtoolsError):
    """The workspace is missing, already exists, or cannot be used as it is."""

    code = ErrorCode.BAD_WORKSPACE


class WorkspaceBusy(AudtoolsError):
    """Another process holds the workspace for longer than ``lock_timeout``."""

    code = ErrorCode.WORKSPACE_BUSY


class KeyProblem(AudtoolsError):
    """An encryption key is missing (``missing_key``) or malformed (``bad_key``)."""

    code = ErrorCode.MISSING_KEY


class RefusedError(AudtoolsError):
    """A command was refused before anything was written (operator, names, flags)."""

    code = ErrorCode.REFUSED


class DropUnreachable(AudtoolsError):
    """A drop cannot be reached, refuses the credentials or broke off mid-transfer
    (``drop_unreachable``); the message names the drop (never a credential) and the cause."""

    code = ErrorCode.DROP_UNREACHABLE


class InputError(AudtoolsError):
    """An input file cannot be used as a whole (corrupt gzip, unreadable profiles file, ...)."""

    code = ErrorCode.BAD_INPUT


class _Rated(Protocol):
    """What :class:`MatchRateLow` reads of an import's result."""

    @property
    def run_id(self) -> str | None: ...
    @property
    def dry_run(self) -> bool: ...
    @property
    def match_rate(self) -> float: ...


class MatchRateLow(AudtoolsError):
    """The import was recorded, but its match rate is below ``--min-match-rate``.

    Args:
        result: the import's :class:`~audtools.importing.flow.ImportResult`, kept as ``result``.
        minimum: the match rate asked for.
    """

    code = ErrorCode.MATCH_RATE_LOW

    def __init__(self, result: _Rated, minimum: float) -> None:
        self.result: Any = result
        if result.dry_run:
            message = (
                f"The dry run's match rate is {result.match_rate:.4f}, below the minimum "
                f"{minimum:g}; nothing was written. Look at the unmatched reasons."
            )
        else:
            message = (
                f"The match rate of run {result.run_id} is {result.match_rate:.4f}, below the "
                f"minimum {minimum:g}; the run and the audience were recorded. Look at the "
                "unmatched reasons."
            )
        super().__init__(message)


class JobError(AudtoolsError):
    """A job's notebook or parameters refused: by the runner before the run exists (unknown
    notebook, unknown or reserved name, a value that is not a scalar), or by the notebook's
    first cell (a value of the wrong type, or not allowed: ``bad_parameter``)."""

    code = ErrorCode.BAD_PARAMETER


class JobFailed(AudtoolsError):
    """The notebook of a job failed; ``result`` is its ``result.json`` (``status: failed``, or
    the succeeded import whose match rate was too low), with ``report`` added."""

    def __init__(self, result: dict[str, Any], code: str, message: str) -> None:
        self.result = result
        super().__init__(message, code=code)
