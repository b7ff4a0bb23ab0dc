"""What a drop scan remembers across runs (SPEC §4.2, §4.3): ``.info`` contents per (name, size,
modification time), and the new modification time of an applied file whose bytes did not change.

The drop files are changed behind the scan's back in ways that keep what it compares (same name,
size and time, other bytes): a scan that read them again would see the change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import settled

from audtools.importing import state as segments
from audtools.importing.scan import group_drop, import_drop, scan_drop
from audtools.workspace import Workspace
from audtools.workspace.database import transaction

ROOT = "ftp_1_14016_full_1700000000000"


def vid(n: int) -> str:
    return f"{n:038d}"


def write(ws: Workspace, name: str, data: bytes) -> Path:
    path = ws.config.import_drop / name
    path.write_bytes(data)
    settled(path)
    return path


def write_info(ws: Workspace, name: str, listed: list[str]) -> Path:
    entries = [{"FileName": n, "FileLineCount": 1, "FileByteSize": 41} for n in listed]
    return write(ws, name, json.dumps({"Files": entries}).encode())


def rewrite_keeping_time(path: Path, data: bytes) -> None:
    """New bytes of the same length, with the modification time the file had."""
    st = path.stat()
    assert len(data) == st.st_size
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def batches_in_new_process(ws: Workspace) -> dict:
    """``audtools batches --json`` run by another Python process (nothing shared in memory)."""
    code = "import sys; from audtools.cli.main import cli; sys.exit(cli())"
    done = subprocess.run(
        [sys.executable, "-c", code, "batches", "-w", str(ws.root), "--json"],
        capture_output=True, text=True, check=True,
    )
    return json.loads(done.stdout)


def waiting(report: dict) -> list[dict]:
    return report["data_sources"]["defaultDataSource"]["waiting"]


def test_an_info_is_read_once_per_name_size_and_time_across_processes(workspace: Workspace) -> None:
    ws = workspace
    write(ws, f"{ROOT}-1.sync", f"{vid(1)}\t1\n".encode())
    info = write_info(ws, f"{ROOT}.info", [f"{ROOT}-1.sync", f"{ROOT}-2.sync"])
    expected = [{"name": ROOT, "reason": f"{ROOT}-2.sync: missing"}]
    assert waiting(batches_in_new_process(ws)) == expected
    # Same name, size and time, other bytes (not JSON): another process still uses what the
    # first one read, without reading the file.
    rewrite_keeping_time(info, b"x" * info.stat().st_size)
    assert waiting(batches_in_new_process(ws)) == expected
    # A new modification time is a new version of the file: read again.
    settled(info, age=60)
    (item,) = waiting(batches_in_new_process(ws))
    assert item["reason"].startswith(f"{ROOT}.info cannot be read: ") and "not JSON" in item["reason"]


def test_remembered_infos_follow_the_drop(workspace: Workspace) -> None:
    ws = workspace
    write(ws, f"{ROOT}-1.sync", f"{vid(1)}\t1\n".encode())
    first = write_info(ws, f"{ROOT}.info", [f"{ROOT}-1.sync", f"{ROOT}-2.sync"])
    other = write_info(ws, "ftp_1_14016_iter_1700000009000.info", ["ftp_1_14016_iter_1700000009000.sync"])

    def remembered() -> list[tuple[str, int]]:
        with ws.session() as con:
            scan_drop(ws.config, con)
            return con.execute("SELECT name, size FROM info_files ORDER BY name").fetchall()

    assert remembered() == [(first.name, first.stat().st_size), (other.name, other.stat().st_size)]
    assert remembered() == [(first.name, first.stat().st_size), (other.name, other.stat().st_size)]
    with ws.session() as con:  # a drop this workspace used before
        con.execute("INSERT INTO info_files VALUES ('/old/drop', 'x.info', 1, 1, '[]', NULL)")
    other.unlink()
    write_info(ws, first.name, [f"{ROOT}-1.sync"])  # a new version replaces the old one
    assert remembered() == [(first.name, first.stat().st_size)]
    first.unlink()
    assert remembered() == []


def test_group_drop_without_a_database_reads_infos(workspace: Workspace) -> None:
    ws = workspace
    write_info(ws, f"{ROOT}.info", [f"{ROOT}-1.sync"])
    with import_drop(ws.config) as drop:
        by_source, ignored = group_drop(ws.config, drop)
    assert ignored == []
    (batch,) = by_source["defaultDataSource"].values()
    assert [entry.file_name for _, entry in batch.infos] == [f"{ROOT}-1.sync"]


def test_an_applied_file_touched_but_unchanged_is_read_once(workspace: Workspace) -> None:
    ws = workspace
    source = ws.config.data_sources["defaultDataSource"]
    part = write(ws, f"{ROOT}.sync", f"{vid(1)}\t1\n".encode())
    with ws.session() as con, transaction(con):
        assert segments.apply_ready(con, ws.config, source, run_id="r1").batches_applied == [ROOT]

    def status() -> tuple[str, str | None]:
        with ws.session() as con:
            (batch,) = scan_drop(ws.config, con).sources[source.id].batches
            return batch.status, batch.reason

    settled(part, age=60)  # copied again: a new time, the same bytes
    assert status() == ("applied", None)  # read again: the md5 is the one applied
    # Other bytes under the time now recorded: not read again, so not seen.
    rewrite_keeping_time(part, f"{vid(2)}\t1\n".encode())
    assert status() == ("applied", None)
    # A new time: read again, and the other bytes are a conflict.
    settled(part, age=30)
    assert status() == ("skipped", "conflict")
