"""Which credentials an SFTP drop offers, against the real OpenSSH server (tests/servers.py) and a
real ``ssh-agent``: with ``[sftp] key_file``, that key only (signed by the agent when it holds
it); without it, the agent's keys, then the default keys of ``~/.ssh``, as ``ssh`` does; then a
password from ``AUDTOOLS_SFTP_PASSWORD``."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import (
    SERVER_SECONDS,
    SSH_KEYGEN,
    SshServer,
    in_ci,
    keygen,
    password_logins,
    require_servers,
)

from audtools.drops import Drop, DropUnreachable, SftpSettings, open_drop
from audtools.drops.remote import Retry

SSH_AGENT = shutil.which("ssh-agent") or "/usr/bin/ssh-agent"
SSH_ADD = shutil.which("ssh-add") or "/usr/bin/ssh-add"



@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder of the test's own, with an empty ``~/.ssh``, and no agent."""
    folder = tmp_path / "home"
    (folder / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("AUDTOOLS_SFTP_KEY_PASSPHRASE", raising=False)
    monkeypatch.delenv("AUDTOOLS_SFTP_PASSWORD", raising=False)
    return folder


@pytest.fixture
def agent(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real ``ssh-agent`` on a socket of the test (bounded in time), as ``SSH_AUTH_SOCK``."""
    if not (Path(SSH_AGENT).exists() and Path(SSH_ADD).exists()):
        reason = "the agent tests need ssh-agent and ssh-add (apt-get install -y openssh-client)"
        if in_ci():
            pytest.fail(f"{reason}: CI must run them, not skip them", pytrace=False)
        pytest.skip(reason)
    sock = tmp_path / "agent.sock"
    process = subprocess.Popen(
        ["timeout", "--kill-after=5", str(SERVER_SECONDS), SSH_AGENT, "-D", "-a", str(sock)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sock.exists(), "ssh-agent did not start"
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield sock
    finally:
        process.terminate()
        process.wait(timeout=10)


def _add_to_agent(sock: Path, key: Path) -> None:
    subprocess.run([SSH_ADD, "-q", str(key)], env={"SSH_AUTH_SOCK": str(sock), "PATH": "/usr/bin:/bin"},
                   stdin=subprocess.DEVNULL, check=True, timeout=30, capture_output=True)


def _drop(ssh: SshServer, folder: Path, key_file: Path | None) -> Drop:
    drop = open_drop(ssh.url(folder), sftp=SftpSettings(ssh.known_hosts, key_file))
    drop.retry = Retry(tries=1)  # type: ignore[attr-defined]
    return drop


def _logs_in(ssh: SshServer, folder: Path, key_file: Path | None) -> bool:
    drop = _drop(ssh, folder, key_file)
    try:
        drop.list()
    except DropUnreachable as exc:
        assert "refused the login" in exc.message, exc.message
        return False
    finally:
        drop.close()
    return True


def _default_key(home: Path, ssh: SshServer) -> None:
    """An authorised key where ``ssh`` looks by default: ``~/.ssh/id_ed25519``."""
    ssh.add_client_key(keygen(home / ".ssh" / "id_ed25519", comment="default"))


def test_with_key_file_no_default_key_is_offered(ssh: SshServer, home: Path, tmp_path: Path) -> None:
    _default_key(home, ssh)
    stranger = tmp_path / "stranger"
    keygen(stranger)
    assert not _logs_in(ssh, tmp_path, stranger)  # ~/.ssh/id_ed25519 would have been let in
    assert _logs_in(ssh, tmp_path, ssh.client_key)
    assert _logs_in(ssh, tmp_path, None)  # without key_file: the default keys, as ssh does


def test_without_key_file_the_agent_then_the_default_keys(
    ssh: SshServer, home: Path, agent: Path, tmp_path: Path
) -> None:
    assert not _logs_in(ssh, tmp_path, None)  # an empty agent, no default key
    in_agent = tmp_path / "agent_key"
    ssh.add_client_key(keygen(in_agent, comment="agent"))
    _add_to_agent(agent, in_agent)
    assert _logs_in(ssh, tmp_path, None)


def test_with_key_file_the_agent_signs_only_with_that_key(
    ssh: SshServer, home: Path, agent: Path, tmp_path: Path
) -> None:
    in_agent = tmp_path / "agent_key"
    ssh.add_client_key(keygen(in_agent, comment="agent"))
    _add_to_agent(agent, in_agent)
    stranger = tmp_path / "stranger"
    keygen(stranger)
    assert not _logs_in(ssh, tmp_path, stranger)  # the agent's other key is not offered
    # The same key, encrypted on disk and its passphrase nowhere: the agent's copy signs.
    locked = tmp_path / "locked"
    shutil.copy(in_agent, locked)
    shutil.copy(in_agent.with_name("agent_key.pub"), locked.with_name("locked.pub"))
    subprocess.run([SSH_KEYGEN, "-q", "-p", "-P", "", "-N", "not in the environment", "-f",
                    str(locked)], check=True, timeout=30, capture_output=True)
    assert _logs_in(ssh, tmp_path, locked)


def test_an_encrypted_key_file_without_passphrase_or_agent_says_so(
    ssh: SshServer, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    ssh.add_client_key(keygen(locked, passphrase="in the environment"))
    with pytest.raises(DropUnreachable) as caught:
        _drop(ssh, tmp_path, locked).list()
    assert "AUDTOOLS_SFTP_KEY_PASSPHRASE" in caught.value.message
    monkeypatch.setenv("AUDTOOLS_SFTP_KEY_PASSPHRASE", "in the environment")
    assert _logs_in(ssh, tmp_path, locked)


def test_password_login_from_the_environment(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that takes only a password (keys refused): ``AUDTOOLS_SFTP_PASSWORD`` logs in,
    after the keys; a wrong one is refused without being repeated."""
    require_servers(sshd=True)
    why_not = password_logins()
    if why_not:
        # As for the browser tests: skipped on a developer's machine, a failure in CI, whose
        # machine (root, a VM) can run it.
        if in_ci():
            pytest.fail(f"CI must test password logins: {why_not}")
        pytest.skip(why_not)
    password = "pw-" + uuid.uuid4().hex
    with SshServer(tmp_path / "sshd", password=password) as ssh:
        assert not _logs_in(ssh, tmp_path, None)  # no password: refused
        monkeypatch.setenv("AUDTOOLS_SFTP_PASSWORD", "wrong-" + password)
        with pytest.raises(DropUnreachable) as caught:
            _drop(ssh, tmp_path, ssh.client_key).list()
        assert "refused the login" in caught.value.message
        assert "AUDTOOLS_SFTP_PASSWORD" in caught.value.message
        assert password not in caught.value.message
        monkeypatch.setenv("AUDTOOLS_SFTP_PASSWORD", password)
        assert _logs_in(ssh, tmp_path, ssh.client_key)  # the key is refused, then the password
        assert _logs_in(ssh, tmp_path, None)
        assert "Accepted password for" in ssh.log.read_text()
    assert password not in caplog.text
