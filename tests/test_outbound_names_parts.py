"""A drop's names read with the reuse of earlier readings (``NameMatcher.sole``) read exactly as
each name read on its own, and batches get their parts in part order whatever the listing order.

``NameMatcher.sole`` remembers the text before the timestamp of a name it read whole, and reads
later names with the same text from the rest only (the timestamp, ``-N``, the extension): every
name here, right, wrong or ambiguous, must read as a fresh matcher and :meth:`NameMatcher.claim`
read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import settled
from hypothesis import given, settings
from hypothesis import strategies as st

from audtools.config import WorkspaceConfig, parse_config
from audtools.config.templates import DEFAULT_TEMPLATE, compile_template
from audtools.drops import import_drop
from audtools.formats.outbound_names import NameMatcher, OutboundName
from audtools.importing.scan import group_drop
from audtools.workspace import Workspace

BOTH = "<SYNC_TYPE>_<ORDER_ID>_<DPID>_<MASTER_DPID>_<SYNC_MODE>_<TIMESTAMP>"


def config(*sources: dict[str, Any]) -> WorkspaceConfig:
    listed = [{"id": f"s{i}", "reconciliation": "visitor_id", **s} for i, s in enumerate(sources)]
    return parse_config({"data_sources": listed}, Path("/tmp"))


def check_reads_alike(cfg: WorkspaceConfig, names: list[str]) -> NameMatcher:
    """Read ``names`` in order with one matcher, each as a fresh matcher and claim() read it."""
    sources = list(cfg.data_sources.values())
    shared = NameMatcher(sources)
    for name in names:
        got = shared.sole(name)
        assert got == NameMatcher(sources).sole(name), name
        if got is not None:
            assert type(got[1]) is OutboundName
            claim = NameMatcher(sources).claim(name)
            assert (claim.readings, claim.problems) == ({got[0]: got[1]}, {}), name
    return shared


DEFAULTS = [
    {"dpid": 14016},
    {"dpid": 14017, "outbound_timestamp": "seconds"},
    {"dpid": 14018, "outbound_timestamp": "milliseconds"},
]
PREFIX = "ftp_46390_14016_iter_"
NAMES = [
    PREFIX + "1700000000000-1.sync.gz",  # read whole, its prefix remembered
    PREFIX + "1700000000000-2.sync.gz",  # the next part
    PREFIX + "1700000001000-1.SYNC.GZ",  # another batch, another case
    PREFIX + "1700000001000-01.sync.zip",
    PREFIX + "1700000001000-99999999999999999999.Sync",
    PREFIX + "1700000001-3.sync",  # 10 digits: seconds under auto
    PREFIX + "17000000010-1.sync",  # 11 digits: a problem
    PREFIX + "1700000001000001-1.sync",  # 16 digits and a dash: a problem
    PREFIX + "1700000001000001.sync",  # 13 digits and a split of 3
    PREFIX + "1700000001000.sync",
    PREFIX + "-1.sync",
    PREFIX + "1700000001000-1-2.sync",
    PREFIX + "1700000001000-x.sync",
    PREFIX + "1700000001000-.sync",
    PREFIX + "1700000001000-1.2.sync",
    PREFIX + "1700000001000-1.sync.gz.gz",
    PREFIX + "1700000001000-1.sync.bz2",
    PREFIX + "1700000001000-1.syncgz",
    PREFIX + "1700000001000-\uff11.sync",  # a full-width digit
    PREFIX + "1700000001000-\u00b2.sync",  # a superscript digit
    PREFIX + "\u0663700000001000-1.sync",  # an Arabic-Indic digit
    PREFIX + "1700000001000-1.\u017fync",  # a long s, which (?i) reads as s
    PREFIX + "1700000001000-1.SYNC.\u212a",
    "ftp_46390_14016_full_1700000001000-1.sync",
    "FTP_46390_14016_iter_1700000001000-1.sync",
    "ftp_46390_14016_ITER_1700000001000-1.sync",
    "ftp_46390_14016_my_alias_iter_1700000001000-1.sync",
    "ftp_46390_14016_my_alias_iter_1700000001000-2.sync",
    "ftp_46390_14016_7_iter_1700000001000-2.sync",
    "ftp_46390_140160_iter_1700000001000-1.sync",
    "ftp_46390_99999_iter_1700000001000-1.sync",
    "ftp_46390_14017_iter_1700000001-1.sync",  # seconds
    "ftp_46390_14017_iter_1700000001-2.sync",
    "ftp_46390_14017_iter_1700000001000-1.sync",  # 13 digits under seconds: a problem
    "ftp_46390_14018_iter_1700000001000-1.sync",  # milliseconds
    "ftp_46390_14018_iter_1700000001-1.sync",  # 10 digits under milliseconds: a problem
    "ftp_46390_14018_iter_1700000001000-2.sync",
]


def test_later_names_read_as_each_read_whole() -> None:
    shared = check_reads_alike(config(*DEFAULTS), NAMES)
    # The reuse was taken (else this test would read every name whole and prove nothing).
    assert PREFIX in shared._prefixes


@pytest.mark.parametrize(
    "template",
    [
        BOTH,  # two template starts: nothing is read by sole()
        "<SYNC_TYPE>-<ORDER_ID>-<MASTER_DPID>-<SYNC_MODE>-<TIMESTAMP>",  # '-' in the literal text
        "<SYNC_TYPE>_<MASTER_DPID>_<SYNC_MODE><TIMESTAMP>",  # no text before the timestamp
        "<SYNC_TYPE>_<MASTER_DPID>_<SYNC_MODE>_x1<TIMESTAMP>",  # a digit before the timestamp
        "<SYNC_TYPE>_<MASTER_DPID>_<SYNC_MODE>.<TIMESTAMP>",  # '.' in the literal text
        "<SYNC_TYPE>_<MASTER_DPID>_<SYNC_MODE>_<TIMESTAMP>_x",  # text after the timestamp
        "<SYNC_TYPE>_<MASTER_DPID>_<SYNC_MODE>_<TIMESTAMP>SPLITNUM",
        '<SYNC_TYPE>_<MASTER_DPID>_<SYNC_MODE>_<TIMESTAMP;format="yyyyMMddHHmmss">',
        "<SYNC_TYPE>_<ORDER_ID>_<MASTER_DPID>_<PID_ALIAS>_<SYNC_MODE>_<TIMESTAMP>",
        "s<SYNC_TYPE>_<ORDER_ID>_<MASTER_DPID>[_<PID_ALIAS>]_<SYNC_MODE>_<TIMESTAMP>",
    ],
)
def test_other_templates_read_alike(template: str) -> None:
    cfg = config({"dpid": 14016, "outbound_name": template}, {"dpid": 14017})
    names = [
        *NAMES,
        "ftp-46390-14016-iter-1700000001000-1.sync", "ftp-46390-14016-iter-1700000001000-2.sync",
        "ftp_14016_iter1700000001000-1.sync", "ftp_14016_iter1700000002000-1.sync",
        "ftp_14016_iter_x11700000001000-1.sync", "ftp_14016_iter_x11700000002000-2.sync",
        "ftp_14016_iter.1700000001000-1.sync", "ftp_14016_iter.1700000002000-2.sync",
        "ftp_14016_iter_1700000001000_x-1.sync", "ftp_14016_iter_1700000001000_x-2.sync",
        "ftp_14016_iter_20240102030405-1.sync", "ftp_14016_iter_20240102030406-2.sync",
        "ftp_46390_14016_a_iter_1700000001000-1.sync", "ftp_46390_14016_b_iter_1700000001000-2.sync",
        "sftp_46390_14016_iter_1700000001000-1.sync", "sftp_46390_14016_iter_1700000001000-2.sync",
    ]
    check_reads_alike(cfg, names)


def test_only_plain_templates_read_by_prefix() -> None:
    assert compile_template(DEFAULT_TEMPLATE, "auto", dpid=1).reads_by_prefix
    assert compile_template("x<MASTER_DPID>_<SYNC_MODE>_<TIMESTAMP>.sync", "seconds", dpid=1).reads_by_prefix
    for template in ["<MASTER_DPID>-<SYNC_MODE>_<TIMESTAMP>", "<MASTER_DPID>_<SYNC_MODE><TIMESTAMP>",
                     "<MASTER_DPID>_<SYNC_MODE>_1<TIMESTAMP>", "<MASTER_DPID>_<SYNC_MODE>_<TIMESTAMP>_",
                     "<MASTER_DPID>_<SYNC_MODE>[_x]_<TIMESTAMP>SPLITNUM"]:
        assert not compile_template(template, "auto", dpid=1).reads_by_prefix, template
    assert not compile_template(DEFAULT_TEMPLATE, "yyyyMMddHHmmss", dpid=1).reads_by_prefix


_PIECES = ["ftp", "FTP", "s3", "_", "-", ".", "46390", "14016", "14017", "1", "iter", "full", "a", "x_y",
           "1700000001000", "1700000001", "17000000010001", "0", "sync", "SYNC", "gz", "Gz", "zip", "\uff11"]
_TEMPLATES = [DEFAULT_TEMPLATE, "<SYNC_TYPE>_<MASTER_DPID>_<SYNC_MODE>_<TIMESTAMP>",
              "<SYNC_TYPE>-<ORDER_ID>-<MASTER_DPID>-<SYNC_MODE>-<TIMESTAMP>",
              "<SYNC_TYPE>_<ORDER_ID>_<MASTER_DPID>_<PID_ALIAS>_<SYNC_MODE>_<TIMESTAMP>"]
_names = st.lists(st.sampled_from(_PIECES), min_size=1, max_size=14).map("".join)
_parts = st.tuples(
    st.sampled_from(["ftp_46390_14016_", "s3_1_14017_", "ftp_46390_14016_a_b_", "ftp-46390-14016-", "ftp_14016_"]),
    st.sampled_from(["iter_", "full_", "iter-", "ITER_", "iter"]),
    st.sampled_from(["1700000001000", "1700000002000", "1700000001", "17000000010001", "170000000100", ""]),
    st.sampled_from(["-1", "-2", "-12", "-01", "", "-", "-x", "001", "-1-2", "-\uff11"]),
    st.sampled_from([".sync", ".sync.gz", ".SYNC.ZIP", ".sync.bz2", ".Sync.Gz", ""]),
).map("".join)


@settings(max_examples=300, deadline=None)
@given(
    template=st.sampled_from(_TEMPLATES),
    timestamp=st.sampled_from(["auto", "milliseconds", "seconds"]),
    names=st.lists(st.one_of(_parts, _parts, _names), min_size=1, max_size=30),
)
def test_any_names_in_any_order_read_alike(template: str, timestamp: str, names: list[str]) -> None:
    cfg = config({"dpid": 14016, "outbound_name": template, "outbound_timestamp": timestamp},
                 {"dpid": 14017, "outbound_timestamp": timestamp})
    check_reads_alike(cfg, names)


def test_parts_listed_out_of_order_come_in_part_order(workspace: Workspace) -> None:
    root = "ftp_46390_14016_iter_1700000001000"
    split = [f"{root}-{n}.sync" for n in (1, 2, 3, 10, 11, 12)]  # listed 1, 10, 11, 12, 2, 3
    mixed = ["ftp_46390_14017_iter_1700000001000.sync", "ftp_46390_14017_iter_1700000001000-2.sync",
             "ftp_46390_14017_iter_1700000001000-1.sync.gz", "ftp_46390_14017_iter_1700000001000-1.sync"]
    in_order = [f"ftp_46390_14018_iter_1700000001000-{n}.sync" for n in (1, 2, 3)]
    for name in split + mixed + in_order:
        path = workspace.config.import_drop / name
        path.write_text("x\n")
        settled(path)
    by_source, ignored = group_drop(workspace.config, import_drop(workspace.config))
    assert ignored == []
    got = {b.root: b.names for batches in by_source.values() for b in batches.values()}
    assert got == {
        root: split,
        "ftp_46390_14017_iter_1700000001000": [mixed[0], mixed[3], mixed[2], mixed[1]],
        "ftp_46390_14018_iter_1700000001000": in_order,
    }
