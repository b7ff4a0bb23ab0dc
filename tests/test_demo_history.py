"""The demo's two weeks: samples with a history, played day by day, and the index that shows them."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

from audtools.jobs.rendering import write_index
from audtools.samples import create_samples
from audtools.samples.demo import play_history
from audtools.samples.history import CRM_LOAD_DAY, PLAYED, REJECTS_DAY
from audtools.workspace import init_workspace
from audtools.workspace.runs import load_runs

DAYS = 14


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], bool]:
    """A sample workspace with two weeks of history, every day delivered and imported (in this
    process: the jobs' papermill runs are the demo's, too slow here), and its index."""
    root = tmp_path_factory.mktemp("history") / "ws"
    create_samples(init_workspace(root), history_days=DAYS)
    lines, ok = play_history(root, jobs=())
    write_index(root)
    return root, lines, ok


def _doc(root: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((root / "samples.json").read_text(encoding="utf-8"))
    return doc


def _imports(root: Path) -> list[dict[str, Any]]:
    return [r for r in load_runs(root) if r.get("kind") == "import"]


def test_the_history_keeps_what_samples_json_promised(
    played: tuple[Path, list[str], bool], sample_template: Path
) -> None:
    root, _lines, _ok = played
    with_history, without = _doc(root), _doc(sample_template)
    assert set(with_history) == set(without) | {"history"}
    for key in without:
        assert with_history[key] == without[key], key


def test_every_day_gives_the_counts_of_samples_json(played: tuple[Path, list[str], bool]) -> None:
    root, lines, ok = played
    assert ok, "\n".join(line for line in lines if "NO" in line)
    days = _doc(root)["history"]["days"]
    assert [d["day"] for d in days] == list(range(1, DAYS + 1))
    runs = _imports(root)
    assert len(runs) == DAYS * len(PLAYED)
    for day in days:
        by_label = {r["audience"]["label"]: r for r in runs
                    if r["delivered_at"] == day["delivered_at"]}
        assert set(by_label) == set(PLAYED.values()), day["day"]
        for item in day["imports"]:
            run = by_label[item["label"]]
            for key, value in item["expected"].items():
                got = run["audience"]["type"] if key == "type" else run[key]
                assert got == value, (day["day"], item["label"], key)


def _series(root: Path, name: str) -> list[dict[str, Any]]:
    page = (root / "runs" / "index.html").read_text(encoding="utf-8")
    found = re.search(rf"<figure class='aud-figure' data-chart='{name}' data-points='([^']*)'", page)
    assert found, name
    points: list[dict[str, Any]] = json.loads(html.unescape(found.group(1)))
    return points


def test_the_index_charts_hold_one_point_per_delivery(played: tuple[Path, list[str], bool]) -> None:
    root, _lines, _ok = played
    deliveries = [d["delivered_at"] for d in _doc(root)["history"]["days"]]
    for name in ("match_rate", "members", "rows_rejected"):
        points = _series(root, name)
        assert {p["data_source"] for p in points} == set(PLAYED), name
        for source in PLAYED:
            assert [p["x"] for p in points if p["data_source"] == source] == deliveries, name
    unmatched = _series(root, "unmatched")
    assert [p["x"] for p in unmatched if p["reason"] == "no_profile"] == deliveries
    page = (root / "runs" / "index.html").read_text(encoding="utf-8")
    assert "delivery time (UTC" in page or "Each point is a delivery" in page
    assert page.count("<figcaption") == 4


def test_the_index_shows_the_events(played: tuple[Path, list[str], bool]) -> None:
    root, _lines, _ok = played

    def values(name: str, source: str) -> list[float]:
        return [p["y"] for p in _series(root, name) if p["data_source"] == source]

    for source in ("samplesVisitorId", "samplesCrmId"):  # the CRM load of day 6
        rates = values("match_rate", source)
        jump = rates[CRM_LOAD_DAY - 1] - rates[CRM_LOAD_DAY - 2]
        assert jump > 20, (source, rates)
        assert max(abs(b - a) for a, b in zip(rates, rates[1:], strict=False)) == jump
    rejected = values("rows_rejected", "samplesEmailSha256")  # the malformed rows of day 9
    assert rejected[REJECTS_DAY - 1] >= 100 > max(rejected[1:REJECTS_DAY - 1] + rejected[REJECTS_DAY:])
    members = values("members", "samplesSmsAes")  # the segment that grows
    assert all(b > a for a, b in zip(members, members[1:], strict=False))


def test_a_reimport_keeps_the_delivery_time(played: tuple[Path, list[str], bool]) -> None:
    from audtools.importing.flow import import_audience

    root, _lines, _ok = played
    last = _doc(root)["history"]["days"][-1]
    item = last["imports"][0]
    again = import_audience(root, item["label"], item["shared_audience"], item["data_source"],
                            dry_run=True, progress=False).to_json()
    assert again["batches_applied"] == 0
    assert again["delivered_at"] == last["delivered_at"]


def test_the_explorer_shows_the_past_deliveries(played: tuple[Path, list[str], bool]) -> None:
    from audtools.widgets import MatchRateExplorer

    root, _lines, _ok = played
    item = _doc(root)["history"]["days"][0]["imports"][0]  # High value visitors, visitor IDs
    explorer = MatchRateExplorer(root, progress=False)
    explorer.data_sources.value = (item["data_source"],)
    explorer.shared_audience.value = item["shared_audience"]
    deliveries = [d["delivered_at"] for d in _doc(root)["history"]["days"]]
    assert [p["x"] for p in explorer.past_points] == deliveries
    assert bytes(explorer.past.value).startswith(b"\x89PNG")
    assert explorer.past in explorer.results_row.children
