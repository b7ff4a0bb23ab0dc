"""``python -m audtools.samples.demo WS``: import every sample audience and compare with ``samples.json``.

Used by ``make demo`` after ``audtools samples --history 14``: first a dry run of every sample
import (nothing recorded) beside the counts the samples promise; then, when the samples have a
history, :func:`play_history` delivers one day at a time into the drop and imports it, so that
``runs/index.html`` ends with two weeks of history. Prints the tables; exits 1 when any count
disagrees with ``samples.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from audtools.importing.flow import import_audience

COLUMNS = ("members", "undecryptable", "matched", "unmatched", "profiles", "addresses")


def compare_samples(workspace: str | Path, *, dry_run: bool = False) -> tuple[list[str], bool]:
    """Import each audience of ``samples.json``; return the table's lines and whether all agree.

    With ``dry_run`` nothing is recorded (the history played next starts from a clean record).
    """
    root = Path(workspace)
    doc = json.loads((root / "samples.json").read_text(encoding="utf-8"))
    lines = [
        "| audience | type | " + " | ".join(COLUMNS) + " | match rate | agrees |",
        "|---|---|" + "---|" * len(COLUMNS) + "---|---|",
    ]
    all_agree = True
    for item in doc["imports"]:
        result = import_audience(
            root,
            item["label"],
            item["shared_audience"],
            item["data_source"],
            force_reconciliation=item["force_reconciliation"],
            progress=False,
            keep_members=False,
            dry_run=dry_run,
        ).to_json()
        expected = item["expected"]
        cells = []
        agrees = result["audience"]["type"] == expected["type"]
        for key in COLUMNS:
            same = result[key] == expected[key]
            agrees &= same
            cells.append(str(result[key]) if same else f"{result[key]} (expected {expected[key]})")
        all_agree &= agrees
        lines.append(
            f"| {item['label']} | {result['audience']['type']} | " + " | ".join(cells)
            + f" | {result['match_rate']:.1%} | {'yes' if agrees else 'NO'} |"
        )
    return lines, all_agree


HISTORY_COLUMNS = ("rows_read", "rows_rejected", "batches_applied", *COLUMNS)


def job_days(days: int) -> set[tuple[int, str]]:
    """The (day, data source) imports run as jobs (papermill: a report each, about ten seconds):
    the two events and the last day; every other import runs in this process, which takes well
    under a second (the runs index shows them all)."""
    from audtools.samples.history import CRM_LOAD_DAY, REJECTS_DAY

    return {(CRM_LOAD_DAY, "samplesCrmId"),
            (REJECTS_DAY, "samplesEmailSha256"), (days, "samplesVisitorId")}


def deliver(root: Path, folder: Path) -> list[Path]:
    """Move a day's batch files (``.sync`` and ``.info``) into the import drop.

    Files are renamed, not copied: their modification times (an hour before the samples were
    written) stay in the past, so the settle rule does not hold them back.
    """
    from audtools.workspace import as_workspace

    drop = as_workspace(root).config.import_drop
    if not isinstance(drop, Path):
        raise ValueError("the demo plays its deliveries into a folder drop, not a remote one")
    drop.mkdir(parents=True, exist_ok=True)
    moved = []
    for path in sorted(folder.iterdir()):
        if path.name.endswith((".sync", ".sync.gz", ".info")):
            target = drop / path.name
            os.replace(path, target)
            moved.append(target)
    return moved


def _audtools(root: Path, *args: str) -> dict[str, Any]:
    """Run the ``audtools`` command beside this Python (``--json``) and return its output."""
    exe = Path(sys.executable).with_name("audtools")
    command = [str(exe) if exe.exists() else "audtools", *args, "-w", str(root), "--json"]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def _import(root: Path, item: dict[str, Any], job: bool) -> dict[str, Any]:
    """One day's import: a job (``audtools run import_audience``) or in this process."""
    if not job:
        return import_audience(
            root, item["label"], item["shared_audience"], item["data_source"],
            force_reconciliation=item["force_reconciliation"], progress=False,
            keep_members=False,
        ).to_json()
    params = ["-p", "label", item["label"], "-p", "shared_audience", str(item["shared_audience"]),
              "-p", "data_source", item["data_source"]]
    if item["force_reconciliation"]:
        params += ["-p", "force_reconciliation", "True"]
    run = _audtools(root, "run", "import_audience", *params)
    run_id = run.get("run_id") or (run.get("result") or {}).get("run_id")
    result: dict[str, Any] = json.loads(
        (root / "runs" / str(run_id) / "result.json").read_text(encoding="utf-8"))
    return result


def _cells(result: dict[str, Any], expected: dict[str, Any], columns: Iterable[str]
           ) -> tuple[list[str], bool]:
    cells, agrees = [], result["audience"]["type"] == expected["type"]
    for key in columns:
        same = result[key] == expected[key]
        agrees &= same
        cells.append(str(result[key]) if same else f"{result[key]} (expected {expected[key]})")
    return cells, agrees


def play_history(
    workspace: str | Path,
    *,
    jobs: Iterable[tuple[int, str]] | None = None,
    echo: Callable[[str], None] | None = None,
) -> tuple[list[str], bool]:
    """Deliver each day of the samples' history and import it; compare with ``samples.json``.

    Day by day: the CRM load of its day (``audtools profiles load``), the day's batches moved
    into the drop (:func:`deliver`), then one import per data source, as a job for the data
    days and sources of ``jobs`` (default :func:`job_days`) and in this process for the others.

    Args:
        workspace: a workspace filled by ``audtools samples --history DAYS``.
        jobs: the ``(day, data source)`` imported by ``audtools run import_audience``.
        echo: called with a line per day played (progress).

    Returns:
        The lines of the table (one row per import) and whether every count agrees.
    """
    root = Path(workspace)
    doc = json.loads((root / "samples.json").read_text(encoding="utf-8"))
    history = doc["history"]
    load = history["profiles_load"]
    lines = [
        "| day | audience | " + " | ".join(HISTORY_COLUMNS) + " | match rate | agrees |",
        "|---|---|" + "---|" * len(HISTORY_COLUMNS) + "---|---|",
    ]
    all_agree = True
    as_jobs = job_days(len(history["days"])) if jobs is None else set(jobs)
    for day in history["days"]:
        started = time.monotonic()
        if day["day"] == load["day"]:
            _audtools(root, "profiles", "load", str(root / load["profiles"]),
                      "--visitors", str(root / load["visitors"]))
        deliver(root, root / day["folder"])
        for item in day["imports"]:
            result = _import(root, item, (day["day"], item["data_source"]) in as_jobs)
            cells, agrees = _cells(result, item["expected"], HISTORY_COLUMNS)
            all_agree &= agrees
            lines.append(f"| {day['day']} | {item['label']} | " + " | ".join(cells)
                         + f" | {result['match_rate']:.1%} | {'yes' if agrees else 'NO'} |")
        if echo is not None:
            echo(f"day {day['day']:2d} ({day['delivered_at'][:10]}) delivered and imported in "
                 f"{time.monotonic() - started:.1f} s")
    return lines, all_agree


def _echo(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Compare the sample imports with ``samples.json``, then play the history if there is one."""
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0] if args else "data/demo")
    out = sys.stdout
    lines, ok = compare_samples(root, dry_run=True)
    out.write("\nDry run of every sample audience; measured counts beside samples.json:\n\n")
    out.write("\n".join(lines) + "\n\n")
    doc = json.loads((root / "samples.json").read_text(encoding="utf-8"))
    if "history" in doc:
        out.write(f"Playing {len(doc['history']['days'])} days of deliveries:\n")
        history, played_ok = play_history(root, echo=_echo)
        out.write("\nEach day's import beside samples.json:\n\n" + "\n".join(history) + "\n\n")
        ok &= played_ok
    out.write("All counts agree with samples.json.\n" if ok else "Some counts DISAGREE.\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
