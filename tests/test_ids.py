"""Identifier rules: visitor IDs, normalisers, SHA-256 and declared IDs (SPEC §3)."""

from __future__ import annotations

import hashlib
import random

import phonenumbers
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audtools.columns import aes as crypto
from audtools.columns import identifiers as ids
from audtools.errors import AudtoolsError, KeyProblem
from audtools.samples.profiles import declared_ok

ASCII_WS = " \t\r\n\x0b\x0c"
CHECK_EMAIL = "johndoe@example.com"
CHECK_SHA256 = "55e79200c1635b37ad31a378c39feb12f120f116625093a19bc32fff15041149"
KEY = bytes(range(32))
IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
REGIONS = ["US", "FR", "GB"]
# Regions whose national prefixes carry transform rules or odd patterns, checked in bulk.
MORE_REGIONS = ["DE", "IT", "AR", "BR", "JP", "MX", "RU", "CA", "IN", "AU", "SM"]
SLOW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference_phone(value: str | None, region: str) -> str | None:
    """phonenumbers on one trimmed value: what normalise_phone must give."""
    if value is None:
        return None
    try:
        number = phonenumbers.parse(value.strip(ASCII_WS), region)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def as_list(arr: pa.Array) -> list[str | None]:
    return arr.to_pylist()


# ---------------------------------------------------------------------------------------------
# Strategies

_digits = st.text(alphabet="0123456789", min_size=0, max_size=20)
_separated = st.lists(
    st.tuples(
        st.sampled_from("0123456789"), st.sampled_from(["", "", "", " ", "-", ".", "(", ")"])
    ),
    min_size=0,
    max_size=20,
).map(lambda pairs: "".join(d + s for d, s in pairs))
_prefixes = st.sampled_from(
    ["", "", "+", "+", "+1", "+33", "+44", "+44 0", "+0", "00", "0033", "011", "1", "0", "44", "33",
     "+54 9", "+55", "+81", "+39 0", "+7 8", "+800", "+999", "(", " ", "\t"]
)  # fmt: skip


def _example(region: str, kind: int, fmt: int, tail: str) -> str:
    number = phonenumbers.example_number_for_type(region, kind)
    if number is None:
        return tail
    text = phonenumbers.format_number(number, fmt)
    return text[: max(len(text) - len(tail), 1)] + tail


_examples = st.builds(
    _example,
    st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)),
    st.sampled_from([phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]),
    st.sampled_from([0, 1, 2]),  # E164, INTERNATIONAL, NATIONAL
    st.text(alphabet="0123456789", max_size=3),
)
_junk = st.text(
    alphabet=st.sampled_from(list("0123456789 +-().x#;,/:abcEXT\u0660\u0661\uff0b\uff11\xa0\t")),
    max_size=25,
)
phones = st.one_of(
    st.builds(lambda p, d: p + d, _prefixes, _digits),
    st.builds(lambda p, d: p + d, _prefixes, _separated),
    _examples,
    _junk,
    st.text(max_size=10),
)
phone_lists = st.lists(st.one_of(st.none(), phones), max_size=40)


# ---------------------------------------------------------------------------------------------
# Visitor IDs and the declared-ID rule


def test_visitor_id_rule() -> None:
    values = [
        "0" * 38,
        "12345678901234567890123456789012345678",
        "1" * 37,
        "1" * 39,
        "\u0661" * 38,  # Arabic-Indic digits
        "\uff11" * 38,  # full-width digits
        "1" * 37 + "\u0661",
        " " + "1" * 37,
        "1" * 38 + "\n",
        "",
        None,
    ]
    assert as_list(ids.is_visitor_id(pa.array(values))) == [True, True] + [False] * 9


@given(st.text(max_size=45))
def test_visitor_id_matches_definition(value: str) -> None:
    expected = len(value) == 38 and all(c in "0123456789" for c in value)
    assert ids.is_visitor_id(pa.array([value]))[0].as_py() is expected


def test_declared_id_rule() -> None:
    values = ["abc", "a:b", "a\tb", "a\nb", "", None, "a\rb", "x" * 300, "é", "a%3Ab", "a%3ab",
              "%3", "a%3", "%3b", "%%3A", "%é3A", "é%3a"]
    assert as_list(ids.is_declared_id(pa.array(values))) == [
        True, False, False, False, False, False, False, True, True, False, False,
        True, True, True, False, True, False,
    ]  # fmt: skip


def test_an_encoded_colon_is_found_only_inside_one_value() -> None:
    """'%3' at the end of a value followed by a value starting with 'A' is no '%3A'."""
    arr = pa.array(["ab%3", "Ab", "%3", "a", "x%3A"])
    assert as_list(ids.is_declared_id(arr)) == [True, True, True, True, False]
    assert as_list(ids.is_declared_id(arr.slice(2, 2))) == [True, True]


def _spec_rule(value: str | None) -> bool:
    """SPEC §3 as written: not empty; no tab, newline (LF, CR), ':' or '%3A' in any case."""
    if value is None or value == "":
        return False
    return not any(c in value for c in "\t\n\r:") and "%3a" not in value.replace("A", "a")


# Text made of the characters the rule is about, among others.
_RULE_TEXT = st.text(alphabet=st.sampled_from(list("ab:\t\n\r%3aAé\x00 ")), max_size=8)


@given(st.lists(st.one_of(st.none(), _RULE_TEXT), max_size=20),
       st.integers(min_value=0, max_value=5))
def test_declared_id_rule_matches_definition(values: list[str | None], skip: int) -> None:
    """The byte scan agrees with the rule on any mix, on a slice of the array too."""
    arr = pa.array(values, pa.string()).slice(min(skip, len(values)))
    assert as_list(ids.is_declared_id(arr)) == [_spec_rule(v) for v in arr.to_pylist()]


@given(st.lists(st.one_of(_RULE_TEXT, st.text(max_size=8)), max_size=20))
def test_the_sample_generator_and_the_package_agree_on_declared_ids(values: list[str]) -> None:
    """samples.json is computed with the generator's own rule: it must be the package's."""
    got = as_list(ids.is_declared_id(pa.array(values, pa.string())))
    assert got == [declared_ok(v) for v in values]
    assert got == [_spec_rule(v) for v in values]


# ---------------------------------------------------------------------------------------------
# Trimming and the simple normalisers


def test_trim_only_ascii_whitespace() -> None:
    values = [" \t\r\n\x0b\x0ca b \x0c\x0b\n\r\t ", "\xa0x\xa0", "\u2003y\u3000", None, "", "  "]
    assert as_list(ids.trim_ascii(pa.array(values))) == [
        "a b", "\xa0x\xa0", "\u2003y\u3000", None, "", "",
    ]  # fmt: skip


@given(st.lists(st.one_of(st.none(), st.text()), max_size=20))
def test_trim_equals_python_strip(values: list[str | None]) -> None:
    expected = [None if v is None else v.strip(ASCII_WS) for v in values]
    assert as_list(ids.trim_ascii(pa.array(values, pa.string()))) == expected


@given(st.lists(st.one_of(st.none(), st.text()), max_size=20))
def test_normalise_other_is_trim_and_idempotent(values: list[str | None]) -> None:
    once = ids.normalise(pa.array(values, pa.string()), "other", "US")
    assert as_list(once) == [None if v is None else v.strip(ASCII_WS) for v in values]
    assert as_list(ids.normalise(once, "other", "US")) == as_list(once)


_email_text = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(list("İiIıẞßΣσςΟΔΑaAZ@. \t\xa0ǅǈΐ"))),
)


@given(st.lists(st.one_of(st.none(), _email_text), max_size=20))
def test_email_equals_python_lower(values: list[str | None]) -> None:
    expected = [None if v is None else v.strip(ASCII_WS).lower() for v in values]
    assert as_list(ids.normalise_email(pa.array(values, pa.string()))) == expected


@given(st.lists(st.one_of(st.none(), _email_text), max_size=20))
def test_email_idempotent(values: list[str | None]) -> None:
    once = ids.normalise_email(pa.array(values, pa.string()))
    assert as_list(ids.normalise_email(once)) == as_list(once)


def test_email_special_cases() -> None:
    values = ["  John.DOE@Example.COM\r\n", "İstanbul@X.TR", "STRAẞE@x.de", "ΟΔΟΣ@x.gr", "\xa0A@B"]
    assert as_list(ids.normalise_email(pa.array(values))) == [
        "john.doe@example.com",
        "i\u0307stanbul@x.tr",
        "straße@x.de",
        "οδος@x.gr",
        "\xa0a@b",
    ]


def test_normaliser_for() -> None:
    assert ids.normaliser_for("email", "crm_id") == "email"
    assert ids.normaliser_for("sms", "email") == "sms"
    assert ids.normaliser_for("other", "email") == "email"
    assert ids.normaliser_for("other", "mobile_phone") == "sms"
    assert ids.normaliser_for("other", "crm_id") == "other"
    with pytest.raises(AudtoolsError) as info:
        ids.normaliser_for("fax", "email")
    assert info.value.code == "bad_config"
    with pytest.raises(AudtoolsError):
        ids.normalise(pa.array(["x"]), "fax", "US")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Phone numbers


def test_phone_examples() -> None:
    values = [
        "(650) 253-0000",
        " +1 650-253-0000 ",
        "1 650 253 0000",
        "+33 6 12 34 56 78",
        "011 44 20 7946 0000",
        "650 253 0000 ext. 12",
        "not a number",
        "",
        None,
        "+",
        "+12",
    ]
    assert as_list(ids.normalise_phone(pa.array(values), "US")) == [
        "+16502530000",
        "+16502530000",
        "+16502530000",
        "+33612345678",
        "+442079460000",
        "+16502530000",
        None,
        None,
        None,
        None,
        None,
    ]
    assert as_list(ids.normalise_phone(pa.array(["06 12 34 56 78", "+44 07911 123456"]), "FR")) == [
        "+33612345678",
        "+447911123456",
    ]


@pytest.mark.parametrize("region", REGIONS)
@SLOW
@given(values=phone_lists)
def test_phone_equals_phonenumbers(region: str, values: list[str | None]) -> None:
    got = as_list(ids.normalise_phone(pa.array(values, pa.string()), region))
    assert got == [reference_phone(v, region) for v in values]


@pytest.mark.parametrize("region", REGIONS)
@SLOW
@given(values=phone_lists)
def test_phone_outputs_equal_phonenumbers(region: str, values: list[str | None]) -> None:
    # Normalising an E.164 result again is what phonenumbers gives for it. That is not always
    # the same number: phonenumbers strips a national prefix again ('+44 00 113…' gives
    # '+4401130000000', which gives '+441130000000'), and the normaliser follows it.
    once = as_list(ids.normalise_phone(pa.array(values, pa.string()), region))
    twice = as_list(ids.normalise_phone(pa.array(once, pa.string()), region))
    assert twice == [reference_phone(v, region) for v in once]


_real_numbers = st.tuples(
    st.sampled_from(REGIONS + MORE_REGIONS),
    st.sampled_from([phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]),
    st.sampled_from([0, 1, 2]),  # E164, INTERNATIONAL, NATIONAL
)


@pytest.mark.parametrize("region", REGIONS)
@SLOW
@given(numbers=st.lists(_real_numbers, max_size=10))
def test_phone_idempotent_on_real_numbers(region: str, numbers: list[tuple[str, int, int]]) -> None:
    values = []
    for number_region, kind, fmt in numbers:
        # A national number is written as it is dialled in the region that reads it.
        number = phonenumbers.example_number_for_type(region if fmt == 2 else number_region, kind)
        values.append(phonenumbers.format_number(number, fmt))
    once = as_list(ids.normalise_phone(pa.array(values, pa.string()), region))
    assert None not in once
    assert as_list(ids.normalise_phone(pa.array(once, pa.string()), region)) == once


def _bulk_phones(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    regions = sorted(phonenumbers.SUPPORTED_REGIONS)
    out = []
    for _ in range(count):
        r = rng.random()
        if r < 0.4:
            number = phonenumbers.example_number_for_type(
                rng.choice(regions), rng.choice([0, 1, 3])
            )
            if number is not None:
                text = phonenumbers.format_number(number, rng.choice([0, 1, 2]))
                out.append(text[:-2] + f"{rng.randrange(100):02d}")
                continue
        prefix = rng.choice(["", "+", "+1", "+44 0", "0", "00", "011", "1", "8", "+7", "+54 9"])
        digits = []
        for _ in range(rng.randrange(1, 19)):
            digits.append(rng.choice("0123456789"))
            if rng.random() < 0.2:
                digits.append(rng.choice(" -.()"))
        out.append(prefix + "".join(digits))
    return out


@pytest.mark.parametrize("region", REGIONS + MORE_REGIONS)
def test_phone_bulk_equals_phonenumbers(region: str) -> None:
    values = _bulk_phones(seed=len(region) * 1000 + ord(region[0]), count=1500)
    got = as_list(ids.normalise_phone(pa.array(values), region))
    mismatches = [
        (v, g, reference_phone(v, region))
        for v, g in zip(values, got, strict=True)
        if g != reference_phone(v, region)
    ]
    assert mismatches == []


def test_phone_many_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids, "CHUNK_ROWS", 7)
    values = _bulk_phones(seed=3, count=100) + [None, "", "x"]
    got = as_list(ids.normalise_phone(pa.chunked_array([values[:50], values[50:]]), "GB"))
    assert got == [reference_phone(v, "GB") for v in values]


def test_phone_unknown_region_reads_only_international() -> None:
    got = as_list(ids.normalise_phone(pa.array(["+33 6 12 34 56 78", "06 12 34 56 78"]), "ZZ"))
    assert got == ["+33612345678", None]


def test_phone_length_tables_match_phonenumbers() -> None:
    from phonenumbers.phonenumberutil import ValidationResult, _test_number_length

    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        meta = ids._meta_for_region(region)
        assert meta is not None
        for n in range(0, 30):
            result = _test_number_length("5" * n, metadata)
            keep = result not in (
                ValidationResult.TOO_SHORT,
                ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
                ValidationResult.INVALID_LENGTH,
            )
            assert meta.keep_stripped[n] == keep, (region, n)
            assert meta.too_long[n] == (result == ValidationResult.TOO_LONG), (region, n)


# ---------------------------------------------------------------------------------------------
# SHA-256


def test_sha256_check_value() -> None:
    assert as_list(ids.sha256_hex(pa.array([CHECK_EMAIL, None]))) == [CHECK_SHA256, None]


def _hashlib(values: list[str | None]) -> list[str | None]:
    return [None if v is None else hashlib.sha256(v.encode()).hexdigest() for v in values]


@given(st.lists(st.one_of(st.none(), st.text()), max_size=20))
def test_sha256_equals_hashlib(values: list[str | None]) -> None:
    assert as_list(ids.sha256_hex(pa.array(values, pa.string()))) == _hashlib(values)


# ---------------------------------------------------------------------------------------------
# Declared IDs


def test_declared_ids_plain_email() -> None:
    values = pa.array(["  John@Example.COM ", None, "   ", "a:b@x", "a\tb", "ok@x.org", "a%3Ab@x"])
    got = ids.declared_ids(values, kind="email", default_region="US")
    assert as_list(got) == ["john@example.com", None, None, None, None, "ok@x.org", None]


def test_declared_ids_sha256() -> None:
    values = pa.array(["JohnDoe@Example.com", "", None, "x:y"])
    got = ids.declared_ids(values, kind="email", default_region="US", hash="sha256")
    assert as_list(got) == [CHECK_SHA256, None, None, None]


def test_declared_ids_other_and_sms() -> None:
    got = ids.declared_ids(pa.array([" CRM-1 ", "a:b", ""]), kind="other", default_region="US")
    assert as_list(got) == ["CRM-1", None, None]
    got = ids.declared_ids(
        pa.array(["(650) 253-0000", "no phone", None]), kind="sms", default_region="US"
    )
    assert as_list(got) == ["+16502530000", None, None]


@pytest.mark.parametrize("encoding", ["base64", "hex"])
def test_declared_ids_aes(encoding: str) -> None:
    values = pa.array([" John@Example.COM", None, "", "a:b", "+1 650 253 0000"])
    got = ids.declared_ids(
        values,
        kind="email",
        default_region="US",
        encryption="aes-cbc",
        key=KEY,
        iv=IV,
        encoding=encoding,  # type: ignore[arg-type]
    )
    expected_plain = ["john@example.com", None, None, None, "+1 650 253 0000"]
    assert as_list(got) == [
        None if p is None else crypto.encrypt_one(p, KEY, IV, encoding)  # type: ignore[arg-type]
        for p in expected_plain
    ]
    assert as_list(crypto.decrypt(got, KEY, IV, encoding)) == expected_plain  # type: ignore[arg-type]


def test_declared_ids_refusals() -> None:
    values = pa.array(["x"])
    with pytest.raises(AudtoolsError) as info:
        ids.declared_ids(values, kind="other", hash="sha256", encryption="aes-cbc", key=KEY, iv=IV)
    assert info.value.code == "bad_config"
    with pytest.raises(KeyProblem) as key_info:
        ids.declared_ids(values, kind="other", encryption="aes-cbc", key=None, iv=IV)
    assert key_info.value.code == "missing_key"
    with pytest.raises(AudtoolsError):
        ids.declared_ids(values, kind="other", hash="md5")  # type: ignore[arg-type]


def test_inputs_of_other_types() -> None:
    chunked = pa.chunked_array([["A@B"], [None, " C@D "]])
    assert as_list(ids.normalise_email(chunked)) == ["a@b", None, "c@d"]
    large = pa.array([" x "], pa.large_string())
    assert as_list(ids.normalise_other(large)) == ["x"]
    assert as_list(ids.declared_ids(pa.nulls(2), kind="email")) == [None, None]
    assert as_list(ids.normalise_phone(pa.array([], pa.string()), "US")) == []
