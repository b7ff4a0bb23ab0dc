"""Targeting: which profiles an export shares, in Campaign's words (SPEC §6.2).

The workflow API mirrors Campaign's activities: :func:`query` targets profiles by a condition
(checked by :func:`audtools.exporting.condition.validate_condition`, re-exported here);
:func:`union`, :func:`intersection` and :func:`exclusion` combine targeted sets; the result goes
to :func:`audtools.exporting.flow.save_audience`. A profile is targeted when the condition is
true; NULL is not true.

Example:
    >>> adults = query("ws", "age >= 18")                               # doctest: +SKIP
    >>> optins = query("ws", "newsletter")                              # doctest: +SKIP
    >>> save_audience("ws", targeting=adults & optins,                  # doctest: +SKIP
    ...               segment_name="Adult subscribers", data_source="defaultDataSource")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd

from audtools.errors import RefusedError
from audtools.exporting.condition import validate_condition
from audtools.exporting.evaluation import evaluating
from audtools.workspace import Workspace, as_workspace

__all__ = [
    "Targeting",
    "all_profiles",
    "exclusion",
    "intersection",
    "query",
    "union",
    "evaluating",
    "validate_condition",
]


# -- the workflow API ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Targeting:
    """A targeted set of profiles: those for which :attr:`condition` is true (NULL is not).

    The set is lazy: it is a checked SQL condition, evaluated when it is read (:meth:`profiles`,
    :meth:`count`, ``len()``) or exported. Combine sets with :func:`union` (``a | b``),
    :func:`intersection` (``a & b``) and :func:`exclusion` (``a - b``).

    Attributes:
        condition: a boolean expression over the profile columns (checked again at export).
        description: how the set was built, for people.
        workspace: the workspace it was built on, if any (used when none is given to read it).
    """

    condition: str
    description: str
    workspace: Workspace | None = None

    def __or__(self, other: Targeting) -> Targeting:
        return union(self, other)

    def __and__(self, other: Targeting) -> Targeting:
        return intersection(self, other)

    def __sub__(self, other: Targeting) -> Targeting:
        return exclusion(self, other)

    def _with(self, workspace: Any) -> Workspace:
        target = workspace if workspace is not None else self.workspace
        if target is None:
            raise RefusedError(
                "This targeting is not tied to a workspace; pass one.", code="no_workspace"
            )
        return as_workspace(target)

    def _select(self) -> str:
        return (
            f"SELECT profile_id FROM profiles WHERE ({self.condition}) IS TRUE ORDER BY profile_id"
        )

    def profiles(
        self,
        workspace: str | os.PathLike[str] | Workspace | duckdb.DuckDBPyConnection | None = None,
    ) -> pd.DataFrame:
        """The targeted profiles, as a DataFrame with one ``profile_id`` column.

        Args:
            workspace: a workspace or an open connection; default: the one it was built on.
        """
        if isinstance(workspace, duckdb.DuckDBPyConnection):
            validate_condition(workspace, self.condition)
            with evaluating(workspace):
                return workspace.execute(self._select()).df()
        ws = self._with(workspace)
        with ws.session(purpose="targeting") as con:
            validate_condition(con, self.condition)
            with evaluating(con):
                return con.execute(self._select()).df()

    def count(
        self,
        workspace: str | os.PathLike[str] | Workspace | duckdb.DuckDBPyConnection | None = None,
    ) -> int:
        """How many profiles are targeted."""
        sql = f"SELECT count(*) FROM profiles WHERE ({self.condition}) IS TRUE"
        if isinstance(workspace, duckdb.DuckDBPyConnection):
            validate_condition(workspace, self.condition)
            with evaluating(workspace):
                return int(workspace.execute(sql).fetchall()[0][0])
        ws = self._with(workspace)
        with ws.session(purpose="targeting") as con:
            validate_condition(con, self.condition)
            with evaluating(con):
                return int(con.execute(sql).fetchall()[0][0])

    def __len__(self) -> int:
        return self.count()


def query(
    workspace: str | os.PathLike[str] | Workspace | duckdb.DuckDBPyConnection, condition: str
) -> Targeting:
    """Campaign's *Query* activity: the profiles for which ``condition`` is true.

    Args:
        workspace: a workspace (path or :class:`~audtools.workspace.Workspace`) or an open
            connection, to check the condition against the profile columns now.
        condition: one boolean DuckDB expression over the profile columns.

    Returns:
        A :class:`Targeting`.

    Raises:
        RefusedError: ``bad_condition`` (see :func:`validate_condition`).

    Example:
        >>> query("ws", "country = 'FR'").count()      # doctest: +SKIP
        1200
    """
    if isinstance(workspace, duckdb.DuckDBPyConnection):
        return Targeting(validate_condition(workspace, condition), f"query({condition})")
    ws = as_workspace(workspace)
    with ws.session(purpose="targeting") as con:
        text = validate_condition(con, condition)
    return Targeting(text, f"query({condition})", ws)


def all_profiles(workspace: str | os.PathLike[str] | Workspace | None = None) -> Targeting:
    """Every profile (what an export targets without ``--where``)."""
    ws = as_workspace(workspace) if workspace is not None else None
    return Targeting("true", "all profiles", ws)


def _combine(op: str, word: str, sets: tuple[Targeting, ...]) -> Targeting:
    if not sets:
        raise RefusedError(f"{word} needs at least one targeted set.", code="bad_targeting")
    for item in sets:
        if not isinstance(item, Targeting):
            raise RefusedError(
                f"{word} takes targeted sets (from query(...)), not {type(item).__name__}.",
                code="bad_targeting",
            )
    if len(sets) == 1:
        return sets[0]
    condition = f" {op} ".join(f"(({s.condition}) IS TRUE)" for s in sets)
    description = f"{word.lower()}(" + ", ".join(s.description for s in sets) + ")"
    workspace = next((s.workspace for s in sets if s.workspace is not None), None)
    return Targeting(f"({condition})", description, workspace)


def union(*sets: Targeting) -> Targeting:
    """Campaign's *Union*: profiles targeted by any of ``sets``."""
    return _combine("OR", "Union", sets)


def intersection(*sets: Targeting) -> Targeting:
    """Campaign's *Intersection*: profiles targeted by every one of ``sets``."""
    return _combine("AND", "Intersection", sets)


def exclusion(main: Targeting, *excluded: Targeting) -> Targeting:
    """Campaign's *Exclusion*: profiles of ``main`` targeted by none of ``excluded``."""
    if not excluded:
        return _combine("AND", "Exclusion", (main,))
    removed = union(*excluded)
    _combine("AND", "Exclusion", (main, removed))  # type checks
    condition = f"((({main.condition}) IS TRUE) AND NOT (({removed.condition}) IS TRUE))"
    description = "exclusion(" + ", ".join(s.description for s in (main, *excluded)) + ")"
    return Targeting(condition, description, main.workspace or removed.workspace)
