"""Whole workspaces on remote drops (real sshd and moto servers, tests/servers.py): the sample
workspace's imports and an export give the same results as from local folders; samples, check,
and pending exports on an unreachable drop."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from click.testing import CliRunner
from conftest import samples_json
from servers import S3Server, SshServer

from audtools.cli.main import cli

pytestmark = pytest.mark.slow

_RUN_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")
_TIME = re.compile(r"20[0-9]{2}-[0-9]{2}-[0-9]{2}[T ][0-9:.]+Z?")
_ONBOARDING = re.compile(r"ftp_dpm_([0-9]+)_[0-9]{10}")




def _configure(ws: Path, *, import_drop: str | None = None, export_drop: str | None = None,
               ssh: SshServer | None = None, s3: S3Server | None = None) -> None:
    doc = tomlkit.parse((ws / "audtools.toml").read_text())
    if import_drop:
        doc["workspace"]["import_drop"] = import_drop  # type: ignore[index]
    if export_drop:
        doc["workspace"]["export_drop"] = export_drop  # type: ignore[index]
    if ssh is not None:
        doc["sftp"] = {"known_hosts": str(ssh.known_hosts), "key_file": str(ssh.client_key)}
    if s3 is not None:
        doc["s3"] = {"endpoint_url": s3.endpoint_url, "region": "us-east-1",
                     "export": {"addressing": "path"}, "import": {"addressing": "path"}}
    (ws / "audtools.toml").write_text(tomlkit.dumps(doc))


def _upload(s3: Any, folder: Path, prefix: str) -> None:
    client = s3.client()
    for path in sorted(folder.iterdir()):
        client.put_object(Bucket=s3.bucket, Key=f"{prefix}/{path.name}", Body=path.read_bytes())


def _cli(runner: CliRunner, *args: str) -> tuple[int, Any]:
    result = runner.invoke(cli, [*args, "--json"], catch_exceptions=False)
    try:
        return result.exit_code, json.loads(result.stdout)
    except ValueError:
        return result.exit_code, result.stdout


def _normalise(value: Any, *locations: str) -> Any:
    text = json.dumps(value, sort_keys=True)
    for where in locations:
        text = text.replace(where, "DROP")
    text = _RUN_ID.sub("RUNID", text)
    text = _TIME.sub("TIME", text)
    return json.loads(_ONBOARDING.sub(r"ftp_dpm_\1_TS", text))


def _scenario(ws: Path, *locations: str) -> dict[str, Any]:
    """Every sample import, the listings, and an export: what a user sees."""
    runner = CliRunner()
    w = ["-w", str(ws)]
    out: dict[str, Any] = {"catalog": _cli(runner, "catalog", *w), "batches0": _cli(runner, "batches", *w)}
    for item in samples_json(ws)["imports"]:
        args = ["import", *w, "--label", item["label"], "--shared-audience",
                str(item["shared_audience"]), "--data-source", item["data_source"]]
        if item.get("force_reconciliation"):
            args.append("--force-reconciliation")
        out[item["label"]] = _cli(runner, *args)
    out["batches1"] = _cli(runner, "batches", *w)
    out["audiences"] = _cli(runner, "audiences", *w)
    out["export"] = _cli(runner, "export", *w, "--where", "loyalty_points >= 1000",
                         "--segment-name", "Remote seg", "--data-source", "samplesVisitorId")
    out["catalog1"] = _cli(runner, "catalog", *w)
    return _normalise(out, *locations)  # type: ignore[no-any-return]


def _exported(ws: Path) -> dict[str, bytes]:
    """The export drop's files (through the workspace's own drop), names without timestamps,
    rows sorted."""
    from audtools.drops import export_drop
    from audtools.workspace import Workspace

    # The rows of an onboarding file come in the order DuckDB's parallel anti-join yields them,
    # which no two runs need share: the files are compared as their sorted lines.
    with export_drop(Workspace(ws).config) as drop:
        return {
            _ONBOARDING.sub(r"ftp_dpm_\1_TS", e.name): b"".join(
                sorted(drop.read_bytes(e.name).splitlines(keepends=True))
            )
            for e in drop.list()
        }


@pytest.fixture
def local_run(sample_template: Path, tmp_path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    ws = tmp_path / "local"
    shutil.copytree(sample_template, ws)
    return _scenario(ws, str(ws / "drops/import"), str(ws / "drops/export")), _exported(ws)


def test_sftp_import_and_s3_export_give_the_local_results(
    local_run: Any, sample_template: Path, tmp_path: Path, ssh: SshServer, s3: Any
) -> None:
    ws = tmp_path / "remote"
    shutil.copytree(sample_template, ws)
    served = tmp_path / "aam-outbound"
    shutil.move(ws / "drops/import", served)  # nothing left where a folder drop would be
    import_url, export_url = ssh.url(served), f"s3://{s3.bucket}/campaign"
    _configure(ws, import_drop=import_url, export_drop=export_url, ssh=ssh, s3=s3)
    results, files = _scenario(ws, import_url, export_url), _exported(ws)
    assert results == local_run[0]
    assert files == local_run[1] and files


def test_s3_import_and_sftp_export_give_the_local_results(
    local_run: Any, sample_template: Path, tmp_path: Path, ssh: SshServer, s3: Any
) -> None:
    ws = tmp_path / "remote"
    shutil.copytree(sample_template, ws)
    _upload(s3, ws / "drops/import", "aam/outbound")
    shutil.rmtree(ws / "drops/import")
    outgoing = tmp_path / "aam-inbound"
    outgoing.mkdir()
    import_url, export_url = f"s3://{s3.bucket}/aam/outbound", ssh.url(outgoing)
    _configure(ws, import_drop=import_url, export_drop=export_url, ssh=ssh, s3=s3)
    results, files = _scenario(ws, import_url, export_url), _exported(ws)
    assert results == local_run[0]
    assert files == local_run[1] and files


def test_samples_refuse_a_remote_import_drop(tmp_path: Path) -> None:
    from audtools.errors import AudtoolsError
    from audtools.samples import create_samples
    from audtools.workspace import init_workspace

    ws = init_workspace(tmp_path / "ws")
    _configure(ws.root, import_drop="sftp://campaign@sftp.example.com/aam/outbound")
    with pytest.raises(AudtoolsError) as caught:
        create_samples(ws.root)
    assert caught.value.code == "refused" and "remote" in caught.value.message
    assert not (ws.root / "samples.json").exists()


def test_check_lists_the_import_drop_and_tries_the_export_drop(
    sample_template: Path, tmp_path: Path, ssh: SshServer, s3: Any
) -> None:
    ws = tmp_path / "remote"
    shutil.copytree(sample_template, ws)
    import_url, export_url = ssh.url(ws / "drops/import"), f"s3://{s3.bucket}/campaign"
    _configure(ws, import_drop=import_url, export_drop=export_url, ssh=ssh, s3=s3)
    code, report = _cli(CliRunner(), "check", "-w", str(ws))
    assert code == 0 and report["problems"] == []
    assert report["drops"]["import"]["location"] == import_url
    assert report["drops"]["import"]["files"] == len(list((ws / "drops/import").iterdir()))
    assert report["drops"]["export"] == {"location": export_url, "reachable": True, "writable": True}
    assert not s3.client().list_objects_v2(Bucket=s3.bucket).get("Contents")  # nothing left
    ssh.stop()
    code, report = _cli(CliRunner(), "check", "-w", str(ws))
    assert code == 1 and report["drops"]["import"]["reachable"] is False
    assert any(p.startswith(f"the import drop: The drop {import_url} cannot be reached")
               for p in report["problems"])
    assert "hunter" not in json.dumps(report)


_KILLED_EXPORT = """
import os, sys
from audtools.exporting import publish
def crash(name):
    if name == sys.argv[2]:
        os.kill(os.getpid(), 9)
publish._crash_point = crash
from audtools.cli.main import cli
cli(["export", "-w", sys.argv[1], "--where", "loyalty_points >= 1000", "--segment-name",
     "Killed seg", "--data-source", "samplesVisitorId", "-q"])
"""


def _killed_export(ws: Path, step: str) -> None:
    """An export in another process, killed (SIGKILL) at ``step`` of the pending-export protocol."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _KILLED_EXPORT, str(ws), step], timeout=300,
                          capture_output=True)
    assert done.returncode == -9, done.stderr.decode()[-2000:]


def _keys(s3: Any, prefix: str) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=prefix)
    return sorted(o["Key"][len(prefix):] for o in listing.get("Contents", []))


@pytest.mark.parametrize(("step", "kept"), [("after_written", 0), ("after_rename_part_1", 1)])
def test_a_killed_export_is_settled_on_the_s3_drop(
    sample_template: Path, tmp_path: Path, s3: Any, step: str, kept: int
) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(sample_template, ws)
    _configure(ws, export_drop=f"s3://{s3.bucket}/campaign", s3=s3)
    _killed_export(ws, step)
    before = _keys(s3, "campaign/")  # what the kill left: temporary parts, or the published part
    assert any(k.startswith(".audtools-" if kept == 0 else "ftp_dpm_") for k in before), before
    code, _ = _cli(CliRunner(), "batches", "-w", str(ws))  # the next command settles it
    assert code == 0
    left = _keys(s3, "campaign/")
    assert not [k for k in left if k.startswith(".audtools-")]
    assert len([k for k in left if k.startswith("ftp_dpm_")]) == kept
    code, runs = _cli(CliRunner(), "runs", "-w", str(ws))
    statuses = [r["status"] for r in runs["runs"] if r["kind"] == "export"]
    assert statuses == (["failed"] if kept == 0 else ["succeeded"])


def test_a_pending_export_on_an_unreachable_drop_stays_pending(
    sample_template: Path, tmp_path: Path, s3: Any
) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(sample_template, ws)
    _configure(ws, export_drop=f"s3://{s3.bucket}/campaign", s3=s3)
    _killed_export(ws, "after_written")
    s3.stop()
    runner = CliRunner()
    code, batches = _cli(runner, "batches", "-w", str(ws))  # does not write the export drop
    assert code == 0 and "data_sources" in json.dumps(batches)
    code, failed = _cli(runner, "export", "-w", str(ws), "--where", "loyalty_points >= 1000",
                        "--segment-name", "Other seg", "--data-source", "samplesVisitorId")
    assert code == 1 and failed["error"]["code"] == "drop_unreachable"
    assert f"s3://{s3.bucket}/campaign" in failed["error"]["message"]
    s3.start()
    assert any(k.startswith(".audtools-") for k in _keys(s3, "campaign/"))  # still pending
    code, _ = _cli(runner, "batches", "-w", str(ws))
    assert code == 0 and _keys(s3, "campaign/") == []


_GROWING = "ftp_56390_24016_iter_1764460800000.sync"


def test_a_batch_still_growing_on_sftp_waits_for_the_settle_rule(
    sample_template: Path, tmp_path: Path, ssh: SshServer
) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(sample_template, ws)
    served = ws / "drops/import"
    _configure(ws, import_drop=ssh.url(served), ssh=ssh)
    rows = (served / "ftp_56390_24016_iter_1764374400000.sync").read_bytes()
    growing = served / _GROWING
    growing.write_bytes(rows[: len(rows) // 2])  # AAM is still writing it: no .info
    runner = CliRunner()
    code, report = _cli(runner, "batches", "-w", str(ws))
    assert code == 0 and "settling: " + _GROWING in json.dumps(report)
    with growing.open("ab") as fh:
        fh.write(rows[len(rows) // 2 :])
    code, report = _cli(runner, "batches", "-w", str(ws))
    assert "settling: " + _GROWING in json.dumps(report)
    from conftest import settled

    settled(growing)  # the writer finished an hour ago
    code, report = _cli(runner, "batches", "-w", str(ws))
    assert "settling" not in json.dumps(report) and _GROWING[: -len(".sync")] in json.dumps(report)


def test_on_s3_ages_are_measured_against_the_listing_time(
    sample_template: Path, tmp_path: Path, s3: Any
) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(sample_template, ws)
    _upload(s3, ws / "drops/import", "outbound")
    rows = (ws / "drops/import/ftp_56390_24016_iter_1764374400000.sync").read_bytes()
    s3.client().put_object(Bucket=s3.bucket, Key=f"outbound/{_GROWING}", Body=rows)
    _configure(ws, import_drop=f"s3://{s3.bucket}/outbound", s3=s3)
    code, report = _cli(CliRunner(), "batches", "-w", str(ws))
    assert code == 0 and "settling: " + _GROWING in json.dumps(report)


def _connections_to(port: int) -> int:
    """This machine's established TCP connections whose remote end is ``port`` on 127.0.0.1
    (the client side of connections to a test server), from /proc/net/tcp."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[2].endswith(f":{port:04X}") and line.split()[3] == "01")


def test_commands_in_one_process_leave_no_sftp_connection_open(
    sample_template: Path, tmp_path: Path, ssh: SshServer
) -> None:
    """A notebook runs many commands in one process: each closes its connection to the drop when
    it ends, rather than leaving it to the garbage collector."""
    import gc

    ws = tmp_path / "ws"
    shutil.copytree(sample_template, ws)
    _configure(ws, import_drop=ssh.url(ws / "drops/import"), ssh=ssh)
    runner = CliRunner()
    gc.disable()
    try:
        for args in (["batches"], ["check"], ["import", "--label", "Visitors", "--shared-audience",
                                              "10603117", "--data-source", "samplesVisitorId"]):
            code, _ = _cli(runner, *args, "-w", str(ws))
            assert code == 0, args
            deadline = time.monotonic() + 10
            while _connections_to(ssh.port) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _connections_to(ssh.port) == 0, args
    finally:
        gc.enable()
