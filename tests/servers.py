"""Real servers for the remote-drop tests: Debian's OpenSSH server and moto's S3 server (the
throttling proxy in front of moto is in tests/throttling.py).

Both listen on 127.0.0.1 only, on a free port, and stop by themselves: the SSH server runs under
``timeout`` (it ends after :data:`SERVER_SECONDS` even if pytest is killed) and moto's server is a
thread of the test process. Tests stop them (``stop()``), restart them on the same port
(``start()``) to break transfers in the middle, and always stop them at the end.

Without ``sshd``, ``ssh-keygen`` or moto the tests that need them skip on a developer's machine
and fail in CI (:func:`require_servers`), as the browser tests do.
"""

from __future__ import annotations

import contextlib
import getpass
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
#: The longest a test server lives, whatever happens to the test process.
SERVER_SECONDS = 900


def in_ci() -> bool:
    """Whether the tests run in CI (``.ci/run`` sets ``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_servers(*, sshd: bool = False, moto: bool = False) -> None:
    """Skip the test on a developer's machine without the servers' tools; fail in CI.

    Args:
        sshd: the test needs Debian's OpenSSH server and ``ssh-keygen``.
        moto: the test needs moto's S3 server (``moto[server]``) and s3fs.
    """
    missing = []
    if sshd:
        missing += [p for p in (SSHD, SSH_KEYGEN) if not Path(p).exists()]
        missing += [m for m in ("sshfs", "asyncssh") if importlib.util.find_spec(m) is None]
    if moto:
        missing += [m for m in ("moto", "flask", "s3fs") if importlib.util.find_spec(m) is None]
    if missing:
        reason = (f"the remote-drop tests need {', '.join(missing)} (apt-get install -y "
                  "openssh-server; pip install -e '.[dev]')")
        if in_ci():
            pytest.fail(f"{reason}: CI must run them, not skip them", pytrace=False)
        pytest.skip(reason)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"no server came up on 127.0.0.1:{port} within {seconds:g} s")


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (per-connection sshd processes run in sessions of their own,
    so a process group would not hold them)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def keygen(path: Path, *, passphrase: str = "", comment: str = "audtools-test") -> str:
    """A new ed25519 key pair at ``path`` (and ``path.pub``); returns the public key line."""
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f", str(path)],
        check=True, timeout=30,
    )
    return path.with_name(path.name + ".pub").read_text().strip()


class SshServer:
    """Debian's OpenSSH server, serving SFTP (``internal-sftp``) to the current user.

    Args:
        folder: where its keys, configuration, ``known_hosts`` and login folder go.
        password: a login password the server takes instead of keys (:func:`password_logins`
            says whether this machine allows it; see :meth:`_password_command`).

    Attributes:
        port: the port it listens on (127.0.0.1 only).
        user: the login (the current user).
        known_hosts: a ``known_hosts`` file with the server's host key.
        client_key: the private key the server accepts (no passphrase).
        home: the login folder (``/~/`` in a drop URL).
    """

    def __init__(self, folder: Path, *, password: str | None = None) -> None:
        self.folder = folder
        self.password = password
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.user = getpass.getuser()
        self.home = folder / "home"
        self.home.mkdir(exist_ok=True)
        self.host_key = folder / "host_key"
        self.client_key = folder / "client_key"
        self.known_hosts = folder / "known_hosts"
        self.authorized_keys = folder / "authorized_keys"
        self.authorized_keys.write_text(keygen(self.client_key) + "\n")
        self.set_host_key(keygen(self.host_key, comment="host"))
        self.config = folder / "sshd_config"
        self.config.write_text(self._config_text())
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder / "sshd.log"

    def _config_text(self) -> str:
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"PidFile {self.folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "StrictModes no",
            # With a password: that only, so that a login proves the password was used.
            f"PubkeyAuthentication {'no' if self.password else 'yes'}",
            f"PasswordAuthentication {'yes' if self.password else 'no'}",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            # The tests run as root on CI: let root in, with a key only (or the test's password).
            f"PermitRootLogin {'yes' if self.password else 'prohibit-password'}",
            # The login folder is a folder of the test, not the user's home.
            f"Subsystem sftp internal-sftp -d {self.home}",
            "LoginGraceTime 30",
            "MaxStartups 100:30:200",
            "MaxSessions 100",
            "LogLevel INFO",
        ]
        return "\n".join(lines) + "\n"

    def set_host_key(self, public_line: str) -> None:
        """Write ``known_hosts`` as trusting ``public_line`` for this server."""
        kind, blob = public_line.split()[:2]
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {kind} {blob}\n")

    def add_client_key(self, public_line: str) -> None:
        """Let another client key in too."""
        with self.authorized_keys.open("a") as fh:
            fh.write(public_line + "\n")

    def url(self, path: str | Path) -> str:
        """The drop URL of ``path`` on this server (``path`` absolute, or ``~/...``)."""
        text = str(path)
        if text.startswith("~/"):
            text = "/" + text
        return f"sftp://{self.user}@127.0.0.1:{self.port}{text}"

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it accepts connections."""
        if self.process is not None and self.process.poll() is None:
            return
        if os.geteuid() == 0:
            # sshd started by root wants its privilege-separation folder (made by its service).
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        command = [SSHD, "-D", "-e", "-f", str(self.config)]
        if self.password:
            command = self._password_command(command)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["timeout", "--kill-after=5", str(SERVER_SECONDS), *command],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )
        try:
            _wait_for_port(self.port)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"sshd did not start: {self.log.read_text()[-2000:]}") from None

    def _password_command(self, command: list[str]) -> list[str]:
        """``command`` run where ``/etc/shadow`` gives the user :attr:`password`.

        sshd without PAM checks a password against the user's ``/etc/shadow`` entry, and no test
        changes a password of the machine: the server runs in a mount namespace of its own
        (``unshare -m``, root only) where a shadow file of the test, holding only the user's
        entry with the test's password, is mounted over ``/etc/shadow``. The machine's file and
        every other process's view of it stay as they are.
        """
        hashed = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=self.password,
                                capture_output=True, text=True, check=True, timeout=30).stdout.strip()
        shadow = self.folder / "shadow"
        shadow.write_text(f"{self.user}:{hashed}:{int(time.time() // 86400) - 1}:0:99999:7:::\n")
        shadow.chmod(0o600)
        script = 'mount --bind "$1" /etc/shadow && shift && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                str(shadow), *command]

    def stop(self) -> None:
        """Stop the server and every connection it serves (as a crash of the host would)."""
        if self.process is None:
            return
        pids = _children(self.process.pid)
        for pid in [self.process.pid, *pids]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> SshServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def password_logins() -> str | None:
    """Why this machine cannot run an SSH server with a test password (None: it can): that needs
    root, a mount namespace (``unshare -m``, CAP_SYS_ADMIN, which containers often drop),
    ``openssl``, and a user whose password lives in ``/etc/shadow``."""
    if os.geteuid() != 0:
        return "a password login needs the tests to run as root (a private /etc/shadow)"
    if shutil.which("unshare") is None or shutil.which("openssl") is None:
        return "a password login needs unshare (util-linux) and openssl"
    import pwd

    if not Path("/etc/shadow").is_file() or pwd.getpwnam(getpass.getuser()).pw_passwd != "x":
        return "a password login needs the user's password in /etc/shadow"
    tried = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                           capture_output=True, timeout=30)
    if tried.returncode != 0:
        return "a password login needs a mount namespace (unshare -m: CAP_SYS_ADMIN)"
    return None


class S3Server:
    """moto's S3 server (a real HTTP endpoint on 127.0.0.1), in a thread of the test process.

    moto keeps its buckets in the process, so a restart on the same port finds them again.

    Attributes:
        port: the port it listens on.
        endpoint_url: ``http://127.0.0.1:PORT``.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.server: Any = None

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it answers."""
        if self.server is not None:
            return
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        _wait_for_port(self.port)

    def stop(self) -> None:
        """Stop answering (requests in flight may still finish)."""
        if self.server is not None:
            self.server.stop()
            self.server = None

    def client(self) -> Any:
        """A boto3 S3 client of this server (for arranging and checking, not for audtools)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")

    def __enter__(self) -> S3Server:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Point the standard AWS chain at test credentials (moto accepts any), never at a real
    account: a config and credentials file in ``folder``, the environment's keys set."""
    creds = folder / "aws_credentials"
    creds.write_text("[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
                     "[other]\naws_access_key_id = other\naws_secret_access_key = other\n")
    config = folder / "aws_config"
    config.write_text("[default]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
