"""Export (SPEC §6): refusals, targeting, IDs, ledger, files, transitions, runs, crash safety and
round trips through the import."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import settled
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from audtools.errors import AudtoolsError
from audtools.exporting import flow as exporting
from audtools.exporting import publish
from audtools.exporting.flow import export_audience, save_audience
from audtools.exporting.targeting import query
from audtools.formats import onboarding
from audtools.profiles.loading import load_profiles, load_visitors
from audtools.workspace import Workspace, init_workspace
from audtools.workspace import database as store

KEY = "00112233445566778899aabbccddeeff" * 2
KEY_HEX = "0f" * 16
IV_EMAIL = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
IV_HEX = bytes.fromhex("0f0e0d0c0b0a09080706050403020100")

EXTRA_CONFIG = """
[[operators]]
name = "native_op"
login = "native"

[[data_sources]]
id = "emailSha256"
label = "Email - SHA256"
dpid = 14019
destination_id = 46393
reconciliation = "declared_id"
reconciliation_key = "email"
hash = "sha256"

[[data_sources]]
id = "emailHex"
label = "Email - Encrypted, hex"
dpid = 14020
destination_id = 46394
reconciliation = "declared_id"
reconciliation_key = "email"
channel = "email"
encryption = "aes-cbc"
key_env = "AUDTOOLS_TEST_KEY_HEX"
iv = "0f0e0d0c0b0a09080706050403020100"
encoding = "hex"
"""

CATALOG = {
    "segments": [
        {
            "sid": 10603117,
            "name": "High value visitors",
            "type": "segment",
            "source": "audience_manager",
        },
        {"sid": 10603118, "name": "Engaged readers", "type": "segment", "source": "analytics"},
        {"sid": 555, "name": "Loyalty tier", "type": "trait", "source": "audience_manager"},
    ]
}
NEW_SID = 10603119

PROFILES = """profile_id,age,crm_id,email,country
p01,34,C001, Alice@Example.com ,FR
p02,17,C002,bob@example.com,DE
p03,45,,carol@example.com,FR
p04,,C004,,US
p05,52,C005,dave@example.org,FR
p06,29,C006,,DE
p07,61,C007,EVE@example.com,US
p08,38,C008,frank@example.com,FR
"""


def vid(n: int) -> str:
    return f"{n:038d}"


VISITORS = {
    "p01": [vid(1), vid(2)],
    "p02": [vid(3)],
    "p03": [vid(4)],
    "p05": [vid(5)],
    "p07": [vid(6)],
    "p08": [vid(7)],
}
EMAILS = {
    "p01": "alice@example.com",
    "p02": "bob@example.com",
    "p03": "carol@example.com",
    "p05": "dave@example.org",
    "p07": "eve@example.com",
    "p08": "frank@example.com",
}
ADULTS = ["p01", "p03", "p05", "p06", "p07", "p08"]  # age >= 18; p04's age is NULL


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("AUDTOOLS_KEY_EMAIL", KEY)
    monkeypatch.setenv("AUDTOOLS_TEST_KEY_HEX", KEY_HEX)
    root = tmp_path / "ws"
    init_workspace(root)
    with open(root / "audtools.toml", "a", encoding="utf-8") as fh:
        fh.write(EXTRA_CONFIG)
    (root / "drops/import/catalog.json").write_text(json.dumps(CATALOG))
    ws = Workspace(root)
    (tmp_path / "profiles.csv").write_text(PROFILES)
    rows = "".join(f"{p},{v}\n" for p, vs in VISITORS.items() for v in vs)
    (tmp_path / "visitors.csv").write_text("profile_id,visitor_id\n" + rows)
    load_profiles(ws, tmp_path / "profiles.csv", visitors=tmp_path / "visitors.csv")
    return ws


def drop_rows(ws: Workspace) -> list[tuple[str, int]]:
    """Every row of every onboarding file of the export drop."""
    out = []
    for name in sorted(os.listdir(ws.config.export_drop)):
        if onboarding.parse_name(name):
            out += onboarding.read_rows((ws.config.export_drop / name).read_bytes())
    return out


def drop_names(ws: Workspace) -> list[str]:
    return sorted(os.listdir(ws.config.export_drop))


def db(ws: Workspace, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with ws.session() as con:
        return con.execute(sql, params or []).fetchall()


def snapshot(ws: Workspace) -> tuple[Any, ...]:
    runs = sorted(os.listdir(ws.runs_dir)) if ws.runs_dir.exists() else []
    counts = tuple(
        db(ws, f"SELECT count(*) FROM {t}")[0][0]
        for t in ("export_ledger", "shared_audiences", "runs", "pending_exports")
    )
    return drop_names(ws), runs, counts


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def decrypt(cipher: bytes, key: str, iv: bytes) -> str:
    d = Cipher(algorithms.AES(bytes.fromhex(key)), modes.CBC(iv)).decryptor()
    padded = d.update(cipher) + d.finalize()
    u = padding.PKCS7(128).unpadder()
    return (u.update(padded) + u.finalize()).decode()


def export(ws: Workspace, **kwargs: Any) -> exporting.ExportResult:
    kwargs.setdefault("data_source", "defaultDataSource")
    if "shared_audience" not in kwargs:
        kwargs.setdefault("segment_name", "New segment")
    return export_audience(ws, **kwargs)


# -- refusals -----------------------------------------------------------------------------------

REFUSALS = [
    ({"operator": "native_op"}, "not_ims"),
    ({"operator": "nobody"}, "unknown_operator"),
    ({"data_source": "nope"}, "unknown_data_source"),
    ({"segment_name": None, "shared_audience": "999"}, "unknown_shared_audience"),
    ({"segment_name": None, "shared_audience": "No such name"}, "unknown_shared_audience"),
    ({"segment_name": None, "shared_audience": "Loyalty tier"}, "not_a_segment"),
    ({"segment_name": None, "shared_audience": 555}, "not_a_segment"),
    ({"segment_name": "High value visitors"}, "segment_name_in_use"),
    ({"segment_name": "Loyalty tier"}, "segment_name_in_use"),
    ({"segment_name": ""}, "bad_segment_name"),
    ({"segment_name": "12345"}, "bad_segment_name"),
    ({"segment_name": "A", "shared_audience": "High value visitors"}, "bad_arguments"),
    ({"segment_name": None}, "bad_arguments"),
    ({"where": "1=1; DROP TABLE profiles"}, "bad_condition"),
    ({"where": "1=1; CREATE TABLE pwned AS SELECT 1"}, "bad_condition"),
    ({"where": "profile_id IN (SELECT profile_id FROM visitors)"}, "bad_condition"),
    ({"where": "EXISTS (SELECT 1 FROM visitors)"}, "bad_condition"),
    ({"where": "(SELECT 1) = 1"}, "bad_condition"),
    ({"where": "read_csv('x') IS NOT NULL"}, "bad_condition"),
    ({"where": "age > 1 -- comment"}, "bad_condition"),
    ({"where": "age > 1) UNION SELECT * FROM visitors WHERE (true"}, "bad_condition"),
    ({"where": "agee > 3"}, "bad_condition"),
    ({"where": "age + 1"}, "bad_condition"),
    ({"max_file_bytes": 0}, "bad_max_file_bytes"),
    ({"max_file_bytes": 40}, "bad_max_file_bytes"),  # shorter than one row
    ({"max_file_bytes": 5 * 10**9 + 1}, "bad_max_file_bytes"),  # over AAM's limit
]


@pytest.mark.parametrize(("kwargs", "code"), REFUSALS)
def test_refusals_write_nothing(
    ws: Workspace, tmp_path: Path, kwargs: dict[str, Any], code: str
) -> None:
    before = snapshot(ws)
    out = tmp_path / "out.csv"
    with pytest.raises(AudtoolsError) as info:
        export(ws, outbound_transition=out, complement_transition=tmp_path / "c.csv", **kwargs)
    assert info.value.code == code
    assert "\n" not in info.value.message
    assert snapshot(ws) == before
    assert not out.exists() and not (tmp_path / "c.csv").exists()
    tables = {r[0] for r in db(ws, "SELECT table_name FROM information_schema.tables")}
    assert "profiles" in tables and "pwned" not in tables


def test_transitions_to_one_file_are_refused(ws: Workspace, tmp_path: Path) -> None:
    before = snapshot(ws)
    with pytest.raises(AudtoolsError) as info:
        export(ws, outbound_transition=tmp_path / "t.csv", complement_transition=tmp_path / "t.csv")
    assert info.value.code == "bad_arguments"
    assert snapshot(ws) == before


def test_unknown_column_refusal_names_it(ws: Workspace) -> None:
    with pytest.raises(AudtoolsError, match="'agee'"):
        export(ws, where="agee > 3")


def test_a_segment_name_created_by_an_export_is_in_use(ws: Workspace) -> None:
    export(ws, segment_name="Mine")
    with pytest.raises(AudtoolsError) as info:
        export(ws, segment_name="Mine")
    assert info.value.code == "segment_name_in_use"


@pytest.mark.parametrize(
    ("value", "code"), [(None, "missing_key"), ("not-hex", "bad_key"), ("00ff", "bad_key")]
)
def test_key_refusals(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, value: str | None, code: str
) -> None:
    if value is None:
        monkeypatch.delenv("AUDTOOLS_KEY_EMAIL")
    else:
        monkeypatch.setenv("AUDTOOLS_KEY_EMAIL", value)
    before = snapshot(ws)
    with pytest.raises(AudtoolsError) as info:
        export(ws, data_source="emailEncrypted")
    assert info.value.code == code
    assert KEY not in info.value.message
    assert snapshot(ws) == before


# -- what an export does ------------------------------------------------------------------------


JSON_KEYS = [
    "run_id",
    "shared_audience",
    "data_source",
    "profiles_targeted",
    "profiles_exported",
    "profiles_without_id",
    "ids_exported",
    "ids_already_shared",
    "ids_too_long",
    "files",
    "available_from",
    "available_to",
    "dry_run",
]


def test_export_to_a_new_segment(ws: Workspace, tmp_path: Path) -> None:
    out, comp = tmp_path / "t" / "out.csv", tmp_path / "comp.csv"
    r = export(
        ws,
        segment_name="Adults",
        where="age >= 18",
        outbound_transition=out,
        complement_transition=comp,
    )
    data = r.to_json()
    assert list(data) == JSON_KEYS
    assert data["shared_audience"] == {"sid": NEW_SID, "name": "Adults", "created": True}
    assert (data["profiles_targeted"], data["profiles_exported"], data["profiles_without_id"]) == (
        6,
        5,
        1,
    )
    assert (data["ids_exported"], data["ids_already_shared"]) == (6, 0)
    assert data["dry_run"] is False and data["data_source"] == "defaultDataSource"
    (name,) = data["files"]
    assert onboarding.parse_name(name) is not None and name.startswith("ftp_dpm_14016_")
    assert drop_names(ws) == [name]
    expected = sorted(v for p in ADULTS for v in VISITORS.get(p, []))
    assert sorted(drop_rows(ws)) == [(v, NEW_SID) for v in expected]
    # Transitions, as files and DataFrames.
    pairs = sorted((p, v) for p in ADULTS for v in VISITORS.get(p, []))
    assert out.read_text() == "profile_id,id\n" + "".join(f"{p},{v}\n" for p, v in pairs)
    assert comp.read_text() == "profile_id\np06\n"
    assert list(r.outbound_transition.itertuples(index=False, name=None)) == pairs
    assert list(r.complement_transition["profile_id"]) == ["p06"]
    assert list(r.outbound_transition.columns) == ["profile_id", "id"]
    # The run: result.json and the runs table, with the sync window 24 h to 36 h.
    result = json.loads((ws.run_dir(r.run_id) / "result.json").read_text())
    assert {k: result[k] for k in JSON_KEYS} == data
    assert (result["status"], result["kind"]) == ("succeeded", "export")
    started = dt.datetime.strptime(result["started_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert dt.datetime.strptime(
        data["available_from"], "%Y-%m-%dT%H:%M:%SZ"
    ) - started == dt.timedelta(hours=24)
    assert dt.datetime.strptime(
        data["available_to"], "%Y-%m-%dT%H:%M:%SZ"
    ) - started == dt.timedelta(hours=36)
    assert result["finished_at"] >= result["started_at"]
    assert db(ws, "SELECT kind, status FROM runs WHERE run_id = ?", [r.run_id]) == [
        ("export", "succeeded")
    ]
    # The new shared audience is in the catalog.
    from audtools.shared_audiences import catalog

    entry = [e for e in catalog(ws) if e.sid == NEW_SID]
    assert [(e.name, e.type, e.source) for e in entry] == [("Adults", "segment", "campaign")]
    assert db(ws, "SELECT count(*) FROM pending_exports")[0][0] == 0


def test_new_sid_is_the_largest_known_plus_one(ws: Workspace) -> None:
    assert export(ws, segment_name="One").shared_audience.sid == NEW_SID
    assert export(ws, segment_name="Two").shared_audience.sid == NEW_SID + 1
    assert export(ws, shared_audience="Two").shared_audience.sid == NEW_SID + 1
    assert export(ws, shared_audience=str(NEW_SID)).shared_audience.name == "One"


def test_reexport_writes_only_new_ids_and_nothing_new_writes_no_file(
    ws: Workspace, tmp_path: Path
) -> None:
    first = export(ws, segment_name="S", where="age >= 18")
    (tmp_path / "more.csv").write_text(f"profile_id,visitor_id\np04,{vid(8)}\n")
    load_visitors(ws, tmp_path / "more.csv")
    second = export(ws, shared_audience="S", outbound_transition=tmp_path / "o.csv")
    assert (second.ids_exported, second.ids_already_shared) == (2, 6)
    assert second.profiles_exported == 7 and second.profiles_without_id == 1
    (name,) = second.files
    assert sorted(onboarding.read_rows((ws.config.export_drop / name).read_bytes())) == [
        (vid(3), NEW_SID),
        (vid(8), NEW_SID),
    ]
    # The outbound transition holds every ID of each exported profile, new or already shared.
    assert len(pd.read_csv(tmp_path / "o.csv", dtype=str)) == 8
    before = drop_names(ws)
    third = export(ws, shared_audience="S")
    assert (third.ids_exported, third.ids_already_shared, third.files) == (0, 8, [])
    assert drop_names(ws) == before
    assert (
        json.loads((ws.run_dir(third.run_id) / "result.json").read_text())["status"] == "succeeded"
    )
    rows = drop_rows(ws)
    assert len(rows) == len(set(rows)) == 8
    assert first.files[0] in before


def test_the_ledger_is_per_shared_audience_and_data_source(ws: Workspace) -> None:
    a = export(ws, shared_audience="High value visitors")
    b = export(ws, shared_audience=10603118)
    c = export(ws, shared_audience="High value visitors", data_source="crmDeclaredId")
    assert a.ids_exported == b.ids_exported == 7
    assert c.ids_exported == 7  # C001..C008 but p03 has none
    assert export(ws, shared_audience="High value visitors").ids_exported == 0
    assert (
        export(ws, shared_audience="High value visitors", data_source="crmDeclaredId").ids_exported
        == 0
    )


def test_an_id_shared_by_several_profiles_is_written_once(ws: Workspace, tmp_path: Path) -> None:
    (tmp_path / "more.csv").write_text(f"profile_id,visitor_id\np04,{vid(1)}\np06,{vid(1)}\n")
    load_visitors(ws, tmp_path / "more.csv")
    r = export(ws)
    assert r.ids_exported == 7 and r.profiles_exported == 8
    assert sorted(drop_rows(ws)) == [(vid(n), NEW_SID) for n in range(1, 8)]
    out = r.outbound_transition
    assert sorted(out[out["id"] == vid(1)]["profile_id"]) == ["p01", "p04", "p06"]


def test_dry_run_counts_and_writes_nothing(ws: Workspace, tmp_path: Path) -> None:
    before = snapshot(ws)
    r = export(ws, where="age >= 18", dry_run=True, outbound_transition=tmp_path / "o.csv")
    data = r.to_json()
    assert data["dry_run"] is True and data["run_id"] is None and data["files"] == []
    assert (data["profiles_targeted"], data["profiles_exported"], data["ids_exported"]) == (6, 5, 6)
    assert len(r.outbound_transition) == 6
    assert snapshot(ws) == before
    assert not (tmp_path / "o.csv").exists()


def test_declared_id_sources(ws: Workspace) -> None:
    sid_of = {}
    for source in ("crmDeclaredId", "emailSha256", "emailEncrypted", "emailHex"):
        r = export(ws, data_source=source, segment_name=f"S {source}")
        sid_of[source] = r.shared_audience.sid
        rows = [i for f in r.files for i, _ in onboarding.read_rows((ws.config.export_drop / f).read_bytes())]
        if source == "crmDeclaredId":
            assert sorted(rows) == ["C001", "C002", "C004", "C005", "C006", "C007", "C008"]
            assert r.profiles_without_id == 1
        elif source == "emailSha256":
            assert sorted(rows) == sorted(sha(e) for e in EMAILS.values())
            assert r.profiles_without_id == 2
        elif source == "emailEncrypted":
            import base64

            assert sorted(decrypt(base64.b64decode(i), KEY, IV_EMAIL) for i in rows) == sorted(
                EMAILS.values()
            )
        else:
            assert all(i == i.lower() for i in rows)
            assert sorted(decrypt(bytes.fromhex(i), KEY_HEX, IV_HEX) for i in rows) == sorted(
                EMAILS.values()
            )
        # Deterministic: a re-export finds every ID in the ledger.
        again = export(ws, data_source=source, shared_audience=sid_of[source])
        assert again.ids_exported == 0 and again.ids_already_shared == len(rows)


@pytest.mark.parametrize("source", ["crmDeclaredId", "emailSha256", "emailEncrypted"])
def test_a_declared_id_shared_by_two_profiles_is_written_once(
    ws: Workspace, tmp_path: Path, source: str
) -> None:
    """Profiles sharing a key make the derived-ID cache non-unique: the export deduplicates."""
    plain = export(ws, data_source=source, segment_name="Before", dry_run=True)
    (tmp_path / "twin.csv").write_text("profile_id,crm_id,email\np09,C001,ALICE@example.com\n")
    load_profiles(ws, tmp_path / "twin.csv")
    r = export(ws, data_source=source, segment_name=f"Twins {source}")
    rows = [i for f in r.files for i, _ in onboarding.read_rows((ws.config.export_drop / f).read_bytes())]
    assert len(rows) == len(set(rows)) == plain.ids_exported
    assert r.profiles_exported == plain.profiles_exported + 1
    assert r.ids_exported == plain.ids_exported


def test_gzip_and_split(ws: Workspace) -> None:
    row = 38 + len(f"\td_sid={NEW_SID}\n")
    r = export(ws, gzip=True, max_file_bytes=3 * row)
    assert len(r.files) == 3
    assert [onboarding.parse_name(f).part for f in r.files] == [1, 2, 3]  # type: ignore[union-attr]
    assert all(f.endswith(".gz") for f in r.files)
    assert sorted(drop_rows(ws)) == sorted((v, NEW_SID) for vs in VISITORS.values() for v in vs)
    one = export(ws, segment_name="Other", gzip=True)
    (name,) = one.files
    assert name.endswith(".sync.gz") and onboarding.parse_name(name).part is None  # type: ignore[union-attr]


def test_a_taken_name_moves_the_timestamp_on(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    moment = dt.datetime(2026, 11, 28, 19, 50, tzinfo=dt.UTC)
    monkeypatch.setattr(exporting, "now_utc", lambda: moment)
    ts = int(moment.timestamp())
    taken = ws.config.export_drop / onboarding.file_name(14016, ts)
    taken.write_text("someone else's file\n")
    r = export(ws)
    assert r.files == [onboarding.file_name(14016, ts + 1)]
    assert taken.read_text() == "someone else's file\n"
    # A second export in the same second moves on again; a split export needs every part free.
    (ws.config.export_drop / onboarding.file_name(14016, ts + 2, 2)).write_text("x")
    row = 38 + len(f"\td_sid={NEW_SID + 1}\n")
    r2 = export(ws, segment_name="Again", max_file_bytes=4 * row)
    assert r2.files == onboarding.part_names(14016, ts + 3, 2)


def test_targeting_api_and_save_audience(ws: Workspace) -> None:
    fr = query(ws, "country = 'FR'")
    adults = query(ws, "age >= 18")
    r = save_audience(
        ws,
        targeting=fr - adults | query(ws, "crm_id = 'C007'"),
        segment_name="T",
        data_source="defaultDataSource",
    )
    # Every FR profile is an adult, so FR minus adults is nobody; plus p07.
    assert r.profiles_targeted == 1 and r.ids_exported == 1
    assert drop_rows(ws) == [(vid(6), NEW_SID)]
    r2 = export(ws, shared_audience="T", where=fr & adults)
    assert r2.profiles_targeted == 4


# -- crash safety -------------------------------------------------------------------------------


class Crash(BaseException):
    """A simulated crash: nothing of the export's own cleanup runs."""


CRASH_POINTS = [
    "after_pending",
    "after_write_part_1",
    "after_write_part_2",
    "after_write_transitions",
    "after_written",
    "after_rename_part_1",
    "after_rename_part_2",
    "after_renames",
    "after_commit",
    "after_result",
]
ROLLED_FORWARD = {
    "after_rename_part_2",
    "after_renames",
    "after_commit",
    "after_result",
}
ALL_VISITOR_IDS = sorted(v for vs in VISITORS.values() for v in vs)
TWO_PARTS = 4 * (38 + len(f"\td_sid={NEW_SID}\n"))


def crash_at(monkeypatch: pytest.MonkeyPatch, point: str | None) -> None:
    def hook(name: str) -> None:
        if name == point:
            raise Crash(name)

    monkeypatch.setattr(publish, "_crash_point", hook)


def check_clean(ws: Workspace) -> None:
    """No temporary or half file anywhere; nothing pending."""
    for name in drop_names(ws):
        assert onboarding.parse_name(name) is not None, name
    assert db(ws, "SELECT count(*) FROM pending_exports")[0][0] == 0


def check_exactly_once(ws: Workspace, sid: int, expected: list[str]) -> None:
    rows = drop_rows(ws)
    assert sorted(i for i, _ in rows) == expected  # none lost, none twice
    assert {s for _, s in rows} == {sid}
    ledger = db(ws, "SELECT id FROM export_ledger WHERE sid = ? ORDER BY id", [sid])
    assert [r[0] for r in ledger] == expected


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_settle_and_rerun(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, point: str
) -> None:
    out = tmp_path / "out.csv"
    crash_at(monkeypatch, point)
    with pytest.raises(Crash):
        export(ws, segment_name="Crashy", max_file_bytes=TWO_PARTS, outbound_transition=out)
    (run_id,) = [r[0] for r in db_raw(ws, "SELECT run_id FROM pending_exports")]
    crash_at(monkeypatch, None)
    with ws.session():  # the next command settles the interrupted export first
        pass
    check_clean(ws)
    result = json.loads((ws.run_dir(run_id) / "result.json").read_text())
    if point in ROLLED_FORWARD:
        assert result["status"] == "succeeded" and len(result["files"]) == 2
        assert sorted(drop_names(ws)) == sorted(result["files"])
        check_exactly_once(ws, NEW_SID, ALL_VISITOR_IDS)
        assert out.read_text().startswith("profile_id,id\n")
        assert db(ws, "SELECT name FROM shared_audiences") == [("Crashy",)]
        assert db(ws, "SELECT status FROM runs WHERE run_id = ?", [run_id]) == [("succeeded",)]
        rerun = export(ws, shared_audience="Crashy", max_file_bytes=TWO_PARTS)
        assert (rerun.ids_exported, rerun.files) == (0, [])
    else:
        assert result["status"] == "failed" and result["error"]["code"] == "interrupted"
        assert drop_names(ws) == []
        assert not out.exists()
        assert db(ws, "SELECT count(*) FROM shared_audiences")[0][0] == 0
        assert db(ws, "SELECT count(*) FROM export_ledger")[0][0] == 0
        rerun = export(ws, segment_name="Crashy", max_file_bytes=TWO_PARTS, outbound_transition=out)
        assert rerun.shared_audience.sid == NEW_SID and rerun.ids_exported == 7
    check_clean(ws)
    check_exactly_once(ws, NEW_SID, ALL_VISITOR_IDS)
    assert len(pd.read_csv(out, dtype=str)) == 7


@pytest.mark.parametrize("crashed_after", ["after_renames", "after_write_part_1"])
def test_the_next_command_settles_a_crashed_export(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, crashed_after: str
) -> None:
    """Any command that opens the workspace settles first: ``audtools batches`` here."""
    from click.testing import CliRunner

    from audtools.cli.main import cli

    crash_at(monkeypatch, crashed_after)
    with pytest.raises(Crash):
        export(ws, segment_name="Crashy", max_file_bytes=TWO_PARTS)
    crash_at(monkeypatch, None)
    assert len(db_raw(ws, "SELECT run_id FROM pending_exports")) == 1
    assert any(n.startswith(".audtools-") for n in drop_names(ws)) == (
        crashed_after == "after_write_part_1"
    )
    result = CliRunner().invoke(cli, ["batches", "-w", str(ws.root), "--json"])
    assert result.exit_code == 0, result.output
    assert db_raw(ws, "SELECT count(*) FROM pending_exports") == [(0,)]
    ledger = [r[0] for r in db_raw(ws, "SELECT id FROM export_ledger ORDER BY id")]
    if crashed_after == "after_renames":  # every part was in place: rolled forward
        assert len(drop_names(ws)) == 2
        assert all(onboarding.parse_name(n) for n in drop_names(ws))
        assert sorted(i for i, _ in drop_rows(ws)) == ledger == ALL_VISITOR_IDS
    else:  # rolled back: no file, nothing shared
        assert drop_names(ws) == [] and ledger == []


@pytest.mark.parametrize("part", [1, 2])
def test_a_crash_inside_the_drops_publish_is_settled(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, part: int
) -> None:
    """A local drop publishes by a hard link then an unlink: a crash between them leaves a
    part under both names, which the next session treats as renamed (and as ours)."""
    crash_at(monkeypatch, f"after_rename_part_{part}")
    with pytest.raises(Crash):
        export(ws, segment_name="Crashy", max_file_bytes=TWO_PARTS)
    crash_at(monkeypatch, None)
    (record,) = [json.loads(r[0]) for r in db_raw(ws, "SELECT record FROM pending_exports")]
    linked = record["parts"][part - 1]
    drop = ws.config.export_drop
    os.link(drop / linked["final"], drop / linked["temp"])  # the unlink did not happen
    with ws.session():
        pass
    check_clean(ws)
    if part == 2:  # every part reached its final name: rolled forward
        assert drop_names(ws) == sorted(p["final"] for p in record["parts"])
        check_exactly_once(ws, NEW_SID, ALL_VISITOR_IDS)
    else:
        assert drop_names(ws) == []
        assert db(ws, "SELECT count(*) FROM export_ledger")[0][0] == 0


def db_raw(ws: Workspace, sql: str) -> list[tuple[Any, ...]]:
    """Read the database without settling (no startup hooks)."""
    con = store.connect(ws.config.database, read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("point", ["after_write_part_1", "after_rename_part_1", "after_renames"])
def test_a_crash_of_an_export_to_an_existing_audience(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    export(ws, shared_audience="High value visitors", where="age >= 18")
    (tmp := ws.root / "more.csv").write_text(
        f"profile_id,visitor_id\np04,{vid(8)}\np04,{vid(9)}\np06,{vid(10)}\n"
    )
    load_visitors(ws, tmp)
    crash_at(monkeypatch, point)
    with pytest.raises(Crash):
        export(ws, shared_audience="High value visitors", max_file_bytes=TWO_PARTS)
    crash_at(monkeypatch, None)
    export(ws, shared_audience="High value visitors", max_file_bytes=TWO_PARTS)
    check_clean(ws)
    check_exactly_once(ws, 10603117, sorted(ALL_VISITOR_IDS + [vid(8), vid(9), vid(10)]))


def test_a_refused_command_still_settles_first(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    crash_at(monkeypatch, "after_write_part_1")
    with pytest.raises(Crash):
        export(ws, max_file_bytes=TWO_PARTS)
    crash_at(monkeypatch, None)
    assert any(n.startswith(".audtools-") for n in drop_names(ws))
    with pytest.raises(AudtoolsError):
        export(ws, data_source="nope")
    check_clean(ws)
    assert drop_names(ws) == []


def test_a_file_appearing_under_a_final_name_fails_the_export_cleanly(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    intruder: list[Path] = []
    stamps: list[int] = []
    free_timestamp = onboarding.free_timestamp

    def spy(*args: Any, **kwargs: Any) -> int:
        stamps.append(free_timestamp(*args, **kwargs))
        return stamps[-1]

    def hook(name: str) -> None:
        if name == "after_written":  # another program takes the second part's name
            final = ws.config.export_drop / onboarding.part_names(14016, stamps[0], 2)[1]
            final.write_text("not ours\n")
            intruder.append(final)

    monkeypatch.setattr(onboarding, "free_timestamp", spy)
    monkeypatch.setattr(publish, "_crash_point", hook)
    with pytest.raises(AudtoolsError) as info:
        export(ws, max_file_bytes=TWO_PARTS, outbound_transition=tmp_path / "o.csv")
    assert info.value.code == "name_taken"
    assert drop_names(ws) == [intruder[0].name]
    assert intruder[0].read_text() == "not ours\n"
    assert not (tmp_path / "o.csv").exists()
    check_clean(ws)
    assert db(ws, "SELECT count(*) FROM export_ledger")[0][0] == 0
    assert db(ws, "SELECT count(*) FROM shared_audiences")[0][0] == 0
    (run,) = os.listdir(ws.runs_dir)
    result = json.loads((ws.run_dir(run) / "result.json").read_text())
    assert result["status"] == "failed" and result["error"]["code"] == "name_taken"


@pytest.mark.slow
@pytest.mark.parametrize(
    "point", ["after_write_part_1", "after_rename_part_1", "after_rename_part_2", "after_commit"]
)
def test_a_killed_process_is_settled_by_the_next_one(ws: Workspace, point: str) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys
        from audtools.exporting import flow as exporting, publish
        def crash(name):
            if name == {point!r}:
                os._exit(9)
        publish._crash_point = crash
        exporting.export_audience({str(ws.root)!r}, segment_name="Killed",
                                  data_source="defaultDataSource", max_file_bytes={TWO_PARTS})
        sys.exit(0)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    with ws.session():
        pass
    check_clean(ws)
    if point in ("after_rename_part_2", "after_commit"):
        check_exactly_once(ws, NEW_SID, ALL_VISITOR_IDS)
    else:
        assert drop_names(ws) == []
        export(ws, segment_name="Killed", max_file_bytes=TWO_PARTS)
        check_exactly_once(ws, NEW_SID, ALL_VISITOR_IDS)


def test_an_export_failing_before_its_protocol_records_a_failed_run(ws: Workspace) -> None:
    import shutil

    shutil.rmtree(ws.config.export_drop)
    ws.config.export_drop.write_text("not a folder\n")
    with pytest.raises(Exception):  # noqa: B017 - whatever the OS raises, the run is recorded
        export(ws)
    (run,) = os.listdir(ws.runs_dir)
    result = json.loads((ws.run_dir(run) / "result.json").read_text())
    assert result["status"] == "failed" and result["kind"] == "export"
    assert db(ws, "SELECT count(*) FROM export_ledger")[0][0] == 0


@pytest.mark.slow
def test_audtools_runs_settles_an_interrupted_export_when_the_workspace_is_free(ws: Workspace) -> None:
    from click.testing import CliRunner

    from audtools.cli.main import cli

    script = textwrap.dedent(
        f"""
        import os
        from audtools.exporting import flow as exporting, publish
        def crash(name):
            if name == "after_rename_part_1":
                os._exit(9)
        publish._crash_point = crash
        exporting.export_audience({str(ws.root)!r}, segment_name="Killed",
                                  data_source="defaultDataSource", max_file_bytes={TWO_PARTS})
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert drop_names(ws)  # a renamed part and a temporary one are left
    result = CliRunner().invoke(cli, ["runs", "-w", str(ws.root), "--json"])
    assert result.exit_code == 0, result.output
    assert drop_names(ws) == []
    check_clean(ws)


# -- round trips through the import -------------------------------------------------------------


def to_outbound(
    ws: Workspace, result: exporting.ExportResult, ts_ms: int = 1_764_000_000_000
) -> None:
    """What AAM would deliver for the segment: a full outbound batch of the exported IDs."""
    source = ws.config.data_sources[result.data_source]
    sid = result.shared_audience.sid
    ids = [
        i
        for f in result.files
        for i, s in onboarding.read_rows((ws.config.export_drop / f).read_bytes())
        if s == sid
    ]
    name = f"ftp_{source.destination_id}_{source.dpid}_full_{ts_ms}.sync"
    (ws.config.import_drop / name).write_text(
        "".join(f"{i}\t{sid}\n" for i in ids), encoding="utf-8"
    )
    settled(ws.config.import_drop / name)  # a delivery that has finished (settle_seconds)


def members(ws: Workspace, label: str) -> list[str]:
    from audtools.workspace.audiences import audience_members

    frame = audience_members(ws, label)
    return sorted(frame.iloc[:, 0])


ROUND_TRIPS = [
    ("defaultDataSource", False, ["p01", "p03", "p05", "p07", "p08"]),
    ("crmDeclaredId", False, ["p01", "p05", "p06", "p07", "p08"]),
    ("emailSha256", False, ["p01", "p03", "p05", "p07", "p08"]),
    ("emailEncrypted", True, ["p01", "p03", "p05", "p07", "p08"]),
    ("emailHex", True, ["p01", "p03", "p05", "p07", "p08"]),
]


@pytest.mark.parametrize(("source", "force", "expected"), ROUND_TRIPS)
def test_round_trip(ws: Workspace, source: str, force: bool, expected: list[str]) -> None:
    from audtools.importing.flow import import_audience

    r = export(ws, data_source=source, segment_name=f"RT {source}", where="age >= 18")
    assert sorted(set(r.outbound_transition["profile_id"])) == expected
    to_outbound(ws, r)
    imported = import_audience(
        ws, "Round trip", r.shared_audience.name, source, force_reconciliation=force
    )
    data = imported.to_json()
    assert data["audience"]["type"] == "experience_cloud"
    assert data["members"] == data["matched"] == r.ids_exported
    assert members(ws, "Round trip") == expected


def test_round_trip_of_aes_emails_without_the_flag_is_a_file_audience(ws: Workspace) -> None:
    from audtools.importing.flow import import_audience

    r = export(ws, data_source="emailEncrypted", segment_name="Emails", where="age >= 18")
    to_outbound(ws, r)
    data = import_audience(ws, "Addresses", "Emails", "emailEncrypted").to_json()
    assert data["audience"]["type"] == "file"
    assert members(ws, "Addresses") == sorted(
        EMAILS[p] for p in ["p01", "p03", "p05", "p07", "p08"]
    )


def test_transitions_not_kept_say_so(ws: Workspace, tmp_path: Path) -> None:
    r = export(ws, keep_transitions=False, complement_transition=tmp_path / "c.csv")
    with pytest.raises(AudtoolsError) as info:
        r.outbound_transition  # noqa: B018
    assert info.value.code == "transitions_not_kept"
    assert (tmp_path / "c.csv").read_text() == "profile_id\np04\np06\n"


def test_ids_over_aams_line_limit_are_not_written(ws: Workspace, tmp_path: Path) -> None:
    """SPEC §6.5: a row over 102,400 bytes (without its line end) is not written, not recorded as
    shared, and counted in ids_too_long; a profile left without an ID is without an ID."""
    limit = 102_400 - len(f"\td_sid={NEW_SID}")
    fits, too_long = "F" * limit, "L" * (limit + 1)
    (tmp_path / "long.csv").write_text(f"profile_id,crm_id\np10,{fits}\np11,{too_long}\n")
    load_profiles(ws, tmp_path / "long.csv")
    r = export(ws, data_source="crmDeclaredId", segment_name="Long")
    assert r.shared_audience.sid == NEW_SID
    assert (r.ids_exported, r.ids_too_long, r.profiles_without_id) == (8, 1, 2)
    assert r.to_json()["ids_too_long"] == 1
    data = b"".join((ws.config.export_drop / f).read_bytes() for f in r.files)
    assert max(len(line) for line in data.splitlines()) == 102_400
    assert too_long.encode() not in data
    again = export(ws, data_source="crmDeclaredId", shared_audience=NEW_SID)
    assert (again.ids_exported, again.ids_already_shared, again.ids_too_long) == (0, 8, 1)


def test_max_file_bytes_over_aams_limit_is_refused_by_the_parser(ws: Workspace) -> None:
    from click.testing import CliRunner

    from audtools.cli.main import cli

    result = CliRunner().invoke(cli, ["export", "-w", str(ws.root), "--segment-name", "X",
                                      "--data-source", "defaultDataSource",
                                      "--max-file-bytes", "5000000001"])
    assert result.exit_code == 2 and "5000000001" in result.output
