"""Segment state (SPEC §4.3): full and iter batches, order, once, waiting, skipped."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest
from conftest import settled

from audtools.importing import state as segments
from audtools.workspace import Workspace
from audtools.workspace.database import transaction

DPID = 14016  # defaultDataSource, visitor IDs


def vid(n: int) -> str:
    return f"{n:038d}"


def write(ws: Workspace, name: str, rows: list[str], *, gz: bool = False) -> Path:
    data = "".join(r + "\n" for r in rows).encode()
    path = ws.config.import_drop / name
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    settled(path)
    return path


def write_info(ws: Workspace, root: str, files: list[Path], *, lines: dict[str, int] | None = None) -> None:
    entries = []
    for f in files:
        raw = f.read_bytes()
        content = gzip.decompress(raw) if f.name.endswith(".gz") else raw
        entries.append(
            {
                "FileName": f.name,
                "FileLineCount": (lines or {}).get(f.name, content.count(b"\n")),
                "FileByteSize": len(raw),
                "md5": hashlib.md5(raw).hexdigest(),
            }
        )
    (ws.config.import_drop / f"{root}.info").write_text(json.dumps({"Files": entries}))


def apply(ws: Workspace, source: str = "defaultDataSource") -> segments.ApplyResult:
    with ws.session() as con, transaction(con):
        return segments.apply_ready(con, ws.config, ws.config.data_sources[source], run_id="r1")


def state(ws: Workspace, source: str = "defaultDataSource") -> set[tuple[str, int]]:
    with ws.session() as con:
        rows = con.execute(
            "SELECT id, sid FROM segment_state WHERE data_source = ?", [source]
        ).fetchall()
    return {(i, int(s)) for i, s in rows}


def name(mode: str, ts: int, split: str = "") -> str:
    return f"ftp_46390_{DPID}_{mode}_{ts}{split}.sync"


def test_full_replaces_the_whole_state(workspace: Workspace) -> None:
    write(workspace, name("full", 1700000000000), [f"{vid(1)}\t1,2", f"{vid(2)}\t2"])
    r = apply(workspace)
    assert r.batches_applied == [f"ftp_46390_{DPID}_full_1700000000000"]
    assert r.rows_read == 2 and r.rows_rejected == 0
    assert state(workspace) == {(vid(1), 1), (vid(1), 2), (vid(2), 2)}
    write(workspace, name("full", 1700000001000), [f"{vid(1)}\t3\t2"])  # REMOVED ignored
    apply(workspace)
    assert state(workspace) == {(vid(1), 3)}


def test_iter_removes_then_adds_and_additions_win(workspace: Workspace) -> None:
    write(workspace, name("full", 1700000000000), [f"{vid(1)}\t1,2", f"{vid(2)}\t5"])
    write(
        workspace,
        name("iter", 1700000001000),
        [f"{vid(1)}\t3\t1", f"{vid(2)}\t5\t5", f"{vid(3)}\t\t9", f"{vid(4)}\t7"],
    )
    r = apply(workspace)
    assert len(r.batches_applied) == 2 and r.rows_read == 6
    assert state(workspace) == {(vid(1), 2), (vid(1), 3), (vid(2), 5), (vid(4), 7)}


def test_batches_apply_in_timestamp_order_with_10_and_13_digit_stamps(workspace: Workspace) -> None:
    # 10-digit seconds 1700000002 is later than 13-digit 1700000001000.
    write(workspace, f"ftp_46390_{DPID}_iter_1700000002.sync", [f"{vid(1)}\t\t1"])
    write(workspace, name("iter", 1700000001000), [f"{vid(1)}\t1"])
    r = apply(workspace)
    assert r.batches_applied == [
        f"ftp_46390_{DPID}_iter_1700000001000",
        f"ftp_46390_{DPID}_iter_1700000002",
    ]
    assert state(workspace) == set()


def test_a_batch_is_applied_once(workspace: Workspace) -> None:
    write(workspace, name("iter", 1700000000000), [f"{vid(1)}\t1"])
    assert apply(workspace).rows_read == 1
    again = apply(workspace)
    assert again.batches_applied == [] and again.rows_read == 0 and again.batches_skipped == []
    assert state(workspace) == {(vid(1), 1)}


def test_parts_are_applied_together_with_their_info(workspace: Workspace) -> None:
    root = f"ftp_46390_{DPID}_full_1700000000000"
    p1 = write(workspace, f"{root}-1.sync.gz", [f"{vid(1)}\t1"], gz=True)
    p2 = write(workspace, f"{root}-2.sync", [f"{vid(2)}\t1", "garbage"])
    write_info(workspace, root, [p1, p2])
    r = apply(workspace)
    assert r.batches_applied == [root] and r.rows_read == 3 and r.rows_rejected == 1
    assert r.rejects_table().to_pylist() == [{"file": p2.name, "line": 2, "reason": "bad_syntax"}]
    assert state(workspace) == {(vid(1), 1), (vid(2), 1)}


def test_an_incomplete_batch_waits_and_so_do_later_ones(workspace: Workspace) -> None:
    root = f"ftp_46390_{DPID}_full_1700000000000"
    p1 = write(workspace, f"{root}-1.sync", [f"{vid(1)}\t1"])
    p2 = write(workspace, f"{root}-2.sync", [f"{vid(2)}\t1"])
    write_info(workspace, root, [p1, p2])
    p2.unlink()
    write(workspace, name("iter", 1700000001000), [f"{vid(3)}\t1"])
    r = apply(workspace)
    assert r.batches_applied == [] and r.batches_waiting == 2
    assert state(workspace) == set()
    with workspace.session() as con:
        report = segments.batch_report(workspace.config, con)["data_sources"]["defaultDataSource"]
    assert report["waiting"][0] == {"name": root, "reason": f"{p2.name}: missing"}
    assert report["waiting"][1]["reason"] == "behind an incomplete batch"
    write(workspace, p2.name, [f"{vid(2)}\t1"])
    r = apply(workspace)
    assert len(r.batches_applied) == 2 and r.batches_waiting == 0
    assert state(workspace) == {(vid(1), 1), (vid(2), 1), (vid(3), 1)}


@pytest.mark.parametrize("problem", ["size", "md5", "lines"])
def test_every_info_mismatch_keeps_the_batch_waiting(workspace: Workspace, problem: str) -> None:
    root = f"ftp_46390_{DPID}_full_1700000000000"
    p1 = write(workspace, f"{root}.sync", [f"{vid(1)}\t1", f"{vid(2)}\t1"])
    write_info(workspace, root, [p1], lines={p1.name: 3} if problem == "lines" else None)
    info = json.loads((workspace.config.import_drop / f"{root}.info").read_text())
    if problem == "size":
        info["Files"][0]["FileByteSize"] += 1
    if problem == "md5":
        info["Files"][0]["md5"] = "0" * 32
    (workspace.config.import_drop / f"{root}.info").write_text(json.dumps(info))
    r = apply(workspace)
    assert r.batches_applied == [] and r.batches_waiting == 1
    assert state(workspace) == set()
    with workspace.session() as con:
        waiting = segments.batch_report(workspace.config, con)["data_sources"]["defaultDataSource"]["waiting"]
    expected = {"size": "size", "md5": "md5 differs", "lines": "2 lines, expected 3"}[problem]
    assert expected in waiting[0]["reason"]


def test_stale_conflict_and_late_are_skipped_with_a_reason(workspace: Workspace) -> None:
    root = f"ftp_46390_{DPID}_full_1700000005000"
    applied = write(workspace, f"{root}-1.sync", [f"{vid(1)}\t1"])
    apply(workspace)
    # stale: older than the last applied batch
    write(workspace, name("iter", 1700000004000), [f"{vid(9)}\t9"])
    # late: a part of the applied batch arriving after it
    write(workspace, f"{root}-2.sync", [f"{vid(8)}\t8"])
    r = apply(workspace)
    reasons = {item["name"]: item["reason"] for item in r.batches_skipped}
    assert reasons == {f"ftp_46390_{DPID}_iter_1700000004000": "stale", root: "late"}
    (workspace.config.import_drop / f"{root}-2.sync").unlink()
    # conflict: the applied name arrives again with another checksum
    applied.write_text(f"{vid(7)}\t7\n")
    r = apply(workspace)
    assert {"name": root, "reason": "conflict"} in r.batches_skipped
    assert state(workspace) == {(vid(1), 1)}


def test_the_last_processed_file_is_recorded(workspace: Workspace) -> None:
    root = f"ftp_46390_{DPID}_full_1700000000000"
    write(workspace, f"{root}-1.sync", [f"{vid(1)}\t1"])
    write(workspace, f"{root}-2.sync", [f"{vid(2)}\t1"])
    apply(workspace)
    with workspace.session() as con:
        report = segments.batch_report(workspace.config, con)["data_sources"]["defaultDataSource"]
    assert report["last_file"] == f"{root}-2.sync"
    assert report["applied"] == [root]


def test_a_corrupt_gzip_makes_its_batch_wait_with_the_reason(workspace: Workspace) -> None:
    # SPEC §4.1 (issue 12): it may still be arriving; it no longer fails the import.
    write(workspace, name("full", 1700000000000), [f"{vid(1)}\t1"])
    path = workspace.config.import_drop / (name("iter", 1700000001000) + ".gz")
    path.write_bytes(gzip.compress(f"{vid(2)}\t2\n".encode())[:-6])
    settled(path)
    r = apply(workspace)
    assert r.batches_applied == [name("full", 1700000000000)[: -len(".sync")]]
    assert r.batches_waiting == 1
    assert state(workspace) == {(vid(1), 1)}
    with workspace.session() as con:
        report = segments.batch_report(workspace.config, con)["data_sources"]["defaultDataSource"]
    assert report["waiting"][0]["name"] == name("iter", 1700000001000)[: -len(".sync")]
    assert "cannot be decompressed" in report["waiting"][0]["reason"]
    # Once the file is whole, the batch applies.
    path.write_bytes(gzip.compress(f"{vid(2)}\t2\n".encode()))
    settled(path, age=3000)
    assert len(apply(workspace).batches_applied) == 1
    assert state(workspace) == {(vid(1), 1), (vid(2), 2)}


def test_a_failure_while_applying_leaves_the_state_unchanged(workspace: Workspace, monkeypatch) -> None:
    write(workspace, name("full", 1700000000000), [f"{vid(1)}\t1"])
    apply(workspace)
    write(workspace, name("iter", 1700000001000), [f"{vid(2)}\t2"])
    write(workspace, name("iter", 1700000002000), [f"{vid(3)}\t3"])
    calls = {"n": 0}
    original = segments._apply_staged

    def boom(con, batch, source):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        original(con, batch, source)
        if calls["n"] == 2:
            raise RuntimeError("disk full")

    monkeypatch.setattr(segments, "_apply_staged", boom)
    with pytest.raises(RuntimeError):
        apply(workspace)
    monkeypatch.undo()
    assert state(workspace) == {(vid(1), 1)}
    with workspace.session() as con:
        assert con.execute("SELECT count(*) FROM batches").fetchone() == (1,)
    r = apply(workspace)
    assert len(r.batches_applied) == 2
    assert state(workspace) == {(vid(1), 1), (vid(2), 2), (vid(3), 3)}


def test_files_of_other_data_sources_and_other_names_are_ignored(workspace: Workspace) -> None:
    write(workspace, "ftp_46390_99999_full_1700000000000.sync", [f"{vid(1)}\t1"])
    write(workspace, "notes.txt", ["hello"])
    r = apply(workspace)
    assert r.batches_applied == [] and state(workspace) == set()


def test_the_state_holds_each_id_and_segment_once(workspace: Workspace) -> None:
    # Imports count members without DISTINCT: they rely on this.
    write(workspace, name("full", 1700000000000), [f"{vid(1)}\t1,1", f"{vid(1)}\t1", f"{vid(2)}\t1"])
    write(workspace, name("iter", 1700000001000), [f"{vid(1)}\t1,2", f"{vid(1)}\t2", f"{vid(3)}\t3\t3"])
    apply(workspace)
    with workspace.session() as con:
        total, distinct = con.execute(
            "SELECT count(*), count(DISTINCT (data_source, id, sid)) FROM segment_state"
        ).fetchall()[0]
    assert total == distinct == 4
