"""Audiences: list, extract members (CSV, Parquet), delete; profiles erasure removes members."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from audtools.cli.main import cli
from audtools.profiles.loading import load_profiles
from audtools.workspace import Workspace, init_workspace

SAMPLES = Path(__file__).parent.parent / "data" / "samples"


@pytest.fixture
def imported(tmp_path: Path, runner: CliRunner) -> Workspace:
    """The repository samples, with 'High value' (10603117) imported."""
    root = tmp_path / "ws"
    init_workspace(root)
    for f in SAMPLES.iterdir():
        if f.name.startswith("ftp_") or f.name == "catalog.json":
            shutil.copy(f, root / "drops/import" / f.name)
    load_profiles(root, SAMPLES / "profiles.csv", visitors=SAMPLES / "visitors.csv")
    result = runner.invoke(cli, ["import", "-w", str(root), "--label", "High value",
                                 "--shared-audience", "High value visitors",
                                 "--data-source", "defaultDataSource", "-q"])
    assert result.exit_code == 0, result.output
    return Workspace(root)


def test_list_audiences(imported: Workspace, runner: CliRunner) -> None:
    result = runner.invoke(cli, ["audiences", "-w", str(imported.root), "--json"])
    assert result.exit_code == 0, result.output
    (aud,) = json.loads(result.stdout)["audiences"]
    assert (aud["label"], aud["type"], aud["sid"], aud["data_source"], aud["size"]) == (
        "High value", "experience_cloud", 10603117, "defaultDataSource", 5)
    text = runner.invoke(cli, ["audiences", "-w", str(imported.root)])
    assert "High value" in text.output and "experience_cloud" in text.output


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_members_file_has_one_profile_id_column(imported: Workspace, runner: CliRunner,
                                                tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"members{suffix}"
    result = runner.invoke(cli, ["audiences", "members", "-w", str(imported.root), "High value",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    if suffix == ".csv":
        rows = list(csv.reader(out.open()))
        assert rows[0] == ["profile_id"]
        ids = [r[0] for r in rows[1:]]
    else:
        table = pq.read_table(out)
        assert table.column_names == ["profile_id"]
        ids = table["profile_id"].to_pylist()
    assert len(ids) == 5 and len(set(ids)) == 5 and all(i.startswith("P0000") for i in ids)
    assert not list(tmp_path.glob(".*.tmp"))


def test_unknown_audience_and_bad_output_are_refused(imported: Workspace, runner: CliRunner,
                                                     tmp_path: Path) -> None:
    r = runner.invoke(cli, ["audiences", "members", "-w", str(imported.root), "nope", "-o",
                            str(tmp_path / "m.csv"), "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["error"]["code"] == "unknown_audience"
    r = runner.invoke(cli, ["audiences", "members", "-w", str(imported.root), "High value", "-o",
                            str(tmp_path / "m.txt")])
    assert r.exit_code == 1 and not (tmp_path / "m.txt").exists()


def test_delete_audience(imported: Workspace, runner: CliRunner) -> None:
    r = runner.invoke(cli, ["audiences", "delete", "-w", str(imported.root), "High value", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout) == {"label": "High value", "members_deleted": 5}
    with imported.session() as con:
        assert con.execute("SELECT count(*) FROM audience_members").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM audiences").fetchone() == (0,)


def test_profiles_delete_removes_memberships(imported: Workspace, runner: CliRunner, tmp_path: Path) -> None:
    with imported.session() as con:
        (victim,) = con.execute("SELECT min(profile_id) FROM audience_members").fetchone()
    erase = tmp_path / "erase.csv"
    erase.write_text(f"profile_id\n{victim}\n")
    r = runner.invoke(cli, ["profiles", "delete", "-w", str(imported.root), str(erase), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["profiles_deleted"] == 1 and data["memberships_deleted"] == 1
    with imported.session() as con:
        assert con.execute("SELECT count(*) FROM audience_members WHERE profile_id = ?",
                           [victim]).fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM visitors WHERE profile_id = ?", [victim]).fetchone() == (0,)


def test_profiles_load_through_the_cli(tmp_path: Path, runner: CliRunner) -> None:
    root = tmp_path / "ws"
    init_workspace(root)
    r = runner.invoke(cli, ["profiles", "load", "-w", str(root), str(SAMPLES / "profiles.csv"),
                            "--visitors", str(SAMPLES / "visitors.csv"), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["profiles_read"] == 10 and data["profiles_total"] == 10
    assert data["visitors_added"] == data["visitors_read"] - data["visitors_rejected"]
    assert "crm_id" in data["columns"]
