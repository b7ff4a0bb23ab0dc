"""The widget screens, driven through their controllers without a browser.

Each test sets widget values and clicks buttons (``button.click()``) on a copy of a sample
workspace, then checks the workspace (audiences, drop files, runs) and what the screen shows.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
from conftest import samples_json

from audtools.samples.batches import CART, HIGH_VALUE, MOBILE, RULE, TRAIT
from audtools.widgets import CreateAudienceScreen, MatchRateExplorer, SaveAudienceScreen
from audtools.widgets.create_audience import FORCE_HELP
from audtools.widgets.save_audience import NEW_SEGMENT, TRANSITION_NAME
from audtools.workspace import Workspace
from audtools.workspace.audiences import list_audiences

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
SCREENS = {
    "create_audience": "CreateAudienceScreen",
    "save_audience": "SaveAudienceScreen",
    "explore_match_rates": "MatchRateExplorer",
}
HOLDER_RUN = "20261128T120000Z-b0b0b0"
HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from audtools.workspace.database import WorkspaceLock
    lock = WorkspaceLock(Path(sys.argv[1]), 0, sys.argv[2], "import")
    lock.acquire()
    print("locked", flush=True)
    sys.stdin.read()
    """
)


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def template(sample_template: Path) -> Path:
    """One sample workspace, built once; tests work on copies."""
    return sample_template


@pytest.fixture
def ws(template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the sample workspace."""
    root = tmp_path / "ws"
    shutil.copytree(template, root)
    return root


def samples(root: Path) -> dict[str, dict[str, Any]]:
    doc = json.loads((root / "samples.json").read_text(encoding="utf-8"))
    return {item["label"]: item for item in doc["imports"]}


def snapshot(root: Path) -> dict[str, Any]:
    """What an action could write: the database's tables and the runs' and drops' files."""
    ws = Workspace(root)
    with ws.session() as con:
        tables = {
            t: con.execute(f"SELECT count(*) FROM {t}").fetchone()
            for t in (
                "audiences",
                "audience_members",
                "runs",
                "batches",
                "batch_files",
                "source_state",
                "shared_audiences",
                "export_ledger",
                "pending_exports",
            )
        }
        tables["segment_state"] = con.execute(
            "SELECT count(*), sum(hash(data_source, id, sid)) FROM segment_state"
        ).fetchone()
    files = sorted(
        str(p.relative_to(root))
        for folder in (root / "runs", root / "drops")
        if folder.exists()
        for p in folder.rglob("*")
    )
    return {"tables": tables, "files": files}


def add_operator(root: Path, name: str, login: str) -> None:
    with open(root / "audtools.toml", "a", encoding="utf-8") as fh:
        fh.write(f'\n[[operators]]\nname = "{name}"\nlogin = "{login}"\n')


def start_holder(root: Path) -> subprocess.Popen[str]:
    """Another process holding the workspace lock, as a scheduled job would."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root), HOLDER_RUN],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def stop_holder(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=20)


def fill_create(screen: CreateAudienceScreen, label: str, sid: int, source: str, force: bool = False) -> None:
    screen.label.value = label
    screen.shared_audience.value = sid
    screen.data_source.value = source
    screen.force_reconciliation.value = force


def one_sentence(text: str) -> bool:
    return bool(text) and "\n" not in text and "Traceback" not in text


# -- Create audience ----------------------------------------------------------------------------


def test_create_lists_segments_as_name_and_sid_and_traits_rules_as_not_available(ws: Path) -> None:
    screen = CreateAudienceScreen(ws, progress=False)
    labels = dict((value, label) for label, value in screen.shared_audience.options)
    assert labels[HIGH_VALUE] == "High value visitors (10603117)"
    assert labels[TRAIT].startswith("Loyalty tier (555) — a trait")
    assert "only segments can be imported" in labels[TRAIT]
    assert labels[RULE].startswith("Visited the pricing page (9001) — a rule")
    assert [v for _, v in screen.shared_audience.options][-2:] == [TRAIT, RULE]
    assert screen.audience_type.value == "experience_cloud"
    assert screen.message_kind == "info"


@pytest.mark.parametrize(
    "label",
    [
        "Samples - High value visitors",
        "Samples - Loyalty members",
        "Samples - Cart abandoners (file)",
        "Samples - Cart abandoners (reconciled)",
        "Samples - Mobile app users (file)",
    ],
)
def test_confirm_imports_and_shows_the_counts_of_samples_json(ws: Path, label: str) -> None:
    item = samples(ws)[label]
    expected = item["expected"]
    screen = CreateAudienceScreen(ws, progress=False)
    fill_create(screen, label, item["shared_audience"], item["data_source"], item["force_reconciliation"])
    screen.confirm.click()

    assert screen.message_kind == "done", screen.message
    result = screen.result
    assert result is not None and result.run_id
    got = result.to_json()
    assert got["audience"]["type"] == expected["type"]
    for key in ("members", "undecryptable", "matched", "unmatched", "profiles", "addresses"):
        assert got[key] == expected[key], key
    audiences = list_audiences(ws)
    row = audiences[audiences.label == label].iloc[0]
    assert row.type == expected["type"]
    assert (ws / "runs" / result.run_id / "result.json").is_file()
    shown = screen.result_area.value
    kind = "File" if expected["type"] == "file" else "Experience Cloud"
    assert f"<td style='text-align:right;padding:2px 0'>{kind}</td>" in shown
    assert f"{expected['members']:,}</td>" in shown
    assert "Sync window" in shown and result.available_from.replace("T", " ")[:16] in shown
    assert screen.funnel.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert screen.funnel.layout.display != "none"
    assert "Last import: run " + result.run_id in screen.history.value


@pytest.mark.parametrize("screen_class", [CreateAudienceScreen, SaveAudienceScreen, MatchRateExplorer])
def test_a_folder_that_is_not_a_workspace_is_one_sentence(tmp_path: Path, screen_class: Any) -> None:
    screen = screen_class(tmp_path / "nowhere", progress=False)
    assert screen.message_kind == "error"
    assert "is not an audtools workspace" in screen.message and one_sentence(screen.message)
    assert all(w.disabled for w in screen.controls() if w is not getattr(screen, "refresh", None))


def test_force_reconciliation_is_shown_only_for_encrypted_sources(ws: Path) -> None:
    screen = CreateAudienceScreen(ws, progress=False)
    screen.data_source.value = "samplesVisitorId"
    assert screen.force_box.layout.display == "none"
    screen.data_source.value = "samplesEmailAes"
    assert screen.force_box.layout.display != "none"
    assert "File audience of every decrypted address" in screen.force_help.value
    assert "Email or SMS" in FORCE_HELP
    screen.force_reconciliation.value = True
    screen.data_source.value = "samplesCrmId"
    assert screen.force_box.layout.display == "none"
    assert screen.force_reconciliation.value is False


def test_a_trait_is_refused_on_confirm_with_the_reason(ws: Path) -> None:
    before = snapshot(ws)
    screen = CreateAudienceScreen(ws, progress=False)
    fill_create(screen, "A trait", TRAIT, "samplesVisitorId")
    screen.confirm.click()
    assert screen.message_kind == "error"
    assert screen.message == (
        "Loyalty tier (555) is a trait, not a segment: only segments can be imported. Pick a segment."
    )
    assert screen.result is None
    assert snapshot(ws) == before


def test_only_the_experience_cloud_type_can_be_confirmed(ws: Path) -> None:
    screen = CreateAudienceScreen(ws, progress=False)
    fill_create(screen, "A list", HIGH_VALUE, "samplesVisitorId")
    screen.audience_type.value = "list"
    screen.confirm.click()
    assert screen.message_kind == "error"
    assert "choose the type Experience Cloud" in screen.message
    assert list_audiences(ws).empty


def test_a_refusal_of_the_library_is_one_sentence(ws: Path) -> None:
    screen = CreateAudienceScreen(ws, progress=False)
    # emailEncrypted reads its key from AUDTOOLS_KEY_EMAIL, which is not set.
    fill_create(screen, "No key", CART, "emailEncrypted")
    screen.confirm.click()
    assert screen.message_kind == "error"
    assert one_sentence(screen.message)
    assert "AUDTOOLS_KEY_EMAIL" in screen.message
    assert list_audiences(ws).empty

    # A label held by another shared audience: the library's refusal, shown as is.
    fill_create(screen, "Taken", HIGH_VALUE, "samplesVisitorId")
    screen.confirm.click()
    assert screen.message_kind == "done"
    fill_create(screen, "Taken", MOBILE, "samplesSmsAes")
    screen.confirm.click()
    assert screen.message_kind == "error"
    assert one_sentence(screen.message) and "choose another label" in screen.message


def test_an_unexpected_error_is_one_sentence_not_a_traceback(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("disk on fire\n  File 'x.py', line 1")

    monkeypatch.setattr("audtools.widgets.create_audience.import_audience", broken)
    screen = CreateAudienceScreen(ws, progress=False)
    fill_create(screen, "Broken", HIGH_VALUE, "samplesVisitorId")
    screen.confirm.click()
    assert screen.message_kind == "error"
    assert screen.message.startswith("Something unexpected went wrong (RuntimeError: disk on fire)")
    assert one_sentence(screen.message)
    assert screen.confirm.disabled is False


def test_confirm_shows_a_working_state_before_the_result(ws: Path) -> None:
    screen = CreateAudienceScreen(ws, progress=False)
    seen: list[str] = []
    screen.status.observe(lambda c: seen.append(c["new"]), names="value")
    disabled: list[bool] = []
    screen.confirm.observe(lambda c: disabled.append(c["new"]), names="disabled")
    fill_create(screen, "Working", HIGH_VALUE, "samplesVisitorId")
    screen.confirm.click()
    assert "Working: importing High value visitors (10603117)" in seen[0]
    assert "audtools-done" in seen[-1]
    assert disabled == [True, False]


def test_a_non_ims_operator_sees_the_screen_disabled_with_the_reason(ws: Path) -> None:
    add_operator(ws, "clerk", "native")
    screen = CreateAudienceScreen(ws, operator="clerk", progress=False)
    assert screen.message_kind == "refused"
    assert screen.message.startswith("This screen is disabled: Operator 'clerk' logs in with 'native'")
    assert "IMS" in screen.message
    for widget in screen.controls():
        assert widget.disabled
    # Options stay visible (read-only), and a click changes nothing.
    assert screen.shared_audience.options
    fill_create(screen, "Clerk's", HIGH_VALUE, "samplesVisitorId")
    screen.confirm.click()
    assert screen.message_kind == "refused"
    assert list_audiences(ws).empty


def test_the_busy_workspace_is_named_and_retry_imports(ws: Path) -> None:
    screen = CreateAudienceScreen(ws, lock_wait=0.3, progress=False)
    fill_create(screen, "After the job", HIGH_VALUE, "samplesVisitorId")
    holder = start_holder(ws)
    try:
        screen.confirm.click()
        assert screen.message_kind == "busy"
        assert HOLDER_RUN in screen.message and "(import, pid" in screen.message
        assert screen.message.endswith("Wait for it to finish, then press Retry.")
        assert screen.retry.layout.display != "none"
        assert screen.confirm.disabled is False
    finally:
        stop_holder(holder)
    screen.retry.click()
    assert screen.message_kind == "done", screen.message
    assert screen.retry.layout.display == "none"
    assert "After the job" in set(list_audiences(ws).label)


def test_a_screen_opened_while_busy_loads_on_retry(ws: Path) -> None:
    holder = start_holder(ws)
    try:
        screen = SaveAudienceScreen(ws, lock_wait=0.2, progress=False)
        assert screen.message_kind == "busy" and HOLDER_RUN in screen.message
        assert screen.shared_audience.options == ()
    finally:
        stop_holder(holder)
    screen.retry.click()
    assert screen.message_kind == "info", screen.message
    assert screen.shared_audience.options
    assert screen.targeted == samples_json(ws)["profiles"]


# -- Save audience ------------------------------------------------------------------------------


def test_the_count_follows_the_condition(ws: Path) -> None:
    screen = SaveAudienceScreen(ws, progress=False)
    everyone = samples_json(ws)["profiles"]
    assert screen.targeted == everyone
    assert f"<b>{everyone:,}</b> profiles targeted" in screen.count.value
    assert "loyalty_points" in screen.columns_help.value
    profiles = pd.read_csv(ws / "samples" / "profiles.csv", dtype={"country": str})
    screen.condition.value = "country = 'FR'"
    assert screen.targeted == int((profiles.country == "FR").sum())
    screen.condition.value = "loyalty_points >= 500 AND country = 'US'"
    want = int(((profiles.loyalty_points >= 500) & (profiles.country == "US")).sum())
    assert screen.targeted == want
    assert f"<b>{want:,}</b>" in screen.count.value
    screen.condition.value = "shoe_size > 40"
    assert screen.targeted is None
    assert screen.message_kind == "error" and one_sentence(screen.message)
    assert "shoe_size" in screen.count.value
    screen.condition.value = "(SELECT 1) = 1"
    assert screen.targeted is None and "subquery" in screen.message
    screen.condition.value = ""
    assert screen.targeted == everyone


def test_the_count_holds_no_connection_between_events(ws: Path) -> None:
    screen = SaveAudienceScreen(ws, lock_wait=0.2, progress=False)
    screen.condition.value = "country = 'FR'"
    # Another process can take the workspace right away: the screen holds nothing.
    holder = start_holder(ws)
    stop_holder(holder)
    assert screen.targeted is not None


def test_save_exports_to_an_existing_segment_with_an_outbound_transition(ws: Path) -> None:
    screen = SaveAudienceScreen(ws, progress=False)
    screen.condition.value = "country = 'US'"
    screen.shared_audience.value = HIGH_VALUE
    screen.data_source.value = "samplesVisitorId"
    screen.outbound.value = True
    assert screen.start.disabled
    screen.confirm.click()
    assert screen.message_kind == "done", screen.message
    assert screen.message.startswith("Settings confirmed:")
    preview = screen.preview
    assert preview is not None and preview.dry_run
    assert not list((ws / "drops" / "export").glob("*"))
    assert screen.start.disabled is False

    screen.start.click()
    assert screen.message_kind == "done", screen.message
    result = screen.result
    assert result is not None and result.run_id
    assert result.ids_exported == preview.ids_exported > 0
    assert result.profiles_targeted == screen.targeted
    written = [p.name for p in (ws / "drops" / "export").iterdir()]
    assert written == result.files
    rows = (ws / "drops" / "export" / result.files[0]).read_text().splitlines()
    assert len(rows) == result.ids_exported
    assert all(r.endswith(f"\td_sid={HIGH_VALUE}") for r in rows)
    transition = ws / "runs" / result.run_id / TRANSITION_NAME
    frame = pd.read_csv(transition, dtype=str)
    assert list(frame.columns) == ["profile_id", "id"]
    shown = screen.result_area.value
    for key, value in (
        ("ids_exported", result.ids_exported),
        ("ids_already_shared", 0),
        ("profiles_without_id", result.profiles_without_id),
    ):
        assert f"<tr data-key='{key}'>" in shown and f"{value:,}</td>" in shown
    assert result.files[0] in shown and "Sync window" in shown
    assert "Outbound transition" in screen.transition_area.value
    assert f"{len(frame):,} rows" in screen.transition_area.value
    assert frame.profile_id.iloc[0] in screen.transition_area.value
    assert screen.start.disabled  # confirm again before another Start

    # Again: every ID is already shared, nothing is written.
    screen.confirm.click()
    screen.start.click()
    again = screen.result
    assert again is not None
    assert again.ids_exported == 0 and again.ids_already_shared == result.ids_exported
    assert again.files == []
    assert "none (no new ID to share)" in screen.result_area.value


def test_save_creates_a_segment_by_name(ws: Path) -> None:
    screen = SaveAudienceScreen(ws, progress=False)
    screen.segment_name.value = "High value visitors"
    screen.create.click()
    assert screen.message_kind == "error" and "already in the catalog (sid 10603117)" in screen.message
    screen.segment_name.value = "Widget fans"
    screen.create.click()
    assert screen.shared_audience.value == NEW_SEGMENT
    assert dict((v, k) for k, v in screen.shared_audience.options)[NEW_SEGMENT].startswith("Widget fans")
    screen.data_source.value = "samplesCrmId"
    screen.start.click()
    assert screen.message_kind == "error" and "check mark" in screen.message
    screen.confirm.click()
    screen.start.click()
    result = screen.result
    assert result is not None and result.created
    assert result.shared_audience.name == "Widget fans"
    assert result.shared_audience.sid == 10603125
    assert screen.shared_audience.value == 10603125
    assert ("Widget fans (10603125)", 10603125) in screen.shared_audience.options
    assert screen.new_segment is None and screen.segment_name.value == ""
    assert "(created by this export)" in screen.result_area.value
    assert screen.transition_area.value == ""
    assert not (ws / "runs" / str(result.run_id) / TRANSITION_NAME).exists()


def test_save_refuses_with_reasons_and_changed_settings_need_the_check_mark(ws: Path) -> None:
    before = snapshot(ws)
    screen = SaveAudienceScreen(ws, progress=False)
    screen.data_source.value = "samplesVisitorId"
    screen.confirm.click()
    assert screen.message == "Pick a shared audience, or type a Segment name and press Create."
    screen.shared_audience.value = RULE
    screen.confirm.click()
    assert screen.message_kind == "error" and "is a rule, not a segment" in screen.message
    screen.shared_audience.value = HIGH_VALUE
    screen.share.value = False
    assert not screen.share_fields_visible
    screen.confirm.click()
    assert "Share in Adobe Experience Cloud" in screen.message
    screen.share.value = True
    screen.confirm.click()
    assert screen.preview is not None and not screen.start.disabled
    screen.condition.value = "country = 'FR'"
    assert screen.preview is None and screen.start.disabled
    screen.confirm.click()
    screen.outbound.value = True
    assert screen.start.disabled
    assert "confirm them again" in screen.message
    screen.condition.value = "country = "
    screen.confirm.click()
    assert screen.message_kind == "error" and one_sentence(screen.message)
    assert screen.start.disabled
    assert snapshot(ws) == before


def test_a_non_ims_operator_cannot_save(ws: Path) -> None:
    add_operator(ws, "clerk", "native")
    screen = SaveAudienceScreen(ws, operator="clerk", progress=False)
    assert screen.message_kind == "refused" and "IMS" in screen.message
    assert all(w.disabled for w in screen.controls())


# -- Match-rate explorer ------------------------------------------------------------------------


def test_the_explorer_shows_dry_runs_and_writes_nothing(ws: Path) -> None:
    items = samples(ws)
    before = snapshot(ws)
    screen = MatchRateExplorer(ws, progress=False)
    screen.shared_audience.value = CART
    screen.data_sources.value = ("samplesEmailAes", "samplesVisitorId")
    assert set(screen.results) == {"samplesEmailAes", "samplesVisitorId"}
    file_result = screen.results["samplesEmailAes"]
    assert not isinstance(file_result, str)
    expected = items["Samples - Cart abandoners (file)"]["expected"]
    assert file_result.dry_run and file_result.run_id is None
    assert file_result.audience_type == "file"
    for key in ("members", "undecryptable", "matched", "addresses"):
        assert getattr(file_result, key) == expected[key]
    assert "nothing was written" in screen.message
    summary = screen.summary.value
    assert f"<b>{file_result.match_rate:.1%}</b>" in summary
    assert f"<td data-key='undecryptable' style='text-align:right;padding:2px 8px'>{expected['undecryptable']}</td>" in summary
    assert f"<td data-key='no_profile' style='text-align:right;padding:2px 8px'>{expected['unmatched']}</td>" in summary
    assert len(screen.funnels.children) == 2

    screen.force_reconciliation.value = True
    reconciled = screen.results["samplesEmailAes"]
    assert not isinstance(reconciled, str)
    expected = items["Samples - Cart abandoners (reconciled)"]["expected"]
    assert reconciled.audience_type == "experience_cloud"
    assert (reconciled.matched, reconciled.profiles) == (expected["matched"], expected["profiles"])
    assert "not encrypted: no forced reconciliation" in screen.summary.value
    assert snapshot(ws) == before


def test_the_explorer_counts_batches_still_waiting(ws: Path) -> None:
    # A batch announced by its .info whose file has not arrived: it waits.
    root = "ftp_56390_24016_iter_1764547200000"
    info = {"Files": [{"FileName": f"{root}.sync", "FileLineCount": 1, "FileByteSize": 10}]}
    (ws / "drops" / "import" / f"{root}.info").write_text(json.dumps(info))
    screen = MatchRateExplorer(ws, progress=False)
    screen.data_sources.value = ("samplesVisitorId",)
    screen.shared_audience.value = HIGH_VALUE
    result = screen.results["samplesVisitorId"]
    assert not isinstance(result, str)
    assert result.batches_waiting == 1
    assert result.batches_applied == 2  # ready, read by the dry run only
    assert "<td data-key='batches_waiting' style='text-align:right;padding:2px 8px'>1</td>" in screen.summary.value
    assert "Batches waiting (1 in all)" in screen.summary.value


def test_the_explorer_shows_a_refused_source_in_its_row_and_refuses_traits(ws: Path) -> None:
    screen = MatchRateExplorer(ws, progress=False)
    screen.shared_audience.value = CART
    screen.data_sources.value = ("emailEncrypted", "samplesEmailAes")
    refused = screen.results["emailEncrypted"]
    assert isinstance(refused, str) and "AUDTOOLS_KEY_EMAIL" in refused
    assert not isinstance(screen.results["samplesEmailAes"], str)
    screen.shared_audience.value = TRAIT
    assert screen.results == {}
    assert screen.message_kind == "error" and "is a trait, not a segment" in screen.message


def test_the_explorer_says_busy_and_retries(ws: Path) -> None:
    screen = MatchRateExplorer(ws, lock_wait=0.2, progress=False)
    screen.data_sources.value = ("samplesVisitorId",)
    holder = start_holder(ws)
    try:
        screen.shared_audience.value = HIGH_VALUE
        assert screen.message_kind == "busy" and HOLDER_RUN in screen.message
    finally:
        stop_holder(holder)
    screen.retry.click()
    assert "samplesVisitorId" in screen.results
    assert "nothing was written" in screen.message


# -- notebooks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCREENS))
def test_notebooks_are_committed_clean_with_a_workspace_parameter(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    assert nb.metadata.language_info.name == "python"
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    assert "workspace = os.environ.get(\"AUDTOOLS_WORKSPACE\"" in params[0].source
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert SCREENS[name] in nb.cells[-1].source
    import papermill

    assert set(papermill.inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb"))) == {"workspace", "operator"}


@pytest.mark.slow
def test_notebooks_open_their_screen_in_a_kernel(
    ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbclient import NotebookClient

    monkeypatch.setenv("AUDTOOLS_WORKSPACE", str(ws))
    for name in sorted(SCREENS):
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        NotebookClient(
            nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
        outputs = nb.cells[-1].outputs
        assert [o.output_type for o in outputs] == ["execute_result"], name
        assert "application/vnd.jupyter.widget-view+json" in outputs[0].data
        assert not any(o.output_type == "stream" for c in nb.cells for o in c.get("outputs", []))
