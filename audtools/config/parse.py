"""Validation of a parsed ``audtools.toml``: every problem found at once (SPEC §2.1)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from audtools.config.engine import parse_engine
from audtools.config.model import CONFIG_NAME, Operator, WorkspaceConfig
from audtools.config.remote import check_drop, is_remote, parse_remote
from audtools.config.sources import parse_data_sources
from audtools.errors import ConfigError

_WORKSPACE_KEYS = {
    "database",
    "import_drop",
    "export_drop",
    "default_operator",
    "default_region",
    "lock_timeout",
    "settle_seconds",
    "max_rejects_kept",
    "max_line_bytes",
    "max_uncompressed_bytes",
    "max_compression_ratio",
}
# [workspace] numbers: default, smallest allowed, whether a fraction is allowed.
_WORKSPACE_NUMBERS: dict[str, tuple[float, float, bool]] = {
    "settle_seconds": (120, 0, True),
    "max_rejects_kept": (100_000, 0, False),
    "max_line_bytes": (8_388_608, 1, False),
    "max_uncompressed_bytes": (53_687_091_200, 1, False),
    "max_compression_ratio": (200, 1, True),
}
_OPERATOR_KEYS = {"name", "login"}
_LOGINS = ("ims", "native")


def parse_config(data: dict[str, Any], root: Path, name: str = CONFIG_NAME) -> WorkspaceConfig:
    """Validate a parsed configuration dict; see :func:`load_config`.

    Every section is checked, and every problem collected, before one :class:`ConfigError`
    lists them all.
    """
    problems: list[str] = []
    for key in data:
        if key not in ("workspace", "operators", "data_sources", "sftp", "s3", "engine"):
            problems.append(
                f"unknown section '{key}' "
                "(allowed: workspace, operators, data_sources, sftp, s3, engine)"
            )
    text = _TextReader(problems)
    ws = _workspace(data, root, problems, text)
    remote = ws["remote"]
    operators = _operators(data, problems, text)
    if operators and ws["default_operator"] not in operators:
        problems.append(
            f"[workspace]: 'default_operator' is '{ws['default_operator']}', which no "
            "[[operators]] entry names"
        )
    sources = parse_data_sources(data, problems, text)
    engine = parse_engine(data, root, problems)
    if problems:
        raise ConfigError(problems, name)
    numbers = ws["numbers"]
    import_drop, export_drop = ws["import_drop"], ws["export_drop"]
    return WorkspaceConfig(
        root=root,
        database=(root / ws["database"]).resolve(),
        import_drop=import_drop if is_remote(import_drop) else (root / import_drop).resolve(),
        export_drop=export_drop if is_remote(export_drop) else (root / export_drop).resolve(),
        default_operator=ws["default_operator"],
        default_region=ws["default_region"],
        lock_timeout=float(ws["lock_timeout"]),
        settle_seconds=float(numbers["settle_seconds"]),
        max_rejects_kept=int(numbers["max_rejects_kept"]),
        max_line_bytes=int(numbers["max_line_bytes"]),
        max_uncompressed_bytes=int(numbers["max_uncompressed_bytes"]),
        max_compression_ratio=float(numbers["max_compression_ratio"]),
        operators=operators,
        data_sources=sources,
        remote=remote,
        engine=engine,
    )


class _TextReader:
    """Reads a text value of a table, noting a value of another type as a problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems

    def __call__(
        self, table: dict[str, Any], key: str, where: str, default: str | None
    ) -> str | None:
        value = table.get(key, default)
        if value is not None and not isinstance(value, str):
            self.problems.append(f"{where}: '{key}' must be text")
            return default
        return value


def _workspace(
    data: dict[str, Any], root: Path, problems: list[str], text: _TextReader
) -> dict[str, Any]:
    """The ``[workspace]`` table's values (and the ``[sftp]``/``[s3]`` settings of its drops),
    defaults filled in, problems noted in the order a reader meets them."""
    ws = data.get("workspace", {})
    if not isinstance(ws, dict):
        problems.append("[workspace] must be a table")
        ws = {}
    for key in ws:
        if key not in _WORKSPACE_KEYS:
            problems.append(
                f"[workspace]: unknown key '{key}' (allowed: {', '.join(sorted(_WORKSPACE_KEYS))})"
            )
    out: dict[str, Any] = {
        "database": text(ws, "database", "[workspace]", "campaign.duckdb") or "campaign.duckdb",
        "import_drop": text(ws, "import_drop", "[workspace]", "drops/import") or "drops/import",
        "export_drop": text(ws, "export_drop", "[workspace]", "drops/export") or "drops/export",
    }
    for key in ("import_drop", "export_drop"):
        check_drop(out[key], key, problems)
    out["remote"] = parse_remote(data, root, problems)
    out["default_operator"] = text(ws, "default_operator", "[workspace]", "analyst") or "analyst"
    region = text(ws, "default_region", "[workspace]", "US") or "US"
    if not re.fullmatch(r"[A-Z]{2}", region):
        problems.append(
            f"[workspace]: 'default_region' is '{region}'; "
            "allowed: a two-letter upper-case country code such as US or FR"
        )
    out["default_region"] = region
    lock_timeout = ws.get("lock_timeout", 60)
    if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, int | float) or lock_timeout < 0:
        problems.append("[workspace]: 'lock_timeout' must be a number of seconds, 0 or more")
        lock_timeout = 60
    out["lock_timeout"] = lock_timeout
    out["numbers"] = {key: _workspace_number(ws, key, problems) for key in _WORKSPACE_NUMBERS}
    return out


def _operators(
    data: dict[str, Any], problems: list[str], text: _TextReader
) -> dict[str, Operator]:
    """The ``[[operators]]`` entries by name, problems noted."""
    operators: dict[str, Operator] = {}
    raw_ops = data.get("operators", [])
    if not isinstance(raw_ops, list):
        problems.append("[[operators]] must be an array of tables")
        raw_ops = []
    for i, op in enumerate(raw_ops, 1):
        where = f"operators[{i}]"
        if not isinstance(op, dict):
            problems.append(f"{where} must be a table")
            continue
        for key in op:
            if key not in _OPERATOR_KEYS:
                problems.append(f"{where}: unknown key '{key}' (allowed: login, name)")
        op_name = text(op, "name", where, None)
        if not op_name:
            problems.append(f"{where}: 'name' is required")
            continue
        where = f"operators[{i}] ({op_name})"
        login = text(op, "login", where, "ims") or "ims"
        if login not in _LOGINS:
            problems.append(f"{where}: 'login' is '{login}'; allowed: ims, native")
            login = "ims"
        if op_name in operators:
            problems.append(f"{where}: duplicate operator name '{op_name}'")
        operators[op_name] = Operator(name=op_name, login=login)  # type: ignore[arg-type]
    return operators


def _workspace_number(ws: dict[str, Any], key: str, problems: list[str]) -> float:
    default, least, fraction = _WORKSPACE_NUMBERS[key]
    value = ws.get(key, default)
    kinds = (int, float) if fraction else (int,)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < least:
        what = "a number" if fraction else "a whole number"
        problems.append(f"[workspace]: '{key}' must be {what}, {least:g} or more")
        return default
    return value
