"""Tests of audtools.formats.outbound: batch file names, .info manifests and rows (SPEC 4.1, 4.2)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audtools.errors import AudtoolsError, InputError
from audtools.formats.outbound import (
    REJECT_REASONS,
    InfoEntry,
    OutboundName,
    OutboundReader,
    check_entry,
    count_newlines,
    file_md5,
    info_name,
    parse_name,
    read_info,
)
from audtools.formats.outbound_rows import PAIRS_KEYS_SCHEMA

DATA = Path(__file__).parent / "data" / "outbound"
SHAPES = DATA / "ftp_46390_14016_iter_1486140844000.sync"
CRLF = DATA / "S3_46390_14016_my_alias_full_1486140844000001.sync"
GZ_PART = DATA / "ftp_46390_14016_iter_1486140844000-1.sync.gz"
GZ_CORRUPT = DATA / "ftp_46390_14016_iter_1486140844000-2.sync.gz"
EMAILS = DATA / "http_1_22222_emails_iter_1486140844.sync"
HASHES = DATA / "ftp_1_33333_hashes_iter_1486140846000.sync"
REJECTS = DATA / "ftp_46390_14016_full_1486140845000.sync"
INFO_QUOTED = DATA / "ftp_46390_14016_iter_1486140844000.info"
INFO_UNQUOTED = DATA / "S3_46390_14016_my_alias_full_1486140844000.info"


def V(digit: str) -> str:
    """A made-up visitor ID: one digit 38 times."""
    return digit * 38


def read(
    path: Path | str, *, simple: bool = True, **kwargs: object
) -> tuple[list, list, OutboundReader]:
    """Read a whole file: (pairs as tuples, rejects as tuples, the reader)."""
    reader = OutboundReader(path, **kwargs)  # type: ignore[arg-type]
    reader._simple = simple
    chunks = list(reader)
    for chunk in chunks:
        assert chunk.rows > 0
        assert chunk.pairs.schema.equals(
            pa.schema(
                [("line", pa.int64()), ("id", pa.string()), ("sid", pa.int64()), ("op", pa.int8())]
            )
        )
        assert chunk.rejects.schema.equals(
            pa.schema([("line", pa.int64()), ("reason", pa.string())])
        )
    pairs = [tuple(r.values()) for c in chunks for r in c.pairs.to_pylist()]
    rejects = [tuple(r.values()) for c in chunks for r in c.rejects.to_pylist()]
    assert sum(c.rows for c in chunks) == reader.rows_total
    assert len(rejects) == reader.rejected_total
    return pairs, rejects, reader


both_parsers = pytest.mark.parametrize("simple", [True, False], ids=["numpy", "arrow"])


# ---------------------------------------------------------------------------------------------
# Names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "ftp_46390_14016_iter_1486140844000.sync",
            (
                "ftp",
                46390,
                14016,
                None,
                "iter",
                1486140844000,
                None,
                "ftp_46390_14016_iter_1486140844000",
                False,
            ),
        ),
        (
            "ftp_46390_14016_iter_1486140844000001.sync",
            (
                "ftp",
                46390,
                14016,
                None,
                "iter",
                1486140844000,
                1,
                "ftp_46390_14016_iter_1486140844000",
                False,
            ),
        ),
        (
            "ftp_46390_14016_iter_1486140844000-1.sync.gz",
            (
                "ftp",
                46390,
                14016,
                None,
                "iter",
                1486140844000,
                1,
                "ftp_46390_14016_iter_1486140844000",
                True,
            ),
        ),
        (
            "S3_1_22_full_1486140843-12.sync",
            ("s3", 1, 22, None, "full", 1486140843000, 12, "S3_1_22_full_1486140843", False),
        ),
        (
            "Http_7_8_my_alias_full_1486140843.sync.gz",
            (
                "http",
                7,
                8,
                "my_alias",
                "full",
                1486140843000,
                None,
                "Http_7_8_my_alias_full_1486140843",
                True,
            ),
        ),
        (
            "HTTP_7_8_a_full_b_iter_1486140844000123456.sync",
            (
                "http",
                7,
                8,
                "a_full_b",
                "iter",
                1486140844000,
                123456,
                "HTTP_7_8_a_full_b_iter_1486140844000",
                False,
            ),
        ),
        (
            "s3_7_8_x_iter_1486140844000_full_1486140845000.SYNC.GZ",
            (
                "s3",
                7,
                8,
                "x_iter_1486140844000",
                "full",
                1486140845000,
                None,
                "s3_7_8_x_iter_1486140844000_full_1486140845000",
                True,
            ),
        ),
    ],
)
def test_parse_name(name: str, expected: tuple) -> None:
    parsed = parse_name(name)
    assert parsed is not None
    assert parsed.name == name
    got = (
        parsed.sync_type,
        parsed.destination_id,
        parsed.master_dpid,
        parsed.alias,
        parsed.mode,
        parsed.timestamp_ms,
        parsed.split,
        parsed.root,
        parsed.gzip,
    )
    assert got == expected
    assert parsed.info_name == info_name(parsed.root) == parsed.root + ".info"


def test_parts_share_their_root() -> None:
    names = [
        "ftp_46390_14016_iter_1486140844000001.sync",
        "ftp_46390_14016_iter_1486140844000-1.sync.gz",
        "ftp_46390_14016_iter_1486140844000.sync",
    ]
    roots = {parse_name(n).root for n in names}  # type: ignore[union-attr]
    assert roots == {"ftp_46390_14016_iter_1486140844000"}


def test_name_is_frozen() -> None:
    parsed = parse_name("ftp_1_2_iter_1486140844000.sync")
    assert isinstance(parsed, OutboundName)
    with pytest.raises(AttributeError):
        parsed.split = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "name",
    [
        "ftp_46390_14016_iter_1486140844000.info",
        "catalog.json",
        "",
        "ftp_46390_14016_iter_1486140844000.sync.gz.part",
        "ftp_46390_14016_iter_1486140844000.txt",
        "sftp_46390_14016_iter_1486140844000.sync",
        "ftp_46390_14016_delta_1486140844000.sync",
        "ftp_46390_14016_1486140844000.sync",
        "ftp_46390_iter_1486140844000.sync",
        "ftp_x_14016_iter_1486140844000.sync",
        "ftp_46390_14016_iter_148614084400.sync",  # 12 digits
        "ftp_46390_14016_iter_14861408440.sync",  # 11 digits
        "ftp_46390_14016_iter_14861408440001.sync",  # 13 + 1 digit split
        "ftp_46390_14016_iter_148614084400001.sync",  # 13 + 2 digit split
        "ftp_46390_14016_iter_1486140844000-.sync",
        "ftp_46390_14016_iter_1486140844000-a.sync",
        "ftp_46390_14016_iter_1486140844000001-1.sync",  # both split styles
        "ftp_46390_14016_ITER_1486140844000.sync",
        "ftp_46390_14016__iter_1486140844000.sync",  # empty alias
        "ftp_46390_14016_iter_1486140844000.sync\n",
        "ftp_46390_14016_iter_\uff11486140844000.sync",  # a fullwidth digit
        "dir/ftp_46390_14016_iter_1486140844000.sync" + "x",
        # SPEC §4.1: PID_ALIAS holds no '.', '/' or '-' (it was read before issue 12).
        "ftp_7_8_alias.with.dots_iter_1486140844000-0.sync",
    ],
)
def test_parse_name_rejects(name: str) -> None:
    assert parse_name(name) is None


# ---------------------------------------------------------------------------------------------
# Rows


@both_parsers
def test_row_shapes(simple: bool) -> None:
    pairs, rejects, reader = read(SHAPES, id_rule="visitor_id", simple=simple)
    assert rejects == []
    assert pairs == [
        (1, V("1"), 25, 1),
        (1, V("1"), 28, 1),
        (2, V("2"), 25, 1),
        (2, V("2"), 28, 1),
        (4, V("3"), 24, 1),
        (4, V("3"), 26, 1),
        (4, V("3"), 30, 0),
        (5, V("4"), 25, 0),
        (5, V("4"), 28, 0),
        (6, V("5"), 24, 1),
        (6, V("5"), 26, 1),
        (6, V("5"), 27, 1),
        (7, V("6"), 24, 1),
        (7, V("6"), 26, 1),
        (7, V("6"), 30, 0),
        (10, "0" * 37 + "1", 999999999999999999, 1),
    ]
    assert (reader.rows_total, reader.rejected_total, reader.newline_count) == (7, 0, 12)


@both_parsers
def test_bom_crlf_and_lone_cr(simple: bool) -> None:
    pairs, rejects, reader = read(CRLF, id_rule="visitor_id", simple=simple)
    assert pairs == [
        (1, V("1"), 25, 1),
        (1, V("1"), 28, 1),
        (2, V("2"), 26, 1),
        (6, V("5"), 29, 1),
    ]
    assert rejects == [(4, "bad_syntax"), (5, "bad_syntax")]
    assert (reader.rows_total, reader.rejected_total, reader.newline_count) == (5, 2, 6)


def test_gzip_part_with_two_members() -> None:
    pairs, rejects, reader = read(GZ_PART, id_rule="visitor_id")
    assert pairs == [
        (1, V("7"), 1, 1),
        (1, V("7"), 2, 1),
        (2, V("8"), 3, 0),
        (3, V("9"), 4, 1),
        (3, V("9"), 5, 0),
    ]
    assert rejects == []
    assert reader.newline_count == 3 == count_newlines(GZ_PART)


def test_corrupt_gzip_truncated() -> None:
    with pytest.raises(InputError) as info:
        list(OutboundReader(GZ_CORRUPT, id_rule="visitor_id"))
    assert info.value.code == "corrupt_gzip"
    assert info.value.details["file"] == GZ_CORRUPT.name
    assert str(info.value).startswith(f"{GZ_CORRUPT.name} cannot be decompressed: ")
    with pytest.raises(InputError, match="cannot be decompressed"):
        count_newlines(GZ_CORRUPT)


@pytest.mark.parametrize("damage", ["header", "crc", "empty", "garbage_after"])
def test_corrupt_gzip_kinds(tmp_path: Path, damage: str) -> None:
    good = gzip.compress(f"{V('1')}\t1\n".encode() * 100)
    if damage == "header":
        data = b"\x1f\x8c" + good[2:]
    elif damage == "crc":
        data = good[:-8] + bytes([good[-8] ^ 0xFF]) + good[-7:]
    elif damage == "empty":
        data = b""
    else:
        data = good + b"not gzip at all"
    path = tmp_path / "ftp_1_2_iter_1486140844000.sync.gz"
    path.write_bytes(data)
    with pytest.raises(InputError) as info:
        list(OutboundReader(path, id_rule="visitor_id"))
    assert info.value.code == "corrupt_gzip"
    assert isinstance(info.value, AudtoolsError)


def test_gzip_is_decided_by_name(tmp_path: Path) -> None:
    path = tmp_path / "ftp_1_2_iter_1486140844000.SYNC.GZ"
    path.write_bytes(gzip.compress(f"{V('1')}\t1\n".encode()))
    assert read(path, id_rule="visitor_id")[0] == [(1, V("1"), 1, 1)]
    plain = tmp_path / "ftp_1_2_iter_1486140844000.sync"
    plain.write_bytes(gzip.compress(f"{V('1')}\t1\n".encode()))
    pairs, rejects, _ = read(plain, id_rule="visitor_id")
    assert pairs == [] and rejects[0][1] in ("bad_encoding", "bad_syntax")


@both_parsers
def test_declared_ids(simple: bool) -> None:
    pairs, rejects, reader = read(EMAILS, id_rule="declared_id", simple=simple)
    assert pairs == [
        (1, "john.doe@example.com", 101, 1),
        (2, "\ufeffjane@example.com", 102, 1),
        (3, "a b@example.com", 103, 1),
        (6, "José@Example.com", 106, 1),
        (7, "last@example.com", 107, 1),
    ]
    assert rejects == [(4, "bad_id"), (5, "bad_id")]
    assert reader.newline_count == 6  # no final newline
    assert reader.rows_total == 7


def test_declared_ids_lowercased() -> None:
    pairs, _, _ = read(EMAILS, id_rule="declared_id", lowercase_ids=True)
    assert [p[1] for p in pairs][-2:] == ["josé@example.com", "last@example.com"]


@both_parsers
def test_hashed_ids_lowercased(simple: bool) -> None:
    pairs, rejects, _ = read(HASHES, id_rule="declared_id", lowercase_ids=True, simple=simple)
    assert rejects == []
    assert pairs == [
        (1, "55e79200c1635b37ad31a378c39feb12f120f116625093a19bc32fff15041149", 101, 1),
        (2, "0123456789abcdefabcdef0123456789abcdef0123456789abcdef0123456789", 102, 1),
        (2, "0123456789abcdefabcdef0123456789abcdef0123456789abcdef0123456789", 103, 1),
    ]
    kept, _, _ = read(HASHES, id_rule="declared_id", simple=simple)
    assert kept[0][1].startswith("55E79200")


@both_parsers
def test_every_reject_reason(simple: bool) -> None:
    pairs, rejects, reader = read(REJECTS, id_rule="visitor_id", simple=simple)
    assert pairs == [(1, V("1"), 1, 1), (19, "12345678901234567890123456789012345678", 1, 1)]
    assert rejects == [
        (2, "bad_encoding"),
        (3, "bad_syntax"),
        (4, "bad_syntax"),
        (5, "bad_syntax"),
        (6, "bad_id"),
        (7, "bad_segment"),
        (8, "bad_segment"),
        (9, "no_segments"),
        (10, "no_segments"),
        (11, "bad_id"),
        (12, "bad_id"),
        (13, "bad_encoding"),
        (14, "bad_syntax"),
        (15, "bad_syntax"),
        (16, "bad_segment"),
        (17, "bad_id"),
        (18, "bad_syntax"),
    ]
    assert {r[1] for r in rejects} == set(REJECT_REASONS)
    assert (reader.rows_total, reader.rejected_total, reader.newline_count) == (19, 17, 19)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", ([], [])),
        (b"\n\n \t\n", ([], [])),
        (b"\xef\xbb\xbf", ([], [])),
        (b"\xef\xbb\xbf\xef\xbb\xbfA\t1\n", ([(1, "\ufeffA", 1, 1)], [])),
        (b"A\t1\r", ([], [(1, "bad_syntax")])),  # a CR without LF is not a line end
        (b"A\t1\r\n\r\n", ([(1, "A", 1, 1)], [])),
        (b"A\t1\xc2\xa02\n", ([], [(1, "bad_segment")])),  # NBSP is not a separator
        (b"A\t 7 , 8 ,\t 9\n", ([(1, "A", 7, 1), (1, "A", 8, 1), (1, "A", 9, 0)], [])),
        (b"A ,7\n", ([], [(1, "bad_syntax")])),  # spaces next to the comma go: one column
        (b"A  7   8\n", ([(1, "A", 7, 1), (1, "A", 8, 0)], [])),
        (b"A 7 \n", ([(1, "A", 7, 1)], [])),  # a trailing space makes an empty third column
        (b"A 7 8 \n", ([], [(1, "bad_syntax")])),
        (b"A \n", ([], [(1, "no_segments")])),
        (b"A\t\n", ([], [(1, "no_segments")])),
        (b"A\t0\n", ([(1, "A", 0, 1)], [])),
        (b"A\t-1\n", ([], [(1, "bad_segment")])),
        (b"A\t+1\n", ([], [(1, "bad_segment")])),
        (b"A\t1e3\n", ([], [(1, "bad_segment")])),
        (b"A\t000000000000000001\n", ([(1, "A", 1, 1)], [])),
        (b"a:b\t1\n", ([], [(1, "bad_id")])),
        (b" \t1\n", ([(1, " ", 1, 1)], [])),
        (b"A,B\t1\n", ([(1, "A,B", 1, 1)], [])),
        (b"A,B\t1,C\n", ([], [(1, "bad_segment")])),
        (b"x\x00y\t1\n", ([], [(1, "bad_syntax")])),
        (b"A\t1\t2\t\n", ([], [(1, "bad_syntax")])),
    ],
)
@both_parsers
def test_row_rules_declared(tmp_path: Path, content: bytes, expected: tuple, simple: bool) -> None:
    path = tmp_path / "http_1_2_iter_1486140844.sync"
    path.write_bytes(content)
    pairs, rejects, reader = read(path, id_rule="declared_id", simple=simple)
    assert (pairs, rejects) == expected
    assert reader.newline_count == content.count(b"\n")


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 5, 17, 64, 1000])
def test_chunk_boundaries_do_not_matter(chunk_bytes: int) -> None:
    for path, rule in [
        (REJECTS, "visitor_id"),
        (SHAPES, "visitor_id"),
        (CRLF, "visitor_id"),
        (EMAILS, "declared_id"),
        (GZ_PART, "visitor_id"),
    ]:
        whole = read(path, id_rule=rule)
        small = read(path, id_rule=rule, chunk_bytes=chunk_bytes)
        assert small[:2] == whole[:2]
        assert small[2].newline_count == whole[2].newline_count
        assert small[2].rows_total == whole[2].rows_total


def test_chunks_are_yielded_per_chunk_bytes(tmp_path: Path) -> None:
    path = tmp_path / "ftp_1_2_iter_1486140844000.sync"
    path.write_bytes("".join(f"{i:038d}\t{i}\n" for i in range(1000)).encode())
    reader = OutboundReader(path, id_rule="visitor_id", chunk_bytes=4096)
    chunks = list(reader)
    assert len(chunks) > 5
    assert sum(c.rows for c in chunks) == 1000 == reader.rows_total
    lines = [line for c in chunks for line in c.pairs.column("line").to_pylist()]
    assert lines == list(range(1, 1001))


def _open_files() -> set[str]:
    """What this process holds open (Linux), as resolved paths."""
    fds = Path("/proc/self/fd")
    found = set()
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            found.add(os.readlink(fd))
    return found


def test_stopping_early_stops_the_read_ahead_thread_and_closes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ftp_1_2_iter_1486140844000.sync.gz"
    path.write_bytes(gzip.compress("".join(f"{i:038d}\t{i}\n" for i in range(5000)).encode()))
    before = set(threading.enumerate())
    iterator = iter(OutboundReader(path, id_rule="visitor_id", chunk_bytes=1024))
    next(iterator)
    started = [t for t in threading.enumerate() if t not in before]
    readers = [t for t in started if t.name == "audtools-outbound-read"]
    # About 200 blocks are left: the read-ahead thread waits to hand over the next one.
    assert len(readers) == 1 and readers[0].is_alive()
    if Path("/proc/self/fd").is_dir():
        assert str(path.resolve()) in _open_files()
    iterator.close()  # type: ignore[attr-defined]
    for thread in started:  # the reader and the parsing pool's threads
        thread.join(timeout=5)
        assert not thread.is_alive(), f"{thread.name} still runs after close()"
    if Path("/proc/self/fd").is_dir():
        assert str(path.resolve()) not in _open_files()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        OutboundReader(SHAPES, id_rule="email")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        OutboundReader(SHAPES, id_rule="visitor_id", chunk_bytes=0)


# ---------------------------------------------------------------------------------------------
# .info manifests


def test_read_info_quoted() -> None:
    entries = read_info(INFO_QUOTED)
    assert entries == [
        InfoEntry(SHAPES.name, 12, SHAPES.stat().st_size, file_md5(SHAPES)),
        InfoEntry(GZ_PART.name, 3, GZ_PART.stat().st_size, None),
    ]
    assert entries[0].md5 == hashlib.md5(SHAPES.read_bytes()).hexdigest()  # lower-cased
    for entry in entries:
        path = DATA / entry.file_name
        assert check_entry(path, entry, count_newlines(path)) is None


def test_read_info_unquoted() -> None:
    (entry,) = read_info(INFO_UNQUOTED)
    assert entry == InfoEntry(CRLF.name, 6, CRLF.stat().st_size, file_md5(CRLF))
    reader = OutboundReader(CRLF, id_rule="visitor_id")
    list(reader)
    assert check_entry(CRLF, entry, reader.newline_count) is None


def test_read_info_unquoted_keys_leave_strings_alone(tmp_path: Path) -> None:
    path = tmp_path / "x.info"
    path.write_text(
        '{Files: [{FileName: "a, b: c.sync", FileLineCount: 1, FileByteSize: 2}], Totals: {}}'
    )
    assert read_info(path) == [InfoEntry("a, b: c.sync", 1, 2, None)]


def test_check_entry_mismatches(tmp_path: Path) -> None:
    path = tmp_path / SHAPES.name
    shutil.copy(SHAPES, path)
    size = path.stat().st_size
    good = InfoEntry(path.name, 12, size, file_md5(path))
    assert check_entry(path, good, 12) is None
    assert check_entry(path, good, None) is None
    assert check_entry(tmp_path / "absent.sync", good, 12) == "missing"
    assert (
        check_entry(path, InfoEntry(path.name, 12, size - 2, None), 12)
        == f"size {size}, expected {size - 2}"
    )
    assert check_entry(path, InfoEntry(path.name, 12, size, "0" * 32), 12) == "md5 differs"
    assert check_entry(path, InfoEntry(path.name, 13, size, None), 12) == "12 lines, expected 13"


def test_check_entry_gzip_sizes_are_compressed() -> None:
    (_, entry) = read_info(INFO_QUOTED)
    assert check_entry(GZ_PART, entry, count_newlines(GZ_PART)) is None
    assert entry.byte_size == GZ_PART.stat().st_size < len(gzip.decompress(GZ_PART.read_bytes()))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        '{"Totals": {}}',
        '{"Files": {}}',
        '{"Files": [1]}',
        '{"Files": [{"FileLineCount": 1, "FileByteSize": 2}]}',
        '{"Files": [{"FileName": "a.sync", "FileByteSize": 2}]}',
        '{"Files": [{"FileName": "a.sync", "FileLineCount": 1}]}',
        '{"Files": [{"FileName": "a.sync", "FileLineCount": -1, "FileByteSize": 2}]}',
        '{"Files": [{"FileName": "a.sync", "FileLineCount": true, "FileByteSize": 2}]}',
        '{"Files": [{"FileName": "a.sync", "FileLineCount": 1.5, "FileByteSize": 2}]}',
        '{"Files": [{"FileName": "a.sync", "FileLineCount": 1, "FileByteSize": 2, "md5": "xyz"}]}',
        '{"Files": [{"FileName": "../a.sync", "FileLineCount": 1, "FileByteSize": 2}]}',
        '{"Files": [{"FileName": "a.sync", "FileLineCount": 1, "FileByteSize": 2},'
        ' {"FileName": "a.sync", "FileLineCount": 1, "FileByteSize": 2}]}',
        "{Files: [{FileName: a.sync, FileLineCount: 1, FileByteSize: 2}]}",
    ],
)
def test_bad_info(tmp_path: Path, text: str) -> None:
    path = tmp_path / "ftp_1_2_iter_1486140844000.info"
    path.write_text(text)
    with pytest.raises(AudtoolsError) as info:
        read_info(path)
    assert info.value.code == "bad_info"
    assert info.value.details["file"] == path.name
    assert path.name in str(info.value)


def test_info_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "absent.info"
    with pytest.raises(AudtoolsError) as info:
        read_info(path)
    assert info.value.code == "bad_info"
    bad = tmp_path / "latin.info"
    bad.write_bytes(
        b'{"Files": [{"FileName": "\xe9.sync", "FileLineCount": 1, "FileByteSize": 2}]}'
    )
    with pytest.raises(AudtoolsError, match="latin.info"):
        read_info(bad)


def test_info_extras_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "x.info"
    path.write_bytes(
        b'\xef\xbb\xbf{"Files": [{"FileName": "a.sync", "FileLineCount": "3", "FileByteSize": 52,'
        b' "FileSequenceNumber": 1, "md5": null, "Other": {"x": [1]}}], "Totals": "anything", "X": 1}'
    )
    assert read_info(path) == [InfoEntry("a.sync", 3, 52, None)]


# ---------------------------------------------------------------------------------------------
# Property tests against a plain, row-by-row reading of SPEC 4.1

_CONTROLS = {*range(0x00, 0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0)}
_ASCII_DIGITS = set("0123456789")


def reference(content: bytes, id_rule: str, lowercase: bool = False) -> tuple[list, list, int]:
    """SPEC 4.1 read one line at a time: (pairs, rejects, rows)."""
    content = content.removeprefix(b"\xef\xbb\xbf")
    raw_lines = content.split(b"\n")
    last_terminated = raw_lines[-1] == b""
    if last_terminated:
        raw_lines.pop()
    pairs: list = []
    rejects: list = []
    rows = 0
    for number, raw in enumerate(raw_lines, 1):
        if raw.endswith(b"\r") and (number < len(raw_lines) or last_terminated):
            raw = raw[:-1]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            rows += 1
            rejects.append((number, "bad_encoding"))
            continue
        if text.strip(" \t") == "":
            continue
        rows += 1
        if "\t" in text:
            cols = text.split("\t")
        else:
            cols = re.split(" +", re.sub(" *, *", ",", text))
        if any(ord(c) in _CONTROLS for c in text) or not 2 <= len(cols) <= 3:
            rejects.append((number, "bad_syntax"))
            continue
        row_id = cols[0]
        if id_rule == "visitor_id":
            id_ok = len(row_id) == 38 and set(row_id) <= _ASCII_DIGITS
        else:
            id_ok = row_id != "" and ":" not in row_id
        if not id_ok:
            rejects.append((number, "bad_id"))
            continue
        tokens = [
            (t.strip(" "), op)
            for col, op in zip(cols[1:], (1, 0), strict=False)
            for t in col.split(",")
        ]
        tokens = [(t, op) for t, op in tokens if t]
        if any(not (len(t) <= 18 and set(t) <= _ASCII_DIGITS) for t, _ in tokens):
            rejects.append((number, "bad_segment"))
            continue
        if not tokens:
            rejects.append((number, "no_segments"))
            continue
        out_id = row_id.lower() if lowercase else row_id
        pairs.extend((number, out_id, int(t), op) for t, op in tokens)
    return pairs, rejects, rows


def _read_bytes(content: bytes, **kwargs: object) -> tuple[list, list, OutboundReader]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ftp_1_2_iter_1486140844000.sync"
        path.write_bytes(content)
        return read(path, **kwargs)


_line_bytes = st.lists(
    st.sampled_from(
        [
            b"1",
            b"0",
            b"9",
            b"12",
            b"1" * 19,
            b"\t",
            b",",
            b" ",
            b"\r",
            b"\n",
            b"\n",
            b"\r\n",
            b"a",
            b"A",
            b":",
            b"\x00",
            b"\x7f",
            b"\xff",
            b"\xc2\x85",
            b"\xc2\xa0",
            b"\xef\xbb\xbf",
            b"\xc3\xa9",
            b"\xe2\x82",
            V("4").encode(),
        ]
    ),
    max_size=60,
).map(b"".join)
_junk = st.one_of(st.binary(max_size=200), _line_bytes)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    content=_junk,
    id_rule=st.sampled_from(["visitor_id", "declared_id"]),
    chunk=st.sampled_from([1, 3, 1 << 20]),
)
def test_never_crashes_and_accounts_for_every_line(
    content: bytes, id_rule: str, chunk: int
) -> None:
    expected = reference(content, id_rule)
    for simple in (True, False):
        pairs, rejects, reader = _read_bytes(
            content, id_rule=id_rule, chunk_bytes=chunk, simple=simple
        )
        assert reader.newline_count == content.count(b"\n")
        valid_lines = {p[0] for p in pairs}
        rejected_lines = [r[0] for r in rejects]
        assert len(set(rejected_lines)) == len(rejected_lines)
        assert not valid_lines & set(rejected_lines)
        assert reader.rows_total == len(valid_lines) + len(rejected_lines)
        assert reader.rejected_total == len(rejected_lines)
        assert {r[1] for r in rejects} <= set(REJECT_REASONS)
        assert (pairs, rejects, reader.rows_total) == expected


_visitor_ids = st.text(alphabet="0123456789", min_size=38, max_size=38)
_declared_ids = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters=":"),
    min_size=1,
    max_size=20,
)
_segments = st.lists(st.integers(0, 10**18 - 1), max_size=4)


@st.composite
def _batch(draw: st.DrawFn) -> tuple[bytes, list, str, bool]:
    """A file from a simple writer, and the pairs it must give back."""
    id_rule = draw(st.sampled_from(["visitor_id", "declared_id"]))
    lowercase = draw(st.booleans()) if id_rule == "declared_id" else False
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    out: list[str] = []
    pairs: list = []
    for number in range(1, draw(st.integers(0, 30)) + 1):
        if id_rule == "visitor_id":
            row_id = draw(_visitor_ids)
        elif lowercase:
            row_id = draw(st.text(alphabet="0123456789abcdefABCDEF+/=", min_size=1, max_size=64))
        else:
            row_id = draw(_declared_ids)
        if number == 1:
            row_id = row_id.lstrip("\ufeff") or "x"
        segments, removed = draw(_segments), draw(_segments)
        if not segments and not removed:
            segments = [draw(st.integers(0, 10**18 - 1))]
        comma = draw(st.sampled_from([",", ", "]))
        seg_text, rem_text = comma.join(map(str, segments)), comma.join(map(str, removed))
        spaced = bool(segments) and not set(row_id) & {" ", ",", "\t"} and draw(st.booleans())
        if spaced:
            line = f"{row_id} {seg_text}" + (f" {rem_text}" if removed else "")
        else:
            if row_id.strip(" ") == "":
                row_id += "x"
            line = f"{row_id}\t{seg_text}" + (
                f"\t{rem_text}" if removed or draw(st.booleans()) else ""
            )
        out.append(line)
        expected_id = row_id.lower() if lowercase else row_id
        pairs += [(number, expected_id, s, 1) for s in segments]
        pairs += [(number, expected_id, s, 0) for s in removed]
    text = ending.join(out) + (ending if out and draw(st.booleans()) else "")
    return text.encode(), pairs, id_rule, lowercase


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=_batch(), chunk=st.sampled_from([1, 7, 1 << 20]))
def test_written_rows_round_trip(batch: tuple[bytes, list, str, bool], chunk: int) -> None:
    content, expected, id_rule, lowercase = batch
    for simple in (True, False):
        pairs, rejects, reader = _read_bytes(
            content, id_rule=id_rule, lowercase_ids=lowercase, chunk_bytes=chunk, simple=simple
        )
        assert rejects == []
        assert pairs == expected
        assert reader.rows_total == len({p[0] for p in expected})


def _integer_pairs(content: bytes, simple: bool, chunk: int) -> tuple[list, list]:
    """The pairs of ``content`` read with ``integer_ids``, each ID made whole again."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ftp_1_2_iter_1486140844000.sync"
        path.write_bytes(content)
        reader = OutboundReader(path, id_rule="visitor_id", integer_ids=True, chunk_bytes=chunk)
        reader._simple = simple
        chunks = list(reader)
    for chunk_ in chunks:
        assert chunk_.pairs.schema.equals(PAIRS_KEYS_SCHEMA)
    pairs = [
        (r["line"], f"{r['id_high'] * 10**19 + r['id_low']:038d}", r["sid"], r["op"])
        for c in chunks
        for r in c.pairs.to_pylist()
    ]
    return pairs, [tuple(r.values()) for c in chunks for r in c.rejects.to_pylist()]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    content=st.one_of(_junk, _batch().filter(lambda b: b[2] == "visitor_id").map(lambda b: b[0])),
    chunk=st.sampled_from([1, 3, 1 << 20]),
)
def test_integer_ids_are_the_ids_read_as_text(content: bytes, chunk: int) -> None:
    """Visitor IDs read as two 19-digit numbers are the 38-digit texts, leading zeros and all,
    with the same pairs and rejects, through both parsers."""
    for simple in (True, False):
        pairs, rejects, _ = _read_bytes(
            content, id_rule="visitor_id", chunk_bytes=chunk, simple=simple
        )
        assert _integer_pairs(content, simple, chunk) == (pairs, rejects)


def test_integer_ids_need_the_visitor_id_rule() -> None:
    with pytest.raises(ValueError, match="integer_ids"):
        OutboundReader(SHAPES, id_rule="declared_id", integer_ids=True)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        list(OutboundReader(tmp_path / "ftp_1_2_iter_1486140844000.sync", id_rule="visitor_id"))
    assert info.value.code == "bad_input"
    assert "ftp_1_2_iter_1486140844000.sync cannot be read" in str(info.value)


# -- Formats: header rows, separators, %3A (issue 12 items 7 to 9) ---------------------------------


@pytest.mark.parametrize("chunk_bytes", [1, 5, 1 << 20])
def test_header_rows_are_lines_not_rows(tmp_path: Path, chunk_bytes: int) -> None:
    """SPEC §4.1: the first outbound_header_rows lines, after a BOM, blank or not, are a header."""
    vid = "4" * 38
    content = f"\ufeffID\tSEGMENTS\n\n{vid}\t5\nbad\n".encode()
    path = tmp_path / "ftp_1_2_full_1486140844000.sync"
    path.write_bytes(content)
    reader = OutboundReader(path, id_rule="visitor_id", header_rows=2, chunk_bytes=chunk_bytes)
    chunks = list(reader)
    assert [r for c in chunks for r in c.pairs.to_pylist()] == [{"line": 3, "id": vid, "sid": 5, "op": 1}]
    assert [r for c in chunks for r in c.rejects.to_pylist()] == [{"line": 4, "reason": "bad_syntax"}]
    assert (reader.rows_total, reader.newline_count) == (2, 4)
    path.write_bytes(b"only a header")
    reader = OutboundReader(path, id_rule="visitor_id", header_rows=3)
    assert list(reader) == [] and reader.rows_total == 0 and reader.last_line_open


@both_parsers
@pytest.mark.parametrize(
    ("separator", "content", "pairs"),
    [
        (";", b"A\t1;2\t3\n", [("A", 1, 1), ("A", 2, 1), ("A", 3, 0)]),
        (";", b"A 1 ; 2\n", [("A", 1, 1), ("A", 2, 1)]),
        ("|", b"A\t1| 2|\n", [("A", 1, 1), ("A", 2, 1)]),
        (" ", b"123456 105955 101183\n", [("123456", 105955, 1), ("123456", 101183, 1)]),
        (" ", b"A\t1 2\t3\n", [("A", 1, 1), ("A", 2, 1), ("A", 3, 0)]),
        (",", b"A;B\t1\n", [("A;B", 1, 1)]),
    ],
)
def test_separators(tmp_path: Path, separator: str, content: bytes, pairs: list, simple: bool) -> None:
    path = tmp_path / "ftp_1_2_full_1486140844000.sync"
    path.write_bytes(content)
    reader = OutboundReader(path, id_rule="declared_id", separator=separator)
    reader._simple = simple
    got = [(r["id"], r["sid"], r["op"]) for c in reader for r in c.pairs.to_pylist()]
    assert got == pairs and reader.rejected_total == 0


def test_a_comma_is_not_a_token_under_another_separator(tmp_path: Path) -> None:
    path = tmp_path / "ftp_1_2_full_1486140844000.sync"
    path.write_bytes(b"A\t1,2\n")
    reader = OutboundReader(path, id_rule="declared_id", separator=";")
    assert [r for c in reader for r in c.rejects.to_pylist()] == [{"line": 1, "reason": "bad_segment"}]


@both_parsers
def test_encoded_colon_is_a_bad_declared_id(tmp_path: Path, simple: bool) -> None:
    """SPEC §3: AAM forbids ``:`` and ``%3A`` in any case in DPUUIDs; columns agree."""
    from audtools.columns.identifiers import is_declared_id

    ids = ["a%3Ab", "a%3ab", "%3A", "a%3", "a%b", "a%3Bb"]
    path = tmp_path / "ftp_1_2_full_1486140844000.sync"
    path.write_bytes("".join(f"{i}\t1\n" for i in ids).encode())
    reader = OutboundReader(path, id_rule="declared_id")
    reader._simple = simple
    kept = [r["id"] for c in reader for r in c.pairs.to_pylist()]
    assert kept == ["a%3", "a%b", "a%3Bb"]
    assert kept == [i for i, ok in zip(ids, is_declared_id(pa.array(ids)).to_pylist(), strict=True) if ok]


def test_separator_is_checked() -> None:
    with pytest.raises(ValueError, match="separator"):
        OutboundReader("x.sync", id_rule="visitor_id", separator="/")
