"""Evaluating a checked condition: its memory bounded, its failures kept private (SPEC §6.1).

:mod:`audtools.exporting.condition` checks a condition before it runs; a checked condition can
still fail on a profile's value (``CAST(email AS INTEGER) > 0``) or ask for gigabytes
(``repeat(profile_id, 3000000)``). Every statement that evaluates one runs in
:func:`evaluating`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import duckdb

try:
    import resource
except ImportError:  # not on Windows: conditions run there without the address-space cap
    resource = None  # type: ignore[assignment]

from audtools.errors import RefusedError

__all__ = ["evaluating"]

# Errors of the database itself, not of a condition's values: they keep their own kind.
_NOT_THE_CONDITION = (
    duckdb.IOException,
    duckdb.InterruptException,
    duckdb.TransactionException,
    duckdb.ConnectionException,
    duckdb.FatalException,
    duckdb.PermissionException,
)
_FAILURE_WORDS = {
    "ConversionException": "a value could not be converted (a CAST, or text compared with a number)",
    "OutOfRangeException": "a number went out of range",
    "OutOfMemoryException": "it needs more memory than audtools allows",
    "InvalidInputException": "a function was given a value it refuses",
    "InvalidTypeException": "a value has a type the expression cannot take",
    "TypeMismatchException": "a value has a type the expression cannot take",
    "NotImplementedException": "DuckDB cannot evaluate an operation on some value",
}


@contextlib.contextmanager
def evaluating(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Evaluate a checked condition with its memory bounded and its failures kept private.

    DuckDB's ``memory_limit`` bounds its buffers, not the strings an expression builds: a
    condition such as ``length(repeat(profile_id, 3000000)) > 0`` asks for gigabytes per row.
    While the statement runs, the process's address space is capped a little above the memory
    limit, so such a condition fails within seconds with DuckDB's out-of-memory error.

    DuckDB's messages quote the value at fault (``Could not convert string 'jane@example.com'``),
    and a ``CASE WHEN profile_id = '…'`` would let a condition read any field of any profile
    through them: the message says only what kind of failure it was, and the database's own
    message is not chained (``from None``), so that no traceback shows it.

    Raises:
        RefusedError: ``bad_condition``, for any database error but those of the database
            itself (input/output, interruption, transactions, connection).
    """
    try:
        with _address_space_capped(con):
            yield
    except _NOT_THE_CONDITION:
        raise
    except duckdb.Error as exc:
        kind = type(exc).__name__
        words = _FAILURE_WORDS.get(kind, f"DuckDB reported a {kind}")
        raise RefusedError(
            f"The condition failed while it was evaluated on the profiles: {words}. Values are "
            "not shown, to keep profiles private; check the condition against the types of "
            "the profile columns.",
            code="bad_condition",
        ) from None


_CAP_LOCK = threading.Lock()
_HEADROOM = 1 << 30  # above DuckDB's memory_limit: the allocator's own reserve


def _memory_limit(con: duckdb.DuckDBPyConnection) -> int | None:
    row = con.execute("SELECT current_setting('memory_limit')").fetchone()
    text = str(row[0]).strip().upper().replace(" ", "") if row else ""
    units = {"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40,
             "KB": 1000, "MB": 10**6, "GB": 10**9, "TB": 10**12, "B": 1}
    for unit, size in units.items():
        if text.endswith(unit):
            try:
                return int(float(text[: -len(unit)]) * size)
            except ValueError:
                return None
    return None


@contextlib.contextmanager
def _address_space_capped(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Cap the process's address space (``RLIMIT_AS``) to its current size plus DuckDB's
    memory limit and a reserve, for the time of one statement (Linux; elsewhere nothing)."""
    limit = _memory_limit(con)
    if resource is None or limit is None or not os.path.exists("/proc/self/statm"):
        yield
        return
    with _CAP_LOCK:
        with open("/proc/self/statm", encoding="ascii") as statm:
            size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = size + limit + _HEADROOM
        if soft != resource.RLIM_INFINITY:
            cap = min(cap, soft)
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
