"""The sample workspace: made-up profiles, visitor IDs, AAM batches and a catalog, known counts.

:func:`create_samples` fills a new workspace from a fixed seed, so every file it writes is the
same, byte for byte, on every run. It adds five data sources of its own to ``audtools.toml``
(comments kept), writes a demo key, loads about 3,000 profiles with their visitor IDs, and puts
outbound batches and a ``catalog.json`` in the import drop. ``samples.json`` then says exactly what
importing each sample audience must give (SPEC §5): the counts are known by construction, since
the generator decides which members match a profile, which cannot be decrypted and which rows
are malformed; no importer is run to find them.

Example:
    >>> from audtools.workspace import init_workspace
    >>> ws = init_workspace("demo")                      # doctest: +SKIP
    >>> create_samples(ws)["profiles"]                   # doctest: +SKIP
    3000
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import gzip
import hashlib
import io
import json
import logging
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import phonenumbers
import tomlkit
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .config import CONFIG_NAME, load_config
from .errors import AudtoolsError
from .workspace import Workspace, as_workspace

__all__ = ["DEFAULT_SEED", "SAMPLES_JSON", "create_samples"]

log = logging.getLogger("audtools")

DEFAULT_SEED = 20261128
SAMPLES_JSON = "samples.json"
KEY_FILE = "keys/demo.key"
PROFILE_COUNT = 3000

# Segment IDs of the sample catalog.
HIGH_VALUE, ENGAGED, LOYALTY, NEWSLETTER, CART, MOBILE, SPORTS, TRAVEL = (
    10603117, 10603118, 10603119, 10603120, 10603121, 10603122, 10603123, 10603124,
)
TRAIT, RULE = 555, 9001
_AAM = "audience_manager"
CATALOG: list[dict[str, Any]] = [
    {"sid": HIGH_VALUE, "name": "High value visitors", "type": "segment", "source": _AAM},
    {"sid": ENGAGED, "name": "Engaged readers", "type": "segment", "source": "analytics"},
    {"sid": LOYALTY, "name": "Loyalty members", "type": "segment", "source": _AAM},
    {"sid": NEWSLETTER, "name": "Newsletter subscribers", "type": "segment", "source": _AAM},
    {"sid": CART, "name": "Cart abandoners", "type": "segment", "source": _AAM},
    {"sid": MOBILE, "name": "Mobile app users", "type": "segment", "source": "people_core_service"},
    {"sid": SPORTS, "name": "Sports fans", "type": "segment", "source": _AAM},
    {"sid": TRAVEL, "name": "Travel intenders", "type": "segment", "source": _AAM},
    {"sid": TRAIT, "name": "Loyalty tier", "type": "trait", "source": _AAM},
    {"sid": RULE, "name": "Visited the pricing page", "type": "rule", "source": _AAM},
]

FULL_TS, ITER_TS = 1764288000000, 1764374400000  # 2025-11-28 and 2025-11-29, 00:00 UTC
_ASCII_SPACE = " \t\r\n\x0b\x0c"

_FIRST = (
    "Alice Ben Chloe David Emma Farid Grace Hugo Ines Jack Karim Lea Mateo Nina Oscar Paula "
    "Quentin Rosa Sam Tara Umar Vera Will Xena Yann Zoe Elodie Noah Mia Liam"
).split()
_LAST = (
    "Smith Martin Garcia Nguyen Brown Dubois Lee Johnson Moreau Lopez Miller Bernard Wilson "
    "Petit Clark Roux Young Laurent King Fournier"
).split()
_AREA = [201 + 3 * i for i in range(60)]  # made-up area codes, all with 555-01XX numbers
_JUNK_PHONES = ("n/a", "unknown", "none", "tbd", "ask at desk")


@dataclass
class _Profile:
    profile_id: str
    email: str | None
    mobile_phone: str | None
    crm_id: str | None
    first_name: str
    country: str
    loyalty_points: int
    signup_date: dt.date
    email_norm: str | None = None
    phone_norm: str | None = None
    visitor_ids: list[str] = field(default_factory=list)


@dataclass
class _Row:
    """One line of a batch file: ``id`` is the ID as read, None for a rejected row."""

    text: str
    id: str | None = None
    added: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()
    blank: bool = False


@dataclass
class _Source:
    """A sample data source: its ``audtools.toml`` entry, its batches and what its members are."""

    entry: dict[str, Any]
    batches: list[tuple[str, list[list[_Row]]]] = field(default_factory=list)  # (mode, parts)
    # For encrypted sources: the plaintext behind each member ID (None: undecryptable).
    plain: dict[str, bytes | None] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.entry["id"])


def create_samples(
    workspace: str | os.PathLike[str] | Workspace, *, seed: int = DEFAULT_SEED
) -> dict[str, Any]:
    """Fill a new workspace with generated sample data and the counts its imports must give.

    Writes, under the workspace: five ``samples*`` data sources appended to ``audtools.toml``
    (its comments and entries kept), ``keys/demo.key`` (mode 0600), ``samples/profiles.csv`` and
    ``samples/visitors.csv`` (loaded as the profiles), ``catalog.json`` and outbound batches with
    their ``.info`` files in the import drop, and ``samples.json``. The same ``seed`` gives the
    same files, byte for byte.

    Args:
        workspace: a workspace without profiles (path or :class:`Workspace`).
        seed: the seed of the generator.

    Returns:
        A summary: ``profiles``, ``visitors`` (visitor-ID rows), ``data_sources``, ``batches``,
        ``files`` (paths relative to the workspace) and ``samples_json`` (its path).

    Raises:
        AudtoolsError: ``workspace_not_empty`` when the workspace already has profiles;
            ``samples_conflict`` when a data source of its own already uses a sample ``dpid``.

    Example:
        >>> summary = create_samples("demo")             # doctest: +SKIP
        >>> summary["samples_json"]                      # doctest: +SKIP
        '/home/me/demo/samples.json'
    """
    ws = as_workspace(workspace)
    # One lock over the whole fill: no other process loads profiles between check and load.
    with ws.lock(purpose="samples"):
        return _create(ws, seed)


def _create(ws: Workspace, seed: int) -> dict[str, Any]:
    from .profiles import load_profiles

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
    sources = _source_entries(rng)
    _check_dpids(ws, sources)

    root = ws.root
    written: list[Path] = []
    _add_data_sources(root / CONFIG_NAME, [s.entry for s in sources])
    written.append(_write_key(root / KEY_FILE, key))
    # The caller's Workspace sees the new data sources too.
    ws.config = load_config(root)

    profiles = _make_profiles(rng, region)
    shared_vid = _make_visitor_ids(rng, profiles)
    written += _write_profiles(root / "samples", profiles)
    load_profiles(ws, root / "samples/profiles.csv", visitors=root / "samples/visitors.csv")

    by_id = {s.id: s for s in sources}
    _visitor_batches(rng, by_id["samplesVisitorId"], profiles, shared_vid)
    _crm_batches(rng, by_id["samplesCrmId"], profiles)
    _sha256_batches(rng, by_id["samplesEmailSha256"], profiles)
    _email_aes_batches(rng, by_id["samplesEmailAes"], profiles, key)
    _sms_aes_batches(rng, by_id["samplesSmsAes"], profiles, key, region)

    drop = ws.config.import_drop
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
        "imports": _expectations(by_id, profiles, region),
        "batches": {s.id: _batch_totals(s) for s in sources},
    }
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


def _source_entries(rng: random.Random) -> list[_Source]:
    email_iv, sms_iv = rng.randbytes(16).hex(), rng.randbytes(16).hex()
    aes = {"encryption": "aes-cbc", "key_file": KEY_FILE}
    entries: list[dict[str, Any]] = [
        {"id": "samplesVisitorId", "label": "Samples - Recipient - Visitor ID", "dpid": 24016,
         "destination_id": 56390, "reconciliation": "visitor_id"},
        {"id": "samplesCrmId", "label": "Samples - CRM ID - Declared ID", "dpid": 24017,
         "destination_id": 56391, "reconciliation": "declared_id", "reconciliation_key": "crm_id",
         "hash": "none"},
        {"id": "samplesEmailSha256", "label": "Samples - Email - Hashed Declared ID", "dpid": 24018,
         "destination_id": 56392, "reconciliation": "declared_id", "reconciliation_key": "email",
         "channel": "email", "hash": "sha256"},
        {"id": "samplesEmailAes", "label": "Samples - Email - Encrypted Declared ID", "dpid": 24019,
         "destination_id": 56393, "reconciliation": "declared_id", "reconciliation_key": "email",
         "channel": "email", **aes, "iv": email_iv, "encoding": "base64"},
        {"id": "samplesSmsAes", "label": "Samples - SMS - Encrypted Declared ID", "dpid": 24020,
         "destination_id": 56394, "reconciliation": "declared_id",
         "reconciliation_key": "mobile_phone", "channel": "sms", **aes, "iv": sms_iv,
         "encoding": "hex"},
    ]
    return [_Source(entry) for entry in entries]


def _check_dpids(ws: Workspace, sources: list[_Source]) -> None:
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
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(tomlkit.dumps(doc), encoding="utf-8")
    os.replace(tmp, path)


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
# Identifiers: the rules of SPEC §3, written here independently of audtools.ids / audtools.crypto


def _norm_email(value: str) -> str:
    return value.strip(_ASCII_SPACE).lower()


def _e164(value: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _declared_ok(value: str) -> bool:
    return bool(value) and not any(c in value for c in "\t\n\r:")


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _encrypt(plain: bytes, key: bytes, iv: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    data = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def _decrypts(cipher: bytes, key: bytes, iv: bytes) -> bool:
    """Whether ``cipher`` decrypts under ``key`` to valid padding and UTF-8 text."""
    if not cipher or len(cipher) % 16:
        return False
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        data = unpadder.update(decryptor.update(cipher) + decryptor.finalize())
        (data + unpadder.finalize()).decode("utf-8")
    except ValueError:
        return False
    return True


def _vid(rng: random.Random, taken: set[str]) -> str:
    while True:
        # About one in ten starts with zeros, as real ECIDs do; they are significant.
        top = 10**36 if rng.random() < 0.1 else 10**38
        digits = f"{rng.randrange(top):038d}"
        if digits not in taken:
            taken.add(digits)
            return digits


# ---------------------------------------------------------------------------------------------
# Profiles and visitor IDs


def _us_phone(rng: random.Random, area: int, line: int) -> str:
    style = rng.randrange(6)
    sub = f"01{line:02d}"
    return (
        f"({area}) 555-{sub}",
        f"+1 {area}-555-{sub}",
        f"{area}-555-{sub}",
        f"{area}.555.{sub}",
        f"{area}555{sub}",
        f"+1{area}555{sub}",
    )[style]


def _fr_phone(rng: random.Random, tail: int) -> str:
    pairs = f"{tail:04d}"
    if rng.random() < 0.7:
        return f"+33 6 39 98 {pairs[:2]} {pairs[2:]}"  # a range reserved for fiction
    return f"+3363998{pairs}"


def _make_profiles(rng: random.Random, region: str) -> list[_Profile]:
    us_numbers = [(a, n) for a in _AREA for n in range(100)]
    rng.shuffle(us_numbers)
    fr_numbers = list(range(10000))
    rng.shuffle(fr_numbers)
    crm_values = rng.sample(range(1, 5_000_000), PROFILE_COUNT)
    start = dt.date(2019, 1, 1)
    profiles: list[_Profile] = []
    seen_phones: set[str] = set()
    for i in range(1, PROFILE_COUNT + 1):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        country = "FR" if rng.random() < 0.15 else "US"
        domain = rng.choice(("example.com", "example.org", "example.net"))
        email: str | None = f"{first.lower()}.{last.lower()}{i}@{domain}"
        roll = rng.random()
        if roll < 0.02:
            email = None
        elif roll < 0.03:
            email = rng.choice(("", "   "))
        elif roll < 0.25:
            email = f"{first}.{last}{i}@{domain.capitalize()}"
        elif roll < 0.30:
            email = f"  {email} "
        if first == "Elodie" and email and rng.random() < 0.5:
            email = email.replace("elodie", "Élodie").replace("Elodie", "Élodie")
        roll = rng.random()
        if roll < 0.10:
            phone: str | None = None
        elif roll < 0.13:
            phone = rng.choice(_JUNK_PHONES)
        elif country == "FR":
            phone = _fr_phone(rng, fr_numbers.pop())
        else:
            phone = _us_phone(rng, *us_numbers.pop())
        crm = None if rng.random() < 0.08 else f"{crm_values[i - 1]:08d}"
        profile = _Profile(
            profile_id=f"P{i:06d}",
            email=email,
            mobile_phone=phone,
            crm_id=crm,
            first_name=first,
            country=country,
            loyalty_points=rng.randrange(0, 5000),
            signup_date=start + dt.timedelta(days=rng.randrange(2500)),
        )
        if email is not None and _declared_ok(_norm_email(email)):
            profile.email_norm = _norm_email(email)
        if phone is not None:
            profile.phone_norm = _e164(phone, region)
            if profile.phone_norm in seen_phones:  # never happens with these ranges; be sure
                raise AssertionError(f"duplicate sample phone {profile.phone_norm}")
            if profile.phone_norm:
                seen_phones.add(profile.phone_norm)
        profiles.append(profile)
    return profiles


def _make_visitor_ids(rng: random.Random, profiles: list[_Profile]) -> str:
    """Give most profiles one visitor ID, some none and some two; one ID is shared by two."""
    taken: set[str] = set()
    for profile in profiles:
        roll = rng.random()
        count = 0 if roll < 0.10 else 2 if roll > 0.85 else 1
        profile.visitor_ids = [_vid(rng, taken) for _ in range(count)]
    owners = [p for p in profiles if len(p.visitor_ids) == 1]
    first, second = owners[7], owners[8]
    shared = first.visitor_ids[0]
    second.visitor_ids.append(shared)
    return shared


def _write_profiles(folder: Path, profiles: list[_Profile]) -> list[Path]:
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


# ---------------------------------------------------------------------------------------------
# Batches


def _row(ident: str, added: Iterable[int] = (), removed: Iterable[int] = (), *,
         read_as: str | None = None, sep: str = ",") -> _Row:
    added, removed = tuple(added), tuple(removed)
    text = f"{ident}\t{sep.join(map(str, added))}"
    if removed:
        text += "\t" + ",".join(map(str, removed))
    return _Row(text, read_as if read_as is not None else ident, added, removed)


def _rejects(good_id: str, bad_id: str) -> list[_Row]:
    """One row of each kind the reader rejects: bad_segment, bad_id, no_segments, bad_syntax."""
    return [
        _Row(f"{good_id}\t{HIGH_VALUE},12ab"),
        _Row(f"{bad_id}\t{HIGH_VALUE}"),
        _Row(f"{good_id}\t"),
        _Row(f"{good_id}\t{HIGH_VALUE}\t{SPORTS}\t{TRAVEL}"),
    ]


def _mix_in(rng: random.Random, rows: list[_Row], extra: list[_Row]) -> list[_Row]:
    for row in extra:
        rows.insert(rng.randrange(len(rows) + 1), row)
    return rows


def _segments(rng: random.Random, target: int, others: tuple[int, ...]) -> list[int]:
    chosen = [target] + [s for s in others if rng.random() < 0.3]
    return sorted(chosen)


def _background(rng: random.Random, others: tuple[int, ...]) -> list[int]:
    return sorted(rng.sample(others, rng.randint(1, len(others))))


def _visitor_batches(
    rng: random.Random, source: _Source, profiles: list[_Profile], shared: str
) -> None:
    known = [v for p in profiles for v in p.visitor_ids]
    known = list(dict.fromkeys(known))
    taken = set(known)
    unknown = [_vid(rng, taken) for _ in range(600)]
    chosen = rng.sample(known, 1600) + unknown[:400]
    if shared not in chosen:
        chosen.append(shared)
    rng.shuffle(chosen)
    rows: list[_Row] = []
    for vid in chosen:
        roll = rng.random()
        if vid == shared:
            segs = [HIGH_VALUE, ENGAGED]
        elif roll < 0.45:
            segs = _segments(rng, HIGH_VALUE, (ENGAGED, SPORTS))
        elif roll < 0.70:
            segs = _segments(rng, ENGAGED, (SPORTS, TRAVEL))
        else:
            segs = _background(rng, (SPORTS, TRAVEL))
        rows.append(_row(vid, segs, sep=rng.choice((",", ",", ",", ", "))))
    half = len(rows) // 2
    part1, part2 = rows[:half], rows[half:]
    # The same ID in both parts: its segments add up.
    part2.append(_row(part1[0].text.split("\t")[0], [TRAVEL]))
    part2.insert(len(part2) // 2, _Row("", blank=True))
    _mix_in(rng, part1, _rejects(unknown[400], unknown[401][1:]))
    _mix_in(rng, part2, _rejects(unknown[402], unknown[403] + "7")[:3])
    source.batches.append(("full", [part1, part2]))

    state = _state([part1, part2], "full", {})
    holders = [v for v in state if HIGH_VALUE in state[v]]
    others = [v for v in state if HIGH_VALUE not in state[v]]
    fresh = [v for v in known if v not in state][:60] + unknown[410:450]
    picked = rng.sample([v for v in holders if v != shared], 140)
    changes: list[_Row] = []
    changes += [_row(v, [HIGH_VALUE, ENGAGED][: rng.randint(1, 2)]) for v in fresh]
    changes += [_row(v, (), [HIGH_VALUE]) for v in picked[:80]]
    changes += [_row(v, [SPORTS], [HIGH_VALUE]) for v in picked[80:120]]
    changes += [_row(v, [HIGH_VALUE], [HIGH_VALUE]) for v in picked[120:130]]  # additions win
    changes += [_row(v, [HIGH_VALUE], [ENGAGED]) for v in rng.sample(others, 40)]
    changes += [_row(v, (), [HIGH_VALUE]) for v in unknown[450:470]]  # not a member: no effect
    rng.shuffle(changes)
    _mix_in(rng, changes, _rejects(unknown[470], "x" * 38)[:3])
    source.batches.append(("iter", [changes]))


def _crm_batches(rng: random.Random, source: _Source, profiles: list[_Profile]) -> None:
    crms = [p.crm_id for p in profiles if p.crm_id]
    taken = set(crms)
    unknown: list[str] = []
    while len(unknown) < 130:
        value = f"{rng.randrange(5_000_000, 9_999_999):08d}"
        if value not in taken:
            taken.add(value)
            unknown.append(value)
    members = rng.sample(crms, 400)
    stripped = [c.lstrip("0") for c in members[350:] if c.startswith("0")][:12]  # zeros matter
    rows = [_row(c, _segments(rng, LOYALTY, (SPORTS,))) for c in members[:350] + unknown[:100]]
    rows += [_row(c, [LOYALTY]) for c in stripped]
    rows += [_row(c, _background(rng, (SPORTS, TRAVEL))) for c in unknown[100:125]]
    rng.shuffle(rows)
    _mix_in(rng, rows, _rejects(unknown[125], "crm:" + unknown[126])[:3])
    half = len(rows) // 2
    source.batches.append(("full", [rows[:half], rows[half:]]))


def _sha256_batches(rng: random.Random, source: _Source, profiles: list[_Profile]) -> None:
    emails = [p.email_norm for p in profiles if p.email_norm]
    picked = rng.sample(emails, 480)
    rows = []
    for n, email in enumerate(picked[:450]):
        digest = _sha256(email)
        # Hashed IDs are lower-cased when read: upper-case hex still matches.
        rows.append(_row(digest.upper() if n % 25 == 0 else digest,
                         _segments(rng, NEWSLETTER, (TRAVEL,)), read_as=digest))
    # Hashed before normalising: a member that matches no profile.
    rows += [_row(_sha256(e.upper()), [NEWSLETTER]) for e in picked[450:460] if e.upper() != e]
    rows += [_row(_sha256(f"visitor{n}@example.net"), [NEWSLETTER]) for n in range(120)]
    rows += [_row("not-a-sha256", [NEWSLETTER]), _row("12345", [NEWSLETTER])]
    rows += [_row(_sha256(e), [TRAVEL]) for e in picked[460:480]]
    rng.shuffle(rows)
    _mix_in(rng, rows, _rejects(_sha256("reject@example.net"), "sha256:" + "0" * 57)[:3])
    source.batches.append(("full", [rows]))


def _aes_id(cipher: bytes, encoding: str) -> str:
    return base64.b64encode(cipher).decode("ascii") if encoding == "base64" else cipher.hex()


def _wrong_key_cipher(rng: random.Random, plain: bytes, key: bytes, iv: bytes) -> bytes:
    while True:
        cipher = _encrypt(plain, rng.randbytes(32), iv)
        if not _decrypts(cipher, key, iv):
            return cipher


def _encrypted_rows(
    rng: random.Random,
    source: _Source,
    key: bytes,
    items: list[tuple[bytes, list[int]]],
    undecryptable: list[tuple[str, list[int]]],
    sid: int,
) -> list[_Row]:
    """Rows of encrypted members, recording each member's plaintext (None: undecryptable)."""
    iv = bytes.fromhex(source.entry["iv"])
    encoding = source.entry["encoding"]
    rows = []
    for n, (plain, segs) in enumerate(items):
        ident = _aes_id(_encrypt(plain, key, iv), encoding)
        written = ident.upper() if encoding == "hex" and n % 30 == 0 else ident
        rows.append(_row(written, segs, read_as=ident))
        source.plain[ident] = plain
    for ident, segs in undecryptable:
        read_as = ident.lower() if encoding == "hex" else ident
        rows.append(_row(ident, segs, read_as=read_as))
        source.plain[read_as] = None
    for plain in (b"wrong key 1", b"someone@example.net", b"another.one@example.org"):
        ident = _aes_id(_wrong_key_cipher(rng, plain, key, iv), encoding)
        rows.append(_row(ident, [sid]))  # encrypted under another key: wrong padding
        source.plain[ident] = None
    return rows


def _email_aes_batches(
    rng: random.Random, source: _Source, profiles: list[_Profile], key: bytes
) -> None:
    iv = bytes.fromhex(source.entry["iv"])
    emails = [p.email_norm for p in profiles if p.email_norm]
    picked = rng.sample(emails, 440)
    items = [(e.encode(), _segments(rng, CART, (SPORTS,))) for e in picked[:360]]
    # Written otherwise than normalised: they decrypt, normalise and match all the same.
    items += [(f" {e.upper()}\t".encode(), [CART]) for e in picked[360:390]]
    items.append((picked[0].title().encode(), [CART]))  # a second member for the same address
    items += [(f"shopper{n}@example.net".encode(), [CART]) for n in range(110)]
    items += [(e.encode(), _background(rng, (SPORTS, TRAVEL))) for e in picked[390:440]]
    broken = [
        (b"\xff\xfeinvalid@example.com", "not UTF-8"),
        (b"   ", "empty once trimmed"),
        (b"a:b@example.com", "breaks the declared-ID rule"),
    ]
    items_bad = [(_aes_id(_encrypt(p, key, iv), "base64"), [CART]) for p, _ in broken]
    items_bad += [("not-base64!", [CART]), ("%%%%", [CART]),
                  (base64.b64encode(rng.randbytes(20)).decode(), [CART])]  # not whole blocks
    rows = _encrypted_rows(rng, source, key, items, items_bad, CART)
    rng.shuffle(rows)
    _mix_in(rng, rows, _rejects(_aes_id(_encrypt(b"x@example.com", key, iv), "base64"),
                                "bad:id")[:3])
    source.batches.append(("full", [rows]))


def _raw(profile: _Profile) -> bytes:
    return (profile.mobile_phone or "").encode()


def _other_format(profile: _Profile, region: str) -> bytes:
    """The profile's number written another way than the profile wrote it."""
    raw, e164 = profile.mobile_phone, profile.phone_norm or ""
    if e164.startswith("+1"):
        digits = e164[2:]
        candidates = [f"+1 ({digits[:3]}) {digits[3:6]}-{digits[6:]}", e164,
                      f"1-{digits[:3]}-{digits[3:6]}-{digits[6:]}"]
    else:
        rest = e164[3:]
        candidates = [e164, f"+33 {rest[0]} {rest[1:3]} {rest[3:5]} {rest[5:7]} {rest[7:]}",
                      f"+33-{rest}"]
    return next(c for c in candidates if c != raw and _e164(c, region) == e164).encode()


def _sms_aes_batches(
    rng: random.Random, source: _Source, profiles: list[_Profile], key: bytes, region: str
) -> None:
    iv = bytes.fromhex(source.entry["iv"])
    with_phone = [p for p in profiles if p.phone_norm]
    picked = rng.sample(with_phone, 370)
    items = [(_raw(p), _segments(rng, MOBILE, (TRAVEL,))) for p in picked[:260]]
    items += [(_other_format(p, region), [MOBILE]) for p in picked[260:330]]
    # The first number once more, written otherwise: two members, one address.
    items.append((_other_format(picked[0], region), [MOBILE]))
    known = {p.phone_norm for p in profiles}
    strangers = [f"+1 {a}-555-01{n:02d}" for a in range(905, 990, 7) for n in range(0, 100, 9)]
    strangers = [s for s in strangers if _e164(s, region) not in known][:60]
    items += [(s.encode(), [MOBILE]) for s in strangers]
    items.append((b"  call me maybe ", [MOBILE]))  # does not parse: kept trimmed as an address
    items += [(_raw(p), [TRAVEL]) for p in picked[330:370]]
    bad = [("zz" + "00" * 15, [MOBILE]), ("abc", [MOBILE]), (rng.randbytes(24).hex(), [MOBILE])]
    rows = _encrypted_rows(rng, source, key, items, bad, MOBILE)
    rng.shuffle(rows)
    _mix_in(rng, rows, _rejects(_encrypt(b"+12015550100", key, iv).hex(), "0a:1b")[:3])
    source.batches.append(("full", [rows]))


def _state(parts: list[list[_Row]], mode: str, state: dict[str, set[int]]) -> dict[str, set[int]]:
    """The segment state after a batch (SPEC §4.3), from the rows the generator wrote."""
    rows = [r for part in parts for r in part if r.id is not None and not r.blank]
    if mode == "full":
        state = {}
        for r in rows:
            state.setdefault(r.id, set()).update(r.added)  # type: ignore[arg-type]
        return state
    state = {k: set(v) for k, v in state.items()}
    removed: dict[str, set[int]] = {}
    added: dict[str, set[int]] = {}
    for r in rows:
        removed.setdefault(r.id, set()).update(r.removed)  # type: ignore[arg-type]
        added.setdefault(r.id, set()).update(r.added)  # type: ignore[arg-type]
    for ident in removed:
        state[ident] = (state.get(ident, set()) - removed[ident]) | added[ident]
    return state


def _members(source: _Source, sid: int) -> list[str]:
    state: dict[str, set[int]] = {}
    for mode, parts in source.batches:
        state = _state(parts, mode, state)
    return sorted(ident for ident, sids in state.items() if sid in sids)


def _batch_totals(source: _Source) -> dict[str, int]:
    rows = [r for _, parts in source.batches for part in parts for r in part if not r.blank]
    return {
        "rows_read": len(rows),
        "rows_rejected": sum(1 for r in rows if r.id is None),
        "batches": len(source.batches),
    }


def _write_batch(
    drop: Path, source: _Source, mode: str, parts: list[list[_Row]]
) -> list[Path]:
    """Write a batch's parts and its ``.info``; the first of several parts is gzipped."""
    entry = source.entry
    stamp = FULL_TS if mode == "full" else ITER_TS
    root = f"ftp_{entry['destination_id']}_{entry['dpid']}_{mode}_{stamp}"
    written: list[Path] = []
    files: list[dict[str, Any]] = []
    for n, part in enumerate(parts, 1):
        content = ("\n".join(r.text for r in part) + "\n").encode("utf-8")
        if len(parts) == 1:
            name = f"{root}.sync"
        elif source.id == "samplesCrmId":
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


# ---------------------------------------------------------------------------------------------
# Expected counts


def _expectations(
    by_id: dict[str, _Source], profiles: list[_Profile], region: str
) -> list[dict[str, Any]]:
    owners: dict[str, set[str]] = {}
    for p in profiles:
        for v in p.visitor_ids:
            owners.setdefault(v, set()).add(p.profile_id)
    crm = {p.crm_id.strip(_ASCII_SPACE): {p.profile_id} for p in profiles if p.crm_id}
    hashed = {_sha256(p.email_norm): {p.profile_id} for p in profiles if p.email_norm}
    emails = {p.email_norm: {p.profile_id} for p in profiles if p.email_norm}
    phones = {p.phone_norm: {p.profile_id} for p in profiles if p.phone_norm}

    def plain(source: str, sid: int, keys: dict[str, set[str]]) -> dict[str, int]:
        members = _members(by_id[source], sid)
        matched = [m for m in members if m in keys]
        found: set[str] = set().union(*(keys[m] for m in matched))
        return _counts("experience_cloud", len(members), 0, len(matched), len(found), 0)

    def encrypted(source: str, sid: int, keys: dict[str, set[str]], file: bool) -> dict[str, int]:
        src = by_id[source]
        members = _members(src, sid)
        addresses: list[str] = []
        for m in members:
            text = src.plain[m]
            address = _address(text, src.entry["channel"], region) if text is not None else None
            if address is not None:
                addresses.append(address)
        matched = [a for a in addresses if a in keys]
        undecryptable = len(members) - len(addresses)
        if file:
            distinct = len(set(addresses))
            return _counts("file", len(members), undecryptable, len(matched), 0, distinct)
        found: set[str] = set().union(*(keys[a] for a in matched))
        return _counts("experience_cloud", len(members), undecryptable, len(matched), len(found), 0)

    def entry(
        label: str, sid: int, source: str, force: bool, expected: dict[str, int]
    ) -> dict[str, Any]:
        return {"label": label, "shared_audience": sid, "data_source": source,
                "force_reconciliation": force, "expected": expected}

    return [
        entry("Samples - High value visitors", HIGH_VALUE, "samplesVisitorId", False,
              plain("samplesVisitorId", HIGH_VALUE, owners)),
        entry("Samples - Engaged readers", ENGAGED, "samplesVisitorId", False,
              plain("samplesVisitorId", ENGAGED, owners)),
        entry("Samples - Loyalty members", LOYALTY, "samplesCrmId", False,
              plain("samplesCrmId", LOYALTY, crm)),
        entry("Samples - Newsletter subscribers", NEWSLETTER, "samplesEmailSha256", False,
              plain("samplesEmailSha256", NEWSLETTER, hashed)),
        entry("Samples - Cart abandoners (file)", CART, "samplesEmailAes", False,
              encrypted("samplesEmailAes", CART, emails, True)),
        entry("Samples - Cart abandoners (reconciled)", CART, "samplesEmailAes", True,
              encrypted("samplesEmailAes", CART, emails, False)),
        entry("Samples - Mobile app users (file)", MOBILE, "samplesSmsAes", False,
              encrypted("samplesSmsAes", MOBILE, phones, True)),
        entry("Samples - Mobile app users (reconciled)", MOBILE, "samplesSmsAes", True,
              encrypted("samplesSmsAes", MOBILE, phones, False)),
    ]


def _address(plain: bytes, channel: str, region: str) -> str | None:
    """A decrypted member's normalised address, or None when it counts as undecryptable."""
    try:
        text = plain.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if channel == "sms":
        # A number that does not parse is kept trimmed (SPEC §5 step 5).
        address = _e164(text, region) or text.strip(_ASCII_SPACE)
    else:
        address = _norm_email(text)
    return address if _declared_ok(address) else None


def _counts(kind: str, members: int, undecryptable: int, matched: int, profiles: int,
            addresses: int) -> dict[str, Any]:
    return {
        "type": kind,
        "members": members,
        "undecryptable": undecryptable,
        "matched": matched,
        "unmatched": members - undecryptable - matched,
        "profiles": profiles,
        "addresses": addresses,
    }


# ---------------------------------------------------------------------------------------------
# Files


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
