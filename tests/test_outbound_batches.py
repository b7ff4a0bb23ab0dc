"""Batches of the import drop by Adobe's documented examples (SPEC §4.1-§4.3, issue 12).

Each test builds the drop from the names and rows of Adobe's documentation (the outbound macro
page, the transfer-control page, the sample files), not from audtools' output.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import settled

from audtools.checks import check_workspace
from audtools.cli.main import cli
from audtools.importing import state as segments
from audtools.workspace import Workspace
from audtools.workspace.database import transaction

BOTH = "<SYNC_TYPE>_<ORDER_ID>_<DPID>_<MASTER_DPID>_<SYNC_MODE>_<TIMESTAMP>"


def vid(n: int) -> str:
    return f"{n:038d}"


def add_source(ws: Workspace, ident: str, dpid: int, **keys: object) -> Workspace:
    lines = [f'\n[[data_sources]]\nid = "{ident}"\ndpid = {dpid}\nreconciliation = "visitor_id"\n']
    lines += [f"{k} = {json.dumps(v)}\n" for k, v in keys.items()]
    with open(ws.root / "audtools.toml", "a", encoding="utf-8") as f:
        f.write("".join(lines))
    return Workspace(ws.root)


def write(ws: Workspace, name: str, rows: list[str], *, final_newline: bool = True, age: float = 3600) -> Path:
    data = "\n".join(rows).encode() + (b"\n" if final_newline else b"")
    path = ws.config.import_drop / name
    if name.lower().endswith(".zip"):
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(name[: -len(".zip")], data)
    else:
        path.write_bytes(data)
    settled(path, age=age)
    return path


def write_info(ws: Workspace, info: str, files: list[tuple[str, bytes]], *, lines: int | None = None) -> None:
    entries = [
        {"FileName": n, "FileLineCount": lines if lines is not None else b.count(b"\n"),
         "FileByteSize": len(b), "md5": hashlib.md5(b).hexdigest()}
        for n, b in files
    ]
    (ws.config.import_drop / info).write_text(json.dumps({"Files": entries, "Totals": {}}))


def apply(ws: Workspace, source: str) -> segments.ApplyResult:
    with ws.session() as con, transaction(con):
        return segments.apply_ready(con, ws.config, ws.config.data_sources[source], run_id="r1")


def report(ws: Workspace) -> dict:
    with ws.session() as con:
        return segments.batch_report(ws.config, con)


def members(ws: Workspace, source: str) -> set[tuple[str, int]]:
    with ws.session() as con:
        rows = con.execute("SELECT id, sid FROM segment_state WHERE data_source = ?", [source]).fetchall()
    return {(i, int(s)) for i, s in rows}


# --- Item 1 ---------------------------------------------------------------------------------


def test_ten_digit_timestamp_with_split_digits_is_one_batch_under_seconds(workspace: Workspace) -> None:
    ws = add_source(workspace, "s9999", 9999, outbound_timestamp="seconds")
    for n in (1, 2, 3):
        write(ws, f"s3_123456_9999_full_1566906141{n:03d}.sync", [f"{vid(n)}\t{n}"])
    r = apply(ws, "s9999")
    assert r.batches_applied == ["s3_123456_9999_full_1566906141"]
    assert members(ws, "s9999") == {(vid(1), 1), (vid(2), 2), (vid(3), 3)}  # all parts kept


def test_the_same_files_under_auto_wait_naming_both_settings(workspace: Workspace) -> None:
    ws = add_source(workspace, "s9999", 9999)
    for n in (1, 2, 3):
        write(ws, f"s3_123456_9999_full_1566906141{n:03d}.sync", [f"{vid(n)}\t{n}"])
    write(ws, "s3_123456_9999_iter_1566906999000.sync", [f"{vid(9)}\t9"])
    r = apply(ws, "s9999")
    assert r.batches_applied == [] and r.batches_waiting == 4
    waiting = report(ws)["data_sources"]["s9999"]["waiting"]
    assert '"seconds"' in waiting[0]["reason"] and '"milliseconds"' in waiting[0]["reason"]
    assert waiting[-1]["reason"] == "behind an incomplete batch"


def test_a_lone_001_is_milliseconds(workspace: Workspace) -> None:
    ws = add_source(workspace, "s9999", 9999)
    write(ws, "s3_123456_9999_full_1566906141001.sync", [f"{vid(1)}\t1"])
    assert apply(ws, "s9999").batches_applied == ["s3_123456_9999_full_1566906141001"]


# --- Item 2: Adobe's transfer-control example -------------------------------------------------


def test_an_info_governs_the_batch_of_the_files_it_lists(workspace: Workspace) -> None:
    ws = add_source(workspace, "s67890", 67890)
    root = "ftp_12345_67890_full_1500727351632"
    contents = {n: f"{vid(n)}\t{n}\n".encode() for n in (1, 2, 3, 4)}
    write_info(ws, "ftp_12345_67890_iter_1500727351632.info", [(f"{root}-{n}.sync", b) for n, b in contents.items()])
    for n in (1, 2):
        write(ws, f"{root}-{n}.sync", [f"{vid(n)}\t{n}"])
    r = apply(ws, "s67890")
    assert r.batches_applied == [] and r.batches_waiting == 1
    waiting = report(ws)["data_sources"]["s67890"]["waiting"]
    assert waiting == [{"name": root, "reason": f"{root}-3.sync: missing"}]
    for n in (3, 4):
        write(ws, f"{root}-{n}.sync", [f"{vid(n)}\t{n}"])
    assert apply(ws, "s67890").batches_applied == [root]
    assert members(ws, "s67890") == {(vid(n), n) for n in (1, 2, 3, 4)}


def test_a_present_part_not_listed_holds_the_batch(workspace: Workspace) -> None:
    ws = add_source(workspace, "s67890", 67890)
    root = "ftp_12345_67890_full_1500727351632"
    p1 = write(ws, f"{root}-1.sync", [f"{vid(1)}\t1"])
    write(ws, f"{root}-2.sync", [f"{vid(2)}\t2"])
    write_info(ws, f"{root}.info", [(p1.name, p1.read_bytes())])
    assert apply(ws, "s67890").batches_applied == []
    reason = report(ws)["data_sources"]["s67890"]["waiting"][0]["reason"]
    assert reason == f"{root}-2.sync not listed in {root}.info"


def test_an_unreadable_info_holds_the_batch_of_its_root(workspace: Workspace) -> None:
    ws = add_source(workspace, "s67890", 67890)
    root = "ftp_12345_67890_full_1500727351632"
    write(ws, f"{root}-1.sync", [f"{vid(1)}\t1"])
    (ws.config.import_drop / f"{root}.info").write_text("{Files: [")
    assert apply(ws, "s67890").batches_applied == []
    assert "cannot be read" in report(ws)["data_sources"]["s67890"]["waiting"][0]["reason"]


def test_without_info_parts_need_no_gap_and_to_have_settled(workspace: Workspace) -> None:
    ws = add_source(workspace, "s67890", 67890)
    root = "ftp_12345_67890_full_1500727351632"
    write(ws, f"{root}-2.sync", [f"{vid(2)}\t2"])
    assert apply(ws, "s67890").batches_applied == []
    assert report(ws)["data_sources"]["s67890"]["waiting"][0]["reason"] == "part 1 missing (no .info)"
    write(ws, f"{root}-1.sync", [f"{vid(1)}\t1"], age=5)
    assert apply(ws, "s67890").batches_applied == []
    assert "settling" in report(ws)["data_sources"]["s67890"]["waiting"][0]["reason"]
    settled(ws.config.import_drop / f"{root}-1.sync")
    assert apply(ws, "s67890").batches_applied == [root]


def test_outbound_info_required(workspace: Workspace) -> None:
    ws = add_source(workspace, "s67890", 67890, outbound_info="required")
    write(ws, "ftp_12345_67890_full_1500727351632.sync", [f"{vid(1)}\t1"])
    assert apply(ws, "s67890").batches_applied == []
    assert report(ws)["data_sources"]["s67890"]["waiting"][0]["reason"] == "no .info"


def test_a_newer_complete_full_supersedes_a_waiting_batch(workspace: Workspace) -> None:
    ws = add_source(workspace, "s67890", 67890)
    write(ws, "ftp_12345_67890_full_1500727351632-2.sync", [f"{vid(2)}\t2"])  # part 1 never comes
    write(ws, "ftp_12345_67890_iter_1500727352000.sync", [f"{vid(3)}\t3"])
    write(ws, "ftp_12345_67890_full_1500727353000.sync", [f"{vid(4)}\t4"])
    r = apply(ws, "s67890")
    assert r.batches_applied == ["ftp_12345_67890_full_1500727353000"]
    assert {s["reason"] for s in r.batches_skipped} == {"superseded"} and len(r.batches_skipped) == 2


@pytest.mark.parametrize(
    ("names", "reason"),
    [(["X-1.sync", "X-1.sync.gz"], "duplicate part 1"), (["X-1.sync", "X002.sync"], "mixed split forms")],
)
def test_duplicate_parts_and_mixed_forms_wait(workspace: Workspace, names: list[str], reason: str) -> None:
    ws = add_source(workspace, "s67890", 67890)
    root = "ftp_12345_67890_full_1500727351632"
    for n in names:
        path = ws.config.import_drop / n.replace("X", root)
        path.write_bytes(b"")
        settled(path)
    apply(ws, "s67890")
    assert report(ws)["data_sources"]["s67890"]["waiting"][0]["reason"] == reason


# --- Item 3: a formatted timestamp, the future skip ------------------------------------------


def test_formatted_timestamp_by_setting(workspace: Workspace) -> None:
    ws = add_source(workspace, "s888", 888, outbound_timestamp="yyyyMMddHHmmss")
    write(ws, "ftp_215_888_full_20191227103000001.sync", [f"{vid(1)}\t1"])
    assert apply(ws, "s888").batches_applied == ["ftp_215_888_full_20191227103000"]
    with ws.session() as con:
        assert con.execute("SELECT timestamp_ms FROM batches").fetchall() == [(1577442600000,)]


def test_formatted_timestamp_under_auto_is_in_the_future_and_skipped(workspace: Workspace) -> None:
    ws = add_source(workspace, "s888", 888)
    write(ws, "ftp_215_888_full_20191227103000001.sync", [f"{vid(1)}\t1"])
    r = apply(ws, "s888")
    assert r.batches_applied == []
    assert r.batches_skipped == [{"name": "ftp_215_888_full_2019122710300", "reason": "future"}]
    write(ws, "ftp_215_888_full_1577442600000.sync", [f"{vid(2)}\t2"])
    assert apply(ws, "s888").batches_applied == ["ftp_215_888_full_1577442600000"]


def test_a_batch_applied_in_the_future_is_reported_and_not_compared(workspace: Workspace) -> None:
    ws = add_source(workspace, "s888", 888)
    with ws.session() as con:  # what an audtools before issue 12 could leave
        con.execute(
            "INSERT INTO batches VALUES ('s888', 'ftp_215_888_full_2019122710300', 'full', 2019122710300,"
            " 1, 1, 0, 'old', TIMESTAMP '2020-01-01 00:00:00')"
        )
    write(ws, "ftp_215_888_full_1700000000000.sync", [f"{vid(2)}\t2"])
    assert apply(ws, "s888").batches_applied == ["ftp_215_888_full_1700000000000"]  # not stale
    problems = check_workspace(ws)["problems"]
    assert any("ftp_215_888_full_2019122710300" in p and "future" in p for p in problems)


# --- Item 4: DPID and MASTER_DPID -------------------------------------------------------------


def test_dpid_and_master_dpid_template_routes_to_the_master(workspace: Workspace) -> None:
    ws = add_source(workspace, "s20915", 20915, outbound_name=BOTH)
    write(ws, "ftp_215_888_20915_iter_1449756724.sync", [f"{vid(1)}\t1"])
    assert apply(ws, "s20915").batches_applied == ["ftp_215_888_20915_iter_1449756724"]


def test_a_name_claimed_by_two_data_sources_waits_in_both(workspace: Workspace) -> None:
    ws = add_source(workspace, "s20915", 20915, outbound_name=BOTH)
    ws = add_source(ws, "s888", 888)
    write(ws, "ftp_215_888_20915_iter_1449756724.sync", [f"{vid(1)}\t1"])
    assert apply(ws, "s20915").batches_applied == [] and apply(ws, "s888").batches_applied == []
    for source in ("s20915", "s888"):
        assert report(ws)["data_sources"][source]["waiting"][0]["reason"] == "claimed by s20915 and s888"


# --- Item 5: FileLineCount of a file without a final newline ----------------------------------


@pytest.mark.parametrize("count", [2, 1])
def test_file_line_count_counts_a_last_line_without_newline(workspace: Workspace, count: int) -> None:
    ws = add_source(workspace, "s67890", 67890)
    name = "ftp_12345_67890_full_1500727351632.sync"
    path = write(ws, name, [f"{vid(1)}\t1", f"{vid(2)}\t2"], final_newline=False)
    write_info(ws, "ftp_12345_67890_full_1500727351632.info", [(name, path.read_bytes())], lines=count)
    assert apply(ws, "s67890").batches_applied == ["ftp_12345_67890_full_1500727351632"]


# --- Item 6: .sync.zip, ignored files listed ---------------------------------------------------


def test_sync_zip_applies(workspace: Workspace) -> None:
    ws = add_source(workspace, "s67890", 67890)
    write(ws, "ftp_12345_67890_full_1500727351632.sync.zip", [f"{vid(1)}\t1"])
    assert apply(ws, "s67890").batches_applied == ["ftp_12345_67890_full_1500727351632"]
    assert members(ws, "s67890") == {(vid(1), 1)}


def test_batches_and_check_list_ignored_files(workspace: Workspace, runner: CliRunner) -> None:
    ws = add_source(workspace, "s888", 888)
    drop = ws.config.import_drop
    write(ws, "ftp_215_888_full_20191227103000.sync", [f"{vid(1)}\t1"])  # formatted, no split
    write(ws, "ftp_1_4242_iter_1500727351632.sync", [f"{vid(1)}\t1"])  # no such data source
    write(ws, "ftp_dpm_21_1500727351632.sync", ["x"])  # an inbound file: not listed
    os.symlink(drop / "ftp_1_4242_iter_1500727351632.sync", drop / "ftp_215_888_iter_1500727351632.sync")
    out = runner.invoke(cli, ["batches", "-w", str(ws.root), "--json"])
    assert out.exit_code == 0, out.output
    ignored = {i["name"]: i for i in json.loads(out.stdout)["ignored"]}
    assert set(ignored) == {
        "ftp_215_888_full_20191227103000.sync",
        "ftp_1_4242_iter_1500727351632.sync",
        "ftp_215_888_iter_1500727351632.sync",
    }
    assert ignored["ftp_215_888_full_20191227103000.sync"] == {
        "name": "ftp_215_888_full_20191227103000.sync",
        "reason": "timestamp of 14 digits: set outbound_timestamp",
        "data_sources": ["s888"],
    }
    assert ignored["ftp_1_4242_iter_1500727351632.sync"]["reason"] == "no data source with DPID 4242"
    assert "link" in ignored["ftp_215_888_iter_1500727351632.sync"]["reason"]
    checked = check_workspace(ws)
    assert sum("is ignored" in w for w in checked["warnings"]) == 3
    assert not any("ignored" in p for p in checked["problems"])


def test_batches_and_check_text_name_ignored_files(workspace: Workspace, runner: CliRunner) -> None:
    ws = add_source(workspace, "s888", 888)
    write(ws, "ftp_215_888_full_20191227103000.sync", [f"{vid(1)}\t1"])  # formatted, no split
    write(ws, "ftp_1_4242_iter_1500727351632.sync", [f"{vid(1)}\t1"])  # no such data source
    out = runner.invoke(cli, ["batches", "-w", str(ws.root)])
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines()[-3:] == [
        "ignored drop files (2)",
        "  ftp_1_4242_iter_1500727351632.sync: no data source with DPID 4242",
        "  ftp_215_888_full_20191227103000.sync: timestamp of 14 digits: set outbound_timestamp",
    ]
    checked = runner.invoke(cli, ["check", "-w", str(ws.root)])
    assert checked.exit_code == 0, checked.output
    assert (
        "  warning: import drop: ftp_1_4242_iter_1500727351632.sync is ignored: "
        "no data source with DPID 4242" in checked.stdout.splitlines()
    )
    assert "ftp_215_888_full_20191227103000.sync is ignored: timestamp of 14 digits" in checked.stdout
