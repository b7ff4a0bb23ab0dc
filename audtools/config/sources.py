"""The ``[[data_sources]]`` tables of ``audtools.toml`` validated (SPEC §2.1, §4.1): every
problem found at once, in the order of each table's keys."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from audtools.config.model import DataSource
from audtools.config.templates import DEFAULT_TEMPLATE, TemplateError, compile_template

__all__ = ["TextReader", "looks_like_key", "parse_data_sources"]

TextReader = Callable[[dict[str, Any], str, str, str | None], str | None]
"""Reads a text value of a table (table, key, where, default), noting another type as a problem."""

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
    "outbound_separator": (",", ";", "|", " "),
    "outbound_info": ("optional", "required"),
}


def parse_data_sources(data: dict[str, Any], problems: list[str], text: TextReader) -> dict[str, DataSource]:
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


class _SourceReader:
    """The values of one ``[[data_sources]]`` table, each wrong one noted as a problem."""

    def __init__(self, src: dict[str, Any], where: str, problems: list[str], text: TextReader) -> None:
        self.src, self.where, self.problems, self._text = src, where, problems, text

    def integer(self, key: str, required: bool) -> int | None:
        value = self.src.get(key)
        if value is None:
            if required:
                self.problems.append(f"{self.where}: '{key}' is required (a whole number)")
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.problems.append(f"{self.where}: '{key}' must be a whole number")
            return None
        return value

    def choice(self, key: str, default: str) -> str:
        value = self.src.get(key, default)
        if value not in _CHOICES[key]:
            self.problems.append(
                f"{self.where}: '{key}' is {value!r}; allowed: {', '.join(_CHOICES[key])}"
            )
            return default
        return str(value)

    def text(self, key: str, default: str | None = None) -> str | None:
        return self._text(self.src, key, self.where, default)


def _source_id(src: Any, i: int, problems: list[str]) -> str | None:
    """The data source's ``id``, or None (with the problem) when it has none or is no table."""
    if not isinstance(src, dict):
        problems.append(f"data_sources[{i}] must be a table")
        return None
    ident = src.get("id")
    if not isinstance(ident, str) or not ident:
        problems.append(f"data_sources[{i}]: 'id' is required (text)")
        return None
    return ident


def _unknown_source_keys(src: dict[str, Any], where: str, problems: list[str]) -> None:
    for key in src:
        if key not in _SOURCE_KEYS:
            problems.append(
                f"{where}: unknown key '{key}' (allowed: {', '.join(sorted(_SOURCE_KEYS))})"
            )


def _secret_rules(
    read: _SourceReader, values: dict[str, Any], iv_text: str | None
) -> bytes | None:
    """The rules between reconciliation, hashing and encryption keys; the IV as bytes."""
    where, problems = read.where, read.problems
    if values["reconciliation"] == "declared_id" and not values["reconciliation_key"]:
        problems.append(f"{where}: 'reconciliation_key' is required with reconciliation = \"declared_id\"")
    if values["encryption"] != "none":
        if values["hash"] != "none":
            problems.append(f"{where}: 'hash' cannot be used together with 'encryption'; choose one")
        if values["key_env"] and values["key_file"]:
            problems.append(f"{where}: give one of 'key_env' or 'key_file', not both")
        if not values["key_env"] and not values["key_file"]:
            problems.append(f"{where}: encryption needs 'key_env' or 'key_file' (one of them)")
        if iv_text is None:
            problems.append(f"{where}: encryption needs 'iv' (16 bytes as 32 hex digits)")
    if iv_text is None:
        return None
    if re.fullmatch(r"[0-9a-fA-F]{32}", iv_text):
        return bytes.fromhex(iv_text)
    problems.append(f"{where}: 'iv' must be 16 bytes of hex (32 hex digits)")
    return None


def _source_values(read: _SourceReader, ident: str) -> dict[str, Any]:
    """The data source's keys read in the order their problems are listed (all but ``iv`` and
    the ``outbound_*`` keys), as :class:`DataSource` fields."""
    values: dict[str, Any] = {
        "dpid": read.integer("dpid", True),
        "destination_id": read.integer("destination_id", False),
        "target_data_owner": read.integer("target_data_owner", False),
        "label": read.text("label", ident) or ident,
    }
    if "reconciliation" not in read.src:
        read.problems.append(f"{read.where}: 'reconciliation' is required (visitor_id or declared_id)")
    values["reconciliation"] = read.choice("reconciliation", "visitor_id")
    values["reconciliation_key"] = read.text("reconciliation_key")
    values["hash"] = read.choice("hash", "none")
    values["channel"] = read.choice("channel", "other")
    values["encryption"] = read.choice("encryption", "none")
    values["encoding"] = read.choice("encoding", "base64")
    values["key_env"] = read.text("key_env")
    values["key_file"] = read.text("key_file")
    _check_key_names(values["key_env"], values["key_file"], read.where, read.problems)
    return values


def _parse_source(src: Any, i: int, problems: list[str], text: TextReader) -> DataSource | None:
    """One ``[[data_sources]]`` table as a :class:`DataSource`, or None when it has a problem
    (each added to ``problems``, in the order of the table's keys above)."""
    ident = _source_id(src, i, problems)
    if ident is None:
        return None
    where = f"data_sources[{i}] ({ident})"
    before = len(problems)
    _unknown_source_keys(src, where, problems)
    read = _SourceReader(src, where, problems, text)
    values = _source_values(read, ident)
    iv_text = read.text("iv")
    outbound = _outbound(src, where, problems, values["dpid"])
    iv = _secret_rules(read, values, iv_text)
    if len(problems) > before or values["dpid"] is None:
        return None
    return DataSource(id=ident, iv=iv, **values, **outbound)
