"""Steps 5 and 6 of an import (SPEC §5): the members reconciled with the profiles, and counted.

:func:`reconcile` joins the members' keys (:func:`~audtools.importing.members.member_keys`) with
the profiles' keys (their visitor IDs, or their declared IDs in the derived-ID cache) and counts
the members, the undecryptable ones, the matched ones, and the profiles or addresses of the
audience.

With ``fast=False`` it runs the general query: a table of the links (member, profile), every
count a DISTINCT. That is the reference; on millions of members each DISTINCT costs seconds, so by
default it uses facts recorded where they are cheapest to learn:

- *one profile per member*: no two profiles share a key. For visitor IDs the flag
  ``meta.visitor_ids_unique`` that loading profiles writes; for declared IDs the derived-ID cache's
  ``unique_keys`` flag, written when the cache is built. A member then matches at most one
  profile: the matched members are the rows of the join.
- *one member per profile*: the data source reconciles declared IDs (a profile has one declared ID
  but may have many visitor IDs) and no two members share a key (:attr:`Members.keys_unique`,
  known while listing them). A profile is then matched by at most one member: the profiles are
  the rows of the join.
- *unique keys*: a File audience's addresses, its members' keys, need no DISTINCT.

and picks one of three shapes of query (:attr:`Reconciled.shape`):

- ``grouping``: an Experience Cloud audience to store, no outcomes, one profile per member: the
  audience and its counts from one grouping of the join, no table of links;
- ``aggregate``: no audience to store (a dry run) or a File audience, no outcomes: the counts
  from one aggregate over the join;
- ``links``: otherwise (outcomes asked for): the general query's table of links, with only the
  DISTINCTs the facts leave.

``tests/test_reconcile.py`` checks each shape against the general query, for every kind of data
source, where the facts hold and where they do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import duckdb
import pyarrow as pa

from audtools.config import DataSource
from audtools.importing.members import Members
from audtools.profiles import declared_ids as derived
from audtools.workspace.database import VISITOR_ID_TEXT, arrow

AUDIENCE = "_audience"
"""The temporary table ``(profile_id, address, …)`` that holds what the audience will hold."""

_LINKS = "_links"

Shape = Literal["general", "grouping", "aggregate", "links", "buckets"]


@dataclass(frozen=True)
class Reconciled:
    """The counts of SPEC §5 for one shared audience, and what the audience will hold.

    Attributes:
        members: distinct IDs in the shared audience.
        undecryptable: members whose key could not be made (SPEC §5 step 4).
        matched: members reconciled with a profile (for a File audience: decrypted members
            whose address a profile also has).
        profiles: distinct profiles of an Experience Cloud audience (0 for a File audience).
        addresses: distinct addresses of a File audience (0 otherwise).
        audience: the temporary table :data:`AUDIENCE` when asked for (``profile_id`` and
            ``address`` columns, one row per profile or address), else None.
        outcomes: ``id`` and ``outcome`` (``matched``, ``no_profile``, ``undecryptable``) of
            each member, by ``id``, when asked for; else None.
        shape: the shape of query used (see the module's documentation).
    """

    members: int
    undecryptable: int
    matched: int
    profiles: int
    addresses: int
    audience: str | None
    outcomes: pa.Table | None
    shape: Shape


@dataclass(frozen=True)
class _Facts:
    one_profile: bool  # a member matches at most one profile
    one_member: bool  # a profile is matched by at most one member
    one_key: bool  # a profile has at most one key (declared IDs)
    keys_unique: bool  # no two members share a key


_NO_FACTS = _Facts(one_profile=False, one_member=False, one_key=False, keys_unique=False)


@dataclass(frozen=True)
class _Join:
    """``FROM members m JOIN <the profiles' keys> p`` and its parameters."""

    sql: str
    params: list[object]


def reconcile(
    con: duckdb.DuckDBPyConnection,
    source: DataSource,
    members: Members,
    *,
    file_audience: bool,
    audience: bool = True,
    outcomes: bool = False,
    fast: bool = True,
) -> Reconciled:
    """Reconcile the members with the profiles and count (SPEC §5 steps 5 and 6).

    For a declared-ID data source, call after
    :func:`audtools.profiles.declared_ids.refresh`: the join and its uniqueness flag read the
    derived-ID cache.

    Args:
        con: the open database connection holding the members' relation.
        source: the data source.
        members: the members and their keys.
        file_audience: count the addresses of a File audience instead of profiles.
        audience: make the table :data:`AUDIENCE` of what the audience will hold.
        outcomes: give each member's outcome.
        fast: use the uniqueness facts and the cheaper shapes of query; False runs the general
            query, the reference the fast paths are tested against. Both give the same counts,
            audience and outcomes.

    Returns:
        The counts, the audience's table and the outcomes.
    """
    for name in (_LINKS, AUDIENCE):
        con.execute(f"DROP TABLE IF EXISTS {name}")
    facts = _facts(con, source, members) if fast else _NO_FACTS
    rel = members.relation
    total, undecryptable = con.execute(
        f"SELECT count(*), count(*) FILTER (k IS NULL) FROM {rel}"
    ).fetchall()[0]
    addresses = _addresses(con, rel, facts, audience) if file_audience else 0
    join = _join(rel, source, members)
    shape: Shape
    if not fast:
        shape = "general"
    elif outcomes:
        shape = "links"
    elif file_audience or not audience:
        shape = "aggregate"
    else:
        shape = "grouping" if facts.one_profile else "links"
    table: pa.Table | None = None
    if shape == "grouping":
        matched, profiles = _by_grouping(con, join, facts)
    elif shape == "aggregate":
        matched, profiles = _by_aggregate(con, join, facts, file_audience)
    else:
        id_text = VISITOR_ID_TEXT.format("m.id") if members.visitor_keys else "m.id"
        matched, profiles, table = _by_links(
            con, join, rel, facts, file_audience, audience, outcomes, id_text
        )
    return Reconciled(
        members=int(total),
        undecryptable=int(undecryptable),
        matched=int(matched),
        profiles=0 if file_audience else int(profiles),
        addresses=int(addresses),
        audience=AUDIENCE if audience else None,
        outcomes=table,
        shape=shape,
    )


def _facts(con: duckdb.DuckDBPyConnection, source: DataSource, members: Members) -> _Facts:
    """What is known about the keys of both sides (see the module's documentation)."""
    one_key = source.reconciliation == "declared_id"
    return _Facts(
        one_profile=derived.unique_keys(con, source),
        one_member=one_key and members.keys_unique,
        one_key=one_key,
        keys_unique=members.keys_unique,
    )


def _join(rel: str, source: DataSource, members: Members) -> _Join:
    if members.visitor_keys:  # 128-bit integers on both sides
        return _Join(f"FROM {rel} m JOIN visitor_keys p ON p.vid = m.k", [])
    if source.reconciliation == "visitor_id":  # text keys (decrypted): the exact text compared
        return _Join(f"FROM {rel} m JOIN visitors p ON p.visitor_id = m.k", [])
    return _Join(
        f"FROM {rel} m JOIN derived_ids p ON p.declared_id = m.k AND p.data_source = ?",
        [source.id],
    )


def _addresses(con: duckdb.DuckDBPyConnection, rel: str, facts: _Facts, keep: bool) -> int:
    """A File audience's addresses, every decrypted key once: counted, and with ``keep`` made
    into the audience's table (then counted from it, made once)."""
    distinct = "" if facts.keys_unique else "DISTINCT "
    if not keep:
        return int(con.execute(f"SELECT count({distinct}k) FROM {rel}").fetchall()[0][0])
    con.execute(
        f"CREATE TEMP TABLE {AUDIENCE} AS SELECT {distinct}NULL::VARCHAR AS profile_id, "
        f"k AS address FROM {rel} WHERE k IS NOT NULL"
    )
    return int(con.execute(f"SELECT count(*) FROM {AUDIENCE}").fetchall()[0][0])


def _by_grouping(con: duckdb.DuckDBPyConnection, join: _Join, facts: _Facts) -> tuple[int, int]:
    """The audience's profiles and how many members each matched, in one pass over the join
    (one profile per member: each link is another matched member)."""
    links = "1" if facts.one_member else "count(*)"
    group = "" if facts.one_member else "GROUP BY p.profile_id"
    con.execute(
        f"CREATE TEMP TABLE {AUDIENCE} AS SELECT p.profile_id, NULL::VARCHAR AS address, "
        f"{links} AS links {join.sql} {group}",
        join.params,
    )
    profiles, matched = con.execute(
        f"SELECT count(*), coalesce(sum(links), 0) FROM {AUDIENCE}"
    ).fetchall()[0]
    return int(matched), int(profiles)


def _by_aggregate(
    con: duckdb.DuckDBPyConnection, join: _Join, facts: _Facts, file_audience: bool
) -> tuple[int, int]:
    """The matched members and the profiles from one aggregate over the join."""
    matched_sql = "count(*)" if facts.one_profile else "count(DISTINCT m.id)"
    if file_audience:  # its addresses are counted without the profiles
        (matched,) = con.execute(f"SELECT {matched_sql} {join.sql}", join.params).fetchall()[0]
        return int(matched), 0
    if facts.one_member:
        profiles_sql = "count(*)"
    elif facts.one_profile and facts.one_key:  # one profile per matched key, and the reverse
        profiles_sql = "count(DISTINCT m.k)"
    else:
        profiles_sql = "count(DISTINCT p.profile_id)"
    matched, profiles = con.execute(
        f"SELECT {matched_sql}, {profiles_sql} {join.sql}", join.params
    ).fetchall()[0]
    return int(matched), int(profiles)


def _by_links(
    con: duckdb.DuckDBPyConnection,
    join: _Join,
    rel: str,
    facts: _Facts,
    file_audience: bool,
    audience: bool,
    outcomes: bool,
    id_text: str,
) -> tuple[int, int, pa.Table | None]:
    """The general query: a table of the links (member, profile), counted and grouped, with
    only the DISTINCTs the facts leave (all of them without facts); ``id_text`` gives the
    outcomes' IDs as text."""
    con.execute(f"CREATE TEMP TABLE {_LINKS} AS SELECT m.id, p.profile_id {join.sql}", join.params)
    (matched,) = con.execute(
        f"SELECT count({'' if facts.one_profile else 'DISTINCT '}id) FROM {_LINKS}"
    ).fetchall()[0]
    profiles = 0
    if audience and not file_audience:  # a File audience's is made from its addresses
        con.execute(
            f"CREATE TEMP TABLE {AUDIENCE} AS SELECT {'' if facts.one_member else 'DISTINCT '}"
            f"profile_id, NULL::VARCHAR AS address FROM {_LINKS}"
        )
        (profiles,) = con.execute(f"SELECT count(*) FROM {AUDIENCE}").fetchall()[0]
    elif not file_audience:
        (profiles,) = con.execute(f"SELECT count(DISTINCT profile_id) FROM {_LINKS}").fetchall()[0]
    table = None
    if outcomes:
        linked = _LINKS if facts.one_profile else f"(SELECT DISTINCT id FROM {_LINKS})"
        table = arrow(
            con,
            f"""
            SELECT {id_text} AS id,
                   CASE WHEN m.k IS NULL THEN 'undecryptable'
                        WHEN l.id IS NOT NULL THEN 'matched'
                        ELSE 'no_profile' END AS outcome
            FROM {rel} m LEFT JOIN {linked} l ON l.id = m.id
            ORDER BY m.id
            """,
        )
    con.execute(f"DROP TABLE {_LINKS}")
    return int(matched), int(profiles), table
