#!/usr/bin/env python3
"""The audtools benchmark (issue 7; targets of issue 15): run each step several times, print one Markdown table.

    python benchmarks/run.py              # full: 10 M (1 M where the targets say so), ≤ 30 min
    python benchmarks/run.py --quick      # every step at N = 100,000, a few minutes
    python benchmarks/run.py --sizes 1000000 --steps import_visitor,import_aes

Data is generated once per size from a fixed seed and cached in ``benchmarks/.cache/N/`` (see
``benchdata.py``). Every audtools figure is the median of ``--repeat`` runs (default 5) after
``--warmup`` runs (default 1); end-to-end steps time the ``audtools`` process on a fresh copy of
the workspace template, in-process steps run in a worker process of their own (``benchwork.py``).
Peak RSS is that process's ``VmHWM`` (``benchproc.py``). The naive baselines (``benchnaive.py``)
are measured once per data size and variant and cached in ``.cache/N/naive.json``; above
``--naive-max`` IDs they are extrapolated linearly from that size (said in the note column).
The end-to-end steps are in ``benchcli.py``, the verdicts and the table in ``benchtable.py``.

The table goes to standard output, progress to standard error. The exit status is 1 when a step
failed or gave results that differ from the generated data's expected counts (targets missed do
not change it: CI runs ``--quick`` as a smoke test without thresholds).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import benchdata as bd  # noqa: E402
import benchspaces as bs  # noqa: E402
from benchcli import (  # noqa: E402
    KEEP,
    setup_applied,
    step_db_size,
    step_export,
    step_import,
    step_import_dask,
    step_import_sftp,
    step_profiles_load,
    step_reimport,
)
from benchnaive import naive_seconds  # noqa: E402
from benchproc import (  # noqa: E402
    GENERATION_SECONDS,
    GiB,
    K,
    M,
    Row,
    Target,
    ensure_data,
    fmt_bytes,
    fmt_n,
    fmt_s,
    progress,
    run_process,
    worker_cmd,
)
from benchtable import cpu_pressure, machine_line, save_results, table  # noqa: E402

QUICK_N = 100_000


@dataclass(frozen=True)
class Step:
    name: str
    label: str
    default_n: int
    target: Target
    naive: str | None  # the naive baseline's name (benchnaive.NAIVE), if any
    naive_note: str = ""


# Targets of issue 15 (the second round): 10 M unless a step says otherwise.
SHAPE2 = "every member in two segments, half unknown"
IMPORT_TARGET = Target(10 * M, max_s=12, max_rss=3 * GiB, min_ratio=5, text="≤ 12 s, RSS ≤ 3 GiB, ≥ 5× naive")
STEPS: list[Step] = [
    Step("profiles_load", "`audtools profiles load`, CSV profiles and visitor IDs (1.5 per profile)", 10 * M,
         Target(10 * M, max_s=12, max_rss=3 * GiB, text="≤ 12 s, RSS ≤ 3 GiB"), None),
    Step("db_size", f"campaign.duckdb after profiles load and one first import ({SHAPE2})", 10 * M,
         Target(10 * M, max_bytes=1_200_000_000, text="campaign.duckdb ≤ 1.2 GB"), None),
    Step("import_visitor", "first import, visitor IDs (gzip batch, 2 parts, .info)", 10 * M,
         IMPORT_TARGET, "import_visitor"),
    Step("import_visitor2", f"first import, visitor IDs, {SHAPE2} (gzip batch, 2 parts, .info)", 10 * M,
         IMPORT_TARGET, "import_visitor2"),
    Step("import_visitor_sftp", "first import, visitor IDs, import drop on loopback SFTP (sshd)", 10 * M,
         Target(10 * M, text="≤ 1.5× import_visitor, RSS ≤ its + 256 MiB"), None),
    Step("import_visitor_dask", "first import, visitor IDs, Dask engine (2-worker LocalCluster)", 10 * M,
         Target(10 * M, text="beside import_visitor; time per ID flat (growth_dask)"), None),
    Step("reimport_visitor", "re-import from applied state, visitor IDs", 10 * M,
         Target(10 * M, max_s=4, text="≤ 4 s"), "import_visitor", "naive has no state: it reruns everything"),
    Step("reimport_visitor2", f"re-import from applied state, visitor IDs, {SHAPE2}", 10 * M,
         Target(10 * M, max_s=4, text="≤ 4 s"), "import_visitor2", "naive has no state: it reruns everything"),
    Step("join", "reconciliation join alone", 10 * M, Target(10 * M, max_s=2, text="≤ 2 s"), "join"),
    Step("decrypt", "AES-CBC decryption of base64 email IDs", 10 * M,
         Target(10 * M, min_rate=5 * M, text="≥ 5 M IDs/s"), "decrypt"),
    Step("import_aes", "first import, AES email IDs, forced reconciliation", 10 * M,
         Target(10 * M, max_s=15, max_rss=6 * GiB, min_ratio=12, text="≤ 15 s, RSS ≤ 6 GiB, ≥ 12× naive"),
         "import_aes"),
    Step("phone_mixed", "phone normalisation to E.164, 5 % need the full parser", 1 * M,
         Target(1 * M, min_rate=300 * K, text="≥ 300 k/s"), "phone_mixed"),
    Step("phone_e164", "phone normalisation, already E.164", 1 * M,
         Target(1 * M, min_rate=5 * M, text="≥ 5 M/s"), "phone_e164"),
    Step("sha256", "SHA-256 of normalised emails", 1 * M, Target(1 * M, min_rate=2 * M, text="≥ 2 M/s"),
         "sha256"),
    Step("read_split", "read and split an uncompressed batch (OutboundReader)", 10 * M,
         Target(10 * M, min_rate=4 * M, text="≥ 4 M rows/s"), "read_split"),
    Step("export_visitor", "export to a new segment, visitor IDs", 10 * M,
         Target(10 * M, max_s=6, text="≤ 6 s"), "export_visitor"),
    Step("export_aes", "export to a new segment, AES email IDs", 10 * M,
         Target(10 * M, max_s=9, text="≤ 9 s"), "export_aes"),
    Step("export_aes_warm", "export to a new segment, AES email IDs, derived-ID cache warm", 10 * M,
         Target(10 * M, max_s=9, text="≤ 9 s"), "export_aes"),
    Step("name_matching", "import drop names read into batches (100,000 files, 4 parts per batch)", 100 * K,
         Target(100 * K, max_s=1, text="≤ 1 s"), None),
    Step("explorer", "explorer dry run, derived-ID cache warm", 1 * M, Target(1 * M, max_s=1, text="≤ 1 s"),
         "import_aes", "naive: its forced AES pipeline"),
]
STEP_BY_NAME = {s.name: s for s in STEPS}
# The growth check of issue 15 is 1 M, 10 M, 30 M (--growth-sizes): by default the full run stops
# at 10 M, as generating 30 M of data takes about three times the memory and disk of 10 M.
GROWTH_SIZES = [1 * M, 3 * M, 10 * M]
GROWTH_TARGET = "per ID at 30 M ≤ 1.3× that at 1 M; RSS flat from 10 M (≤ 1.2×)"
ALIASES = {
    "phone": ["phone_mixed", "phone_e164"],
    "export": ["export_visitor", "export_aes", "export_aes_warm"],
    "import": ["import_visitor", "import_visitor2", "import_aes"],
    "shape2": ["import_visitor2", "reimport_visitor2"],
    "profiles": ["profiles_load", "db_size"],
    "dask": ["import_visitor", "import_visitor_dask"],
}


def step_worker(row: Row, args: argparse.Namespace, arg: str | None = None) -> None:
    proc = run_process(worker_cmd("--worker", row.step, row.n, args, arg))
    if proc.returncode != 0:
        raise RuntimeError(f"worker exit {proc.returncode}: {proc.stderr.strip()[-1500:]}")
    out = proc.json()
    row.times = out["times"]
    row.cpu = out.get("cpu", [])
    row.items = out["items"]
    row.rss = proc.rss
    if out["check"] != "ok":
        row.failed = True
        row.notes.append(out["check"])
    info = out.get("info", {})
    if "join_only" in info:
        row.notes.append(f"the whole of `{info.get('how')}` ({info.get('shape')} query); "
                         f"its join statement alone {fmt_s(info['join_only'])} s")
    if "scan_seconds" in info:
        row.notes.append(f"the whole scan of `audtools batches` (listing, decisions): {fmt_s(info['scan_seconds'])} s")
    progress(f"  {row.step} N={fmt_n(row.n)}: runs {', '.join(f'{t:.3f}' for t in row.times)} s, "
             f"process RSS {fmt_bytes(proc.rss)}")


def step_explorer(row: Row, args: argparse.Namespace) -> None:
    step_worker(row, args, str(setup_applied(row.n, "emails", "explorer")))


IMPORTS = {"import_visitor": "visitors", "import_visitor2": "visitors2", "import_aes": "emails"}
REIMPORTS = {"reimport_visitor": "visitors", "reimport_visitor2": "visitors2"}


def run_step(step: Step, n: int, args: argparse.Namespace) -> Row:
    row = Row(step.name, step.label, n, target=step.target)
    progress(f"{step.name} at N = {fmt_n(n)}")
    try:
        ensure_data(step.name, n)
        if step.name in IMPORTS:
            step_import(row, args, IMPORTS[step.name])
        elif step.name in REIMPORTS:
            step_reimport(row, args, REIMPORTS[step.name])
        elif step.name == "profiles_load":
            step_profiles_load(row, args)
        elif step.name == "db_size":
            step_db_size(row, args)
        elif step.name == "import_visitor_sftp":
            step_import_sftp(row, args)
        elif step.name == "import_visitor_dask":
            step_import_dask(row, args)
        elif step.name in ("export_visitor", "export_aes", "export_aes_warm"):
            step_export(row, args, aes=step.name != "export_visitor",
                        warm=step.name == "export_aes_warm")
        elif step.name == "explorer":
            step_explorer(row, args)
        else:
            step_worker(row, args)
    except Exception as exc:  # noqa: BLE001 - one failed step does not stop the others
        row.failed = True
        row.times = []
        row.notes.append(f"FAILED: {str(exc).strip()[-400:]}")
        progress(f"  {step.name} failed: {exc}")
    finally:
        bs.remove_work(n, keep=KEEP)
    if step.naive and not args.no_naive and not row.unavailable:
        try:
            naive_s, note = naive_seconds(step.naive, n, args)
            row.naive_s = naive_s
            if note:
                row.notes.append(note)
            if step.naive_note:
                row.notes.append(step.naive_note)
        except Exception as exc:  # noqa: BLE001
            row.notes.append(f"naive failed: {str(exc).strip()[-200:]}")
    return row


# -- growth ----


def judge_growth(ok: list[Row]) -> None:
    """Time per ID at the largest size against the smallest; peak RSS there against 10 M's. The
    verdict is the target's only from 1 M to 30 M; other sizes give it in parentheses."""
    small, large = ok[0], ok[-1]
    assert small.median is not None and large.median is not None
    growth = (large.median / large.n) / (small.median / small.n)
    large.notes.append(f"per ID {growth:.2f}× that at {fmt_n(small.n)}")
    fails = ["time per ID"] if growth > 1.3 else []
    base = next((r for r in ok if r.n == 10 * M and r is not large), None)
    if base is not None and base.rss and large.rss:
        flat = large.rss / base.rss
        large.notes.append(f"peak RSS {flat:.2f}× that at 10 M")
        if flat > 1.2:
            fails.append("RSS")
    exact = small.n == 1 * M and large.n == 30 * M
    if exact:
        large.met = "yes" if not fails else f"**no** ({', '.join(fails)})"
    else:
        large.met = "(yes)" if not fails else f"(no: {', '.join(fails)})"


GROWTH_KINDS = {"growth": ("import_visitor", "growth: first import, visitor IDs, time per ID"),
                "growth_dask": ("import_visitor_dask",
                                "growth: first import, visitor IDs, Dask engine, time per ID")}


def growth_rows(rows: dict[tuple[str, int], Row], sizes: list[int], args: argparse.Namespace,
                kind: str = "growth") -> list[Row]:
    out = []
    step, label = GROWTH_KINDS[kind]
    for n in sizes:
        base = rows.get((step, n))
        if base is None:
            base = run_step(STEP_BY_NAME[step], n, argparse.Namespace(**{**vars(args), "no_naive": True}))
            rows[(step, n)] = base
        row = Row(kind, label, n, list(base.times),
                  list(base.cpu), base.items, base.rss, failed=base.failed)
        if row.median:
            row.notes.append(f"{row.median / n * 1e6:.2f} µs per ID")
        out.append(row)
    ok = [r for r in out if r.median]
    if len(ok) >= 2:
        judge_growth(ok)
    for r in out:
        r.target = Target(30 * M, text=GROWTH_TARGET if r is out[-1] else "")
        if not r.met:
            r.met = "**no** (failed)" if r.failed else "n/a"
    return out


# -- main --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"every step at N = {QUICK_N:,} (a smoke test)")
    p.add_argument("--sizes", help="comma-separated N for every selected step, e.g. 1000000,3000000")
    p.add_argument("--steps", help="comma-separated steps: " + ", ".join([s.name for s in STEPS] + list(GROWTH_KINDS))
                   + "; aliases " + ", ".join(ALIASES))
    p.add_argument("--repeat", type=int, default=None,
                   help="measured runs per step (default 5; 3 with --quick)")
    p.add_argument("--warmup", type=int, default=None,
                   help="warm-up runs per step (default 1; with --quick, 0 for the end-to-end steps)")
    p.add_argument("--growth-sizes",
                   help="comma-separated N of the growth rows (default 1000000,3000000,10000000, or --sizes); "
                   "issue 15's check: 1000000,10000000,30000000")
    p.add_argument("--naive-max", type=int, default=1 * M,
                   help="measure naive baselines at most at this N, extrapolate above (default 1,000,000)")
    p.add_argument("--no-naive", action="store_true", help="skip the naive baselines")
    p.add_argument("--step-budget", type=float, default=150,
                   help="seconds of measured runs per end-to-end step: fewer runs (at least 3) when the "
                   "warm-up shows that --repeat runs would take longer (default 150)")
    p.add_argument("--no-sync", action="store_true",
                   help="do not flush the workspace copies to disk before a run (from 1 M IDs they are): "
                   "the steps as a user runs them, the write-back of the copy competing with the run")
    p.add_argument("--regenerate", action="store_true", help="regenerate the cached data of the sizes used")
    p.add_argument("--plan", action="store_true", help="print the steps and sizes that would run, and stop")
    # Internal: worker processes.
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--naive", help=argparse.SUPPRESS)
    p.add_argument("--generate", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--arg", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def plan(args: argparse.Namespace) -> tuple[list[tuple[Step, int]], dict[str, list[int]]]:
    names: list[str] = []
    for item in (args.steps.split(",") if args.steps else [s.name for s in STEPS] + list(GROWTH_KINDS)):
        item = item.strip()
        if not item:
            continue
        expanded = ALIASES.get(item, [item])
        for name in expanded:
            if name not in GROWTH_KINDS and name not in STEP_BY_NAME:
                raise SystemExit(f"unknown step {name!r}; steps: {', '.join(STEP_BY_NAME)}, growth")
            if name not in names:
                names.append(name)
    sizes: list[int] | None = None
    if args.quick:
        sizes = [QUICK_N]
    if args.sizes:
        sizes = sorted({int(float(s)) for s in args.sizes.split(",") if s.strip()})
    todo: list[tuple[Step, int]] = []
    for name in names:
        if name in GROWTH_KINDS:
            continue
        step = STEP_BY_NAME[name]
        for n in sizes or [step.default_n]:
            todo.append((step, n))
    growth_sizes = sizes or GROWTH_SIZES
    if args.growth_sizes:
        growth_sizes = sorted({int(float(s)) for s in args.growth_sizes.split(",") if s.strip()})
    growth = {kind: growth_sizes for kind in GROWTH_KINDS if kind in names}
    todo.sort(key=lambda sn: (sn[1], STEPS.index(sn[0])))
    return todo, growth


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.repeat is None:
        args.repeat = 3 if args.quick else 5
    # End-to-end steps are process runs of a few seconds at 100 k: --quick skips their warm-up to
    # stay within a few minutes (their inputs are a few MB, just written or copied).
    args.cli_warmup = args.warmup if args.warmup is not None else (0 if args.quick else 1)
    if args.warmup is None:
        args.warmup = 1
    if args.worker or args.naive or args.generate:
        return worker_main(args)
    bs.SYNC[0] = not args.no_sync
    todo, growth = plan(args)
    if args.plan:
        for step, n in todo:
            print(f"{step.name:18s} N = {n:>12,}")
        for kind, sizes in growth.items():
            print(f"{kind:18s} N = {', '.join(f'{n:,}' for n in sizes)} ({GROWTH_KINDS[kind][1]})")
        return 0
    started = dt.datetime.now(dt.UTC)
    load = os.getloadavg()
    pressure = cpu_pressure()
    t0 = time.perf_counter()
    if args.regenerate:  # everything of these sizes is generated again when a step needs it
        for n in sorted({n for _, n in todo} | {n for sizes in growth.values() for n in sizes}):
            for marker in bd.size_dir(n).glob(".done-*"):
                marker.unlink()
    rows: dict[tuple[str, int], Row] = {}
    for step, n in todo:
        rows[(step.name, n)] = run_step(step, n, args)
    growth_part = [r for kind, sizes in growth.items() for r in growth_rows(rows, sizes, args, kind)]
    for n in {n for _, n in todo} | {n for sizes in growth.values() for n in sizes}:
        bs.remove_work(n)
    ordered = [rows[(s.name, n)] for s, n in sorted(todo, key=lambda sn: (STEPS.index(sn[0]), sn[1]))]
    ordered += growth_part
    elapsed = time.perf_counter() - t0
    text = table(ordered)
    header = machine_line(args, started, load, pressure)
    print(text)
    print()
    gen = GENERATION_SECONDS[0]
    print(f"Measured {header}. This run took {elapsed / 60:.1f} min"
          + (f", {gen:.0f} s of it generating data." if gen >= 1 else " (cached data)."))
    save_results(ordered, text, header, started)
    progress(f"done in {elapsed:.1f} s")
    return 1 if any(r.failed for r in ordered) else 0


def worker_main(args: argparse.Namespace) -> int:
    if args.generate:
        import benchvalues

        force = args.arg == "force"
        {"core": bd.ensure_core, "template": bd.ensure_template, "phones": benchvalues.ensure_phones,
         "emails": benchvalues.ensure_emails_norm, "shape2": bd.ensure_shape2, "csv": bd.ensure_profiles_csv}[args.generate](args.n, force=force)
        return 0
    import benchwork

    if args.worker:
        out = benchwork.WORKERS[args.worker](args.n, args.repeat, args.warmup, args.arg)
        out["cpu"] = benchwork.CPU
    else:
        import benchnaive

        scratch = bd.size_dir(args.n) / "work" / "naive"
        scratch.mkdir(parents=True, exist_ok=True)
        try:
            out = benchnaive.NAIVE[args.naive](args.n, scratch, args.arg or "")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
