"""The validated configuration: workspace, operators and data sources as typed dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from audtools.config.engine import EngineSettings
from audtools.config.remote import RemoteSettings
from audtools.config.templates import DEFAULT_TEMPLATE, NameTemplate, compile_template
from audtools.errors import RefusedError

CONFIG_NAME = "audtools.toml"

Reconciliation = Literal["visitor_id", "declared_id"]
HashMode = Literal["none", "sha256"]
Encryption = Literal["none", "aes-cbc"]
Encoding = Literal["base64", "hex"]
Channel = Literal["email", "sms", "other"]
Login = Literal["ims", "native"]
InfoPolicy = Literal["optional", "required"]
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
    outbound_name: NameTemplate | None = None
    outbound_header_rows: int = 0
    outbound_separator: str = ","
    outbound_info: InfoPolicy = "optional"
    target_data_owner: int | None = None

    @property
    def name_template(self) -> NameTemplate:
        """The compiled ``outbound_name`` (the default template when none was configured)."""
        if self.outbound_name is not None:
            return self.outbound_name
        return compile_template(DEFAULT_TEMPLATE, "auto", dpid=self.dpid)

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
    """The validated content of ``audtools.toml``, with paths made absolute.

    ``import_drop`` and ``export_drop`` are folders (absolute paths) or ``sftp://``/``s3://``
    URLs (text), whose settings are in ``remote``.
    """

    root: Path
    database: Path
    import_drop: Path | str
    export_drop: Path | str
    default_operator: str = "analyst"
    default_region: str = "US"
    lock_timeout: float = 60.0
    settle_seconds: float = 120.0
    max_rejects_kept: int = 100_000
    max_line_bytes: int = 8_388_608
    max_uncompressed_bytes: int = 53_687_091_200
    max_compression_ratio: float = 200.0
    operators: dict[str, Operator] = field(default_factory=dict)
    data_sources: dict[str, DataSource] = field(default_factory=dict)
    remote: RemoteSettings = RemoteSettings()
    engine: EngineSettings = EngineSettings()

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

