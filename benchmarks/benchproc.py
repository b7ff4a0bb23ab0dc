"""What the benchmark runner shares: targets, rows, formatting, and the processes it starts.

Every audtools figure comes from a process of its own (an ``audtools`` command, or a worker
``run.py --worker STEP``): its wall time, its CPU time (user + system, from ``os.wait4``) and its
peak RSS (``VmHWM``, polled every 10 ms). Generated data is made in a process of its own as well.
"""

from __future__ import annotations

import argparse
import json
import os
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

import benchdata as bd

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
AUDTOOLS = str(Path(sys.executable).with_name("audtools"))
if not Path(AUDTOOLS).exists():
    AUDTOOLS = shutil.which("audtools") or AUDTOOLS
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
