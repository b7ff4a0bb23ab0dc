"""The sample workspace: made-up profiles, visitor IDs, AAM batches and a catalog, known counts.

:func:`create_samples` fills a new workspace from a fixed seed, so every file it writes is the
same, byte for byte, on every run. It adds six data sources of its own to ``audtools.toml``
(comments kept), writes a demo key, loads about 3,000 profiles with their visitor IDs, and puts
outbound batches and a ``catalog.json`` in the import drop. ``samples.json`` then says exactly what
importing each sample audience must give (SPEC §5): the counts are known by construction, since
the generator decides which members match a profile, which cannot be decrypted and which rows
are malformed; no importer is run to find them.

This module writes the files. The data are made by :mod:`audtools.samples.profiles` (the people)
and :mod:`audtools.samples.batches` (the catalog, the data sources and their batches), the counts
by :mod:`audtools.samples.counts`.

Example:
    >>> from audtools.workspace import init_workspace
    >>> ws = init_workspace("demo")                      # doctest: +SKIP
    >>> create_samples(ws)["profiles"]                   # doctest: +SKIP
    3000
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import logging
import os
import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tomlkit

from audtools.config import CONFIG_NAME, load_config
from audtools.errors import AudtoolsError, RefusedError
from audtools.samples.batches import (
    CATALOG,
    KEY_FILE,
    Row,
    Source,
    app_visitor_batches,
    crm_batches,
    email_aes_batches,
    sha256_batches,
    sms_aes_batches,
    source_entries,
    visitor_batches,
)
from audtools.samples.counts import batch_totals, expectations
from audtools.samples.profiles import PROFILE_COUNT, Profile, make_profiles, make_visitor_ids  # noqa: F401
from audtools.workspace import Workspace, as_workspace
from audtools.workspace.records import write_atomic

__all__ = ["DEFAULT_SEED", "SAMPLES_JSON", "create_samples"]

log = logging.getLogger("audtools")

DEFAULT_SEED = 20261128
SAMPLES_JSON = "samples.json"

FULL_TS, ITER_TS = 1764288000000, 1764374400000  # 2025-11-28 and 2025-11-29, 00:00 UTC


def create_samples(
    workspace: str | os.PathLike[str] | Workspace,
    *,
    seed: int = DEFAULT_SEED,
    history_days: int = 0,
) -> dict[str, Any]:
    """Fill a new workspace with generated sample data and the counts its imports must give.

    Writes, under the workspace: six ``samples*`` data sources appended to ``audtools.toml``
    (its comments and entries kept), ``keys/demo.key`` (mode 0600), ``samples/profiles.csv`` and
    ``samples/visitors.csv`` (loaded as the profiles), ``catalog.json`` and outbound batches with
    their ``.info`` files in the import drop, and ``samples.json``. The same ``seed`` gives the
    same files, byte for byte.

    Args:
        workspace: a workspace without profiles (path or :class:`Workspace`).
        seed: the seed of the generator.
        history_days: when not 0, also write that many daily deliveries under
            ``deliveries/`` and their counts under ``history`` in ``samples.json``
            (:mod:`audtools.samples.history`; ``make demo`` plays them).

    Returns:
        A summary: ``profiles``, ``visitors`` (visitor-ID rows), ``data_sources``, ``batches``,
        ``files`` (paths relative to the workspace) and ``samples_json`` (its path).

    Raises:
        AudtoolsError: ``workspace_not_empty`` when the workspace already has profiles;
            ``samples_conflict`` when a data source of its own already uses a sample ``dpid``;
            ``refused`` when the import drop is remote (SFTP or S3: never written).

    Example:
        >>> summary = create_samples("demo")             # doctest: +SKIP
        >>> summary["samples_json"]                      # doctest: +SKIP
        '/home/me/demo/samples.json'
    """
    ws = as_workspace(workspace)
    # One lock over the whole fill: no other process loads profiles between check and load.
    with ws.lock(purpose="samples"):
        return _create(ws, seed, history_days)


def _create(ws: Workspace, seed: int, history_days: int = 0) -> dict[str, Any]:
    from audtools.profiles.loading import load_profiles

    drop = ws.config.import_drop
    if not isinstance(drop, Path):
        raise RefusedError(
            f"The import drop of {ws.root} is remote ({drop}): samples write their batches into "
            "the import drop, and audtools never modifies a remote one (it is AAM's). Run "
            "'audtools samples' in a workspace whose import_drop is a folder.",
        )
    with ws.session(purpose="samples") as con:
        row = con.execute("SELECT count(*) FROM profiles").fetchone()
    if row and row[0]:
        raise AudtoolsError(
            f"The workspace {ws.root} already has {row[0]} profiles; samples only fill a new "
            "workspace. Create one with 'audtools init DIR' and run 'audtools samples -w DIR'.",
            code="workspace_not_empty",
        )
    rng = random.Random(seed)
    key = rng.randbytes(32)
    region = ws.config.default_region
    sources = source_entries(rng)
    _check_dpids(ws, sources)

    root = ws.root
    written: list[Path] = []
    _add_data_sources(root / CONFIG_NAME, [s.entry for s in sources])
    written.append(_write_key(root / KEY_FILE, key))
    # The caller's Workspace sees the new data sources too.
    ws.config = load_config(root)

    profiles = make_profiles(rng, region)
    shared_vid = make_visitor_ids(rng, profiles)
    written += _write_profiles(root / "samples", profiles)
    load_profiles(ws, root / "samples/profiles.csv", visitors=root / "samples/visitors.csv")

    by_id = {s.id: s for s in sources}
    visitor_batches(rng, by_id["samplesVisitorId"], profiles, shared_vid)
    crm_batches(rng, by_id["samplesCrmId"], profiles)
    sha256_batches(rng, by_id["samplesEmailSha256"], profiles)
    email_aes_batches(rng, by_id["samplesEmailAes"], profiles, key)
    sms_aes_batches(rng, by_id["samplesSmsAes"], profiles, key, region)
    app_visitor_batches(rng, by_id["samplesAppVisitorId"], profiles)

    drop.mkdir(parents=True, exist_ok=True)
    written.append(_write_bytes(drop / "catalog.json", _json_bytes({"segments": CATALOG})))
    batch_count = 0
    for source in sources:
        for mode, parts in source.batches:
            written += _write_batch(drop, source, mode, parts)
            batch_count += 1

    doc = {
        "seed": seed,
        "profiles": len(profiles),
        "visitors": sum(len(p.visitor_ids) for p in profiles),
        "imports": expectations(by_id, profiles, region),
        "batches": {s.id: batch_totals(s) for s in sources},
    }
    if history_days:
        from audtools.samples.history import write_history

        files, doc["history"] = write_history(
            root, by_id, profiles, key, region, seed=seed, days=history_days)
        written += files
    samples_json = root / SAMPLES_JSON
    written.append(_write_bytes(samples_json, _json_bytes(doc)))
    log.info("samples: %d profiles, %d batches written to %s", len(profiles), batch_count, drop)
    return {
        "profiles": doc["profiles"],
        "visitors": doc["visitors"],
        "data_sources": [s.id for s in sources],
        "batches": batch_count,
        "files": [_relative(p, root) for p in written],
        "samples_json": str(samples_json),
    }


# ---------------------------------------------------------------------------------------------
# Configuration and key


def _check_dpids(ws: Workspace, sources: list[Source]) -> None:
    ours = {s.id for s in sources}
    for source in sources:
        other = ws.config.source_by_dpid(int(source.entry["dpid"]))
        if other is not None and other.id not in ours:
            raise AudtoolsError(
                f"The data source '{other.id}' of audtools.toml uses dpid {other.dpid}, which the "
                f"sample data source '{source.id}' needs. Use a new workspace for the samples.",
                code="samples_conflict",
            )


def _add_data_sources(path: Path, entries: list[dict[str, Any]]) -> None:
    """Append ``[[data_sources]]`` entries with tomlkit, keeping the file's comments.

    Entries of the same ``id`` left by an interrupted earlier run are replaced.
    """
    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    if "data_sources" not in doc:
        doc.append("data_sources", tomlkit.aot())
    aot = doc["data_sources"]
    ours = {e["id"] for e in entries}
    for i in reversed(range(len(aot))):
        if aot[i].get("id") in ours:
            del aot[i]
    if len(aot):
        aot[-1].add(tomlkit.nl())
    for n, entry in enumerate(entries):
        table = tomlkit.table()
        for name, value in entry.items():
            table.add(name, value)
        if n == 0:
            table.comment("added by 'audtools samples'; the key is in keys/demo.key")
        if n < len(entries) - 1:
            table.add(tomlkit.nl())
        aot.append(table)
    write_atomic(path, tomlkit.dumps(doc))


def _write_key(path: Path, key: bytes) -> Path:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, key.hex().encode("ascii"))
    finally:
        os.close(fd)
    return path

# ---------------------------------------------------------------------------------------------
# Files


def _write_profiles(folder: Path, profiles: list[Profile]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    head = ["profile_id", "email", "mobile_phone", "crm_id", "first_name", "country",
            "loyalty_points", "signup_date"]
    rows = [
        [p.profile_id, p.email, p.mobile_phone, p.crm_id, p.first_name, p.country,
         p.loyalty_points, p.signup_date.isoformat()]
        for p in profiles
    ]
    visits = [[p.profile_id, v] for p in profiles for v in p.visitor_ids]
    return [
        _write_bytes(folder / "profiles.csv", _csv_bytes(head, rows)),
        _write_bytes(folder / "visitors.csv", _csv_bytes(["profile_id", "visitor_id"], visits)),
    ]


def _csv_bytes(head: list[str], rows: Iterable[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(head)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return out.getvalue().encode("utf-8")


def _write_batch(
    drop: Path, source: Source, mode: str, parts: list[list[Row]]
) -> list[Path]:
    """Write a batch's parts and its ``.info``; the first of several parts is gzipped."""
    entry = source.entry
    stamp = FULL_TS if mode == "full" else ITER_TS
    seconds = entry.get("outbound_timestamp") == "seconds"
    if seconds:
        stamp //= 1000  # 10 digits: the split number follows (…_1764288000001.sync)
    root = f"ftp_{entry['destination_id']}_{entry['dpid']}_{mode}_{stamp}"
    written: list[Path] = []
    files: list[dict[str, Any]] = []
    for n, part in enumerate(parts, 1):
        content = ("\n".join(r.text for r in part) + "\n").encode("utf-8")
        if len(parts) == 1:
            name = f"{root}.sync"
        elif source.id == "samplesCrmId" or seconds:
            name = f"{root}{n:03d}.sync"  # the other split form: 3 digits after the timestamp
        else:
            name = f"{root}-{n}.sync"
        stored = content
        if len(parts) > 1 and n == 1:
            name += ".gz"
            stored = gzip.compress(content, compresslevel=9, mtime=0)
        written.append(_write_bytes(drop / name, stored))
        files.append({
            "FileName": name,
            "FileSequenceNumber": n,
            "FileLineCount": content.count(b"\n"),
            "FileByteSize": len(stored),
            "md5": hashlib.md5(stored, usedforsecurity=False).hexdigest(),
        })
    info = {
        "Files": files,
        "Totals": {
            "TotalNumberOfFiles": len(files),
            "TotalNumberOfLines": sum(f["FileLineCount"] for f in files),
            "TotalFileByteSize": sum(f["FileByteSize"] for f in files),
        },
    }
    written.append(_write_bytes(drop / f"{root}.info", _json_bytes(info)))
    return written


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


# Sample files look like a delivery that finished an hour ago, so that they have settled
# (settle_seconds) and import at once.
_SAMPLE_AGE_SECONDS = 3600


def _write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    past = time.time() - _SAMPLE_AGE_SECONDS
    os.utime(path, (past, past))
    return path


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
