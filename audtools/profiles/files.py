"""Profile files, CSV or Parquet, copied into a temporary table and typed (SPEC §7).

:func:`stage` checks a file's header and copies it, in one DuckDB statement, into a temporary table
whose columns are ``c0``, ``c1``, ... (:class:`Staged`); :mod:`audtools.profiles.loading` merges it from
there. CSV is read in a fixed dialect (RFC 4180 quoting, a header row, as many fields in every row
as in the header; ``.gz`` allowed; any Python encoding, transcoded when DuckDB cannot read it).

Typing. The always-text columns the caller names (``profile_id``, ``email``, ``mobile_phone`` and
every data source's ``reconciliation_key``) are text, as written (leading zeros kept; a Parquet
number in such a column becomes its decimal text). Other Parquet columns keep their types. Other
CSV columns are typed from *all* their values, not a sample:

- ``BIGINT`` when every value is a whole number written without a sign other than ``-`` and
  without leading zeros (``0012`` and ``+33…`` stay text: codes and phone numbers) that fits;
- ``DOUBLE`` when every value is such a number or one with a decimal point (``-12.50``);
- ``DATE`` when every value is an ISO date (``2024-01-31``);
- text otherwise, and for a column without any value.

Values are taken as written: no trimming, and an empty field is null. Header names are trimmed of
surrounding whitespace and matched with existing columns without regard to case.

Merging a column with an existing column of another type widens the column (chosen,
:func:`widen`): whole numbers with whole numbers → ``BIGINT`` (``HUGEINT`` if either needs it),
numbers with numbers → ``DOUBLE``, ``DATE`` with ``TIMESTAMP`` → ``TIMESTAMP``, anything else →
text. A CSV column without any value takes the existing column's type.
"""

from __future__ import annotations

import codecs
import gzip
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb

from audtools.errors import InputError, RefusedError
from audtools.workspace.database import sql_identifier, sql_string

__all__ = ["FileKind", "Staged", "cast", "stage", "widen"]

_INT = r"-?(0|[1-9][0-9]*)"
_DEC = r"-?(0|[1-9][0-9]*)\.[0-9]+"
_ISO_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_PARQUET_SUFFIXES = (".parquet", ".pq")
_DUCKDB_ENCODINGS = {"utf-8": "utf-8", "utf-8-sig": "utf-8", "iso8859-1": "latin-1"}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileKind:
    """What a file of one kind must hold and how it is staged (see :func:`stage`).

    Attributes:
        table: the temporary table it is copied into.
        required: the columns it must have.
        code: the error code when it does not.
        what: how messages name it.
        only: stage only the required columns, as text.
        convert: ``(column, SQL, type)``: the required ``column`` is staged as the SQL (each
            ``{}`` in it is the column's text), computed while the file is read.
    """

    table: str
    required: tuple[str, ...]
    code: str
    what: str
    only: bool
    convert: tuple[str, str, str] | None = None


@dataclass
class Staged:
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


def stage(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    kind: FileKind,
    delimiter: str | None,
    encoding: str | None,
    text: set[str] | None = None,
) -> Staged:
    """Copy ``path`` into ``kind.table`` (see :class:`Staged`), checking its header.

    ``text`` names (in lower case) the columns that are always text; other CSV columns are typed
    from their values, unless ``kind.only``, which stages just the required columns, as text.

    Args:
        con: the session's connection (the temporary table lives there).
        path: a CSV file (``.gz`` allowed) or a Parquet file (``.parquet`` or ``.pq``).
        kind: what the file must hold.
        delimiter: the CSV delimiter (default ``,``).
        encoding: the CSV encoding, a Python codec name (default UTF-8).
        text: the columns that are always text, in lower case.

    Returns:
        The :class:`Staged` file.

    Raises:
        InputError: ``bad_input`` when the file cannot be read or decoded, ``kind.code`` for a
            missing, unnamed or repeated column or an empty file.
        RefusedError: ``bad_encoding`` for an unknown encoding, ``bad_delimiter`` for an empty
            delimiter.
    """
    _check_readable(path)
    text = set(text or ()) | set(kind.required if kind.only else ())
    fmt: Literal["csv", "parquet"] = (
        "parquet" if path.suffix.lower() in _PARQUET_SUFFIXES else "csv"
    )
    with tempfile.TemporaryDirectory(prefix="audtools-") as tmp:
        if fmt == "parquet":
            source = f"read_parquet({sql_string(str(path))})"
            described = _read(con, path, f"DESCRIBE SELECT * FROM {source}")
            names = [str(row[0]) for row in described]
            _check_names(path, names, kind)
            keep = _kept(names, kind)
            types: list[str | None] = [str(described[i][1]) for i in keep]
            selects = []
            for new, i in enumerate(keep):
                expr = sql_identifier(names[i])
                if names[i].strip().lower() in text:
                    expr, types[new] = f"CAST({expr} AS VARCHAR)", "VARCHAR"
                selects.append(f"{expr} AS c{new}")
        else:
            csv_path, duck_encoding = _csv_input(path, encoding, Path(tmp))
            options = _csv_options(delimiter, duck_encoding)
            csv_file = sql_string(str(csv_path))
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
            positional = ", ".join(sql_string(f"c{i}") for i in range(len(names)))
            source = f"read_csv({csv_file}, header = true, {options}, names = [{positional}])"
            keep = _kept(names, kind)
            selects = [f"c{i} AS c{new}" for new, i in enumerate(keep)]
            types = []
        if kind.convert is not None:
            _convert(selects, [names[i].strip().lower() for i in keep], kind.convert)
        select = f"SELECT {', '.join(selects)} FROM {source}"
        # CREATE TABLE AS answers with the rows it wrote.
        counted = _read(con, path, f"CREATE OR REPLACE TEMP TABLE {kind.table} AS {select}")
    rows = int(counted[0][0]) if counted and counted[0][0] is not None else 0
    clean = [names[i].strip() for i in keep]
    if fmt == "csv":
        types = _infer_types(con, kind.table, clean, text)
    if kind.convert is not None:
        types[[n.lower() for n in clean].index(kind.convert[0])] = kind.convert[2]
    return Staged(path=path, kind=fmt, table=kind.table, names=clean, types=types, rows=rows)


def _convert(selects: list[str], names: list[str], convert: tuple[str, str, str]) -> None:
    """Stage the column ``convert`` names as its SQL instead of its text (``selects`` changed)."""
    at = names.index(convert[0])
    text, alias = selects[at].rsplit(" AS ", 1)
    selects[at] = f"{convert[1].replace('{}', text)} AS {alias}"


def _kept(names: list[str], kind: FileKind) -> list[int]:
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


def _check_names(path: Path, names: list[str], kind: FileKind) -> None:
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
        f"delim = {sql_string(delimiter or ',')}, quote = '\"', escape = '\"', comment = '', "
        f"skip = 0, all_varchar = true, strict_mode = true, null_padding = false, "
        f"encoding = {sql_string(encoding)}"
    )


def _infer_types(
    con: duckdb.DuckDBPyConnection, table: str, names: list[str], text: set[str]
) -> list[str | None]:
    """Type each CSV column from all its values (see the module docstring).

    Each column is tried as integers, then numbers, then dates; a try stops at the first value
    that fails it (a text column costs a few rows), so only the column's own type reads every
    value. Empty fields are NULL and say nothing about the type: only values are tested.
    """
    types: list[str | None] = ["VARCHAR"] * len(names)
    probe = [i for i, n in enumerate(names) if n.lower() not in text]
    if not probe:
        return types
    row = con.execute(f"SELECT {', '.join(f'count(c{i})' for i in probe)} FROM {table}").fetchone()
    assert row is not None
    for values, i in zip(row, probe, strict=True):
        if not values:
            types[i] = None
            continue
        for kind, test in _type_tests(f"c{i}"):
            fails = con.execute(
                f"SELECT 1 FROM {table} WHERE c{i} IS NOT NULL AND NOT ({test}) LIMIT 1"
            ).fetchall()
            if not fails:
                types[i] = kind
                break
    return types


def _type_tests(c: str) -> list[tuple[str, str]]:
    """``(type, SQL true when the value fits it)`` for column ``c``, narrowest type first."""
    is_int = f"(regexp_full_match({c}, '{_INT}') AND TRY_CAST({c} AS BIGINT) IS NOT NULL)"
    return [
        ("BIGINT", is_int),
        ("DOUBLE", f"{is_int} OR regexp_full_match({c}, '{_DEC}')"),
        ("DATE", f"regexp_full_match({c}, '{_ISO_DATE}') AND TRY_CAST({c} AS DATE) IS NOT NULL"),
    ]


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


# -- typing on merge ------------------------------------------------------------------------------

_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"}
_BIG_INTEGERS = {"HUGEINT", "UBIGINT", "UHUGEINT"}
_FLOATS = {"FLOAT", "DOUBLE"}
_TIMESTAMPS = {"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS"}


def widen(old: str, new: str) -> str:
    """A type that holds the values of both ``old`` and ``new`` (see the module docstring).

    Example:
        >>> widen("BIGINT", "DOUBLE")
        'DOUBLE'
    """
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


def cast(column: str, kind: str, staged: Staged) -> str:
    """``column`` as ``kind``; CSV text kept as written when ``kind`` is text.

    Args:
        column: a staged column, ``c0``, ``c1``, ...
        kind: the DuckDB type wanted.
        staged: the stage it belongs to.

    Returns:
        A SQL expression.
    """
    if staged.kind == "csv":
        # The stage holds the text as written: a number kept as text keeps its spelling.
        return column if kind == "VARCHAR" else f"CAST({column} AS {kind})"
    return column if kind == staged.types[int(column[1:])] else f"CAST({column} AS {kind})"
