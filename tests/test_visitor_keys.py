"""Visitor IDs stored as 128-bit integers (schema 5): leading zeros kept, and a workspace of the
schema before (text IDs) migrated with the same audiences, counts and onboarding files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from audtools.exporting.flow import export_audience
from audtools.importing.flow import import_audience
from audtools.profiles.loading import load_profiles
from audtools.samples import create_samples
from audtools.workspace import Workspace, init_workspace
from audtools.workspace import database as store
from audtools.workspace.audiences import audience_members

ZEROS = "0" * 37 + "7"  # a visitor ID that is almost all leading zeros
TOP = "9" * 38  # the largest visitor ID: 10**38 - 1 still fits a HUGEINT


def _imports(ws: Workspace) -> list[dict[str, Any]]:
    return json.loads((ws.root / "samples.json").read_text(encoding="utf-8"))["imports"]


def _state(ws: Workspace) -> dict[str, Any]:
    """Every import of the samples, its counts, its members and its outcomes, the segment
    state and the visitor IDs as text."""
    out: dict[str, Any] = {}
    for item in _imports(ws):
        r = import_audience(ws, item["label"], item["shared_audience"], item["data_source"],
                            force_reconciliation=item["force_reconciliation"])
        outcomes = r.member_outcomes
        out[item["label"]] = (
            [r.members, r.undecryptable, r.matched, r.profiles, r.addresses],
            audience_members(ws, item["label"]).to_dict("list"),
            outcomes.to_dict("list") if outcomes is not None else None,
        )
    with ws.session() as con:
        out["state"] = con.execute("SELECT * FROM segment_state ORDER BY ALL").fetchall()
        out["visitors"] = con.execute("SELECT * FROM visitors ORDER BY ALL").fetchall()
    return out


def _export_rows(ws: Workspace, name: str) -> list[str]:
    """Export every profile to a new segment; the rows its onboarding files hold, without the
    segment's own sid."""
    drop = ws.root / "drops/export"
    seen = set(drop.iterdir()) if drop.exists() else set()
    result = export_audience(ws, segment_name=name, data_source="samplesVisitorId",
                             keep_transitions=False)
    rows: list[str] = []
    for path in sorted(set(drop.iterdir()) - seen):
        rows += path.read_bytes().decode("utf-8").replace(f"d_sid={result.shared_audience.sid}", "SID").splitlines()
    assert rows
    return sorted(rows)


def _downgrade(ws: Workspace) -> None:
    """What audtools left before integer visitor IDs: text columns, no views, the version before."""
    version = store.MIGRATIONS.index(store.VISITOR_KEYS_MIGRATION)
    with ws.session() as con:
        con.execute("SET search_path = 'main'")
        con.execute(
            f"""
            CREATE TABLE v3_visitors AS SELECT * FROM shown.visitors;
            CREATE TABLE v3_state AS SELECT * FROM shown.segment_state;
            DROP VIEW shown.visitors;
            DROP VIEW shown.segment_state;
            DROP SCHEMA shown;
            DROP TABLE visitor_keys;
            DROP TABLE visitor_state;
            DROP TABLE declared_state;
            ALTER TABLE v3_visitors RENAME TO visitors;
            ALTER TABLE v3_state RENAME TO segment_state;
            UPDATE meta SET value = '{version}' WHERE key = 'schema_version';
            """
        )


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = init_workspace(tmp_path_factory.mktemp("keys") / "ws")
    create_samples(ws)
    return ws


def test_visitor_ids_are_stored_as_integers_and_shown_with_their_leading_zeros(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    (tmp_path / "p.csv").write_text("profile_id,email\nP1,a@x.org\nP2,b@x.org\n")
    (tmp_path / "v.csv").write_text(f"profile_id,visitor_id\nP1,{ZEROS}\nP2,{TOP}\nP2,{ZEROS}\n")
    load_profiles(ws, tmp_path / "p.csv", visitors=tmp_path / "v.csv")
    with ws.session() as con:
        assert con.execute("SELECT * FROM visitors ORDER BY ALL").fetchall() == [
            ("P1", ZEROS), ("P2", ZEROS), ("P2", TOP)]
        assert con.execute("SELECT DISTINCT typeof(vid) FROM visitor_keys").fetchall() == [("HUGEINT",)]
        assert con.execute("SELECT vid FROM visitor_keys ORDER BY vid").fetchall() == [
            (7,), (7,), (10**38 - 1,)]


def test_a_workspace_of_the_schema_before_migrates_with_the_same_results(samples: Workspace) -> None:
    ws = samples
    before = _state(ws)
    rows_before = _export_rows(ws, "Keys before")
    _downgrade(ws)
    with store.connect(ws.config.database, read_only=True) as con:
        assert con.execute("SELECT data_type FROM information_schema.columns "
                           "WHERE table_name = 'visitors' AND column_name = 'visitor_id'"
                           ).fetchall() == [("VARCHAR",)]
    after = _state(ws)  # the first session migrates
    assert list(ws.root.glob("campaign.duckdb.v*-*.bak"))
    assert after == before
    with ws.session() as con:
        assert store.schema_info(con)[0] == store.SCHEMA_VERSION
        assert con.execute("SELECT count(*) FROM visitor_state").fetchall()[0][0] > 0
        kinds = con.execute("SELECT DISTINCT typeof(vid) FROM visitor_state").fetchall()
        assert kinds == [("HUGEINT",)]
    # Already exported: the ledger still holds every ID of the first export.
    again = export_audience(ws, shared_audience="Keys before", data_source="samplesVisitorId",
                            keep_transitions=False)
    assert again.ids_exported == 0 and again.ids_already_shared == len(rows_before)
    assert _export_rows(ws, "Keys after") == rows_before


def test_a_declared_id_source_the_migration_took_for_visitor_ids_is_moved_back(
    samples: Workspace,
) -> None:
    """A declared-ID data source whose IDs are all 38 digits looks like visitor IDs to the
    migration; its first use puts its state back as text."""
    from audtools.importing.state import settle_state_kind

    ws = samples
    source = next(s for s in ws.config.data_sources.values() if s.reconciliation == "declared_id")
    with ws.session() as con:
        con.execute("BEGIN TRANSACTION")
        con.execute("INSERT INTO visitor_state VALUES (?, 7, 1)", [source.id])
        settle_state_kind(con, source)
        moved = con.execute("SELECT id FROM declared_state WHERE data_source = ? AND sid = 1",
                            [source.id]).fetchall()
        left = con.execute("SELECT count(*) FROM visitor_state WHERE data_source = ?",
                           [source.id]).fetchall()
        con.execute("ROLLBACK")
    assert moved == [(ZEROS,)]
    assert left == [(0,)]
