"""The naive baselines: what a careful analyst writes without audtools, and how the runner
measures them (``naive_seconds``).

``run.py --naive NAME --arg VARIANT --n N`` runs one of them once (no warm-up) in a process of its
own and prints ``{"seconds": ..., "cpu": ..., "check": ...}``. The pandas pipelines run in two
variants, their strings as ``object`` columns and in pandas' default string dtype (``str``: Arrow
strings in pandas 3); the imports have a third, ``lines``, that reads the batch line by line in
Python (``gzip.open``, ``str.partition`` and ``str.split``, a ``set`` of members, a ``dict`` from
ID to profile). ``run.py`` reports the fastest variant whose results are right.

Inputs that audtools holds in its database (profiles, visitor IDs) are loaded before the clock
starts, as pandas objects (or Python lists for ``lines``); everything else is timed, the lookup
``dict`` of ``lines`` included (as ``DataFrame.merge`` builds its hash table under the clock).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchdata as bd
import pyarrow.parquet as pq
from benchproc import (
    HERE,
    PYTHON,
    ensure_data,
    fmt_bytes,
    fmt_n,
    fmt_s,
    generate,
    progress,
    run_process,
)
from benchwork import _column, _key_iv, _ref_decrypt, _ref_encrypt, _ref_phone

Result = dict[str, Any]

PANDAS = ("object", "str")
VARIANTS: dict[str, tuple[str, ...]] = {
    "import_visitor": (*PANDAS, "lines"),
    "import_visitor2": (*PANDAS, "lines"),
    "import_aes": (*PANDAS, "lines"),
    "join": PANDAS,
    "read_split": PANDAS,
    "export_visitor": PANDAS,
    "export_aes": PANDAS,
}
# The visitor-ID workload shapes: (key of meta.json, folder of the batch).
SHAPES = {"import_visitor": ("visitors", "drop_visitors"), "import_visitor2": ("visitors2", "drop_visitors2")}


def variants(name: str) -> tuple[str, ...]:
    """The variants of baseline ``name``; ``("",)`` when it has only one (a loop per value)."""
    return VARIANTS.get(name, ("",))


class _Clock:
    """Wall and CPU time of a ``with`` block."""

    def __enter__(self) -> _Clock:
        self.start, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
        self.cpu = time.process_time() - self.cpu0

    def result(self, ok: bool, got: Any = None, **extra: Any) -> Result:
        check = "ok" if ok else (f"MISMATCH {got}" if got is not None else "MISMATCH")
        return {"seconds": self.seconds, "cpu": self.cpu, "check": check, **extra}


def _strings(df: Any, variant: str) -> Any:
    """The frame's columns as ``object`` or as pandas' default string dtype."""
    return df.astype(object if variant == "object" else "str")


def _read_batch(paths: list[Path], variant: str, **kw: Any) -> Any:
    import pandas as pd

    dtype = object if variant == "object" else "str"
    frames = [
        pd.read_csv(p, sep="\t", header=None, names=["id", "segments"], dtype=dtype,
                    keep_default_na=False, **kw)
        for p in paths
    ]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _members(df: Any, sid: int) -> Any:
    import pandas as pd

    pairs = df.assign(sid=df["segments"].str.split(",")).explode("sid")
    pairs["sid"] = pd.to_numeric(pairs["sid"].str.strip())
    return pairs.loc[pairs["sid"] == sid, "id"].drop_duplicates()


def _lines(path: Path, sid: int) -> set[str]:
    """The IDs of the rows of one batch file that carry segment ``sid``, read line by line."""
    target = str(sid)
    members: set[str] = set()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="\n") as f:
        for line in f:
            uid, _, segments = line.rstrip("\r\n").partition("\t")
            if target in segments.split(","):
                members.add(uid)
    return members


def _write_profiles(out_dir: Path, profiles: Any) -> None:
    import pandas as pd

    pd.DataFrame({"profile_id": list(profiles)}).to_parquet(out_dir / "naive_profiles.parquet")


# -- imports ------------------------------------------------------------------------------------------


def _import_visitor(name: str, n: int, out_dir: Path, variant: str) -> Result:
    key, drop = SHAPES[name]
    folder = bd.size_dir(n)
    parts = sorted((folder / drop).glob("*.sync.gz"))
    want = bd.load_meta(n)[key]
    expected = (want["members"], want["matched"], want["profiles"])
    if variant == "lines":
        table = pq.read_table(folder / "visitors.parquet")
        vids, pids = table["visitor_id"].to_pylist(), table["profile_id"].to_pylist()
        del table
        with _Clock() as clock:
            lookup = dict(zip(vids, pids, strict=True))
            built = time.perf_counter() - clock.start
            members: set[str] = set()
            for path in parts:
                members |= _lines(path, bd.SID_VISITORS)
            found = [lookup[m] for m in members if m in lookup]
            profiles = set(found)
            _write_profiles(out_dir, profiles)
        got = (len(members), len(found), len(profiles))
        return clock.result(got == expected, got, dict_seconds=built)
    import pandas as pd

    visitors = _strings(pd.read_parquet(folder / "visitors.parquet"), variant)
    with _Clock() as clock:
        ids = _members(_read_batch(parts, variant, compression="gzip"), bd.SID_VISITORS)
        links = ids.to_frame("id").merge(visitors, left_on="id", right_on="visitor_id")
        matched = links["id"].nunique()
        result = links["profile_id"].drop_duplicates()
        result.to_frame().to_parquet(out_dir / "naive_profiles.parquet")
    got = (len(ids), matched, len(result))
    return clock.result(got == expected, got)


def naive_import_visitor(n: int, out_dir: Path, variant: str) -> Result:
    return _import_visitor("import_visitor", n, out_dir, variant)


def naive_import_visitor2(n: int, out_dir: Path, variant: str) -> Result:
    return _import_visitor("import_visitor2", n, out_dir, variant)


def naive_import_aes(n: int, out_dir: Path, variant: str) -> Result:
    folder = bd.size_dir(n)
    paths = sorted((folder / "drop_emails").glob("*.sync"))
    decrypt = _ref_decrypt(*_key_iv())
    want = bd.load_meta(n)["emails"]
    expected = (want["members"], want["undecryptable"], want["matched"], want["profiles"])
    if variant == "lines":
        return _import_aes_lines(n, out_dir, paths, decrypt, expected)
    import pandas as pd

    profiles = _strings(pd.read_parquet(folder / "profiles.parquet", columns=["profile_id", "email"]), variant)
    with _Clock() as clock:
        members = _members(_read_batch(paths, variant), bd.SID_EMAILS)
        plain = members.map(decrypt)
        keys = plain.str.strip().str.lower()
        frame = pd.DataFrame({"id": members.to_numpy(), "k": keys.to_numpy()})
        prof = pd.DataFrame({"profile_id": profiles["profile_id"],
                             "k": profiles["email"].str.strip().str.lower()}).dropna()
        links = frame.dropna().merge(prof, on="k")
        matched = links["id"].nunique()
        result = links["profile_id"].drop_duplicates()
        result.to_frame().to_parquet(out_dir / "naive_profiles.parquet")
    got = (len(members), int(plain.isna().sum()), matched, len(result))
    return clock.result(got == expected, got)


def _import_aes_lines(n: int, out_dir: Path, paths: list[Path], decrypt: Callable[[str], str | None],
                      expected: tuple[int, ...]) -> Result:
    table = pq.read_table(bd.size_dir(n) / "profiles.parquet", columns=["profile_id", "email"])
    pids, emails = table["profile_id"].to_pylist(), table["email"].to_pylist()
    del table
    with _Clock() as clock:
        lookup = {e.strip().lower(): p for p, e in zip(pids, emails, strict=True) if e is not None}
        built = time.perf_counter() - clock.start
        members: set[str] = set()
        for path in paths:
            members |= _lines(path, bd.SID_EMAILS)
        undecryptable = matched = 0
        profiles: set[str] = set()
        for member in members:
            plain = decrypt(member)
            if plain is None:
                undecryptable += 1
                continue
            profile = lookup.get(plain.strip().lower())
            if profile is not None:
                matched += 1
                profiles.add(profile)
        _write_profiles(out_dir, profiles)
    got = (len(members), undecryptable, matched, len(profiles))
    return clock.result(got == expected, got, dict_seconds=built)


# -- the other pipelines ----------------------------------------------------------------------------


def naive_join(n: int, out_dir: Path, variant: str) -> Result:
    import pandas as pd

    folder = bd.size_dir(n)
    visitors = _strings(pd.read_parquet(folder / "visitors.parquet"), variant)
    members = _strings(pd.read_parquet(folder / "members_visitor.parquet"), variant)
    with _Clock() as clock:
        links = members.merge(visitors, left_on="id", right_on="visitor_id")
        matched, profiles = links["id"].nunique(), links["profile_id"].nunique()
    want = bd.load_meta(n)["visitors"]
    return clock.result((matched, profiles) == (want["matched"], want["profiles"]), (matched, profiles))


def naive_decrypt(n: int, out_dir: Path, variant: str) -> Result:
    values = _column(bd.size_dir(n) / "members_email.parquet", "id").to_pylist()
    decrypt = _ref_decrypt(*_key_iv())
    with _Clock() as clock:
        out = [decrypt(v) for v in values]
    return clock.result(out.count(None) == bd.load_meta(n)["emails"]["undecryptable"])


def _naive_phones(n: int, name: str) -> Result:
    values = _column(bd.size_dir(n) / f"{name}.parquet", "phone").to_pylist()
    normalise = _ref_phone("US")
    with _Clock() as clock:
        out = [normalise(v) for v in values]
    return clock.result(len(out) == n)


def naive_phone_mixed(n: int, out_dir: Path, variant: str) -> Result:
    return _naive_phones(n, "phones_mixed")


def naive_phone_e164(n: int, out_dir: Path, variant: str) -> Result:
    return _naive_phones(n, "phones_e164")


def naive_sha256(n: int, out_dir: Path, variant: str) -> Result:
    values = _column(bd.size_dir(n) / "emails_norm.parquet", "email").to_pylist()
    with _Clock() as clock:
        out = [hashlib.sha256(v.encode("utf-8")).hexdigest() for v in values]
    return clock.result(len(out) == n)


def naive_read_split(n: int, out_dir: Path, variant: str) -> Result:
    path = bd.size_dir(n) / "plain" / f"{bd.VISITOR_ROOT}.sync"
    with _Clock() as clock:
        df = _read_batch([path], variant)
        pairs = df.assign(sid=df["segments"].str.split(",")).explode("sid")
        pairs["sid"] = pairs["sid"].str.strip().astype("int64")
    return clock.result(len(df) == n, pairs=len(pairs))


def naive_export_visitor(n: int, out_dir: Path, variant: str) -> Result:
    import pandas as pd

    visitors = _strings(pd.read_parquet(bd.size_dir(n) / "visitors.parquet"), variant)
    with _Clock() as clock:
        ids = visitors["visitor_id"].drop_duplicates()
        frame = pd.DataFrame({"id": ids.to_numpy(), "seg": f"d_sid={bd.SID_VISITORS + 1}"})
        frame.to_csv(out_dir / "naive_export.sync", sep="\t", header=False, index=False)
    return clock.result(len(ids) == n + n // 2)


def naive_export_aes(n: int, out_dir: Path, variant: str) -> Result:
    import pandas as pd

    profiles = _strings(pd.read_parquet(bd.size_dir(n) / "profiles.parquet", columns=["profile_id", "email"]),
                        variant)
    encrypt = _ref_encrypt(*_key_iv())
    with _Clock() as clock:
        keys = profiles["email"].dropna().str.strip().str.lower()
        keys = keys[keys.str.len() > 0].drop_duplicates()
        ids = keys.map(encrypt)
        frame = pd.DataFrame({"id": ids.to_numpy(), "seg": f"d_sid={bd.SID_VISITORS + 1}"})
        frame.to_csv(out_dir / "naive_export.sync", sep="\t", header=False, index=False)
    return clock.result(len(ids) == bd.load_meta(n)["profiles_with_email"])


# -- measuring them (the runner's side) ---------------------------------------------------------------------------------


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
    m = min(n, args.naive_max)
    entries = {v: naive_entry(name, v, m) for v in variants(name)}
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


NAIVE: dict[str, Callable[[int, Path, str], Result]] = {
    "import_visitor": naive_import_visitor,
    "import_visitor2": naive_import_visitor2,
    "import_aes": naive_import_aes,
    "join": naive_join,
    "decrypt": naive_decrypt,
    "phone_mixed": naive_phone_mixed,
    "phone_e164": naive_phone_e164,
    "sha256": naive_sha256,
    "read_split": naive_read_split,
    "export_visitor": naive_export_visitor,
    "export_aes": naive_export_aes,
}
