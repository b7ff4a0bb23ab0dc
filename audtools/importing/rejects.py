"""The rejected rows a run lists: ``runs/RUN_ID/rejects.csv`` (SPEC §5 step 2).

:class:`Rejects` receives the rejects of each chunk as it is read and keeps the first
``max_rejects_kept`` of them, in batch, part and line order: written to disk at once (a run), or
held in memory (a dry run, tests). Every reject is counted by the reader; only the kept ones cost
memory or disk, so a file of millions of bad rows costs no more than a few chunks.
"""

from __future__ import annotations

import csv
import itertools
import os
from pathlib import Path

import pyarrow as pa

__all__ = ["REJECT_SCHEMA", "Rejects"]

REJECT_SCHEMA = pa.schema([("file", pa.string()), ("line", pa.int64()), ("reason", pa.string())])
"""The columns of ``rejects.csv``: the bare file name, the 1-based line, the reason."""


class Rejects:
    """The first ``limit`` rejects of a run, written to ``path`` as they come (or kept in memory).

    Args:
        limit: the most rejects kept (``max_rejects_kept``).
        path: the ``rejects.csv`` to write; written under a temporary name until
            :meth:`publish`. None keeps the rejects in memory (:meth:`table`).
    """

    def __init__(self, limit: int, path: Path | None = None) -> None:
        self.limit = limit
        self.kept = 0
        self.path = path
        self._tables: list[pa.Table] = []
        self._tmp = None if path is None else path.with_name(".rejects.csv.tmp")
        self._fh = None
        self._csv = None
        if self._tmp is not None:
            self._tmp.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self._tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115
            self._csv = csv.writer(self._fh, lineterminator="\n")
            self._csv.writerow(REJECT_SCHEMA.names)

    @property
    def remaining(self) -> int:
        """How many more rejects are kept."""
        return self.limit - self.kept

    def add(self, name: str, rejects: pa.Table) -> None:
        """Keep the first rejects (``line``, ``reason``) of the file ``name``, up to the limit."""
        rows = min(rejects.num_rows, self.remaining)
        if rows <= 0:
            return
        rejects = rejects.slice(0, rows)
        self.kept += rows
        if self._csv is not None:
            lines = rejects["line"].to_pylist()
            self._csv.writerows(zip(itertools.repeat(name), lines, rejects["reason"].to_pylist()))
            return
        names = pa.array([name], pa.string()).take(pa.array([0] * rows))
        self._tables.append(
            pa.table([names, rejects["line"], rejects["reason"]], schema=REJECT_SCHEMA)
        )

    def mark(self) -> tuple[int, int, int]:
        """Where the rejects stand now, for :meth:`rewind`."""
        position = self._fh.tell() if self._fh is not None else 0
        return position, self.kept, len(self._tables)

    def rewind(self, mark: tuple[int, int, int]) -> None:
        """Forget the rejects added since ``mark`` (a batch that was not applied after all)."""
        position, self.kept, tables = mark
        del self._tables[tables:]
        if self._fh is not None:
            self._fh.flush()
            self._fh.seek(position)
            self._fh.truncate()

    def table(self) -> pa.Table:
        """The rejects kept in memory: ``file, line, reason``."""
        if not self._tables:
            return REJECT_SCHEMA.empty_table()
        return pa.concat_tables(self._tables)

    def publish(self) -> None:
        """Close the file and give it its name (``rejects.csv``)."""
        if self._fh is not None and self._tmp is not None and self.path is not None:
            self._fh.close()
            os.replace(self._tmp, self.path)
            self._fh = None

    def discard(self) -> None:
        """Close and remove the file being written (a run that failed)."""
        if self._fh is not None and self._tmp is not None:
            self._fh.close()
            self._tmp.unlink(missing_ok=True)
            self._fh = None
