"""What every record a run leaves is made of: run IDs, UTC times, files written whole.

Run IDs and times are UTC (SPEC §2); a record is written to a temporary file beside its final
name, flushed to disk and renamed, so a reader sees the old file or the new one, never a part.
Files hold personal data (profiles, addresses, IDs): they are created for their owner only
(mode 0600, folders 0700), through :func:`owner_only` around whatever writes them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

RUN_ID_TIME = "%Y%m%dT%H%M%SZ"
"""The ``strftime`` format of a run ID's time (``20261128T195000Z``), also used for backups."""


OWNER_ONLY_UMASK = 0o077
"""The umask under which the workspace's files are created: for their owner only."""

_umask_lock = threading.Lock()
_umask_depth = 0
_umask_saved = 0


@contextlib.contextmanager
def owner_only() -> Iterator[None]:
    """Create files for their owner only while the block runs (umask 0o077), then restore the
    process's umask. Blocks may nest, also across threads: the first sets, the last restores.

    DuckDB creates the database, its write-ahead log and its spill files itself, and ``COPY``
    writes extracts, transitions and rejects: a umask is the one way to reach them all.
    """
    global _umask_depth, _umask_saved
    with _umask_lock:
        if _umask_depth == 0:
            _umask_saved = os.umask(OWNER_ONLY_UMASK)
        _umask_depth += 1
    try:
        yield
    finally:
        with _umask_lock:
            _umask_depth -= 1
            if _umask_depth == 0:
                os.umask(_umask_saved)


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
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with owner_only():
            yield tmp
        # Whoever wrote it, the file is its owner's only (0600) before it takes its name.
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all: a temporary file, flushed to disk,
    then renamed over ``path``."""
    with replaced_whole(path) as tmp, open(
        os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8"
    ) as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def spreadsheet_safe(column: str) -> str:
    """SQL of ``column`` (a text column) fit for a spreadsheet.

    A value starting with ``=``, ``@``, ``+``, ``-``, a tab or a carriage return gets a leading
    ``'``, so that a spreadsheet shows it instead of running it as a formula. ``+`` followed only
    by digits (an E.164 phone number) is data and stays as it is.
    """
    return (
        f"CASE WHEN regexp_matches({column}, '^[=@+\\-\\t\\r]') "
        f"AND NOT regexp_matches({column}, '^\\+[0-9]+$') "
        f"THEN '''' || {column} ELSE {column} END"
    )
