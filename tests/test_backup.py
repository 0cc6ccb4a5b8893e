"""`helpdesk backup`: a consistent copy of the live SQLite database, taken while it serves."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from helpdesk.testing import PG_URL_VARIABLE

PG = bool(os.environ.get(PG_URL_VARIABLE))


def run_backup(instance: Path, target: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    env.update(HELPDESK_INSTANCE=str(instance), HELPDESK_SECRET_KEY="backup-test-" + "k" * 32)
    if PG:
        env["HELPDESK_DATABASE_URL"] = os.environ[PG_URL_VARIABLE]
    return subprocess.run([sys.executable, "-m", "helpdesk.cli", "backup", str(target)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(PG, reason="PostgreSQL is backed up with pg_dump (tested below)")
def test_backup_copies_every_committed_incident_while_agents_keep_writing(app, tmp_path, log_incident):
    for n in range(30):
        log_incident(title=f"Before the backup {n}")
    # Writers keep logging incidents while the backup runs: the copy is a consistent snapshot.
    stop = threading.Event()

    def keep_writing() -> None:
        n = 0
        while not stop.is_set():
            log_incident(title=f"During the backup {n}")
            n += 1

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        result = run_backup(tmp_path, tmp_path / "backups" / "helpdesk-1.db")
    finally:
        stop.set()
        writer.join()
    assert result.returncode == 0, result.stderr
    copy = sqlite3.connect(tmp_path / "backups" / "helpdesk-1.db")
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        titles = [row[0] for row in copy.execute("SELECT title FROM incident ORDER BY id")]
        # every incident committed before the backup is there, each with its timeline
        assert titles[:30] == [f"Before the backup {n}" for n in range(30)]
        assert copy.execute("SELECT COUNT(*) FROM incident WHERE id NOT IN "
                            "(SELECT incident_id FROM timeline_entry)").fetchone() == (0,)
    finally:
        copy.close()
    assert f"Backed up {len(titles)} incidents" in result.stdout
    assert not list((tmp_path / "backups").glob(".*partial"))


@pytest.mark.skipif(PG, reason="SQLite only")
def test_backup_never_overwrites_an_existing_file(app, tmp_path, log_incident):
    log_incident(title="Keep me")
    target = tmp_path / "helpdesk-backup.db"
    target.write_text("yesterday's backup")
    result = run_backup(tmp_path, target)
    assert result.returncode != 0
    assert "exists already" in result.stderr
    assert target.read_text() == "yesterday's backup"


@pytest.mark.skipif(PG, reason="SQLite only")
def test_backup_file_is_readable_by_its_owner_only(app, tmp_path, log_incident):
    # Under the usual umask 022 the copy used to be world-readable (-rw-r--r--) in
    # /var/backups, handing any local user the password hashes and stored SMTP secrets.
    log_incident(title="Private")
    target = tmp_path / "backups" / "helpdesk-2.db"
    old = os.umask(0o022)
    try:
        result = run_backup(tmp_path, target)
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    assert target.stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(not PG, reason="the PostgreSQL hint")
def test_backup_of_postgresql_points_to_pg_dump(app, tmp_path):
    result = run_backup(tmp_path, tmp_path / "x.db")
    assert result.returncode != 0
    assert "pg_dump" in result.stderr
    assert not (tmp_path / "x.db").exists()
