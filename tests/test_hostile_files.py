"""Hostile files in the import drop cost little (issue 13, items 1 to 5): each test is built from
the reproduction of the issue, with timestamps in the past and files that have settled, so that it
exercises the reading, not the ``future`` skip or the settle rule.

Memory is measured in a child process (its peak resident size), time with a generous bound: the
quadratic and unbounded behaviours these tests guard against took minutes and gigabytes.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import settled
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audtools.formats.outbound_info import parse_info, quote_keys
from audtools.formats.outbound_rows import Limits, OutboundReader
from audtools.importing.flow import import_audience
from audtools.workspace import Workspace, init_workspace

NAME = "ftp_46390_14016_iter_1764460800000.sync.gz"
CATALOG = {"segments": [{"sid": 100, "name": "Seg A", "type": "segment", "source": "audience_manager"}]}


def hostile_ws(root: Path, **workspace: object) -> Workspace:
    """A workspace of SPEC §2.1's example, with a catalog and ``[workspace]`` settings."""
    init_workspace(root)
    toml = root / "audtools.toml"
    text = toml.read_text()
    for key, value in workspace.items():
        text, found = re.subn(rf"(?m)^{key} = [^#\n]*", f"{key} = {json.dumps(value)} ", text)
        assert found == 1, key
    toml.write_text(text)
    (root / "drops/import/catalog.json").write_text(json.dumps(CATALOG))
    return Workspace(root)


def deliver(ws: Workspace, content: bytes, name: str = NAME) -> Path:
    """Put a gzip of ``content`` in the drop, settled an hour ago."""
    path = ws.config.import_drop / name
    path.write_bytes(gzip.compress(content, 9) if name.endswith(".gz") else content)
    settled(path)
    return path


# The peak resident size from /proc (VmHWM): ru_maxrss would keep the forking test's own peak.
CHILD = """
import json, re, sys, time
from audtools.importing.flow import import_audience
t = time.perf_counter()
r = import_audience(sys.argv[1], "L", 100, "defaultDataSource", progress=False)
peak = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read())
print(json.dumps({"seconds": time.perf_counter() - t, "rss_mb": int(peak[1]) / 1024, **r.to_json()}))
"""


def import_in_child(ws: Workspace) -> dict:
    """Import in a fresh process: its JSON, its duration and its peak resident memory."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(ws.root)], capture_output=True, text=True, check=True
    )
    result: dict = json.loads(out.stdout.splitlines()[-1])
    return result


def test_invalid_utf8_lines_are_found_in_one_pass(tmp_path: Path) -> None:
    """Item 1: 4 KB of gzip, two million lines ``\\xff``: seconds, not many minutes."""
    ws = hostile_ws(tmp_path / "ws", max_compression_ratio=100000)
    lines = 2 * 1024 * 1024 - 1
    deliver(ws, b"\xff\n" * lines)
    start = time.perf_counter()
    r = import_audience(ws, "L", 100, "defaultDataSource", progress=False)
    assert time.perf_counter() - start < 30
    assert (r.rows_read, r.rows_rejected, r.rejects_kept) == (lines, lines, 100_000)
    rejects = (ws.run_dir(r.run_id or "") / "rejects.csv").read_text().splitlines()
    assert len(rejects) == 100_001
    assert rejects[1] == f"{NAME},1,bad_encoding"
    assert rejects[-1] == f"{NAME},100000,bad_encoding"


def test_rejects_are_streamed_and_capped(tmp_path: Path) -> None:
    """Item 2: 40 KB of gzip of ``x`` lines, 21 million rejects: counted exactly, the first
    ``max_rejects_kept`` listed, in bounded memory (4.4 GB before)."""
    ws = hostile_ws(tmp_path / "ws", max_compression_ratio=100000, max_rejects_kept=1000)
    lines = 21_000_000
    path = deliver(ws, b"x\n" * lines)
    assert path.stat().st_size < 45_000
    r = import_in_child(ws)
    assert (r["rows_read"], r["rows_rejected"], r["rejects_kept"]) == (lines, lines, 1000)
    assert r["rss_mb"] < 600, r
    rejects = (ws.run_dir(r["run_id"]) / "rejects.csv").read_text().splitlines()
    assert rejects[0] == "file,line,reason" and len(rejects) == 1001
    assert rejects[-1] == f"{NAME},1000,bad_syntax"


def test_report_says_when_rejects_were_dropped() -> None:
    from audtools.jobs.report import _dropped

    assert _dropped({"rows_rejected": 5, "rejects_kept": 5}) == ""
    assert "first 2" in _dropped({"rows_rejected": 5, "rejects_kept": 2})


def test_endless_line_is_one_bad_row_in_bounded_memory(tmp_path: Path) -> None:
    """Item 3: a line without a newline is not buffered: over ``max_line_bytes`` it is a
    ``bad_syntax`` row, skipped as its bytes arrive; the rows after it are read."""
    ws = hostile_ws(
        tmp_path / "ws", max_compression_ratio=100000, max_line_bytes=1 << 20
    )
    vid = "1" * 38
    path = ws.config.import_drop / NAME
    with gzip.open(path, "wb", compresslevel=9) as fh:
        for _ in range(300):
            fh.write(b"a" * (1 << 20))
        fh.write(f"\n{vid}\t100\n".encode())
    settled(path)
    r = import_in_child(ws)
    assert (r["rows_read"], r["rows_rejected"], r["members"]) == (2, 1, 1)
    assert r["rss_mb"] < 600, r
    rejects = (ws.run_dir(r["run_id"]) / "rejects.csv").read_text().splitlines()
    assert rejects[1:] == [f"{NAME},1,bad_syntax"]


@pytest.mark.parametrize("end", [b"", b"\n"])
def test_long_lines_anywhere_are_bad_syntax(tmp_path: Path, end: bytes) -> None:
    vid = b"2" * 38
    content = b"x" * 5000 + b"\n" + vid + b"\t7\n" + b"y" * 100 + b"\n" + b"z" * 3000 + end
    path = tmp_path / "f.sync"
    path.write_bytes(content)
    for chunk_bytes in (1, 7, 1000, 1 << 20):
        reader = OutboundReader(
            path, id_rule="visitor_id", chunk_bytes=chunk_bytes, limits=Limits(max_line_bytes=1000)
        )
        rejects = [r for c in reader for r in c.rejects.to_pylist()]
        assert rejects == [
            {"line": 1, "reason": "bad_syntax"},
            {"line": 3, "reason": "bad_syntax"},
            {"line": 4, "reason": "bad_syntax"},
        ]
        assert (reader.rows_total, reader.newline_count) == (4, 3 + len(end))
        assert reader.last_line_open == (end == b"")


def test_ratio_bomb_makes_its_batch_wait(tmp_path: Path) -> None:
    """Item 4: a file that decompresses beyond ``max_compression_ratio`` is never applied, even
    partly: its batch waits with the reason, and memory stays bounded."""
    ws = hostile_ws(tmp_path / "ws")
    vid = b"3" * 38
    deliver(ws, (vid + b"\t100\n") * 5_000_000)  # 215 MB in about 300 KB
    r = import_in_child(ws)
    assert (r["rows_read"], r["members"], r["batches_applied"], r["batches_waiting"]) == (0, 0, 0, 1)
    assert r["rss_mb"] < 1000, r  # the rows staged before the limit is hit, then dropped
    with ws.session() as con:
        reason = con.execute("SELECT reason FROM batch_waits").fetchall()
        state = con.execute("SELECT count(*) FROM segment_state").fetchall()
    assert "max_compression_ratio" in reason[0][0] and state == [(0,)]


def test_uncompressed_size_limit_makes_its_batch_wait(tmp_path: Path) -> None:
    ws = hostile_ws(tmp_path / "ws", max_uncompressed_bytes=1000)
    deliver(ws, b"".join(f"{n:038d}\t100\n".encode() for n in range(100)))
    r = import_audience(ws, "L", 100, "defaultDataSource", progress=False)
    assert (r.rows_read, r.members, r.batches_waiting) == (0, 0, 1)
    with ws.session() as con:
        reason = con.execute("SELECT reason FROM batch_waits").fetchall()[0][0]
    assert "max_uncompressed_bytes" in reason


def test_info_of_identifier_characters_is_read_in_linear_time(tmp_path: Path) -> None:
    """Item 5: 150 KB of identifier characters in an ``.info`` hung ``batches``: read at once."""
    text = "{" + "a" * 150_000
    start = time.perf_counter()
    assert quote_keys(text) == text
    with pytest.raises(Exception, match="not a valid transfer-control file"):
        parse_info(text.encode(), "x.info")
    with pytest.raises(Exception, match="not a valid transfer-control file"):
        parse_info(("{" + "a " * 75_000 + ":").encode(), "x.info")
    assert time.perf_counter() - start < 2


def test_info_of_identifier_characters_in_a_drop(tmp_path: Path) -> None:
    from audtools.importing.state import batch_report

    ws = hostile_ws(tmp_path / "ws")
    info = ws.config.import_drop / "ftp_46390_14016_iter_1764460800000.info"
    info.write_text("{" + "a" * 150_000)
    settled(info)
    start = time.perf_counter()
    with ws.session() as con:
        report = batch_report(ws.config, con)
    assert time.perf_counter() - start < 5
    assert report["data_sources"]["defaultDataSource"]["waiting"]  # type: ignore[index]


# -- any junk: every row counted, in time linear in its size --------------------------------------


def independent_rows(content: bytes, max_line: int) -> int:
    """Rows as SPEC §4.1 defines them, counted without the parser: lines after a BOM, ending at
    LF (one CR before it removed), blank ones (spaces and tabs only) left out, unless longer than
    ``max_line`` bytes (a rejected row, SPEC §2.1)."""
    lines = content.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return sum(
        1 for line in lines if len(line) > max_line or line.removesuffix(b"\r").strip(b" \t")
    )


JUNK = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from([b"\n", b"\t", b",", b" ", b"\r\n", b"\xff", b"%3A", b"\xef\xbb\xbf",
                         b"1" * 38, b"123", b"\x00", b"\xc3\xa9", b"\xe2\x80"]),
    ),
    max_size=60,
).map(b"".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=JUNK, rule=st.sampled_from(["visitor_id", "declared_id"]),
       separator=st.sampled_from([",", ";", "|", " "]))
def test_junk_is_counted_row_by_row(tmp_path: Path, junk: bytes, rule: str, separator: str) -> None:
    path = tmp_path / "junk.sync"
    path.write_bytes(junk)
    reader = OutboundReader(path, id_rule=rule, separator=separator, chunk_bytes=7,  # type: ignore[arg-type]
                            limits=Limits(max_line_bytes=50))
    chunks = list(reader)
    pair_lines = {line for c in chunks for line in c.pairs["line"].to_pylist()}
    rejects = [r for c in chunks for r in c.rejects.to_pylist()]
    assert reader.rows_total == independent_rows(junk, 50)
    assert reader.rejected_total == len(rejects) == reader.rows_total - len(pair_lines)
    assert reader.newline_count == junk.count(b"\n")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=JUNK.filter(lambda b: len(b) > 0))
def test_junk_costs_time_linear_in_its_size(tmp_path: Path, junk: bytes) -> None:
    """Junk repeated to 8 MB is read at a rate no worse than a generous bound per byte, with its
    lines capped, so that no pattern costs more per byte than another by orders of magnitude."""
    path = tmp_path / "junk.sync"
    path.write_bytes(junk * max(1, (8 << 20) // len(junk)))
    start = time.perf_counter()
    reader = OutboundReader(path, id_rule="declared_id", limits=Limits(max_line_bytes=1 << 20))
    for _ in reader:
        pass
    seconds = time.perf_counter() - start
    assert seconds < 20, (seconds, junk)
    assert reader.rows_total == independent_rows(path.read_bytes(), 1 << 20)
