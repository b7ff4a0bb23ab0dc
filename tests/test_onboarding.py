"""AAM onboarding files (SPEC §6.5): names, rows, splits, gzip, unique names, speed."""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from audtools.errors import RefusedError
from audtools.formats import onboarding as ob


def test_names() -> None:
    assert ob.file_name(14016, 1764359400) == "ftp_dpm_14016_1764359400.sync"
    assert ob.file_name(14016, 1764359400, 2) == "ftp_dpm_14016_1764359400.sync.2"
    assert ob.file_name(14016, 1764359400, gzip=True) == "ftp_dpm_14016_1764359400.sync.gz"
    assert ob.file_name(14016, 1764359400, 3, gzip=True) == "ftp_dpm_14016_1764359400.sync.3.gz"
    assert ob.part_names(1, 1764359400, 1) == ["ftp_dpm_1_1764359400.sync"]
    assert ob.part_names(1, 1764359400, 2) == [
        "ftp_dpm_1_1764359400.sync.1",
        "ftp_dpm_1_1764359400.sync.2",
    ]


def test_parse_name() -> None:
    n = ob.parse_name("ftp_dpm_14016_1764359400.sync.2.gz")
    assert n is not None and (n.dpid, n.timestamp, n.part, n.gzip) == (14016, 1764359400, 2, True)
    assert n.root == "ftp_dpm_14016_1764359400"
    assert ob.parse_name("ftp_dpm_14016_1764359400.sync").part is None  # type: ignore[union-attr]
    for bad in (
        "ftp_dpm_1_176435940.sync",
        "ftp_dpm_1_1764359400.sync.0",
        "x.sync",
        ".audtools-r-part1.tmp",
    ):
        assert ob.parse_name(bad) is None


def test_temporary_names_do_not_look_like_onboarding_files() -> None:
    name = ob.temp_name("20261128T120000Z-abcdef", 2)
    assert name.startswith(".") and "ftp_dpm" not in name and ".sync" not in name
    assert ob.parse_name(name) is None


@given(
    st.lists(st.integers(min_value=1, max_value=60), max_size=200),
    st.integers(min_value=80, max_value=400),
)
def test_plan_parts_is_greedy_ordered_and_within_the_limit(lengths: list[int], limit: int) -> None:
    sid = 123
    rows = [n + len(ob.row_suffix(sid)) for n in lengths]
    plans = ob.plan_parts(np.array(lengths, dtype=np.int64), sid, limit)
    if not lengths:
        assert plans == []
        return
    assert plans[0].start == 0 and plans[-1].stop == len(lengths)
    for a, b in zip(plans, plans[1:], strict=False):
        assert a.stop == b.start
    for p in plans:
        assert p.nbytes == sum(rows[p.start : p.stop]) <= limit
        if p.stop < len(rows):  # the next row would not have fitted
            assert p.nbytes + rows[p.stop] > limit


def test_a_row_longer_than_the_limit_is_refused() -> None:
    with pytest.raises(RefusedError) as info:
        ob.plan_parts(np.array([38]), 10603117, 40)
    assert info.value.code == "bad_max_file_bytes"


def ids(n: int, start: int = 0) -> list[str]:
    return [f"{i:038d}" for i in range(start, start + n)]


def write(
    tmp: Path, values: list[str], sid: int, limit: int, *, gz: bool = False, chunk: int = 3
) -> list[Path]:
    arr = pa.array(values, pa.string())
    plans = ob.plan_parts(np.array([len(v.encode()) for v in values]), sid, limit)
    paths = [tmp / f"part{i}" for i in range(1, len(plans) + 1)]
    blocks = [arr.slice(i, chunk) for i in range(0, len(values), chunk)]
    ob.write_parts(blocks, sid, plans, creator(paths), gzip=gz)
    return paths


def creator(paths: list[Path]) -> Callable[[int], BinaryIO]:
    """What a drop's ``create`` gives: part N (from 1) as a new file, never replacing one."""
    return lambda n: open(paths[n - 1], "xb")  # noqa: SIM115 - write_parts closes it


def test_rows_are_id_tab_d_sid_lf(tmp_path: Path) -> None:
    (path,) = write(tmp_path, ["a", "ÿé", ids(1)[0]], 42, 10**9)
    assert path.read_bytes() == f"a\td_sid=42\nÿé\td_sid=42\n{ids(1)[0]}\td_sid=42\n".encode()
    assert ob.read_rows(path.read_bytes()) == [("a", 42), ("ÿé", 42), (ids(1)[0], 42)]


def test_split_never_cuts_a_row_and_keeps_every_row_once(tmp_path: Path) -> None:
    values = ids(10)
    row = 38 + len("\td_sid=7\n")
    paths = write(tmp_path, values, 7, 3 * row + 5, chunk=4)
    assert len(paths) == 4
    sizes = [p.stat().st_size for p in paths]
    assert sizes == [3 * row, 3 * row, 3 * row, row]
    back = [r for p in paths for r in ob.read_rows(p.read_bytes())]
    assert back == [(v, 7) for v in values]
    for p in paths:
        assert p.read_bytes().endswith(b"\n")


def test_gzip_parts_decompress_to_the_rows(tmp_path: Path) -> None:
    values = ids(7)
    row = 38 + len("\td_sid=7\n")
    paths = write(tmp_path, values, 7, 4 * row, gz=True)
    assert len(paths) == 2
    content = b"".join(gzip.decompress(p.read_bytes()) for p in paths)
    assert content == "".join(f"{v}\td_sid=7\n" for v in values).encode()


def test_write_parts_never_replaces_a_file(tmp_path: Path) -> None:
    (tmp_path / "part1").write_text("keep")
    with pytest.raises(FileExistsError):
        write(tmp_path, ids(2), 1, 10**9)
    assert (tmp_path / "part1").read_text() == "keep"


def test_write_parts_checks_the_plan(tmp_path: Path) -> None:
    plans = ob.plan_parts(np.array([38, 38]), 1, 10**9)
    with pytest.raises(ValueError, match="fewer IDs"):
        ob.write_parts([pa.array(ids(1))], 1, plans, creator([tmp_path / "p1", tmp_path / "p2"]))


def test_free_timestamp_moves_on_until_every_name_is_free() -> None:
    ts = 1764359400
    names: set[str] = set()
    assert ob.free_timestamp(names, 14016, ts, 1) == ts
    names.add(ob.file_name(14016, ts))
    assert ob.free_timestamp(names, 14016, ts, 1) == ts + 1
    # A split or gzip file of the same root takes the timestamp too.
    names.add(ob.file_name(14016, ts + 1, 2, gzip=True))
    assert ob.free_timestamp(names, 14016, ts, 2) == ts + 2
    # Another data source's files do not.
    names.add(ob.file_name(14017, ts + 2))
    assert ob.free_timestamp(names, 14016, ts, 3) == ts + 2


@pytest.mark.slow
def test_a_million_rows_are_written_in_a_second_or_so(tmp_path: Path) -> None:
    values = pa.array(
        np.char.zfill(np.arange(1_000_000).astype(str), 38).astype(object), pa.string()
    )
    lengths = np.full(len(values), 38)
    plans = ob.plan_parts(lengths, 10603117, 20_000_000)
    paths = [tmp_path / f"p{i}" for i in range(len(plans))]
    started = time.perf_counter()
    ob.write_parts(
        [values.slice(i, 262_144) for i in range(0, len(values), 262_144)],
        10603117,
        plans,
        creator(paths),
    )
    elapsed = time.perf_counter() - started
    assert len(paths) == 3
    assert sum(p.stat().st_size for p in paths) == 1_000_000 * (38 + len("\td_sid=10603117\n"))
    assert elapsed < 5, elapsed


@pytest.mark.parametrize("gz", [False, True])
def test_read_ids_streams_back_exactly_what_was_written(tmp_path: Path, gz: bool) -> None:
    values = ["NULL", "\ufeffstarts-with-a-bom", 'has "quotes", commas', "null", "", "é"] + ids(50)
    values = [v for v in values if v]  # an empty ID is never written
    row = max(len(v.encode()) for v in values) + len("\td_sid=9\n")
    paths = write(tmp_path, values, 9, 20 * row, gz=gz)
    back = [v for p in paths for v in read_back(p, 9, block_bytes=100)]
    assert back == values


def read_back(path: Path, sid: int, **kwargs: int) -> list[str]:
    """The IDs of a file through :func:`read_ids`, from a binary file object as a drop opens it."""
    with open(path, "rb") as fh:
        return [v for block in ob.read_ids(fh, sid, **kwargs) for v in block.to_pylist()]


def test_read_ids_refuses_a_row_of_another_segment(tmp_path: Path) -> None:
    (path,) = write(tmp_path, ids(3), 9, 10**9)
    with pytest.raises(ValueError, match="d_sid=8"):
        read_back(path, 8)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="newline"):
        read_back(path, 9)


# -- target_data_owner (SPEC §6.5): AAM's global data sources ----------------------------------


def test_names_with_a_target_data_owner() -> None:
    from audtools.formats import onboarding as ob

    name = ob.file_name(20915, 1764359400, 2, gzip=True, owner=14016)
    assert name == "ftp_dpm_20915_14016_1764359400.sync.2.gz"
    parsed = ob.parse_name(name)
    assert parsed is not None
    assert (parsed.dpid, parsed.owner, parsed.timestamp, parsed.part) == (20915, 14016, 1764359400, 2)
    assert parsed.root == "ftp_dpm_20915_14016_1764359400"
    plain = ob.parse_name("ftp_dpm_20915_1764359400.sync")
    assert plain is not None and (plain.dpid, plain.owner) == (20915, None)
    taken = {"ftp_dpm_20915_14016_1764359400.sync"}
    assert ob.free_timestamp(taken, 20915, 1764359400, 1, owner=14016) == 1764359401
    assert ob.free_timestamp(taken, 20915, 1764359400, 1) == 1764359400


def _global_workspace(tmp_path: Path, owner: str) -> Path:
    from audtools.workspace import init_workspace

    root = tmp_path / "ws"
    init_workspace(root)
    with open(root / "audtools.toml", "a", encoding="utf-8") as fh:
        fh.write(f'\n[[data_sources]]\nid = "ios"\ndpid = 20915\nreconciliation = "visitor_id"\n{owner}')
    return root


def test_check_warns_when_a_global_data_source_has_no_owner(tmp_path: Path) -> None:
    from audtools.checks import check_workspace

    warnings = check_workspace(_global_workspace(tmp_path, ""))["warnings"]
    assert any("ios" in w and "target_data_owner" in w for w in warnings)


def test_export_names_the_target_data_owner(tmp_path: Path) -> None:
    from audtools.checks import check_workspace
    from audtools.exporting.flow import export_audience
    from audtools.profiles.loading import load_profiles

    root = _global_workspace(tmp_path, "target_data_owner = 14016\n")
    assert not any("target_data_owner" in w for w in check_workspace(root)["warnings"])
    (tmp_path / "p.csv").write_text("profile_id\np1\n")
    (tmp_path / "v.csv").write_text(f"profile_id,visitor_id\np1,{'9' * 38}\n")
    load_profiles(root, tmp_path / "p.csv", visitors=tmp_path / "v.csv")
    r = export_audience(root, segment_name="Apps", data_source="ios", progress=False)
    assert len(r.files) == 1 and r.files[0].startswith("ftp_dpm_20915_14016_")
    assert (root / "drops/export" / r.files[0]).read_bytes() == f"{'9' * 38}\td_sid=1\n".encode()
