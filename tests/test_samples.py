"""audtools samples: a new workspace filled from a fixed seed, with counts known by construction."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import re
import stat
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from audtools.config import DEFAULT_CONFIG, load_config
from audtools.errors import AudtoolsError
from audtools.formats.catalog import read_catalog
from audtools.samples import create_samples
from audtools.workspace import init_workspace

SAMPLES = Path(__file__).parent.parent / "data" / "samples"
HIGH_VALUE, ENGAGED = 10603117, 10603118


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One sample workspace, shared by the tests that only read it."""
    ws = init_workspace(tmp_path_factory.mktemp("samples") / "ws")
    return ws.root, create_samples(ws)


def _samples_json(root: Path) -> dict[str, Any]:
    return json.loads((root / "samples.json").read_text(encoding="utf-8"))


def _content(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def test_writes_every_file(made: tuple[Path, dict[str, Any]]) -> None:
    root, summary = made
    assert summary["profiles"] == 3000
    assert summary["batches"] == 7
    assert summary["samples_json"] == str(root / "samples.json")
    for name in summary["files"]:
        assert (root / name).is_file(), name
    drop = root / "drops" / "import"
    for name in (
        "catalog.json",
        "ftp_56390_24016_full_1764288000000-1.sync.gz",
        "ftp_56390_24016_full_1764288000000-2.sync",
        "ftp_56390_24016_full_1764288000000.info",
        "ftp_56390_24016_iter_1764374400000.sync",
        # The seconds Format: a 10-digit timestamp, then the split number.
        "ftp_56395_24021_full_1764288000001.sync.gz",
        "ftp_56395_24021_full_1764288000002.sync",
        "ftp_56395_24021_full_1764288000.info",
    ):
        assert (drop / name).is_file(), name
    for dpid in (24017, 24018, 24019, 24020):
        assert list(drop.glob(f"ftp_*_{dpid}_full_*.sync*")), dpid
    assert (root / "samples" / "profiles.csv").is_file()
    assert (root / "samples" / "visitors.csv").is_file()


def test_the_seconds_format_parts_start_with_a_header(made: tuple[Path, dict[str, Any]]) -> None:
    root, _ = made
    drop = root / "drops" / "import"
    for name in ("ftp_56395_24021_full_1764288000001.sync.gz", "ftp_56395_24021_full_1764288000002.sync"):
        assert _content(drop / name).startswith(b"ID\tSEGMENTS\tREMOVED\n"), name


def test_catalog_has_segments_a_trait_and_a_rule(made: tuple[Path, dict[str, Any]]) -> None:
    root, _ = made
    catalog = read_catalog(root / "drops" / "import")
    types = Counter(entry.type for entry in catalog)
    sources = Counter(entry.source for entry in catalog if entry.type == "segment")
    assert types["trait"] == 1 and types["rule"] == 1 and types["segment"] >= 6
    assert sources["analytics"] == 1 and sources["people_core_service"] == 1
    assert sources["audience_manager"] >= 4
    sids = {entry.sid for entry in catalog if entry.type == "segment"}
    assert {imp["shared_audience"] for imp in _samples_json(root)["imports"]} <= sids


def test_two_runs_write_the_same_bytes(
    made: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    root, summary = made
    other = init_workspace(tmp_path / "again")
    again = create_samples(other)
    assert again["files"] == summary["files"]
    for name in summary["files"] + ["audtools.toml"]:
        assert (root / name).read_bytes() == (other.root / name).read_bytes(), name


def test_key_file_is_private(made: tuple[Path, dict[str, Any]]) -> None:
    root, _ = made
    key = root / "keys" / "demo.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert re.fullmatch(r"[0-9a-f]{64}", key.read_text(encoding="ascii"))
    key_text = key.read_text(encoding="ascii")
    for name in ("audtools.toml", "samples.json"):
        assert key_text not in (root / name).read_text(encoding="utf-8")


def test_config_keeps_its_comments_and_gains_the_sources(
    made: tuple[Path, dict[str, Any]],
) -> None:
    root, _ = made
    text = (root / "audtools.toml").read_text(encoding="utf-8")
    assert text.startswith(DEFAULT_CONFIG)
    config = load_config(root)
    sources = config.data_sources
    assert list(sources)[:3] == ["defaultDataSource", "crmDeclaredId", "emailEncrypted"]
    visitor = sources["samplesVisitorId"]
    assert (visitor.dpid, visitor.destination_id, visitor.reconciliation) == (
        24016,
        56390,
        "visitor_id",
    )
    crm = sources["samplesCrmId"]
    assert (crm.dpid, crm.reconciliation_key, crm.hash) == (24017, "crm_id", "none")
    sha = sources["samplesEmailSha256"]
    assert (sha.dpid, sha.reconciliation_key, sha.hash) == (24018, "email", "sha256")
    email = sources["samplesEmailAes"]
    assert (email.dpid, email.channel, email.encryption, email.encoding, email.key_file) == (
        24019,
        "email",
        "aes-cbc",
        "base64",
        "keys/demo.key",
    )
    sms = sources["samplesSmsAes"]
    assert (sms.dpid, sms.reconciliation_key, sms.channel, sms.encoding) == (
        24020,
        "mobile_phone",
        "sms",
        "hex",
    )
    app = sources["samplesAppVisitorId"]
    assert (app.dpid, app.outbound_header_rows, app.name_template.text, app.name_template.timestamp) == (
        24021,
        1,
        "<SYNC_TYPE>_<ORDER_ID>_<MASTER_DPID>_<SYNC_MODE>_<TIMESTAMP>",
        "seconds",
    )
    assert email.iv is not None and sms.iv is not None and email.iv != sms.iv
    assert email.label == "Samples - Email - Encrypted Declared ID"


def test_profiles_are_loaded(made: tuple[Path, dict[str, Any]]) -> None:
    from audtools.workspace import Workspace

    root, summary = made
    with Workspace(root).session() as con:
        profiles = con.execute("SELECT count(*) FROM profiles").fetchone()
        visitors = con.execute("SELECT count(*) FROM visitors").fetchone()
    assert profiles == (3000,)
    assert visitors == (summary["visitors"],)


def test_refused_on_a_workspace_with_profiles(made: tuple[Path, dict[str, Any]]) -> None:
    root, _ = made
    before = {name: (root / name).read_bytes() for name in ("audtools.toml", "samples.json")}
    with pytest.raises(AudtoolsError) as info:
        create_samples(root)
    assert info.value.code == "workspace_not_empty"
    assert {name: (root / name).read_bytes() for name in before} == before


def _check_info(info: Path) -> int:
    """Check every ``Files`` entry of a ``.info`` against its file; return the entries checked."""
    doc = json.loads(info.read_text(encoding="utf-8"))
    for entry in doc["Files"]:
        path = info.parent / entry["FileName"]
        stored = path.read_bytes()
        assert entry["FileByteSize"] == len(stored), path.name
        assert entry["md5"] == hashlib.md5(stored).hexdigest(), path.name
        assert entry["FileLineCount"] == _content(path).count(b"\n"), path.name
        assert path.name.startswith(info.name.removesuffix(".info")), path.name
    return len(doc["Files"])


def test_info_files_agree_with_their_files(made: tuple[Path, dict[str, Any]]) -> None:
    root, _ = made
    drop = root / "drops" / "import"
    infos = sorted(drop.glob("*.info"))
    assert len(infos) == 7
    assert sum(_check_info(info) for info in infos) == 10
    listed = {e["FileName"] for i in infos for e in json.loads(i.read_text())["Files"]}
    assert listed == {p.name for p in drop.glob("*.sync*")}
    assert gzip.decompress((drop / "ftp_56390_24016_full_1764288000000-1.sync.gz").read_bytes())


def test_visitor_ids_are_38_digits(made: tuple[Path, dict[str, Any]]) -> None:
    root, _ = made
    with open(root / "samples" / "visitors.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(re.fullmatch(r"[0-9]{38}", r["visitor_id"]) for r in rows)
    assert any(r["visitor_id"].startswith("0") for r in rows)
    owners = Counter(r["visitor_id"] for r in rows)
    assert sorted(owners.values())[-2:] == [1, 2]  # exactly one visitor ID has two profiles
    per_profile = Counter(r["profile_id"] for r in rows)
    assert {1, 2} <= set(per_profile.values())
    assert len(per_profile) < 3000  # some profiles have none


def _parse_batch(paths: list[Path]) -> tuple[list[tuple[str, set[int], set[int]]], int, int]:
    """A plain reading of SPEC §4.1 for tab-separated visitor-ID rows: (rows, read, rejected)."""
    rows: list[tuple[str, set[int], set[int]]] = []
    read = rejected = 0
    for path in paths:
        for line in _content(path).decode("utf-8").split("\n")[:-1]:
            if not line.strip(" \t"):
                continue
            read += 1
            cols = line.split("\t")
            tokens = [[t.strip() for t in c.split(",") if t.strip()] for c in cols[1:]]
            if (
                len(cols) not in (2, 3)
                or not re.fullmatch(r"[0-9]{38}", cols[0])
                or not any(tokens)
                or not all(re.fullmatch(r"[0-9]{1,18}", t) for ts in tokens for t in ts)
            ):
                rejected += 1
                continue
            added = {int(t) for t in tokens[0]}
            removed = {int(t) for t in tokens[1]} if len(tokens) > 1 else set()
            rows.append((cols[0], added, removed))
    return rows, read, rejected


def test_visitor_members_recomputed_from_the_files(made: tuple[Path, dict[str, Any]]) -> None:
    root, _ = made
    drop = root / "drops" / "import"
    full, read_full, rej_full = _parse_batch(
        sorted(drop.glob("ftp_56390_24016_full_1764288000000-*.sync*"))
    )
    changes, read_iter, rej_iter = _parse_batch([drop / "ftp_56390_24016_iter_1764374400000.sync"])
    state: dict[str, set[int]] = {}
    for ident, added, _ in full:
        state.setdefault(ident, set()).update(added)
    removals: dict[str, set[int]] = {}
    additions: dict[str, set[int]] = {}
    for ident, added, removed in changes:  # per ID: remove all, then add all
        removals.setdefault(ident, set()).update(removed)
        additions.setdefault(ident, set()).update(added)
    for ident in removals:
        state[ident] = (state.get(ident, set()) - removals[ident]) | additions[ident]
    doc = _samples_json(root)
    expected = {
        (imp["data_source"], imp["shared_audience"]): imp["expected"] for imp in doc["imports"]
    }
    for sid in (HIGH_VALUE, ENGAGED):
        members = sum(1 for sids in state.values() if sid in sids)
        assert members == expected[("samplesVisitorId", sid)]["members"], sid
    assert doc["batches"]["samplesVisitorId"] == {
        "rows_read": read_full + read_iter,
        "rows_rejected": rej_full + rej_iter,
        "batches": 2,
    }
    assert rej_full >= 3 and rej_iter >= 3


def test_expected_counts_are_consistent(made: tuple[Path, dict[str, Any]]) -> None:
    root, _ = made
    doc = _samples_json(root)
    imports = doc["imports"]
    assert len(imports) == 9
    assert len({imp["label"] for imp in imports}) == 9
    forced = [imp for imp in imports if imp["force_reconciliation"]]
    assert {imp["data_source"] for imp in forced} == {"samplesEmailAes", "samplesSmsAes"}
    for imp in imports:
        e = imp["expected"]
        assert e["unmatched"] == e["members"] - e["undecryptable"] - e["matched"] > 0
        assert 0 < e["matched"] < e["members"]
        if e["type"] == "file":
            assert e["profiles"] == 0 and 0 < e["addresses"] <= e["members"] - e["undecryptable"]
        else:
            assert e["addresses"] == 0 and e["profiles"] > 0
        if imp["data_source"] in ("samplesEmailAes", "samplesSmsAes"):
            assert e["undecryptable"] > 0
            assert e["type"] == ("experience_cloud" if imp["force_reconciliation"] else "file")
        else:
            assert e["undecryptable"] == 0 and e["type"] == "experience_cloud"
    for totals in doc["batches"].values():
        assert totals["rows_rejected"] >= 3 and totals["rows_read"] > totals["rows_rejected"]


def test_another_seed_gives_other_data(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    create_samples(ws, seed=7)
    assert (ws.root / "samples.json").is_file()
    assert _samples_json(ws.root)["seed"] == 7


# -- data/samples: the static examples of the README ---------------------------------------------


def test_static_samples_fit_the_default_config() -> None:
    names = {p.name for p in SAMPLES.iterdir()}
    assert {
        "README.md",
        "profiles.csv",
        "visitors.csv",
        "catalog.json",
        "ftp_46390_14016_full_1764288000000-1.sync",
        "ftp_46390_14016_full_1764288000000-2.sync.gz",
        "ftp_46390_14016_full_1764288000000.info",
    } <= names
    assert _check_info(SAMPLES / "ftp_46390_14016_full_1764288000000.info") == 2
    read_catalog(SAMPLES)
    with open(SAMPLES / "profiles.csv", newline="", encoding="utf-8") as f:
        profiles = list(csv.DictReader(f))
    assert "crm_id" in profiles[0] and len({p["profile_id"] for p in profiles}) == len(profiles)
    with open(SAMPLES / "visitors.csv", newline="", encoding="utf-8") as f:
        visitors = list(csv.DictReader(f))
    ids = {p["profile_id"] for p in profiles}
    assert all(v["profile_id"] in ids for v in visitors)
    assert all(re.fullmatch(r"[0-9]{38}", v["visitor_id"]) for v in visitors)
    readme = (SAMPLES / "README.md").read_text(encoding="utf-8")
    for name in names - {"README.md"}:
        assert name in readme, name
