"""The *Save audience* screen's parts that hold no state: the count of the targeted profiles, the
check of a new segment's name, and the sentences and HTML it shows (the export's result, its
outbound transition).
"""

from __future__ import annotations

import html
from collections.abc import Iterable

import pandas as pd

from audtools.exporting.flow import ExportResult
from audtools.exporting.targeting import evaluating, validate_condition
from audtools.formats.catalog import SharedAudience
from audtools.widgets._parts import number, table, window_text
from audtools.workspace import Workspace

#: Rows of the outbound transition shown on the screen (the file has them all).
TRANSITION_ROWS_SHOWN = 10


def count_targeted(ws: Workspace, condition: str) -> int:
    """The profiles ``condition`` targets (all of them when it is empty): the condition is
    validated, then counted in one short session under the workspace lock.

    Raises:
        AudtoolsError: the condition is refused, or the workspace is busy.
    """
    with ws.session(purpose="targeting count") as con:
        if condition.strip():
            text = validate_condition(con, condition)
            sql = f"SELECT count(*) FROM profiles WHERE ({text}) IS TRUE"
        else:
            sql = "SELECT count(*) FROM profiles"
        with evaluating(con):
            return int(con.execute(sql).fetchall()[0][0])


def confirmed_sentence(preview: ExportResult) -> str:
    """What the check mark says once the dry run accepted the settings."""
    return (
        f"Settings confirmed: {preview.profiles_targeted:,} profiles targeted, "
        f"{preview.ids_exported:,} new IDs to share with "
        f"{preview.shared_audience.display}, {preview.ids_already_shared:,} already "
        "shared. Press Start."
    )


def segment_name_problem(name: str, entries: Iterable[SharedAudience]) -> str | None:
    """Why ``name`` cannot be a new segment's name (None: it can)."""
    if not name.strip():
        return "Type a segment name, then press Create."
    if name.isascii() and name.isdigit():
        return (
            f"The segment name {name!r} is only digits, which would be read as a sid; choose a "
            "name with letters."
        )
    same = [e for e in entries if e.name == name]
    if same:
        sids = ", ".join(str(e.sid) for e in same)
        return (
            f"The segment name {name!r} is already in the catalog (sid {sids}); pick it in "
            "the Shared audience list or choose another name."
        )
    return None


def transition_html(frame: pd.DataFrame, relative: str) -> str:
    """The outbound transition's first rows, and where the whole file was written."""
    shown = frame.head(TRANSITION_ROWS_SHOWN).to_html(
        index=False, border=0, classes="audtools-transition-table"
    )
    more = (
        f"the first {TRANSITION_ROWS_SHOWN} of {len(frame):,} rows"
        if len(frame) > TRANSITION_ROWS_SHOWN
        else f"{len(frame):,} rows"
    )
    return (
        "<div style='margin:8px 0 4px'><b>Outbound transition</b> — "
        f"{more}, written to {html.escape(relative)}</div>{shown}"
    )


def result_html(result: ExportResult, source_label: str) -> str:
    """The export's result: IDs exported, already shared, profiles without an ID, files, window."""
    files = ", ".join(html.escape(f) for f in result.files) or "none (no new ID to share)"
    rows: list[tuple[str, str, str]] = [
        ("profiles_targeted", "Profiles targeted", number(result.profiles_targeted)),
        ("ids_exported", "IDs exported", number(result.ids_exported)),
        ("ids_already_shared", "IDs already shared", number(result.ids_already_shared)),
        ("profiles_without_id", "Profiles without an ID", number(result.profiles_without_id)),
        ("files", "Files written", files),
        ("window", "Sync window", window_text(result.available_from, result.available_to)),
    ]
    created = " (created by this export)" if result.created else ""
    head = (
        f"<div style='margin:8px 0 4px'>Shared with <b>{html.escape(result.shared_audience.display)}"
        f"</b>{created} through {html.escape(source_label)}"
        f"{' — run ' + html.escape(result.run_id) if result.run_id else ''}</div>"
    )
    return head + table(rows)
