"""Conditions over the profile columns: checked before they ever run (SPEC §6.1).

A condition (``--where``) is one boolean DuckDB expression over the profile columns: literals,
operators, ``CASE``, ``IN`` lists and scalar functions. :func:`validate_condition` checks it
*before* it ever runs: DuckDB's own parser turns ``SELECT * FROM profiles WHERE (CONDITION)`` into
a syntax tree (``json_serialize_sql`` parses, it executes nothing), and the tree is walked: one
statement, a plain ``SELECT *`` from ``profiles`` and nothing else, and in the condition only
allowed kinds of expression, known scalar functions and the profiles' own columns. The accepted
condition is then *rewritten from the tree* (``json_deserialize_sql``), so the text that runs is
the text that was checked, whatever comments or parentheses the original held. Finally DuckDB binds
it (still without reading a row) to check that it is boolean.

A profile is targeted when the condition is true; NULL is not true.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

from audtools.errors import RefusedError

__all__ = ["validate_condition"]

_TABLE = "profiles"
# Expression classes of DuckDB's syntax tree that a condition may hold.
_ALLOWED_CLASSES = {
    "CONSTANT",
    "COLUMN_REF",
    "COMPARISON",
    "CONJUNCTION",
    "OPERATOR",
    "FUNCTION",
    "CASE",
    "CAST",
    "BETWEEN",
    "COLLATE",
    "TYPE",
}
_CLASS_WORDS = {
    "SUBQUERY": "a subquery",
    "WINDOW": "a window function",
    "LAMBDA": "a lambda",
    "STAR": "a star expression",
    "PARAMETER": "a parameter placeholder",
    "POSITIONAL_REFERENCE": "a positional reference",
    "DEFAULT": "DEFAULT",
}
# Scalar functions that touch state outside the row (sequences, settings, variables, the query
# text, the log), sleep, or call lambdas; DuckDB's internal "__" functions are refused too.
_DENIED_FUNCTIONS = {
    "nextval",
    "currval",
    "setval",
    "setseed",
    "current_setting",
    "getvariable",
    "current_query",
    "current_query_id",
    "sleep_ms",
    "pg_sleep",
    "json_serialize_sql",
    "json_deserialize_sql",
    "json_serialize_plan",
    "write_log",
    "invoke",
}
_LOCATION_KEYS = {"query_location", "query_location_length"}
# Keywords DuckDB parses as column references and binds as functions.
_SPECIAL_NAMES = {
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
}


def _refuse(message: str) -> RefusedError:
    return RefusedError(message, code="bad_condition")


def _parse(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any]:
    """DuckDB's syntax tree of ``sql`` as JSON (parsing only: nothing is executed)."""
    row = con.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchall()[0]
    return json.loads(row[0])


def _profile_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute(f"DESCRIBE {_TABLE}").fetchall()]


def _allowed_functions(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Scalar functions, and scalar macros whose definitions read no table."""
    rows = con.execute(
        """
        SELECT lower(function_name)
        FROM duckdb_functions()
        WHERE function_type IN ('scalar', 'macro')
        GROUP BY 1
        HAVING bool_and(function_type = 'scalar'
                        OR NOT regexp_matches(lower(coalesce(macro_definition, '')),
                                              '\\bselect\\b|\\bfrom\\b|unnest'))
        """
    ).fetchall()
    return {r[0] for r in rows if not r[0].startswith("__")} - _DENIED_FUNCTIONS


def _strip_locations(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_locations(v) for k, v in node.items() if k not in _LOCATION_KEYS}
    if isinstance(node, list):
        return [_strip_locations(v) for v in node]
    return node


def _where_tree(con: duckdb.DuckDBPyConnection, condition: str) -> dict[str, Any]:
    """The syntax tree of ``condition``, after checking the statement around it."""
    tree = _parse(con, f"SELECT * FROM {_TABLE} WHERE ({condition}\n)")
    if tree.get("error"):
        detail = (
            str(tree.get("error_message", "")).splitlines()[0] if tree.get("error_message") else ""
        )
        raise _refuse(
            f"The condition is not one valid DuckDB expression ({detail}); write a single "
            "boolean expression over the profile columns."
        )
    statements = tree.get("statements") or []
    if len(statements) != 1:
        raise _refuse("The condition holds several statements; write a single boolean expression.")
    node = statements[0].get("node") or {}
    from_table = node.get("from_table") or {}
    clean = (
        node.get("type") == "SELECT_NODE"
        and not node.get("modifiers")
        and not (node.get("cte_map") or {}).get("map")
        and [s.get("class") for s in node.get("select_list") or []] == ["STAR"]
        and not (
            node["select_list"][0].get("exclude_list")
            or node["select_list"][0].get("replace_list")
            or node["select_list"][0].get("expr")
        )
        and from_table.get("type") == "BASE_TABLE"
        and from_table.get("table_name") == _TABLE
        and not from_table.get("schema_name")
        and not from_table.get("catalog_name")
        and not from_table.get("alias")
        and not from_table.get("at_clause")
        and not from_table.get("sample")
        and not node.get("group_expressions")
        and not node.get("group_sets")
        and node.get("having") is None
        and node.get("qualify") is None
        and node.get("sample") is None
        and node.get("where_clause") is not None
    )
    if not clean:
        raise _refuse(
            "The condition reaches beyond one expression (a second query, another table, "
            "ORDER BY, LIMIT, GROUP BY or similar); write a single boolean expression."
        )
    return node["where_clause"]


def _check_tree(where: dict[str, Any], columns: list[str], functions: set[str]) -> None:
    known = {c.lower() for c in columns}
    shown = ", ".join(columns)

    def walk(item: Any) -> None:
        if isinstance(item, list):
            for value in item:
                walk(value)
            return
        if not isinstance(item, dict):
            return
        if "from_table" in item or "table_name" in item or item.get("type") == "SELECT_NODE":
            raise _refuse(
                "The condition reads a table; only the profiles' own columns may be used."
            )
        cls = item.get("class")
        if cls is not None:
            if cls not in _ALLOWED_CLASSES:
                what = _CLASS_WORDS.get(cls, f"a {str(cls).lower()} expression")
                raise _refuse(
                    f"The condition holds {what}, which is not allowed; use only literals, "
                    "operators, CASE, IN lists and scalar functions over profile columns."
                )
            if cls == "COLUMN_REF":
                _check_column(item.get("column_names") or [], known, shown)
            elif cls == "FUNCTION":
                _check_function(item, functions)
        for key, value in item.items():
            if key != "column_names":
                walk(value)

    walk(where)


def _check_column(names: list[str], known: set[str], shown: str) -> None:
    if not names:
        raise _refuse("The condition holds an empty column reference; name a profile column.")
    first = names[0].lower()
    if first in known:
        return  # a column, or a field of a STRUCT column
    if first == _TABLE and len(names) > 1 and names[1].lower() in known:
        return
    if len(names) == 1 and first in _SPECIAL_NAMES:
        return
    dotted = ".".join(names)
    if len(names) > 1:
        raise _refuse(
            f"The condition refers to '{dotted}': only the profiles' own columns may be used "
            f"({shown})."
        )
    raise _refuse(
        f"The condition names the column '{dotted}', which the profiles do not have "
        f"(columns: {shown}); fix the condition."
    )


def _check_function(item: dict[str, Any], functions: set[str]) -> None:
    name = str(item.get("function_name") or "")
    if item.get("schema") or item.get("catalog"):
        raise _refuse(
            f"The condition calls '{name}' through a schema; call scalar functions by their plain name."
        )
    if name.lower() not in functions:
        raise _refuse(
            f"The condition calls '{name}', which is not an allowed scalar function (table "
            "functions, aggregates and functions with side effects are refused)."
        )
    orders = (item.get("order_bys") or {}).get("orders")
    if item.get("distinct") or item.get("filter") is not None or orders or item.get("export_state"):
        raise _refuse(
            f"The condition calls '{name}' with DISTINCT, FILTER or ORDER BY, which belong to "
            "aggregates; use scalar functions only."
        )


def _rewrite(con: duckdb.DuckDBPyConnection, where: dict[str, Any]) -> str:
    """The expression's text, generated from its syntax tree."""
    select: dict[str, Any] = {
        "type": "SELECT_NODE",
        "modifiers": [],
        "cte_map": {"map": []},
        "select_list": [where],
        "from_table": {
            "type": "EMPTY",
            "alias": "",
            "sample": None,
            "query_location": 0,
            "query_location_length": 0,
        },
        "where_clause": None,
        "group_expressions": [],
        "group_sets": [],
        "aggregate_handling": "STANDARD_HANDLING",
        "having": None,
        "sample": None,
        "qualify": None,
    }
    payload = {"error": False, "statements": [{"node": select, "named_param_map": []}]}
    row = con.execute("SELECT json_deserialize_sql(?::JSON)", [json.dumps(payload)]).fetchall()[0]
    text = str(row[0]).strip()
    if not text.upper().startswith("SELECT "):
        raise _refuse("The condition cannot be checked; simplify it.")
    return text[len("SELECT ") :].strip()


def validate_condition(con: duckdb.DuckDBPyConnection, condition: str) -> str:
    """Check a targeting condition without running it; return the text that may run.

    The condition must be one boolean DuckDB expression over the columns of ``profiles``:
    literals, operators, ``CASE``, ``IN`` lists and scalar functions. Refused: several
    statements, subqueries (``IN (SELECT …)``, ``EXISTS``), table functions (``read_csv``),
    other tables, aggregates, window functions, lambdas, parameters, comments, functions with
    side effects, unknown columns and expressions that are not boolean.

    Args:
        con: an open connection to the workspace database.
        condition: the condition, as written after ``--where``.

    Returns:
        The condition rewritten by DuckDB from its checked syntax tree, safe to embed in
        parentheses in other SQL.

    Raises:
        RefusedError: ``bad_condition``, with one sentence naming the problem.

    Example:
        >>> validate_condition(con, "age >= 18 AND country IN ('FR', 'DE')")   # doctest: +SKIP
        "((age >= 18) AND (country IN ('FR', 'DE')))"
    """
    if not isinstance(condition, str) or not condition.strip():
        raise _refuse(
            "The condition is empty; write a boolean expression over the profile columns."
        )
    try:
        tokens = duckdb.tokenize(condition)
    except Exception:  # noqa: BLE001 - the parser below gives the reason
        tokens = []
    for start, kind in tokens:
        if kind == duckdb.token_type.comment:
            raise _refuse(
                "The condition holds a comment ('--' or '/* */'), which is not allowed; remove it."
            )
        if kind == duckdb.token_type.operator and condition[start] == ";":
            raise _refuse(
                "The condition holds ';': a condition is one expression, not several statements."
            )
    where = _where_tree(con, condition)
    _check_tree(where, _profile_columns(con), _allowed_functions(con))
    text = _rewrite(con, where)
    # The rewritten text must mean exactly what was checked.
    again = _where_tree(con, text)
    if _strip_locations(again) != _strip_locations(where):
        raise _refuse("The condition cannot be checked reliably; simplify it.")
    try:
        described = con.execute(f"DESCRIBE SELECT ({text}) AS c FROM {_TABLE}").fetchall()
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise _refuse(f"DuckDB cannot use the condition ({first}); fix it.") from None
    type_name = str(described[0][1])
    if type_name != "BOOLEAN":
        raise _refuse(
            f"The condition is of type {type_name}, not boolean; compare it with something "
            "(for example 'age >= 18')."
        )
    return text
