"""The error family: one closed set of codes, every error class in audtools.errors."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import tomllib
from pathlib import Path

import pytest

import audtools
from audtools import errors
from audtools.errors import AudtoolsError, ErrorCode, describe

PACKAGE = Path(audtools.__file__).parent

# SPEC §8 names these codes; drop_unreachable is for remote drops, which come next.
SPEC_CODES = [
    "not_ims", "unknown_data_source", "unknown_shared_audience", "not_a_segment", "not_encrypted",
    "label_in_use", "segment_name_in_use", "bad_condition", "missing_key", "bad_key",
    "bad_config", "workspace_busy", "match_rate_low", "drop_unreachable",
]

# code="word", code = "word" and "code": "word", in any module of the package.
_CODE_LITERAL = re.compile(r"""(?:\bcode\s*=\s*|["']code["']\s*:\s*)["']([^"']*)["']""")


def _codes_in_source() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for match in _CODE_LITERAL.finditer(path.read_text(encoding="utf-8")):
            found.setdefault(match.group(1), str(path.relative_to(PACKAGE)))
    return found


def test_every_code_is_a_lower_snake_word_named_after_itself() -> None:
    for member in ErrorCode:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", member.value), member
        assert member.name == member.value.upper()


def test_every_code_written_in_the_package_is_a_member() -> None:
    found = _codes_in_source()
    assert len(found) > 40  # the scan sees the codes (not an empty pattern)
    unknown = {code: where for code, where in found.items() if code not in set(ErrorCode)}
    assert not unknown


@pytest.mark.parametrize("code", SPEC_CODES)
def test_the_codes_of_the_spec_are_members(code: str) -> None:
    assert ErrorCode(code) == code


def test_an_unknown_code_fails_loudly() -> None:
    with pytest.raises(ValueError, match="no_such_code"):
        AudtoolsError("Something.", code="no_such_code")


def test_a_code_given_as_text_becomes_a_member_and_prints_the_same() -> None:
    error = AudtoolsError("The key is bad.", code="bad_key")
    assert error.code is ErrorCode.BAD_KEY
    assert f"[{error.code}]" == "[bad_key]"
    # The --json object is byte-identical to the one built from plain strings.
    assert json.dumps(error.to_json()) == json.dumps(
        {"error": {"code": "bad_key", "message": "The key is bad."}}
    )


def test_describe_gives_internal_for_anything_else() -> None:
    assert describe(KeyError("x")) == (ErrorCode.INTERNAL, "KeyError: 'x'")
    assert describe(AudtoolsError("No.", code="refused")) == ("refused", "No.")


def _all_error_classes() -> set[type[AudtoolsError]]:
    for module in pkgutil.walk_packages(audtools.__path__, "audtools."):
        importlib.import_module(module.name)
    found: set[type[AudtoolsError]] = set()
    todo = [AudtoolsError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("audtools.") and sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def test_every_error_class_lives_in_audtools_errors() -> None:
    classes = _all_error_classes()
    assert {"MatchRateLow", "JobError", "JobFailed", "WorkspaceBusy"} <= {c.__name__ for c in classes}
    assert {c.__module__ for c in classes} == {"audtools.errors"}
    for cls in classes:
        assert isinstance(cls.code, ErrorCode), cls


def test_ipython_shows_an_audtools_error_as_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.user_ns["errors"] = errors
        shell.run_cell("raise errors.AudtoolsError('The key is bad.', code='bad_key')")
    finally:
        InteractiveShell.clear_instance()
    shown = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert shown == ["audtools error [bad_key]: The key is bad."]


def test_the_version_is_the_one_of_pyproject() -> None:
    from audtools.version import __version__

    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    assert audtools.__version__ is __version__
    assert pyproject["project"]["version"] == __version__
