"""AAM outbound batch files: names, ``.info`` manifests and rows, importable from one place.

Names are read by :mod:`audtools.formats.outbound_names` (each data source's ``outbound_name``),
``.info`` files by :mod:`audtools.formats.outbound_info`, rows streamed by
:class:`OutboundReader` (:mod:`audtools.formats.outbound_rows`).

Example:
    >>> name = parse_name("ftp_46390_14016_iter_1486140844000-1.sync.gz")
    >>> name.root, name.split, name.gzip
    ('ftp_46390_14016_iter_1486140844000', 1, True)
    >>> reader = OutboundReader("in/" + name.name, id_rule="visitor_id")
    >>> for chunk in reader:  # doctest: +SKIP
    ...     chunk.pairs  # line, id, sid, op
"""

from __future__ import annotations

from audtools.formats.outbound_info import (
    MAX_INFO_BYTES,
    InfoEntry,
    check_entry,
    file_md5,
    line_count_agrees,
    parse_info,
    read_info,
)
from audtools.formats.outbound_names import (
    Claim,
    NameMatcher,
    OutboundName,
    info_name,
    looks_like_batch,
    parse_name,
    read_name,
)
from audtools.formats.outbound_parse import REJECT_REASONS, IdRule
from audtools.formats.outbound_rows import (
    PAIRS_SCHEMA,
    REJECTS_SCHEMA,
    OutboundReader,
    PathLike,
    RowChunk,
    count_newlines,
)

__all__ = [
    "MAX_INFO_BYTES",
    "PAIRS_SCHEMA",
    "REJECTS_SCHEMA",
    "REJECT_REASONS",
    "Claim",
    "IdRule",
    "InfoEntry",
    "NameMatcher",
    "OutboundName",
    "OutboundReader",
    "PathLike",
    "RowChunk",
    "check_entry",
    "count_newlines",
    "file_md5",
    "info_name",
    "line_count_agrees",
    "looks_like_batch",
    "parse_info",
    "parse_name",
    "read_info",
    "read_name",
]
