"""What importing each sample audience must give (SPEC §5), known by construction.

:func:`expectations` replays the batches the generator wrote (:mod:`audtools.samples.batches`) and
applies the identifier rules of :mod:`audtools.samples.profiles` to the members, never running the
importer; :func:`batch_totals` counts each source's rows. Both go into ``samples.json``.
"""

from __future__ import annotations

from typing import Any

from audtools.samples.batches import (
    CART,
    ENGAGED,
    HIGH_VALUE,
    LOYALTY,
    MOBILE,
    NEWSLETTER,
    TRAVEL,
    Source,
    state_after,
)
from audtools.samples.profiles import ASCII_SPACE, Profile, declared_ok, e164, norm_email, sha256

__all__ = ["batch_totals", "expectations"]


def _members(source: Source, sid: int) -> list[str]:
    state: dict[str, set[int]] = {}
    for mode, parts in source.batches:
        state = state_after(parts, mode, state)
    return sorted(ident for ident, sids in state.items() if sid in sids)


def batch_totals(source: Source) -> dict[str, int]:
    """A source's ``rows_read``, ``rows_rejected`` and ``batches``, for ``samples.json``."""
    rows = [r for _, parts in source.batches for part in parts for r in part if not r.blank]
    return {
        "rows_read": len(rows),
        "rows_rejected": sum(1 for r in rows if r.id is None),
        "batches": len(source.batches),
    }


def expectations(
    by_id: dict[str, Source], profiles: list[Profile], region: str
) -> list[dict[str, Any]]:
    """The ``imports`` of ``samples.json``: each sample import and the counts it must give."""
    owners: dict[str, set[str]] = {}
    for p in profiles:
        for v in p.visitor_ids:
            owners.setdefault(v, set()).add(p.profile_id)
    crm = {p.crm_id.strip(ASCII_SPACE): {p.profile_id} for p in profiles if p.crm_id}
    hashed = {sha256(p.email_norm): {p.profile_id} for p in profiles if p.email_norm}
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
        entry("Samples - Travel intenders (app)", TRAVEL, "samplesAppVisitorId", False,
              plain("samplesAppVisitorId", TRAVEL, owners)),
    ]


def _address(plain: bytes, channel: str, region: str) -> str | None:
    """A decrypted member's normalised address, or None when it counts as undecryptable."""
    try:
        text = plain.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if channel == "sms":
        # A number that does not parse is kept trimmed (SPEC §5 step 5).
        address = e164(text, region) or text.strip(ASCII_SPACE)
    else:
        address = norm_email(text)
    return address if declared_ok(address) else None


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
