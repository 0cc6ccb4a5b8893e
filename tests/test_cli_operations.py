"""What an admin running the desk from a shell meets: passwords kept off command lines, a
database closed to other users, and a root shell that must not take the instance's files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpdesk.cli import main

HELPDESK = [sys.executable, "-m", "helpdesk.cli"]


def _env(instance: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    env["HELPDESK_INSTANCE"] = str(instance)
    return env


def _run(args: list[str], instance: Path, stdin: str | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(HELPDESK + args, env={**_env(instance), **(env or {})}, input=stdin,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def instance(tmp_path: Path) -> Path:
    """A SQLite instance made by `helpdesk init`, as an admin makes one."""
    folder = tmp_path / "instance"
    made = _run(["init", "--no-demo"], folder)
    assert made.returncode == 0, made.stderr
    return folder


def _can_log_in(instance: Path, username: str, password: str) -> bool:
    from helpdesk import people
    from helpdesk.app import create_app
    from helpdesk.db import database
    from helpdesk.models import Agent

    app = create_app({"instance_path": str(instance)})
    with app.app_context(), database.connection_context():
        return people.check_password(Agent.get(Agent.username == username), password)


# -- passwords off the command line -----------------------------------------------------------


def test_user_add_asks_for_the_password_twice_hidden(instance):
    result = CliRunner().invoke(main, ["--instance", str(instance), "user", "add", "ana", "--name", "Ana"],
                                input="correct horse battery\ncorrect horse battery\n")
    assert result.exit_code == 0, result.output
    assert "Added agent ana." in result.output
    assert "correct horse battery" not in result.output  # hidden as typed
    assert "Repeat for confirmation" in result.output
    assert _can_log_in(instance, "ana", "correct horse battery")


def test_user_add_asks_again_when_the_two_passwords_differ(instance):
    result = CliRunner().invoke(main, ["--instance", str(instance), "user", "add", "ana", "--name", "Ana"],
                                input="first try phrase\nfirst try phrasx\n"
                                      "second try phrase\nsecond try phrase\n")
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output.lower()
    assert _can_log_in(instance, "ana", "second try phrase")


def test_user_add_reads_the_password_from_stdin_in_a_script(instance):
    added = _run(["user", "add", "ana", "--name", "Ana", "--password-stdin"], instance,
                 stdin="piped secret phrase\nthe rest is ignored\n")
    assert added.returncode == 0, added.stderr
    assert "Added agent ana." in added.stdout
    assert "Password" not in added.stdout + added.stderr  # nothing asked
    assert added.stderr == ""  # nor a library's deprecation warning printed to the admin
    assert _can_log_in(instance, "ana", "piped secret phrase")


def test_user_add_password_stdin_refuses_an_empty_line_and_a_second_password(instance):
    empty = _run(["user", "add", "ana", "--name", "Ana", "--password-stdin"], instance, stdin="\n")
    assert empty.returncode == 2 and "read no password" in empty.stderr
    both = _run(["user", "add", "ana", "--name", "Ana", "--password-stdin", "--password", "x" * 12],
                instance, stdin="piped secret phrase\n")
    assert both.returncode == 2 and "not both" in both.stderr
    listed = _run(["user", "add", "--help"], instance)
    assert "Visible to other users" in " ".join(listed.stdout.split())  # --password says so


# -- database files closed to other users -----------------------------------------------------


def _run_with_umask(args: list[str], instance: Path, umask: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(HELPDESK + args, env=_env(instance), capture_output=True, text=True,
                          timeout=120, check=False, preexec_fn=lambda: os.umask(umask))


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_new_database_and_queue_files_are_closed_to_other_users(tmp_path):
    # Under the usual umask SQLite (and Huey) created helpdesk.db and queue.db 0644: any local
    # user could read every password hash and stored SMTP secret.
    folder = tmp_path / "instance"
    made = _run_with_umask(["init", "--no-demo"], folder, 0o022)
    assert made.returncode == 0, made.stderr
    assert _mode(folder / "helpdesk.db") == 0o640
    assert _mode(folder / "queue.db") == 0o640
    # The WAL and shared-memory files the running app keeps beside it take the same mode.
    from helpdesk.app import create_app
    from helpdesk.db import database
    from helpdesk.models import Team

    create_app({"instance_path": str(folder)})
    with database.connection_context():
        Team.create(name="Network")
        assert _mode(folder / "helpdesk.db-wal") == 0o640
        assert _mode(folder / "helpdesk.db-shm") == 0o640


def test_a_group_shared_umask_keeps_group_write_but_never_others(tmp_path):
    folder = tmp_path / "instance"
    assert _run_with_umask(["init", "--no-demo"], folder, 0o002).returncode == 0
    assert _mode(folder / "helpdesk.db") == 0o660  # the MTA's pipe user in the group writes too


def test_db_upgrade_and_worker_warn_about_a_database_other_users_can_read(instance):
    database_file = instance / "helpdesk.db"
    database_file.chmod(0o644)  # as SQLite left it before, or as an admin's cp made it
    upgraded = _run(["db", "upgrade"], instance)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "The schema is up to date." in upgraded.stdout
    assert (f"Warning: the SQLite database is open to other users of this machine: {database_file} "
            "(mode 0644)") in upgraded.stderr
    assert f"chmod o-rwx {database_file}" in upgraded.stderr
    assert "task queue" not in upgraded.stderr  # queue.db is closed

    with subprocess.Popen(HELPDESK + ["worker"], env=_env(instance), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True) as worker:
        try:
            line = worker.stderr.readline()
            assert "WARNING helpdesk.cli: the SQLite database is open to other users" in line
            assert f"chmod o-rwx {database_file}" in line
        finally:
            worker.terminate()
            worker.wait(timeout=60)

    database_file.chmod(0o640)
    quiet = _run(["db", "upgrade"], instance)
    assert quiet.returncode == 0 and "Warning" not in quiet.stderr, quiet.stderr


# -- root and the service user's instance ------------------------------------------------------

NOBODY = 65534


@pytest.fixture
def nobodys_instance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An instance made by `init` and then given to another user (nobody), as a service
    user's instance is, in a folder that user can reach (pytest's own is root's, 0700)."""
    import shutil
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("needs root, to run a command as root against another user's folder")
    reachable = Path(tempfile.mkdtemp(prefix="helpdesk-root-"))
    reachable.chmod(0o711)
    folder = reachable / "instance"
    try:
        made = _run(["init", "--no-demo"], folder)
        assert made.returncode == 0, made.stderr
        (folder / "queue.db").unlink()  # as if the service had not started yet
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, NOBODY, NOBODY)
        yield folder
    finally:
        shutil.rmtree(reachable)


def test_root_is_refused_an_instance_that_belongs_to_the_service_user(nobodys_instance):
    # As root, `user add` used to create queue.db (and the database's -wal and -shm) owned by
    # root, and the service user's worker then failed on every write to its queue.
    before = sorted(path.name for path in nobodys_instance.iterdir())
    refused = _run(["user", "add", "ana", "--name", "Ana", "--password-stdin"], nobodys_instance,
                   stdin="piped secret phrase\n")
    assert refused.returncode == 1
    message = " ".join(refused.stderr.split())
    assert (f"the instance folder {nobodys_instance} belongs to nobody, and this command runs "
            "as root") in message
    assert f"sudo -u nobody helpdesk --instance {nobodys_instance} user" in message
    assert sorted(path.name for path in nobodys_instance.iterdir()) == before  # nothing created
    assert all(path.stat().st_uid == NOBODY for path in nobodys_instance.rglob("*"))

    listing = _run(["--help"], nobodys_instance)  # listing plugin commands builds the app too
    assert listing.returncode == 1 and "belongs to nobody" in listing.stderr
    mail = _run(["mail-in"], nobodys_instance, stdin="From: a@example.com\n\nhello\n")
    assert mail.returncode == 75  # EX_TEMPFAIL: the MTA keeps the message
    assert "belongs to nobody" in mail.stderr
    assert sorted(path.name for path in nobodys_instance.iterdir()) == before


def test_root_on_purpose_says_so_and_is_let_through(nobodys_instance):
    # A container that runs as root over a volume owned by another user id is told how to
    # say it means it, and then works.
    refused = _run(["user", "add", "ana", "--name", "Ana", "--password-stdin"], nobodys_instance,
                   stdin="piped secret phrase\n")
    assert "HELPDESK_RUN_AS_ROOT=1" in " ".join(refused.stderr.split())
    added = _run(["user", "add", "ana", "--name", "Ana", "--password-stdin"], nobodys_instance,
                 stdin="piped secret phrase\n", env={"HELPDESK_RUN_AS_ROOT": "1"})
    assert added.returncode == 0, added.stderr


def test_root_may_use_an_instance_that_is_roots_own(instance):
    # A desk run as root (its folder root's) is not refused: nothing would end up half-owned.
    if os.geteuid() != 0:
        pytest.skip("needs root")
    added = _run(["user", "add", "ana", "--name", "Ana", "--password-stdin"], instance,
                 stdin="piped secret phrase\n")
    assert added.returncode == 0, added.stderr
