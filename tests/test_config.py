"""audtools.toml: defaults, validation, every problem reported at once."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from audtools.config import DEFAULT_CONFIG, load_config, parse_config
from audtools.errors import ConfigError, WorkspaceError


def _parse(text: str, root: Path = Path("/ws")):
    return parse_config(tomllib.loads(text), root)


def test_default_config_parses_with_the_spec_values(tmp_path: Path) -> None:
    cfg = _parse(DEFAULT_CONFIG, tmp_path)
    assert cfg.database == tmp_path / "campaign.duckdb"
    assert cfg.import_drop == tmp_path / "drops/import"
    assert cfg.lock_timeout == 60
    assert cfg.default_region == "US"
    assert cfg.operators["analyst"].login == "ims"
    email = cfg.data_sources["emailEncrypted"]
    assert email.encrypted and email.channel == "email" and email.encoding == "base64"
    assert email.iv == bytes(range(16))
    assert cfg.data_sources["crmDeclaredId"].reconciliation_key == "crm_id"
    assert cfg.source_by_dpid(14016).id == "defaultDataSource"


def test_minimal_config_takes_the_defaults() -> None:
    cfg = _parse('[[data_sources]]\nid = "v"\ndpid = 1\nreconciliation = "visitor_id"\n')
    assert cfg.export_drop == Path("/ws/drops/export")
    source = cfg.data_sources["v"]
    assert (source.hash, source.encryption, source.channel, source.encoding) == (
        "none",
        "none",
        "other",
        "base64",
    )
    assert source.label == "v"


BAD = """
[workspace]
colour = "blue"
lock_timeout = -1

[[data_sources]]
id = "a"
dpid = 1
reconciliation = "declared_id"

[[data_sources]]
id = "a"
dpid = 1
reconciliation = "visitor_id"
hash = "md5"

[[data_sources]]
id = "c"
dpid = 3
reconciliation = "declared_id"
reconciliation_key = "email"
encryption = "aes-cbc"
hash = "sha256"
key_env = "K"
key_file = "k.key"
iv = "0011"

[[data_sources]]
id = "d"
dpid = 4
reconciliation = "declared_id"
reconciliation_key = "email"
encryption = "aes-cbc"
iv = "000102030405060708090a0b0c0d0e0f"
"""


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        _parse(BAD)
    problems = info.value.problems
    text = "\n".join(problems)
    assert "unknown key 'colour'" in text
    assert "lock_timeout" in text
    assert "data_sources[1] (a): 'reconciliation_key' is required" in text
    assert "data_sources[2] (a): 'hash' is 'md5'; allowed: none, sha256" in text
    assert "duplicate id 'a'" in text or "duplicate dpid 1" in text
    assert "data_sources[3] (c): 'hash' cannot be used together with 'encryption'" in text
    assert "data_sources[3] (c): give one of 'key_env' or 'key_file', not both" in text
    assert "data_sources[3] (c): 'iv' must be 16 bytes of hex" in text
    assert "data_sources[4] (d): encryption needs 'key_env' or 'key_file'" in text
    assert info.value.code == "bad_config"


def test_duplicate_dpid_and_id_are_both_named() -> None:
    text = """
[[data_sources]]
id = "a"
dpid = 1
reconciliation = "visitor_id"
[[data_sources]]
id = "a"
dpid = 2
reconciliation = "visitor_id"
[[data_sources]]
id = "b"
dpid = 1
reconciliation = "visitor_id"
"""
    with pytest.raises(ConfigError) as info:
        _parse(text)
    joined = "\n".join(info.value.problems)
    assert "data_sources[2] (a): duplicate id 'a'" in joined
    assert "data_sources[3] (b): duplicate dpid 1 (also used by 'a')" in joined


def test_unknown_values_name_what_is_allowed() -> None:
    text = """
[[operators]]
name = "bob"
login = "ldap"
[[data_sources]]
id = "x"
dpid = 1
reconciliation = "cookie"
channel = "fax"
encoding = "base32"
"""
    with pytest.raises(ConfigError) as info:
        _parse(text)
    joined = "\n".join(info.value.problems)
    assert "'login' is 'ldap'; allowed: ims, native" in joined
    assert "'reconciliation' is 'cookie'; allowed: visitor_id, declared_id" in joined
    assert "'channel' is 'fax'" in joined
    assert "'encoding' is 'base32'" in joined


def test_load_config_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "audtools.toml").write_text("[workspace]\nlock_timeout = 'x'\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(tmp_path / "audtools.toml") in info.value.message


def test_a_folder_without_config_is_not_a_workspace(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError) as info:
        load_config(tmp_path)
    assert info.value.code == "not_a_workspace"


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "audtools.toml").write_text("[workspace\n")
    with pytest.raises(ConfigError):
        load_config(tmp_path)


def test_the_error_names_the_file_even_with_operators(tmp_path: Path) -> None:
    (tmp_path / "audtools.toml").write_text(
        '[[operators]]\nname = "bob"\nlogin = "ims"\n[workspace]\ndefault_operator = "bob"\ncolour = 1\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.message.startswith(str(tmp_path / "audtools.toml"))


def test_import_keys_take_the_spec_defaults() -> None:
    cfg = _parse('[[data_sources]]\nid = "v"\ndpid = 1\nreconciliation = "visitor_id"\n')
    assert (cfg.settle_seconds, cfg.max_rejects_kept, cfg.max_line_bytes) == (120, 100000, 8388608)
    assert (cfg.max_uncompressed_bytes, cfg.max_compression_ratio) == (53687091200, 200)
    source = cfg.data_sources["v"]
    assert source.outbound_name is None and source.name_template.timestamp == "auto"
    assert (source.outbound_header_rows, source.outbound_separator, source.outbound_info) == (0, ",", "optional")


def test_outbound_keys_are_validated_each_naming_entry_and_field() -> None:
    text = (
        '[workspace]\nsettle_seconds = -1\nmax_line_bytes = 1.5\n'
        '[[data_sources]]\nid = "v"\ndpid = 1\nreconciliation = "visitor_id"\n'
        'outbound_header_rows = -2\noutbound_separator = "\\t"\noutbound_info = "always"\n'
        'outbound_name = "<SYNC_TYPE>_<SYNC_MODE>_<TIMESTAMP>"\n'
    )
    with pytest.raises(ConfigError) as info:
        _parse(text)
    message = str(info.value)
    for words in ("'settle_seconds'", "'max_line_bytes'", "data_sources[1] (v): 'outbound_header_rows'",
                  "'outbound_separator'", "'outbound_info'", "'outbound_name'", "DPID"):
        assert words in message


def test_a_template_is_compiled_once_per_data_source() -> None:
    cfg = _parse(
        '[[data_sources]]\nid = "v"\ndpid = 7\nreconciliation = "visitor_id"\n'
        'outbound_name = "<SYNC_TYPE>_<ORDER_ID>_<DPID>_<MASTER_DPID>_<SYNC_MODE>_<TIMESTAMP>.sync"\n'
        'outbound_timestamp = "seconds"\n'
    )
    template = cfg.data_sources["v"].outbound_name
    assert template is not None and template is cfg.data_sources["v"].name_template
    assert template.own.fullmatch("ftp_1_2_7_full_1566906141.sync")
