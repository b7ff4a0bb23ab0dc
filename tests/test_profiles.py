"""Profiles and visitor IDs: loading from CSV and Parquet, typing, merging, deleting."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audtools.columns import identifiers as id_rules
from audtools.errors import AudtoolsError, InputError, RefusedError
from audtools.profiles import declared_ids as derived
from audtools.profiles import loading as profiles_module
from audtools.profiles.deletion import ProfileDelete, delete_profiles
from audtools.profiles.loading import ProfileLoad, load_profiles, load_visitors, profile_columns
from audtools.workspace import Workspace, init_workspace
from audtools.workspace import database as store
from audtools.workspace.database import arrow, connect

V1 = "0" * 37 + "1"
V2 = "12345678901234567890123456789012345678"
V3 = "9" * 38


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` exactly (no newline translation)."""
    path.write_bytes(text.encode(encoding))
    return path


def query(ws: Workspace, sql: str) -> list[tuple[Any, ...]]:
    with ws.session() as con:
        return con.execute(sql).fetchall()


def columns(ws: Workspace) -> dict[str, str]:
    with ws.session() as con:
        return profile_columns(con)


def table(ws: Workspace) -> list[tuple[Any, ...]]:
    return query(ws, "SELECT * FROM profiles ORDER BY profile_id")


@pytest.fixture
def base(workspace: Workspace, tmp_path: Path) -> Workspace:
    """A workspace holding three profiles with a few columns."""
    write(
        tmp_path / "base.csv",
        "profile_id,crm_id,email,age,city\n"
        "P1,0001,a@example.com,31,Paris\n"
        "P2,0002,b@example.com,42,Lyon\n"
        "P3,0003,c@example.com,53,Nice\n",
    )
    load_profiles(workspace, tmp_path / "base.csv")
    return workspace


# -- typing -----------------------------------------------------------------------------------


def test_csv_columns_are_typed_from_their_values(workspace: Workspace, tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.csv",
        "profile_id,crm_id,email,mobile_phone,age,score,born,mixed,zip,note,nothing\n"
        "007,000123,Ann@Example.com,0612345678,30,1.5,2000-01-02,1,01234,hello,\n"
        "008,000124,bob@example.com,+33612345678,-4,2,1999-12-31,x,75001,,\n",
    )
    result = load_profiles(workspace, path)
    assert columns(workspace) == {
        "profile_id": "VARCHAR",
        "crm_id": "VARCHAR",
        "email": "VARCHAR",
        "mobile_phone": "VARCHAR",
        "age": "BIGINT",
        "score": "DOUBLE",
        "born": "DATE",
        "mixed": "VARCHAR",
        "zip": "VARCHAR",  # a leading zero makes a code, not a number
        "note": "VARCHAR",
        "nothing": "VARCHAR",  # no value at all
    }
    assert table(workspace) == [
        (
            "007",
            "000123",
            "Ann@Example.com",
            "0612345678",
            30,
            1.5,
            dt.date(2000, 1, 2),
            "1",
            "01234",
            "hello",
            None,
        ),
        (
            "008",
            "000124",
            "bob@example.com",
            "+33612345678",
            -4,
            2.0,
            dt.date(1999, 12, 31),
            "x",
            "75001",
            None,
            None,
        ),
    ]
    assert result == ProfileLoad(
        profiles_read=2,
        profiles_inserted=2,
        profiles_updated=0,
        profiles_total=2,
        columns=list(columns(workspace)),
    )


def test_to_json_has_the_documented_keys(workspace: Workspace, tmp_path: Path) -> None:
    data = load_profiles(workspace, write(tmp_path / "p.csv", "profile_id\nP1\n")).to_json()
    assert data == {
        "profiles_read": 1,
        "profiles_inserted": 1,
        "profiles_updated": 0,
        "profiles_total": 1,
        "columns": ["profile_id"],
        "visitors_read": 0,
        "visitors_added": 0,
        "visitors_rejected": 0,
    }


def test_numbers_that_do_not_fit_or_look_like_codes_stay_text(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "p.csv",
        "profile_id,big,plus,exp,date_like\nP1,123456789012345678901234,+5,1e5,2024-02-30\n",
    )
    load_profiles(workspace, path)
    cols = columns(workspace)
    assert {k: cols[k] for k in ("big", "plus", "exp", "date_like")} == dict.fromkeys(
        ("big", "plus", "exp", "date_like"), "VARCHAR"
    )
    assert table(workspace) == [("P1", "123456789012345678901234", "+5", "1e5", "2024-02-30")]


def test_a_value_late_in_the_file_decides_the_type(workspace: Workspace, tmp_path: Path) -> None:
    rows = "".join(f"P{i},{i},{i},{i},2024-01-0{1 + i % 9}\n" for i in range(3000))
    path = write(
        tmp_path / "p.csv",
        "profile_id,n,x,t,d\n" + rows + "Q,7,7.5,07,2024-13-01\n",  # each column's odd one last
    )
    load_profiles(workspace, path)
    types = columns(workspace)
    kinds = (types["n"], types["x"], types["t"], types["d"])
    assert kinds == ("BIGINT", "DOUBLE", "VARCHAR", "VARCHAR")
    assert query(workspace, "SELECT n, x, t, d FROM profiles WHERE profile_id = 'Q'") == [
        (7, 7.5, "07", "2024-13-01")
    ]


def test_a_configured_reconciliation_key_is_text(workspace: Workspace, tmp_path: Path) -> None:
    config = workspace.config.path
    config.write_text(
        config.read_text()
        + '\n[[data_sources]]\nid = "loyalty"\ndpid = 14099\nreconciliation = "declared_id"\n'
        'reconciliation_key = "loyalty_no"\n'
    )
    ws = Workspace(workspace.root)
    load_profiles(ws, write(tmp_path / "p.csv", "profile_id,Loyalty_No,n\nP1,0042,0\n"))
    assert columns(ws) == {"profile_id": "VARCHAR", "Loyalty_No": "VARCHAR", "n": "BIGINT"}
    assert table(ws) == [("P1", "0042", 0)]


def test_empty_fields_do_not_change_a_column_type(workspace: Workspace, tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.csv",
        "profile_id,joined,n,x\nq1,2020-01-02,5,1.5\nq2,,,\nq3,2022-02-03,7,2\n",
    )
    load_profiles(workspace, path)
    types = columns(workspace)
    assert (types["joined"], types["n"], types["x"]) == ("DATE", "BIGINT", "DOUBLE")


def test_parquet_keeps_its_types_except_text_columns(workspace: Workspace, tmp_path: Path) -> None:
    data = pa.table(
        {
            "profile_id": pa.array([1, 2], pa.int64()),
            "crm_id": pa.array(["000123", "000124"]),
            "email": pa.array(["a@example.com", None]),
            "visits": pa.array([3, 4], pa.int32()),
            "spend": pa.array([1.25, 2.5]),
            "born": pa.array([dt.date(1990, 5, 6), dt.date(1991, 7, 8)]),
            "vip": pa.array([True, False]),
        }
    )
    path = tmp_path / "p.parquet"
    pq.write_table(data, path)
    result = load_profiles(workspace, path)
    assert result.profiles_inserted == 2
    assert columns(workspace) == {
        "profile_id": "VARCHAR",
        "crm_id": "VARCHAR",
        "email": "VARCHAR",
        "visits": "INTEGER",
        "spend": "DOUBLE",
        "born": "DATE",
        "vip": "BOOLEAN",
    }
    assert table(workspace) == [
        ("1", "000123", "a@example.com", 3, 1.25, dt.date(1990, 5, 6), True),
        ("2", "000124", None, 4, 2.5, dt.date(1991, 7, 8), False),
    ]


def test_parquet_without_profile_id_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "p.pq"
    pq.write_table(pa.table({"id": ["P1"]}), path)
    with pytest.raises(InputError) as info:
        load_profiles(workspace, path)
    assert info.value.code == "bad_profiles"


# -- CSV dialects and encodings -----------------------------------------------------------------


def test_crlf_file(workspace: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", "profile_id,crm_id,n\r\nP1,0001,1\r\nP2,0002,2\r\n")
    load_profiles(workspace, path)
    assert table(workspace) == [("P1", "0001", 1), ("P2", "0002", 2)]
    assert columns(workspace)["n"] == "BIGINT"


def test_semicolon_delimiter(workspace: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", 'profile_id;name;score\nP1;"Dupont, Jean";1.5\n')
    load_profiles(workspace, path, delimiter=";")
    assert table(workspace) == [("P1", "Dupont, Jean", 1.5)]


def test_latin1_round_trip(workspace: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", "profile_id,city\nP1,Orléans\n", encoding="latin-1")
    load_profiles(workspace, path, encoding="latin-1")
    assert table(workspace) == [("P1", "Orléans")]


def test_other_encodings_are_transcoded(workspace: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", "profile_id,price\nP1,5 €\nP2,é\n", encoding="cp1252")
    load_profiles(workspace, path, encoding="cp1252")
    assert table(workspace) == [("P1", "5 €"), ("P2", "é")]


def test_utf8_bom_is_not_part_of_the_first_name(workspace: Workspace, tmp_path: Path) -> None:
    load_profiles(workspace, write(tmp_path / "p.csv", "\ufeffprofile_id,x\nP1,a\n"))
    assert list(columns(workspace)) == ["profile_id", "x"]


def test_bad_utf8_is_an_input_error_naming_the_file(workspace: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path / "latin.csv", "profile_id,city\nP1,Orléans\n", encoding="latin-1")
    with pytest.raises(InputError) as info:
        load_profiles(workspace, path)
    assert info.value.code == "bad_input"
    assert "latin.csv (line 2): it is not valid UTF-8" in info.value.message
    assert table(workspace) == []


def test_undecodable_bytes_in_a_transcoded_file(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(b"profile_id,x\nP1,\x81\n")  # 0x81 is undefined in cp1252
    with pytest.raises(InputError, match="p.csv"):
        load_profiles(workspace, path, encoding="cp1252")


def test_unknown_encoding_and_empty_delimiter_are_refused(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = write(tmp_path / "p.csv", "profile_id\nP1\n")
    with pytest.raises(RefusedError) as info:
        load_profiles(workspace, path, encoding="klingon")
    assert info.value.code == "bad_encoding"
    with pytest.raises(RefusedError):
        load_profiles(workspace, path, delimiter="")


def test_missing_or_malformed_files(workspace: Workspace, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.csv"):
        load_profiles(workspace, tmp_path / "nope.csv")
    with pytest.raises(InputError, match="empty.csv") as info:
        load_profiles(workspace, write(tmp_path / "empty.csv", ""))
    assert info.value.code == "bad_profiles"
    with pytest.raises(InputError, match="ragged.csv.*as many fields as the header"):
        load_profiles(workspace, write(tmp_path / "ragged.csv", "profile_id,a\nP1,1,2\n"))
    late = "profile_id,a\n" + "".join(f"P{i},{i}\n" for i in range(30_000)) + "P,1,2\n"
    with pytest.raises(InputError, match=r"late.csv \(line 30002\).*3 where the header has 2"):
        load_profiles(workspace, write(tmp_path / "late.csv", late))
    with pytest.raises(InputError, match="fake.parquet"):
        load_profiles(workspace, write(tmp_path / "fake.parquet", "profile_id\nP1\n"))


def test_header_problems_are_refused(workspace: Workspace, tmp_path: Path) -> None:
    cases = {
        "noid.csv": "id,email\nP1,a@example.com\n",
        "twice.csv": "profile_id,Email,email\nP1,a,b\n",
        "unnamed.csv": "profile_id,a,\nP1,1,\n",
    }
    for name, text in cases.items():
        with pytest.raises(InputError) as info:
            load_profiles(workspace, write(tmp_path / name, text))
        assert info.value.code == "bad_profiles", name
        assert name in info.value.message
        assert {
            "noid.csv": "no profile_id column",
            "twice.csv": "'email' appears twice",
            "unnamed.csv": "column 3 of the header has no name",
        }[name] in info.value.message


def test_blank_profile_ids_are_refused(workspace: Workspace, tmp_path: Path) -> None:
    for text in ("profile_id,x\nP1,1\n,2\n", 'profile_id,x\nP1,1\n" \t ",2\n'):
        with pytest.raises(InputError) as info:
            load_profiles(workspace, write(tmp_path / "p.csv", text))
        assert info.value.code == "bad_profiles"
        assert "row 3" in info.value.message
    assert table(workspace) == []


# -- merging --------------------------------------------------------------------------------------


def test_update_keeps_absent_profiles_and_columns(base: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path / "update.csv", "profile_id,city,segment\nP2,Lille,gold\nP4,,silver\n")
    result = load_profiles(base, path)
    assert (result.profiles_read, result.profiles_inserted, result.profiles_updated) == (2, 1, 1)
    assert result.profiles_total == 4
    assert result.columns == ["profile_id", "crm_id", "email", "age", "city", "segment"]
    assert table(base) == [
        ("P1", "0001", "a@example.com", 31, "Paris", None),
        ("P2", "0002", "b@example.com", 42, "Lille", "gold"),
        ("P3", "0003", "c@example.com", 53, "Nice", None),
        ("P4", None, None, None, None, "silver"),  # an empty field is null
    ]


def test_a_column_whose_type_changes_is_widened(base: Workspace, tmp_path: Path) -> None:
    load_profiles(base, write(tmp_path / "u1.csv", "profile_id,age\nP1,31.5\n"))
    assert columns(base)["age"] == "DOUBLE"
    load_profiles(base, write(tmp_path / "u2.csv", "profile_id,age\nP2,unknown\n"))
    assert columns(base)["age"] == "VARCHAR"
    assert query(base, "SELECT age FROM profiles ORDER BY profile_id") == [
        ("31.5",),
        ("unknown",),
        ("53.0",),
    ]


def test_an_empty_column_takes_the_existing_type(base: Workspace, tmp_path: Path) -> None:
    load_profiles(base, write(tmp_path / "u.csv", "profile_id,age\nP1,\n"))
    assert columns(base)["age"] == "BIGINT"
    assert query(base, "SELECT age FROM profiles ORDER BY profile_id") == [(None,), (42,), (53,)]


def test_header_names_match_existing_columns_without_case(base: Workspace, tmp_path: Path) -> None:
    load_profiles(base, write(tmp_path / "u.csv", "Profile_ID, CITY \nP1,Rouen\n"))
    assert list(columns(base)) == ["profile_id", "crm_id", "email", "age", "city"]
    assert query(base, "SELECT city FROM profiles WHERE profile_id = 'P1'") == [("Rouen",)]


def test_replace(base: Workspace, tmp_path: Path) -> None:
    load_visitors(base, write(tmp_path / "v.csv", f"profile_id,visitor_id\nP1,{V1}\nP3,{V2}\n"))
    path = write(tmp_path / "new.csv", "profile_id,score,crm_id\nP3,1.5,0009\nP9,2,0010\n")
    result = load_profiles(base, path, replace=True)
    assert (result.profiles_inserted, result.profiles_updated, result.profiles_total) == (1, 1, 2)
    assert result.columns == ["profile_id", "score", "crm_id"]
    assert columns(base) == {"profile_id": "VARCHAR", "score": "DOUBLE", "crm_id": "VARCHAR"}
    assert table(base) == [("P3", 1.5, "0009"), ("P9", 2.0, "0010")]
    assert query(base, "SELECT * FROM visitors") == [("P3", V2)]


def test_replace_keeps_profile_id_first(workspace: Workspace, tmp_path: Path) -> None:
    load_profiles(workspace, write(tmp_path / "p.csv", "a,profile_id\n1,P1\n"), replace=True)
    assert list(columns(workspace)) == ["profile_id", "a"]
    assert table(workspace) == [("P1", 1)]


def test_loading_empties_the_derived_id_cache(base: Workspace, tmp_path: Path) -> None:
    with base.session() as con:
        con.execute("INSERT INTO derived_ids VALUES ('crmDeclaredId', 'P1', '0001')")
        con.execute("INSERT INTO derived_state VALUES ('crmDeclaredId', 'x', 1, true)")
    load_profiles(base, write(tmp_path / "u.csv", "profile_id\nP1\n"))
    assert query(base, "SELECT count(*) FROM derived_ids") == [(0,)]
    assert query(base, "SELECT count(*) FROM derived_state") == [(0,)]


def test_a_duplicate_profile_id_is_refused_and_nothing_changes(
    base: Workspace, tmp_path: Path
) -> None:
    before = table(base), columns(base)
    path = write(
        tmp_path / "dups.csv",
        "profile_id,city,extra\nP1,Metz,1\nP5,Caen,2\nP1,Brest,3\nP5,Tours,4\nP6,Laon,5\n",
    )
    with pytest.raises(AudtoolsError) as info:
        load_profiles(
            base, path, visitors=write(tmp_path / "v.csv", f"profile_id,visitor_id\nP1,{V1}\n")
        )
    error = info.value
    assert isinstance(error, InputError)
    assert error.code == "duplicate_profile_id"
    assert "dups.csv" in error.message
    assert "2 profile_ids appear more than once" in error.message
    assert "'P1' on rows 2 and 4" in error.message
    assert (table(base), columns(base)) == before
    assert query(base, "SELECT count(*) FROM visitors") == [(0,)]


def test_a_failure_midway_changes_nothing(
    base: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = table(base), columns(base)

    seen: list[tuple[Any, ...]] = []

    def boom(con: Any) -> None:
        seen.append(con.execute("SELECT count(*), count(new_col) FROM profiles").fetchone())
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(profiles_module, "_invalidate_derived_ids", boom)
    path = write(tmp_path / "u.csv", "profile_id,city,new_col\nP1,Metz,x\nP7,Caen,y\nP8,Laon,z\n")
    with pytest.raises(RuntimeError, match="disk on fire"):
        load_profiles(base, path)
    assert (table(base), columns(base)) == before
    with pytest.raises(RuntimeError, match="disk on fire"):
        load_profiles(base, path, replace=True)
    assert (table(base), columns(base)) == before
    assert seen == [(5, 3), (3, 3)]  # the rows were written before the failure


def test_a_bad_visitors_file_loads_no_profiles(base: Workspace, tmp_path: Path) -> None:
    before = table(base)
    path = write(tmp_path / "u.csv", "profile_id,city\nP7,Caen\n")
    with pytest.raises(InputError) as info:
        load_profiles(base, path, visitors=write(tmp_path / "v.csv", "profile_id,ecid\nP7,1\n"))
    assert info.value.code == "bad_visitors"
    assert "visitor_id" in info.value.message
    assert table(base) == before


# -- visitors -------------------------------------------------------------------------------------


def test_visitors_are_added_deduplicated_and_checked(base: Workspace, tmp_path: Path) -> None:
    path = write(
        tmp_path / "v.csv",
        "profile_id,visitor_id\r\n"
        f"P1,{V1}\r\n"
        f"P1,{V1}\r\n"  # twice in the file: added once
        f"P2,{V1}\r\n"  # a visitor ID may belong to several profiles
        f"P2,{V2}\r\n"
        f"P9,{V3}\r\n"  # unknown profile
        f"P3,{V3[:-1]}\r\n"  # 37 digits
        f"P3,{V3}0\r\n"  # 39 digits
        f"P3,{V3[:-1]}\u0663\r\n"  # an Arabic-Indic digit
        f"P3,\r\n"  # no visitor ID
        f",{V3}\r\n",  # no profile
    )
    result = load_visitors(base, path)
    assert (result.visitors_read, result.visitors_added, result.visitors_rejected) == (10, 3, 6)
    assert result.profiles_total == 3 and result.profiles_read == 0
    assert sorted(query(base, "SELECT * FROM visitors")) == [("P1", V1), ("P2", V1), ("P2", V2)]
    again = load_visitors(base, path)
    assert (again.visitors_added, again.visitors_rejected) == (0, 6)
    assert query(base, "SELECT count(*) FROM visitors") == [(3,)]


def test_visitor_ids_are_stored_in_the_order_of_their_first_row(
    base: Workspace, tmp_path: Path
) -> None:
    # The order an export writes them in.
    unique = f"SELECT value FROM meta WHERE key = '{store.VISITOR_IDS_UNIQUE}'"
    rows = f"P3,{V3}\nP1,{V2}\nP3,{V3}\nP2,{V1}\nP9,{V1}\n"
    result = load_visitors(base, write(tmp_path / "v.csv", "profile_id,visitor_id\n" + rows))
    assert (result.visitors_read, result.visitors_added, result.visitors_rejected) == (5, 3, 1)
    assert query(base, "SELECT * FROM visitors") == [("P3", V3), ("P1", V2), ("P2", V1)]
    assert query(base, unique) == [("true",)]
    more = f"P1,{V1}\nP2,{V1}\nP1,{V2}\nP1,{V1}\n"  # V1 now of two profiles
    result = load_visitors(base, write(tmp_path / "w.csv", "profile_id,visitor_id\n" + more))
    assert (result.visitors_read, result.visitors_added, result.visitors_rejected) == (4, 1, 0)
    assert query(base, "SELECT * FROM visitors")[3:] == [("P1", V1)]
    assert query(base, unique) == [("false",)]


def test_visitors_of_profiles_loaded_in_the_same_call(base: Workspace, tmp_path: Path) -> None:
    profiles = write(tmp_path / "p.csv", "profile_id;city\nP4;Caen\n")
    visitors = write(tmp_path / "v.csv", f"profile_id;visitor_id\nP4;{V1}\nP5;{V2}\n")
    result = load_profiles(base, profiles, visitors=visitors, delimiter=";")
    assert (result.visitors_read, result.visitors_added, result.visitors_rejected) == (2, 1, 1)
    assert query(base, "SELECT * FROM visitors") == [("P4", V1)]


def test_visitor_ids_keep_leading_zeros_from_parquet(base: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "v.parquet"
    pq.write_table(pa.table({"visitor_id": [V1], "profile_id": ["P1"]}), path)
    assert load_visitors(base, path).visitors_added == 1
    assert query(base, "SELECT visitor_id FROM visitors") == [(V1,)]


# -- delete ---------------------------------------------------------------------------------------


def test_delete_removes_profiles_visitors_memberships_and_derived_ids(
    base: Workspace, tmp_path: Path
) -> None:
    load_visitors(
        base, write(tmp_path / "v.csv", f"profile_id,visitor_id\nP1,{V1}\nP1,{V2}\nP2,{V3}\n")
    )
    with base.session() as con:
        con.execute(
            "INSERT INTO audience_members VALUES ('aud1', 'P1', NULL), ('aud2', 'P1', NULL), "
            "('aud1', 'P2', NULL), ('file', NULL, 'x@example.com')"
        )
        con.execute(
            "INSERT INTO derived_ids VALUES ('crmDeclaredId', 'P1', '0001'), "
            "('crmDeclaredId', 'P2', '0002')"
        )
    ids = write(tmp_path / "erase.csv", "reason,profile_id\ngdpr,P1\ngdpr,P1\ngdpr,P404\nx,\n")
    result = delete_profiles(base, ids)
    assert result == ProfileDelete(
        ids_read=4, profiles_deleted=1, visitors_deleted=2, memberships_deleted=2
    )
    assert result.to_json() == {
        "ids_read": 4,
        "profiles_deleted": 1,
        "visitors_deleted": 2,
        "memberships_deleted": 2,
    }
    assert [r[0] for r in table(base)] == ["P2", "P3"]
    assert query(base, "SELECT * FROM visitors") == [("P2", V3)]
    assert sorted(query(base, "SELECT label, profile_id FROM audience_members"), key=str) == [
        ("aud1", "P2"),
        ("file", None),
    ]
    assert query(base, "SELECT profile_id FROM derived_ids") == [("P2",)]


def test_delete_needs_a_profile_id_column(base: Workspace, tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        delete_profiles(base, write(tmp_path / "erase.csv", "id\nP1\n"))
    assert info.value.code == "bad_profiles"
    assert len(table(base)) == 3


# -- properties -----------------------------------------------------------------------------------

_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufeff"),
    min_size=1,
    max_size=12,
).filter(lambda s: s.strip(" \t\r\n\x0b\x0c") != "")


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ids=st.lists(_TEXT, min_size=1, max_size=5, unique=True), city=_TEXT)
def test_text_values_round_trip_as_written(tmp_path: Path, ids: list[str], city: str) -> None:
    ws_dir = tmp_path / "prop"
    ws = Workspace(ws_dir) if (ws_dir / "audtools.toml").exists() else init_workspace(ws_dir)
    path = tmp_path / "p.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_ALL)
        writer.writerow(["profile_id", "email"])
        writer.writerows([i, city] for i in ids)
    load_profiles(ws, path, replace=True)
    assert sorted(query(ws, "SELECT profile_id, email FROM profiles")) == sorted(
        (i, city) for i in ids
    )


# -- the derived-ID cache: SHA-256 in SQL -----------------------------------------------------

CHECK_SHA256 = "55e79200c1635b37ad31a378c39feb12f120f116625093a19bc32fff15041149"  # SPEC §3
HASHED_SOURCE = """
[[data_sources]]
id = "emailSha256"
label = "Email - SHA-256"
dpid = 14019
destination_id = 46393
reconciliation = "declared_id"
reconciliation_key = "email"
channel = "email"
hash = "sha256"
"""


def _sql_sha256(values: list[str | None]) -> list[str | None]:
    """The cache's hashing step, as it runs: DuckDB's SQL over an Arrow column, in order."""
    con = connect(":memory:")
    try:
        con.register("_keys", pa.table({"k": pa.array(values, pa.string())}))
        return arrow(con, f"SELECT {derived.HASHED_KEY_SQL} FROM _keys").column(0).to_pylist()
    finally:
        con.close()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text()), max_size=20))
def test_the_caches_sql_sha256_equals_the_reference(values: list[str | None]) -> None:
    assert _sql_sha256(values) == id_rules.sha256_hex(pa.array(values, pa.string())).to_pylist()


def test_the_caches_sql_sha256_in_bulk_keeps_the_order() -> None:
    # Enough values (several row groups) for DuckDB to hash them in parallel.
    values = [f"user{i}@example.com" + "é\x00"[: i % 3] for i in range(300_000)]
    values[0] = "johndoe@example.com"
    got = _sql_sha256(values)
    assert got[0] == CHECK_SHA256
    assert got == id_rules.sha256_hex(pa.array(values)).to_pylist()


def test_the_cache_holds_the_reference_declared_ids(workspace: Workspace, tmp_path: Path) -> None:
    """Normalised and checked in Arrow, hashed in SQL: the keys equal declared_ids(sha256)."""
    config = workspace.root / "audtools.toml"
    config.write_text(config.read_text() + HASHED_SOURCE)
    ws = Workspace(workspace.root)
    emails = [" JohnDoe@Example.COM", "Ünïcødé@Exämple.fr", "İSTANBUL@x.tr", "a:b@x.org",
              "a%3Ab@x.org", "a%3ab@x.org", "a\rb@x.org", "  ", None, "tab\t@x.org"]
    emails += [f"User{i}@Example.com" for i in range(2000)]
    pids = [f"P{i}" for i in range(len(emails))]
    pq.write_table(pa.table({"profile_id": pids, "email": emails}), tmp_path / "p.parquet")
    load_profiles(ws, tmp_path / "p.parquet")
    source = ws.config.data_sources["emailSha256"]
    with ws.session() as con:
        assert derived.refresh(con, ws.config, source)
        got = dict(con.execute(
            "SELECT profile_id, declared_id FROM derived_ids WHERE data_source = 'emailSha256'"
        ).fetchall())
    want = id_rules.declared_ids(pa.array(emails), kind="email", hash="sha256").to_pylist()
    assert got == {p: k for p, k in zip(pids, want, strict=True) if k is not None}
    assert got["P0"] == CHECK_SHA256
    assert sorted(set(pids) - set(got)) == sorted(["P3", "P4", "P5", "P6", "P7", "P8", "P9"])
