"""Where a drop is: a folder, an ``sftp://USER@HOST[:PORT]/PATH`` or an ``s3://BUCKET/PREFIX`` URL
(SPEC §2.2), and the settings of the remote kinds (``[sftp]``, ``[s3]``, ``[s3.import]``,
``[s3.export]`` of ``audtools.toml``).

:func:`parse_location` reads a location and refuses, with a message fit for a configuration error,
a URL that carries a password or is not of a kind audtools reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = [
    "RemoteSettings",
    "S3Location",
    "S3Settings",
    "SftpLocation",
    "SftpSettings",
    "check_drop",
    "is_remote",
    "parse_location",
    "parse_remote",
    "redact",
]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# S3 bucket names: 3 to 63 lower-case letters, digits, dots and hyphens.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class SftpLocation:
    """An SFTP drop: ``sftp://USER@HOST[:PORT]/PATH``.

    Attributes:
        user: the login.
        host: the server's name or address.
        port: its port (22 by default).
        path: the folder: absolute, or relative to the login folder (from ``/~/P``: ``P``).
    """

    user: str
    host: str
    port: int
    path: str

    @property
    def url(self) -> str:
        """The URL, as people see it (it never holds a credential)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port == 22 else f":{self.port}"
        if self.path.startswith("/"):
            path = self.path
        else:
            path = "/~" if self.path == "." else "/~/" + self.path
        return f"sftp://{self.user}@{host}{port}{path.rstrip('/') or '/'}"


@dataclass(frozen=True)
class S3Location:
    """An S3 drop: ``s3://BUCKET/PREFIX``: the objects ``PREFIX/NAME``.

    Attributes:
        bucket: the bucket.
        prefix: the folder in it, without slashes at either end ("" for the bucket's top).
    """

    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        """The URL, as people see it."""
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, name: str) -> str:
        """The object key of the drop's file ``name``."""
        return f"{self.prefix}/{name}" if self.prefix else name


@dataclass(frozen=True)
class SftpSettings:
    """The ``[sftp]`` table: how to trust the server and prove who we are.

    Attributes:
        known_hosts: the ``known_hosts`` file host keys are checked against (always).
        key_file: an OpenSSH private key, the only key offered (the SSH agent signs with it
            when it holds it); None: the SSH agent's keys, then the default keys of ``~/.ssh``.
    """

    known_hosts: Path = Path("~/.ssh/known_hosts")
    key_file: Path | None = None


@dataclass(frozen=True)
class S3Settings:
    """The ``[s3]`` table, with ``[s3.import]`` or ``[s3.export]`` applied for one drop.

    Credentials are never here: they come from the standard AWS chain (``profile`` names one of
    its profiles).

    Attributes:
        region: the bucket's region (None: the chain's).
        endpoint_url: an S3-compatible store's endpoint (None: Amazon S3).
        addressing: ``"virtual"`` or ``"path"`` (None: the client's choice).
        profile: an AWS profile name (None: the chain's default).
    """

    region: str | None = None
    endpoint_url: str | None = None
    addressing: str | None = None
    profile: str | None = None


def redact(location: str) -> str:
    """``location`` without the password a URL should not hold (for messages)."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", location)


def is_remote(location: object) -> bool:
    """Whether ``location`` (a configured drop) is an ``sftp://`` or ``s3://`` URL."""
    return isinstance(location, str) and bool(_SCHEME.match(location))


def parse_location(text: str) -> SftpLocation | S3Location | None:
    """The remote location ``text`` names, or None for a folder.

    Raises:
        ValueError: a URL of another kind, with a password, or malformed; the message says what
            is allowed and never repeats a password.
    """
    match = _SCHEME.match(text)
    if match is None:
        return None
    scheme = match.group(1).lower()
    if scheme == "sftp":
        return _parse_sftp(text)
    if scheme == "s3":
        return _parse_s3(text)
    raise ValueError(
        f"'{scheme}://' drops are not supported (allowed: a folder, sftp://USER@HOST[:PORT]/PATH, "
        "s3://BUCKET/PREFIX)"
    )


def _parse_sftp(text: str) -> SftpLocation:
    parts = urlsplit(text)
    if parts.password is not None:
        raise ValueError(
            "an sftp:// URL must not hold a password: give it in AUDTOOLS_SFTP_PASSWORD, or use a "
            "key ([sftp] key_file or the SSH agent)"
        )
    if parts.query or parts.fragment:
        raise ValueError("an sftp:// URL has no '?' or '#' part")
    if not parts.username:
        raise ValueError("an sftp:// URL names its login: sftp://USER@HOST[:PORT]/PATH")
    try:
        port = parts.port or 22
    except ValueError:
        raise ValueError("the port of an sftp:// URL is a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("an sftp:// URL names its host: sftp://USER@HOST[:PORT]/PATH")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise ValueError("an sftp:// URL's PATH is absolute (/PATH), or /~/PATH under the login folder")
    if path == "/~" or path.startswith("/~/"):
        path = path[3:].strip("/") or "."
    elif path != "/":
        path = path.rstrip("/")
    return SftpLocation(unquote(parts.username), parts.hostname, port, path)


def _parse_s3(text: str) -> S3Location:
    rest = text[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket or ":" in bucket:
        raise ValueError(
            "an s3:// URL holds no credentials: they come from the standard AWS chain (an "
            "[s3] or [s3.import]/[s3.export] profile, the environment, the instance's role)"
        )
    if not _BUCKET.match(bucket):
        raise ValueError(
            f"'{bucket}' is not an S3 bucket name (3 to 63 lower-case letters, digits, dots and "
            "hyphens): s3://BUCKET/PREFIX"
        )
    if "?" in prefix or "#" in prefix:
        raise ValueError("an s3:// URL has no '?' or '#' part")
    prefix = prefix.strip("/")
    if "//" in prefix:
        raise ValueError("an s3:// URL's PREFIX has no empty folder ('//')")
    return S3Location(bucket, prefix)


# -- audtools.toml ------------------------------------------------------------------------------

_SFTP_KEYS = ("key_file", "known_hosts")
_S3_KEYS = ("addressing", "endpoint_url", "profile", "region")
_CREDENTIAL_WORDS = ("password", "passphrase", "secret", "token", "access_key", "credential")


@dataclass(frozen=True)
class RemoteSettings:
    """The ``[sftp]`` and ``[s3]`` tables of ``audtools.toml``, validated.

    Attributes:
        sftp: the ``[sftp]`` settings.
        s3_import: ``[s3]`` with ``[s3.import]`` applied: the import drop's.
        s3_export: ``[s3]`` with ``[s3.export]`` applied: the export drop's.
    """

    sftp: SftpSettings = SftpSettings()
    s3_import: S3Settings = S3Settings()
    s3_export: S3Settings = S3Settings()


def check_drop(value: str, key: str, problems: list[str]) -> None:
    """Add a problem when the drop location ``value`` of ``[workspace] key`` is not allowed."""
    try:
        parse_location(value)
    except ValueError as exc:
        problems.append(f"[workspace]: '{key}' ({redact(value)!r}): {exc}")


def _unknown(table: dict[str, Any], allowed: tuple[str, ...], where: str, problems: list[str],
             *, subtables: tuple[str, ...] = ()) -> None:
    for key in table:
        if key in allowed or key in subtables:
            continue
        if any(word in key.lower() for word in _CREDENTIAL_WORDS):
            problems.append(
                f"{where}: '{key}' is not allowed: credentials never go in audtools.toml (SFTP: "
                "a key file, the SSH agent, AUDTOOLS_SFTP_KEY_PASSPHRASE or AUDTOOLS_SFTP_PASSWORD; "
                "S3: the standard AWS chain, named by 'profile')"
            )
        else:
            names = ", ".join(sorted((*allowed, *subtables)))
            problems.append(f"{where}: unknown key '{key}' (allowed: {names})")


def _path(value: Any, key: str, where: str, root: Path, problems: list[str]) -> Path | None:
    if not isinstance(value, str) or not value:
        problems.append(f"{where}: '{key}' must be a path (text)")
        return None
    if "\n" in value or "PRIVATE KEY" in value:
        problems.append(f"{where}: '{key}' must be the path of a key file, not a key (value not shown)")
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def parse_sftp(table: Any, root: Path, problems: list[str]) -> SftpSettings:
    """The ``[sftp]`` table; relative paths are under the workspace, ``~`` is the user's home."""
    if table is None:
        return SftpSettings()
    if not isinstance(table, dict):
        problems.append("[sftp] must be a table")
        return SftpSettings()
    _unknown(table, _SFTP_KEYS, "[sftp]", problems)
    known_hosts = SftpSettings().known_hosts.expanduser()
    if "known_hosts" in table:
        known_hosts = _path(table["known_hosts"], "known_hosts", "[sftp]", root, problems) or known_hosts
    key_file = None
    if "key_file" in table:
        key_file = _path(table["key_file"], "key_file", "[sftp]", root, problems)
    return SftpSettings(known_hosts=known_hosts, key_file=key_file)


def _s3_values(table: dict[str, Any], where: str, problems: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for key in _S3_KEYS:
        if key not in table:
            continue
        value = table[key]
        if not isinstance(value, str) or not value:
            problems.append(f"{where}: '{key}' must be text")
            continue
        if key == "addressing" and value not in ("virtual", "path"):
            problems.append(f"{where}: 'addressing' is {value!r}; allowed: virtual, path")
            continue
        if key == "endpoint_url":
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problems.append(f"{where}: 'endpoint_url' must be an http:// or https:// URL")
                continue
            if parts.username or parts.password:
                problems.append(f"{where}: 'endpoint_url' must not hold credentials (value not shown)")
                continue
        values[key] = value
    return values


def parse_s3(table: Any, problems: list[str]) -> tuple[S3Settings, S3Settings]:
    """The import and export drops' S3 settings: ``[s3]`` with ``[s3.import]``/``[s3.export]``."""
    if table is None:
        return S3Settings(), S3Settings()
    if not isinstance(table, dict):
        problems.append("[s3] must be a table")
        return S3Settings(), S3Settings()
    _unknown(table, _S3_KEYS, "[s3]", problems, subtables=("export", "import"))
    common = _s3_values(table, "[s3]", problems)
    out = []
    for which in ("import", "export"):
        sub = table.get(which, {})
        if not isinstance(sub, dict):
            problems.append(f"[s3.{which}] must be a table")
            sub = {}
        _unknown(sub, _S3_KEYS, f"[s3.{which}]", problems)
        out.append(S3Settings(**{**common, **_s3_values(sub, f"[s3.{which}]", problems)}))
    return out[0], out[1]


def parse_remote(data: dict[str, Any], root: Path, problems: list[str]) -> RemoteSettings:
    """The ``[sftp]`` and ``[s3]`` tables of a parsed ``audtools.toml`` (problems appended)."""
    sftp = parse_sftp(data.get("sftp"), root, problems)
    s3_import, s3_export = parse_s3(data.get("s3"), problems)
    return RemoteSettings(sftp, s3_import, s3_export)
