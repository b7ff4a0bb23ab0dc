#!/usr/bin/env python3
"""The audtools benchmark (issue 7; targets of issue 15): run each step several times, print one Markdown table.

    python benchmarks/run.py              # full: 10 M (1 M where the targets say so), ≤ 30 min
    python benchmarks/run.py --quick      # every step at N = 100,000, under a minute
    python benchmarks/run.py --sizes 1000000 --steps import_visitor,import_aes

Data is generated once per size from a fixed seed and cached in ``benchmarks/.cache/N/`` (see
``benchdata.py``). Every audtools figure is the median of ``--repeat`` runs (default 5) after
``--warmup`` runs (default 1); end-to-end steps time the ``audtools`` process on a fresh copy of
the workspace template, in-process steps run in a worker process of their own (``benchwork.py``).
Peak RSS is the ``ru_maxrss`` of that process, read with ``os.wait4`` for each run. The naive
baselines are measured once per data size and cached in ``.cache/N/naive.json``; above
``--naive-max`` IDs they are extrapolated linearly from that size (said in the note column).

The table goes to standard output, progress to standard error. The exit status is 1 when a step
failed or gave results that differ from the generated data's expected counts (targets missed do
not change it: CI runs ``--quick`` as a smoke test without thresholds).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import benchdata as bd  # noqa: E402

PYTHON = sys.executable
AUDTOOLS = str(Path(sys.executable).with_name("audtools"))
if not Path(AUDTOOLS).exists():
    AUDTOOLS = shutil.which("audtools") or AUDTOOLS
QUICK_N = 100_000
M, K = 1_000_000, 1_000
GiB = 1 << 30


@dataclass(frozen=True)
class Target:
    n: int
    max_s: float | None = None
    max_rss: int | None = None
    min_rate: float | None = None
    min_ratio: float | None = None
    max_bytes: int | None = None  # of the workspace's database file
    text: str = ""


@dataclass(frozen=True)
class Step:
    name: str
    label: str
    default_n: int
    target: Target
    naive: str | None  # the naive baseline's name (benchwork.NAIVE), if any
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
}


@dataclass
class Row:
    step: str
    label: str
    n: int
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    items: int = 0
    rss: int | None = None
    naive_s: float | None = None
    notes: list[str] = field(default_factory=list)
    failed: bool = False
    unavailable: bool = False
    target: Target | None = None
    met: str = ""
    size: int | None = None  # the database file's size (db_size)

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times else None

    @property
    def rate(self) -> float | None:
        med = self.median
        return self.items / med if med else None

    @property
    def ratio(self) -> float | None:
        med = self.median
        return self.naive_s / med if med and self.naive_s else None


# -- formatting ------------------------------------------------------------------------------------


def fmt_n(n: int) -> str:
    for unit, name in ((M, "M"), (K, "k")):
        if n >= unit:
            value = n / unit
            return f"{value:g} {name}"
    return str(n)


def fmt_s(s: float | None) -> str:
    if s is None:
        return "—"
    if s >= 100:
        return f"{s:.0f}"
    if s >= 10:
        return f"{s:.1f}"
    if s >= 1:
        return f"{s:.2f}"
    return f"{s:.3f}"


def fmt_rate(r: float | None) -> str:
    if r is None:
        return "—"
    if r >= M:
        return f"{r / M:.2f} M/s"
    return f"{r / K:.0f} k/s"


def fmt_bytes(b: int | None) -> str:
    if b is None:
        return "—"
    if b >= GiB:
        return f"{b / GiB:.2f} GiB"
    return f"{b / (1 << 20):.0f} MiB"


def fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.1f}×"


# -- running processes -------------------------------------------------------------------------------


@dataclass
class Proc:
    seconds: float
    rss: int
    cpu: float
    stdout: str
    stderr: str
    returncode: int

    def json(self) -> dict[str, Any]:
        lines = [line for line in self.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise RuntimeError(f"no JSON output (exit {self.returncode}): {self.stderr.strip()[-500:]}")
        return json.loads(lines[-1])


def _hwm(pid: int) -> int:
    """The process's own RSS high-water mark (VmHWM), 0 once it has exited."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def run_process(cmd: list[str], env: dict[str, str] | None = None) -> Proc:
    """Run ``cmd``: its wall time, its peak RSS and its CPU time (user + system).

    The peak RSS is the process's VmHWM, polled every 10 ms: ``ru_maxrss`` is not used because
    on Linux a child inherits its parent's high-water mark through fork and exec.
    """
    peak = [0]
    stop = threading.Event()

    def poll(pid: int) -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _hwm(pid))
            stop.wait(0.01)

    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env)
        watcher = threading.Thread(target=poll, args=(proc.pid,), daemon=True)
        watcher.start()
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        stop.set()
        watcher.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    return Proc(seconds, peak[0], usage.ru_utime + usage.ru_stime, out.decode("utf-8", "replace"), stderr,
                proc.returncode)


def worker_cmd(kind: str, name: str, n: int, args: argparse.Namespace, arg: str | None = None) -> list[str]:
    cmd = [PYTHON, str(HERE / "run.py"), kind, name, "--n", str(n),
           "--repeat", str(args.repeat), "--warmup", str(args.warmup)]
    if arg is not None:
        cmd += ["--arg", arg]
    return cmd


def progress(message: str) -> None:
    bd.log(message)


# -- the steps -----------------------------------------------------------------------------------


def key_env() -> dict[str, str]:
    return {**os.environ, bd.KEY_ENV: bd.KEY_HEX}


def import_cmd(ws: Path, aes: bool) -> list[str]:
    if aes:
        return [AUDTOOLS, "import", "-w", str(ws), "--label", "bench emails", "--shared-audience",
                str(bd.SID_EMAILS), "--data-source", bd.SOURCE_EMAILS, "--force-reconciliation",
                "--json", "-q"]
    return [AUDTOOLS, "import", "-w", str(ws), "--label", "bench visitors", "--shared-audience",
            str(bd.SID_VISITORS), "--data-source", bd.SOURCE_VISITORS, "--json", "-q"]


# The segments' batches: the key of their expected counts in meta.json -> their folder.
DROPS = {"visitors": "drop_visitors", "visitors2": "drop_visitors2", "emails": "drop_emails"}


def check_import(out: dict[str, Any], n: int, key: str, rerun: bool = False) -> str | None:
    """What an import printed against the generated data (``key``: visitors, visitors2, emails)."""
    aes = key == "emails"
    want = bd.load_meta(n)[key]
    got = {
        "members": out.get("members"),
        "matched": out.get("matched"),
        "profiles": out.get("profiles"),
        "rows_read": out.get("rows_read"),
    }
    expected = {
        "members": want["members"],
        "matched": want["matched"],
        "profiles": want["profiles"],
        "rows_read": 0 if rerun else want["rows"],
    }
    if aes:
        got["undecryptable"] = out.get("undecryptable")
        expected["undecryptable"] = want["undecryptable"]
    if got != expected:
        return f"MISMATCH: got {got}, expected {expected}"
    return None


def measure_cli(row: Row, args: argparse.Namespace, make_ws: Any, cmd_for: Any, env: dict[str, str] | None,
                check: Any) -> None:
    """Warm-up and measured runs of one command, each on the workspace ``make_ws()`` returns."""
    repeat, warmup = args.repeat, args.cli_warmup
    total = warmup + repeat
    rss: list[int] = []
    i = 0
    while i < total:
        ws = make_ws()
        proc = run_process(cmd_for(ws), env)
        if proc.returncode != 0:
            raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip()[-800:]}")
        problem = check(proc.json())
        if problem:
            row.notes.append(problem)
            row.failed = True
        kind = "warm-up" if i < warmup else f"run {i - warmup + 1}/{repeat}"
        progress(f"  {row.step} N={fmt_n(row.n)} {kind}: {proc.seconds:.2f} s (CPU {proc.cpu:.2f} s), "
                 f"RSS {fmt_bytes(proc.rss)}")
        if i >= warmup:
            row.times.append(proc.seconds)
            row.cpu.append(proc.cpu)
            rss.append(proc.rss)
        elif i == warmup - 1 and repeat > 3 and proc.seconds * repeat > args.step_budget:
            # Keep the full run within its time budget when a step is far slower than its target.
            repeat = max(3, int(args.step_budget // proc.seconds))
            total = warmup + repeat
            row.notes.append(f"median of {repeat} runs (a run takes {proc.seconds:.0f} s)")
        i += 1
    row.rss = max(rss) if rss else None


KEEP = ("applied-visitors", "applied-visitors2", "applied-emails", "loaded")  # work kept between steps


def applied_workspace(n: int, key: str) -> Path:
    """Where the last run of a first import leaves its workspace (batch applied, audience stored,
    derived IDs cached): the re-import and the explorer start from it when it is there."""
    return bd.size_dir(n) / "work" / f"applied-{key}"


def step_import(row: Row, args: argparse.Namespace, key: str) -> None:
    n = row.n
    aes = key == "emails"
    measure_cli(
        row, args,
        make_ws=lambda: bd.fresh_workspace(n, "import", (DROPS[key],)),
        cmd_for=lambda ws: import_cmd(ws, aes),
        env=key_env() if aes else None,
        check=lambda out: check_import(out, n, key),
    )
    row.items = n
    applied = applied_workspace(n, key)
    shutil.rmtree(applied, ignore_errors=True)
    os.replace(bd.size_dir(n) / "work" / "import", applied)


def step_import_sftp(row: Row, args: argparse.Namespace) -> None:
    """The first visitor-ID import read through Debian's OpenSSH server on 127.0.0.1 (the
    tests' server, tests/servers.py): the same batches, served from the workspace's folder."""
    import tomlkit

    sys.path.insert(0, str(HERE.parent / "tests"))
    from servers import SshServer

    n = row.n
    with tempfile.TemporaryDirectory() as tmp, SshServer(Path(tmp) / "sshd") as server:
        def make_ws() -> Path:
            ws = bd.fresh_workspace(n, "import_sftp", ("drop_visitors",))
            doc = tomlkit.parse((ws / "audtools.toml").read_text())
            doc["workspace"]["import_drop"] = server.url(ws / "drops" / "import")  # type: ignore[index]
            doc["sftp"] = {"known_hosts": str(server.known_hosts), "key_file": str(server.client_key)}
            (ws / "audtools.toml").write_text(tomlkit.dumps(doc))
            return ws

        measure_cli(row, args, make_ws=make_ws, cmd_for=lambda ws: import_cmd(ws, False), env=None,
                    check=lambda out: check_import(out, n, "visitors"))
    row.items = n


def setup_applied(n: int, key: str, name: str) -> Path:
    """A workspace whose import of the segment is done: the first import's, else a new one."""
    applied = applied_workspace(n, key)
    if applied.is_dir():
        return applied
    aes = key == "emails"
    ws = bd.fresh_workspace(n, name, (DROPS[key],))
    setup = run_process(import_cmd(ws, aes), key_env() if aes else None)
    if setup.returncode != 0:
        raise RuntimeError(f"setup import failed: {setup.stderr.strip()[-800:]}")
    progress(f"  N={fmt_n(n)} setup import ({key}): {setup.seconds:.2f} s")
    return ws


def step_reimport(row: Row, args: argparse.Namespace, key: str) -> None:
    n = row.n
    ws = setup_applied(n, key, "reimport")
    measure_cli(row, args, make_ws=lambda: ws, cmd_for=lambda w: import_cmd(w, False), env=None,
                check=lambda out: check_import(out, n, key, rerun=True))
    row.items = n


def load_cmd(ws: Path, n: int) -> list[str]:
    folder = bd.size_dir(n)
    return [AUDTOOLS, "profiles", "load", "-w", str(ws), str(folder / "profiles.csv"),
            "--visitors", str(folder / "visitors.csv"), "--json", "-q"]


def check_load(out: dict[str, Any], n: int) -> str | None:
    got = {k: out.get(k) for k in ("profiles_read", "profiles_inserted", "profiles_total", "visitors_read",
                                    "visitors_added", "visitors_rejected")}
    want = {"profiles_read": n, "profiles_inserted": n, "profiles_total": n, "visitors_read": n + n // 2,
            "visitors_added": n + n // 2, "visitors_rejected": 0}
    return None if got == want else f"MISMATCH: got {got}, expected {want}"


def database_bytes(ws: Path) -> int:
    """The size of the workspace's database file, its write-ahead log included (if any is left)."""
    files = [ws / "campaign.duckdb", ws / "campaign.duckdb.wal"]
    return sum(f.stat().st_size for f in files if f.is_file())


def fmt_gb(b: int) -> str:
    return f"{b / 1e9:.2f} GB" if b >= 1e8 else f"{b / 1e6:.1f} MB"


def step_profiles_load(row: Row, args: argparse.Namespace) -> None:
    """``audtools profiles load`` of the CSV profiles and visitor IDs into a new workspace; the
    last run's workspace is kept (``work/loaded``) for the database-size step."""
    n = row.n
    measure_cli(row, args, make_ws=lambda: bd.bare_workspace(n, "load"), cmd_for=lambda ws: load_cmd(ws, n),
                env=None, check=lambda out: check_load(out, n))
    row.items = n + n // 2
    loaded = bd.size_dir(n) / "work" / "loaded"
    shutil.rmtree(loaded, ignore_errors=True)
    os.replace(bd.size_dir(n) / "work" / "load", loaded)
    row.notes.append(f"{fmt_n(n)} profiles + {fmt_n(n + n // 2)} visitor IDs (IDs/s counts the visitor IDs); "
                     f"campaign.duckdb after the load {fmt_gb(database_bytes(loaded))}")


def step_db_size(row: Row, args: argparse.Namespace) -> None:
    """The first import of the second workload shape right after ``audtools profiles load`` (no
    ``sync`` between, as a user runs them), then the size of ``campaign.duckdb``: one run."""
    n = row.n
    ws = bd.size_dir(n) / "work" / "loaded"
    if not ws.is_dir():
        ws = bd.bare_workspace(n, "loaded")
        setup = run_process(load_cmd(ws, n))
        if setup.returncode != 0:
            raise RuntimeError(f"profiles load failed: {setup.stderr.strip()[-800:]}")
        progress(f"  N={fmt_n(n)} setup profiles load: {setup.seconds:.2f} s")
    bd.link_drop(ws, n, DROPS["visitors2"])
    proc = run_process(import_cmd(ws, False))
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip()[-800:]}")
    problem = check_import(proc.json(), n, "visitors2")
    if problem:
        row.notes.append(problem)
        row.failed = True
    row.times, row.cpu, row.rss, row.items = [proc.seconds], [proc.cpu], proc.rss, n
    row.size = database_bytes(ws)
    progress(f"  {row.step} N={fmt_n(n)}: import {proc.seconds:.2f} s (CPU {proc.cpu:.2f} s), "
             f"RSS {fmt_bytes(proc.rss)}, campaign.duckdb {fmt_gb(row.size)}")
    row.notes.append(f"**campaign.duckdb {fmt_gb(row.size)}**; time and RSS: one `audtools import` of the "
                     "second shape right after `audtools profiles load`, no sync between")


EXPORT_SNIPPET = """\
import json, sys
from audtools.exporting.flow import export_audience
r = export_audience(sys.argv[1], segment_name=sys.argv[3], data_source=sys.argv[2], progress=False,
                    keep_transitions=False)
print(json.dumps(r.to_json()))
"""


_EXPORT_CLI: list[bool] = []


def export_cli_available() -> bool:
    """Whether the command line has an ``export`` command yet (asked once)."""
    if not _EXPORT_CLI:
        try:
            from audtools.cli.main import cli

            _EXPORT_CLI.append("export" in cli.commands)
        except Exception:  # noqa: BLE001
            _EXPORT_CLI.append(run_process([AUDTOOLS, "export", "--help"]).returncode == 0)
    return _EXPORT_CLI[0]


def step_export(row: Row, args: argparse.Namespace, aes: bool, warm: bool = False) -> None:
    n = row.n
    try:
        import audtools.exporting.flow  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        row.unavailable = True
        row.notes.append(f"not available: audtools.exporting.flow does not import ({type(exc).__name__}: {exc})")
        return
    source = bd.SOURCE_EMAILS if aes else bd.SOURCE_VISITORS
    if export_cli_available():
        def cmd_for(ws: Path) -> list[str]:
            return [AUDTOOLS, "export", "-w", str(ws), "--segment-name", "Bench export",
                    "--data-source", source, "--json", "-q"]
        row.notes.append("`audtools export`")
    else:
        def cmd_for(ws: Path) -> list[str]:
            return [PYTHON, "-c", EXPORT_SNIPPET, str(ws), source, "Bench export"]
        row.notes.append("no `audtools export` yet: `export_audience()` in a fresh process")
    meta = bd.load_meta(n)
    want = meta["profiles_with_email"] if aes else meta["visitor_ids"]

    def check(out: dict[str, Any]) -> str | None:
        if "error" in out:
            return f"error: {out['error']}"
        got = out.get("ids_exported")
        return None if got == want else f"MISMATCH: {got} IDs exported, expected {want}"

    def make_ws() -> Path:
        ws = bd.fresh_workspace(n, "export")
        if warm:  # a dry run fills the derived-ID cache, as a first export or import would
            setup = run_process(cmd_for(ws) + ["--dry-run"], key_env())
            if setup.returncode != 0:
                raise RuntimeError(f"warming the cache failed: {setup.stderr.strip()[-800:]}")
        return ws

    if warm:
        row.notes.append("derived-ID cache filled beforehand by an untimed `--dry-run`")
    try:
        measure_cli(row, args, make_ws=make_ws, cmd_for=cmd_for,
                    env=key_env() if aes else None, check=check)
    except Exception as exc:  # noqa: BLE001 - the export is being written: report, do not fail
        row.unavailable = True
        row.times = []
        row.notes.append(f"not available: {str(exc).strip().splitlines()[-1][:300]}")
        return
    row.items = want


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


def generate(kind: str, n: int, force: bool = False) -> None:
    """Generate cached data in a process of its own (keeps this one small)."""
    if not force and bd.is_done(kind, n):
        return
    cmd = [PYTHON, str(HERE / "run.py"), "--generate", kind, "--n", str(n)] + (["--arg", "force"] if force else [])
    started = time.perf_counter()
    if subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode != 0:
        raise RuntimeError(f"generating {kind} data for N = {n:,} failed")
    GENERATION_SECONDS[0] += time.perf_counter() - started


GENERATION_SECONDS = [0.0]


def ensure_data(step: str, n: int) -> None:
    if step == "name_matching":
        return  # the worker writes its own drop of empty files
    if step in ("phone_mixed", "phone_e164"):
        generate("phones", n)
    elif step == "sha256":
        generate("emails", n)
    else:
        generate("core", n)
        if step in ("profiles_load", "db_size"):
            generate("csv", n)
        elif step not in ("decrypt", "read_split"):
            generate("template", n)
        if step in ("import_visitor2", "reimport_visitor2", "db_size"):
            generate("shape2", n)


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
        bd.remove_work(n, keep=KEEP)
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


# -- naive baselines ---------------------------------------------------------------------------------


def naive_data(name: str, m: int) -> None:
    """The generated data a naive baseline reads."""
    if name in ("phone_mixed", "phone_e164", "sha256"):
        ensure_data(name, m)
    else:
        generate("core", m)
        if name == "import_visitor2":
            generate("shape2", m)


def naive_entry(name: str, variant: str, m: int) -> dict[str, Any]:
    """One variant of a naive baseline at m: measured once per size, then cached."""
    path = bd.size_dir(m) / "naive.json"
    key = f"{name}/{variant}" if variant else name
    label = f"{name} ({variant})" if variant else name
    cache = json.loads(path.read_text()) if path.is_file() else {}
    entry = cache.get(key)
    if entry is not None and entry.get("gen_version") == bd.GEN_VERSION and "cpu" in entry:
        return entry
    naive_data(name, m)
    progress(f"  naive {label} at N = {fmt_n(m)} (measured once, then cached)")
    proc = run_process([PYTHON, str(HERE / "run.py"), "--naive", name, "--n", str(m), "--arg", variant])
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip()[-500:])
    out = proc.json()
    entry = {"seconds": out["seconds"], "cpu": out.get("cpu"), "check": out["check"], "rss": proc.rss,
             "gen_version": bd.GEN_VERSION, "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    if "dict_seconds" in out:
        entry["dict_seconds"] = out["dict_seconds"]
    progress(f"  naive {label} at N = {fmt_n(m)}: {entry['seconds']:.2f} s, RSS {fmt_bytes(proc.rss)}, {out['check']}")
    cache = json.loads(path.read_text()) if path.is_file() else {}
    cache[key] = entry
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return entry


def naive_seconds(name: str, n: int, args: argparse.Namespace) -> tuple[float, str]:
    """The naive baseline at n: the fastest of its variants whose results are right (pandas on
    ``object`` strings, on pandas' default ``str`` dtype, Python line by line), measured once per
    size and extrapolated linearly above --naive-max."""
    import benchnaive

    m = min(n, args.naive_max)
    entries = {v: naive_entry(name, v, m) for v in benchnaive.variants(name)}
    good = {v: e for v, e in entries.items() if e.get("check") == "ok"} or entries
    best = min(good, key=lambda v: good[v]["seconds"])
    entry = good[best]
    notes = []
    if len(entries) > 1:
        notes.append(f"naive: {best}, the fastest of ("
                     + ", ".join(f"{v} {fmt_s(e['seconds'] * n / m)} s" for v, e in entries.items()) + ")")
    if entry.get("cpu") is not None:
        notes.append(f"naive CPU {fmt_s(entry['cpu'] * n / m)} s")
    if m != n:
        notes.append(f"naive extrapolated ×{n / m:g} from {fmt_n(m)}")
    note = ", ".join(notes)
    bad = [f"{v or name}: {e.get('check')}" for v, e in entries.items() if e.get("check") != "ok"]
    if bad:
        note = (note + "; " if note else "") + "naive check " + "; ".join(bad)
    return entry["seconds"] * n / m, note


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


def growth_rows(rows: dict[tuple[str, int], Row], sizes: list[int], args: argparse.Namespace) -> list[Row]:
    out = []
    for n in sizes:
        base = rows.get(("import_visitor", n))
        if base is None:
            base = run_step(STEP_BY_NAME["import_visitor"], n, argparse.Namespace(**{**vars(args), "no_naive": True}))
            rows[("import_visitor", n)] = base
        row = Row("growth", "growth: first import, visitor IDs, time per ID", n, list(base.times),
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


# -- main --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"every step at N = {QUICK_N:,} (a smoke test)")
    p.add_argument("--sizes", help="comma-separated N for every selected step, e.g. 1000000,3000000")
    p.add_argument("--steps", help="comma-separated steps: " + ", ".join([s.name for s in STEPS] + ["growth"])
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
    p.add_argument("--regenerate", action="store_true", help="regenerate the cached data of the sizes used")
    p.add_argument("--plan", action="store_true", help="print the steps and sizes that would run, and stop")
    # Internal: worker processes.
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--naive", help=argparse.SUPPRESS)
    p.add_argument("--generate", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--arg", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def plan(args: argparse.Namespace) -> tuple[list[tuple[Step, int]], list[int]]:
    names: list[str] = []
    for item in (args.steps.split(",") if args.steps else [s.name for s in STEPS] + ["growth"]):
        item = item.strip()
        if not item:
            continue
        expanded = ALIASES.get(item, [item])
        for name in expanded:
            if name != "growth" and name not in STEP_BY_NAME:
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
        if name == "growth":
            continue
        step = STEP_BY_NAME[name]
        for n in sizes or [step.default_n]:
            todo.append((step, n))
    growth_sizes = sizes or GROWTH_SIZES
    if args.growth_sizes:
        growth_sizes = sorted({int(float(s)) for s in args.growth_sizes.split(",") if s.strip()})
    growth = growth_sizes if "growth" in names else []
    todo.sort(key=lambda sn: (sn[1], STEPS.index(sn[0])))
    return todo, growth


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.repeat is None:
        args.repeat = 3 if args.quick else 5
    # End-to-end steps are process runs of a few seconds at 100 k: --quick skips their warm-up to
    # stay under a minute (their inputs are a few MB, just written or copied).
    args.cli_warmup = args.warmup if args.warmup is not None else (0 if args.quick else 1)
    if args.warmup is None:
        args.warmup = 1
    if args.worker or args.naive or args.generate:
        return worker_main(args)
    todo, growth = plan(args)
    if args.plan:
        for step, n in todo:
            print(f"{step.name:18s} N = {n:>12,}")
        if growth:
            print(f"{'growth':18s} N = {', '.join(f'{n:,}' for n in growth)} (first import, visitor IDs)")
        return 0
    started = dt.datetime.now(dt.UTC)
    load = os.getloadavg()
    pressure = cpu_pressure()
    t0 = time.perf_counter()
    if args.regenerate:  # everything of these sizes is generated again when a step needs it
        for n in sorted({n for _, n in todo} | set(growth)):
            for marker in bd.size_dir(n).glob(".done-*"):
                marker.unlink()
    rows: dict[tuple[str, int], Row] = {}
    for step, n in todo:
        rows[(step.name, n)] = run_step(step, n, args)
    growth_part = growth_rows(rows, growth, args) if growth else []
    for n in {n for _, n in todo} | set(growth):
        bd.remove_work(n)
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


def worker_main(args: argparse.Namespace) -> int:
    if args.generate:
        force = args.arg == "force"
        {"core": bd.ensure_core, "template": bd.ensure_template, "phones": bd.ensure_phones,
         "emails": bd.ensure_emails_norm, "shape2": bd.ensure_shape2, "csv": bd.ensure_profiles_csv}[args.generate](args.n, force=force)
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
