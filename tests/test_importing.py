"""Import (SPEC §5): counts for every kind of data source, refusals, re-imports, dry runs,
failures that change nothing, and keys that never leave their key file."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import settled
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from audtools.cli.main import cli
from audtools.errors import AudtoolsError
from audtools.importing import flow as importing
from audtools.importing.flow import import_audience
from audtools.importing.result import ImportResult
from audtools.profiles.loading import load_profiles
from audtools.workspace import Workspace, init_workspace

REPO_SAMPLES = Path(__file__).parent.parent / "data" / "samples"
KEY_HEX = "8f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0"
IV_HEX = "000102030405060708090a0b0c0d0e0f"


# -- helpers: an independent AES and a tiny drop -------------------------------------------------


def aes(value: str, key_hex: str = KEY_HEX, encoding: str = "base64") -> str:
    padder = padding.PKCS7(128).padder()
    data = padder.update(value.encode()) + padder.finalize()
    enc = Cipher(algorithms.AES(bytes.fromhex(key_hex)), modes.CBC(bytes.fromhex(IV_HEX))).encryptor()
    out = enc.update(data) + enc.finalize()
    return base64.b64encode(out).decode() if encoding == "base64" else out.hex()


def vid(n: int) -> str:
    return f"{n:038d}"


EXTRA_SOURCES = f"""
[[operators]]
name = "native_user"
login = "native"

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
key_file = "keys/sms.key"
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

VISITORS = f"""profile_id,visitor_id
P1,{vid(1)}
P2,{vid(2)}
P3,{vid(3)}
P4,{vid(3)}
P5,{vid(5)}
P5,{vid(6)}
"""

CATALOG = {
    "segments": [
        {"sid": 100, "name": "Seg A", "type": "segment", "source": "audience_manager"},
        {"sid": 200, "name": "Seg B", "type": "segment", "source": "analytics"},
        {"sid": 300, "name": "A trait", "type": "trait", "source": "audience_manager"},
        {"sid": 400, "name": "Twin", "type": "segment", "source": "audience_manager"},
        {"sid": 401, "name": "Twin", "type": "segment", "source": "people_core_service"},
    ]
}


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A small workspace: five profiles, visitor IDs, four extra data sources, a catalog."""
    root = tmp_path / "ws"
    init_workspace(root)
    with (root / "audtools.toml").open("a") as fh:
        fh.write(EXTRA_SOURCES)
    (root / "keys").mkdir(mode=0o700)
    key = root / "keys" / "sms.key"
    key.write_text(KEY_HEX + "\n")
    key.chmod(0o600)
    monkeypatch.setenv("TEST_AUDTOOLS_KEY", KEY_HEX)
    (tmp_path / "profiles.csv").write_text(PROFILES)
    (tmp_path / "visitors.csv").write_text(VISITORS)
    load_profiles(root, tmp_path / "profiles.csv", visitors=tmp_path / "visitors.csv")
    (root / "drops/import/catalog.json").write_text(json.dumps(CATALOG))
    return Workspace(root)


def drop(ws: Workspace, dpid: int, rows: list[str], *, mode: str = "full", ts: int = 1700000000000) -> Path:
    path = ws.config.import_drop / f"ftp_1_{dpid}_{mode}_{ts}.sync"
    path.write_text("".join(r + "\n" for r in rows))
    settled(path)
    return path


def counts(result: ImportResult) -> dict[str, object]:
    data = result.to_json()
    keys = ("members", "undecryptable", "matched", "unmatched", "profiles", "addresses")
    return {k: data[k] for k in keys} | {"type": data["audience"]["type"]}


def audience_members(ws: Workspace, label: str) -> set[str]:
    with ws.session() as con:
        rows = con.execute(
            "SELECT coalesce(profile_id, address) FROM audience_members WHERE label = ?", [label]
        ).fetchall()
    return {r[0] for r in rows}


# -- counts for each kind of data source ---------------------------------------------------------


def test_visitor_ids(ws: Workspace) -> None:
    drop(
        ws,
        14016,
        [f"{vid(1)}\t100", f"{vid(3)}\t100,200", f"{vid(5)}\t100", f"{vid(6)}\t100", f"{vid(9)}\t100",
         f"{vid(2)}\t200", "12345\t100"],
    )
    r = import_audience(ws, "A", 100, "defaultDataSource")
    # vid(3) belongs to P3 and P4; vid(5) and vid(6) both to P5; vid(9) to nobody.
    assert counts(r) == {"members": 5, "undecryptable": 0, "matched": 4, "unmatched": 1,
                         "profiles": 4, "addresses": 0, "type": "experience_cloud"}
    assert r.match_rate == 4 / 5
    assert r.rows_read == 7 and r.rows_rejected == 1 and r.batches_applied == 1
    assert audience_members(ws, "A") == {"P1", "P3", "P4", "P5"}
    outcomes = dict(zip(r.member_outcomes["id"], r.member_outcomes["outcome"], strict=True))
    assert outcomes[vid(9)] == "no_profile" and outcomes[vid(1)] == "matched"
    # Another segment of the same data source reads no rows: its batches are applied.
    r2 = import_audience(ws, "B", 200, "defaultDataSource")
    assert r2.rows_read == 0 and r2.batches_applied == 0
    assert counts(r2)["matched"] == 2 and counts(r2)["profiles"] == 3


def test_plain_declared_ids_are_compared_with_trimmed_keys(ws: Workspace) -> None:
    drop(ws, 30001, ["000123\t100", "000124 \t100", "124\t100", "000127\t100", "a:b\t100"])
    r = import_audience(ws, "crm", 100, "crm")
    # "000124 " keeps its space as written and matches nothing; "124" lost its zeros.
    assert counts(r) == {"members": 4, "undecryptable": 0, "matched": 2, "unmatched": 2,
                         "profiles": 2, "addresses": 0, "type": "experience_cloud"}
    assert r.rows_rejected == 1  # "a:b" breaks the declared-ID rule
    assert audience_members(ws, "crm") == {"P1", "P5"}


def test_sha256_ids_are_lower_cased_and_match_normalised_emails(ws: Workspace) -> None:
    alice = hashlib.sha256(b"alice@example.com").hexdigest()
    elodie = hashlib.sha256("élodie@example.fr".encode()).hexdigest()
    raw = hashlib.sha256(b"  Alice@Example.com ").hexdigest()
    drop(ws, 30002, [f"{alice.upper()}\t100", f"{elodie}\t100", f"{raw}\t100", "nothex\t100"])
    r = import_audience(ws, "hashed", 100, "emailHash")
    assert counts(r) == {"members": 4, "undecryptable": 0, "matched": 2, "unmatched": 2,
                         "profiles": 2, "addresses": 0, "type": "experience_cloud"}


def test_aes_email_gives_a_file_audience_of_every_decrypted_address(ws: Workspace) -> None:
    rows = [
        f"{aes('alice@example.com')}\t100",
        f"{aes('  ALICE@example.com')}\t100",  # same address once normalised
        f"{aes('dave@example.com')}\t100",  # no profile: kept all the same
        f"{aes('bob@example.com', key_hex='00' * 32)}\t100",  # another key
        "not*base64\t100",
        f"{aes('   ')}\t100",  # empty once trimmed
        f"{aes('x:y@example.com')}\t100",  # breaks the declared-ID rule
    ]
    drop(ws, 30003, rows)
    r = import_audience(ws, "emails", 100, "emailAes")
    assert counts(r) == {"members": 7, "undecryptable": 4, "matched": 2, "unmatched": 1,
                         "profiles": 0, "addresses": 2, "type": "file"}
    assert audience_members(ws, "emails") == {"alice@example.com", "dave@example.com"}
    assert r.to_json()["unmatched_reasons"] == {"undecryptable": 4, "no_profile": 1}


def test_aes_email_forced_reconciliation_gives_profiles(ws: Workspace) -> None:
    drop(ws, 30003, [f"{aes('alice@example.com')}\t100", f"{aes('BOB@example.com')}\t100",
                     f"{aes('dave@example.com')}\t100", "AAAA\t100"])
    r = import_audience(ws, "emails", 100, "emailAes", force_reconciliation=True)
    assert counts(r) == {"members": 4, "undecryptable": 1, "matched": 2, "unmatched": 1,
                         "profiles": 2, "addresses": 0, "type": "experience_cloud"}
    assert audience_members(ws, "emails") == {"P1", "P2"}


def test_aes_sms_in_hex_normalises_numbers_and_keeps_unparseable_ones_trimmed(ws: Workspace) -> None:
    rows = [
        f"{aes('+12015550101', encoding='hex').upper()}\t100",  # hex is lower-cased on read
        f"{aes('(202) 555-0102', encoding='hex')}\t100",
        f"{aes(' call me ', encoding='hex')}\t100",
        f"{aes('+33 6 39 98 00 00', encoding='hex')}\t100",
        "zz\t100",
    ]
    drop(ws, 30004, rows)
    r = import_audience(ws, "sms", 100, "smsAes")
    assert counts(r) == {"members": 5, "undecryptable": 1, "matched": 2, "unmatched": 2,
                         "profiles": 0, "addresses": 4, "type": "file"}
    assert audience_members(ws, "sms") == {"+12015550101", "+12025550102", "call me", "+33639980000"}
    forced = import_audience(ws, "sms", 100, "smsAes", force_reconciliation=True)
    assert counts(forced)["profiles"] == 2 and counts(forced)["type"] == "experience_cloud"
    assert audience_members(ws, "sms") == {"P1", "P2"}


def test_no_members_is_a_success(ws: Workspace) -> None:
    r = import_audience(ws, "empty", 100, "defaultDataSource")
    assert r.members == 0 and r.match_rate == 0 and r.run_id
    assert (ws.run_dir(r.run_id) / "result.json").is_file()


# -- the sample workspace: counts promised by samples.json ---------------------------------------


@pytest.mark.slow
def test_sample_imports_give_the_counts_samples_json_promises(sample_template: Path, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    shutil.copytree(sample_template, root)
    doc = json.loads((root / "samples.json").read_text())
    first_seen: set[str] = set()
    for item in doc["imports"]:
        r = import_audience(root, item["label"], item["shared_audience"], item["data_source"],
                            force_reconciliation=item["force_reconciliation"])
        assert counts(r) == item["expected"], item["label"]
        batches = doc["batches"][item["data_source"]]
        if item["data_source"] not in first_seen:
            assert (r.rows_read, r.rows_rejected) == (batches["rows_read"], batches["rows_rejected"])
            assert r.batches_applied == batches["batches"]
            first_seen.add(item["data_source"])
        else:
            assert r.rows_read == 0


def test_repository_sample_files_import_as_their_readme_says(tmp_path: Path, runner: CliRunner) -> None:
    root = tmp_path / "ws"
    init_workspace(root)
    for f in REPO_SAMPLES.iterdir():
        if f.name.startswith("ftp_") or f.name == "catalog.json":
            shutil.copy(f, root / "drops/import" / f.name)
    load_profiles(root, REPO_SAMPLES / "profiles.csv", visitors=REPO_SAMPLES / "visitors.csv")
    out = runner.invoke(cli, ["import", "-w", str(root), "--label", "High value",
                              "--shared-audience", "10603117", "--data-source", "defaultDataSource", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert (data["members"], data["matched"], data["unmatched"], data["profiles"]) == (6, 5, 1, 5)
    assert (data["rows_read"], data["rows_rejected"]) == (11, 2)


# -- CLI: JSON keys, rejects, window ------------------------------------------------------------


SPEC_KEYS = [
    "run_id", "audience", "rows_read", "rows_rejected", "rejects_kept", "members", "undecryptable", "matched",
    "unmatched", "profiles", "addresses", "match_rate", "unmatched_reasons", "batches_applied",
    "batches_waiting", "batches_skipped", "available_from", "available_to", "dry_run",
]
#: Keys added after SPEC §5's list (issue 17): the delivery time of the newest applied batch.
ADDED_KEYS = ["delivered_at"]


def run_import(runner: CliRunner, ws: Workspace, *args: str) -> tuple[int, dict, str]:
    result = runner.invoke(cli, ["import", "-w", str(ws.root), "--json", *args])
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else {}, result.stderr


def test_cli_json_has_every_key_and_writes_rejects(ws: Workspace, runner: CliRunner) -> None:
    drop(ws, 14016, [f"{vid(1)}\t100", "", "short\t100", f"{vid(2)}\tx", f"{vid(3)}", f"{vid(4)}\t,"])
    code, data, err = run_import(runner, ws, "--label", "A", "--shared-audience", "Seg A",
                                 "--data-source", "defaultDataSource")
    assert code == 0, err
    assert err == ""  # no log lines without -v
    assert list(data) == SPEC_KEYS + ADDED_KEYS
    assert data["delivered_at"] == "2023-11-14T22:13:20Z"  # the batch's timestamp 1700000000000
    assert data["audience"] == {"label": "A", "type": "experience_cloud",
                                "shared_audience": {"sid": 100, "name": "Seg A"},
                                "data_source": "defaultDataSource"}
    assert (data["rows_read"], data["rows_rejected"]) == (5, 4)
    rejects = (ws.run_dir(data["run_id"]) / "rejects.csv").read_text().splitlines()
    name = "ftp_1_14016_full_1700000000000.sync"
    assert rejects == ["file,line,reason", f"{name},3,bad_id", f"{name},4,bad_segment",
                       f"{name},5,bad_syntax", f"{name},6,no_segments"]
    result = json.loads((ws.run_dir(data["run_id"]) / "result.json").read_text())
    assert result["status"] == "succeeded" and result["kind"] == "import"
    assert {k: result[k] for k in SPEC_KEYS + ADDED_KEYS} == data
    assert (ws.run_dir(data["run_id"]) / "log").is_file()


def test_sync_window_is_24_to_36_hours_and_36_to_60_for_analytics(ws: Workspace) -> None:
    import datetime as dt

    def hours(r: ImportResult) -> tuple[float, float]:
        start = dt.datetime.fromisoformat(r.started_at.replace("Z", "+00:00"))
        f = dt.datetime.fromisoformat(r.available_from.replace("Z", "+00:00"))
        t = dt.datetime.fromisoformat(r.available_to.replace("Z", "+00:00"))
        return (f - start).total_seconds() / 3600, (t - start).total_seconds() / 3600

    assert hours(import_audience(ws, "A", 100, "defaultDataSource")) == (24, 36)
    assert hours(import_audience(ws, "B", "Seg B", "defaultDataSource")) == (36, 60)


# -- refusals ------------------------------------------------------------------------------------


def snapshot(ws: Workspace) -> tuple:
    with ws.session() as con:
        tables = tuple(
            con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("batches", "segment_state", "audiences", "audience_members", "runs")
        )
    runs = sorted(p.name for p in ws.runs_dir.iterdir())
    return tables, runs


REFUSALS = [
    (["--operator", "native_user"], "not_ims"),
    (["--operator", "nobody"], "unknown_operator"),
    (["--data-source", "nope"], "unknown_data_source"),
    (["--shared-audience", "999"], "unknown_shared_audience"),
    (["--shared-audience", "No such name"], "unknown_shared_audience"),
    (["--shared-audience", "Twin"], "ambiguous_shared_audience"),
    (["--shared-audience", "300"], "not_a_segment"),
    (["--force-reconciliation"], "not_encrypted"),
    (["--label", "taken"], "label_in_use"),
    (["--data-source", "emailAes", "env:TEST_AUDTOOLS_KEY="], "missing_key"),
    (["--data-source", "emailAes", "env:TEST_AUDTOOLS_KEY=abcd"], "bad_key"),
]


@pytest.mark.parametrize(("args", "code"), REFUSALS, ids=[c for _, c in REFUSALS])
def test_refusals_exit_1_with_one_line_and_write_nothing(
    ws: Workspace, runner: CliRunner, monkeypatch: pytest.MonkeyPatch, args: list[str], code: str
) -> None:
    drop(ws, 14016, [f"{vid(1)}\t100"])
    drop(ws, 30003, [f"{aes('alice@example.com')}\t100"])
    import_audience(ws, "taken", 200, "defaultDataSource")
    before = snapshot(ws)
    options = {"--label": "new", "--shared-audience": "100", "--data-source": "defaultDataSource"}
    flags: list[str] = []
    env: dict[str, str] = {}
    it = iter(args)
    for arg in it:
        if arg.startswith("env:"):
            name, value = arg[4:].split("=", 1)
            env[name] = value
        elif arg in options:
            options[arg] = next(it)
        else:
            flags.append(arg)
            if arg == "--operator":
                flags.append(next(it))
    for name, value in env.items():
        if value:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name)
    argv = [x for pair in options.items() for x in pair] + flags
    exit_code, data, err = run_import(runner, ws, *argv)
    assert exit_code == 1
    assert data["error"]["code"] == code
    assert err.count("\n") == 1 and err.startswith("audtools: error:")
    assert snapshot(ws) == before
    assert KEY_HEX not in err and "abcd" not in err


def test_a_group_readable_key_file_is_refused(ws: Workspace) -> None:
    (ws.root / "keys" / "sms.key").chmod(0o640)
    with pytest.raises(AudtoolsError) as info:
        import_audience(ws, "sms", 100, "smsAes")
    assert info.value.code == "bad_key"


# -- re-imports, dry runs, min match rate, failures ---------------------------------------------


def test_reimport_replaces_members_and_may_change_the_type(ws: Workspace) -> None:
    drop(ws, 30003, [f"{aes('alice@example.com')}\t100", f"{aes('zed@example.com')}\t100"])
    import_audience(ws, "emails", 100, "emailAes")
    assert audience_members(ws, "emails") == {"alice@example.com", "zed@example.com"}
    drop(ws, 30003, [f"{aes('bob@example.com')}\t100"], mode="iter", ts=1700000001000)
    r = import_audience(ws, "emails", 100, "emailAes", force_reconciliation=True)
    assert r.audience_type == "experience_cloud"
    assert audience_members(ws, "emails") == {"P1", "P2"}
    with ws.session() as con:
        assert con.execute("SELECT type FROM audiences WHERE label = 'emails'").fetchone() == (
            "experience_cloud",
        )


def test_a_dry_run_writes_nothing_and_counts_like_the_real_import(ws: Workspace) -> None:
    drop(ws, 14016, [f"{vid(1)}\t100", f"{vid(9)}\t100", "x\t100"])
    before = snapshot(ws)
    dry = import_audience(ws, "A", 100, "defaultDataSource", dry_run=True)
    assert dry.dry_run and dry.run_id is None
    assert snapshot(ws) == before
    real = import_audience(ws, "A", 100, "defaultDataSource")
    assert {**dry.to_json(), "run_id": None, "dry_run": None, "available_from": None, "available_to": None} == {
        **real.to_json(), "run_id": None, "dry_run": None, "available_from": None, "available_to": None}


DERIVED_ID_CACHE = {"derived_ids", "derived_state"}


def everything_but_the_cache(root: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Every table of the database but the derived-ID cache (listed from DuckDB's catalog, so
    that a new table is covered), row by row, and every file under ``runs/`` with its digest."""
    with Workspace(root).session() as con:
        names = [n for (n,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT temporary ORDER BY table_name"
        ).fetchall()]
        assert DERIVED_ID_CACHE <= set(names) and "runs" in names
        tables = {
            name: sorted(repr(row) for row in con.execute(f'SELECT * FROM "{name}"').fetchall())
            for name in names if name not in DERIVED_ID_CACHE
        }
    runs = root / "runs"
    files = {str(p.relative_to(runs)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(runs.rglob("*")) if p.is_file()}
    return tables, files


@pytest.mark.slow
def test_dry_runs_of_every_sample_audience_write_nothing_but_the_cache(
    sample_template: Path, tmp_path: Path
) -> None:
    """SPEC §5.9: a dry run writes no audience, state, batch record, run or file; it may
    refresh the derived-ID cache (and does here: the profiles' keys were never derived)."""
    root = tmp_path / "ws"
    shutil.copytree(sample_template, root)
    doc = json.loads((root / "samples.json").read_text())
    first = doc["imports"][0]
    import_audience(root, first["label"], first["shared_audience"], first["data_source"],
                    force_reconciliation=first["force_reconciliation"])
    before = everything_but_the_cache(root)
    with Workspace(root).session() as con:
        cache_before = con.execute("SELECT count(*) FROM derived_state").fetchall()
    assert before[0]["audiences"] and before[0]["runs"] and before[1]  # something to keep
    for item in doc["imports"]:
        for keep_members in (True, False):
            r = import_audience(root, item["label"], item["shared_audience"], item["data_source"],
                                force_reconciliation=item["force_reconciliation"], dry_run=True,
                                keep_members=keep_members)
            assert counts(r) == item["expected"], item["label"]
    assert everything_but_the_cache(root) == before
    with Workspace(root).session() as con:
        assert con.execute("SELECT count(*) FROM derived_state").fetchall() != cache_before


def test_min_match_rate_records_the_run_then_exits_1(ws: Workspace, runner: CliRunner) -> None:
    drop(ws, 14016, [f"{vid(1)}\t100", f"{vid(9)}\t100"])
    code, data, err = run_import(runner, ws, "--label", "A", "--shared-audience", "100",
                                 "--data-source", "defaultDataSource", "--min-match-rate", "0.9")
    assert code == 1
    assert data["error"]["code"] == "match_rate_low" and data["match_rate"] == 0.5
    assert (ws.run_dir(data["run_id"]) / "result.json").is_file()
    assert audience_members(ws, "A") == {"P1"}
    code, data, _ = run_import(runner, ws, "--label", "A", "--shared-audience", "100",
                               "--data-source", "defaultDataSource", "--min-match-rate", "0.5")
    assert code == 0
    code, data, err = run_import(runner, ws, "--label", "A", "--shared-audience", "100",
                                 "--data-source", "defaultDataSource", "--min-match-rate", "0.9",
                                 "--dry-run")
    assert code == 1 and data["error"]["code"] == "match_rate_low" and data["run_id"] is None
    assert "dry run" in err and "nothing was written" in err


def test_a_failure_mid_import_changes_nothing(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    drop(ws, 14016, [f"{vid(1)}\t100"])
    import_audience(ws, "A", 100, "defaultDataSource")
    drop(ws, 14016, [f"{vid(2)}\t100"], mode="iter", ts=1700000001000)
    before = snapshot(ws)

    def boom(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(importing, "_store_audience", boom)
    with pytest.raises(RuntimeError):
        import_audience(ws, "A", 100, "defaultDataSource")
    monkeypatch.undo()
    tables, runs = snapshot(ws)
    assert tables == before[0]
    failed = set(runs) - set(before[1])
    assert len(failed) == 1
    result = json.loads((ws.runs_dir / failed.pop() / "result.json").read_text())
    assert result["status"] == "failed" and "disk full" in result["error"]["message"]
    assert audience_members(ws, "A") == {"P1"}


def test_a_corrupt_gzip_waits_and_the_import_goes_on(ws: Workspace, runner: CliRunner) -> None:
    # SPEC §4.1 (issue 12): a compressed file that cannot be read may still be arriving; its batch
    # waits with the reason instead of failing the import.
    drop(ws, 14016, [f"{vid(1)}\t100"])
    corrupt = ws.config.import_drop / "ftp_1_14016_iter_1700000001000.sync.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08junk")
    settled(corrupt)
    code, data, err = run_import(runner, ws, "--label", "A", "--shared-audience", "100",
                                 "--data-source", "defaultDataSource")
    assert code == 0, err
    assert data["batches_applied"] == 1 and data["batches_waiting"] == 1
    out = runner.invoke(cli, ["batches", "-w", str(ws.root), "--json"])
    waiting = json.loads(out.stdout)["data_sources"]["defaultDataSource"]["waiting"]
    assert waiting[0]["name"] == "ftp_1_14016_iter_1700000001000"
    assert "cannot be decompressed" in waiting[0]["reason"]


# -- keys never leave their key file -------------------------------------------------------------


def _key_forms(hex_key: str) -> list[bytes]:
    raw = bytes.fromhex(hex_key)
    return [hex_key.lower().encode(), hex_key.upper().encode(), raw, base64.b64encode(raw),
            hex_key[:32].encode()]


@pytest.mark.slow
def test_no_key_in_any_workspace_file_after_runs_of_every_kind(sample_template: Path, tmp_path: Path,
                                                                ws: Workspace, runner: CliRunner) -> None:
    root = tmp_path / "samples"
    shutil.copytree(sample_template, root)
    doc = json.loads((root / "samples.json").read_text())
    for item in doc["imports"]:
        args = ["import", "-w", str(root), "--json", "-v", "--label", item["label"],
                "--shared-audience", str(item["shared_audience"]), "--data-source", item["data_source"]]
        if item["force_reconciliation"]:
            args.append("--force-reconciliation")
        assert runner.invoke(cli, args).exit_code == 0
    import_audience(root, "dry", doc["imports"][0]["shared_audience"], doc["imports"][0]["data_source"],
                    dry_run=True)
    drop(ws, 30003, [f"{aes('alice@example.com')}\t100"])
    drop(ws, 30004, [f"{aes('+12015550101', encoding='hex')}\t100"])
    import_audience(ws, "e", 100, "emailAes")
    import_audience(ws, "s", 100, "smsAes", force_reconciliation=True)
    demo_key = (root / "keys" / "demo.key").read_text().strip()
    for folder, key_hex, key_file in ((root, demo_key, root / "keys/demo.key"),
                                      (ws.root, KEY_HEX, ws.root / "keys/sms.key")):
        forms = _key_forms(key_hex)
        for path in folder.rglob("*"):
            if path.is_file() and path != key_file:
                data = path.read_bytes()
                for form in forms:
                    assert form not in data, f"a form of the key is in {path}"
