"""The value data of the in-process steps: phone numbers (two kinds) and normalised emails.

Per size N, in ``.cache/N/``: ``phones_mixed.parquet`` (95 % common shapes settled by a fast path,
5 % that need the full ``phonenumbers`` parser), ``phones_e164.parquet`` (already E.164) and
``emails_norm.parquet`` (normalised emails, the SHA-256 step).
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from benchcolumns import (
    join,
    letter_strings,
    make_emails,
    normalise_emails,
    number_strings,
    write_parquet,
)
from benchdata import _done, _mark, _rng, load_meta, log, save_meta, size_dir


def ensure_phones(n: int, force: bool = False) -> None:
    """``phones_mixed`` (5 % need the full parser) and ``phones_e164`` (already E.164)."""
    folder = size_dir(n)
    if not force and _done(folder, "phones"):
        return
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rng = _rng(n, 5)
    area = number_strings(rng.integers(201, 990, size=n))
    exchange = number_strings(rng.integers(200, 1000, size=n))
    line = number_strings(rng.integers(0, 10000, size=n), 4)
    uk = number_strings(rng.integers(0, 10**8, size=n), 8)
    fr = number_strings(rng.integers(0, 10**8, size=n), 8)
    ext = number_strings(rng.integers(1, 1000, size=n))
    shapes = [
        # the common shapes: digits, spaces, dots, dashes, parentheses, one leading '+'
        (0.28, join("(", area, ") ", exchange, "-", line)),
        (0.24, join(area, "-", exchange, "-", line)),
        (0.09, join(area, ".", exchange, ".", line)),
        (0.15, join(area, exchange, line)),
        (0.10, join("+1 ", area, " ", exchange, " ", line)),
        (0.04, join("+44 20 ", uk)),
        (0.05, join("+33 6 ", fr)),
        # what only the full parser settles: extensions, letters, prefixes, other digits
        (0.012, join(area, "-", exchange, "-", line, " ext. ", ext)),
        (0.010, join("(", area, ") ", exchange, "-", line, " x", ext)),
        (0.008, join("tel:+1-", area, "-", exchange, "-", line)),
        (0.008, join("011 44 20 ", uk)),
        (0.006, join("1-800-", letter_strings(rng, n, 7, b"ABCDEFGHIJKLMNOPRSTUVWXY"))),
        (0.006, _fullwidth(join(area, exchange, line))),
    ]
    probabilities = np.array([p for p, _ in shapes])
    which = rng.choice(len(shapes), size=n, p=probabilities / probabilities.sum())
    mixed = pa.nulls(n, pa.string())
    for index, (_, values) in enumerate(shapes):
        mixed = pc.if_else(pa.array(which == index), values, mixed)
    slow_share = float(np.isin(which, np.arange(7, len(shapes))).mean())
    write_parquet(pa.table({"phone": mixed}), folder / "phones_mixed.parquet")
    kind = rng.choice(3, size=n, p=[0.7, 0.15, 0.15])
    e164 = pc.if_else(
        pa.array(kind == 0),
        join("+1", area, exchange, line),
        pc.if_else(pa.array(kind == 1), join("+4420", uk), join("+336", fr)),
    )
    write_parquet(pa.table({"phone": e164}), folder / "phones_e164.parquet")
    meta = load_meta(n)
    meta["phones_slow_share"] = round(slow_share, 4)
    meta.setdefault("generated_seconds", {})["phones"] = round(time.perf_counter() - started, 1)
    save_meta(n, meta)
    _mark(folder, "phones")
    log(f"  phone numbers for N = {n:,} ready in {time.perf_counter() - started:.1f} s")


def _fullwidth(arr: pa.Array) -> pa.Array:
    for d in "0123456789":
        arr = pc.replace_substring(arr, d, chr(0xFF10 + int(d)))
    return arr


def ensure_emails_norm(n: int, force: bool = False) -> None:
    """``emails_norm.parquet``: n normalised emails (the SHA-256 step)."""
    folder = size_dir(n)
    if not force and _done(folder, "emails"):
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = _rng(n, 6)
    emails = normalise_emails(make_emails(rng, rng.permutation(n)))
    write_parquet(pa.table({"email": emails}), folder / "emails_norm.parquet")
    _mark(folder, "emails")
