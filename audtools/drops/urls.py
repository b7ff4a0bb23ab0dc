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
from urllib.parse import unquote, urlsplit

__all__ = [
    "S3Location",
    "S3Settings",
    "SftpLocation",
    "SftpSettings",
    "is_remote",
    "parse_location",
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
        key_file: an OpenSSH private key; None: the SSH agent's keys.
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
