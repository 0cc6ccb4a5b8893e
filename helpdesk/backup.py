"""Backups of a live SQLite database with SQLite's online backup API.

The copy is a consistent snapshot of every committed transaction (the WAL included)
taken while the server keeps serving: in WAL mode the backup only reads, so writers
never wait for it. It is written to a temporary file beside the target and renamed
into place only after an integrity check, so a failed backup never leaves a file
that looks complete. PostgreSQL installs use ``pg_dump`` instead (see the README).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path


class BackupError(Exception):
    """The backup could not be made; nothing was written at the target."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    bytes: int
    incidents: int


def backup_sqlite(source: Path, target: Path) -> BackupResult:
    """Copy the SQLite database at ``source`` to ``target`` (which must not exist yet)."""
    if target.exists():
        raise BackupError(f"{target} exists already; choose a new file name.")
    if not source.exists():
        raise BackupError(f"there is no database at {source}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    # The copy holds password hashes, stored secrets and every customer's words: readable by
    # its owner only, whatever the umask (SQLite takes an empty file as a new database).
    os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    live = sqlite3.connect(source, timeout=10)  # the backup only reads from it
    try:
        copy = sqlite3.connect(partial)
        try:
            live.backup(copy)
            verdict = copy.execute("PRAGMA integrity_check").fetchone()[0]
            if verdict != "ok":
                raise BackupError(f"the copy failed its integrity check: {verdict}")
            incidents = copy.execute("SELECT COUNT(*) FROM incident").fetchone()[0]
        finally:
            copy.close()
    except (sqlite3.Error, BackupError) as error:
        partial.unlink(missing_ok=True)
        raise BackupError(str(error)) from None
    finally:
        live.close()
    os.replace(partial, target)
    return BackupResult(target, target.stat().st_size, incidents)
