"""Outbound file names read by each data source's Format (SPEC §4.1, issue 12).

The examples are Adobe's documented names (the outbound macro page, the transfer-control page),
written here from the documentation's text.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audtools.config import parse_config
from audtools.config.templates import DEFAULT_TEMPLATE, TemplateError, compile_template
from audtools.errors import ConfigError
from audtools.formats.outbound_info import InfoEntry, line_count_agrees, parse_info, quote_keys
from audtools.formats.outbound_names import NameMatcher, OutboundName, looks_like_batch, read_name

BOTH = "<SYNC_TYPE>_<ORDER_ID>_<DPID>_<MASTER_DPID>_<SYNC_MODE>_<TIMESTAMP>"


def ms(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp()) * 1000


def read(template: str, timestamp: str | None, dpid: int, name: str) -> OutboundName | str | None:
    return read_name(compile_template(template, timestamp, dpid=dpid), name)


# --- Issue 12, item 1: split parts after a 10-digit timestamp --------------------------------


def test_split_digits_after_a_10_digit_timestamp_under_seconds() -> None:
    names = [f"s3_123456_9999_full_1566906141{n:03d}.sync" for n in (1, 2, 3)]
    got = [read(DEFAULT_TEMPLATE, "seconds", 9999, n) for n in names]
    assert all(isinstance(g, OutboundName) for g in got)
    assert {g.root for g in got} == {"s3_123456_9999_full_1566906141"}  # type: ignore[union-attr]
    assert [g.split for g in got] == [1, 2, 3]  # type: ignore[union-attr]
    assert {g.timestamp_ms for g in got} == {1566906141000}  # type: ignore[union-attr]


def test_the_same_names_under_auto_are_13_digit_milliseconds() -> None:
    got = read(DEFAULT_TEMPLATE, None, 9999, "s3_123456_9999_full_1566906141001.sync")
    assert isinstance(got, OutboundName)
    assert got.timestamp_ms == 1566906141001 and got.split is None


# --- Item 3: a formatted timestamp ------------------------------------------------------------


def test_formatted_timestamp_with_split_digits() -> None:
    got = read(DEFAULT_TEMPLATE, "yyyyMMddHHmmss", 888, "ftp_215_888_full_20191227103000001.sync")
    assert isinstance(got, OutboundName)
    assert got.timestamp_ms == ms(2019, 12, 27, 10, 30, 0)
    assert got.split == 1 and got.root == "ftp_215_888_full_20191227103000"


def test_formatted_timestamp_under_auto_is_milliseconds_and_a_split() -> None:
    # 17 digits: 13 of milliseconds (a time in 2033), then the split 0001.
    got = read(DEFAULT_TEMPLATE, None, 888, "ftp_215_888_full_20191227103000001.sync")
    assert isinstance(got, OutboundName)
    assert got.timestamp_ms == 2019122710300 and got.split == 1


def test_formatted_timestamp_without_split_under_auto_says_why() -> None:
    got = read(DEFAULT_TEMPLATE, None, 888, "ftp_215_888_full_20191227103000.sync")
    assert got == "timestamp of 14 digits: set outbound_timestamp"


@pytest.mark.parametrize("fmt", ["YYYYMMDDhhmmss", "yyyy-MM-dd'T'HH", "yyyy-MM-ddTHH.mm.ss"])
def test_timestamp_format_spellings(fmt: str) -> None:
    if "'" in fmt:
        with pytest.raises(TemplateError):
            compile_template(DEFAULT_TEMPLATE, fmt, dpid=1)
        return
    t = compile_template(DEFAULT_TEMPLATE, fmt, dpid=1)
    text = fmt.replace("YYYY", "2020").replace("yyyy", "2020").replace("MM", "02").replace(
        "DD", "29").replace("dd", "29").replace("hh", "23").replace("HH", "23").replace(
        "mm", "59").replace("ss", "58")
    got = read_name(t, f"ftp_1_1_iter_{text}.sync")
    assert isinstance(got, OutboundName) and got.timestamp_ms == ms(2020, 2, 29, 23, 59, 58)


def test_a_date_that_does_not_exist_is_a_bad_timestamp() -> None:
    assert read(DEFAULT_TEMPLATE, "yyyyMMddHHmmss", 1, "ftp_1_1_iter_20190230103000.sync") == "bad timestamp"


# --- Item 4: DPID and MASTER_DPID ------------------------------------------------------------


def test_dpid_and_master_dpid_route_to_the_master() -> None:
    name = "ftp_215_888_20915_iter_1449756724.sync"
    got = read(BOTH, None, 20915, name)
    assert isinstance(got, OutboundName)
    assert got.master_dpid == 20915 and got.mode == "iter" and got.timestamp_ms == 1449756724000
    assert read(BOTH, None, 888, name) is None


def test_two_data_sources_claiming_one_name() -> None:
    cfg = parse_config(
        {
            "data_sources": [
                {"id": "global", "dpid": 20915, "reconciliation": "visitor_id", "outbound_name": BOTH},
                {"id": "plain", "dpid": 888, "reconciliation": "visitor_id"},
            ]
        },
        Path("/tmp"),
    )
    claim = NameMatcher(cfg.data_sources.values()).claim("ftp_215_888_20915_iter_1449756724.sync")
    # The default template reads 888 with alias 20915: both claim it.
    assert set(claim.readings) == {"global", "plain"}


def test_longest_alias_wins() -> None:
    got = read(DEFAULT_TEMPLATE, None, 8, "ftp_7_8_a_full_b_iter_1486140844000.sync")
    assert isinstance(got, OutboundName) and got.alias == "a_full_b" and got.mode == "iter"


# --- Item 6: compressed forms, cases, ignored names -------------------------------------------


@pytest.mark.parametrize(
    ("name", "compression"),
    [("ftp_1_2_iter_1486140844000.sync.zip", "zip"), ("FTP_1_2_iter_1486140844000.SYNC.GZ", "gz"),
     ("ftp_1_2_iter_1486140844000.Sync", None)],
)
def test_extensions_in_any_case(name: str, compression: str | None) -> None:
    got = read(DEFAULT_TEMPLATE, None, 2, name)
    assert isinstance(got, OutboundName) and got.compression == compression


def test_sync_mode_is_lower_case() -> None:
    assert read(DEFAULT_TEMPLATE, None, 2, "ftp_1_2_FULL_1486140844000.sync") is None


def test_inbound_and_id_sync_files_are_not_batches() -> None:
    assert not looks_like_batch("ftp_dpm_21_1486140844.sync")
    assert not looks_like_batch("C2C_ID_1_2.sync")
    assert not looks_like_batch("adobe_id_1.info")
    assert looks_like_batch("whatever.INFO")


def test_why_a_name_is_ignored() -> None:
    cfg = parse_config(
        {"data_sources": [{"id": "a", "dpid": 5, "reconciliation": "visitor_id", "outbound_name": BOTH}]},
        Path("/tmp"),
    )
    matcher = NameMatcher(cfg.data_sources.values())
    assert matcher.why_ignored("ftp_1_77_iter_1486140844000.sync") == ("no data source with DPID 77", [])
    reason, concerned = matcher.why_ignored("ftp_1_5_iter_1486140844000.sync")
    assert concerned == ["a"] and "outbound_name" in reason


# --- Templates ------------------------------------------------------------------------------


def test_template_with_splitnum_and_literal_text() -> None:
    t = compile_template("<SYNC_TYPE>_<MASTER_DPID>_<SYNC_MODE>_<TIMESTAMP>_part<SPLITNUM>.sync", "seconds", dpid=3)
    got = read_name(t, "s3_3_full_1566906141_part2.sync.gz")
    assert isinstance(got, OutboundName) and got.split == 2 and got.root == "s3_3_full_1566906141_part"
    bare = compile_template("<SYNC_TYPE>_<MASTER_DPID>_<SYNC_MODE>_<TIMESTAMP>-SPLITNUM", "seconds", dpid=3)
    got = read_name(bare, "s3_3_full_1566906141-4.sync")
    assert isinstance(got, OutboundName) and got.split == 4


@pytest.mark.parametrize(
    ("template", "timestamp", "field", "words"),
    [
        ("<SYNC_TYPE>_<ORDER_ID>_<SYNC_MODE>_<TIMESTAMP>", None, "outbound_name", "DPID"),
        ("<SYNC_TYPE>_<MASTER_DPID>_<TIMESTAMP>", None, "outbound_name", "SYNC_MODE"),
        ("<SYNC_TYPE>_<MASTER_DPID>_<SYNC_MODE>", None, "outbound_name", "TIMESTAMP"),
        ("<MASTER_DPID>_<SYNC_MODE>_<TIMESTAMP>.csv", None, "outbound_name", ".csv"),
        ('<MASTER_DPID>_<SYNC_MODE>_<TIMESTAMP; format="yyyyMMddHHmmss">', "seconds", "outbound_timestamp", "agree"),
        (None, "yyyyMMddQQ", "outbound_timestamp", "not a field"),
        ("<MASTER_DPID>_<SYNC_MODE>_<TIMESTAMP>_<FOO>", None, "outbound_name", "unknown macro"),
    ],
)
def test_bad_templates_are_configuration_errors(
    template: str | None, timestamp: str | None, field: str, words: str
) -> None:
    src: dict[str, object] = {"id": "a", "dpid": 5, "reconciliation": "visitor_id"}
    if template is not None:
        src["outbound_name"] = template
    if timestamp is not None:
        src["outbound_timestamp"] = timestamp
    with pytest.raises(ConfigError) as info:
        parse_config({"data_sources": [src]}, Path("/tmp"), "audtools.toml")
    text = str(info.value)
    assert "audtools.toml" in text and "data_sources[1] (a)" in text and field in text and words in text


def test_template_with_format_macro_agrees_with_the_setting() -> None:
    t = compile_template('<SYNC_TYPE>_<MASTER_DPID>_<SYNC_MODE>_<TIMESTAMP; format="yyyyMMddHHmmss">', None, dpid=4)
    assert t.timestamp == "yyyyMMddHHmmss"


# --- .info (item 2, 5) -----------------------------------------------------------------------


def test_unquoted_keys_are_quoted_linearly() -> None:
    text = '{Files: [{FileName: "a:b.sync", FileLineCount: 2, FileByteSize: 9, x: true}]}'
    assert quote_keys(text).startswith('{"Files": [{"FileName": "a:b.sync"')
    entries = parse_info(text.encode(), "a.info")
    assert entries == [InfoEntry("a:b.sync", 2, 9, None)]
    # A long run of words without a colon stays linear.
    assert len(quote_keys("a " * 200_000)) == 400_000


def test_an_info_over_one_mib_is_too_large() -> None:
    from audtools.errors import InputError

    with pytest.raises(InputError, match="too large"):
        parse_info(b" " * (2 << 20), "big.info")


def test_file_line_count_accepts_both_counts() -> None:
    # Adobe's sample files end without a final newline: 2 lines, 1 newline.
    entry = InfoEntry("x.sync", 2, 10, None)
    assert line_count_agrees(entry, newlines=1, last_line_open=True)
    assert line_count_agrees(InfoEntry("x.sync", 1, 10, None), newlines=1, last_line_open=True)
    assert not line_count_agrees(entry, newlines=1, last_line_open=False)


# --- Any name AAM writes by a template reads back ----------------------------------------------

_TEMPLATES = [
    DEFAULT_TEMPLATE,
    BOTH,
    "<SYNC_TYPE>_<ORDER_ID>_<DPID>_<SYNC_MODE>_<TIMESTAMP>",
    "<SYNC_TYPE>_<MASTER_DPID>_<PID_ALIAS>_<SYNC_MODE>_<TIMESTAMP>.sync",
    "seg-<MASTER_DPID>-<SYNC_MODE>-<TIMESTAMP>",
]
_TIMESTAMPS = ["auto", "milliseconds", "seconds", "yyyyMMddHHmmss", "yyyy-MM-dd_HH.mm.ss"]


def _render(template: str, values: dict[str, str]) -> str:
    out = template.removesuffix(".sync")
    if "[_<PID_ALIAS>]" in out:
        out = out.replace("[_<PID_ALIAS>]", f"_{values['PID_ALIAS']}" if values["PID_ALIAS"] else "")
    for key, value in values.items():
        out = out.replace(f"<{key}>", value)
    return out


@settings(max_examples=300, deadline=None)
@given(
    template=st.sampled_from(_TEMPLATES),
    timestamp=st.sampled_from(_TIMESTAMPS),
    sync=st.sampled_from(["ftp", "s3", "http", "FTP", "S3"]),
    order=st.integers(0, 10**7),
    dpid=st.integers(1, 10**6),
    other=st.integers(1, 10**6),
    alias=st.one_of(st.just(""), st.from_regex(r"[A-Za-z0-9_]{1,12}", fullmatch=True)),
    mode=st.sampled_from(["full", "iter"]),
    when=st.datetimes(dt.datetime(2001, 9, 9, 2, 0), dt.datetime(2286, 1, 1)),
    split=st.one_of(st.none(), st.tuples(st.sampled_from(["dash", "digits"]), st.integers(1, 999))),
    ext=st.sampled_from([".sync", ".sync.gz", ".sync.zip", ".SYNC.GZ"]),
)
def test_names_written_by_a_template_read_back(
    template: str, timestamp: str, sync: str, order: int, dpid: int, other: int, alias: str,
    mode: str, when: dt.datetime, split: tuple[str, int] | None, ext: str,
) -> None:
    when = when.replace(microsecond=when.microsecond // 1000 * 1000, tzinfo=dt.UTC)
    if timestamp in ("seconds", "yyyyMMddHHmmss", "yyyy-MM-dd_HH.mm.ss"):
        when = when.replace(microsecond=0)
    stamp_ms = int(when.timestamp() * 1000)
    stamp = {
        "milliseconds": str(stamp_ms),
        "seconds": str(stamp_ms // 1000),
        "yyyyMMddHHmmss": when.strftime("%Y%m%d%H%M%S"),
        "yyyy-MM-dd_HH.mm.ss": when.strftime("%Y-%m-%d_%H.%M.%S"),
    }.get(timestamp, str(stamp_ms))
    if "<PID_ALIAS>" in template and "[" not in template and not alias:
        alias = "a"
    owner = "MASTER_DPID" if "MASTER_DPID" in template else "DPID"
    values = {
        "SYNC_TYPE": sync, "ORDER_ID": str(order), "DPID": str(other), "MASTER_DPID": str(other),
        "PID_ALIAS": alias, "SYNC_MODE": mode, "TIMESTAMP": stamp,
    }
    values[owner] = str(dpid)
    root = _render(template, values)
    tail = "" if split is None else (f"-{split[1]}" if split[0] == "dash" else f"{split[1]:03d}")
    got = read(template, timestamp, dpid, root + tail + ext)
    assert isinstance(got, OutboundName), got
    assert (got.master_dpid, got.mode, got.timestamp_ms, got.root) == (dpid, mode, stamp_ms, root)
    assert got.split == (None if split is None else split[1])
