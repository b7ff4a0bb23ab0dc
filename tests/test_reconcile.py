"""Reconciliation (SPEC §5 steps 5 and 6): every fast path of ``reconcile()`` gives what the
general query gives, and what is expected by hand, for every kind of data source, where the
uniqueness facts it relies on hold and where they do not."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import settled
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from audtools.importing.flow import import_audience
from audtools.importing.members import member_keys
from audtools.importing.reconcile import Reconciled, reconcile
from audtools.profiles import declared_ids as derived
from audtools.profiles.loading import load_profiles
from audtools.workspace import Workspace, init_workspace
from audtools.workspace.keys import load_key

KEY_HEX = "8f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0"
IV_HEX = "000102030405060708090a0b0c0d0e0f"
SID = 100


def aes(value: str, encoding: str = "base64") -> str:
    """AES-CBC as SPEC §3 says, independently of audtools."""
    padder = padding.PKCS7(128).padder()
    data = padder.update(value.encode()) + padder.finalize()
    cipher = Cipher(algorithms.AES(bytes.fromhex(KEY_HEX)), modes.CBC(bytes.fromhex(IV_HEX)))
    enc = cipher.encryptor()
    out = enc.update(data) + enc.finalize()
    return base64.b64encode(out).decode() if encoding == "base64" else out.hex()


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def vid(n: int) -> str:
    return f"{n:038d}"


SOURCES = f"""
[[data_sources]]
id = "crm"
dpid = 30001
reconciliation = "declared_id"
reconciliation_key = "crm_id"

[[data_sources]]
id = "emailHash"
dpid = 30002
reconciliation = "declared_id"
reconciliation_key = "email"
hash = "sha256"

[[data_sources]]
id = "emailAes"
dpid = 30003
reconciliation = "declared_id"
reconciliation_key = "email"
channel = "email"
encryption = "aes-cbc"
key_env = "TEST_AUDTOOLS_KEY"
iv = "{IV_HEX}"

[[data_sources]]
id = "smsAes"
dpid = 30004
reconciliation = "declared_id"
reconciliation_key = "mobile_phone"
channel = "sms"
encryption = "aes-cbc"
key_env = "TEST_AUDTOOLS_KEY"
iv = "{IV_HEX}"
encoding = "hex"
"""

PROFILES = """profile_id,email,mobile_phone,crm_id
P1,  Alice@Example.com ,(201) 555-0101,000123
P2,bob@example.com,+1 202 555 0102,000124
P3,carol@example.com,,000125
P4,,not a phone,
P5,ÉLODIE@example.fr,2035550105,000127
"""
# P6 shares every key of P2: email (once normalised), phone (once in E.164), CRM ID, visitor ID.
SHARING = "P6, BOB@example.com,202-555-0102,000124\n"

# P5 has two visitor IDs: a profile matched by two members.
VISITORS = f"profile_id,visitor_id\nP1,{vid(1)}\nP2,{vid(2)}\nP3,{vid(3)}\nP5,{vid(5)}\nP5,{vid(6)}\n"


@dataclass(frozen=True)
class Case:
    """A data source, its segment's members (as written in the batch, with their expected
    outcome), the member that shares a key with another (encrypted sources only), and what the
    audience holds without and with the profile P6."""

    source: str
    dpid: int
    forced: bool
    members: list[tuple[str, str]]
    colliding: tuple[str, str] | None
    holds: set[str]
    holds_with_p6: set[str]

    @property
    def file_audience(self) -> bool:
        return self.source in ("emailAes", "smsAes") and not self.forced


EMAILS = [
    (aes("alice@example.com"), "matched"),
    (aes("bob@example.com"), "matched"),
    (aes("dave@example.com"), "no_profile"),
    ("AAAA", "undecryptable"),  # decodes, but is not a whole block
]
ALICE_AGAIN = (aes(" Alice@Example.com"), "matched")  # the same key as Alice once normalised
PHONES = [
    (aes("+12015550101", "hex").upper(), "matched"),  # hex is lower-cased on read
    (aes("(202) 555-0102", "hex"), "matched"),
    (aes(" call me ", "hex"), "no_profile"),  # kept trimmed: "call me"
    ("zz", "undecryptable"),
]
PHONE_AGAIN = (aes("201-555-0101", "hex"), "matched")  # +12015550101 once normalised
ADDRESSES = {"alice@example.com", "bob@example.com", "dave@example.com"}
NUMBERS = {"+12015550101", "+12025550102", "call me"}

CASES = {
    "visitor-id": Case(
        "defaultDataSource", 14016, False,
        [(vid(1), "matched"), (vid(2), "matched"), (vid(3), "matched"), (vid(5), "matched"),
         (vid(6), "matched"), (vid(9), "no_profile")],
        None, {"P1", "P2", "P3", "P5"}, {"P1", "P2", "P3", "P5", "P6"},
    ),
    "plain": Case(
        "crm", 30001, False,
        [("000123", "matched"), ("000124", "matched"), ("000127", "matched"),
         ("124", "no_profile")],
        None, {"P1", "P2", "P5"}, {"P1", "P2", "P5", "P6"},
    ),
    "sha256": Case(
        "emailHash", 30002, False,
        [(sha("alice@example.com").upper(), "matched"), (sha("bob@example.com"), "matched"),
         (sha("élodie@example.fr"), "matched"), (sha("dave@example.com"), "no_profile"),
         ("nothex", "no_profile")],
        None, {"P1", "P2", "P5"}, {"P1", "P2", "P5", "P6"},
    ),
    "aes-email-forced": Case("emailAes", 30003, True, EMAILS, ALICE_AGAIN,
                             {"P1", "P2"}, {"P1", "P2", "P6"}),
    "aes-sms-forced": Case("smsAes", 30004, True, PHONES, PHONE_AGAIN,
                           {"P1", "P2"}, {"P1", "P2", "P6"}),
    "file-email": Case("emailAes", 30003, False, EMAILS, ALICE_AGAIN, ADDRESSES, ADDRESSES),
    "file-sms": Case("smsAes", 30004, False, PHONES, PHONE_AGAIN, NUMBERS, NUMBERS),
}

PARAMS = [
    pytest.param(name, sharing, colliding,
                 id=f"{name}-{'p6' if sharing else 'own-keys'}{'-colliding' if colliding else ''}")
    for name, case in CASES.items()
    for sharing in (False, True)
    for colliding in ((False, True) if case.colliding else (False,))
]


def build(tmp_path: Path, case: Case, sharing: bool, colliding: bool) -> Workspace:
    """A workspace whose segment SID of the case's data source holds its members (applied)."""
    root = tmp_path / "ws"
    init_workspace(root)
    with (root / "audtools.toml").open("a") as fh:
        fh.write(SOURCES)
    visitors = VISITORS + (f"P6,{vid(2)}\n" if sharing else "")
    (tmp_path / "profiles.csv").write_text(PROFILES + (SHARING if sharing else ""))
    (tmp_path / "visitors.csv").write_text(visitors)
    load_profiles(root, tmp_path / "profiles.csv", visitors=tmp_path / "visitors.csv")
    catalog = {"segments": [{"sid": SID, "name": "Seg", "type": "segment", "source": "analytics"}]}
    (root / "drops/import/catalog.json").write_text(json.dumps(catalog))
    rows = [value for value, _ in members_of(case, colliding)]
    name = f"ftp_1_{case.dpid}_full_1700000000000.sync"
    (root / "drops/import" / name).write_text("".join(f"{r}\t{SID}\n" for r in rows))
    settled(root / "drops/import" / name)
    return Workspace(root)


def members_of(case: Case, colliding: bool) -> list[tuple[str, str]]:
    return case.members + ([case.colliding] if colliding and case.colliding else [])


def expected(case: Case, sharing: bool, colliding: bool) -> dict[str, object]:
    """The counts of SPEC §5, by hand."""
    outcomes = [outcome for _, outcome in members_of(case, colliding)]
    holds = case.holds_with_p6 if sharing else case.holds
    return {
        "members": len(outcomes),
        "undecryptable": outcomes.count("undecryptable"),
        "matched": outcomes.count("matched"),
        "profiles": 0 if case.file_audience else len(holds),
        "addresses": len(holds) if case.file_audience else 0,
    }


def stored(case: Case, value: str) -> str:
    """A member's ID as the segment state holds it (hashes and hex lower-cased, SPEC §3)."""
    return value.lower() if case.source in ("emailHash", "smsAes") else value


Seen = tuple[dict[str, object], list[str] | None, dict[str, str] | None]


def seen(con: object, found: Reconciled) -> Seen:
    """The counts, the audience's rows (sorted, duplicates kept) and the outcomes."""
    counts = {k: getattr(found, k) for k in ("members", "undecryptable", "matched", "profiles",
                                             "addresses")}
    rows = None
    if found.audience is not None:
        rows = sorted(r[0] for r in con.execute(  # type: ignore[attr-defined]
            f"SELECT coalesce(profile_id, address) FROM {found.audience}").fetchall())
    outcomes = None
    if found.outcomes is not None:
        table = found.outcomes.to_pydict()
        outcomes = dict(zip(table["id"], table["outcome"], strict=True))
    return counts, rows, outcomes


@pytest.mark.parametrize(("name", "sharing", "colliding"), PARAMS)
def test_every_fast_path_gives_the_general_counts_audience_and_outcomes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, sharing: bool, colliding: bool
) -> None:
    """``reconcile()`` with its fast paths and with ``fast=False`` (the general query) gives the
    same counts, audience rows and outcomes, and those expected by hand: with or without an
    audience to store and outcomes to keep, whether or not the facts it relies on hold (P6
    shares P2's keys; two members share a key)."""
    monkeypatch.setenv("TEST_AUDTOOLS_KEY", KEY_HEX)
    case = CASES[name]
    ws = build(tmp_path, case, sharing, colliding)
    want = expected(case, sharing, colliding)
    holds = sorted(case.holds_with_p6 if sharing else case.holds)
    outcomes = {stored(case, v): outcome for v, outcome in members_of(case, colliding)}
    imported = import_audience(ws, "A", SID, case.source, force_reconciliation=case.forced)
    assert {k: getattr(imported, k) for k in want} == want
    source = ws.config.data_sources[case.source]
    key = None
    if source.encrypted:
        key = load_key(key_env=source.key_env, key_file=source.key_file, base_dir=ws.root)
    with ws.session() as con:
        members = member_keys(con, source, SID, key=key, region=ws.config.default_region)
        # The facts hold where they should: the fast paths below are the ones under test.
        assert derived.unique_keys(con, source) is not sharing
        assert members.keys_unique is (not colliding and source.encoding != "hex")
        for audience in (True, False):
            for keep in (True, False):
                flags = {"file_audience": case.file_audience, "audience": audience,
                         "outcomes": keep}
                fast = reconcile(con, source, members, **flags)
                fast_seen = seen(con, fast)
                general = reconcile(con, source, members, **flags, fast=False)
                assert fast.shape != "general" and general.shape == "general"
                assert fast_seen == seen(con, general), (fast.shape, flags)
                counts, rows, kept = fast_seen
                assert counts == want, (fast.shape, flags)
                assert rows == (holds if audience else None)
                assert kept == (outcomes if keep else None)
                if audience and not keep and not case.file_audience and not sharing:
                    assert fast.shape == "grouping"  # the import's own path, when it can



# -- the facts, as loading profiles and migrations keep them -------------------------------------


def import_counts(ws: Workspace, case: Case, **kw: object) -> dict[str, object]:
    r = import_audience(ws, "A", SID, case.source, force_reconciliation=case.forced, **kw)
    return {k: getattr(r, k) for k in ("members", "undecryptable", "matched", "profiles",
                                       "addresses")}


def test_loading_visitor_ids_keeps_the_fact_and_imports_count_profiles_not_visitor_ids(
    tmp_path: Path,
) -> None:
    """With vid(2) shared by P2 and P6 the workspace records that visitor IDs are not unique;
    once P6 gets its own, every path of the import counts profiles: P5, matched by two visitor
    IDs, is one profile (a dry run without outcomes, as ``--dry-run`` runs it, counted it
    twice)."""
    case = CASES["visitor-id"]
    ws = build(tmp_path, case, sharing=True, colliding=False)
    source = ws.config.data_sources[case.source]
    with ws.session() as con:
        assert derived.unique_keys(con, source) is False
    assert import_counts(ws, case) == expected(case, sharing=True, colliding=False)
    with ws.session() as con:
        con.execute(f"DELETE FROM visitor_keys WHERE profile_id = 'P6' AND vid = '{vid(2)}'::HUGEINT")
    (tmp_path / "v6.csv").write_text(f"profile_id,visitor_id\nP6,{vid(7)}\n")
    load_profiles(ws, tmp_path / "profiles.csv", visitors=tmp_path / "v6.csv")
    with ws.session() as con:
        assert derived.unique_keys(con, source) is True
    for dry_run in (True, False):
        for keep_members in (True, False):
            got = import_counts(ws, case, dry_run=dry_run, keep_members=keep_members)
            assert got == expected(case, sharing=False, colliding=False), (dry_run, keep_members)
    with ws.session() as con:
        rows = con.execute("SELECT profile_id FROM audience_members WHERE label = 'A'").fetchall()
    assert sorted(r[0] for r in rows) == sorted(case.holds)


def test_a_schema_1_workspace_migrates_and_learns_whether_its_keys_are_unique(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A derived-ID cache built before schema 2 recorded uniqueness is kept; the flag is filled."""
    monkeypatch.setenv("TEST_AUDTOOLS_KEY", KEY_HEX)
    case = CASES["aes-email-forced"]
    ws = build(tmp_path, case, sharing=False, colliding=False)
    before = import_counts(ws, case)
    with ws.session() as con:  # what audtools 0.1.0 (schema 1) left
        con.execute("ALTER TABLE derived_state DROP COLUMN unique_keys")
        con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    after = import_counts(ws, case)
    assert after == before == expected(case, sharing=False, colliding=False)
    assert list(ws.root.glob("campaign.duckdb.v1-*.bak"))
    with ws.session() as con:
        assert con.execute("SELECT unique_keys FROM derived_state WHERE data_source = 'emailAes'"
                           ).fetchall() == [(True,)]
