"""The notebooks of sync jobs: finding one by name or path, its declared parameters, and the
parameters given on the command line (``-f`` YAML files, ``-p NAME VALUE`` pairs).

Everything here happens before a run exists: a refusal raises :class:`JobError` and leaves no
run folder behind.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from audtools.errors import JobError
from audtools.workspace import utc_text

__all__ = [
    "NOTEBOOKS",
    "RESERVED",
    "Scalar",
    "check_names",
    "notebook_kind",
    "notebook_parameters",
    "notebook_path",
    "read_parameters",
    "scalar_parameter",
]

#: The notebooks shipped with audtools, by the name ``audtools run`` knows them by.
NOTEBOOKS = ("import_audience", "export_audience", "match_rate_report")
#: Set by the job runner, never by the user.
RESERVED = ("workspace", "run_id")
Scalar = str | int | float | bool | None


def notebook_path(notebook: str | os.PathLike[str]) -> Path:
    """The notebook file of a shipped name (``import_audience``, ...) or a path.

    Raises:
        JobError: ``unknown_notebook`` when it is neither.
    """
    text = os.fspath(notebook)
    if text in NOTEBOOKS:
        shipped = resources.files("audtools") / "templates" / "notebooks" / f"{text}.ipynb"
        return Path(str(shipped))
    path = Path(text).expanduser()
    if path.suffix == ".ipynb" and path.is_file():
        return path.resolve()
    raise JobError(
        f"Unknown notebook {text!r}: give one of {', '.join(NOTEBOOKS)} or the path of an "
        ".ipynb file.",
        code="unknown_notebook",
    )


def notebook_parameters(path: Path) -> dict[str, dict[str, Any]]:
    """The names of the notebook's ``parameters`` cell, with papermill's inferred type,
    default and help."""
    import papermill

    try:
        return dict(papermill.inspect_notebook(str(path)))
    except Exception as exc:  # noqa: BLE001 - an unreadable notebook is the user's input
        raise JobError(
            f"The notebook {path.name} cannot be read ({exc}); check that it is a Jupyter notebook.",
            code="bad_notebook",
        ) from None


def scalar_parameter(name: str, value: Any, origin: str) -> Scalar:
    """``value`` as a notebook parameter: a YAML scalar (times as ISO text).

    Raises:
        JobError: ``bad_parameter`` for a list, a mapping or another object (``origin`` says
            where it was given).
    """
    if isinstance(value, dt.datetime):
        return utc_text(value) if value.tzinfo else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise JobError(
        f"The parameter {name} in {origin} is a {type(value).__name__}, not a YAML scalar (text, "
        "number, true/false or null); give one value.",
        code="bad_parameter",
    )


def read_parameters(
    files: Iterable[str | os.PathLike[str]] = (),
    pairs: Iterable[tuple[str, str]] = (),
    declared: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Scalar]:
    """Parameters from YAML files (``-f``), then ``NAME VALUE`` pairs (``-p``); the later wins.

    A ``-p`` value is taken as written when the notebook's ``parameters`` cell (``declared``, as
    :func:`notebook_parameters` gives it) gives that parameter a text default (``label = ""``)
    or a ``str`` annotation (``where: str = None``): ``-p where "x <> 'y' #note"`` keeps its
    ``#note`` and ``-p label 007`` stays ``007``. Other values are YAML scalars: ``-p
    shared_audience 10603117`` is a number, ``-p force_reconciliation true`` a boolean, ``-p
    operator null`` nothing; one that YAML reads as a list or mapping (``age: 3``) is kept as
    the text given. ``-f`` files are YAML: the way to pass a typed value on purpose.

    Raises:
        JobError: ``bad_parameters_file`` for a file that is not a YAML mapping of scalars.
    """
    import yaml

    out: dict[str, Scalar] = {}
    for file in files:
        out.update(_parameters_file(Path(file)))
    for name, text in pairs:
        if _takes_text((declared or {}).get(name)):
            out[name] = text
            continue
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        if isinstance(value, list | dict):
            value = text
        out[name] = scalar_parameter(name, value, "-p")
    return out


def _takes_text(spec: Mapping[str, Any] | None) -> bool:
    """Whether a declared parameter is text: a quoted default or a ``str`` annotation."""
    if not spec:
        return False
    default = str(spec.get("default") or "").strip()
    quoted = default[:1] in ("'", '"') or default[:2].lower() in ("r'", 'r"')
    return quoted or str(spec.get("inferred_type_name") or "") in ("str", "Optional[str]")


def _parameters_file(path: Path) -> dict[str, Scalar]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise JobError(
            f"{path} cannot be read as YAML ({_first_line(exc)}); fix the parameters file.",
            code="bad_parameters_file",
        ) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise JobError(
            f"{path} must be a YAML mapping of parameter names to values (NAME: VALUE lines).",
            code="bad_parameters_file",
        )
    return {str(name): scalar_parameter(str(name), value, str(path)) for name, value in doc.items()}


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def check_names(path: Path, declared: Mapping[str, Any], parameters: Mapping[str, Any]) -> None:
    """Refuse parameters the runner sets itself and names the notebook does not declare.

    Raises:
        JobError: ``reserved_parameter`` or ``unknown_parameter``.
    """
    reserved = [n for n in parameters if n in RESERVED]
    if reserved:
        raise JobError(
            f"{', '.join(reserved)} cannot be set: audtools run injects the workspace and the run "
            "ID. Use -w to choose the workspace.",
            code="reserved_parameter",
        )
    unknown = [n for n in parameters if n not in declared]
    if unknown:
        known = [n for n in declared if n not in RESERVED]
        raise JobError(
            f"The notebook {path.stem} has no parameter {', '.join(unknown)}; its parameters are: "
            f"{', '.join(known) or 'none'}.",
            code="unknown_parameter",
        )


def notebook_kind(path: Path) -> str:
    """The run kind the notebook's metadata declares (``audtools.kind``), else ``job``."""
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - papermill reports unreadable notebooks itself
        return "job"
    return str(nb.metadata.get("audtools", {}).get("kind", "job"))
