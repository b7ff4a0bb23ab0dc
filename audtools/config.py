"""``audtools.toml`` → typed, validated dataclasses.

:func:`load_config` reads the workspace's configuration and reports every problem at once in one
:class:`~audtools.errors.ConfigError`, each naming the entry, the field and what is allowed. Keys
are never read here: a data source only names where its key lives (``key_env`` or ``key_file``),
and :mod:`audtools.workspace.keys` reads it when the data source is used.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from audtools.errors import ConfigError, RefusedError

CONFIG_NAME = "audtools.toml"

Reconciliation = Literal["visitor_id", "declared_id"]
HashMode = Literal["none", "sha256"]
Encryption = Literal["none", "aes-cbc"]
Encoding = Literal["base64", "hex"]
Channel = Literal["email", "sms", "other"]
Login = Literal["ims", "native"]

_WORKSPACE_KEYS = {
    "database",
    "import_drop",
    "export_drop",
    "default_operator",
    "default_region",
    "lock_timeout",
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
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "reconciliation": ("visitor_id", "declared_id"),
    "hash": ("none", "sha256"),
    "encryption": ("none", "aes-cbc"),
    "encoding": ("base64", "hex"),
    "channel": ("email", "sms", "other"),
    "login": ("ims", "native"),
}


@dataclass(frozen=True)
class Operator:
    """A Campaign operator: only ``login = "ims"`` operators may share audiences."""

    name: str
    login: Login = "ims"


@dataclass(frozen=True)
class DataSource:
    """A shared data source: the AAM data source (``dpid``) and how its IDs reconcile.

    ``reconciliation = "visitor_id"`` matches IDs with profiles' visitor IDs;
    ``"declared_id"`` matches them with the declared ID derived from ``reconciliation_key``.
    """

    id: str
    label: str
    dpid: int
    destination_id: int | None
    reconciliation: Reconciliation
    reconciliation_key: str | None = None
    hash: HashMode = "none"
    channel: Channel = "other"
    encryption: Encryption = "none"
    key_env: str | None = None
    key_file: str | None = None
    iv: bytes | None = None
    encoding: Encoding = "base64"

    @property
    def encrypted(self) -> bool:
        """Whether the IDs of this data source are AES-encrypted."""
        return self.encryption != "none"

    @property
    def lowercase_ids(self) -> bool:
        """Whether IDs read from files are lower-cased (hashed IDs and hex ciphertexts)."""
        return self.hash == "sha256" or (self.encrypted and self.encoding == "hex")

    def fingerprint(self) -> str:
        """A text that changes whenever the way declared IDs are derived changes (no key in it)."""
        parts = [
            self.reconciliation,
            self.reconciliation_key or "",
            self.hash,
            self.channel,
            self.encryption,
            self.key_env or "",
            self.key_file or "",
            self.iv.hex() if self.iv else "",
            self.encoding,
        ]
        return "|".join(parts)


@dataclass(frozen=True)
class WorkspaceConfig:
    """The validated content of ``audtools.toml``, with paths made absolute."""

    root: Path
    database: Path
    import_drop: Path
    export_drop: Path
    default_operator: str = "analyst"
    default_region: str = "US"
    lock_timeout: float = 60.0
    operators: dict[str, Operator] = field(default_factory=dict)
    data_sources: dict[str, DataSource] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """The configuration file."""
        return self.root / CONFIG_NAME

    def data_source(self, source_id: str) -> DataSource:
        """The data source whose ``id`` is ``source_id``.

        Raises:
            RefusedError: ``unknown_data_source`` when ``audtools.toml`` configures none.
        """
        source = self.data_sources.get(source_id)
        if source is None:
            known = ", ".join(self.data_sources) or "none"
            raise RefusedError(
                f"Unknown data source {source_id!r} (configured: {known}); see audtools.toml.",
                code="unknown_data_source",
            )
        return source

    def source_by_dpid(self, dpid: int) -> DataSource | None:
        """The data source whose ``dpid`` is ``dpid``, if any."""
        for source in self.data_sources.values():
            if source.dpid == dpid:
                return source
        return None


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


def parse_config(data: dict[str, Any], root: Path, name: str = CONFIG_NAME) -> WorkspaceConfig:
    """Validate a parsed configuration dict; see :func:`load_config`."""
    problems: list[str] = []
    for key in data:
        if key not in ("workspace", "operators", "data_sources"):
            problems.append(
                f"unknown section '{key}' (allowed: workspace, operators, data_sources)"
            )

    ws = data.get("workspace", {})
    if not isinstance(ws, dict):
        problems.append("[workspace] must be a table")
        ws = {}
    for key in ws:
        if key not in _WORKSPACE_KEYS:
            problems.append(
                f"[workspace]: unknown key '{key}' (allowed: {', '.join(sorted(_WORKSPACE_KEYS))})"
            )

    def text(table: dict[str, Any], key: str, where: str, default: str | None) -> str | None:
        value = table.get(key, default)
        if value is not None and not isinstance(value, str):
            problems.append(f"{where}: '{key}' must be text")
            return default
        return value

    database = text(ws, "database", "[workspace]", "campaign.duckdb") or "campaign.duckdb"
    import_drop = text(ws, "import_drop", "[workspace]", "drops/import") or "drops/import"
    export_drop = text(ws, "export_drop", "[workspace]", "drops/export") or "drops/export"
    default_operator = text(ws, "default_operator", "[workspace]", "analyst") or "analyst"
    default_region = text(ws, "default_region", "[workspace]", "US") or "US"
    if not re.fullmatch(r"[A-Z]{2}", default_region):
        problems.append(
            f"[workspace]: 'default_region' is '{default_region}'; "
            "allowed: a two-letter upper-case country code such as US or FR"
        )
    lock_timeout = ws.get("lock_timeout", 60)
    if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, int | float) or lock_timeout < 0:
        problems.append("[workspace]: 'lock_timeout' must be a number of seconds, 0 or more")
        lock_timeout = 60

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
    if operators and default_operator not in operators:
        problems.append(
            f"[workspace]: 'default_operator' is '{default_operator}', which no [[operators]] entry names"
        )

    sources: dict[str, DataSource] = {}
    seen_dpids: dict[int, str] = {}
    raw_sources = data.get("data_sources", [])
    if not isinstance(raw_sources, list):
        problems.append("[[data_sources]] must be an array of tables")
        raw_sources = []
    seen_ids: set[str] = set()
    for i, src in enumerate(raw_sources, 1):
        source = _parse_source(src, i, problems, text)
        # Duplicates are found on the raw values, so invalid entries are compared too.
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

    if problems:
        raise ConfigError(problems, name)
    return WorkspaceConfig(
        root=root,
        database=(root / database).resolve(),
        import_drop=(root / import_drop).resolve(),
        export_drop=(root / export_drop).resolve(),
        default_operator=default_operator,
        default_region=default_region,
        lock_timeout=float(lock_timeout),
        operators=operators,
        data_sources=sources,
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
    iv_text = text(src, "iv", where, None)

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
        reconciliation=reconciliation,  # type: ignore[arg-type]
        reconciliation_key=key_column,
        hash=hash_mode,  # type: ignore[arg-type]
        channel=channel,  # type: ignore[arg-type]
        encryption=encryption,  # type: ignore[arg-type]
        key_env=key_env,
        key_file=key_file,
        iv=iv,
        encoding=encoding,  # type: ignore[arg-type]
    )


DEFAULT_CONFIG = '''\
# audtools workspace configuration. Paths are relative to this folder.
# Keys are never written here: a data source names the environment variable (key_env) or the
# owner-only file (key_file) that holds its key as hex text.

[workspace]
database = "campaign.duckdb"      # the Campaign database
import_drop = "drops/import"      # the importSharedAudience drop (AAM outbound files)
export_drop = "drops/export"      # the exportSharedAudience drop (onboarding files)
default_operator = "analyst"
default_region = "US"             # country for phone numbers written without one
lock_timeout = 60                 # seconds to wait for another process's run

[[operators]]
name = "analyst"
login = "ims"                     # "ims" (Adobe ID) or "native"

[[data_sources]]                  # Campaign's default Visitor ID data source
id = "defaultDataSource"
label = "Recipient - Visitor ID"
dpid = 14016                      # AAM data source ID of the IDs in the files
destination_id = 46390            # AAM destination ID
reconciliation = "visitor_id"

[[data_sources]]
id = "crmDeclaredId"
label = "CRM ID - Declared ID"
dpid = 14017
destination_id = 46391
reconciliation = "declared_id"
reconciliation_key = "crm_id"     # the profile column that holds the declared ID
hash = "none"                     # "none" or "sha256"

[[data_sources]]
id = "emailEncrypted"
label = "Email - Encrypted Declared ID"
dpid = 14018
destination_id = 46392
reconciliation = "declared_id"
reconciliation_key = "email"
channel = "email"                 # "email", "sms" or "other" (default "other")
encryption = "aes-cbc"            # "none" or "aes-cbc" (AES, CBC mode, PKCS7 padding)
key_env = "AUDTOOLS_KEY_EMAIL"    # the key as hex text (16, 24 or 32 bytes), from this variable ...
# key_file = "keys/email.key"     # ... or from a file of hex text readable by its owner only
iv = "000102030405060708090a0b0c0d0e0f"   # hex, 16 bytes, fixed per data source
encoding = "base64"               # how ciphertexts are written: "base64" or "hex"
'''
