"""The sample workspace's made-up people: profiles, visitor IDs, and the identifier rules.

:func:`make_profiles` draws about 3,000 profiles (emails and phone numbers in the many ways people
write them, some missing or junk) and :func:`make_visitor_ids` gives them visitor IDs. The rules
of SPEC §3 that the samples need (:func:`norm_email`, :func:`e164`, :func:`declared_ok`,
:func:`sha256`) are written here independently of :mod:`audtools.columns.identifiers`, so that the counts the
samples promise check the importer rather than repeat it. Everything personal is made up.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from dataclasses import dataclass, field

import phonenumbers

__all__ = [
    "ASCII_SPACE",
    "PROFILE_COUNT",
    "Profile",
    "declared_ok",
    "e164",
    "make_profiles",
    "make_visitor_ids",
    "new_visitor_id",
    "norm_email",
    "sha256",
]

PROFILE_COUNT = 3000

ASCII_SPACE = " \t\r\n\x0b\x0c"

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
class Profile:
    """One made-up profile: the columns written to ``profiles.csv``, its normalised email and
    phone (None when it has none that counts) and its visitor IDs."""

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



# ---------------------------------------------------------------------------------------------
# Identifiers: the rules of SPEC §3, written here independently of audtools.columns.identifiers / audtools.columns.aes


def norm_email(value: str) -> str:
    """An email as SPEC §3 normalises it: trimmed of ASCII whitespace, lower-cased."""
    return value.strip(ASCII_SPACE).lower()


def e164(value: str, region: str) -> str | None:
    """A phone number in E.164 (phonenumbers, read in ``region``); None when it does not parse."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def declared_ok(value: str) -> bool:
    """Whether ``value`` may be a declared ID (SPEC §3): not empty, without tab, line end (LF,
    CR), ``:`` or ``%3A`` in any case."""
    return bool(value) and not any(part in value for part in ("\t", "\n", "\r", ":", "%3A", "%3a"))


def sha256(value: str) -> str:
    """The lower-case hex SHA-256 of ``value``'s UTF-8 bytes."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def new_visitor_id(rng: random.Random, taken: set[str]) -> str:
    """A made-up visitor ID (38 digits) not in ``taken``, which it joins."""
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


def make_profiles(rng: random.Random, region: str) -> list[Profile]:
    """:data:`PROFILE_COUNT` made-up profiles, their emails and phones normalised for ``region``."""
    us_numbers = [(a, n) for a in _AREA for n in range(100)]
    rng.shuffle(us_numbers)
    fr_numbers = list(range(10000))
    rng.shuffle(fr_numbers)
    crm_values = rng.sample(range(1, 5_000_000), PROFILE_COUNT)
    start = dt.date(2019, 1, 1)
    profiles: list[Profile] = []
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
        profile = Profile(
            profile_id=f"P{i:06d}",
            email=email,
            mobile_phone=phone,
            crm_id=crm,
            first_name=first,
            country=country,
            loyalty_points=rng.randrange(0, 5000),
            signup_date=start + dt.timedelta(days=rng.randrange(2500)),
        )
        if email is not None and declared_ok(norm_email(email)):
            profile.email_norm = norm_email(email)
        if phone is not None:
            profile.phone_norm = e164(phone, region)
            if profile.phone_norm in seen_phones:  # never happens with these ranges; be sure
                raise AssertionError(f"duplicate sample phone {profile.phone_norm}")
            if profile.phone_norm:
                seen_phones.add(profile.phone_norm)
        profiles.append(profile)
    return profiles


def make_visitor_ids(rng: random.Random, profiles: list[Profile]) -> str:
    """Give most profiles one visitor ID, some none and some two; one ID is shared by two."""
    taken: set[str] = set()
    for profile in profiles:
        roll = rng.random()
        count = 0 if roll < 0.10 else 2 if roll > 0.85 else 1
        profile.visitor_ids = [new_visitor_id(rng, taken) for _ in range(count)]
    owners = [p for p in profiles if len(p.visitor_ids) == 1]
    first, second = owners[7], owners[8]
    shared = first.visitor_ids[0]
    second.visitor_ids.append(shared)
    return shared

