"""The sample workspace's AAM side: its catalog, its six data sources and their batches.

:func:`source_entries` makes the ``audtools.toml`` entries of the six sample data sources; each
``*_batches`` function then writes the rows of a source's outbound batches into its
:class:`Source`, deciding as it goes which members match a profile, which cannot be decrypted and
which rows are malformed. :func:`state_after` replays the batches (SPEC §4.3), so that
:mod:`audtools.samples.counts` knows every count by construction.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from audtools.samples.profiles import Profile, e164, new_visitor_id, sha256

__all__ = [
    "CATALOG",
    "KEY_FILE",
    "Row",
    "Source",
    "crm_batches",
    "email_aes_batches",
    "sha256_batches",
    "sms_aes_batches",
    "source_entries",
    "state_after",
    "visitor_batches",
]

KEY_FILE = "keys/demo.key"

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


@dataclass
class Row:
    """One line of a batch file: ``id`` is the ID as read, None for a rejected row."""

    text: str
    id: str | None = None
    added: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()
    blank: bool = False


@dataclass
class Source:
    """A sample data source: its ``audtools.toml`` entry, its batches and what its members are."""

    entry: dict[str, Any]
    batches: list[tuple[str, list[list[Row]]]] = field(default_factory=list)  # (mode, parts)
    # For encrypted sources: the plaintext behind each member ID (None: undecryptable).
    plain: dict[str, bytes | None] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The data source's ``id``."""
        return str(self.entry["id"])


def source_entries(rng: random.Random) -> list[Source]:
    """The six sample data sources and their ``audtools.toml`` entries (IVs from ``rng``)."""
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
        # A non-default AAM Format: 10-digit timestamps with split numbers, and a header row.
        {"id": "samplesAppVisitorId", "label": "Samples - App - Visitor ID (seconds Format)",
         "dpid": 24021, "destination_id": 56395, "reconciliation": "visitor_id",
         "outbound_name": "<SYNC_TYPE>_<ORDER_ID>_<MASTER_DPID>_<SYNC_MODE>_<TIMESTAMP>",
         "outbound_timestamp": "seconds", "outbound_header_rows": 1},
    ]
    return [Source(entry) for entry in entries]



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



# ---------------------------------------------------------------------------------------------
# Batches


def _row(ident: str, added: Iterable[int] = (), removed: Iterable[int] = (), *,
         read_as: str | None = None, sep: str = ",") -> Row:
    added, removed = tuple(added), tuple(removed)
    text = f"{ident}\t{sep.join(map(str, added))}"
    if removed:
        text += "\t" + ",".join(map(str, removed))
    return Row(text, read_as if read_as is not None else ident, added, removed)


def _rejects(good_id: str, bad_id: str) -> list[Row]:
    """One row of each kind the reader rejects: bad_segment, bad_id, no_segments, bad_syntax."""
    return [
        Row(f"{good_id}\t{HIGH_VALUE},12ab"),
        Row(f"{bad_id}\t{HIGH_VALUE}"),
        Row(f"{good_id}\t"),
        Row(f"{good_id}\t{HIGH_VALUE}\t{SPORTS}\t{TRAVEL}"),
    ]


def _mix_in(rng: random.Random, rows: list[Row], extra: list[Row]) -> list[Row]:
    for row in extra:
        rows.insert(rng.randrange(len(rows) + 1), row)
    return rows


def _segments(rng: random.Random, target: int, others: tuple[int, ...]) -> list[int]:
    chosen = [target] + [s for s in others if rng.random() < 0.3]
    return sorted(chosen)


def _background(rng: random.Random, others: tuple[int, ...]) -> list[int]:
    return sorted(rng.sample(others, rng.randint(1, len(others))))


def visitor_batches(
    rng: random.Random, source: Source, profiles: list[Profile], shared: str
) -> None:
    """A full batch in two parts and an iterative batch of visitor IDs (``shared``: an ID two
    profiles share)."""
    known = [v for p in profiles for v in p.visitor_ids]
    known = list(dict.fromkeys(known))
    taken = set(known)
    unknown = [new_visitor_id(rng, taken) for _ in range(600)]
    chosen = rng.sample(known, 1600) + unknown[:400]
    if shared not in chosen:
        chosen.append(shared)
    rng.shuffle(chosen)
    rows: list[Row] = []
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
    part2.insert(len(part2) // 2, Row("", blank=True))
    _mix_in(rng, part1, _rejects(unknown[400], unknown[401][1:]))
    _mix_in(rng, part2, _rejects(unknown[402], unknown[403] + "7")[:3])
    source.batches.append(("full", [part1, part2]))

    state = state_after([part1, part2], "full", {})
    holders = [v for v in state if HIGH_VALUE in state[v]]
    others = [v for v in state if HIGH_VALUE not in state[v]]
    fresh = [v for v in known if v not in state][:60] + unknown[410:450]
    picked = rng.sample([v for v in holders if v != shared], 140)
    changes: list[Row] = []
    changes += [_row(v, [HIGH_VALUE, ENGAGED][: rng.randint(1, 2)]) for v in fresh]
    changes += [_row(v, (), [HIGH_VALUE]) for v in picked[:80]]
    changes += [_row(v, [SPORTS], [HIGH_VALUE]) for v in picked[80:120]]
    changes += [_row(v, [HIGH_VALUE], [HIGH_VALUE]) for v in picked[120:130]]  # additions win
    changes += [_row(v, [HIGH_VALUE], [ENGAGED]) for v in rng.sample(others, 40)]
    changes += [_row(v, (), [HIGH_VALUE]) for v in unknown[450:470]]  # not a member: no effect
    rng.shuffle(changes)
    _mix_in(rng, changes, _rejects(unknown[470], "x" * 38)[:3])
    source.batches.append(("iter", [changes]))


def crm_batches(rng: random.Random, source: Source, profiles: list[Profile]) -> None:
    """A full batch, in two parts, of CRM IDs as plain declared IDs (leading zeros matter)."""
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


def sha256_batches(rng: random.Random, source: Source, profiles: list[Profile]) -> None:
    """A full batch of SHA-256 hashed emails."""
    emails = [p.email_norm for p in profiles if p.email_norm]
    picked = rng.sample(emails, 480)
    rows = []
    for n, email in enumerate(picked[:450]):
        digest = sha256(email)
        # Hashed IDs are lower-cased when read: upper-case hex still matches.
        rows.append(_row(digest.upper() if n % 25 == 0 else digest,
                         _segments(rng, NEWSLETTER, (TRAVEL,)), read_as=digest))
    # Hashed before normalising: a member that matches no profile.
    rows += [_row(sha256(e.upper()), [NEWSLETTER]) for e in picked[450:460] if e.upper() != e]
    rows += [_row(sha256(f"visitor{n}@example.net"), [NEWSLETTER]) for n in range(120)]
    rows += [_row("not-a-sha256", [NEWSLETTER]), _row("12345", [NEWSLETTER])]
    rows += [_row(sha256(e), [TRAVEL]) for e in picked[460:480]]
    rng.shuffle(rows)
    _mix_in(rng, rows, _rejects(sha256("reject@example.net"), "sha256:" + "0" * 57)[:3])
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
    source: Source,
    key: bytes,
    items: list[tuple[bytes, list[int]]],
    undecryptable: list[tuple[str, list[int]]],
    sid: int,
) -> list[Row]:
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


def email_aes_batches(
    rng: random.Random, source: Source, profiles: list[Profile], key: bytes
) -> None:
    """A full batch of AES-encrypted emails (base64), some undecryptable."""
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


def _raw(profile: Profile) -> bytes:
    return (profile.mobile_phone or "").encode()


def _other_format(profile: Profile, region: str) -> bytes:
    """The profile's number written another way than the profile wrote it."""
    raw, norm = profile.mobile_phone, profile.phone_norm or ""
    if norm.startswith("+1"):
        digits = norm[2:]
        candidates = [f"+1 ({digits[:3]}) {digits[3:6]}-{digits[6:]}", norm,
                      f"1-{digits[:3]}-{digits[3:6]}-{digits[6:]}"]
    else:
        rest = norm[3:]
        candidates = [norm, f"+33 {rest[0]} {rest[1:3]} {rest[3:5]} {rest[5:7]} {rest[7:]}",
                      f"+33-{rest}"]
    return next(c for c in candidates if c != raw and e164(c, region) == norm).encode()


def sms_aes_batches(
    rng: random.Random, source: Source, profiles: list[Profile], key: bytes, region: str
) -> None:
    """A full batch of AES-encrypted phone numbers (hex), some rewritten, some undecryptable."""
    iv = bytes.fromhex(source.entry["iv"])
    with_phone = [p for p in profiles if p.phone_norm]
    picked = rng.sample(with_phone, 370)
    items = [(_raw(p), _segments(rng, MOBILE, (TRAVEL,))) for p in picked[:260]]
    items += [(_other_format(p, region), [MOBILE]) for p in picked[260:330]]
    # The first number once more, written otherwise: two members, one address.
    items.append((_other_format(picked[0], region), [MOBILE]))
    known = {p.phone_norm for p in profiles}
    strangers = [f"+1 {a}-555-01{n:02d}" for a in range(905, 990, 7) for n in range(0, 100, 9)]
    strangers = [s for s in strangers if e164(s, region) not in known][:60]
    items += [(s.encode(), [MOBILE]) for s in strangers]
    items.append((b"  call me maybe ", [MOBILE]))  # does not parse: kept trimmed as an address
    items += [(_raw(p), [TRAVEL]) for p in picked[330:370]]
    bad = [("zz" + "00" * 15, [MOBILE]), ("abc", [MOBILE]), (rng.randbytes(24).hex(), [MOBILE])]
    rows = _encrypted_rows(rng, source, key, items, bad, MOBILE)
    rng.shuffle(rows)
    _mix_in(rng, rows, _rejects(_encrypt(b"+12015550100", key, iv).hex(), "0a:1b")[:3])
    source.batches.append(("full", [rows]))


HEADER = "ID\tSEGMENTS\tREMOVED"
"""The header row of the seconds-Format sample source (its Format's "Header" field)."""


def app_visitor_batches(rng: random.Random, source: Source, profiles: list[Profile]) -> None:
    """A full batch in two parts (split numbers after a 10-digit timestamp), each part starting
    with a header row, of visitor IDs in the Travel intenders segment."""
    known = list(dict.fromkeys(v for p in profiles for v in p.visitor_ids))
    taken = set(known)
    unknown = [new_visitor_id(rng, taken) for _ in range(60)]
    chosen = rng.sample(known, 300) + unknown[:50]
    rng.shuffle(chosen)
    rows = [_row(v, _segments(rng, TRAVEL, (SPORTS,)) if rng.random() < 0.6
                 else _background(rng, (SPORTS, MOBILE))) for v in chosen]
    _mix_in(rng, rows, _rejects(unknown[50], unknown[51][2:])[:3])
    half = len(rows) // 2
    header = Row(HEADER, blank=True)  # not a row: neither read nor rejected
    source.batches.append(("full", [[header, *rows[:half]], [header, *rows[half:]]]))


def state_after(
    parts: list[list[Row]], mode: str, state: dict[str, set[int]]
) -> dict[str, set[int]]:
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

