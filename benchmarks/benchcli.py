"""The end-to-end steps: one ``audtools`` command per run (import, re-import, profiles load,
database size, export), each on a fresh copy of a workspace, checked against the generated data."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import benchdata as bd
import benchspaces as bs
from benchproc import AUDTOOLS, HERE, PYTHON, Row, fmt_bytes, fmt_n, progress, run_process

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
        make_ws=lambda: bs.fresh_workspace(n, "import", (DROPS[key],)),
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
            ws = bs.fresh_workspace(n, "import_sftp", ("drop_visitors",))
            doc = tomlkit.parse((ws / "audtools.toml").read_text())
            doc["workspace"]["import_drop"] = server.url(ws / "drops" / "import")  # type: ignore[index]
            doc["sftp"] = {"known_hosts": str(server.known_hosts), "key_file": str(server.client_key)}
            (ws / "audtools.toml").write_text(tomlkit.dumps(doc))
            return ws

        measure_cli(row, args, make_ws=make_ws, cmd_for=lambda ws: import_cmd(ws, False), env=None,
                    check=lambda out: check_import(out, n, "visitors"))
    row.items = n


DASK_WORKERS = 2
DASK_WORKER_MEMORY = "1GiB"  # issue 16's out-of-core check: each worker limited to 1 GiB


def _peak_rss() -> int:
    """This process's peak resident memory (``VmHWM``), in bytes: run on each worker."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def step_import_dask(row: Row, args: argparse.Namespace) -> None:
    """The first visitor-ID import on the Dask engine: a 2-worker ``LocalCluster`` (processes,
    TCP on 127.0.0.1, each worker limited to 1 GiB) started once for the step, as a real cluster
    is already up; the engine's storage in the workspace. The peak RSS is the ``audtools``
    process's; the notes give the workers' peak RSS and each phase's median time from the run's
    log."""
    import re
    import statistics

    from distributed import LocalCluster

    n = row.n
    phases: dict[str, list[tuple[float, ...]]] = {}
    keys_line = re.compile(r"engine: \d+ keys written in \d+ buckets in ([\d.]+) s")
    tasks_line = re.compile(r"engine: (parsing|applying|reconciling|decrypting)\S*(?: \S+)?, (\d+) tasks "
                            r"in ([\d.]+) s \(per task: median ([\d.]+) s, longest ([\d.]+) s, "
                            r"CPU median ([\d.]+) s\)")

    def make_ws() -> Path:
        ws = bs.fresh_workspace(n, "import_dask", ("drop_visitors",))
        with (ws / "audtools.toml").open("a", encoding="utf-8") as fh:
            fh.write(f'\n[engine]\nkind = "dask"\nscheduler = "{address}"\n')
        return ws

    def check(out: dict[str, Any]) -> str | None:
        ws = bd.size_dir(n) / "work" / "import_dask"
        for log in ws.glob("runs/*/log"):
            text = log.read_text(encoding="utf-8")
            for m in keys_line.finditer(text):
                phases.setdefault("bucketing the keys", []).append((float(m.group(1)),))
            for m in tasks_line.finditer(text):
                phases.setdefault(f"{m.group(1)} ({m.group(2)} tasks)", []).append(
                    tuple(float(g) for g in m.groups()[2:]))
        return check_import(out, n, "visitors")

    from distributed import Client

    with LocalCluster(n_workers=DASK_WORKERS, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, memory_limit=DASK_WORKER_MEMORY) as cluster, \
            Client(cluster) as client:
        address = cluster.scheduler_address
        measure_cli(row, args, make_ws=make_ws, cmd_for=lambda ws: import_cmd(ws, False), env=None,
                    check=check)
        workers = client.run(_peak_rss)
    row.items = n
    row.notes.append(
        f"2-worker LocalCluster, {DASK_WORKER_MEMORY} each (workers' peak RSS "
        + ", ".join(fmt_bytes(b) for b in workers.values()) + "); phases, median s "
        "(for tasks: all, one task's median, longest, CPU): "
        + ", ".join(f"{name} " + " / ".join(f"{statistics.median(col):.2f}" for col in zip(*runs, strict=True))
                    for name, runs in phases.items()))


def setup_applied(n: int, key: str, name: str) -> Path:
    """A workspace whose import of the segment is done: the first import's, else a new one."""
    applied = applied_workspace(n, key)
    if applied.is_dir():
        return applied
    aes = key == "emails"
    ws = bs.fresh_workspace(n, name, (DROPS[key],))
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
    measure_cli(row, args, make_ws=lambda: bs.bare_workspace(n, "load"), cmd_for=lambda ws: load_cmd(ws, n),
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
        ws = bs.bare_workspace(n, "loaded")
        setup = run_process(load_cmd(ws, n))
        if setup.returncode != 0:
            raise RuntimeError(f"profiles load failed: {setup.stderr.strip()[-800:]}")
        progress(f"  N={fmt_n(n)} setup profiles load: {setup.seconds:.2f} s")
    bs.link_drop(ws, n, DROPS["visitors2"])
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
    shutil.rmtree(ws, ignore_errors=True)  # done with: the next steps' copies need the disk


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
        ws = bs.fresh_workspace(n, "export")
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
