"""phonenumbers' region data, as the tables the phone fast path reads (:mod:`audtools.columns.phones`).

For each region, and each calling code, :func:`meta_for_region` and :func:`meta_for_code` keep
what parse() consults: the national prefix and whether it has a transform rule, the general
number pattern, the international prefix, which national-number lengths survive the stripping of
a national prefix or are too long, and which first digits may start a match of either prefix.
:func:`country_codes` maps every number's first digits to its calling code. Tables are built
once per region or code, from phonenumbers' own metadata.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from phonenumbers import PhoneMetadata
from phonenumbers.phonenumberutil import (
    COUNTRY_CODE_TO_REGION_CODE,
    region_code_for_country_code,
)

__all__ = ["MAX_INPUT", "CountryCodes", "Meta", "country_codes", "meta_for_code", "meta_for_region"]

MAX_INPUT = 250
"""The longest value, in bytes, that the fast path reads (parse() refuses longer ones)."""


@dataclass(frozen=True)
class Meta:
    """What the fast path needs of one region's (or calling code's) metadata."""

    country_code: int
    prefix: str | None  # national_prefix_for_parsing
    transform: bool  # national_prefix_transform_rule is set
    general: str | None  # general_desc.national_number_pattern
    idd: str | None  # international_prefix
    keep_stripped: np.ndarray  # by length: _test_number_length not TOO_SHORT/LOCAL/INVALID
    too_long: np.ndarray  # by length: _test_number_length is TOO_LONG
    prefix_first: np.ndarray  # by byte: may start a match of the national prefix
    idd_first: np.ndarray  # by byte: may start a match of the international prefix


def _length_tables(metadata: PhoneMetadata) -> tuple[np.ndarray, np.ndarray]:
    """phonenumbers' ``_test_number_length(number, metadata)`` (type UNKNOWN), by length."""
    desc = metadata.general_desc
    possible = list(desc.possible_length or ()) if desc is not None else []
    local = set(desc.possible_length_local_only or ()) if desc is not None else set()
    keep = np.zeros(MAX_INPUT + 1, dtype=bool)
    too_long = np.zeros(MAX_INPUT + 1, dtype=bool)
    for n in range(MAX_INPUT + 1):
        if not possible or possible[0] == -1:
            result = "invalid"
        elif n in local:
            result = "local"
        elif possible[0] == n:
            result = "possible"
        elif possible[0] > n:
            result = "too_short"
        elif possible[-1] < n:
            result = "too_long"
        elif n in possible[1:]:
            result = "possible"
        else:
            result = "invalid"
        keep[n] = result not in ("too_short", "local", "invalid")
        too_long[n] = result == "too_long"
    return keep, too_long


@functools.cache
def meta_for_region(region: str) -> Meta | None:
    """The tables of a region (e.g. ``"US"``), or None for a region phonenumbers does not know.

    Args:
        region: a two-letter region code.

    Returns:
        The region's :class:`Meta`, built once and cached.
    """
    metadata = PhoneMetadata.metadata_for_region(region, None)
    return None if metadata is None else _meta_of(metadata)


@functools.cache
def meta_for_code(country_code: int) -> Meta:
    """The tables of a calling code, from its main region's metadata (or the code's own).

    Args:
        country_code: a calling code phonenumbers knows (e.g. ``44``).

    Returns:
        The code's :class:`Meta`, built once and cached.
    """
    region = region_code_for_country_code(country_code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    assert metadata is not None, "a known calling code has metadata"
    return _meta_of(metadata)


def _meta_of(metadata: PhoneMetadata) -> Meta:
    keep, too_long = _length_tables(metadata)
    general = metadata.general_desc.national_number_pattern if metadata.general_desc else None
    assert metadata.country_code is not None
    return Meta(
        country_code=metadata.country_code,
        prefix=metadata.national_prefix_for_parsing or None,
        transform=bool(metadata.national_prefix_transform_rule),
        general=general or None,
        idd=metadata.international_prefix or None,
        keep_stripped=keep,
        too_long=too_long,
        prefix_first=_byte_table(_first_digits(metadata.national_prefix_for_parsing)),
        idd_first=_byte_table(_first_digits(metadata.international_prefix)),
    )


def _byte_table(digits: frozenset[str]) -> np.ndarray:
    table = np.zeros(256, dtype=bool)
    table[[ord(d) for d in digits]] = True
    return table


_ALL_DIGITS = frozenset("0123456789")


def _first_digits(pattern: str | None) -> frozenset[str]:
    """The digits that can start a match of a phone-metadata regex: all ten when it can match
    the empty string or uses syntax beyond digits, ``\\d``, classes, groups, ``|``, ``?``,
    ``{m,n}`` and ``$`` (a safe answer: it only sends more values to the regex)."""
    if not pattern:
        return frozenset()
    parser = _FirstDigits(pattern)
    try:
        first, nullable = parser.alternation()
        if parser.pos != len(pattern):
            raise _Unknown
    except (_Unknown, ValueError, IndexError):
        return _ALL_DIGITS
    return _ALL_DIGITS if nullable else first


class _Unknown(Exception):
    """Syntax :func:`_first_digits` does not follow."""


class _FirstDigits:
    """A recursive-descent reading of a regex: each step returns the digits that can start its
    match and whether it can match the empty string."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.pos = 0

    def alternation(self) -> tuple[frozenset[str], bool]:
        first, nullable = self.sequence()
        while self.pos < len(self.pattern) and self.pattern[self.pos] == "|":
            self.pos += 1
            more, more_nullable = self.sequence()
            first, nullable = first | more, nullable or more_nullable
        return first, nullable

    def sequence(self) -> tuple[frozenset[str], bool]:
        first: frozenset[str] = frozenset()
        nullable = True
        while self.pos < len(self.pattern) and self.pattern[self.pos] not in "|)":
            atom_first, atom_nullable = self.atom()
            atom_nullable = self.quantifier() or atom_nullable
            if nullable:
                first |= atom_first
            nullable = nullable and atom_nullable
        return first, nullable

    def atom(self) -> tuple[frozenset[str], bool]:
        pattern = self.pattern
        c = pattern[self.pos]
        self.pos += 1
        if c.isdigit() and c.isascii():
            return frozenset(c), False
        if c == "\\" and pattern[self.pos : self.pos + 1] == "d":
            self.pos += 1
            return _ALL_DIGITS, False
        if c == "$":
            return frozenset(), True
        if c == "[":
            end = pattern.index("]", self.pos)
            body, self.pos = pattern[self.pos : end], end + 1
            return _class_digits(body), False
        if c == "(":
            if pattern.startswith("?:", self.pos):
                self.pos += 2
            elif pattern[self.pos : self.pos + 1] == "?":
                raise _Unknown
            inner = self.alternation()
            if pattern[self.pos : self.pos + 1] != ")":
                raise _Unknown
            self.pos += 1
            return inner
        raise _Unknown

    def quantifier(self) -> bool:
        """Skip a quantifier; True when it allows zero repetitions."""
        pattern, pos = self.pattern, self.pos
        if pos < len(pattern) and pattern[pos] in "?*":
            self.pos += 1
            return True
        if pos < len(pattern) and pattern[pos] == "+":
            self.pos += 1
            return False
        if pos < len(pattern) and pattern[pos] == "{":
            end = pattern.index("}", pos)
            low = pattern[pos + 1 : end].split(",")[0]
            self.pos = end + 1
            if not low.isdigit():
                raise _Unknown
            return int(low) == 0
        return False


def _class_digits(body: str) -> frozenset[str]:
    """The digits of a character class's body (``0-9``, ``2-57``); _Unknown for anything else."""
    if not body or any(ch not in "0123456789-" for ch in body):
        raise _Unknown
    digits = set()
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            digits |= {chr(d) for d in range(ord(body[i]), ord(body[i + 2]) + 1)}
            i += 3
        else:
            digits.add(body[i])
            i += 1
    return frozenset(digits) & _ALL_DIGITS


@dataclass(frozen=True)
class CountryCodes:
    """Calling codes by their first three digits (codes are prefix-free, so three digits
    decide), and an RE2 pattern matching digits whose national prefix may start right after
    their calling code."""

    length: np.ndarray  # by 3-digit prefix: length of the calling code, 0 if unknown
    code: np.ndarray  # by 3-digit prefix: the calling code
    may_hit: np.ndarray  # by 4-digit prefix: the national prefix may start after the code
    prefix_hit: str


@functools.lru_cache(maxsize=1)
def country_codes() -> CountryCodes:
    """Every calling code phonenumbers knows, as :class:`CountryCodes` (built once)."""
    length = np.zeros(1000, dtype=np.int64)
    code_of = np.zeros(1000, dtype=np.int64)
    hits = []
    for code in sorted(COUNTRY_CODE_TO_REGION_CODE, key=str):
        text = str(code)
        span = 10 ** (3 - len(text))
        start = int(text) * span
        length[start : start + span] = len(text)
        code_of[start : start + span] = code
        meta = meta_for_code(code)
        if meta.prefix:
            hits.append(f"{text}(?:{meta.prefix})")
    may_hit = np.zeros(10_000, dtype=bool)
    for prefix in range(10_000):
        size = length[prefix // 10]
        if size:
            text = f"{prefix:04d}"
            may_hit[prefix] = meta_for_code(int(code_of[prefix // 10])).prefix_first[
                ord(text[size])
            ]
    return CountryCodes(length, code_of, may_hit, "^(?:" + "|".join(hits) + ")")

