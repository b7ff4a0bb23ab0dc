"""``audtools.toml`` → typed, validated dataclasses.

:func:`load_config` reads the workspace's configuration and reports every problem at once in one
:class:`~audtools.errors.ConfigError`, each naming the entry, the field and what is allowed. Keys
are never read here: a data source only names where its key lives (``key_env`` or ``key_file``),
and :mod:`audtools.columns.aes` reads it when the data source is used.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from audtools.config.default import DEFAULT_CONFIG
from audtools.config.model import (
    CONFIG_NAME,
    Channel,
    DataSource,
    Encoding,
    Encryption,
    HashMode,
    Login,
    Operator,
    Reconciliation,
    WorkspaceConfig,
)
from audtools.config.parse import parse_config
from audtools.errors import ConfigError

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_CONFIG",
    "Channel",
    "DataSource",
    "Encoding",
    "Encryption",
    "HashMode",
    "Login",
    "Operator",
    "Reconciliation",
    "WorkspaceConfig",
    "load_config",
    "parse_config",
]


def load_config(root: str | Path) -> WorkspaceConfig:
    """Read and validate ``ROOT/audtools.toml``.

    Args:
        root: the workspace folder.

    Returns:
        The validated configuration.

    Raises:
        WorkspaceError: when the folder holds no ``audtools.toml``.
        ConfigError: listing every problem of the file at once.
    """
    from audtools.errors import WorkspaceError

    root = Path(root).resolve()
    path = root / CONFIG_NAME
    if not path.is_file():
        raise WorkspaceError(
            f"{root} is not an audtools workspace (no {CONFIG_NAME}). "
            "Create one with 'audtools init DIR' or pass -w/--workspace.",
            code="not_a_workspace",
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"not valid TOML ({exc})"], str(path)) from None
    return parse_config(data, root, str(path))

