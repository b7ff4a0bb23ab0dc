"""Profiles and their visitor IDs: load them from CSV or Parquet, and delete them on request.

:func:`load_profiles` reads a file with a ``profile_id`` column and any others and merges it into
the ``profiles`` table by ``profile_id`` (or replaces the table with ``replace=True``);
:func:`load_visitors` adds ``profile_id,visitor_id`` rows; :func:`delete_profiles` erases profiles
with everything that names them. Each call is one transaction under the workspace lock, and every
step is a bulk DuckDB statement over the whole file, so millions of rows load in seconds.

Typing (SPEC §7). ``profile_id``, ``email``, ``mobile_phone`` and every data source's
``reconciliation_key`` column are text, as written (leading zeros kept; a Parquet number in such a
column becomes its decimal text). Other Parquet columns keep their types. Other CSV columns are
typed from *all* their values, not a sample:

- ``BIGINT`` when every value is a whole number written without a sign other than ``-`` and
  without leading zeros (``0012`` and ``+33…`` stay text: codes and phone numbers) that fits;
- ``DOUBLE`` when every value is such a number or one with a decimal point (``-12.50``);
- ``DATE`` when every value is an ISO date (``2024-01-31``);
- text otherwise, and for a column without any value.

Values are taken as written: no trimming, and an empty field is null. Header names are trimmed of
surrounding whitespace and matched with existing columns without regard to case.

Merging a column with an existing column of another type widens the column (chosen): whole
numbers with whole numbers → ``BIGINT`` (``HUGEINT`` if either needs it), numbers with numbers →
``DOUBLE``, ``DATE`` with ``TIMESTAMP`` → ``TIMESTAMP``, anything else → text. A CSV column
without any value takes the existing column's type.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb

from . import store
from .errors import InputError, RefusedError
from .workspace import Workspace, as_workspace

__all__ = [
    "ProfileDelete",
    "ProfileLoad",
    "delete_profiles",
    "load_profiles",
    "load_visitors",
    "profile_columns",
]

log = logging.getLogger("audtools")

PathLike = str | os.PathLike[str]
WorkspaceArg = PathLike | Workspace

#: Columns that are always text, whatever their values look like.
TEXT_COLUMNS = ("profile_id", "email", "mobile_phone")

_VISITOR_ID = "[0-9]{38}"  # RE2: ASCII digits only, as SPEC §3 requires
_INT = r"-?(0|[1-9][0-9]*)"
_DEC = r"-?(0|[1-9][0-9]*)\.[0-9]+"
_ISO_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_ASCII_SPACE = "chr(32) || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)"  # SPEC §3 whitespace
_PARQUET_SUFFIXES = (".parquet", ".pq")
_DUCKDB_ENCODINGS = {"utf-8": "utf-8", "utf-8-sig": "utf-8", "iso8859-1": "latin-1"}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class _FileKind:
    """What a file of one kind must hold and how it is staged (see :func:`_stage`)."""

    table: str  # the temporary table it is copied into
    required: tuple[str, ...]  # columns it must have
    code: str  # the error code when it does not
    what: str  # how messages name it
    only: bool  # stage only the required columns, as text


_PROFILES = _FileKind("_audtools_profiles_in", ("profile_id",), "bad_profiles", "profiles", False)
_VISITORS = _FileKind(
    "_audtools_visitors_in", ("profile_id", "visitor_id"), "bad_visitors", "visitors", True
)
_IDS = _FileKind("_audtools_delete_in", ("profile_id",), "bad_profiles", "profile IDs", True)


@dataclass(frozen=True)
class ProfileLoad:
    """What :func:`load_profiles` or :func:`load_visitors` did.

    Attributes:
        profiles_read: data rows of the profiles file (0 for :func:`load_visitors`).
        profiles_inserted: profiles that did not exist before.
        profiles_updated: existing profiles that got the file's values.
        profiles_total: profiles in the table afterwards.
        columns: the profile columns afterwards, ``profile_id`` first.
        visitors_read: data rows of the visitors file (0 without one).
        visitors_added: new ``(profile_id, visitor_id)`` pairs stored: a pair repeated in the
            file counts once, a pair already stored not at all.
        visitors_rejected: rows refused because their visitor ID is not 38 ASCII digits or their
            profile does not exist (after this call's profiles are loaded).
    """

    profiles_read: int = 0
    profiles_inserted: int = 0
    profiles_updated: int = 0
    profiles_total: int = 0
    columns: list[str] = field(default_factory=list)
    visitors_read: int = 0
    visitors_added: int = 0
    visitors_rejected: int = 0

    def to_json(self) -> dict[str, Any]:
        """The object ``audtools profiles load --json`` prints."""
        data = asdict(self)
        data["columns"] = list(self.columns)
        return data


@dataclass(frozen=True)
class ProfileDelete:
    """What :func:`delete_profiles` did.

    Attributes:
        ids_read: data rows of the IDs file.
        profiles_deleted: profile rows removed.
        visitors_deleted: visitor-ID rows removed.
        memberships_deleted: audience-membership rows removed.
    """

    ids_read: int = 0
    profiles_deleted: int = 0
    visitors_deleted: int = 0
    memberships_deleted: int = 0

    def to_json(self) -> dict[str, Any]:
        """The object ``audtools profiles delete --json`` prints."""
        return asdict(self)


# -- public API -----------------------------------------------------------------------------------


def load_profiles(
    workspace: WorkspaceArg,
    profiles: PathLike,
    *,
    visitors: PathLike | None = None,
    replace: bool = False,
    delimiter: str | None = None,
    encoding: str | None = None,
) -> ProfileLoad:
    """Load profiles (and optionally visitor IDs) into the workspace, in one transaction.

    Profiles are matched by ``profile_id``: a profile in the file gets the file's values for the
    file's columns (an empty field sets null), a new one is inserted, a new column is added, and
    profiles and columns absent from the file are kept. With ``replace=True`` the table becomes
    the file (its columns too, ``profile_id`` first) and the visitor IDs of profiles that no
    longer exist are dropped. Either way the cache of derived IDs is emptied.

    Args:
        workspace: the workspace folder or a :class:`~audtools.workspace.Workspace`.
        profiles: a CSV file (a header row; ``.gz`` allowed) or a Parquet file (``.parquet`` or
            ``.pq``) with a ``profile_id`` column.
        visitors: a CSV (or Parquet) file with ``profile_id`` and ``visitor_id`` columns, loaded
            after the profiles in the same transaction.
        replace: replace every profile instead of updating them.
        delimiter: the CSV column delimiter of both files (default ``,``).
        encoding: the text encoding of both CSV files (default UTF-8; any Python codec name).

    Returns:
        The counts, as :class:`ProfileLoad`.

    Raises:
        InputError: ``bad_input`` when a file cannot be read or decoded; ``bad_profiles`` when
            the profiles have no ``profile_id`` column, a row without a ``profile_id``, or
            duplicate or unnamed columns; ``duplicate_profile_id`` when a ``profile_id`` appears
            twice; ``bad_visitors`` when the visitors file lacks a column. Nothing is written.
        RefusedError: ``bad_encoding`` for an unknown encoding, ``bad_delimiter`` for an empty
            delimiter.
        WorkspaceBusy: when another process holds the workspace past ``lock_timeout``.

    Example:
        >>> load_profiles("ws", "profiles.csv", visitors="visitors.csv").profiles_total  # doctest: +SKIP
        1000
    """
    ws = as_workspace(workspace)
    text = _text_columns(ws)
    with (
        ws.session(purpose="profiles load") as con,
        _dropping(con, _PROFILES.table, _VISITORS.table),
    ):
        staged = _stage(con, Path(profiles), _PROFILES, delimiter, encoding, text)
        _check_profile_ids(con, staged)
        staged_visitors = None
        if visitors is not None:
            staged_visitors = _stage(con, Path(visitors), _VISITORS, delimiter, encoding)
        with store.transaction(con):
            inserted, updated = _merge_profiles(con, staged, replace=replace)
            _invalidate_derived_ids(con)
            v_read = v_added = v_rejected = 0
            if staged_visitors is not None:
                v_read, v_added, v_rejected = _add_visitors(con, staged_visitors)
            total = _count(con, "SELECT count(*) FROM profiles")
            columns = list(profile_columns(con))
    result = ProfileLoad(
        profiles_read=staged.rows,
        profiles_inserted=inserted,
        profiles_updated=updated,
        profiles_total=total,
        columns=columns,
        visitors_read=v_read,
        visitors_added=v_added,
        visitors_rejected=v_rejected,
    )
    log.info(
        "loaded %s: %d profiles read, %d inserted, %d updated, %d in all%s",
        Path(profiles).name,
        result.profiles_read,
        inserted,
        updated,
        total,
        " (replaced)" if replace else "",
    )
    return result


def load_visitors(
    workspace: WorkspaceArg,
    visitors: PathLike,
    *,
    delimiter: str | None = None,
    encoding: str | None = None,
) -> ProfileLoad:
    """Add visitor IDs to existing profiles, in one transaction.

    Rows are ``profile_id,visitor_id`` (a header; other columns are ignored). A row is rejected
    and counted when its visitor ID is not exactly 38 ASCII digits or its profile does not exist.
    A pair already stored, or repeated in the file, is added once.

    Args:
        workspace: the workspace folder or a :class:`~audtools.workspace.Workspace`.
        visitors: a CSV (or Parquet) file with ``profile_id`` and ``visitor_id`` columns.
        delimiter: the CSV column delimiter (default ``,``).
        encoding: the CSV text encoding (default UTF-8).

    Returns:
        A :class:`ProfileLoad` whose ``profiles_*`` read/insert/update counts are 0.

    Raises:
        InputError: ``bad_input`` for an unreadable file, ``bad_visitors`` for a missing column.
        WorkspaceBusy: when another process holds the workspace past ``lock_timeout``.
    """
    ws = as_workspace(workspace)
    with ws.session(purpose="profiles load") as con, _dropping(con, _VISITORS.table):
        staged = _stage(con, Path(visitors), _VISITORS, delimiter, encoding)
        with store.transaction(con):
            v_read, v_added, v_rejected = _add_visitors(con, staged)
            total = _count(con, "SELECT count(*) FROM profiles")
            columns = list(profile_columns(con))
    return ProfileLoad(
        profiles_total=total,
        columns=columns,
        visitors_read=v_read,
        visitors_added=v_added,
        visitors_rejected=v_rejected,
    )


def delete_profiles(workspace: WorkspaceArg, ids: PathLike) -> ProfileDelete:
    """Erase profiles: their rows, visitor IDs, audience memberships and cached derived IDs.

    Everything happens in one transaction. IDs that match no profile are ignored (compare
    ``profiles_deleted`` with ``ids_read``); empty IDs match nothing.

    Args:
        workspace: the workspace folder or a :class:`~audtools.workspace.Workspace`.
        ids: a CSV (or Parquet) file with a ``profile_id`` column (other columns are ignored).

    Returns:
        The counts, as :class:`ProfileDelete`.

    Raises:
        InputError: ``bad_input`` for an unreadable file, ``bad_profiles`` without a
            ``profile_id`` column.
        WorkspaceBusy: when another process holds the workspace past ``lock_timeout``.

    Example:
        >>> delete_profiles("ws", "erase.csv").profiles_deleted  # doctest: +SKIP
        2
    """
    ws = as_workspace(workspace)
    with (
        ws.session(purpose="profiles delete") as con,
        _dropping(con, _IDS.table, "_audtools_delete_ids"),
    ):
        staged = _stage(con, Path(ids), _IDS, None, None)
        pid = staged.column("profile_id")
        with store.transaction(con):
            con.execute(
                f"CREATE TEMP TABLE _audtools_delete_ids AS SELECT DISTINCT {pid} AS profile_id "
                f"FROM {staged.table} WHERE {pid} IS NOT NULL"
            )
            where = "WHERE profile_id IN (SELECT profile_id FROM _audtools_delete_ids)"
            memberships = _count(con, f"DELETE FROM audience_members {where}")
            visitors = _count(con, f"DELETE FROM visitors {where}")
            con.execute(f"DELETE FROM derived_ids {where}")
            deleted = _count(con, f"DELETE FROM profiles {where}")
    result = ProfileDelete(
        ids_read=staged.rows,
        profiles_deleted=deleted,
        visitors_deleted=visitors,
        memberships_deleted=memberships,
    )
    log.info(
        "deleted %d profiles (%d IDs read), %d visitor IDs, %d audience memberships",
        deleted,
        staged.rows,
        visitors,
        memberships,
    )
    return result


def profile_columns(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The columns of the ``profiles`` table, in order, with their DuckDB types.

    Args:
        con: an open connection to the workspace database.

    Returns:
        ``{name: type}``, e.g. ``{"profile_id": "VARCHAR", "age": "BIGINT"}``.
    """
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'main' "
        "AND table_name = 'profiles' ORDER BY column_index"
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows}


# -- reading files --------------------------------------------------------------------------------


@dataclass
class _Staged:
    """A file copied into a temporary table whose columns are ``c0``, ``c1``, ...

    ``types[i]`` is the column's type in the file: Parquet's type (text columns made VARCHAR), or
    for CSV the inferred type, ``None`` when the column has no value at all. A CSV stage holds
    the text as written; casting to ``types[i]`` always succeeds.
    """

    path: Path
    kind: Literal["csv", "parquet"]
    table: str
    names: list[str]
    types: list[str | None]
    rows: int

    def index(self, name: str) -> int | None:
        """The position of column ``name`` (any case), or ``None``."""
        lowered = [n.lower() for n in self.names]
        return lowered.index(name.lower()) if name.lower() in lowered else None

    def column(self, name: str) -> str:
        """The staged column holding ``name``, which must exist."""
        i = self.index(name)
        assert i is not None
        return f"c{i}"

    def row_label(self, rowid: int) -> str:
        """How a user finds row ``rowid`` (0-based data row) in the file."""
        return str(rowid + 2) if self.kind == "csv" else str(rowid + 1)


def _stage(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    kind: _FileKind,
    delimiter: str | None,
    encoding: str | None,
    text: set[str] | None = None,
) -> _Staged:
    """Copy ``path`` into ``kind.table`` (see :class:`_Staged`), checking its header.

    ``text`` names (in lower case) the columns that are always text; other CSV columns are typed
    from their values, unless ``kind.only``, which stages just the required columns, as text.
    """
    _check_readable(path)
    text = set(text or ()) | set(kind.required if kind.only else ())
    fmt: Literal["csv", "parquet"] = (
        "parquet" if path.suffix.lower() in _PARQUET_SUFFIXES else "csv"
    )
    with tempfile.TemporaryDirectory(prefix="audtools-") as tmp:
        if fmt == "parquet":
            source = f"read_parquet({_literal(str(path))})"
            described = _read(con, path, f"DESCRIBE SELECT * FROM {source}")
            names = [str(row[0]) for row in described]
            _check_names(path, names, kind)
            keep = _kept(names, kind)
            types: list[str | None] = [str(described[i][1]) for i in keep]
            selects = []
            for new, i in enumerate(keep):
                expr = _ident(names[i])
                if names[i].strip().lower() in text:
                    expr, types[new] = f"CAST({expr} AS VARCHAR)", "VARCHAR"
                selects.append(f"{expr} AS c{new}")
        else:
            csv_path, duck_encoding = _csv_input(path, encoding, Path(tmp))
            options = _csv_options(delimiter, duck_encoding)
            csv_file = _literal(str(csv_path))
            first = f"SELECT * FROM read_csv({csv_file}, header = false, {options}) LIMIT 1"
            header = _read(con, path, first)
            if not header:
                raise InputError(
                    f"{path} is empty: it has no header row. Give a file whose first row names "
                    "the columns.",
                    code=kind.code,
                    file=str(path),
                )
            names = ["" if v is None else str(v) for v in header[0]]
            _check_names(path, names, kind)
            # Positional names: DuckDB's own renaming of odd headers does not matter.
            positional = ", ".join(_literal(f"c{i}") for i in range(len(names)))
            source = f"read_csv({csv_file}, header = true, {options}, names = [{positional}])"
            keep = _kept(names, kind)
            selects = [f"c{i} AS c{new}" for new, i in enumerate(keep)]
            types = []
        select = f"SELECT {', '.join(selects)} FROM {source}"
        _read(con, path, f"CREATE OR REPLACE TEMP TABLE {kind.table} AS {select}")
    clean = [names[i].strip() for i in keep]
    rows = _count(con, f"SELECT count(*) FROM {kind.table}")
    if fmt == "csv":
        types = _infer_types(con, kind.table, clean, text)
    return _Staged(path=path, kind=fmt, table=kind.table, names=clean, types=types, rows=rows)


def _kept(names: list[str], kind: _FileKind) -> list[int]:
    if not kind.only:
        return list(range(len(names)))
    lowered = [n.strip().lower() for n in names]
    return [lowered.index(r) for r in kind.required]


def _check_readable(path: Path) -> None:
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise InputError(
            f"Cannot read {path}: {exc.strerror or exc}. Check the path and its permissions.",
            file=str(path),
        ) from None


def _check_names(path: Path, names: list[str], kind: _FileKind) -> None:
    required, code = kind.required, kind.code
    seen: dict[str, int] = {}
    for i, raw in enumerate(names, 1):
        name = raw.strip()
        if not name:
            raise InputError(
                f"{path}: column {i} of the header has no name. Name every column (or remove the "
                "empty one, often a trailing delimiter) and load again.",
                code=code,
                file=str(path),
            )
        if name.lower() in seen:
            raise InputError(
                f"{path}: the column '{name}' appears twice in the header (columns "
                f"{seen[name.lower()]} and {i}; names are compared without regard to case). "
                "Rename or remove one and load again.",
                code=code,
                file=str(path),
            )
        seen[name.lower()] = i
    missing = [r for r in required if r not in seen]
    if missing:
        found = ", ".join(n.strip() for n in names[:10]) + (", ..." if len(names) > 10 else "")
        raise InputError(
            f"{path} has no {' or '.join(missing)} column (its columns: {found}). A {kind.what} file "
            f"needs the column{'s' if len(required) > 1 else ''} {', '.join(required)}; check the "
            "header and the delimiter.",
            code=code,
            file=str(path),
        )


def _csv_input(path: Path, encoding: str | None, tmp: Path) -> tuple[Path, str]:
    """The file DuckDB reads and its encoding: the file itself, or a UTF-8 copy of it."""
    if encoding is None:
        return path, "utf-8"
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise RefusedError(
            f"Unknown encoding '{encoding}'. Give a Python codec name such as utf-8, latin-1 or "
            "cp1252.",
            code="bad_encoding",
        ) from None
    if name in _DUCKDB_ENCODINGS and not path.name.lower().endswith(".gz"):
        return path, _DUCKDB_ENCODINGS[name]
    # DuckDB reads UTF-8 and Latin-1 itself; anything else is transcoded, streaming.
    copy = tmp / "input.csv"
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    decoder = codecs.getincrementaldecoder(name)(errors="strict")
    offset = 0
    try:
        with opener(path, "rb") as src, open(copy, "w", encoding="utf-8", newline="") as dst:
            while chunk := src.read(_CHUNK):
                try:
                    dst.write(decoder.decode(chunk))
                except UnicodeDecodeError as exc:
                    raise InputError(
                        f"{path} is not valid {encoding} (byte {offset + exc.start}). "
                        "Give the file's real encoding.",
                        file=str(path),
                    ) from None
                offset += len(chunk)
            dst.write(decoder.decode(b"", final=True))
    except UnicodeDecodeError:
        raise InputError(
            f"{path} is not valid {encoding} (it ends inside a character). "
            "Give the file's real encoding.",
            file=str(path),
        ) from None
    except (OSError, EOFError) as exc:
        raise InputError(f"Cannot read {path}: {exc}.", file=str(path)) from None
    return copy, "utf-8"


def _csv_options(delimiter: str | None, encoding: str) -> str:
    if delimiter is not None and not delimiter:
        raise RefusedError(
            "The delimiter is empty; give one character such as ';'.", code="bad_delimiter"
        )
    # Fixed dialect rather than sniffed: RFC 4180 quoting, no comment lines, no skipped rows,
    # every row with as many fields as the header.
    return (
        f"delim = {_literal(delimiter or ',')}, quote = '\"', escape = '\"', comment = '', "
        f"skip = 0, all_varchar = true, strict_mode = true, null_padding = false, "
        f"encoding = {_literal(encoding)}"
    )


def _infer_types(
    con: duckdb.DuckDBPyConnection, table: str, names: list[str], text: set[str]
) -> list[str | None]:
    """Type each CSV column from all its values (see the module docstring)."""
    types: list[str | None] = ["VARCHAR"] * len(names)
    probe = [i for i, n in enumerate(names) if n.lower() not in text]
    if not probe:
        return types
    parts = []
    for i in probe:
        c = f"c{i}"
        is_int = f"(regexp_full_match({c}, '{_INT}') AND TRY_CAST({c} AS BIGINT) IS NOT NULL)"
        parts += [
            f"count({c})",
            f"bool_and({is_int})",
            f"bool_and({is_int} OR regexp_full_match({c}, '{_DEC}'))",
            f"bool_and(regexp_full_match({c}, '{_ISO_DATE}') AND TRY_CAST({c} AS DATE) IS NOT NULL)",
        ]
    row = con.execute(f"SELECT {', '.join(parts)} FROM {table}").fetchone()
    assert row is not None
    for k, i in enumerate(probe):
        values, integers, numbers, dates = row[4 * k : 4 * k + 4]
        if not values:
            types[i] = None
        elif integers:
            types[i] = "BIGINT"
        elif numbers:
            types[i] = "DOUBLE"
        elif dates:
            types[i] = "DATE"
    return types


def _read(con: duckdb.DuckDBPyConnection, path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Run a statement that reads ``path``; DuckDB's complaints become :class:`InputError`."""
    try:
        return con.execute(sql).fetchall()
    except duckdb.Error as exc:
        raise _input_error(path, exc) from None


def _input_error(path: Path, exc: duckdb.Error) -> InputError:
    """One line saying why DuckDB could not read ``path`` and what to do."""
    text = str(exc)
    line = re.search(r"Line: (\d+)", text)
    where = f" (line {line.group(1)})" if line else ""
    fields = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
    if "Invalid unicode" in text or "not utf-8 encoded" in text:
        reason = "it is not valid UTF-8"
        advice = "Give its encoding (--encoding, e.g. latin-1 or cp1252)."
    elif fields or "not possible to automatically detect the CSV" in text:
        counts = f" ({fields.group(2)} where the header has {fields.group(1)})" if fields else ""
        reason = f"a row does not have as many fields as the header{counts}"
        advice = "Check the delimiter (--delimiter) and the quoting of the rows."
    else:
        keep = [
            ln.strip()
            for ln in text.splitlines()[:4]
            if ln.strip()
            and not ln.strip().startswith(("Original Line", "Possible", "LINE ", "^", "file ="))
            and "Line:" not in ln
        ]
        reason = re.sub(r"^[A-Za-z ]*Error: ", "", " ".join(keep)).rstrip(".")
        advice = (
            "Check that it is a CSV file with a header row (or Parquet, named .parquet or .pq), "
            "its delimiter and its encoding."
        )
    return InputError(f"Cannot read {path}{where}: {reason}. {advice}", file=str(path))


# -- writing --------------------------------------------------------------------------------------


def _check_profile_ids(con: duckdb.DuckDBPyConnection, staged: _Staged) -> None:
    """Refuse rows without a ``profile_id`` and a ``profile_id`` that appears twice."""
    pid = staged.column("profile_id")
    blank = con.execute(
        f"SELECT count(*), min(rowid) FROM {staged.table} "
        f"WHERE {pid} IS NULL OR trim({pid}, {_ASCII_SPACE}) = ''"
    ).fetchone()
    assert blank is not None
    if blank[0]:
        raise InputError(
            f"{staged.path}: {blank[0]} row{'s have' if blank[0] > 1 else ' has'} no profile_id "
            f"(first: row {staged.row_label(blank[1])}{_row_note(staged)}). Give every row a "
            "profile_id and load again.",
            code="bad_profiles",
            file=str(staged.path),
        )
    dup = con.execute(
        f"SELECT count(*), arg_min(id, first), sum(n) FROM "
        f"(SELECT {pid} AS id, min(rowid) AS first, count(*) AS n FROM {staged.table} "
        f"GROUP BY {pid} HAVING count(*) > 1)"
    ).fetchone()
    assert dup is not None
    if dup[0]:
        example = dup[1]
        rows = [
            staged.row_label(r[0])
            for r in con.execute(
                f"SELECT rowid FROM {staged.table} WHERE {pid} = ? ORDER BY rowid LIMIT 3",
                [example],
            ).fetchall()
        ]
        n_ids = int(dup[0])
        raise InputError(
            f"{staged.path}: {n_ids} profile_id{'s appear' if n_ids > 1 else ' appears'} more "
            f"than once ({int(dup[2])} rows in all); for example '{example}' on rows "
            f"{_and(rows)}{_row_note(staged)}. Keep one row per profile_id and load again; "
            "nothing was loaded.",
            code="duplicate_profile_id",
            file=str(staged.path),
            ids=n_ids,
            example=example,
            rows=rows,
        )


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _row_note(staged: _Staged) -> str:
    return "; the header is row 1" if staged.kind == "csv" else ""


def _merge_profiles(
    con: duckdb.DuckDBPyConnection, staged: _Staged, *, replace: bool
) -> tuple[int, int]:
    """Merge (or replace) the staged profiles; returns (inserted, updated)."""
    pid = staged.column("profile_id")
    updated = _count(
        con,
        f"SELECT count(*) FROM {staged.table} WHERE {pid} IN "
        "(SELECT profile_id FROM profiles WHERE profile_id IS NOT NULL)",
    )
    inserted = staged.rows - updated
    others = [i for i, n in enumerate(staged.names) if n.lower() != "profile_id"]

    if replace:
        selects = [f"{pid} AS profile_id"]
        for i in others:
            kind = staged.types[i] or "VARCHAR"
            selects.append(f"{_cast(f'c{i}', kind, staged)} AS {_ident(staged.names[i])}")
        con.execute(
            f"CREATE OR REPLACE TABLE profiles AS SELECT {', '.join(selects)} FROM {staged.table}"
        )
        dropped = _count(
            con,
            "DELETE FROM visitors WHERE profile_id IS NULL OR profile_id NOT IN "
            "(SELECT profile_id FROM profiles WHERE profile_id IS NOT NULL)",
        )
        if dropped:
            log.info("dropped %d visitor IDs of profiles that no longer exist", dropped)
        return inserted, updated

    existing = profile_columns(con)
    by_lower = {name.lower(): name for name in existing}
    targets: list[tuple[str, str]] = []  # (table column, value expression)
    for i in others:
        name = staged.names[i]
        found = by_lower.get(name.lower())
        if found is None:
            kind = staged.types[i] or "VARCHAR"
            con.execute(f"ALTER TABLE profiles ADD COLUMN {_ident(name)} {kind}")
            log.info("added the profile column %s (%s)", name, kind)
            column = name
        else:
            column = found
            old = existing[found]
            kind = _widen(old, staged.types[i] or old)
            if kind != old:
                con.execute(f"ALTER TABLE profiles ALTER COLUMN {_ident(found)} TYPE {kind}")
                log.warning(
                    "the profile column %s was %s; it is now %s to hold the values of %s",
                    found,
                    old,
                    kind,
                    staged.path.name,
                )
        targets.append((column, _cast(f"c{i}", kind, staged)))

    source = ", ".join([f"{pid} AS profile_id"] + [f"{e} AS {_ident(c)}" for c, e in targets])
    matched = ""
    if targets:
        sets = ", ".join(f"{_ident(c)} = s.{_ident(c)}" for c, _ in targets)
        matched = f"WHEN MATCHED THEN UPDATE SET {sets} "
    columns = ", ".join(["profile_id"] + [_ident(c) for c, _ in targets])
    values = ", ".join(["s.profile_id"] + [f"s.{_ident(c)}" for c, _ in targets])
    con.execute(
        f"MERGE INTO profiles AS p USING (SELECT {source} FROM {staged.table}) AS s "
        f"ON p.profile_id = s.profile_id {matched}"
        f"WHEN NOT MATCHED THEN INSERT ({columns}) VALUES ({values})"
    )
    return inserted, updated


def _invalidate_derived_ids(con: duckdb.DuckDBPyConnection) -> None:
    """Empty the derived-ID cache: it is rebuilt from the new profiles when next needed."""
    con.execute("DELETE FROM derived_ids")
    con.execute("DELETE FROM derived_state")


def _add_visitors(con: duckdb.DuckDBPyConnection, staged: _Staged) -> tuple[int, int, int]:
    """Add the staged visitor rows; returns (read, added, rejected)."""
    pid, vid, table = staged.column("profile_id"), staged.column("visitor_id"), staged.table
    good = f"coalesce(regexp_full_match({vid}, '{_VISITOR_ID}'), false)"
    known = f"EXISTS (SELECT 1 FROM profiles AS p WHERE p.profile_id = {table}.{pid})"
    row = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE NOT {good}), "
        f"count(*) FILTER (WHERE {good} AND NOT {known}) FROM {table}"
    ).fetchone()
    assert row is not None
    read, bad_ids, unknown = (int(v) for v in row)
    added = _count(
        con,
        f"INSERT INTO visitors (profile_id, visitor_id) "
        f"SELECT n.profile_id, n.visitor_id FROM ("
        f"SELECT DISTINCT {pid} AS profile_id, {vid} AS visitor_id FROM {table} "
        f"WHERE {good} AND {known}) AS n "
        "WHERE NOT EXISTS (SELECT 1 FROM visitors AS v "
        "WHERE v.profile_id = n.profile_id AND v.visitor_id = n.visitor_id)",
    )
    rejected = bad_ids + unknown
    log.info(
        "visitors from %s: %d read, %d added, %d rejected (%d not 38 digits, %d unknown profile)",
        staged.path.name,
        read,
        added,
        rejected,
        bad_ids,
        unknown,
    )
    return read, added, rejected


# -- helpers --------------------------------------------------------------------------------------

_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"}
_BIG_INTEGERS = {"HUGEINT", "UBIGINT", "UHUGEINT"}
_FLOATS = {"FLOAT", "DOUBLE"}
_TIMESTAMPS = {"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS"}


def _widen(old: str, new: str) -> str:
    """A type that holds the values of both ``old`` and ``new`` (see the module docstring)."""
    if old == new:
        return old
    pair = {old, new}
    if pair <= _INTEGERS | _BIG_INTEGERS:
        return "HUGEINT" if pair & _BIG_INTEGERS else "BIGINT"
    if all(t in _INTEGERS | _BIG_INTEGERS | _FLOATS or t.startswith("DECIMAL") for t in pair):
        return "DOUBLE"
    if pair <= {"DATE"} | _TIMESTAMPS:
        return "TIMESTAMP"
    return "VARCHAR"


def _cast(column: str, kind: str, staged: _Staged) -> str:
    """``column`` as ``kind``; CSV text kept as written when ``kind`` is text."""
    if staged.kind == "csv":
        # The stage holds the text as written: a number kept as text keeps its spelling.
        return column if kind == "VARCHAR" else f"CAST({column} AS {kind})"
    return column if kind == staged.types[int(column[1:])] else f"CAST({column} AS {kind})"


def _text_columns(ws: Workspace) -> set[str]:
    keys = {s.reconciliation_key for s in ws.config.data_sources.values() if s.reconciliation_key}
    return {name.strip().lower() for name in (*TEXT_COLUMNS, *keys)}


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@contextlib.contextmanager
def _dropping(con: duckdb.DuckDBPyConnection, *tables: str) -> Iterator[None]:
    """Drop the temporary tables when the block ends (the connection may be kept by a caller)."""
    try:
        yield
    finally:
        for table in tables:
            with contextlib.suppress(duckdb.Error):
                con.execute(f"DROP TABLE IF EXISTS temp.{table}")
