"""The Campaign database: schema versions, migrations, the workspace lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import pytest

from audtools import __version__
from audtools.errors import WorkspaceBusy, WorkspaceError
from audtools.workspace import Workspace, init_workspace, new_run_id
from audtools.workspace import database as store


def test_init_creates_the_layout(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    for sub in ("audtools.toml", "campaign.duckdb", "drops/import", "drops/export", "runs"):
        assert (ws.root / sub).exists(), sub
    with ws.session() as con:
        assert store.schema_info(con) == (store.SCHEMA_VERSION, __version__)


def test_init_refuses_an_existing_workspace(workspace: Workspace) -> None:
    before = workspace.config.path.read_text()
    with pytest.raises(WorkspaceError) as info:
        init_workspace(workspace.root)
    assert info.value.code == "workspace_exists"
    assert workspace.config.path.read_text() == before


def test_a_newer_workspace_is_refused_naming_both_versions(workspace: Workspace) -> None:
    con = store.connect(workspace.config.database)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.execute("UPDATE meta SET value = '9.9.9' WHERE key = 'audtools_version'")
    con.close()
    with pytest.raises(WorkspaceError) as info:
        with workspace.session():
            pass
    assert info.value.code == "workspace_too_new"
    assert "9.9.9" in info.value.message and __version__ in info.value.message


def test_a_workspace_of_a_newer_audtools_release_is_refused(workspace: Workspace) -> None:
    con = store.connect(workspace.config.database)
    con.execute("UPDATE meta SET value = '99.0.0' WHERE key = 'audtools_version'")
    con.close()
    with pytest.raises(WorkspaceError) as info:
        with workspace.session():
            pass
    assert info.value.code == "workspace_too_new" and "99.0.0" in info.value.message


def test_migration_copies_the_database_aside_first(workspace: Workspace, monkeypatch) -> None:
    with workspace.session() as con:
        con.execute("INSERT INTO profiles VALUES ('P1')")
    monkeypatch.setattr(store, "MIGRATIONS", [*store.MIGRATIONS, "CREATE TABLE extra (x INTEGER);"])
    monkeypatch.setattr(store, "SCHEMA_VERSION", len(store.MIGRATIONS))
    with workspace.session() as con:
        assert store.schema_info(con)[0] == store.SCHEMA_VERSION
        assert con.execute("SELECT count(*) FROM extra").fetchone() == (0,)
    backups = list(workspace.root.glob(f"campaign.duckdb.v{store.SCHEMA_VERSION - 1}-*.bak"))
    assert len(backups) == 1
    old = store.connect(backups[0], read_only=True)
    assert store.schema_info(old)[0] == store.SCHEMA_VERSION - 1
    assert old.execute("SELECT profile_id FROM profiles").fetchall() == [("P1",)]
    old.close()


def test_a_failed_migration_changes_nothing(workspace: Workspace, monkeypatch) -> None:
    monkeypatch.setattr(store, "MIGRATIONS", [*store.MIGRATIONS, "CREATE TABLE ok (x INT); SELEC broken;"])
    monkeypatch.setattr(store, "SCHEMA_VERSION", len(store.MIGRATIONS))
    with pytest.raises(duckdb.Error):
        with workspace.session():
            pass
    con = store.connect(workspace.config.database)
    assert store.schema_info(con)[0] == store.SCHEMA_VERSION - 1
    assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name='ok'").fetchone() == (0,)
    con.close()


def test_run_ids_have_the_spec_form() -> None:
    import re

    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", new_run_id())


HOLDER = textwrap.dedent(
    """
    import sys, time
    from audtools.workspace import Workspace
    ws = Workspace(sys.argv[1])
    with ws.session(run_id="20261128T000000Z-abcdef", purpose="import"):
        print("locked", flush=True)
        time.sleep(60)
    """
)


def _start_holder(ws: Workspace) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(ws.root)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.slow
def test_a_second_process_waits_then_says_busy_naming_the_run(workspace: Workspace) -> None:
    proc = _start_holder(workspace)
    try:
        started = time.monotonic()
        with pytest.raises(WorkspaceBusy) as info:
            with store.WorkspaceLock(workspace.root, timeout=0.6):
                pass
        assert time.monotonic() - started >= 0.5
        assert info.value.code == "workspace_busy"
        assert "20261128T000000Z-abcdef" in info.value.message
        assert "import" in info.value.message
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_a_killed_holder_never_leaves_the_workspace_busy(workspace: Workspace) -> None:
    proc = _start_holder(workspace)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with workspace.session() as con:  # the database is intact too
        assert con.execute("SELECT count(*) FROM profiles").fetchone() == (0,)


def test_the_lock_is_reentrant_within_a_process(workspace: Workspace) -> None:
    with workspace.session():
        with store.WorkspaceLock(workspace.root, timeout=0):
            pass
    with store.WorkspaceLock(workspace.root, timeout=0):
        pass


def test_another_thread_of_the_holding_process_reenters(workspace: Workspace) -> None:
    entered: list[bool] = []

    def take() -> None:
        with store.WorkspaceLock(workspace.root, timeout=0):
            entered.append(True)

    with workspace.lock(run_id="20261128T000000Z-abcdef", purpose="import"):
        thread = threading.Thread(target=take)
        thread.start()
        thread.join()
        assert entered == [True]
        # The inner hold did not end the outer one: the holder is still named.
        assert store.WorkspaceLock(workspace.root, 0).holder()["run_id"] == "20261128T000000Z-abcdef"


@pytest.mark.slow
def test_a_waiter_reads_who_holds_the_lock_and_nothing_once_it_is_free(
    workspace: Workspace,
) -> None:
    proc = _start_holder(workspace)
    try:
        holder = store.WorkspaceLock(workspace.root, timeout=0).holder()
        assert holder["run_id"] == "20261128T000000Z-abcdef" and holder["pid"] == proc.pid
        assert holder["purpose"] == "import" and str(holder["since"]).endswith("Z")
    finally:
        proc.kill()  # its side file stays behind: the next holder replaces it, then removes it
        proc.wait()
    with workspace.session(purpose="catalog"):
        assert store.WorkspaceLock(workspace.root, timeout=0).holder()["purpose"] == "catalog"
    assert store.WorkspaceLock(workspace.root, timeout=0).holder() == {}


@pytest.mark.slow
def test_the_cli_waits_for_lock_timeout_then_exits_1_busy(workspace: Workspace) -> None:
    text = workspace.config.path.read_text().replace("lock_timeout = 60", "lock_timeout = 1")
    workspace.config.path.write_text(text)
    proc = _start_holder(workspace)
    try:
        started = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", "audtools.cli.main", "catalog", "-w", str(workspace.root), "--json"],
            capture_output=True, text=True, timeout=60,
        )
        assert time.monotonic() - started >= 1
        assert out.returncode == 1
        assert json.loads(out.stdout)["error"]["code"] == "workspace_busy"
        assert "20261128T000000Z-abcdef" in out.stderr and out.stderr.count("\n") == 1
    finally:
        proc.kill()
        proc.wait()
    out = subprocess.run(
        [sys.executable, "-m", "audtools.cli.main", "catalog", "-w", str(workspace.root), "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr


def test_duckdb_memory_is_bounded_by_default_and_by_the_environment(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, runner
) -> None:
    from audtools.cli.main import cli

    def limit() -> str:
        with workspace.session() as con:
            return str(con.execute("SELECT current_setting('memory_limit')").fetchone()[0])

    monkeypatch.delenv(store.MEMORY_LIMIT_ENV, raising=False)
    assert limit() == "2.3 GiB"  # 2.5GB, as DuckDB shows it
    with workspace.session() as con:  # audtools' own progress bars only
        assert con.execute("SELECT current_setting('enable_progress_bar')").fetchone() == (False,)
    monkeypatch.setenv(store.MEMORY_LIMIT_ENV, "512MB")
    assert limit() == "488.2 MiB"
    monkeypatch.setenv(store.MEMORY_LIMIT_ENV, "lots")
    result = runner.invoke(cli, ["check", "-w", str(workspace.root)])
    assert result.exit_code == 1
    assert "AUDTOOLS_MEMORY_LIMIT='lots' is not a memory size" in result.output
    assert "Traceback" not in result.output
