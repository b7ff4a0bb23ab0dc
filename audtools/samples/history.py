"""Two weeks of daily deliveries for the sample data sources, and the counts after each day.

``audtools samples --history`` (``create_samples(..., history_days=14)``) writes, beside the
import drop, a folder of pending deliveries: ``deliveries/day-01/`` holds a ``full`` batch per
sample data source, each later day an ``iter`` batch, AAM timestamps one day apart, the last day
three days before today (so that no batch is ``future``). ``make demo`` moves one day at a time
into the drop and imports it (:mod:`audtools.samples.demo`). Things happen that an analyst would
want to see:

* day 6 brings a CRM load (``deliveries/day-06/profiles.csv`` and ``visitors.csv``, loaded with
  ``audtools profiles load``): many members of the visitor-ID and CRM-ID audiences get a
  profile, and their match rates jump;
* day 9 a partner sends malformed rows in the hashed-email feed: rejected rows spike;
* the mobile-app audience grows every day.

The counts after each day (``history`` in ``samples.json``) are known by construction: the
generator's own batches are replayed with :func:`audtools.samples.batches.state_after` and
counted by :func:`audtools.samples.counts.expectations`, never by the importer. The history uses
its own random generator, so the samples without history stay byte for byte the same.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import io
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audtools.samples.batches import (
    CART,
    HIGH_VALUE,
    LOYALTY,
    MOBILE,
    NEWSLETTER,
    SPORTS,
    TRAVEL,
    Row,
    Source,
    _aes_id,
    _encrypt,
)
from audtools.samples.counts import expectations
from audtools.samples.profiles import Profile, new_visitor_id, sha256

__all__ = ["CRM_LOAD_DAY", "DELIVERIES", "HISTORY_DAYS", "PLAYED", "REJECTS_DAY", "write_history"]

HISTORY_DAYS = 14
DELIVERIES = "deliveries"
CRM_LOAD_DAY = 6
REJECTS_DAY = 9
#: The import played for each data source, one per day (labels of ``samples.json``).
PLAYED = {
    "samplesVisitorId": "Samples - High value visitors",
    "samplesCrmId": "Samples - Loyalty members",
    "samplesEmailSha256": "Samples - Newsletter subscribers",
    "samplesEmailAes": "Samples - Cart abandoners (reconciled)",
    "samplesSmsAes": "Samples - Mobile app users (reconciled)",
}
_LAST_DAY_AGO = 3  # the last delivery is three days old: in the past, never `future`
_AGE_SECONDS = 3600  # delivered files are an hour old: settled (settle_seconds)
_NEW_PROFILES = 350


@dataclass
class _Plan:
    """What the history needs: the sources, the people, the key, and the days' batches."""

    by_id: dict[str, Source]
    profiles: list[Profile]
    key: bytes
    region: str
    rng: random.Random
    new_profiles: list[Profile] = field(default_factory=list)
    # Per source, per day (index 0 = day 1): the batch's mode and rows.
    days: dict[str, list[tuple[str, list[Row]]]] = field(default_factory=dict)


def _stamps(days: int, today: dt.date) -> list[int]:
    """AAM timestamps (ms) of days 1..days, 06:00 UTC, the last ``_LAST_DAY_AGO`` days ago."""
    last = dt.datetime.combine(today, dt.time(6), dt.UTC) - dt.timedelta(days=_LAST_DAY_AGO)
    return [int((last - dt.timedelta(days=days - d)).timestamp() * 1000)
            for d in range(1, days + 1)]


def _member(ident: str, sid: int, rng: random.Random, other: int, *, read_as: str | None = None
            ) -> Row:
    segs = sorted({sid, other}) if rng.random() < 0.3 else [sid]
    return Row(f"{ident}\t{','.join(map(str, segs))}", read_as or ident, tuple(segs))


def _removal(ident: str, sid: int) -> Row:
    return Row(f"{ident}\t\t{sid}", ident, (), (sid,))


def _malformed(ident: str, sid: int, n: int) -> Row:
    """A row the reader rejects (bad_segment, no_segments or bad_syntax, in turn)."""
    return Row((f"{ident}\t{sid},12ab", f"{ident}\t", f"{ident}\t{sid}\t{SPORTS}\t{TRAVEL}")[n % 3])


def _play(plan: _Plan, source: str, sid: int, other: int, first: list[tuple[str, str]],
          fresh: list[tuple[str, str]], days: int, *, add: int, drop: int) -> None:
    """A full batch of ``first`` members, then each day ``add`` of ``fresh`` in and ``drop`` out.

    Members are ``(written, read_as)`` pairs (an encrypted ID may be written in upper case).
    """
    rng = plan.rng
    batches: list[tuple[str, list[Row]]] = [
        ("full", [_member(w, sid, rng, other, read_as=r) for w, r in first])]
    current = [r for _, r in first]
    pool = list(fresh)
    for _day in range(2, days + 1):
        incoming, pool = pool[:add], pool[add:]
        leaving = rng.sample(current, drop)
        rows = [_member(w, sid, rng, other, read_as=r) for w, r in incoming]
        rows += [_removal(v, sid) for v in leaving]
        rng.shuffle(rows)
        current = [v for v in current if v not in leaving] + [r for _, r in incoming]
        batches.append(("iter", rows))
    plan.days[source] = batches


def _visitor_and_crm(plan: _Plan, days: int) -> None:
    """Visitor-ID and CRM-ID members, many of whom get a profile with the CRM load of day 6."""
    rng = plan.rng
    taken = {v for p in plan.profiles for v in p.visitor_ids}
    crm_taken = {p.crm_id for p in plan.profiles if p.crm_id}
    start = len(plan.profiles)
    for i in range(start + 1, start + _NEW_PROFILES + 1):
        crm = f"{rng.randrange(5_000_000, 9_999_999):08d}"
        while crm in crm_taken:
            crm = f"{rng.randrange(5_000_000, 9_999_999):08d}"
        crm_taken.add(crm)
        email = f"crm.member{i}@example.org"
        plan.new_profiles.append(Profile(
            profile_id=f"P{i:06d}", email=email, mobile_phone=None, crm_id=crm,
            first_name="Member", country="US", loyalty_points=rng.randrange(0, 5000),
            signup_date=dt.date(2026, 1, 1) + dt.timedelta(days=rng.randrange(300)),
            email_norm=email, visitor_ids=[new_visitor_id(rng, taken)]))
    known = rng.sample(sorted(taken - {v for p in plan.new_profiles for v in p.visitor_ids}), 700)
    coming = [p.visitor_ids[0] for p in plan.new_profiles]
    strangers = [new_visitor_id(rng, taken) for _ in range(250)]
    first = known[:450] + coming[:300] + strangers[:150]
    fresh = known[450:] + coming[300:] + strangers[150:]
    rng.shuffle(first)
    rng.shuffle(fresh)
    _play(plan, "samplesVisitorId", HIGH_VALUE, SPORTS, [(v, v) for v in first],
          [(v, v) for v in fresh], days, add=20, drop=12)
    crms = rng.sample(sorted(p.crm_id for p in plan.profiles if p.crm_id), 450)
    coming = [p.crm_id or "" for p in plan.new_profiles]
    unknown: list[str] = []
    while len(unknown) < 120:
        value = f"{rng.randrange(5_000_000, 9_999_999):08d}"
        if value not in crm_taken:
            crm_taken.add(value)
            unknown.append(value)
    first = crms[:300] + coming[:220] + unknown[:60]
    fresh = crms[300:] + coming[220:] + unknown[60:]
    rng.shuffle(first)
    rng.shuffle(fresh)
    _play(plan, "samplesCrmId", LOYALTY, SPORTS, [(c, c) for c in first],
          [(c, c) for c in fresh], days, add=12, drop=6)


def _hashed(plan: _Plan, days: int) -> None:
    """Hashed emails, steady, and the malformed rows of day 9."""
    rng = plan.rng
    emails = rng.sample(sorted(p.email_norm for p in plan.profiles if p.email_norm), 560)
    strangers = [sha256(f"reader{n}@example.net") for n in range(200)]
    first = [sha256(e) for e in emails[:400]] + strangers[:110]
    fresh = [sha256(e) for e in emails[400:]] + strangers[110:]
    rng.shuffle(first)
    rng.shuffle(fresh)
    _play(plan, "samplesEmailSha256", NEWSLETTER, TRAVEL, [(h, h) for h in first],
          [(h, h) for h in fresh], days, add=10, drop=5)
    for day, (_mode, rows) in enumerate(plan.days["samplesEmailSha256"], 1):
        count = 180 if day == REJECTS_DAY else 1
        bad = [_malformed(sha256(f"partner{day}.{n}@example.net"), NEWSLETTER, n + day)
               for n in range(count)]
        for row in bad:
            rows.insert(rng.randrange(len(rows) + 1), row)


def _encrypted(plan: _Plan, source: str, plains: list[bytes], fresh: list[bytes], sid: int,
               other: int, days: int, *, add: int, drop: int) -> None:
    src = plan.by_id[source]
    iv = bytes.fromhex(src.entry["iv"])
    encoding = src.entry["encoding"]

    def ident(plain: bytes) -> tuple[str, str]:
        read_as = _aes_id(_encrypt(plain, plan.key, iv), encoding)
        src.plain[read_as] = plain
        written = read_as.upper() if encoding == "hex" and plan.rng.random() < 0.05 else read_as
        return written, read_as

    # A few members whose IDs decrypt to nothing (not whole AES blocks): undecryptable.
    broken = [plan.rng.randbytes(24) for _ in range(12)]
    garbled = [base64.b64encode(b).decode() if encoding == "base64" else b.hex() for b in broken]
    for value in garbled:
        src.plain[value] = None
    _play(plan, source, sid, other, [ident(p) for p in plains] + [(g, g) for g in garbled],
          [ident(p) for p in fresh], days, add=add, drop=drop)


def _aes(plan: _Plan, days: int) -> None:
    """Encrypted emails (steady) and encrypted phone numbers (a segment that grows)."""
    rng = plan.rng
    emails = rng.sample(sorted(p.email_norm for p in plan.profiles if p.email_norm), 380)
    shoppers = [f"buyer{n}@example.net" for n in range(150)]
    first = [e.encode() for e in emails[:260] + shoppers[:80]]
    fresh = [e.encode() for e in emails[260:] + shoppers[80:]]
    rng.shuffle(first)
    rng.shuffle(fresh)
    _encrypted(plan, "samplesEmailAes", first, fresh, CART, SPORTS, days, add=8, drop=4)
    phones = rng.sample(sorted(p.phone_norm for p in plan.profiles if p.phone_norm), 520)
    known = set(phones)
    strangers = [f"+1{a}55501{n:02d}" for a in (905, 912, 919, 926) for n in range(100)]
    strangers = [s for s in strangers if s not in known][:160]
    first = [p.encode() for p in phones[:120] + strangers[:30]]
    fresh = [p.encode() for p in phones[120:] + strangers[30:]]
    rng.shuffle(first)
    rng.shuffle(fresh)
    _encrypted(plan, "samplesSmsAes", first, fresh, MOBILE, TRAVEL, days, add=28, drop=2)


# ---------------------------------------------------------------------------------------------
# Files and counts


def write_history(
    root: Path,
    by_id: dict[str, Source],
    profiles: list[Profile],
    key: bytes,
    region: str,
    *,
    seed: int,
    days: int = HISTORY_DAYS,
    today: dt.date | None = None,
) -> tuple[list[Path], dict[str, Any]]:
    """Write ``days`` daily deliveries under ``root/deliveries`` and say what each day must give.

    Args:
        root: the workspace folder.
        by_id: the sample data sources with their batches (already written to the drop).
        profiles: the sample profiles (already loaded).
        key: the demo key of the encrypted sources.
        region: the workspace's default region (phone numbers).
        seed: the samples' seed; the history draws from its own generator seeded from it.
        days: how many days (at least :data:`REJECTS_DAY`).
        today: the day the last delivery is counted back from (default: today, UTC).

    Returns:
        The files written, and the ``history`` object of ``samples.json``: ``folder``,
        ``profiles_load`` (the day and files of the CRM load) and ``days``, each with its
        ``day``, ``delivered_at`` (UTC), ``folder`` and the ``imports`` played that day with
        their expected counts (after the day's delivery, its ``rows_read``, ``rows_rejected``
        and ``batches_applied`` as well).
    """
    if days < REJECTS_DAY:
        raise ValueError(f"a history has at least {REJECTS_DAY} days, not {days}")
    plan = _Plan(by_id, profiles, key, region, random.Random(f"{seed}-history"))
    _visitor_and_crm(plan, days)
    _hashed(plan, days)
    _aes(plan, days)
    stamps = _stamps(days, today or dt.datetime.now(dt.UTC).date())
    folder = root / DELIVERIES
    written: list[Path] = []
    out_days = []
    for day in range(1, days + 1):
        where = folder / f"day-{day:02d}"
        for source_id in PLAYED:
            mode, rows = plan.days[source_id][day - 1]
            written += _write_batch(where, by_id[source_id].entry, mode, stamps[day - 1], rows)
        if day == CRM_LOAD_DAY:
            written += _write_profiles(where, plan.new_profiles)
        out_days.append({
            "day": day,
            "delivered_at": _utc(stamps[day - 1]),
            "folder": f"{DELIVERIES}/day-{day:02d}",
            "imports": _expected(plan, day),
        })
    load = f"{DELIVERIES}/day-{CRM_LOAD_DAY:02d}"
    doc = {
        "folder": DELIVERIES,
        "profiles_load": {"day": CRM_LOAD_DAY, "profiles": f"{load}/profiles.csv",
                          "visitors": f"{load}/visitors.csv", "count": len(plan.new_profiles)},
        "days": out_days,
    }
    return written, doc


def _expected(plan: _Plan, day: int) -> list[dict[str, Any]]:
    """The played imports' counts after ``day``, replaying the generator's own batches."""
    replay: dict[str, Source] = {}
    for source_id, source in plan.by_id.items():
        batches = list(source.batches)
        if source_id in plan.days:
            batches += [(m, [rows]) for m, rows in plan.days[source_id][:day]]
        replay[source_id] = Source(source.entry, batches, source.plain)
    people = plan.profiles + (plan.new_profiles if day >= CRM_LOAD_DAY else [])
    out = []
    for item in expectations(replay, people, plan.region):
        if PLAYED.get(item["data_source"]) != item["label"]:
            continue
        source = plan.by_id[item["data_source"]]
        # Day 1's import also applies the sample batches already in the drop.
        batches = (list(source.batches) if day == 1 else []) + [
            (m, [rows]) for m, rows in plan.days[item["data_source"]][day - 1: day]]
        rows = [r for _, parts in batches for part in parts for r in part if not r.blank]
        item["expected"].update({
            "rows_read": len(rows),
            "rows_rejected": sum(1 for r in rows if r.id is None),
            "batches_applied": len(batches),
        })
        out.append(item)
    return out


def _utc(stamp_ms: int) -> str:
    moment = dt.datetime.fromtimestamp(stamp_ms / 1000, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_batch(folder: Path, entry: dict[str, Any], mode: str, stamp: int, rows: list[Row]
                 ) -> list[Path]:
    """One part and its ``.info``, named as AAM names them by default."""
    name = f"ftp_{entry['destination_id']}_{entry['dpid']}_{mode}_{stamp}"
    content = ("\n".join(r.text for r in rows) + "\n").encode("utf-8")
    info = {
        "Files": [{"FileName": f"{name}.sync", "FileSequenceNumber": 1,
                   "FileLineCount": content.count(b"\n"), "FileByteSize": len(content),
                   "md5": hashlib.md5(content, usedforsecurity=False).hexdigest()}],
        "Totals": {"TotalNumberOfFiles": 1, "TotalNumberOfLines": content.count(b"\n"),
                   "TotalFileByteSize": len(content)},
    }
    text = json.dumps(info, indent=2) + "\n"
    return [_write(folder / f"{name}.sync", content),
            _write(folder / f"{name}.info", text.encode("utf-8"))]


def _write_profiles(folder: Path, people: list[Profile]) -> list[Path]:
    """The CRM load: ``profiles.csv`` (the columns of the sample profiles) and ``visitors.csv``."""
    head = ["profile_id", "email", "mobile_phone", "crm_id", "first_name", "country",
            "loyalty_points", "signup_date"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(head)
    writer.writerows([p.profile_id, p.email, p.mobile_phone or "", p.crm_id, p.first_name,
                      p.country, p.loyalty_points, p.signup_date.isoformat()] for p in people)
    visits = io.StringIO()
    writer = csv.writer(visits, lineterminator="\n")
    writer.writerow(["profile_id", "visitor_id"])
    writer.writerows([p.profile_id, v] for p in people for v in p.visitor_ids)
    return [_write(folder / "profiles.csv", out.getvalue().encode("utf-8")),
            _write(folder / "visitors.csv", visits.getvalue().encode("utf-8"))]


def _write(path: Path, data: bytes) -> Path:
    # In the past, as samples/__init__.py does: moved into the drop, the files have settled.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    past = time.time() - _AGE_SECONDS
    os.utime(path, (past, past))
    return path
