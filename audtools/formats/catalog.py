"""``catalog.json``: the shared audiences available in the Experience Cloud (SPEC §4.4).

audtools reads the catalog of the import drop and never writes it. Shared audiences created by
exports live in the database; :func:`full_catalog` puts both together, and :func:`resolve` names
one of them by ``sid`` or exact name.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from audtools.errors import AudtoolsError, InputError

CATALOG_NAME = "catalog.json"
SegmentType = Literal["segment", "trait", "rule", "key_value"]
SegmentSource = Literal["audience_manager", "people_core_service", "analytics", "campaign"]
#: The longest audience label or segment name audtools accepts (SPEC-style refusals
#: ``bad_label``, ``bad_segment_name``): names are shown in reports, charts and screens.
MAX_LABEL_CHARS = 256
# Sids are segment IDs: 1 to 18 digits, so that every one fits the database's BIGINT.
_SID_DIGITS = 18
_TYPES = ("segment", "trait", "rule", "key_value")
_SOURCES = ("audience_manager", "people_core_service", "analytics", "campaign")


@dataclass(frozen=True)
class SharedAudience:
    """One entry of the catalog: a shared audience of the Experience Cloud."""

    sid: int
    name: str
    type: SegmentType = "segment"
    source: SegmentSource = "audience_manager"

    @property
    def display(self) -> str:
        """``Name (sid)``, as Campaign shows it."""
        return f"{self.name} ({self.sid})"

    def to_json(self) -> dict[str, Any]:
        """The entry in the form of ``catalog.json``."""
        return asdict(self)


def read_catalog(drop: Path) -> list[SharedAudience]:
    """The entries of ``DROP/catalog.json`` (none when the file is absent).

    Raises:
        InputError: ``bad_catalog`` naming the file and the entry at fault.
    """
    path = Path(drop) / CATALOG_NAME
    if not path.is_file():
        return []
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise InputError(
            f"{CATALOG_NAME} cannot be read ({exc}); fix or remove it.", code="bad_catalog", file=str(path)
        ) from None
    return parse_catalog(content, str(path))


def parse_catalog(content: bytes, path: str) -> list[SharedAudience]:
    """The entries of a ``catalog.json`` whose bytes are ``content`` (read from ``path``, a
    folder's file or a remote drop's, named in errors).

    Raises:
        InputError: ``bad_catalog`` naming the file and the entry at fault.
    """
    try:
        data = json.loads(content.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(
            f"{CATALOG_NAME} cannot be read ({exc}); fix or remove it.", code="bad_catalog", file=path
        ) from None
    except RecursionError:
        # json recurses once per nesting level: a few thousand '[' exhaust the stack.
        raise InputError(
            f"{CATALOG_NAME} cannot be read (nested too deeply); fix or remove it.",
            code="bad_catalog",
            file=path,
        ) from None
    segments = data.get("segments") if isinstance(data, dict) else None
    if not isinstance(segments, list):
        raise InputError(
            f'{CATALOG_NAME} must be an object with a "segments" list; fix it.',
            code="bad_catalog",
            file=path,
        )
    out: list[SharedAudience] = []
    for i, entry in enumerate(segments, 1):
        problem = _entry_problem(entry)
        if problem:
            raise InputError(
                f"{CATALOG_NAME}: segments[{i}] {problem}; fix the entry.",
                code="bad_catalog",
                file=path,
            )
        out.append(
            SharedAudience(
                sid=int(entry["sid"]),
                name=entry["name"],
                type=entry.get("type", "segment"),
                source=entry.get("source", "audience_manager"),
            )
        )
    return out


def _entry_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return "is not an object"
    sid = entry.get("sid")
    if isinstance(sid, str) and sid.isascii() and sid.isdigit() and len(sid) <= _SID_DIGITS:
        sid = int(sid)
    if isinstance(sid, bool) or not isinstance(sid, int) or not 0 < sid < 10**_SID_DIGITS:
        return f"needs a numeric 'sid' of 1 to {_SID_DIGITS} digits"
    if not isinstance(entry.get("name"), str) or not entry["name"]:
        return "needs a 'name'"
    if entry.get("type", "segment") not in _TYPES:
        return f"has type {entry.get('type')!r} (allowed: {', '.join(_TYPES)})"
    if entry.get("source", "audience_manager") not in _SOURCES:
        return f"has source {entry.get('source')!r} (allowed: {', '.join(_SOURCES)})"
    return None


def resolve(catalog: list[SharedAudience], ref: str | int) -> SharedAudience:
    """The shared audience named by ``ref``: a ``sid`` (digits only) or an exact name.

    Raises:
        AudtoolsError: ``unknown_shared_audience`` when nothing matches; ``ambiguous_shared_audience``
            when a name is held by several entries (their sids are listed).
    """
    text = str(ref)
    if text.isascii() and text.isdigit():
        sid = int(text)
        for entry in catalog:
            if entry.sid == sid:
                return entry
    matches = [entry for entry in catalog if entry.name == text]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        sids = ", ".join(str(m.sid) for m in matches)
        raise AudtoolsError(
            f"The shared audience name {text!r} is held by several entries (sids {sids}); "
            "name it by its sid.",
            code="ambiguous_shared_audience",
        )
    raise AudtoolsError(
        f"No shared audience is named {text!r}; see 'audtools catalog' for the sids and names.",
        code="unknown_shared_audience",
    )
