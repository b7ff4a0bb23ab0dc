"""What an import gives back: :class:`ImportResult` (the counts of SPEC §5, the funnel, the
members' outcomes); :class:`~audtools.errors.MatchRateLow` is raised when its match rate is too low."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from audtools.formats.catalog import SharedAudience

if TYPE_CHECKING:
    import pandas as pd



@dataclass
class ImportResult:
    """What an import did: the counts of SPEC §5, the funnel and the members' outcomes.

    ``to_json()`` gives the object ``audtools import --json`` prints; ``funnel`` and
    ``member_outcomes`` are DataFrames for notebooks.
    """

    run_id: str | None
    label: str
    audience_type: str
    shared_audience: SharedAudience
    data_source: str
    rows_read: int
    rows_rejected: int
    members: int
    undecryptable: int
    matched: int
    profiles: int
    addresses: int
    batches_applied: int
    batches_waiting: int
    batches_skipped: list[dict[str, str]]
    available_from: str
    available_to: str
    dry_run: bool
    started_at: str = ""
    finished_at: str = ""
    #: UTC time of the AAM timestamp of the newest batch applied (by this run, or before it
    #: when it applied none); None when the data source has no applied batch.
    delivered_at: str | None = None
    outcomes: pa.Table | None = field(default=None, repr=False)
    rejects_kept: int = 0

    @property
    def unmatched(self) -> int:
        """Members that are neither undecryptable nor matched."""
        return self.members - self.undecryptable - self.matched

    @property
    def match_rate(self) -> float:
        """``matched / members``, 0 without members."""
        return self.matched / self.members if self.members else 0.0

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object of SPEC §5, keys in the documented order."""
        return {
            "run_id": self.run_id,
            "audience": {
                "label": self.label,
                "type": self.audience_type,
                "shared_audience": {"sid": self.shared_audience.sid, "name": self.shared_audience.name},
                "data_source": self.data_source,
            },
            "rows_read": self.rows_read,
            "rows_rejected": self.rows_rejected,
            "rejects_kept": self.rejects_kept,
            "members": self.members,
            "undecryptable": self.undecryptable,
            "matched": self.matched,
            "unmatched": self.unmatched,
            "profiles": self.profiles,
            "addresses": self.addresses,
            "match_rate": self.match_rate,
            "unmatched_reasons": {"undecryptable": self.undecryptable, "no_profile": self.unmatched},
            "batches_applied": self.batches_applied,
            "batches_waiting": self.batches_waiting,
            "batches_skipped": self.batches_skipped,
            "available_from": self.available_from,
            "available_to": self.available_to,
            "dry_run": self.dry_run,
            "delivered_at": self.delivered_at,
        }

    @property
    def funnel(self) -> pd.DataFrame:
        """Members → decrypted → matched → profiles (or addresses), with the batch rows beside.

        Columns: ``stage``, ``count`` and ``share`` (of the members).
        """
        stages: list[tuple[str, int]] = [
            ("batch rows read", self.rows_read),
            ("batch rows rejected", self.rows_rejected),
            ("members", self.members),
            ("decrypted", self.members - self.undecryptable),
            ("matched", self.matched),
        ]
        if self.audience_type == "file":
            stages.append(("addresses", self.addresses))
        else:
            stages.append(("profiles", self.profiles))
        import pandas as pd  # imported here: the CLI never builds a DataFrame

        frame = pd.DataFrame(stages, columns=["stage", "count"])
        frame["share"] = [
            (count / self.members if self.members else 0.0) if i >= 2 else float("nan")
            for i, (_, count) in enumerate(stages)
        ]
        return frame

    @property
    def member_outcomes(self) -> pd.DataFrame:
        """One row per member: ``id`` and ``outcome`` (``matched``, ``no_profile`` or
        ``undecryptable``). Empty when the import was run with ``keep_members=False``."""
        import pandas as pd

        if self.outcomes is None:
            return pd.DataFrame({"id": pd.Series(dtype=str), "outcome": pd.Series(dtype=str)})
        return self.outcomes.to_pandas()

    def _repr_html_(self) -> str:
        import pandas as pd

        kind = "File" if self.audience_type == "file" else "Experience Cloud"
        rows = "".join(
            f"<tr><td>{html.escape(str(s))}</td><td style='text-align:right'>{c:,}</td>"
            f"<td style='text-align:right'>{'' if pd.isna(p) else f'{p:.1%}'}</td></tr>"
            for s, c, p in self.funnel.itertuples(index=False)
        )
        title = "Dry run of " if self.dry_run else ""
        return (
            f"<div><b>{title}{html.escape(self.label)}</b> — {kind} audience of "
            f"{html.escape(self.shared_audience.display)} through {html.escape(self.data_source)}"
            f"<br>match rate <b>{self.match_rate:.1%}</b>; available from {self.available_from} "
            f"to {self.available_to}; batches applied {self.batches_applied}, waiting "
            f"{self.batches_waiting}, skipped {len(self.batches_skipped)}"
            f"<table><tr><th>stage</th><th>count</th><th>share of members</th></tr>{rows}</table></div>"
        )
