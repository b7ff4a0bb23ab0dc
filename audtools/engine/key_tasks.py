"""The tasks of encrypted members: decrypted in the buckets of their IDs, then joined in the
buckets of their keys.

An encrypted member's key (its decrypted, normalised ID) is not the ID it is filed under, so the
reconciliation takes two rounds of tasks and a shuffle between them: :func:`decrypt_bucket` reads
one bucket of the segment state, decrypts it and writes each member under the bucket of its key;
:func:`join_keys_bucket` then joins one key bucket with the same bucket of the derived-ID cache.

The AES key reaches a task only as an argument, wrapped in :class:`Secret`, whose ``repr`` shows
nothing: Dask prints a failed task's arguments in its logs, and names tasks without them.
"""

from __future__ import annotations

import glob
import os
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from audtools.columns.chunks import CHUNK_ROWS
from audtools.columns.member_keys import decrypted_keys
from audtools.engine.ids import Ids
from audtools.engine.tasks import duckdb_for_task, publish, relation, write_bucket

__all__ = ["Secret", "decrypt_bucket", "join_keys_bucket", "shuffled_files"]


class Secret:
    """A value that must never be shown: a task argument whose ``repr`` hides it."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Secret(…)"

    __str__ = __repr__


_TEXT = Ids("text")


def decrypt_bucket(
    bucket: int,
    buckets: int,
    state: list[str],
    sid: int,
    secret: Secret,
    out: str,
    threads: int | None = None,
) -> dict[str, Any]:
    """Decrypt the members of segment ``sid`` in one bucket of an encrypted data source's state.

    Writes ``out/src=BUCKET/b=K/*.parquet``: ``id`` (the ciphertext), ``k`` (the key, NULL when
    undecryptable), by the bucket ``K`` of the key (an undecryptable member stays in ``bucket``).

    Args:
        bucket: the bucket of the state read.
        buckets: the number of buckets.
        state: the state's files that may hold the bucket's IDs.
        sid: the segment.
        secret: a :class:`Secret` of ``{"key", "iv", "encoding", "kind", "region"}``.
        out: the folder of the shuffled members.
        threads: DuckDB's threads (None: its default).

    Returns:
        ``members``, ``undecryptable``, and ``same`` (normalising changed no decrypted value).
    """
    settings = secret.value
    con = duckdb_for_task(threads)
    members = relation(state, {"id": "VARCHAR", "sid": "BIGINT"})
    ids = con.sql(
        f"SELECT id FROM {members} WHERE sid = {int(sid)} "
        f"AND {_TEXT.bucket(buckets)} = {int(bucket)}"
    ).to_arrow_table()["id"].combine_chunks()
    keys, same = [], True
    for start in range(0, len(ids), CHUNK_ROWS):
        part, part_same = decrypted_keys(
            ids.slice(start, CHUNK_ROWS), settings["key"], settings["iv"], settings["encoding"],
            settings["kind"], settings["region"],
        )
        keys.append(part)
        same = same and part_same
    table = pa.table({"id": ids, "k": pa.chunked_array(keys, pa.string())})
    con.register("_members", table)
    final = os.path.join(out, f"src={int(bucket)}")
    tmp = f"{final}.tmp-{uuid.uuid4().hex}"
    os.makedirs(tmp)
    key_bucket = f"coalesce(CAST(md5_number_lower(k) % {int(buckets)} AS INTEGER), {int(bucket)})"
    con.execute(
        f"COPY (SELECT id, k, {key_bucket} AS b FROM _members) "
        "TO ? (FORMAT parquet, PARTITION_BY (b), OVERWRITE_OR_IGNORE)",
        [tmp],
    )
    undecryptable = table.num_rows - pc.count(table["k"]).as_py()
    con.close()
    publish(tmp, final)
    return {"members": table.num_rows, "undecryptable": undecryptable, "same": same}


def join_keys_bucket(
    bucket: int,
    members: list[str],
    keys: list[str],
    out: str,
    outcomes: bool,
    file_audience: bool,
    threads: int | None = None,
) -> dict[str, int]:
    """Join one key bucket of decrypted members with the same bucket of the profiles' keys.

    Writes ``out/profiles/b=B/data.parquet`` (the distinct profiles matched) or, for a File
    audience, ``out/addresses/b=B/data.parquet`` (the distinct keys: its addresses); with
    ``outcomes``, ``out/outcomes/b=B/data.parquet`` (``id``, ``outcome``).

    Returns:
        ``matched`` (members whose key a profile has) and ``addresses`` (distinct keys).
    """
    con = duckdb_for_task(threads)
    rows = relation(members, {"id": "VARCHAR", "k": "VARCHAR"})
    profiles = relation(keys, {"id": "VARCHAR", "profile_id": "VARCHAR"})
    con.execute(f"CREATE TABLE m AS SELECT id, k FROM {rows}")
    con.execute(
        f"CREATE TABLE l AS SELECT m.id, p.profile_id FROM m JOIN {profiles} p ON p.id = m.k"
    )
    con.execute("CREATE TABLE found AS SELECT DISTINCT id FROM l")
    matched = con.execute("SELECT count(*) FROM found").fetchall()[0][0]
    addresses = 0
    if file_audience:
        write_bucket(con, "SELECT DISTINCT k AS address FROM m WHERE k IS NOT NULL", out,
                     "addresses", bucket)
        addresses = con.execute("SELECT count(DISTINCT k) FROM m").fetchall()[0][0]
    else:
        write_bucket(con, "SELECT DISTINCT profile_id FROM l", out, "profiles", bucket)
    if outcomes:
        write_bucket(
            con,
            "SELECT m.id, CASE WHEN m.k IS NULL THEN 'undecryptable' "
            "WHEN f.id IS NULL THEN 'no_profile' ELSE 'matched' END AS outcome "
            "FROM m LEFT JOIN found f ON f.id = m.id",
            out, "outcomes", bucket,
        )
    con.close()
    return {"matched": int(matched), "addresses": int(addresses)}


def shuffled_files(folder: str, bucket: int) -> list[str]:
    """The files of key bucket ``bucket`` written by every :func:`decrypt_bucket` task."""
    return sorted(glob.glob(os.path.join(folder, "src=*", f"b={bucket}", "*.parquet")))

