"""AES-CBC in batches, its one-value references, keys and IVs (SPEC §2.1, §3, §5 step 4)."""

from __future__ import annotations

import base64
import os
import random
from pathlib import Path

import pyarrow as pa
import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audtools.columns import aes as crypto
from audtools.errors import AudtoolsError, KeyProblem
from audtools.workspace.keys import load_key

IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
KEYS = {
    128: bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c"),
    192: bytes.fromhex("8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b"),
    256: bytes.fromhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"),
}
ENCODINGS = ["base64", "hex"]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Texts of the lengths that matter for padding: empty, one block less one byte, exactly one and
# two blocks (in UTF-8 bytes), and multibyte characters.
EDGE_TEXTS = ["", "a" * 15, "a" * 16, "é" * 8, "€" * 5 + "a", "😀" * 8, "b" * 32, "x" * 33, "\x00"]
texts = st.one_of(
    st.text(max_size=80),
    st.sampled_from(EDGE_TEXTS),
    st.integers(0, 64).map(lambda n: "a" * n),
)
text_lists = st.lists(st.one_of(st.none(), texts), max_size=30)


def raw_cbc(plain: bytes, key: bytes, iv: bytes = IV, pad: bool = True) -> bytes:
    """AES-CBC of raw bytes, padded with PKCS7 unless told not to."""
    if pad:
        padder = padding.PKCS7(128).padder()
        plain = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(plain) + encryptor.finalize()


def encode(cipher: bytes, encoding: str) -> str:
    return cipher.hex() if encoding == "hex" else base64.b64encode(cipher).decode()


# ---------------------------------------------------------------------------------------------
# Round trips and the references


@pytest.mark.parametrize("bits", sorted(KEYS))
@pytest.mark.parametrize("encoding", ENCODINGS)
@SETTINGS
@given(values=text_lists)
def test_round_trip(bits: int, encoding: str, values: list[str | None]) -> None:
    key = KEYS[bits]
    arr = pa.array(values, pa.string())
    encrypted = crypto.encrypt(arr, key, IV, encoding)  # type: ignore[arg-type]
    assert encrypted.to_pylist() == [
        None if v is None else crypto.encrypt_one(v, key, IV, encoding)  # type: ignore[arg-type]
        for v in values
    ]
    assert crypto.decrypt(encrypted, key, IV, encoding).to_pylist() == values  # type: ignore[arg-type]


@pytest.mark.parametrize("encoding", ENCODINGS)
@SETTINGS
@given(value=texts)
def test_references_round_trip(encoding: str, value: str) -> None:
    text = crypto.encrypt_one(value, KEYS[256], IV, encoding)  # type: ignore[arg-type]
    assert crypto.decrypt_one(text, KEYS[256], IV, encoding) == value  # type: ignore[arg-type]
    if encoding == "hex":
        assert text == text.lower()
        assert crypto.decrypt_one(text.upper(), KEYS[256], IV, "hex") == value


def test_known_vector() -> None:
    # NIST SP 800-38A F.2.1, first block of AES-128-CBC: the helper below is right.
    cipher = raw_cbc(bytes.fromhex("6bc1bee22e409f96e93d7e117393172a"), KEYS[128], pad=False)
    assert cipher.hex() == "7649abac8119b246cee98e9b12e9197d"
    text = crypto.encrypt(pa.array(["john@example.com"]), KEYS[128], IV, "hex")[0].as_py()
    assert text == raw_cbc(b"john@example.com", KEYS[128]).hex()
    assert len(text) == 64  # 16 bytes of text: two blocks


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_batches_across_chunks(monkeypatch: pytest.MonkeyPatch, encoding: str) -> None:
    monkeypatch.setattr(crypto, "CHUNK_ROWS", 7)
    rng = random.Random(5)
    values = [None if rng.random() < 0.1 else "é" * rng.randrange(40) for _ in range(100)]
    chunked = pa.chunked_array([values[:33], values[33:]], pa.string())
    encrypted = crypto.encrypt(chunked, KEYS[192], IV, encoding)  # type: ignore[arg-type]
    assert isinstance(encrypted, pa.Array) and len(encrypted) == len(values)
    assert encrypted.to_pylist() == [
        None if v is None else crypto.encrypt_one(v, KEYS[192], IV, encoding)  # type: ignore[arg-type]
        for v in values
    ]
    large = encrypted.cast(pa.large_string())
    assert crypto.decrypt(large, KEYS[192], IV, encoding).to_pylist() == values  # type: ignore[arg-type]


def test_empty_and_all_null() -> None:
    for encoding in ENCODINGS:
        assert crypto.encrypt(pa.array([], pa.string()), KEYS[128], IV, encoding).to_pylist() == []  # type: ignore[arg-type]
        assert (
            crypto.decrypt(pa.nulls(3, pa.string()), KEYS[128], IV, encoding).to_pylist()
            == [  # type: ignore[arg-type]
                None
            ]
            * 3
        )
        assert crypto.encrypt(pa.nulls(2), KEYS[128], IV, encoding).to_pylist() == [None, None]  # type: ignore[arg-type]


def test_input_types() -> None:
    key = KEYS[128]
    values = ["abc", None, "x" * 40]
    expected = [None if v is None else crypto.encrypt_one(v, key, IV, "hex") for v in values]
    for arr in [
        pa.array(values, pa.large_string()),
        pa.array(values).dictionary_encode(),
        pa.chunked_array([values[:1], [], values[1:]]),
    ]:
        assert crypto.encrypt(arr, key, IV, "hex").to_pylist() == expected
    assert crypto.decrypt(pa.chunked_array([], pa.string()), key, IV, "hex").to_pylist() == []


# ---------------------------------------------------------------------------------------------
# Undecryptable values


def _undecryptable_base64() -> list[str]:
    good = base64.b64encode(raw_cbc(b"a" * 20, KEYS[256])).decode()  # 32 bytes: "...=" padded
    assert good.endswith("=") and not good.endswith("==")
    one_block = base64.b64encode(raw_cbc(b"abc", KEYS[256])).decode()  # 16 bytes: "==" padded
    assert one_block.endswith("==")
    non_canonical_1 = good[:-2] + chr(ord(good[-2]) ^ 1) + "="  # spare bits set
    non_canonical_2 = one_block[:-3] + "B=="  # 'B' carries bits beyond the data
    return [
        "",
        "not base64!",
        "QUJD",  # valid base64, 3 bytes: not whole blocks
        good.rstrip("="),  # padding missing
        good + "=",  # padding too long
        good[:10] + "\n" + good[10:],  # a newline inside
        " " + good,
        good.replace("+", "-").replace("/", "_") if ("+" in good or "/" in good) else good + "-",
        non_canonical_1,
        non_canonical_2,
        "=" + good[1:],
        good[:4] + "=" + good[5:],
        "é" * 44,
        base64.b64encode(b"\x00" * 15).decode(),  # 15 bytes
    ]


def _undecryptable_hex() -> list[str]:
    good = raw_cbc(b"a" * 20, KEYS[256]).hex()
    return ["", "zz" * 16, good[:-1], good[:-2], good + "00", "0x" + good[2:], good[:31] + " ",
            "１" * 32, good[:16] + "\n" + good[17:]]  # fmt: skip


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_undecryptable_texts(encoding: str) -> None:
    bad = _undecryptable_base64() if encoding == "base64" else _undecryptable_hex()
    got = crypto.decrypt(pa.array(bad), KEYS[256], IV, encoding).to_pylist()  # type: ignore[arg-type]
    assert got == [None] * len(bad)
    assert [crypto.decrypt_one(b, KEYS[256], IV, encoding) for b in bad] == [None] * len(bad)  # type: ignore[arg-type]


def test_base64_batches_clean_and_not() -> None:
    # All characters clean, one value non-canonical: dropped alone. One value with a stray
    # character: the others still decrypt.
    key = KEYS[128]
    values = ["first@example.com", "a" * 20, "x", "second@example.org"]
    texts = crypto.encrypt(pa.array(values), key, IV, "base64").to_pylist()
    spare = texts[1][:-2] + chr(ord(texts[1][-2]) + 1) + "="  # '=' after a non-canonical char
    assert spare[-2].isalnum() and crypto.decrypt_one(spare, key, IV) is None
    got = crypto.decrypt(pa.array([texts[0], spare, texts[2], texts[3]]), key, IV, "base64")
    assert got.to_pylist() == [values[0], None, values[2], values[3]]
    stray = texts[2][:5] + "*" + texts[2][6:]
    inner = texts[3][:8] + "=" + texts[3][9:]
    got = crypto.decrypt(pa.array([texts[0], stray, inner, texts[3], spare]), key, IV, "base64")
    assert got.to_pylist() == [values[0], None, None, values[3], None]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_wrong_padding_and_non_utf8(encoding: str) -> None:
    key = KEYS[256]
    cases = {
        "pad 0": b"a" * 15 + b"\x00",
        "pad 17": b"a" * 15 + b"\x11",
        "pad 255": b"a" * 15 + b"\xff",
        "unequal pad bytes": b"a" * 13 + b"\x01\x02\x03",
        "pad longer than value": b"\x10" * 15 + b"\x11",
    }
    texts = [encode(raw_cbc(block, key, pad=False), encoding) for block in cases.values()]
    texts.append(encode(raw_cbc(b"\xff\xfe caf\xe9", key), encoding))  # not UTF-8
    texts.append(encode(raw_cbc(b"\xed\xa0\x80", key), encoding))  # a UTF-8 surrogate
    texts.append(encode(raw_cbc(b"ok \xc3", key), encoding))  # a truncated character
    good_16 = encode(raw_cbc(b"\x10" * 16, key, pad=False), encoding)  # a whole block of padding
    texts.append(good_16)
    got = crypto.decrypt(pa.array(texts), key, IV, encoding).to_pylist()  # type: ignore[arg-type]
    assert got == [None] * (len(texts) - 1) + [""]
    assert [crypto.decrypt_one(t, key, IV, encoding) for t in texts] == got  # type: ignore[arg-type]


@pytest.mark.parametrize("encoding", ENCODINGS)
@SETTINGS
@given(plains=st.lists(st.binary(max_size=40), max_size=20), pad=st.booleans())
def test_arbitrary_plaintext_bytes(encoding: str, plains: list[bytes], pad: bool) -> None:
    # Whatever the plaintext bytes (valid UTF-8 or not, padded or not), batch and reference agree.
    key = KEYS[128]
    texts = [
        encode(raw_cbc(p if pad else p + b"\x00" * (-len(p) % 16), key, pad=pad), encoding)
        for p in plains
    ]
    got = crypto.decrypt(pa.array(texts, pa.string()), key, IV, encoding).to_pylist()  # type: ignore[arg-type]
    assert got == [crypto.decrypt_one(t, key, IV, encoding) for t in texts]  # type: ignore[arg-type]


@pytest.mark.parametrize("encoding", ENCODINGS)
@SETTINGS
@given(
    texts=st.lists(
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789+/=\n é", max_size=70),
        max_size=20,
    )
)
def test_junk_like_reference(encoding: str, texts: list[str]) -> None:
    got = crypto.decrypt(pa.array(texts, pa.string()), KEYS[192], IV, encoding).to_pylist()  # type: ignore[arg-type]
    assert got == [crypto.decrypt_one(t, KEYS[192], IV, encoding) for t in texts]  # type: ignore[arg-type]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_wrong_key_mostly_bad_padding(encoding: str) -> None:
    values = [f"user{i}@example.com" for i in range(2000)]
    encrypted = crypto.encrypt(pa.array(values), KEYS[256], IV, encoding)  # type: ignore[arg-type]
    wrong = bytes(reversed(KEYS[256]))
    got = crypto.decrypt(encrypted, wrong, IV, encoding).to_pylist()  # type: ignore[arg-type]
    assert got == [crypto.decrypt_one(t, wrong, IV, encoding) for t in encrypted.to_pylist()]  # type: ignore[arg-type]
    assert sum(g is None for g in got) >= 0.95 * len(values)
    assert not set(got) & set(values)


def test_hex_either_case() -> None:
    text = crypto.encrypt(pa.array(["Ünïcode"]), KEYS[128], IV, "hex")[0].as_py()
    mixed = text[:10].upper() + text[10:]
    assert crypto.decrypt(pa.array([text.upper(), mixed]), KEYS[128], IV, "hex").to_pylist() == [
        "Ünïcode",
        "Ünïcode",
    ]


def test_plaintext_ending_like_padding() -> None:
    # Plaintexts ending in bytes 1 to 16 (tab, newline...) keep them.
    values = ["a\t", "b\n\n", "\x01", "\x10" * 20, "c\x05\x05\x05"]
    for encoding in ENCODINGS:
        encrypted = crypto.encrypt(pa.array(values), KEYS[128], IV, encoding)  # type: ignore[arg-type]
        assert crypto.decrypt(encrypted, KEYS[128], IV, encoding).to_pylist() == values  # type: ignore[arg-type]


def test_bad_arguments() -> None:
    with pytest.raises(KeyProblem) as info:
        crypto.encrypt(pa.array(["x"]), b"short", IV, "base64")
    assert info.value.code == "bad_key"
    with pytest.raises(AudtoolsError) as iv_info:
        crypto.decrypt(pa.array(["x"]), KEYS[128], b"\x00" * 8, "base64")
    assert iv_info.value.code == "bad_config"
    with pytest.raises(AudtoolsError) as enc_info:
        crypto.encrypt(pa.array(["x"]), KEYS[128], IV, "base32")  # type: ignore[arg-type]
    assert enc_info.value.code == "bad_config"


# ---------------------------------------------------------------------------------------------
# IVs


def test_parse_iv() -> None:
    assert crypto.parse_iv("000102030405060708090a0b0c0d0e0f") == IV
    assert crypto.parse_iv("000102030405060708090A0B0C0D0E0F") == IV
    for bad in ["", "0001", "000102030405060708090a0b0c0d0e0f00", "zz" * 16, " " + "00" * 15 + "0"]:
        with pytest.raises(AudtoolsError) as info:
            crypto.parse_iv(bad)
        assert info.value.code == "bad_config"


# ---------------------------------------------------------------------------------------------
# Keys

SECRET = "00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210"


def _assert_no_key_text(exc: BaseException, key_text: str) -> None:
    message = str(exc) + repr(getattr(exc, "details", ""))
    for size in (4, 8):
        for start in range(0, len(key_text) - size + 1):
            part = key_text[start : start + size]
            if part.strip() and len(set(part)) > 1:
                assert part not in message, f"key text {part!r} in {message!r}"


@pytest.mark.parametrize(
    "text",
    [SECRET[:32], SECRET[:48], SECRET, f"  {SECRET.upper()}\n"],
    ids=["128", "192", "256", "padded-upper"],
)
def test_key_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str) -> None:
    monkeypatch.setenv("AUDTOOLS_TEST_KEY", text)
    key = load_key(key_env="AUDTOOLS_TEST_KEY", key_file=None, base_dir=tmp_path)
    assert key == bytes.fromhex(text.strip())


def test_key_environment_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AUDTOOLS_TEST_KEY", raising=False)
    with pytest.raises(KeyProblem) as info:
        load_key(key_env="AUDTOOLS_TEST_KEY", key_file=None, base_dir=tmp_path)
    assert info.value.code == "missing_key"
    assert "AUDTOOLS_TEST_KEY" in str(info.value)
    monkeypatch.setenv("AUDTOOLS_TEST_KEY", "  ")
    with pytest.raises(KeyProblem) as empty:
        load_key(key_env="AUDTOOLS_TEST_KEY", key_file=None, base_dir=tmp_path)
    assert empty.value.code == "missing_key"


@pytest.mark.parametrize(
    "text",
    [
        SECRET[:30],  # 15 bytes
        SECRET[:33],  # odd
        SECRET[:40],  # 20 bytes
        SECRET + "00",  # 33 bytes
        SECRET[:31] + "g",  # not hex
        SECRET[:16] + " " + SECRET[16:32],  # a space inside
        "0x" + SECRET[:30],
        "é" + SECRET[:31],
    ],
    ids=["15-bytes", "odd", "20-bytes", "33-bytes", "not-hex", "space", "0x", "non-ascii"],
)
def test_bad_key_text(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str) -> None:
    monkeypatch.setenv("AUDTOOLS_TEST_KEY", text)
    with pytest.raises(KeyProblem) as info:
        load_key(key_env="AUDTOOLS_TEST_KEY", key_file=None, base_dir=tmp_path)
    assert info.value.code == "bad_key"
    assert "AUDTOOLS_TEST_KEY" in str(info.value)
    _assert_no_key_text(info.value, text)
    # The same text in a private file.
    path = tmp_path / "keys" / "bad.key"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    with pytest.raises(KeyProblem) as file_info:
        load_key(key_env=None, key_file="keys/bad.key", base_dir=tmp_path)
    assert file_info.value.code == "bad_key"
    assert str(path) in str(file_info.value)
    _assert_no_key_text(file_info.value, text)


def test_key_file_private(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "email.key"
    path.parent.mkdir()
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    assert load_key(
        key_env=None, key_file="keys/email.key", base_dir=tmp_path
    ) == bytes.fromhex(SECRET)
    # An absolute path is taken as it is.
    assert load_key(
        key_env=None, key_file=path, base_dir=tmp_path / "elsewhere"
    ) == bytes.fromhex(SECRET)
    path.chmod(0o400)
    assert load_key(key_env=None, key_file=str(path), base_dir=tmp_path) == bytes.fromhex(
        SECRET
    )


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o666])
def test_key_file_readable_by_others_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "shared.key"
    path.write_text(SECRET)
    path.chmod(mode)
    with pytest.raises(KeyProblem) as info:
        load_key(key_env=None, key_file="shared.key", base_dir=tmp_path)
    assert info.value.code == "bad_key"
    assert "chmod 600" in str(info.value)
    assert str(path) in str(info.value)
    _assert_no_key_text(info.value, SECRET)


def test_key_file_missing(tmp_path: Path) -> None:
    with pytest.raises(KeyProblem) as info:
        load_key(key_env=None, key_file="keys/none.key", base_dir=tmp_path)
    assert info.value.code == "missing_key"
    assert str(tmp_path / "keys" / "none.key") in str(info.value)
    (tmp_path / "adir").mkdir()
    with pytest.raises(KeyProblem) as dir_info:
        load_key(key_env=None, key_file="adir", base_dir=tmp_path)
    assert dir_info.value.code == "bad_key"


def test_key_source_must_be_one(tmp_path: Path) -> None:
    for env, file in [(None, None), ("A", "b.key")]:
        with pytest.raises(AudtoolsError) as info:
            load_key(key_env=env, key_file=file, base_dir=tmp_path)
        assert info.value.code == "bad_config"


def test_key_bytes_not_in_messages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A key of a wrong length whose text is otherwise plausible: nothing of it is shown.
    text = os.urandom(20).hex()
    monkeypatch.setenv("AUDTOOLS_TEST_KEY", text)
    with pytest.raises(KeyProblem) as info:
        load_key(key_env="AUDTOOLS_TEST_KEY", key_file=None, base_dir=tmp_path)
    _assert_no_key_text(info.value, text)
    assert "40 hex digits" in str(info.value)


def test_map_chunks_keeps_order_uses_threads_and_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from audtools.columns import chunks as arrays

    monkeypatch.setattr(arrays.os, "cpu_count", lambda: 2)
    seen: set[str] = set()

    def slow_square(x: int) -> int:
        seen.add(threading.current_thread().name)
        time.sleep(0.01 * (5 - x % 5))  # later items often finish first
        return x * x

    assert arrays.map_chunks(slow_square, range(10)) == [x * x for x in range(10)]
    assert len(seen) == 2 and all(name.startswith("audtools") for name in seen)
    assert arrays.map_chunks(slow_square, [3]) == [9]  # one item: no thread

    def fails(x: int) -> int:
        if x == 3:
            raise ValueError("chunk 3")
        return x

    with pytest.raises(ValueError, match="chunk 3"):
        arrays.map_chunks(fails, range(6))
