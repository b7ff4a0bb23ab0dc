"""What runs inside a benchmark worker process: the in-process audtools steps.

``run.py`` starts one worker process per step (``run.py --worker NAME --n N ...``), so that each
step's peak RSS is that of its own process. A worker loads its inputs (untimed), runs the step
``warmup`` times, then ``repeat`` times under the clock, checks the result against the generated
data, and prints one JSON object on standard output: ``{"times": [...], "items": ..., "check": ...}``.

The naive baselines are in ``benchnaive.py``; the one-value reference functions here (``cryptography``,
``phonenumbers``) are both the workers' checks and the naive baselines' inner loops.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchdata as bd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from benchcolumns import ASCII_WS

Result = dict[str, Any]


CPU: list[float] = []  # process CPU time (all threads) of each measured run of this worker


def _timed(fn: Callable[[], Any], repeat: int, warmup: int) -> tuple[list[float], Any]:
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeat):
        cpu = time.process_time()
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
        CPU.append(time.process_time() - cpu)
    return times, out


def _column(path: Path, name: str) -> pa.Array:
    return pq.read_table(path, columns=[name])[name].combine_chunks()


def _key_iv() -> tuple[bytes, bytes]:
    return bytes.fromhex(bd.KEY_HEX), bytes.fromhex(bd.IV_HEX)


# -- reference one-value functions (also the naive baselines' inner loops) -------------------------


def _ref_decrypt(key: bytes, iv: bytes) -> Callable[[str], str | None]:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    aes = algorithms.AES(key)

    def decrypt(text: str) -> str | None:
        try:
            data = base64.b64decode(text, validate=True)
            dec = Cipher(aes, modes.CBC(iv)).decryptor()
            padded = dec.update(data) + dec.finalize()
            unpadder = padding.PKCS7(128).unpadder()
            return (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")
        except Exception:  # noqa: BLE001 - undecryptable
            return None

    return decrypt


def _ref_encrypt(key: bytes, iv: bytes) -> Callable[[str], str]:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    aes = algorithms.AES(key)

    def encrypt(text: str) -> str:
        padder = padding.PKCS7(128).padder()
        padded = padder.update(text.encode("utf-8")) + padder.finalize()
        enc = Cipher(aes, modes.CBC(iv)).encryptor()
        return base64.b64encode(enc.update(padded) + enc.finalize()).decode("ascii")

    return encrypt


def _ref_phone(region: str) -> Callable[[str], str | None]:
    import phonenumbers

    e164 = phonenumbers.PhoneNumberFormat.E164

    def normalise(value: str) -> str | None:
        try:
            return phonenumbers.format_number(phonenumbers.parse(value.strip(ASCII_WS), region), e164)
        except phonenumbers.NumberParseException:
            return None

    return normalise


def _sample_check(rng_seed: int, got: pa.Array, inputs: pa.Array, reference: Callable[[Any], Any],
                  size: int = 2000) -> str:
    """Compare a random sample of results with the one-value reference."""
    rng = np.random.default_rng(rng_seed)
    idx = rng.choice(len(inputs), size=min(size, len(inputs)), replace=False)
    bad = 0
    for i in idx.tolist():
        value = inputs[i].as_py()
        want = None if value is None else reference(value)
        if got[i].as_py() != want:
            bad += 1
    return "ok" if bad == 0 else f"MISMATCH: {bad} of {len(idx)} sampled values differ from the reference"


# -- audtools steps -----------------------------------------------------------------------------


def work_join(n: int, repeat: int, warmup: int, arg: str | None) -> Result:
    """audtools' reconciliation (``importing.reconcile.reconcile``, as an import calls it) on N
    member IDs against the profiles' 1.5 N visitor IDs, in a read-only session on the workspace
    template."""
    from audtools.importing.members import Members
    from audtools.importing.reconcile import reconcile
    from audtools.workspace import Workspace
    from audtools.workspace import database as store

    template = bd.ensure_template(n)
    ws = Workspace(template)
    con = store.connect(ws.config.database, read_only=True)
    members = pq.read_table(bd.size_dir(n) / "members_visitor.parquet")
    con.register("_bench_members", members)
    # Visitor IDs as the segment state holds them: 128-bit integers, cast once when read.
    con.execute("CREATE TEMP TABLE _bench_mkeys AS "
                "SELECT CAST(id AS HUGEINT) AS id, CAST(id AS HUGEINT) AS k FROM _bench_members")
    con.unregister("_bench_members")
    source = ws.config.data_sources[bd.SOURCE_VISITORS]
    # The members of a segment are distinct IDs, their own keys: as the import lists them.
    mkeys = Members("_bench_mkeys", keys_unique=True, visitor_keys=True)

    def run() -> dict[str, Any]:
        found = reconcile(con, source, mkeys, file_audience=False)
        return {"matched": found.matched, "profiles": found.profiles, "shape": found.shape}

    times, out = _timed(run, repeat, warmup)
    # How much of it is the join statement itself.
    join_only = []
    for _ in range(3):
        con.execute("DROP TABLE IF EXISTS _bench_links")
        start = time.perf_counter()
        con.execute("CREATE TEMP TABLE _bench_links AS SELECT m.id, v.profile_id FROM _bench_mkeys m "
                    "JOIN visitor_keys v ON v.vid = m.k")
        join_only.append(time.perf_counter() - start)
    want = bd.load_meta(n)["visitors"]
    check = "ok" if (out["matched"], out["profiles"]) == (want["matched"], want["profiles"]) else (
        f"MISMATCH: matched/profiles {out['matched']}/{out['profiles']}, "
        f"expected {want['matched']}/{want['profiles']}")
    return {"times": times, "items": n, "check": check,
            "info": {"how": "importing.reconcile", "shape": out["shape"],
                     "join_only": sorted(join_only)[1]}}


def work_decrypt(n: int, repeat: int, warmup: int, arg: str | None) -> Result:
    from audtools.columns import aes as crypto

    key, iv = _key_iv()
    values = _column(bd.size_dir(n) / "members_email.parquet", "id")
    times, out = _timed(lambda: crypto.decrypt(values, key, iv, "base64"), repeat, warmup)
    want = bd.load_meta(n)["emails"]["undecryptable"]
    check = _sample_check(1, out, values, _ref_decrypt(key, iv))
    if out.null_count != want:
        check = f"MISMATCH: {out.null_count} undecryptable, expected {want}; " + check
    return {"times": times, "items": len(values), "check": check}


def _phones(n: int, repeat: int, warmup: int, name: str) -> Result:
    from audtools.columns import identifiers as ids

    values = _column(bd.size_dir(n) / f"{name}.parquet", "phone")
    times, out = _timed(lambda: ids.normalise_phone(values, "US"), repeat, warmup)
    return {"times": times, "items": len(values), "check": _sample_check(2, out, values, _ref_phone("US"))}


def work_phone_mixed(n: int, repeat: int, warmup: int, arg: str | None) -> Result:
    return _phones(n, repeat, warmup, "phones_mixed")


def work_phone_e164(n: int, repeat: int, warmup: int, arg: str | None) -> Result:
    return _phones(n, repeat, warmup, "phones_e164")


def work_sha256(n: int, repeat: int, warmup: int, arg: str | None) -> Result:
    """SHA-256 as the derived-ID cache does it: DuckDB's ``sha256`` in SQL over an Arrow column
    (``audtools.columns`` keeps only the ``hashlib`` reference, about 1 M/s of one core)."""
    from audtools.profiles.declared_ids import HASHED_KEY_SQL
    from audtools.workspace.database import arrow, connect

    values = _column(bd.size_dir(n) / "emails_norm.parquet", "email")
    con = connect(":memory:")
    con.register("_keys", pa.table({"k": values}))
    times, out = _timed(
        lambda: arrow(con, f"SELECT {HASHED_KEY_SQL} AS h FROM _keys")["h"].combine_chunks(),
        repeat, warmup)
    con.close()
    check = _sample_check(3, out, values, lambda v: hashlib.sha256(v.encode()).hexdigest())
    return {"times": times, "items": len(values), "check": check}


def work_read_split(n: int, repeat: int, warmup: int, arg: str | None) -> Result:
    from audtools.formats.outbound import OutboundReader

    path = bd.size_dir(n) / "plain" / f"{bd.VISITOR_ROOT}.sync"

    def run() -> tuple[int, int]:
        reader = OutboundReader(path, id_rule="visitor_id")
        pairs = sum(chunk.pairs.num_rows for chunk in reader)
        return reader.rows_total, pairs

    times, (rows, pairs) = _timed(run, repeat, warmup)
    check = "ok" if rows == n else f"MISMATCH: {rows} rows, expected {n}"
    return {"times": times, "items": rows, "check": check, "info": {"pairs": pairs}}


def work_explorer(n: int, repeat: int, warmup: int, arg: str | None) -> Result:
    """``import_audience(..., dry_run=True)`` of the AES-email segment (forced reconciliation) on
    a workspace where it was imported once (batch applied, derived-ID cache warm)."""
    from audtools.importing.flow import import_audience
    from audtools.workspace import Workspace

    os.environ[bd.KEY_ENV] = bd.KEY_HEX
    ws = Workspace(arg)

    def run() -> Any:
        return import_audience(ws, "bench explorer", bd.SID_EMAILS, bd.SOURCE_EMAILS,
                               force_reconciliation=True, dry_run=True, progress=False,
                               keep_members=False)

    times, out = _timed(run, repeat, warmup)
    want = bd.load_meta(n)["emails"]
    got = (out.members, out.undecryptable, out.matched, out.profiles)
    expected = (want["members"], want["undecryptable"], want["matched"], want["profiles"])
    check = "ok" if got == expected else f"MISMATCH: {got}, expected {expected}"
    return {"times": times, "items": out.members, "check": check}


def work_name_matching(n: int, repeat: int, warmup: int, arg: str | None) -> Result:
    """The import drop's names read and grouped into batches (``importing.scan.group_drop``): a
    drop of ``n`` files, batches of 4 parts under the three default data sources (``.info`` files
    listed but not read: the drop is listed once before the clock starts), and the whole
    ``audtools batches`` scan of the same drop beside it (listing, ``.info`` files, decisions)."""
    import tempfile

    from audtools.drops import import_drop
    from audtools.importing.scan import group_drop, scan_drop
    from audtools.workspace import init_workspace

    root = Path(tempfile.mkdtemp(prefix="bench-names-"))
    ws = init_workspace(root / "ws")
    folder = root / "ws" / "drops" / "import"
    dpids = [s.dpid for s in ws.config.data_sources.values()]
    past = time.time() - 86_400
    for i in range(n):
        batch, part = divmod(i, 4)
        dpid = dpids[batch % len(dpids)]
        mode = "full" if batch % 10 == 0 else "iter"
        path = folder / f"ftp_{46390 + batch % len(dpids)}_{dpid}_{mode}_{1_700_000_000_000 + batch * 1000}-{part + 1}.sync.gz"
        path.touch()
        os.utime(path, (past, past))
    drop = import_drop(ws.config)
    entries = drop.list()

    class Listed:
        """The drop as listed: the clock measures reading the names, not the file system."""
        url = drop.url

        def list(self) -> list[Any]:
            return entries

    times, (by_source, ignored) = _timed(lambda: group_drop(ws.config, Listed()), repeat, warmup)  # type: ignore[arg-type]
    files = sum(len(b.files) for batches in by_source.values() for b in batches.values())
    check = "ok" if files == n and not ignored else f"MISMATCH: {files} files read, {len(ignored)} ignored"
    with ws.session() as con:
        start = time.perf_counter()
        scan_drop(ws.config, con)
        whole = time.perf_counter() - start
    return {"times": times, "items": n, "check": check, "info": {"scan_seconds": round(whole, 3)}}


WORKERS: dict[str, Callable[[int, int, int, str | None], Result]] = {
    "join": work_join,
    "decrypt": work_decrypt,
    "phone_mixed": work_phone_mixed,
    "phone_e164": work_phone_e164,
    "sha256": work_sha256,
    "read_split": work_read_split,
    "explorer": work_explorer,
    "name_matching": work_name_matching,
}
