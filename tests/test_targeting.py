"""Targeting (SPEC §6.1, §6.2): conditions checked before they run, and the workflow API."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audtools.errors import RefusedError
from audtools.exporting.targeting import (
    Targeting,
    all_profiles,
    exclusion,
    intersection,
    query,
    union,
    validate_condition,
)
from audtools.profiles.loading import load_profiles
from audtools.workspace import Workspace
from audtools.workspace import database as store

PROFILES = """profile_id,age,country,email,optin
p1,34,FR,a@example.com,true
p2,17,DE,b@example.com,false
p3,,FR,c@example.com,true
p4,52,US,,
p5,61,FR,e@example.com,false
"""


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = store.connect(":memory:")
    c.execute(
        "CREATE TABLE profiles (profile_id VARCHAR, age INTEGER, country VARCHAR, email VARCHAR, "
        "born DATE, optin BOOLEAN)"
    )
    c.execute("CREATE TABLE visitors (profile_id VARCHAR, visitor_id VARCHAR)")
    yield c
    c.close()


@pytest.fixture
def ws(workspace: Workspace, tmp_path: Path) -> Workspace:
    (tmp_path / "p.csv").write_text(PROFILES)
    load_profiles(workspace, tmp_path / "p.csv")
    return workspace


ACCEPTED = [
    ("age >= 18", "(age >= 18)"),
    ("age > 3 AND country IN ('FR', 'DE')", "((age > 3) AND (country IN ('FR', 'DE')))"),
    ("CASE WHEN age > 30 THEN true ELSE false END", None),
    ("lower(email) LIKE '%@example.com'", None),
    ("coalesce(age, 0) BETWEEN 18 AND 65", None),
    ("optin", "optin"),
    ("email = 'O''Brien'", "(email = 'O''Brien')"),
    ("born > DATE '2000-01-01'", None),
    ("born >= current_date - INTERVAL 30 DAY", None),
    ("profiles.age > 1", None),
    ('"AGE" > 1', None),
    ("country NOT IN ('FR') AND email IS NOT NULL", None),
    ("'a;b' = email", None),  # a semicolon inside a string is text, not a statement
    ("email = '--x'", None),  # so are dashes
    ("regexp_matches(email, '^a') OR starts_with(country, 'F')", None),
    ("list_contains([1, 2, 3], age)", None),
    ("1=1) OR (1=1", "((1 = 1) OR (1 = 1))"),  # parentheses balance out: one expression
]


@pytest.mark.parametrize(("condition", "canonical"), ACCEPTED)
def test_accepted_conditions_come_back_rewritten(
    con: duckdb.DuckDBPyConnection, condition: str, canonical: str | None
) -> None:
    text = validate_condition(con, condition)
    if canonical is not None:
        assert text == canonical
    # The rewritten text is accepted again unchanged, and it runs.
    assert validate_condition(con, text) == text
    con.execute(f"SELECT count(*) FROM profiles WHERE ({text}) IS TRUE").fetchall()


REFUSED = [
    ("1=1; DROP TABLE profiles", "';'"),
    ("1=1; CREATE TABLE pwned AS SELECT 1", "';'"),
    ("profile_id IN (SELECT profile_id FROM visitors)", "subquery"),
    ("EXISTS (SELECT 1 FROM visitors)", "subquery"),
    ("(SELECT 1) = 1", "subquery"),
    ("age = ANY ([1, 2])", "subquery"),
    ("read_csv('x') IS NOT NULL", "'read_csv'"),
    ("query('SELECT 1') IS NULL", "'query'"),
    ("glob('*') IS NULL", "'glob'"),
    ("age > 1 -- comment", "comment"),
    ("age > 1 /* hidden */", "comment"),
    ("age > 1 --\n OR true", "comment"),
    ("agee > 3", "'agee'"),
    ("visitors.visitor_id = '1'", "'visitors.visitor_id'"),
    ("age + 1", "INTEGER"),
    ("email", "VARCHAR"),
    ("NULL", "not boolean"),
    ("count(*) > 1", "'count_star'"),
    ("sum(age) > 1", "'sum'"),
    ("sum(age) OVER () > 1", "window"),
    ("nextval('s') > 1", "'nextval'"),
    ("current_setting('threads') = '2'", "'current_setting'"),
    ("getvariable('x') = 1", "'getvariable'"),
    ("write_log('x') IS NULL", "'write_log'"),
    ("__internal_compress_string_hugeint(email) = 1", "'__internal_compress_string_hugeint'"),
    ("main.lower(email) = 'a'", "schema"),
    ("x -> x", "lambda"),
    ("age = ?", "parameter"),
    ("$1 = 1", "parameter"),
    ("COLUMNS(*) IS NULL", "star"),
    ("1=1) UNION SELECT * FROM visitors WHERE (1=1", "beyond one expression"),
    ("1=1) LIMIT (1", "beyond one expression"),
    ("age > 1) GROUP BY (age", "beyond one expression"),
    ("age > 1) ORDER BY (1", "beyond one expression"),
    ("age >", "not one valid"),
    ("", "empty"),
    ("   ", "empty"),
]


@pytest.mark.parametrize(("condition", "fragment"), REFUSED)
def test_refused_conditions(con: duckdb.DuckDBPyConnection, condition: str, fragment: str) -> None:
    with pytest.raises(RefusedError) as info:
        validate_condition(con, condition)
    assert info.value.code == "bad_condition"
    assert fragment in info.value.message
    assert "\n" not in info.value.message
    # Nothing ran: the profiles are still there and nothing was created.
    tables = {
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }
    assert tables == {"profiles", "visitors"}


def test_unknown_column_names_the_column_and_lists_the_known_ones(
    con: duckdb.DuckDBPyConnection,
) -> None:
    with pytest.raises(RefusedError, match="'agee', which the profiles do not have") as info:
        validate_condition(con, "agee > 3")
    assert "profile_id, age, country, email, born, optin" in info.value.message


@settings(
    max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(
    st.text(alphabet=st.sampled_from(list("age ()=<>'\";-/*,.1aAsSeELlcCtT\n_:$?")), max_size=40)
)
def test_junk_is_refused_cleanly_or_accepted_idempotently(
    con: duckdb.DuckDBPyConnection, text: str
) -> None:
    try:
        canonical = validate_condition(con, text)
    except RefusedError as exc:
        assert exc.code == "bad_condition"
        return
    assert validate_condition(con, canonical) == canonical


# -- the workflow API ---------------------------------------------------------------------------


def ids(t: Targeting, ws: Workspace) -> set[str]:
    return set(t.profiles(ws)["profile_id"])


def test_query_targets_where_the_condition_is_true_and_null_is_not(ws: Workspace) -> None:
    adults = query(ws, "age >= 18")
    minors = query(ws, "NOT (age >= 18)")
    assert ids(adults, ws) == {"p1", "p4", "p5"}
    assert ids(minors, ws) == {"p2"}  # p3 has no age: in neither set
    assert adults.count() == 3 and len(minors) == 1


def test_union_intersection_exclusion(ws: Workspace) -> None:
    fr = query(ws, "country = 'FR'")
    adults = query(ws, "age >= 18")
    optin = query(ws, "optin = 'true'")
    assert ids(union(fr, adults), ws) == {"p1", "p3", "p4", "p5"}
    assert ids(fr | adults, ws) == {"p1", "p3", "p4", "p5"}
    assert ids(intersection(fr, adults), ws) == {"p1", "p5"}
    assert ids(fr & adults & optin, ws) == {"p1"}
    assert ids(exclusion(fr, adults), ws) == {"p3"}  # p3's NULL age is not "adult"
    assert ids(fr - adults, ws) == {"p3"}
    assert ids(exclusion(all_profiles(ws), adults, optin), ws) == {"p2"}
    assert ids(all_profiles(ws), ws) == {"p1", "p2", "p3", "p4", "p5"}
    assert "union(query(country = 'FR'), query(age >= 18))" == union(fr, adults).description


def test_query_refuses_a_bad_condition(ws: Workspace) -> None:
    with pytest.raises(RefusedError) as info:
        query(ws, "profile_id IN (SELECT profile_id FROM visitors)")
    assert info.value.code == "bad_condition"


def test_query_on_a_connection(ws: Workspace) -> None:
    with ws.session() as c:
        t = query(c, "country = 'DE'")
        assert list(t.profiles(c)["profile_id"]) == ["p2"]
        assert t.count(c) == 1


def test_combining_refuses_what_is_not_a_targeting(ws: Workspace) -> None:
    with pytest.raises(RefusedError) as info:
        union(query(ws, "age > 1"), "age > 3")  # type: ignore[arg-type]
    assert info.value.code == "bad_targeting"


def test_a_targeting_is_checked_again_against_the_profiles(ws: Workspace, tmp_path: Path) -> None:
    t = query(ws, "optin = 'true'")
    (tmp_path / "q.csv").write_text("profile_id,age\nq1,3\n")
    load_profiles(ws, tmp_path / "q.csv", replace=True)  # the column optin is gone
    with pytest.raises(RefusedError, match="'optin'"):
        t.profiles()
