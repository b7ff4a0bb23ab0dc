"""A throttled S3 import drop: moto's server behind a proxy that answers S3's ``503 SlowDown``
(tests/throttling.py). A few refusals are retried with backoff and the import gives the results of
a local folder; refusals that never end fail the import with ``drop_unreachable`` naming the drop
and the cause, applying nothing, and the next run succeeds."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from click.testing import CliRunner
from conftest import samples_json
from throttling import ThrottlingProxy

from audtools.cli.main import cli
from audtools.workspace import Workspace

pytestmark = pytest.mark.slow

_RUN_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")
_TIME = re.compile(r"20[0-9]{2}-[0-9]{2}-[0-9]{2}[T ][0-9:.]+Z?")



def _import(ws: Path) -> tuple[int, Any]:
    item = samples_json(ws)["imports"][0]
    result = CliRunner().invoke(cli, [
        "import", "-w", str(ws), "--label", item["label"], "--shared-audience",
        str(item["shared_audience"]), "--data-source", item["data_source"], "--json",
    ], catch_exceptions=False)
    data = json.loads(result.stdout)
    return result.exit_code, json.loads(_TIME.sub("TIME", _RUN_ID.sub("RUNID", json.dumps(data))))


def _state(ws: Path) -> dict[str, Any]:
    """What an import applies: batches, segment state, audiences and their members."""
    with Workspace(ws).session() as con:
        return {
            table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
            for table in ("batches", "batch_files", "segment_state", "source_state", "audiences",
                          "audience_members")
        }


def test_a_throttled_s3_import_drop_is_retried_then_unreachable(
    sample_template: Path, tmp_path: Path, s3: Any
) -> None:
    local = tmp_path / "local"
    shutil.copytree(sample_template, local)
    code, expected = _import(local)
    assert code == 0

    ws = tmp_path / "ws"
    shutil.copytree(sample_template, ws)
    client = s3.client()
    for path in sorted((ws / "drops/import").iterdir()):
        client.put_object(Bucket=s3.bucket, Key=f"outbound/{path.name}", Body=path.read_bytes())
    shutil.rmtree(ws / "drops/import")
    url = f"s3://{s3.bucket}/outbound"
    # Every read (GET: listings and object reads) refused, never a HEAD.
    with ThrottlingProxy(s3.port, throttle=None, rule=lambda method, _path: method == "GET") as proxy:
        doc = tomlkit.parse((ws / "audtools.toml").read_text())
        doc["workspace"]["import_drop"] = url  # type: ignore[index]
        doc["s3"] = {"endpoint_url": proxy.endpoint_url, "region": "us-east-1", "addressing": "path"}
        (ws / "audtools.toml").write_text(tomlkit.dumps(doc))
        before = _state(ws)

        # Throttled without end: retried with backoff, then drop_unreachable; nothing applied.
        started = time.monotonic()
        code, failed = _import(ws)
        assert time.monotonic() - started < 20
        assert code == 1 and failed["error"]["code"] == "drop_unreachable", failed
        message = failed["error"]["message"]
        assert message.startswith(f"The drop {url} cannot be reached while ")
        assert "(after 4 tries): the store throttled the requests (HTTP 503, SlowDown: " in message
        assert "Please reduce your request rate." in message
        assert proxy.throttled == 4
        assert _state(ws) == before

        # A few refusals of any request: retried, and the import is the local folder's.
        proxy.set_throttle(3)
        forwarded = proxy.forwarded
        code, result = _import(ws)
        assert code == 0, result
        assert proxy.throttled == 7 and proxy.forwarded > forwarded
        assert result == expected
        assert _state(ws) != before
