"""Charts: matplotlib figures from a run's result and from the run history; never shown."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from audtools import charts
from audtools.jobs.history import runs_frame


def _import(run_id: str, started: str, source: str, label: str, members: int, matched: int,
            undecryptable: int = 0, kind: str = "experience_cloud") -> dict[str, Any]:
    unmatched = members - matched - undecryptable
    return {
        "run_id": run_id, "kind": "import", "status": "succeeded", "started_at": started,
        "audience": {"label": label, "type": kind, "shared_audience": {"sid": 7, "name": "S"},
                     "data_source": source},
        "members": members, "matched": matched, "undecryptable": undecryptable,
        "unmatched": unmatched, "profiles": 0 if kind == "file" else matched,
        "addresses": matched if kind == "file" else 0, "match_rate": matched / members,
        "unmatched_reasons": {"undecryptable": undecryptable, "no_profile": unmatched},
        "available_from": "2026-01-02T00:00:00Z", "available_to": "2026-01-02T12:00:00Z",
    }


def _export(run_id: str, started: str, new: int, old: int) -> dict[str, Any]:
    return {
        "run_id": run_id, "kind": "export", "status": "succeeded", "started_at": started,
        "shared_audience": {"sid": 9, "name": "Adults", "created": False},
        "data_source": "ds", "profiles_targeted": 100, "profiles_exported": 90,
        "profiles_without_id": 10, "ids_exported": new, "ids_already_shared": old,
        "files": ["f.sync"], "available_from": "2026-01-05T00:00:00Z",
        "available_to": "2026-01-05T12:00:00Z",
    }


HISTORY = runs_frame([
    _export("e2", "2026-01-04T00:00:00Z", 5, 95),
    _export("e1", "2026-01-03T00:00:00Z", 100, 0),
    {"run_id": "f", "kind": "import", "status": "failed", "started_at": "2026-01-03T00:00:00Z",
     "error": {"code": "x", "message": "y"}},
    _import("c", "2026-01-03T00:00:00Z", "email", "Mail", 50, 30, 5, "file"),
    _import("b", "2026-01-02T00:00:00Z", "vid", "HV", 100, 80),
    _import("a", "2026-01-01T00:00:00Z", "vid", "HV", 100, 70),
])


@pytest.fixture(autouse=True)
def _never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: Any, **_k: Any) -> None:
        raise AssertionError("charts never call show()")

    monkeypatch.setattr(plt, "show", refuse)
    monkeypatch.setattr(Figure, "show", refuse)


def _texts(fig: Figure) -> str:
    return " ".join(t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text")))


def test_funnel_of_an_experience_cloud_import() -> None:
    fig = charts.funnel_chart(_import("a", "2026-01-01T00:00:00Z", "vid", "HV", 100, 70))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "profiles (distinct)", "matched (IDs)", "members (IDs)"]
    assert [round(p.get_width()) for p in ax.patches] == [70, 70, 100]
    text = _texts(fig)
    assert "Funnel of HV" in text and "70.0% of members" in text
    assert "available 02 Jan 00:00 to 02 Jan 12:00 UTC" in text and ax.get_xlabel() == "count"
    assert plt.get_fignums() == []  # built without pyplot: nothing kept, nothing shown


def test_funnel_of_a_file_audience_shows_decryption_and_addresses() -> None:
    fig = charts.funnel_chart(_import("c", "2026-01-03T00:00:00Z", "email", "Mail", 50, 30, 5, "file"))
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["addresses (distinct)", "matched (IDs)", "decrypted (IDs)", "members (IDs)"]
    assert charts.funnel_chart(_import("a", "t", "v", "L", 10, 5), encrypted=True).axes[0] \
        .get_yticklabels()[2].get_text() == "decrypted (IDs)"


def test_funnel_without_members_says_so() -> None:
    data = {**_import("a", "2026-01-01T00:00:00Z", "vid", "HV", 1, 0), "members": 0}
    assert "No members" in _texts(charts.funnel_chart(data))


def test_match_rate_over_time_one_line_per_data_source() -> None:
    fig = charts.match_rate_chart(HISTORY)
    ax = fig.axes[0]
    lines = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
    assert lines == {"email": [60.0], "vid": [70.0, 80.0]}  # failed runs and exports left out
    assert ax.get_ylabel() == "match rate (% of members)" and ax.get_xlabel() == "run start (UTC)"
    assert ax.get_ylim()[0] == 0
    only = charts.match_rate_chart(HISTORY, data_source="vid").axes[0]
    assert [line.get_label() for line in only.get_lines()] == ["vid"]


def test_unmatched_reasons_stacked_per_run() -> None:
    ax = charts.unmatched_chart(HISTORY).axes[0]
    heights = [round(p.get_height()) for p in ax.patches]
    # no profile (a, b, c), then undecryptable on top (a, b, c); oldest on the left
    assert heights == [30, 20, 15, 0, 0, 5]
    assert ax.get_ylabel() == "unmatched members (IDs)"
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["HV", "HV", "Mail"]


def test_exported_versus_already_shared_per_export() -> None:
    fig = charts.exports_chart(HISTORY)
    ax = fig.axes[0]
    assert [round(p.get_height()) for p in ax.patches] == [100, 5, 0, 95]
    assert ax.get_ylabel() == "IDs"
    assert "latest export available 05 Jan 00:00 to 05 Jan 12:00 UTC" in _texts(fig)
    assert len(charts.exports_chart(HISTORY, shared_audience="Other").axes[0].patches) == 0


@pytest.mark.parametrize("chart", [charts.match_rate_chart, charts.unmatched_chart, charts.exports_chart])
def test_history_charts_on_an_empty_history(chart: Any) -> None:
    fig = chart(runs_frame([]))
    assert isinstance(fig, Figure) and "yet" in _texts(fig)
    assert charts.figure_png(fig).startswith(b"\x89PNG")


def test_charts_draw_on_given_axes() -> None:
    fig = Figure()
    ax = fig.add_subplot()
    assert charts.match_rate_chart(HISTORY, ax=ax) is fig


def _delivered(run_id: str, started: str, delivered: str, source: str, members: int,
               matched: int, undecryptable: int = 0, rejected: int = 0) -> dict[str, Any]:
    record = _import(run_id, started, source, source.upper(), members, matched, undecryptable)
    return {**record, "delivered_at": delivered, "rows_rejected": rejected}


# Three daily deliveries imported minutes apart, the last one imported twice.
DELIVERED = runs_frame([
    _delivered("d4", "2026-02-01T10:03:00Z", "2026-01-03T06:00:00Z", "vid", 120, 100),
    _delivered("d3", "2026-02-01T10:02:00Z", "2026-01-03T06:00:00Z", "vid", 120, 100),
    _delivered("e1", "2026-02-01T10:01:30Z", "2026-01-01T06:00:00Z", "email", 50, 30, 5, 40),
    _delivered("d2", "2026-02-01T10:01:00Z", "2026-01-02T06:00:00Z", "vid", 110, 90),
    _delivered("d1", "2026-02-01T10:00:00Z", "2026-01-01T06:00:00Z", "vid", 100, 50, 0, 3),
])


def test_by_delivery_one_point_per_delivery() -> None:
    fig = charts.match_rate_chart(DELIVERED)
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("delivery time (UTC")
    points = charts.chart_data(fig)
    assert [(p["x"][:10], p["y"]) for p in points if p["data_source"] == "vid"] == [
        ("2026-01-01", 50.0), ("2026-01-02", 90.0 / 110 * 100), ("2026-01-03", 100 / 120 * 100)]
    by_start = charts.match_rate_chart(DELIVERED, time="started_at")
    assert by_start.axes[0].get_xlabel() == "run start (UTC)"
    assert len([p for p in charts.chart_data(by_start) if p["data_source"] == "vid"]) == 4
    assert [p["y"] for p in charts.chart_data(charts.members_chart(DELIVERED))
            if p["data_source"] == "email"] == [50.0]
    assert max(p["y"] for p in charts.chart_data(charts.rejects_chart(DELIVERED))) == 40.0
    with pytest.raises(ValueError):
        charts.match_rate_chart(DELIVERED, time="finished_at")


def test_unmatched_by_delivery_summed_and_never_clipped() -> None:
    fig = charts.unmatched_chart(DELIVERED)
    ax = fig.axes[0]
    points = charts.chart_data(fig)
    no_profile = [(p["x"][:10], p["y"]) for p in points if p["reason"] == "no_profile"]
    # 1 Jan: vid (50) and email (15) summed; the twice-imported 3 Jan counted once.
    assert no_profile == [("2026-01-01", 65.0), ("2026-01-02", 20.0), ("2026-01-03", 20.0)]
    tallest = max(p.get_y() + p.get_height() for p in ax.patches)
    assert ax.get_ylim()[1] >= tallest * 1.1
    assert "70" in _texts(fig)  # each bar's total is written above it


@pytest.mark.parametrize("chart", [charts.match_rate_chart, charts.members_chart,
                                   charts.rejects_chart, charts.unmatched_chart])
def test_history_charts_have_a_caption_and_a_legend_beside_the_plot(chart: Any) -> None:
    fig = chart(DELIVERED)
    text = charts.caption(fig)
    assert text.endswith(".") and text.count(". ") == 0 and text in _texts(fig)
    legend = fig.axes[0].get_legend()
    assert legend is not None
    fig.canvas.draw()  # type: ignore[no-untyped-call]
    box = legend.get_window_extent()
    assert box.x0 >= fig.axes[0].get_window_extent().x1 - 1


def test_every_chart_has_a_caption() -> None:
    assert charts.caption(charts.funnel_chart(_import("a", "t", "v", "L", 10, 5))).endswith(".")
    assert charts.caption(charts.exports_chart(HISTORY)).endswith(".")
    assert charts.caption(Figure()) == ""


def test_export_bars_never_clipped() -> None:
    ax = charts.exports_chart(HISTORY).axes[0]
    tallest = max(p.get_y() + p.get_height() for p in ax.patches)
    assert ax.get_ylim()[1] >= tallest * 1.1
