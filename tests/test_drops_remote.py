"""The SFTP and S3 drops against real servers on 127.0.0.1: Debian's OpenSSH server and moto's S3
server (tests/servers.py). Each test runs on both kinds where the rule is the same."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from servers import SshServer, keygen

from audtools.drops import Drop, DropUnreachable, S3Settings, SftpSettings, open_drop
from audtools.drops.remote import Retry
from audtools.errors import ConfigError

QUICK = Retry(tries=3, first_wait=0.1, max_wait=0.2)


class Remote:
    """A drop on a real server, and a way to arrange and inspect its files behind the drop's
    back (the server's own folder for SFTP, a boto3 client for S3)."""

    def __init__(self, kind: str, server: Any, drop: Drop, folder: Path | None) -> None:
        self.kind, self.server, self.drop, self.folder = kind, server, drop, folder

    def put(self, name: str, data: bytes) -> None:
        if self.folder is not None:
            (self.folder / name).write_bytes(data)
        else:
            self.server.client().put_object(Bucket=self.server.bucket, Key=f"drop/{name}", Body=data)

    def get(self, name: str) -> bytes | None:
        if self.folder is not None:
            path = self.folder / name
            return path.read_bytes() if path.exists() else None
        try:
            body = self.server.client().get_object(Bucket=self.server.bucket, Key=f"drop/{name}")["Body"]
        except Exception:  # noqa: BLE001 - NoSuchKey
            return None
        data: bytes = body.read()
        return data

    def names(self) -> list[str]:
        if self.folder is not None:
            return sorted(p.name for p in self.folder.iterdir() if p.is_file())
        listing = self.server.client().list_objects_v2(Bucket=self.server.bucket, Prefix="drop/")
        return sorted(o["Key"][len("drop/"):] for o in listing.get("Contents", []))

    def reopen(self) -> Drop:
        """A new drop object on the same server (what the next run opens)."""
        drop = open_drop(self.drop.url, **self.settings())
        drop.retry = QUICK  # type: ignore[attr-defined]
        return drop

    def settings(self) -> dict[str, Any]:
        if self.kind == "sftp":
            return {"sftp": SftpSettings(self.server.known_hosts, self.server.client_key)}
        return {"s3": S3Settings(endpoint_url=self.server.endpoint_url, region="us-east-1")}




@pytest.fixture(params=["sftp", "s3"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    if request.param == "sftp":
        server = request.getfixturevalue("ssh")
        folder = tmp_path / "drop"
        folder.mkdir()
        url = server.url(folder)
        folder_or_none: Path | None = folder
    else:
        server = request.getfixturevalue("s3")
        url, folder_or_none = f"s3://{server.bucket}/drop", None
    made = Remote(request.param, server, None, folder_or_none)  # type: ignore[arg-type]
    made.drop = open_drop(url, **made.settings())
    made.drop.retry = QUICK  # type: ignore[attr-defined]
    return made


# -- what a drop does ---------------------------------------------------------------------------


def test_listing_sizes_and_times_without_deeper_files(remote: Remote) -> None:
    before = time.time()
    remote.put("b.sync", b"12345")
    remote.put("a.info", b"{}")
    if remote.folder is not None:
        (remote.folder / "sub").mkdir()
        (remote.folder / "sub" / "c.sync").write_bytes(b"x")
        os.symlink(remote.folder / "b.sync", remote.folder / "l.sync")
    else:
        remote.server.client().put_object(Bucket=remote.server.bucket, Key="drop/sub/c.sync", Body=b"x")
        remote.server.client().put_object(Bucket=remote.server.bucket, Key="dropping.sync", Body=b"x")
    entries = remote.drop.list()
    names = [e.name for e in entries]
    assert names == (["a.info", "b.sync", "l.sync"] if remote.kind == "sftp" else ["a.info", "b.sync"])
    b = entries[1]
    assert b.size == 5 and not b.is_link
    assert before - 2 <= b.mtime <= time.time() + 2
    assert remote.drop.stat("b.sync") == b
    assert remote.drop.stat("missing.sync") is None
    assert abs(remote.drop.now() - time.time()) < 5
    if remote.kind == "sftp":
        assert entries[2].is_link
        with pytest.raises(OSError):
            remote.drop.open("l.sync")


def test_streaming_read_in_bounded_chunks(remote: Remote) -> None:
    data = os.urandom(3 << 20) + b"line one\nline two\n"
    remote.put("big.sync", data)
    digest = hashlib.md5()
    with remote.drop.open("big.sync") as fh:
        while chunk := fh.read(256 << 10):
            assert len(chunk) <= 256 << 10
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.md5(data).hexdigest()
    remote.put("lines.sync", b"a\tb\nc\td\n")
    with remote.drop.open("lines.sync") as fh:
        assert list(fh) == [b"a\tb\n", b"c\td\n"]
    with pytest.raises(FileNotFoundError):
        remote.drop.open("missing.sync").read()


def test_publish_never_replaces_a_file(remote: Remote) -> None:
    drop = remote.drop
    with drop.create(".audtools-r1-part1.tmp") as fh:
        fh.write(b"first\n" * 1000)
    drop.publish(".audtools-r1-part1.tmp", "ftp_dpm_1_1700000000.sync")
    assert remote.get("ftp_dpm_1_1700000000.sync") == b"first\n" * 1000
    assert remote.get(".audtools-r1-part1.tmp") is None
    with drop.create(".audtools-r2-part1.tmp") as fh:
        fh.write(b"second\n")
    with pytest.raises(FileExistsError):
        drop.publish(".audtools-r2-part1.tmp", "ftp_dpm_1_1700000000.sync")
    assert remote.get("ftp_dpm_1_1700000000.sync") == b"first\n" * 1000
    assert remote.get(".audtools-r2-part1.tmp") == b"second\n"
    with pytest.raises(FileExistsError):
        drop.create(".audtools-r2-part1.tmp")
    drop.remove(".audtools-r2-part1.tmp")
    drop.remove(".audtools-r2-part1.tmp")  # a missing file is not an error
    assert remote.names() == ["ftp_dpm_1_1700000000.sync"]
    drop.check_writable()
    assert remote.names() == ["ftp_dpm_1_1700000000.sync"]


def test_a_new_drop_object_sees_the_changes(remote: Remote) -> None:
    remote.drop.list()
    remote.put("a.sync", b"1")
    assert [e.name for e in remote.reopen().list()] == ["a.sync"]
    assert [e.name for e in remote.drop.list()] == ["a.sync"]  # no listing cache


# -- failures -----------------------------------------------------------------------------------


def test_server_stopped_mid_download(remote: Remote) -> None:
    data = os.urandom(24 << 20)
    remote.put("big.sync", data)
    fh = remote.drop.open("big.sync")
    assert fh.read(1 << 20) == data[: 1 << 20]
    remote.server.stop()
    started = time.monotonic()
    with pytest.raises(DropUnreachable) as caught:
        fh.read()
    assert time.monotonic() - started < 30
    assert caught.value.code == "drop_unreachable"
    assert remote.drop.url in caught.value.message and "reading big.sync" in caught.value.message
    fh.close()
    remote.server.start()
    with remote.reopen().open("big.sync") as again:  # the next run starts afresh
        assert hashlib.md5(again.read()).digest() == hashlib.md5(data).digest()


def test_a_break_mid_download_resumes_where_it_stopped(remote: Remote) -> None:
    data = os.urandom(24 << 20)
    remote.put("big.sync", data)
    remote.drop.retry = Retry(tries=6, first_wait=0.3, max_wait=1.0)  # type: ignore[attr-defined]
    with remote.drop.open("big.sync") as fh:
        head = fh.read(1 << 20)
        remote.server.stop()
        restart = threading.Timer(0.5, remote.server.start)
        restart.start()
        try:
            rest = fh.read()
        finally:
            restart.join()
    assert hashlib.md5(head + rest).digest() == hashlib.md5(data).digest()


def test_server_stopped_mid_upload_publishes_nothing(remote: Remote) -> None:
    drop = remote.drop
    fh = drop.create(".audtools-r1-part1.tmp")
    fh.write(os.urandom(12 << 20))
    remote.server.stop()
    with pytest.raises(DropUnreachable) as caught:
        fh.write(os.urandom(12 << 20))
        fh.close()
    assert caught.value.code == "drop_unreachable" and "writing .audtools-r1-part1.tmp" in caught.value.message
    with pytest.raises(DropUnreachable):
        drop.publish(".audtools-r1-part1.tmp", "ftp_dpm_1_1700000000.sync")
    remote.server.start()
    assert "ftp_dpm_1_1700000000.sync" not in remote.names()
    # What the export's undo does next: remove its temporary names; on S3 that also aborts the
    # multipart upload the break left (invisible, but stored).
    remote.reopen().remove(".audtools-r1-part1.tmp")
    assert remote.names() == []
    if remote.kind == "s3":
        uploads = remote.server.client().list_multipart_uploads(Bucket=remote.server.bucket)
        assert not uploads.get("Uploads")


def test_unreachable_server_names_the_drop_and_the_cause(remote: Remote) -> None:
    remote.server.stop()
    started = time.monotonic()
    with pytest.raises(DropUnreachable) as caught:
        remote.drop.list()
    assert time.monotonic() - started < 30
    message = caught.value.message
    assert message.startswith(f"The drop {remote.drop.url} cannot be reached while listing (after 3 tries)")
    assert "connect" in message.lower()


# -- SFTP: trust and credentials ----------------------------------------------------------------


def _sftp(server: SshServer, folder: Path, **settings: Any) -> Drop:
    drop = open_drop(server.url(folder), sftp=SftpSettings(**settings))
    drop.retry = QUICK  # type: ignore[attr-defined]
    return drop


def test_unknown_host_key_is_refused(ssh: SshServer, tmp_path: Path) -> None:
    other = tmp_path / "known_hosts_other"
    other.write_text("[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    drop = _sftp(ssh, tmp_path, known_hosts=other, key_file=ssh.client_key)
    started = time.monotonic()
    with pytest.raises(DropUnreachable) as caught:
        drop.list()
    assert time.monotonic() - started < 5  # a refusal is not retried
    assert "host key" in caught.value.message and "unknown" in caught.value.message
    assert str(other) in caught.value.message
    missing = _sftp(ssh, tmp_path, known_hosts=tmp_path / "nope", key_file=ssh.client_key)
    with pytest.raises(DropUnreachable, match="known_hosts file .* does not exist"):
        missing.list()


def test_changed_host_key_is_refused(ssh: SshServer, tmp_path: Path) -> None:
    drop = _sftp(ssh, tmp_path, known_hosts=ssh.known_hosts, key_file=ssh.client_key)
    assert drop.list() == []
    ssh.stop()
    keygen(ssh.host_key, comment="host")  # the server now shows another key
    ssh.start()
    with pytest.raises(DropUnreachable) as caught:
        _sftp(ssh, tmp_path, known_hosts=ssh.known_hosts, key_file=ssh.client_key).list()
    assert "changed" in caught.value.message and "host key" in caught.value.message


def test_refused_credentials(ssh: SshServer, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    keygen(stranger)
    drop = _sftp(ssh, tmp_path, known_hosts=ssh.known_hosts, key_file=stranger)
    with pytest.raises(DropUnreachable) as caught:
        drop.list()
    assert "refused the login" in caught.value.message and str(stranger) in caught.value.message


def test_key_passphrase_from_the_environment(
    ssh: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    ssh.add_client_key(keygen(locked, passphrase="correct horse"))
    monkeypatch.delenv("AUDTOOLS_SFTP_KEY_PASSPHRASE", raising=False)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    with pytest.raises(DropUnreachable) as caught:
        _sftp(ssh, tmp_path, known_hosts=ssh.known_hosts, key_file=locked).list()
    assert "AUDTOOLS_SFTP_KEY_PASSPHRASE" in caught.value.message
    assert "correct horse" not in caught.value.message
    monkeypatch.setenv("AUDTOOLS_SFTP_KEY_PASSPHRASE", "correct horse")
    names = [e.name for e in _sftp(ssh, tmp_path, known_hosts=ssh.known_hosts, key_file=locked).list()]
    assert "locked.pub" in names


def test_paths_under_the_login_folder(ssh: SshServer) -> None:
    (ssh.home / "outbound").mkdir()
    (ssh.home / "outbound" / "a.sync").write_bytes(b"1")
    drop = open_drop(ssh.url("~/outbound"), sftp=SftpSettings(ssh.known_hosts, ssh.client_key))
    assert drop.url.endswith("/~/outbound")
    assert [e.name for e in drop.list()] == ["a.sync"]


def test_a_missing_folder_is_said(ssh: SshServer, tmp_path: Path) -> None:
    drop = _sftp(ssh, tmp_path / "nowhere", known_hosts=ssh.known_hosts, key_file=ssh.client_key)
    with pytest.raises(DropUnreachable, match="has no folder"):
        drop.list()


# -- S3 -----------------------------------------------------------------------------------------


def test_s3_conditional_copy_refuses_an_existing_key(s3: Any) -> None:
    """The copy itself, without the check before it, never replaces an object (moto honours
    If-None-Match on CompleteMultipartUpload, as Amazon S3 does)."""
    drop: Any = open_drop(f"s3://{s3.bucket}/drop", s3=S3Settings(endpoint_url=s3.endpoint_url))
    client = s3.client()
    client.put_object(Bucket=s3.bucket, Key="drop/t.tmp", Body=b"new")
    client.put_object(Bucket=s3.bucket, Key="drop/final.sync", Body=b"old")
    with pytest.raises(FileExistsError):
        drop._conditional_copy("drop/t.tmp", "drop/final.sync", 3, "t.tmp")
    assert client.get_object(Bucket=s3.bucket, Key="drop/final.sync")["Body"].read() == b"old"
    assert not client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads")
    drop.publish("t.tmp", "other.sync")
    assert drop.published_from("t.tmp", "other.sync")
    assert not drop.published_from("t.tmp", "final.sync")


def test_s3_missing_bucket_and_missing_credentials(
    s3: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = S3Settings(endpoint_url=s3.endpoint_url)
    with pytest.raises(DropUnreachable, match="bucket nope does not exist"):
        open_drop("s3://nope/x", s3=settings).list()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    drop = open_drop(f"s3://{s3.bucket}/drop", s3=settings)
    with pytest.raises(DropUnreachable, match="no AWS credentials"):
        drop.list()
    profiled = open_drop(f"s3://{s3.bucket}/drop", s3=S3Settings(endpoint_url=s3.endpoint_url, profile="nope"))
    with pytest.raises(DropUnreachable, match="nope"):
        profiled.list()


# -- locations ----------------------------------------------------------------------------------


def test_locations() -> None:
    drop: Any = open_drop("sftp://campaign@sftp.example.com/aam/outbound/")
    assert drop.url == "sftp://campaign@sftp.example.com/aam/outbound"
    assert drop.location.path == "/aam/outbound" and drop.location.port == 22
    drop = open_drop("sftp://campaign@sftp.example.com:2222/~/outbound")
    assert (drop.location.path, drop.location.port) == ("outbound", 2222)
    assert drop.url == "sftp://campaign@sftp.example.com:2222/~/outbound"
    drop = open_drop("s3://example-aam-inbound/campaign/")
    assert (drop.location.bucket, drop.location.prefix) == ("example-aam-inbound", "campaign")
    assert drop.location.key("a.sync") == "campaign/a.sync"
    assert open_drop("s3://example-aam-inbound").location.key("a") == "a"  # type: ignore[attr-defined]
    for bad, says in [
        ("sftp://campaign:hunter2@host/p", "must not hold a password"),
        ("sftp://host/p", "names its login"),
        ("sftp://u@host:99999/p", "port"),
        ("s3://KEY:SECRET@bucket/p", "holds no credentials"),
        ("s3://Bad_Bucket/p", "not an S3 bucket name"),
        ("ftp://u@host/p", "not supported"),
    ]:
        with pytest.raises(ConfigError) as caught:
            open_drop(bad)
        assert says in caught.value.message
        assert "hunter2" not in caught.value.message and "SECRET" not in caught.value.message
