"""How the engine's datasets store an ID, and which bucket it falls in: SQL by kind of ID.

- ``visitor``: a visitor ID (38 digits, a 128-bit integer in the workspace database). Parquet has
  no 128-bit integer (DuckDB would write a HUGEINT as a DOUBLE, losing digits), so it is stored as
  its high and low 64 bits, ``hi`` (BIGINT) and ``lo`` (UBIGINT), joined and compared as they
  are: as fast as one 64-bit key. A ``DECIMAL(38, 0)`` column, the other exact choice, made the
  join eight times slower. Bucket: ``lo % P`` (HUGEINT's own ``%`` costs 1 µs per ID).
- ``text``: a declared ID (text), stored as ``id``. Bucket: the low 64 bits of its MD5
  (``md5_number_lower``), the same in every process and every DuckDB version, unlike ``hash``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["IdKind", "Ids", "VISITOR_HALVES"]

IdKind = Literal["visitor", "text"]

VISITOR_HALVES = "CAST(({0}) >> 64 AS BIGINT) AS hi, CAST(({0}) & 18446744073709551615::HUGEINT AS UBIGINT) AS lo"
"""SQL of a visitor ID's two stored columns (format with a HUGEINT expression)."""


@dataclass(frozen=True)
class Ids:
    """The SQL of one kind of ID as the engine stores it."""

    kind: IdKind

    @property
    def columns(self) -> dict[str, str]:
        """The stored columns and their types."""
        return {"hi": "BIGINT", "lo": "UBIGINT"} if self.kind == "visitor" else {"id": "VARCHAR"}

    def names(self, alias: str = "") -> str:
        """The stored columns, as a select list (``alias.`` before each with an alias)."""
        dot = f"{alias}." if alias else ""
        return ", ".join(dot + c for c in self.columns)

    def bucket(self, buckets: int, alias: str = "") -> str:
        """SQL of an ID's bucket among ``buckets``."""
        dot = f"{alias}." if alias else ""
        if self.kind == "visitor":
            return f"CAST({dot}lo % {int(buckets)} AS INTEGER)"
        return f"CAST(md5_number_lower({dot}id) % {int(buckets)} AS INTEGER)"

    def stored(self, value: str) -> str:
        """SQL of the stored columns of ``value``, an ID as the workspace database keeps it (a
        HUGEINT visitor ID, or text)."""
        if self.kind == "visitor":
            return VISITOR_HALVES.format(value)
        return f"{value} AS id"

    def from_text(self, text: str) -> str:
        """SQL of the stored columns of ``text``, an ID as read from a file."""
        return self.stored(f"CAST({text} AS HUGEINT)") if self.kind == "visitor" else f"{text} AS id"

    def value(self, alias: str = "") -> str:
        """SQL of the ID as the workspace database keeps it (HUGEINT or text)."""
        dot = f"{alias}." if alias else ""
        if self.kind == "visitor":
            return f"((CAST({dot}hi AS HUGEINT) << 64) + CAST({dot}lo AS HUGEINT))"
        return f"{dot}id"

    def equal(self, a: str, b: str) -> str:
        """SQL comparing the IDs of the aliases ``a`` and ``b``."""
        return " AND ".join(f"{a}.{c} = {b}.{c}" for c in self.columns)

    def is_null(self, alias: str) -> str:
        """SQL true when the alias's ID is NULL (an outer join found nothing)."""
        return f"{alias}.{next(iter(self.columns))} IS NULL"
