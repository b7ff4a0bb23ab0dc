"""The faces on remote drops (real sshd and moto servers, tests/servers.py): the widget screens
and the sync-job notebooks show the drop's URL, and never a credential (the SFTP password and
key passphrase of the environment are in neither the screens, the notebooks, the reports, the
run folders nor the logs)."""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ipywidgets as W
import nbformat
import pytest
import tomlkit
from click.testing import CliRunner
from conftest import samples_json
from servers import SshServer, keygen

from audtools.cli.main import cli
from audtools.widgets import CreateAudienceScreen, SaveAudienceScreen

pytestmark = pytest.mark.slow

PASSPHRASE = "pp-" + uuid.uuid4().hex  # the key's passphrase, only in the environment
PASSWORD = "pw-" + uuid.uuid4().hex  # a login password, only in the environment




@pytest.fixture
def remote_ws(
    sample_template: Path, tmp_path: Path, ssh: SshServer, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, str, str]:
    """A sample workspace whose import drop is on SFTP (a key with a passphrase, given in the
    environment, and a password there too) and whose export drop is on S3."""
    ws = tmp_path / "ws"
    shutil.copytree(sample_template, ws)
    served = tmp_path / "aam-outbound"
    shutil.move(ws / "drops/import", served)
    locked = tmp_path / "locked_key"
    ssh.add_client_key(keygen(locked, passphrase=PASSPHRASE))
    monkeypatch.setenv("AUDTOOLS_SFTP_KEY_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("AUDTOOLS_SFTP_PASSWORD", PASSWORD)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    import_url, export_url = ssh.url(served), f"s3://{s3.bucket}/campaign"
    doc = tomlkit.parse((ws / "audtools.toml").read_text())
    doc["workspace"]["import_drop"] = import_url  # type: ignore[index]
    doc["workspace"]["export_drop"] = export_url  # type: ignore[index]
    doc["sftp"] = {"known_hosts": str(ssh.known_hosts), "key_file": str(locked)}
    doc["s3"] = {"endpoint_url": s3.endpoint_url, "region": "us-east-1", "addressing": "path"}
    (ws / "audtools.toml").write_text(tomlkit.dumps(doc))
    return ws, import_url, export_url


def _texts(widget: Any) -> Iterator[str]:
    """Every text a screen shows: values, descriptions, options, tooltips, placeholders."""
    for name in ("value", "description", "tooltip", "placeholder"):
        value = getattr(widget, name, None)
        if isinstance(value, str):
            yield value
    for option in getattr(widget, "options", ()) or ():
        yield str(option)
    for child in getattr(widget, "children", ()) or ():
        if isinstance(child, W.Widget):
            yield from _texts(child)


def _no_secret(text: str, where: str) -> None:
    assert PASSPHRASE not in text, f"the key passphrase is in {where}"
    assert PASSWORD not in text, f"the SFTP password is in {where}"


def test_screens_show_the_drop_urls_and_no_credential(
    remote_ws: tuple[Path, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    ws, import_url, export_url = remote_ws
    caplog.set_level(logging.DEBUG)
    item = samples_json(ws)["imports"][0]
    create = CreateAudienceScreen(ws, progress=False)
    assert create.drop_url == import_url
    shown = "\n".join(_texts(create.widget))
    assert f"Import drop (read): <code>{import_url}</code>" in shown
    create.label.value = "Over SFTP"
    create.shared_audience.value = item["shared_audience"]
    create.data_source.value = item["data_source"]
    create.confirm.click()
    assert create.message_kind == "done", create.message
    assert create.result is not None and create.result.members == item["expected"]["members"]

    save = SaveAudienceScreen(ws, progress=False)
    assert save.drop_url == export_url
    save.condition.value = "loyalty_points >= 1000"
    save.segment_name.value = "Faces seg"
    assert save.create_segment()
    save.data_source.value = "samplesVisitorId"
    save.confirm.click()
    save.start.click()
    assert save.result is not None and save.result.files, save.message
    shown_save = "\n".join(_texts(save.widget))
    assert f"Export drop (written): <code>{export_url}</code>" in shown_save
    for where, text in (("the Create audience screen", "\n".join(_texts(create.widget))),
                        ("the Save audience screen", shown_save), ("the logs", caplog.text)):
        _no_secret(text, where)


def _outputs(notebook: Path) -> str:
    nb = nbformat.read(notebook, as_version=4)
    return json.dumps([c.get("outputs", []) for c in nb.cells if c.cell_type == "code"])


def test_job_notebooks_show_the_drop_urls_and_no_credential(
    remote_ws: tuple[Path, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    ws, import_url, export_url = remote_ws
    caplog.set_level(logging.DEBUG)
    item = samples_json(ws)["imports"][0]
    runner = CliRunner()
    ran = runner.invoke(cli, ["run", "-w", str(ws), "-v", "import_audience", "-p", "label", "Job",
                              "-p", "shared_audience", str(item["shared_audience"]),
                              "-p", "data_source", item["data_source"], "--json"])
    assert ran.exit_code == 0, ran.output + ran.stderr
    imported = json.loads(ran.stdout)
    assert imported["members"] == item["expected"]["members"]
    ran_export = runner.invoke(cli, ["run", "-w", str(ws), "-v", "export_audience", "-p",
                                     "segment_name", "Job seg", "-p", "data_source",
                                     "samplesVisitorId", "--json"])
    assert ran_export.exit_code == 0, ran_export.output + ran_export.stderr
    exported = json.loads(ran_export.stdout)

    import_dir, export_dir = ws / "runs" / imported["run_id"], ws / "runs" / exported["run_id"]
    assert f"Reads the import drop <code>{import_url}</code>" in _outputs(
        import_dir / "import_audience.ipynb")
    assert f"Writes to the export drop <code>{export_url}</code>" in _outputs(
        export_dir / "export_audience.ipynb")
    # The stakeholder report leaves the line out (an SFTP login@host reads like an address).
    assert import_url not in (import_dir / "report.html").read_text(encoding="utf-8")
    for path in sorted((ws / "runs").rglob("*")):
        if path.is_file():
            _no_secret(path.read_text(encoding="utf-8", errors="replace"), str(path))
    for where, text in (("the import job's output", ran.output + ran.stderr),
                        ("the export job's output", ran_export.output + ran_export.stderr),
                        ("the logs", caplog.text)):
        _no_secret(text, where)
