"""Audiences stored in the Campaign database: list, extract members, delete (SPEC §7)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import duckdb
import pandas as pd

from audtools.errors import AudtoolsError
from audtools.workspace import Workspace, as_workspace
from audtools.workspace.database import sql_string, transaction
from audtools.workspace.records import replaced_whole, spreadsheet_safe, utc_text


def list_audiences(workspace: str | os.PathLike[str] | Workspace | None = None) -> pd.DataFrame:
    """Every audience: label, type, shared audience sid, data source, size, dates, last run."""
    ws = as_workspace(workspace)
    with ws.session(purpose="audiences") as con:
        frame = con.execute(
            """
            SELECT a.label, a.type, a.sid, a.data_source,
                   (SELECT count(*) FROM audience_members m WHERE m.label = a.label) AS size,
                   a.created_at, a.updated_at, a.run_id
            FROM audiences a ORDER BY a.label
            """
        ).df()
    return frame


def audiences_json(workspace: str | os.PathLike[str] | Workspace | None = None) -> dict[str, object]:
    """``{"audiences": [...]}`` as ``audtools audiences --json`` prints it."""
    frame = list_audiences(workspace)
    out = []
    for row in frame.itertuples(index=False):
        out.append(
            {
                "label": row.label,
                "type": row.type,
                "sid": int(row.sid),
                "data_source": row.data_source,
                "size": int(row.size),
                "created_at": utc_text(row.created_at.to_pydatetime().replace(tzinfo=dt.UTC)),
                "updated_at": utc_text(row.updated_at.to_pydatetime().replace(tzinfo=dt.UTC)),
                "run_id": row.run_id,
            }
        )
    return {"audiences": out}


def _audience_type(con: duckdb.DuckDBPyConnection, label: str) -> str:
    row = con.execute("SELECT type FROM audiences WHERE label = ?", [label]).fetchone()
    if row is None:
        raise AudtoolsError(
            f"No audience is labelled {label!r}; see 'audtools audiences'.", code="unknown_audience"
        )
    return str(row[0])


def audience_members(
    workspace: str | os.PathLike[str] | Workspace | None, label: str
) -> pd.DataFrame:
    """The members of an audience: a ``profile_id`` column (Experience Cloud audience) or an
    ``address`` column (File audience)."""
    ws = as_workspace(workspace)
    with ws.session(purpose="audiences members") as con:
        column = "address" if _audience_type(con, label) == "file" else "profile_id"
        return con.execute(
            f"SELECT {column} FROM audience_members WHERE label = ? ORDER BY {column}", [label]
        ).df()


def export_members(
    workspace: str | os.PathLike[str] | Workspace | None,
    label: str,
    output: str | Path,
    *,
    raw_csv: bool = False,
) -> int:
    """Write an audience's members to ``output`` (``.csv`` with a header, or ``.parquet``).

    The file appears whole or not at all, for its owner only. In a CSV, a value a spreadsheet
    would run as a formula (starting with ``=``, ``@``, ``+``, ``-``, a tab or a carriage return;
    not an E.164 number, ``+`` and digits) gets a leading ``'``, unless ``raw_csv``.

    Returns:
        The number of members written.
    """
    out = Path(output)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise AudtoolsError(
            f"{out.name}: the members file must end in .csv or .parquet.", code="bad_output"
        )
    ws = as_workspace(workspace)
    with ws.session(purpose="audiences members") as con:
        column = "address" if _audience_type(con, label) == "file" else "profile_id"
        fmt = "(FORMAT parquet)" if suffix == ".parquet" else "(HEADER, DELIMITER ',')"
        value = column if raw_csv or suffix == ".parquet" else spreadsheet_safe(column)
        with replaced_whole(out) as tmp:
            con.execute(
                f"COPY (SELECT {value} AS {column} FROM audience_members WHERE label = $label "
                f"ORDER BY {column}) TO {sql_string(str(tmp))} {fmt}",
                {"label": label},
            )
        (count,) = con.execute(
            "SELECT count(*) FROM audience_members WHERE label = ?", [label]
        ).fetchone() or (0,)
    return int(count)


def delete_audience(workspace: str | os.PathLike[str] | Workspace | None, label: str) -> int:
    """Delete an audience and its members.

    Returns:
        The number of members removed.
    """
    ws = as_workspace(workspace)
    with ws.session(purpose="audiences delete") as con:
        _audience_type(con, label)
        with transaction(con):
            (count,) = con.execute(
                "SELECT count(*) FROM audience_members WHERE label = ?", [label]
            ).fetchone() or (0,)
            con.execute("DELETE FROM audience_members WHERE label = ?", [label])
            con.execute("DELETE FROM audiences WHERE label = ?", [label])
    return int(count)
