"""The verdicts and the table: targets judged, the Markdown table, the machine it ran on, the
results saved in ``.cache/results/``."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
from pathlib import Path

import benchdata as bd
from benchproc import HERE, GiB, Row, fmt_bytes, fmt_n, fmt_rate, fmt_ratio, fmt_s

# -- targets ------------------------------------------------------------------------------------------


def timing_note(row: Row) -> str:
    """CPU time (robust on a busy machine) and the spread of the runs."""
    parts = []
    if row.cpu:
        parts.append(f"CPU {fmt_s(statistics.median(row.cpu))} s")
    if len(row.times) > 1:
        parts.append(f"runs {fmt_s(min(row.times))}–{fmt_s(max(row.times))} s")
    return ", ".join(parts)


def judge(row: Row) -> str:
    t = row.target
    if t is None:
        return ""
    if row.unavailable:
        return "n/a"
    if row.failed or row.median is None:
        return "**no** (failed)"
    fails = []
    if t.max_s is not None and row.median > t.max_s:
        fails.append("time")
    if t.max_rss is not None and row.rss is not None and row.rss > t.max_rss:
        fails.append("RSS")
    if t.min_rate is not None and (row.rate or 0) < t.min_rate:
        fails.append("rate")
    if t.min_ratio is not None and row.ratio is not None and row.ratio < t.min_ratio:
        fails.append("ratio")
    if t.max_bytes is not None and row.size is not None and row.size > t.max_bytes:
        fails.append("size")
    if row.n == t.n:
        return "yes" if not fails else f"**no** ({', '.join(fails)})"
    # Another size: only rates and ratios say something, and only as an indication.
    scale_free = [f for f in fails if f in ("rate", "ratio")]
    if (t.max_s is not None or t.max_bytes is not None) and t.min_rate is None and t.min_ratio is None:
        return f"n/a (target at {fmt_n(t.n)})"
    return "(yes)" if not scale_free else f"(no: {', '.join(scale_free)})"


# -- the table -------------------------------------------------------------------------------------


def cpu_pressure() -> str:
    """The share of the last minute in which runnable tasks waited for a CPU (Linux PSI)."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return first.split("avg60=")[1].split()[0] + " %"
    except (OSError, IndexError):
        return "n/a"


def machine_line(args: argparse.Namespace, started: dt.datetime, load: tuple[float, float, float],
                 pressure: str) -> str:
    import duckdb
    import pandas
    import pyarrow

    from audtools import __version__

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    commit = ""
    try:
        commit = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return (
        f"{started:%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores ({cpu}), {mem / GiB:.1f} GiB RAM, "
        f"load average {load[0]:.1f} and CPU pressure {pressure} at start, {os.getloadavg()[0]:.1f} and "
        f"{cpu_pressure()} at the end (a shared machine: others' work slows wall times, CPU times less); Python {platform.python_version()}, DuckDB {duckdb.__version__}, "
        f"pyarrow {pyarrow.__version__}, pandas {pandas.__version__}, audtools {__version__}"
        + (f" ({commit})" if commit else "")
        + f"; median of {args.repeat} runs after {args.warmup} warm-up"
        + (f" ({args.cli_warmup} for end-to-end steps)" if args.cli_warmup != args.warmup else "")
        + "; naive measured once per size"
        + ("; workspace copies not flushed to disk before the runs (--no-sync)" if getattr(args, "no_sync", False) else "")
    )


def table(rows: list[Row]) -> str:
    head = ["step", "N", "median s", "IDs/s", "peak RSS", "naive s", "ratio", "target", "met?", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.unavailable:
            cells = [r.label, fmt_n(r.n), "not available", "—", "—", "—", "—",
                     r.target.text if r.target else "", "n/a", "; ".join(r.notes)]
        else:
            notes = [timing_note(r)] + r.notes if r.times else r.notes
            cells = [r.label, fmt_n(r.n), fmt_s(r.median), fmt_rate(r.rate), fmt_bytes(r.rss),
                     fmt_s(r.naive_s), fmt_ratio(r.ratio), r.target.text if r.target else "",
                     r.met or judge(r), "; ".join(n for n in notes if n)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def save_results(rows: list[Row], text: str, header: str, started: dt.datetime) -> None:
    folder = bd.CACHE / "results"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{started:%Y%m%dT%H%M%SZ}"
    (folder / f"{stem}.md").write_text(text + "\n\n" + header + "\n")
    data = [
        {"step": r.step, "n": r.n, "times": r.times, "cpu": r.cpu, "median": r.median, "items": r.items, "rss": r.rss,
         "naive_s": r.naive_s, "ratio": r.ratio, "notes": r.notes, "failed": r.failed,
         "unavailable": r.unavailable, "size": r.size}
        for r in rows
    ]
    (folder / f"{stem}.json").write_text(json.dumps({"machine": header, "rows": data}, indent=2))
