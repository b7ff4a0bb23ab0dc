"""The AES keys of encrypted data sources, read from the environment or a key file (SPEC §2.1).

A key is read only when its data source is used, so commands that do not need it work while it is
unset. It is hex text (16, 24 or 32 bytes); a key file must be a regular file readable by its owner
only. No message ever shows the key or a part of it. The cipher itself is
:mod:`audtools.columns.aes`, which never reads the environment or a file.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from audtools.errors import AudtoolsError, KeyProblem

__all__ = ["load_key"]

_KEY_HEX_LENGTHS = (32, 48, 64)
_HEX = re.compile(r"[0-9a-fA-F]*")


def load_key(*, key_env: str | None, key_file: str | Path | None, base_dir: Path) -> bytes:
    """Read a data source's AES key, given as hex text (16, 24 or 32 bytes).

    Exactly one of ``key_env`` and ``key_file`` is given. Surrounding whitespace is ignored. A
    key file must be readable by its owner only. No message ever shows the key or a part of it.

    Args:
        key_env: the environment variable holding the key.
        key_file: the file holding the key; relative paths are relative to ``base_dir``.
        base_dir: the workspace folder.

    Returns:
        The key bytes.

    Raises:
        KeyProblem: ``missing_key`` when the variable is unset or empty or the file does not
            exist; ``bad_key`` when the key is not hex of the right length, or the file is
            readable by group or others, or cannot be read.
        AudtoolsError: ``bad_config`` when both or neither of ``key_env`` and ``key_file`` are
            given.
    """
    if (key_env is None) == (key_file is None):
        raise AudtoolsError(
            "Give exactly one of key_env and key_file for an encrypted data source.",
            code="bad_config",
        )
    if key_env is not None:
        raw = os.environ.get(key_env)
        where = f"the environment variable {key_env}"
        if raw is None or not raw.strip():
            state = "is not set" if raw is None else "is empty"
            raise KeyProblem(
                f"The key is missing: {where} {state}. Set it to the key as hex text "
                "(32, 48 or 64 hex digits).",
                code="missing_key",
                variable=key_env,
            )
        return _parse_key(raw, where, variable=key_env)
    assert key_file is not None
    path = Path(key_file)
    if not path.is_absolute():
        path = Path(base_dir) / path
    return _parse_key(_read_key_file(path), f"the key file {path}", file=str(path))


def _read_key_file(path: Path) -> str:
    """The text of a key file, once it is known to be a regular file kept from group and others.

    Raises:
        KeyProblem: ``missing_key`` when the file does not exist; ``bad_key`` when it is not a
            regular file, group or others can read it, it cannot be read or it is not ASCII.
    """
    where = f"the key file {path}"
    try:
        info = path.stat()
    except FileNotFoundError:
        raise KeyProblem(
            f"The key is missing: {where} does not exist. Create it with the key as hex text "
            f"and run `chmod 600 {path}`.",
            code="missing_key",
            file=str(path),
        ) from None
    except OSError as exc:
        raise KeyProblem(
            f"{_cap(where)} cannot be read ({exc.strerror}). Check the path and its rights.",
            code="bad_key",
            file=str(path),
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise KeyProblem(
            f"{_cap(where)} is not a regular file. Point key_file at the file holding the key.",
            code="bad_key",
            file=str(path),
        )
    if info.st_mode & 0o044:
        raise KeyProblem(
            f"{_cap(where)} is readable by group or others, so it is refused. Run "
            f"`chmod 600 {path}` and try again.",
            code="bad_key",
            file=str(path),
        )
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise KeyProblem(
            f"{_cap(where)} cannot be read ({exc.strerror}). Check its owner and rights.",
            code="bad_key",
            file=str(path),
        ) from None
    try:
        return raw_bytes.decode("ascii")
    except UnicodeDecodeError:
        raise KeyProblem(
            f"{_cap(where)} does not hold hex text. Write the key as 32, 48 or 64 hex digits.",
            code="bad_key",
            file=str(path),
        ) from None


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _parse_key(raw: str, where: str, **details: str) -> bytes:
    text = raw.strip()
    if not _HEX.fullmatch(text):
        raise KeyProblem(
            f"The key in {where} is not hex text. Write it as 32, 48 or 64 hex digits "
            "(a 128-, 192- or 256-bit AES key).",
            code="bad_key",
            **details,
        )
    if len(text) not in _KEY_HEX_LENGTHS:
        raise KeyProblem(
            f"The key in {where} has {len(text)} hex digits; an AES key has 32, 48 or 64 "
            "(16, 24 or 32 bytes). Replace it with a key of one of these lengths.",
            code="bad_key",
            **details,
        )
    return bytes.fromhex(text)
