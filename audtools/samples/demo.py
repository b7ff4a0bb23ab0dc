"""``python -m audtools.samples.demo WS``: import every sample audience and compare with ``samples.json``.

Used by ``make demo`` after ``audtools samples``: prints one table of the measured counts beside
the counts the samples promise, and exits 1 when any disagree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from audtools.importing.flow import import_audience

COLUMNS = ("members", "undecryptable", "matched", "unmatched", "profiles", "addresses")


def compare_samples(workspace: str | Path) -> tuple[list[str], bool]:
    """Import each audience of ``samples.json``; return the table's lines and whether all agree."""
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


def main(argv: list[str] | None = None) -> int:
    """Run the comparison on the workspace named on the command line."""
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0] if args else "data/demo")
    lines, ok = compare_samples(root)
    out = sys.stdout
    out.write("\nImported every sample audience; measured counts beside samples.json:\n\n")
    out.write("\n".join(lines) + "\n\n")
    out.write("All counts agree with samples.json.\n" if ok else "Some counts DISAGREE.\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
