"""What every record a run leaves is made of: run IDs, UTC times, files written whole.

Run IDs and times are UTC (SPEC §2); a record is written to a temporary file beside its final
name, flushed to disk and renamed, so a reader sees the old file or the new one, never a part.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

RUN_ID_TIME = "%Y%m%dT%H%M%SZ"
"""The ``strftime`` format of a run ID's time (``20261128T195000Z``), also used for backups."""


def now_utc() -> dt.datetime:
    """The current time in UTC, to the second."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def new_run_id(now: dt.datetime | None = None) -> str:
    """A run ID: ``YYYYMMDDTHHMMSSZ-xxxxxx`` (UTC time and six random hex digits)."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now.strftime(RUN_ID_TIME)}-{secrets.token_hex(3)}"


def utc_text(moment: dt.datetime) -> str:
    """``2026-11-28T19:50:00Z``: how times are written in JSON output."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.contextmanager
def replaced_whole(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; renamed to ``path`` when the block ends.

    For files written by someone else (DuckDB's ``COPY``): when the block raises, the temporary
    file is removed and ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # A new random name (not mkstemp, whose file is private): the file gets the usual mode.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all: a temporary file, flushed to disk,
    then renamed over ``path``."""
    with replaced_whole(path) as tmp, open(tmp, "x", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
