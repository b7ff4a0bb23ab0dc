"""What an export did: :class:`ExportResult`, the counts of SPEC §6 and the two transitions."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa

from audtools.errors import AudtoolsError
from audtools.formats.catalog import SharedAudience

__all__ = ["ExportResult"]


@dataclass
class ExportResult:
    """What an export did: the counts of SPEC §6 and the two transitions.

    ``to_json()`` gives the object ``audtools export --json`` prints; :attr:`outbound_transition`
    (``profile_id, id``) and :attr:`complement_transition` (``profile_id``) are DataFrames.
    """

    run_id: str | None
    shared_audience: SharedAudience
    created: bool
    data_source: str
    profiles_targeted: int
    profiles_exported: int
    profiles_without_id: int
    ids_exported: int
    ids_already_shared: int
    files: list[str]
    available_from: str
    available_to: str
    dry_run: bool
    started_at: str = ""
    finished_at: str = ""
    outbound: pa.Table | None = field(default=None, repr=False)
    complement: pa.Table | None = field(default=None, repr=False)
    ids_too_long: int = 0

    def to_json(self) -> dict[str, Any]:
        """The object ``audtools export --json`` prints (SPEC §6)."""
        return {
            "run_id": self.run_id,
            "shared_audience": {
                "sid": self.shared_audience.sid,
                "name": self.shared_audience.name,
                "created": self.created,
            },
            "data_source": self.data_source,
            "profiles_targeted": self.profiles_targeted,
            "profiles_exported": self.profiles_exported,
            "profiles_without_id": self.profiles_without_id,
            "ids_exported": self.ids_exported,
            "ids_already_shared": self.ids_already_shared,
            "ids_too_long": self.ids_too_long,
            "files": list(self.files),
            "available_from": self.available_from,
            "available_to": self.available_to,
            "dry_run": self.dry_run,
        }

    @property
    def outbound_transition(self) -> pd.DataFrame:
        """One row per ID of each exported profile, new or already shared: ``profile_id, id``.

        Raises:
            AudtoolsError: ``transitions_not_kept`` when the export ran with
                ``keep_transitions=False``.
        """
        return self._frame(self.outbound, "outbound")

    @property
    def complement_transition(self) -> pd.DataFrame:
        """The targeted profiles without an ID: ``profile_id``.

        Raises:
            AudtoolsError: ``transitions_not_kept`` when the export ran with
                ``keep_transitions=False``.
        """
        return self._frame(self.complement, "complement")

    @staticmethod
    def _frame(table: pa.Table | None, kind: str) -> pd.DataFrame:
        if table is None:
            raise AudtoolsError(
                f"The {kind} transition was not kept by this export; run it with "
                "keep_transitions=True, or write it with --{kind}-transition.",
                code="transitions_not_kept",
            )
        return table.to_pandas()

    def _repr_html_(self) -> str:
        head = "Dry run of an export" if self.dry_run else f"Export {html.escape(str(self.run_id))}"
        rows = "".join(
            f"<tr><td>{k}</td><td style='text-align:right'>{v:,}</td></tr>"
            for k, v in (
                ("profiles targeted", self.profiles_targeted),
                ("profiles exported", self.profiles_exported),
                ("profiles without ID", self.profiles_without_id),
                ("IDs exported", self.ids_exported),
                ("IDs already shared", self.ids_already_shared),
                ("IDs too long for AAM", self.ids_too_long),
            )
        )
        files = ", ".join(html.escape(f) for f in self.files) or "none"
        return (
            f"<div><b>{head}</b> to {html.escape(self.shared_audience.display)}"
            f"{' (created)' if self.created else ''} through {html.escape(self.data_source)}"
            f"<table>{rows}</table>files: {files}<br>available from {self.available_from} to "
            f"{self.available_to}</div>"
        )
