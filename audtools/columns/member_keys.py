"""The keys of encrypted members (SPEC §5 step 4), over a whole column: decrypted, normalised,
NULL when undecryptable. Used by the embedded import (:mod:`audtools.importing.members`) and by
the Dask engine's tasks (:mod:`audtools.engine.tasks`), which must give the same keys."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from audtools.columns import aes as crypto
from audtools.columns import identifiers as ids

__all__ = ["decrypted_keys"]


def decrypted_keys(
    values: pa.Array,
    key: bytes,
    iv: bytes,
    encoding: crypto.Encoding,
    kind: ids.NormaliserKind,
    region: str,
) -> tuple[pa.Array, bool]:
    """The keys of encrypted members, and whether normalising left every decrypted value as it
    was.

    Different canonical base64 texts are different ciphertexts, hence different plaintexts: keys
    can only coincide where normalising changed a plaintext (hex accepts either case, so hex
    members may share a key whatever this says).

    Args:
        values: the ciphertexts as text.
        key: the AES key.
        iv: the data source's IV.
        encoding: ``base64`` or ``hex``.
        kind: how decrypted values are normalised.
        region: the workspace's ``default_region``, for phone numbers.
    """
    plain = crypto.decrypt(values, key, iv, encoding)
    norm = ids.normalise(plain, kind, region)
    if kind == "sms":
        # A decrypted number that does not parse is kept trimmed (SPEC §5.5).
        norm = pc.if_else(pc.is_null(norm), ids.trim_ascii(plain), norm)
    keys = pc.if_else(ids.is_declared_id(norm), norm, pa.scalar(None, pa.string()))
    same = pc.all(pc.equal(keys, plain).fill_null(True)).as_py() is not False
    return keys, same
