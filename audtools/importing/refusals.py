"""Step 1 of an import (SPEC §5): every refusal, checked before anything is written.

:func:`check_refusals` reads the configuration, the catalog, the audiences and the key, and
either raises :class:`~audtools.errors.RefusedError` (or the operator's or the key's own error)
or returns the :class:`ImportPlan` the rest of the import follows. A refusal changes nothing and
records no run.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from audtools.config import DataSource
from audtools.errors import RefusedError
from audtools.formats.catalog import SharedAudience
from audtools.shared_audiences import find_shared_audience
from audtools.workspace import Workspace
from audtools.workspace.keys import load_key
from audtools.workspace.operators import check_operator


@dataclass(frozen=True)
class ImportPlan:
    """What an import that passed every refusal works with.

    Attributes:
        source: the data source.
        shared: the shared audience, a segment.
        key: the data source's AES key (None without encryption).
        file_audience: whether the audience is a File audience (SPEC §5 step 5): encryption on,
            channel ``email`` or ``sms``, no ``--force-reconciliation``.
    """

    source: DataSource
    shared: SharedAudience
    key: bytes | None
    file_audience: bool

    @property
    def audience_type(self) -> str:
        """``"file"`` or ``"experience_cloud"``."""
        return "file" if self.file_audience else "experience_cloud"


def check_refusals(
    ws: Workspace,
    con: duckdb.DuckDBPyConnection,
    label: str,
    shared_audience: str | int,
    data_source: str,
    force_reconciliation: bool,
    operator: str | None,
) -> ImportPlan:
    """Check every refusal of SPEC §5 step 1, in the order the SPEC lists them.

    Args:
        ws: the workspace.
        con: its open database connection (read only here).
        label: the audience's label.
        shared_audience: a ``sid`` or an exact catalog name.
        data_source: the ID of a configured data source.
        force_reconciliation: ``--force-reconciliation``.
        operator: the operator (None: the workspace's default).

    Returns:
        The plan of the import.

    Raises:
        AudtoolsError: the refusal (``not_ims``, ``unknown_operator``, ``unknown_data_source``,
            ``unknown_shared_audience``, ``ambiguous_shared_audience``, ``not_a_segment``,
            ``not_encrypted``, ``bad_label``, ``label_in_use``, ``missing_key``, ``bad_key``).
    """
    cfg = ws.config
    check_operator(cfg, operator)
    source = cfg.data_source(data_source)
    shared = _segment(ws, con, shared_audience)
    if force_reconciliation and not source.encrypted:
        raise RefusedError(
            f"--force-reconciliation only applies to encrypted data sources; {source.id} is not "
            "encrypted. Run without it.",
            code="not_encrypted",
        )
    _check_label(con, label, shared, source)
    key = None
    if source.encrypted:
        key = load_key(key_env=source.key_env, key_file=source.key_file, base_dir=cfg.root)
    file_audience = source.encrypted and source.channel in ("email", "sms") and not force_reconciliation
    return ImportPlan(source, shared, key, file_audience)


def _segment(ws: Workspace, con: duckdb.DuckDBPyConnection, ref: str | int) -> SharedAudience:
    """The shared audience named ``ref``; refused unless it is a segment."""
    shared = find_shared_audience(ws, con, ref)
    if shared.type != "segment":
        raise RefusedError(
            f"{shared.display} is a {shared.type}, not a segment: only segments can be imported.",
            code="not_a_segment",
        )
    return shared


def _check_label(
    con: duckdb.DuckDBPyConnection, label: str, shared: SharedAudience, source: DataSource
) -> None:
    """Refuse an empty label, or one held by an audience of another shared audience or data
    source (the same pair's audience is replaced)."""
    if not label or not label.strip():
        raise RefusedError("The audience label is empty; give a label.", code="bad_label")
    row = con.execute(
        "SELECT sid, data_source FROM audiences WHERE label = ?", [label]
    ).fetchone()
    if row is not None and (int(row[0]) != shared.sid or row[1] != source.id):
        raise RefusedError(
            f"The label {label!r} is held by the audience of shared audience {row[0]} through "
            f"{row[1]}; choose another label.",
            code="label_in_use",
        )
