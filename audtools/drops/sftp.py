"""A drop on an SFTP server: ``sftp://USER@HOST[:PORT]/PATH`` (SPEC §2.2).

The connection is fsspec's SFTP back end, ``sshfs`` (asyncssh underneath): measured on the
loopback OpenSSH server, it read a 200 MB file at about 60 MB/s with 1 MiB reads in bounded memory
(pipelined requests), where paramiko's ``SFTPFile`` (fsspec's other SFTP back end) read at 5 MB/s
without prefetching, and with prefetching holds as much of the file in memory as it runs ahead.
The operations whose fsspec form does not keep audtools' rules are asyncssh's SFTP client calls on
that connection: ``lstat`` (a link is described, never followed), exclusive create, and the plain
SFTP ``rename`` (fsspec's ``mv`` uses the overwriting ``posix-rename`` extension, never used here).

Trust and credentials: the host key is always checked against ``known_hosts`` (``[sftp]
known_hosts``, default ``~/.ssh/known_hosts``); ``~/.ssh/config`` is not read (``audtools.toml``
says everything). The client proves itself as ``ssh`` does, with OpenSSH's ``IdentitiesOnly``
when a key is named:

- with ``[sftp] key_file``: that key only, decrypted with ``AUDTOOLS_SFTP_KEY_PASSPHRASE``, or
  signed by the SSH agent when the agent holds that same key; no other key of the agent or of
  ``~/.ssh`` is offered (a server that counts failed keys never sees them);
- without it: the SSH agent's keys (``SSH_AUTH_SOCK``), then the default keys of ``~/.ssh``
  (``id_ed25519``, ``id_ecdsa``, ``id_rsa`` ...; encrypted ones only with the passphrase);
- then, either way, a password from ``AUDTOOLS_SFTP_PASSWORD`` when one is set.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import posixpath
import stat as stat_mode
import warnings
from pathlib import Path
from typing import Any, BinaryIO

from audtools.config.remote import SftpLocation, SftpSettings
from audtools.drops.base import DropEntry, DropUnreachable
from audtools.drops.remote import Kind, RemoteDrop, ResumingReader, Upload, buffered

__all__ = ["SftpDrop"]

PASSPHRASE_VARIABLE = "AUDTOOLS_SFTP_KEY_PASSPHRASE"
PASSWORD_VARIABLE = "AUDTOOLS_SFTP_PASSWORD"
#: Seconds to open a connection; a silent server is given up after 4 keepalives 15 s apart.
CONNECT_TIMEOUT = 15.0


def _modules() -> tuple[Any, Any, Any]:
    """asyncssh, sshfs and fsspec's ``sync``, imported on first use (asyncssh's import warns
    about DSA keys, which audtools never uses; the CLI must not print that)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import asyncssh
        import sshfs
        from fsspec.asyn import sync
    ssh_log = logging.getLogger("asyncssh")
    if ssh_log.level == logging.NOTSET:
        # asyncssh tells every connection step at INFO: audtools' -v is about audtools.
        ssh_log.setLevel(logging.WARNING)
    return asyncssh, sshfs, sync


class SftpDrop(RemoteDrop):
    """The drop in folder ``location.path`` of an SFTP server.

    Args:
        location: the parsed URL.
        settings: the ``[sftp]`` table.
    """

    def __init__(self, location: SftpLocation, settings: SftpSettings | None = None) -> None:
        self.location = location
        self.settings = settings or SftpSettings()
        self.url = location.url
        self._fs: Any = None
        self._sftp: Any = None

    def __repr__(self) -> str:
        return f"SftpDrop({self.url!r})"

    # -- connection -------------------------------------------------------------------------------

    def _connect_args(self) -> dict[str, Any]:
        known_hosts = Path(self.settings.known_hosts).expanduser()
        if not known_hosts.is_file():
            raise DropUnreachable(
                f"The drop {self.url} cannot be reached: the known_hosts file {known_hosts} does "
                "not exist, and host keys are always checked. Add the server's key to it (ssh-keyscan "
                f"-p {self.location.port} {self.location.host}, after checking its fingerprint with "
                "the server's owner) or set [sftp] known_hosts.",
                drop=self.url,
            )
        args: dict[str, Any] = {
            "port": self.location.port,
            "username": self.location.user,
            "known_hosts": str(known_hosts),
            "config": [],
            "connect_timeout": CONNECT_TIMEOUT,
            "login_timeout": 60,
            "keepalive_interval": 15,
            "keepalive_count_max": 4,
            "passphrase": os.environ.get(PASSPHRASE_VARIABLE) or None,
            "password": os.environ.get(PASSWORD_VARIABLE) or None,
        }
        if self.settings.key_file is not None:
            args.update(self._key_file_args(args["passphrase"]))
        return args

    def _key_file_args(self, passphrase: str | None) -> dict[str, Any]:
        """``key_file`` only (the module docstring says why): the file, and the agent restricted
        to that key's public half (``KEY.pub``, else read from the key itself)."""
        asyncssh, _, _ = _modules()
        path = Path(self.settings.key_file or "").expanduser()
        args: dict[str, Any] = {"client_keys": [str(path)], "agent_path": None}
        agent = os.environ.get("SSH_AUTH_SOCK")
        if not agent:
            return args
        public: Any = None
        with contextlib.suppress(OSError, ValueError, asyncssh.KeyImportError):
            public = asyncssh.read_public_key(str(path) + ".pub")
        if public is None:
            with contextlib.suppress(OSError, ValueError, asyncssh.KeyImportError,
                                     asyncssh.KeyEncryptionError):
                public = asyncssh.read_private_key(str(path), passphrase).convert_to_public()
        if public is not None:
            # Without a passphrase an encrypted file is skipped: the agent's copy signs.
            args.update(agent_path=agent, agent_identities=[public],
                        ignore_encrypted=passphrase is None)
        return args

    def _client(self) -> tuple[Any, Any]:
        """The SFTP client and fsspec's ``sync``, connecting first when needed."""
        _, sshfs, sync = _modules()
        if self._sftp is None:
            fs = sshfs.SSHFileSystem(
                self.location.host, skip_instance_cache=True, **self._connect_args()
            )
            self._fs = fs
            self._sftp = sync(fs.loop, fs.client.start_sftp_client)
        return self._sftp, sync

    def _run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``await sftp.METHOD(*args)`` on the connection's event loop."""
        sftp, sync = self._client()
        return sync(self._fs.loop, getattr(sftp, method), *args, **kwargs)

    def _reset(self) -> None:
        fs, self._fs, self._sftp = self._fs, None, None
        if fs is None:
            return
        _, _, sync = _modules()
        with contextlib.suppress(Exception):
            fs.client.close()
            sync(fs.loop, fs.client.wait_closed, timeout=2)

    def close(self) -> None:
        """Close the connection (the next call opens a new one)."""
        self._reset()

    def _classify(self, exc: BaseException) -> Kind:
        asyncssh, _, _ = _modules()
        cause = exc.__cause__
        if isinstance(exc, asyncssh.HostKeyNotVerifiable | asyncssh.PermissionDenied) or (
            isinstance(exc, PermissionError) and isinstance(cause, asyncssh.PermissionDenied)
        ):
            return "refused"
        if isinstance(exc, asyncssh.KeyImportError | asyncssh.KeyEncryptionError):
            return "refused"
        if isinstance(exc, asyncssh.SFTPError) and not isinstance(
            exc, asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection
        ):
            return "answer"
        if self._is_answer(exc):
            return "answer"
        if isinstance(exc, OSError | EOFError | TimeoutError | asyncssh.Error):
            return "transient"
        return "answer"

    def _cause(self, exc: BaseException) -> str:
        asyncssh, _, _ = _modules()
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            return self._host_key_cause()
        if isinstance(exc, asyncssh.PermissionDenied) or isinstance(
            exc.__cause__, asyncssh.PermissionDenied
        ):
            how = (f"the key {self.settings.key_file} (an encrypted key needs its passphrase in "
                   f"{PASSPHRASE_VARIABLE} or the key in the SSH agent)"
                   if self.settings.key_file is not None
                   else "the SSH agent's keys or the default keys of ~/.ssh")
            return (f"the server refused the login {self.location.user!r} with {how}"
                    + (f" or the password of {PASSWORD_VARIABLE}"
                       if os.environ.get(PASSWORD_VARIABLE) else ""))
        if isinstance(exc, asyncssh.KeyImportError | asyncssh.KeyEncryptionError):
            return (f"the key {self.settings.key_file} cannot be read ({exc}); an encrypted key "
                    f"needs its passphrase in {PASSPHRASE_VARIABLE} or the SSH agent")
        if isinstance(exc, asyncssh.DisconnectError):
            return f"the connection was lost ({exc.reason or type(exc).__name__})"
        return super()._cause(exc)

    def _host_key_cause(self) -> str:
        """Why the host key is refused: unknown to ``known_hosts``, or changed."""
        asyncssh, _, _ = _modules()
        path = Path(self.settings.known_hosts).expanduser()
        host, port = self.location.host, self.location.port
        try:
            listed = asyncssh.read_known_hosts(str(path)).match(host, host, port)[0]
        except (OSError, ValueError):
            listed = []
        where = host if port == 22 else f"[{host}]:{port}"
        if listed:
            return (f"the host key of {where} is not the one {path} lists: the server's key "
                    "changed, or someone is intercepting the connection. Ask the server's owner; "
                    f"only if its key really changed, replace its line in {path}")
        return (f"the host key of {where} is unknown ({path} has no key for it); host keys are "
                f"always checked: add it (ssh-keyscan -p {port} {host} >> {path}) after checking "
                "its fingerprint with the server's owner")

    # -- the drop ---------------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"not a file name of a drop: {name!r}")
        return posixpath.join(self.location.path, name)

    @staticmethod
    def _entry(name: str, attrs: Any) -> DropEntry | None:
        mode = attrs.permissions or 0
        if stat_mode.S_ISDIR(mode):
            return None
        mtime = attrs.mtime if attrs.mtime is not None else 0
        if getattr(attrs, "mtime_ns", None):
            mtime = attrs.mtime_ns / 1e9
        return DropEntry(name, int(attrs.size or 0), float(mtime), stat_mode.S_ISLNK(mode))

    def list(self) -> list[DropEntry]:
        """Every file of the folder (links marked, sub-folders left out), sorted by name."""
        asyncssh, _, _ = _modules()

        def attempt() -> list[DropEntry]:
            try:
                names = self._run("readdir", self.location.path)
            except asyncssh.SFTPNoSuchFile:
                raise DropUnreachable(
                    f"The drop {self.url} cannot be listed: the server has no folder "
                    f"{self.location.path}. Check the URL's path (/~/PATH is under the login "
                    "folder).", drop=self.url,
                ) from None
            entries = [self._entry(n.filename, n.attrs) for n in names
                       if n.filename not in (".", "..")]
            return sorted((e for e in entries if e is not None), key=lambda e: e.name)

        return self._call("listing", attempt)

    def stat(self, name: str) -> DropEntry | None:
        """The entry of ``name`` (a link described, not followed), or None."""
        asyncssh, _, _ = _modules()
        path = self._path(name)

        def attempt() -> DropEntry | None:
            try:
                attrs = self._run("lstat", path)
            except asyncssh.SFTPNoSuchFile:
                return None
            return self._entry(name, attrs)

        return self._call(f"looking at {name}", attempt)

    def open(self, name: str) -> BinaryIO:
        """``name`` for a streaming read, resumed after a break; a link is refused."""
        asyncssh, _, sync = _modules()
        path = self._path(name)

        def open_at(offset: int) -> Any:
            try:
                attrs = self._run("lstat", path)
            except asyncssh.SFTPNoSuchFile:
                raise FileNotFoundError(f"{name} is not in the drop {self.url}") from None
            if stat_mode.S_ISLNK(attrs.permissions or 0):
                raise OSError(errno.ELOOP, f"{name} is a link in the drop {self.url}: links are "
                              "never read")
            handle = self._run("open", path, "rb")
            return _SyncFile(self._fs.loop, sync, handle, offset)

        return buffered(ResumingReader(self, name, open_at))

    def create(self, name: str) -> BinaryIO:
        """A new file ``name`` for writing; ``FileExistsError`` if it exists. A broken upload
        fails with ``drop_unreachable`` (an upload is not resumed: the export starts again)."""
        asyncssh, _, sync = _modules()
        path = self._path(name)

        def attempt() -> Any:
            try:
                return self._run("open", path, "xb")
            except asyncssh.SFTPFailure:
                if self.stat(name) is not None:
                    raise FileExistsError(f"{name} exists in the drop {self.url}") from None
                raise

        handle = self._call(f"creating {name}", attempt)
        fh = _SyncFile(self._fs.loop, sync, handle, 0)

        def finish() -> None:
            # Durable before it is renamed, where the server offers fsync@openssh.com.
            with contextlib.suppress(asyncssh.SFTPOpUnsupported):
                fh.fsync()
            fh.close()

        return Upload(self, name, fh.write, finish, abandon=fh.close).buffered()

    def publish(self, temp: str, final: str) -> None:
        """SFTP's plain rename of ``temp`` to ``final``: refused by the server on an existing
        name (never the overwriting ``posix-rename``).

        Raises:
            FileExistsError: ``final`` exists; ``temp`` is left as it is.
        """
        asyncssh, _, _ = _modules()
        src, dst = self._path(temp), self._path(final)
        tries = 0

        def attempt() -> None:
            nonlocal tries
            tries += 1
            try:
                self._run("rename", src, dst)
            except asyncssh.SFTPError:
                if self.stat(final) is None:
                    raise
                if tries > 1 and self.stat(temp) is None:
                    return  # the earlier attempt renamed it, then its answer was lost
                raise FileExistsError(f"{final} exists in the drop {self.url}") from None

        self._call(f"publishing {final}", attempt)

    def remove(self, name: str) -> None:
        """Delete ``name`` if present."""
        asyncssh, _, _ = _modules()
        path = self._path(name)

        def attempt() -> None:
            with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                self._run("remove", path)

        self._call(f"removing {name}", attempt)


class _SyncFile:
    """An asyncssh SFTP file handle used from synchronous code (fsspec's event loop thread)."""

    def __init__(self, loop: Any, sync: Any, handle: Any, offset: int) -> None:
        self._loop, self._sync, self._handle = loop, sync, handle
        if offset:
            self._sync(loop, handle.seek, offset)

    def read(self, size: int) -> bytes:
        data: bytes = self._sync(self._loop, self._handle.read, size)
        return data

    def write(self, data: bytes) -> int:
        self._sync(self._loop, self._handle.write, data)
        return len(data)

    def fsync(self) -> None:
        self._sync(self._loop, self._handle.fsync)

    def close(self) -> None:
        self._sync(self._loop, self._handle.close)
