"""Scrubbing: keeping addresses, phone numbers and IDs out of reports, charts and messages.

Anything a person typed (labels, segment names, conditions) or a partner sent (segment names,
file names) may hold personal data. Reports, chart images and error summaries show such text
through :func:`scrub`, which runs in time linear in the text's length, so that even a label of
megabytes costs little. This module sits low in the layers so that charts can use it too.
"""

from __future__ import annotations

import re

__all__ = ["plain_text", "scrub"]

_LOCAL = r"[\w.+%'-]"
# An address starts where a run of local-part characters starts, or right where the previous
# address ended (re.sub would try there too). Starting only there, with possessive runs, keeps
# the search linear: the plain pattern re-scanned a long run of word characters from each of its
# positions (quadratic).
_EMAIL_AT_RUN = re.compile(rf"(?<!{_LOCAL}){_LOCAL}++@[\w-]++(?:\.[\w-]++)+")
_EMAIL_HERE = re.compile(rf"{_LOCAL}++@[\w-]++(?:\.[\w-]++)+")
_PHONE = re.compile(r"\+\d[\d ().-]{6,}\d|\(?\b\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b")
_LONG_NUMBER = re.compile(r"\d{10,}")


def _sub_emails(text: str) -> str:
    """``text`` with every email address replaced by ``…``, as ``re.sub`` with the pattern
    ``[\\w.+%'-]+@[\\w-]+(?:\\.[\\w-]+)+`` would, in linear time."""
    parts: list[str] = []
    pos = 0
    glued = False
    while True:
        found = _EMAIL_HERE.match(text, pos) if glued else None
        if found is None:
            found = _EMAIL_AT_RUN.search(text, pos)
        if found is None:
            break
        parts += [text[pos : found.start()], "…"]
        pos = found.end()
        glued = True
    parts.append(text[pos:])
    return "".join(parts)


def scrub(text: str | None, *, ids: bool = True) -> str:
    """``text`` with anything that looks like an email address, a phone number or an ID (ten
    digits or more) replaced by ``…``.

    ``ids=False`` keeps long numbers: for file names, whose timestamps are not personal data
    (``ftp_56390_24016_iter_1764460800000.sync``).

    Example:
        >>> scrub("Call +33 6 12 34 56 78 or write to jane@example.com")
        'Call … or write to …'
    """
    if not text:
        return ""
    text = _sub_emails(str(text))
    text = _PHONE.sub("…", text)
    return _LONG_NUMBER.sub("…", text) if ids else text


def plain_text(text: str | None) -> str:
    """Scrubbed ``text`` fit for a chart: dollar signs escaped so that matplotlib never reads
    it as mathtext (a ``$\\undefined$`` in a partner's segment name would fail the drawing)."""
    return scrub(text).replace("$", r"\$")
