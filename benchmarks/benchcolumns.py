"""String columns and batch files for the benchmark data, built without a Python loop per row.

numpy and pyarrow column operations only: 10 M random 38-digit IDs, emails or batch rows take
seconds. ``benchdata.py`` composes them into the data of each size.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ASCII_WS = " \t\r\n\x0b\x0c"

FIRST = (
    "anna ben chloe david emma felix grace henry iris jack kate liam maria noah olivia paul "
    "quinn rose sam tara uma victor wendy xavier yara zack alice bruno carla dylan elena frank "
    "gina hugo ines jonas karen leo mila nina oscar pia rafael sofia tom ursula vera will"
).split()
FIRST_NON_ASCII = ["zoë", "josé", "lucía", "björn"]
LAST = (
    "smith jones brown taylor wilson davies evans thomas johnson roberts walker wright "
    "robinson thompson white hughes edwards green hall wood harris lewis martin jackson "
    "clarke clark turner hill scott cooper morris ward moore king watson baker harrison "
    "morgan patel young allen mitchell james anderson phillips lee bell parker davis"
).split()
DOMAINS = ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "aol.com",
           "example.com", "orange.fr", "web.de", "mail.com", "proton.me", "comcast.net"]
DOMAIN_WEIGHTS = np.array([30, 12, 10, 9, 8, 4, 8, 5, 5, 4, 3, 2], dtype=float)


# -- string columns without Python loops ---------------------------------------------------------


def digit_strings(rng: np.random.Generator, n: int, width: int) -> pa.StringArray:
    """``n`` random strings of ``width`` ASCII digits (leading zeros allowed)."""
    chunks = []
    step = 2_000_000
    for start in range(0, n, step):
        m = min(step, n - start)
        digits = rng.integers(48, 58, size=(m, width), dtype=np.uint8)
        offsets = np.arange(0, (m + 1) * width, width, dtype=np.int32)
        chunks.append(pa.StringArray.from_buffers(m, pa.py_buffer(offsets), pa.py_buffer(digits)))
    return pa.concat_arrays(chunks) if chunks else pa.array([], pa.string())


def letter_strings(rng: np.random.Generator, n: int, width: int, alphabet: bytes) -> pa.StringArray:
    table = np.frombuffer(alphabet, dtype=np.uint8)
    chars = table[rng.integers(0, len(table), size=(n, width))]
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars)))


def number_strings(values: np.ndarray, width: int = 0) -> pa.StringArray:
    """Decimal text of integers, zero-padded to ``width``."""
    text = pa.array(values).cast(pa.string())
    return pc.utf8_lpad(text, width=width, padding="0") if width else text


def join(*parts: Any) -> pa.StringArray:
    """Element-wise concatenation of string arrays and scalars."""
    return pc.binary_join_element_wise(*parts, "")


def pick(rng: np.random.Generator, words: list[str], n: int, p: np.ndarray | None = None) -> pa.Array:
    return pa.array(words, pa.string()).take(pa.array(rng.choice(len(words), size=n, p=p)))


def concat_bytes(arr: pa.StringArray) -> memoryview:
    """The concatenated UTF-8 bytes of a string array (its data buffer, unsliced)."""
    arr = pa.concat_arrays([arr]) if arr.offset else arr
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=len(arr) + 1)
    return memoryview(arr.buffers()[2])[offsets[0] : offsets[-1]]


def normalise_emails(arr: pa.Array) -> pa.Array:
    """Trim ASCII whitespace, lower-case (the generated emails have no letter whose Unicode lower
    case differs from Python's ``str.lower``)."""
    return pc.utf8_lower(pc.ascii_trim(arr, characters=ASCII_WS))


def write_parquet(table: pa.Table, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


# -- emails and profiles ------------------------------------------------------------------------------


def make_emails(rng: np.random.Generator, numbers: np.ndarray) -> pa.Array:
    """Unique raw emails ``first.lastNUMBER@domain`` (unique because ``numbers`` are)."""
    n = len(numbers)
    first_words = FIRST + FIRST_NON_ASCII
    p = np.r_[np.full(len(FIRST), 0.99 / len(FIRST)), np.full(len(FIRST_NON_ASCII), 0.01 / len(FIRST_NON_ASCII))]
    first = pick(rng, first_words, n, p / p.sum())
    last = pick(rng, LAST, n)
    domain = pick(rng, DOMAINS, n, DOMAIN_WEIGHTS / DOMAIN_WEIGHTS.sum())
    return join(first, ".", last, number_strings(numbers), "@", domain)


def dress_emails(rng: np.random.Generator, emails: pa.Array) -> pa.Array:
    """How profiles hold them: some capitalised, some upper case, some with whitespace."""
    n = len(emails)
    u = rng.random(n)
    out = pc.if_else(pa.array(u < 0.10), pc.utf8_capitalize(emails), emails)
    out = pc.if_else(pa.array((u >= 0.10) & (u < 0.12)), pc.utf8_upper(emails), out)
    out = pc.if_else(pa.array((u >= 0.12) & (u < 0.125)), join(out, " "), out)
    out = pc.if_else(pa.array((u >= 0.125) & (u < 0.13)), join("\t", out), out)
    return out


def segments_column(rng: np.random.Generator, n: int, sid: int) -> pa.Array:
    """Each row's ``SEGMENTS`` and newline: the target segment, half the rows a second one."""
    patterns = pa.array([f"{sid}\n", f"{sid},24\n", f"26,{sid}\n"], pa.string())
    return patterns.take(pa.array(rng.choice(3, size=n, p=[0.5, 0.3, 0.2])))


def batch_text(ids: pa.Array, segments: pa.Array) -> pa.Array:
    """One string per row, ``ID<TAB>SEGMENTS<LF>``; the data buffer is the file content."""
    return pc.binary_join_element_wise(ids, segments, "\t")


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def write_bytes(path: Path, data: Any) -> None:
    """Write ``path`` whole, with a modification time an hour back: a delivery that has settled
    (SPEC §4.2, ``settle_seconds``), so a batch without ``.info`` is read at once."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    past = time.time() - 3600
    os.utime(path, (past, past))


def write_gzip_batch(drop: Path, text: pa.StringArray, root: str) -> None:
    """A ``full`` batch of 2 gzip parts (the rows split in halves) and its ``.info`` (line counts,
    sizes, md5) in a new folder ``drop``; ``text`` holds one string per row, newline included."""
    n = len(text)
    data = concat_bytes(text)
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32, count=n + 1)
    base = int(offsets[0])
    half = n // 2
    drop.mkdir()
    pieces = [data[: offsets[half] - base], data[offsets[half] - base :]]
    names = [f"{root}-{i}.sync.gz" for i in (1, 2)]
    with ThreadPoolExecutor(2) as pool:  # zlib releases the GIL
        blobs = list(pool.map(lambda b: gzip.compress(b, compresslevel=6, mtime=0), pieces))
    files: list[dict[str, Any]] = []
    for name, blob, piece in zip(names, blobs, pieces, strict=True):
        write_bytes(drop / name, blob)
        files.append(
            {
                "FileName": name,
                "FileLineCount": _count_newlines(piece),
                "FileByteSize": len(blob),
                "md5": hashlib.md5(blob, usedforsecurity=False).hexdigest(),
            }
        )
    info = {
        "Files": files,
        "Totals": {
            "TotalFileCount": len(files),
            "TotalLineCount": sum(f["FileLineCount"] for f in files),
            "TotalByteSize": sum(f["FileByteSize"] for f in files),
        },
    }
    write_bytes(drop / f"{root}.info", json.dumps(info, indent=2).encode())


def _count_newlines(piece: memoryview) -> int:
    return int(np.count_nonzero(np.frombuffer(piece, dtype=np.uint8) == 10))
