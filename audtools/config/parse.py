"""Validation of a parsed ``audtools.toml``: every problem found at once (SPEC §2.1)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from audtools.config.model import CONFIG_NAME, DataSource, Operator, WorkspaceConfig
from audtools.config.remote import check_drop, is_remote, parse_remote
from audtools.config.templates import DEFAULT_TEMPLATE, TemplateError, compile_template
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
_SOURCE_KEYS = {
    "id",
    "label",
    "dpid",
    "destination_id",
    "reconciliation",
    "reconciliation_key",
    "hash",
    "channel",
    "encryption",
    "key_env",
    "key_file",
    "iv",
    "encoding",
    "outbound_name",
    "outbound_timestamp",
    "outbound_header_rows",
    "outbound_separator",
    "outbound_info",
    "target_data_owner",
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "reconciliation": ("visitor_id", "declared_id"),
    "hash": ("none", "sha256"),
    "encryption": ("none", "aes-cbc"),
    "encoding": ("base64", "hex"),
    "channel": ("email", "sms", "other"),
    "login": ("ims", "native"),
    "outbound_separator": (",", ";", "|", " "),
    "outbound_info": ("optional", "required"),
}


def parse_config(data: dict[str, Any], root: Path, name: str = CONFIG_NAME) -> WorkspaceConfig:
    """Validate a parsed configuration dict; see :func:`load_config`.

    Every section is checked, and every problem collected, before one :class:`ConfigError`
    lists them all.
    """
    problems: list[str] = []
    for key in data:
        if key not in ("workspace", "operators", "data_sources", "sftp", "s3"):
            problems.append(
                f"unknown section '{key}' (allowed: workspace, operators, data_sources, sftp, s3)"
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
    sources = _data_sources(data, problems, text)
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
        if login not in _CHOICES["login"]:
            problems.append(f"{where}: 'login' is '{login}'; allowed: ims, native")
            login = "ims"
        if op_name in operators:
            problems.append(f"{where}: duplicate operator name '{op_name}'")
        operators[op_name] = Operator(name=op_name, login=login)  # type: ignore[arg-type]
    return operators


def _data_sources(
    data: dict[str, Any], problems: list[str], text: _TextReader
) -> dict[str, DataSource]:
    """The ``[[data_sources]]`` entries by id; duplicate ids and dpids are found on the raw
    values, so invalid entries are compared too."""
    sources: dict[str, DataSource] = {}
    seen_dpids: dict[int, str] = {}
    raw_sources = data.get("data_sources", [])
    if not isinstance(raw_sources, list):
        problems.append("[[data_sources]] must be an array of tables")
        raw_sources = []
    seen_ids: set[str] = set()
    for i, src in enumerate(raw_sources, 1):
        source = _parse_source(src, i, problems, text)
        ident = src.get("id") if isinstance(src, dict) else None
        dpid = src.get("dpid") if isinstance(src, dict) else None
        if isinstance(ident, str) and ident:
            if ident in seen_ids:
                problems.append(f"data_sources[{i}] ({ident}): duplicate id '{ident}'")
            seen_ids.add(ident)
            if isinstance(dpid, int) and not isinstance(dpid, bool):
                if dpid in seen_dpids:
                    problems.append(
                        f"data_sources[{i}] ({ident}): duplicate dpid {dpid} "
                        f"(also used by '{seen_dpids[dpid]}')"
                    )
                seen_dpids.setdefault(dpid, ident)
        if source is not None:
            sources.setdefault(source.id, source)
    return sources


def _workspace_number(ws: dict[str, Any], key: str, problems: list[str]) -> float:
    default, least, fraction = _WORKSPACE_NUMBERS[key]
    value = ws.get(key, default)
    kinds = (int, float) if fraction else (int,)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < least:
        what = "a number" if fraction else "a whole number"
        problems.append(f"[workspace]: '{key}' must be {what}, {least:g} or more")
        return default
    return value


def _outbound(src: dict[str, Any], where: str, problems: list[str], dpid: int | None) -> dict[str, Any]:
    """The ``outbound_*`` keys of a data source, validated (the template compiled once, here)."""
    out: dict[str, Any] = {}
    rows = src.get("outbound_header_rows", 0)
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        problems.append(f"{where}: 'outbound_header_rows' must be a whole number, 0 or more")
    else:
        out["outbound_header_rows"] = rows
    for key, default in (("outbound_separator", ","), ("outbound_info", "optional")):
        value = src.get(key, default)
        if value not in _CHOICES[key]:
            allowed = ", ".join(repr(c) if c == " " else c for c in _CHOICES[key])
            problems.append(f"{where}: '{key}' is {value!r}; allowed: {allowed}")
        else:
            out[key] = value
    name = src.get("outbound_name")
    timestamp = src.get("outbound_timestamp")
    for key, value in (("outbound_name", name), ("outbound_timestamp", timestamp)):
        if value is not None and not isinstance(value, str):
            problems.append(f"{where}: '{key}' must be text")
            return out
    if dpid is None or (name is None and timestamp is None):
        return out
    try:
        out["outbound_name"] = compile_template(name or DEFAULT_TEMPLATE, timestamp, dpid=dpid)
    except TemplateError as exc:
        field = "outbound_name" if name is not None and "outbound_timestamp" not in str(exc) else (
            "outbound_timestamp" if timestamp is not None else "outbound_name"
        )
        problems.append(f"{where}: '{field}': {exc}")
    return out


_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEX_KEY = re.compile(r"(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{48}|[0-9a-fA-F]{64})")
# base64 of 16, 24 or 32 bytes: 24, 32 or 44 characters with the padding they need (standard or
# URL-safe alphabet, padding optional).
_BASE64_KEY = re.compile(r"[A-Za-z0-9+/_-]{22}(?:==)?|[A-Za-z0-9+/_-]{32}|[A-Za-z0-9+/_-]{43}=?")


def looks_like_key(value: str) -> bool:
    """True when ``value`` has the shape of an AES key (hex or base64 of 16, 24 or 32 bytes).

    ``key_env`` and ``key_file`` name where a key lives; a key pasted there by mistake would be
    copied into results, reports and notebooks, so it is refused without being echoed. A base64
    text counts as a key when it mixes upper case, lower case and digits (random bytes nearly
    always do) or holds a base64 sign (``+``, ``/``, ``=``), so that long variable names in
    capitals, such as ``CAMPAIGN_SAMPLES_VISITOR_AES_KEY``, are not taken for keys.
    """
    text = value.strip()
    if _HEX_KEY.fullmatch(text):
        return True
    if not _BASE64_KEY.fullmatch(text):
        return False
    if any(sign in text for sign in "+/="):
        return True
    return (
        any(c.isupper() for c in text)
        and any(c.islower() for c in text)
        and any(c.isdigit() for c in text)
    )


def _check_key_names(
    key_env: str | None, key_file: str | None, where: str, problems: list[str]
) -> None:
    # The messages never quote the value: it may be the key itself.
    if key_env is not None and looks_like_key(key_env):
        problems.append(
            f"{where}: 'key_env' looks like a key, not the name of an environment variable; "
            "put the key in a variable (or a file) and give its name"
        )
    elif key_env is not None and not _VARIABLE_NAME.fullmatch(key_env):
        problems.append(
            f"{where}: 'key_env' must be the name of an environment variable "
            "(letters, digits and '_', not starting with a digit)"
        )
    if key_file is not None and looks_like_key(key_file):
        problems.append(
            f"{where}: 'key_file' looks like a key, not the path of a key file; "
            "put the key in a file readable by you only and give its path"
        )


def _parse_source(src: Any, i: int, problems: list[str], text: Any) -> DataSource | None:
    where = f"data_sources[{i}]"
    if not isinstance(src, dict):
        problems.append(f"{where} must be a table")
        return None
    ident = src.get("id")
    if not isinstance(ident, str) or not ident:
        problems.append(f"{where}: 'id' is required (text)")
        return None
    where = f"data_sources[{i}] ({ident})"
    before = len(problems)
    for key in src:
        if key not in _SOURCE_KEYS:
            problems.append(
                f"{where}: unknown key '{key}' (allowed: {', '.join(sorted(_SOURCE_KEYS))})"
            )

    def integer(key: str, required: bool) -> int | None:
        value = src.get(key)
        if value is None:
            if required:
                problems.append(f"{where}: '{key}' is required (a whole number)")
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.append(f"{where}: '{key}' must be a whole number")
            return None
        return value

    def choice(key: str, default: str) -> str:
        value = src.get(key, default)
        if value not in _CHOICES[key]:
            problems.append(
                f"{where}: '{key}' is {value!r}; allowed: {', '.join(_CHOICES[key])}"
            )
            return default
        return str(value)

    dpid = integer("dpid", True)
    destination_id = integer("destination_id", False)
    owner = integer("target_data_owner", False)
    label = text(src, "label", where, ident) or ident
    if "reconciliation" not in src:
        problems.append(f"{where}: 'reconciliation' is required (visitor_id or declared_id)")
    reconciliation = choice("reconciliation", "visitor_id")
    key_column = text(src, "reconciliation_key", where, None)
    hash_mode = choice("hash", "none")
    channel = choice("channel", "other")
    encryption = choice("encryption", "none")
    encoding = choice("encoding", "base64")
    key_env = text(src, "key_env", where, None)
    key_file = text(src, "key_file", where, None)
    _check_key_names(key_env, key_file, where, problems)
    iv_text = text(src, "iv", where, None)
    outbound = _outbound(src, where, problems, dpid)

    if reconciliation == "declared_id" and not key_column:
        problems.append(f"{where}: 'reconciliation_key' is required with reconciliation = \"declared_id\"")
    if encryption != "none":
        if hash_mode != "none":
            problems.append(f"{where}: 'hash' cannot be used together with 'encryption'; choose one")
        if key_env and key_file:
            problems.append(f"{where}: give one of 'key_env' or 'key_file', not both")
        if not key_env and not key_file:
            problems.append(f"{where}: encryption needs 'key_env' or 'key_file' (one of them)")
        if iv_text is None:
            problems.append(f"{where}: encryption needs 'iv' (16 bytes as 32 hex digits)")
    iv: bytes | None = None
    if iv_text is not None:
        if re.fullmatch(r"[0-9a-fA-F]{32}", iv_text):
            iv = bytes.fromhex(iv_text)
        else:
            problems.append(f"{where}: 'iv' must be 16 bytes of hex (32 hex digits)")
    if len(problems) > before or dpid is None:
        return None
    return DataSource(
        id=ident,
        label=label,
        dpid=dpid,
        destination_id=destination_id,
        target_data_owner=owner,
        reconciliation=reconciliation,  # type: ignore[arg-type]
        reconciliation_key=key_column,
        hash=hash_mode,  # type: ignore[arg-type]
        channel=channel,  # type: ignore[arg-type]
        encryption=encryption,  # type: ignore[arg-type]
        key_env=key_env,
        key_file=key_file,
        iv=iv,
        encoding=encoding,  # type: ignore[arg-type]
        **outbound,
    )

