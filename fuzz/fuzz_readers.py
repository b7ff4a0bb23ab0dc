"""Fuzz the readers of the import drop: the outbound row parser, the ``.info`` reader, the catalog.

A seeded generator makes the inputs: random bytes mixed with the pieces each format is made of,
so that most inputs come near the rules rather than failing at the first byte, and one in fifty
repeated to up to 64 KB. Every input goes through its reader once. (Hypothesis costs about 10 ms
per example on this machine, so that a million inputs would take hours; this generator costs a
few microseconds per input, and the readers' own work dominates.)

A crash is any exception other than the reader's documented refusal (``InputError`` with code
``bad_info`` or ``bad_catalog``; the row parser refuses nothing: every line gets a reason). The
script prints, per reader: inputs tried, crashes, the slowest call, and the slowest input per
byte among inputs of 64 bytes or more (below that, the fixed cost of a call dominates).

Run by ``make fuzz`` (not by ``make test``)::

    python fuzz/fuzz_readers.py --examples 1000000 --seed 1   # 40% rows, 30% .info, 30% catalog
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from audtools.errors import InputError
from audtools.formats.catalog import read_catalog
from audtools.formats.outbound_info import parse_info
from audtools.formats.outbound_parse import SEPARATORS, parse_block

ROW_PIECES = [b"\n", b"\t", b",", b";", b"|", b" ", b"  ", b"\r\n", b"\r", b"\xff", b"\xc3",
              b"\xc3\xa9", b"\xe2\x80\xa8", b"\xef\xbb\xbf", b"%3A", b"%3a", b":", b"\x00", b"\x7f",
              b"\xc2\x85", b"1" * 38, b"123", b"1" * 19, b"0", b"-1", b"abc", b"\xf0\x9f\x98\x80"]
JSON_PIECES = [b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b" ", b"\n", b"Files", b"FileName",
               b"FileLineCount", b"FileByteSize", b"md5", b"segments", b"sid", b"name", b"type",
               b"source", b"segment", b"audience_manager", b"0", b"-1", b"1e400",
               b"18446744073709551616", b"true", b"null", b'"a.sync"', b"\xc3\xa9", b"$_", b"aaaa",
               b"\xff", b"\xed\xa0\x80", b"\x00", b"\\ud800"]


def junk(rng: random.Random, pieces: list[bytes]) -> bytes:
    """Random bytes and format pieces; one input in 50 repeated to up to 64 KB."""
    parts = []
    for _ in range(rng.randrange(41)):
        parts.append(rng.randbytes(rng.randrange(25)) if rng.random() < 0.35 else rng.choice(pieces))
    data = b"".join(parts)
    if data and rng.random() < 0.02:
        data = data * rng.randrange(1, 1 + (64 << 10) // len(data))
    return data


def json_input(rng: random.Random) -> bytes:
    """JSON-like text, raw bytes, or a well-formed manifest or catalog with odd values."""
    kind = rng.random()
    if kind < 0.6:
        return junk(rng, JSON_PIECES)
    if kind < 0.8:
        return rng.randbytes(rng.randrange(200))
    value = rng.choice([0, -1, 2**70, "7", "x", 1.5, None, [], {}, True])
    name = rng.choice(["a.sync", "", "é", "../x", "a" * 300, 5])
    if rng.random() < 0.5:
        doc: Any = {"Files": [{"FileName": name, "FileLineCount": value, "FileByteSize": value}]}
    else:
        doc = {"segments": [{"sid": value, "name": name, "type": "segment",
                             "source": "audience_manager"}]}
    return json.dumps(doc).encode()


class Tally:
    """Inputs tried, crashes, the slowest call and the slowest input per byte of one reader."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tried = 0
        self.crashes: list[str] = []
        self.slowest_call = 0.0
        self.slowest = (0.0, 0, b"")  # seconds per byte, size, input (of 64 bytes or more)

    def run(self, call: Callable[[], Any], data: bytes) -> None:
        start = time.perf_counter()
        try:
            call()
        except InputError as exc:
            if exc.code not in ("bad_info", "bad_catalog"):
                self.crashes.append(f"{exc!r} on {data[:80]!r}")
        except Exception:
            self.crashes.append(f"{traceback.format_exc(limit=3)} on {data[:80]!r}")
        seconds = time.perf_counter() - start
        self.tried += 1
        self.slowest_call = max(self.slowest_call, seconds)
        if len(data) >= 64 and seconds / len(data) > self.slowest[0]:
            self.slowest = (seconds / len(data), len(data), data)

    def figures(self) -> dict[str, Any]:
        per_byte, size, data = self.slowest
        return {"reader": self.name, "inputs": self.tried, "crashes": len(self.crashes),
                "slowest_call_seconds": round(self.slowest_call, 4),
                "slowest_seconds_per_byte": per_byte, "slowest_per_byte_size": size,
                "slowest_per_byte_input": repr(data[:60]), "first_crashes": self.crashes[:3]}


def fuzz(examples: int, folder: Path, seed: int) -> list[Tally]:
    """Run ``examples`` inputs: 40% through the row parser, 30% each ``.info`` and catalog."""
    rng = random.Random(seed)
    rows, info, catalog = Tally("outbound rows"), Tally(".info"), Tally("catalog.json")
    rules: list[Any] = ["visitor_id", "declared_id"]
    for _ in range(examples * 4 // 10):
        data = junk(rng, ROW_PIECES)
        rule, lower, sep = rng.choice(rules), rng.random() < 0.5, rng.choice(SEPARATORS)
        simple = rng.random() < 0.8
        rows.run(partial(parse_block, data, rule, lower, simple=simple, separator=sep), data)
    for _ in range(examples * 3 // 10):
        data = json_input(rng)
        info.run(partial(parse_info, data, "x.info"), data)
    path = folder / "catalog.json"
    for _ in range(examples - rows.tried - info.tried):
        data = json_input(rng)
        path.write_bytes(data)
        catalog.run(partial(read_catalog, folder), data)
    return [rows, info, catalog]


def main() -> int:
    parser = argparse.ArgumentParser(description="Fuzz the readers of the import drop.")
    parser.add_argument("--examples", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        tallies = fuzz(args.examples, Path(folder), args.seed)
    report = {"seconds": round(time.perf_counter() - start, 1), "seed": args.seed,
              "inputs": sum(t.tried for t in tallies),
              "crashes": sum(len(t.crashes) for t in tallies),
              "readers": [t.figures() for t in tallies]}
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 1 if report["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
