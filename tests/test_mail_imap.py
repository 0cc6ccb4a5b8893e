"""The IMAP poller against a real IMAP server on loopback (Debian's Dovecot, started here in a
temporary folder): messages are received and only then marked seen, a crash between the
commit and the \\Seen flag does not deliver twice, two pollers at once deliver each message
once, and a bad message is quarantined without blocking the rest.
"""

from __future__ import annotations

import datetime as dt
import imaplib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from helpdesk.db import database
from helpdesk.mail import imap
from helpdesk.models import InboundMail, Incident, PeriodicRun

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
PASSWORD = "imap-test-password"  # noqa: S105 - a throw-away server's password


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Dovecot:
    """A Dovecot IMAP server on loopback with one mailbox, in its own temporary folder."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="helpdesk-imap-"))
        self.folder.chmod(0o755)  # Dovecot's mail processes run as the dovecot user
        self.port = _free_port()
        home = self.folder / "home"
        home.mkdir()
        shutil.chown(home, "dovecot", "dovecot")
        self.config = self.folder / "dovecot.conf"
        self.config.write_text(f"""
base_dir = {self.folder}/run
state_dir = {self.folder}/state
log_path = {self.folder}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
passdb {{
  driver = static
  args = password={PASSWORD}
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={home}/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
}}
service anvil {{
  chroot =
}}
""")

    def start(self) -> None:
        subprocess.run([DOVECOT, "-c", str(self.config)], check=True, timeout=30)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError((self.folder / "dovecot.log").read_text())

    def stop(self) -> None:
        subprocess.run(["doveadm", "-c", str(self.config), "stop"], timeout=30, check=False,
                       capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)

    def client(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        client.login("support", PASSWORD)
        client.select("INBOX")
        return client

    def append(self, raw: bytes) -> None:
        client = self.client()
        client.append("INBOX", None, None, raw)
        client.logout()

    def unseen(self) -> int:
        client = self.client()
        _, data = client.uid("SEARCH", None, "UNSEEN")
        client.logout()
        return len((data[0] or b"").split())

    @property
    def settings(self) -> dict[str, Any]:
        return {"mailboxes": {"support": {"host": "127.0.0.1", "port": self.port, "security": "none",
                                          "username": "support", "password": PASSWORD}}}


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    if not os.path.exists(DOVECOT) or os.geteuid() != 0 or not shutil.which("doveadm"):
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but Dovecot cannot run here: apt-get install dovecot-imapd, run as root")
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd; .ci/run does) "
                    "or the tests do not run as root, which Dovecot needs here")
    server = Dovecot()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def helpdesk_settings(dovecot: Dovecot) -> dict[str, Any]:
    return {"support_address": "help@example.com", "plugins": {"imap": dovecot.settings}}


def message(number: int, sender: str = "ada@example.org") -> bytes:
    mail = EmailMessage()
    mail["From"], mail["To"] = sender, "help@example.com"
    mail["Subject"] = f"Problem number {number}"
    mail["Message-ID"] = f"<imap-{number}@example.org>"
    mail.set_content(f"Details of problem {number}.")
    return bytes(mail)


def test_poll_receives_each_message_then_marks_it_seen(app, ctx, dovecot):
    for number in range(3):
        dovecot.append(message(number))
    dovecot.append(b"From: nobody\r\nSubject: broken\r\n\r\nno sender address")  # quarantined
    dovecot.append(message(3))
    (box,) = imap.mailboxes(ctx)
    with app.app_context():
        polled = imap.poll(ctx, box)
    assert polled.outcomes == ["created"] * 3 + ["quarantined", "created"] and not polled.stopped
    assert dovecot.unseen() == 0
    assert Incident.select().count() == 4
    with app.app_context():
        assert imap.poll(ctx, box).outcomes == []  # nothing new


def test_a_sender_name_hiding_a_line_break_does_not_stop_the_mailbox(app, ctx, dovecot):
    # The standard parser refuses this From outright; one such message must not stop every
    # mail behind it, poll after poll.
    dovecot.append(message(1))
    dovecot.append(b"From: =?utf-8?q?Bob=0D=0ABcc:_x@y?= <bob@example.org>\r\nSubject: s\r\n"
                   b"Message-ID: <poison@example.org>\r\n\r\nx\r\n")
    dovecot.append(message(2))
    (box,) = imap.mailboxes(ctx)
    with app.app_context():
        polled = imap.poll(ctx, box)
    assert polled.outcomes == ["created"] * 3 and not polled.stopped
    assert dovecot.unseen() == 0


def test_a_crash_between_commit_and_seen_delivers_once(app, ctx, dovecot, monkeypatch):
    dovecot.append(message(1))
    real_uid = imaplib.IMAP4.uid

    def connection_dies_at_store(self: imaplib.IMAP4, command: str, *args: Any) -> Any:
        if command == "STORE":
            raise OSError("connection reset by peer")
        return real_uid(self, command, *args)

    (box,) = imap.mailboxes(ctx)
    with monkeypatch.context() as patch:
        patch.setattr(imaplib.IMAP4, "uid", connection_dies_at_store)
        with app.app_context():
            first = imap.poll(ctx, box)
    assert first.outcomes == ["created"] and "connection lost" in first.stopped
    assert dovecot.unseen() == 1  # the incident is committed, the message still unseen
    with app.app_context():
        second = imap.poll(ctx, box)
    assert second.outcomes == ["duplicate"]
    assert dovecot.unseen() == 0
    assert Incident.select().count() == 1 and InboundMail.select().count() == 1


@contextmanager
def database_down(url: str) -> Iterator[None]:
    """The helpdesk's database unavailable for a while: on SQLite another process holds the
    file's exclusive lock; on PostgreSQL the database refuses connections and the open ones
    are ended (as a restart would)."""
    if url.startswith("sqlite"):
        import sqlite3

        holder = sqlite3.connect(url.split("///", 1)[1], isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        try:
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')


def test_with_the_database_down_the_message_stays_unseen_and_arrives_later(app, ctx, dovecot):
    """G11: nothing is marked seen that was not committed; the next polls deliver it, once."""
    dovecot.append(message(1))
    dovecot.append(message(2))
    (box,) = imap.mailboxes(ctx)
    with database_down(app.extensions["helpdesk"].settings.database_url):
        with app.app_context(), database.connection_context():  # as the worker's task runs it
            polled = imap.poll(ctx, box)
    assert polled.outcomes == [] and "stays unseen" in polled.stopped
    assert dovecot.unseen() == 2

    outcomes: list[str] = []
    for _ in range(3):  # a pooled connection the outage ended may fail once more
        with app.app_context(), database.connection_context():
            outcomes += imap.poll(ctx, box).outcomes
        if dovecot.unseen() == 0:
            break
    assert outcomes == ["created", "created"] and dovecot.unseen() == 0
    assert Incident.select().count() == 2 and InboundMail.select().count() == 2


def test_an_unreachable_mailbox_is_reported_not_raised(app, ctx, dovecot):
    box = imap.Mailbox("gone", "127.0.0.1", _free_port(), "none", "support", PASSWORD, timeout=2)
    with app.app_context():
        polled = imap.poll(ctx, box)
    assert polled.outcomes == [] and "cannot reach" in polled.stopped


def test_a_password_imap_cannot_send_is_reported_and_recorded(app, ctx, dovecot):
    # imaplib sends ASCII only: a password with "ä" raised out of the poll, so nothing was
    # recorded and the Inbound mail page went on saying the mailbox was fine.
    dovecot.append(message(1))
    box = imap.Mailbox("support", "127.0.0.1", dovecot.port, "none", "support", "pässwort", timeout=5)
    with app.app_context():
        polled = imap.poll(ctx, box)
    assert polled.outcomes == [] and polled.stopped.startswith("cannot reach the mailbox")
    assert "pässwort" not in polled.stopped
    run = PeriodicRun.get(PeriodicRun.name == imap.pass_name("support"))
    assert run.failures == 1 and run.error == polled.stopped
    assert dovecot.unseen() == 1


def test_two_pollers_at_once_deliver_each_message_once(app, dovecot):
    for number in range(6):
        dovecot.append(message(number, sender=f"user{number}@example.org"))
    settings = app.extensions["helpdesk"].settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    env.update({"HELPDESK_INSTANCE": str(settings.instance_path),
                "HELPDESK_DATABASE_URL": settings.database_url,
                "HELPDESK_SECRET_KEY": settings.secret_key, "HELPDESK_QUEUE_URL": "memory"})
    # The mailbox is configured in the instance file, as an admin would.
    (Path(settings.instance_path) / "helpdesk.toml").write_text(
        "[plugins.imap.mailboxes.support]\n"
        f'host = "127.0.0.1"\nport = {dovecot.port}\nsecurity = "none"\n'
        f'username = "support"\npassword = "{PASSWORD}"\n')
    pollers = [subprocess.Popen([sys.executable, "-m", "helpdesk.cli", "mail-poll"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in pollers]
    assert [p.returncode for p in pollers] == [0, 0], outputs
    assert Incident.select().count() == 6
    assert InboundMail.select().count() == 6
    assert dovecot.unseen() == 0
    lines = b"".join(out for out, _ in outputs).decode()
    assert lines.count("created") == 6  # each message created by exactly one of the two


def test_mail_poll_says_a_failed_poll_failed_rather_than_nothing_new(app, dovecot):
    dovecot.append(message(1))
    settings = app.extensions["helpdesk"].settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    env.update({"HELPDESK_INSTANCE": str(settings.instance_path),
                "HELPDESK_DATABASE_URL": settings.database_url,
                "HELPDESK_SECRET_KEY": settings.secret_key, "HELPDESK_QUEUE_URL": "memory"})
    (Path(settings.instance_path) / "helpdesk.toml").write_text(
        "[plugins.imap.mailboxes.support]\n"
        f'host = "127.0.0.1"\nport = {dovecot.port}\nsecurity = "none"\n'
        'username = "support"\npassword = "not-the-password"\n')
    poller = subprocess.run([sys.executable, "-m", "helpdesk.cli", "mail-poll"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert poller.returncode == 75, poller
    assert poller.stdout.startswith("support: FAILED, cannot reach the mailbox"), poller.stdout
    assert "nothing new" not in poller.stdout
    assert dovecot.unseen() == 1  # still waiting for the next poll


def test_a_poll_that_stops_part_way_says_what_it_took_first():
    polled = imap.Polled("support", ["created", "replied"], "connection lost: EOF")
    assert polled.summary() == "created, replied; then connection lost: EOF"
    assert imap.Polled("support").summary() == "nothing new"


def test_the_worker_polls_every_configured_mailbox_each_minute(app, ctx, dovecot):
    """The periodic task the worker runs (Huey runs it immediately in tests)."""
    dovecot.append(message(7))
    (periodic,) = [task for task in ctx.huey._registry.periodic_tasks if task.name == "poll_mailboxes"]
    assert periodic.validate_datetime(dt.datetime(2026, 3, 2, 9, 1))  # every minute
    ctx.huey.enqueue(periodic)
    assert Incident.select().count() == 1 and dovecot.unseen() == 0


def test_the_inbound_mail_page_says_when_a_mailbox_cannot_be_reached(app, ctx, dovecot, login, personas):
    # A wrong host or password showed only in the worker's log: the admin saw an empty, calm
    # Inbound mail page while customers' mail waited in the mailbox.
    admin = login(personas.admin)
    assert "not yet" in admin.get("/admin/mail").get_data(as_text=True)
    (box,) = imap.mailboxes(ctx)
    with app.app_context():
        imap.poll(ctx, box)
    page = admin.get("/admin/mail").get_data(as_text=True)
    assert f"support at 127.0.0.1:{dovecot.port} (INBOX)" in page and "working" in page
    dovecot.stop()
    with app.app_context():
        imap.poll(ctx, box)
    page = admin.get("/admin/mail").get_data(as_text=True)
    assert "cannot reach the mailbox" in page and "Mail waits in the mailbox" in page


def test_long_mailbox_names_alike_at_the_start_keep_their_own_status():
    """The status row's name has 64 characters: two mailboxes whose names differ only past
    that point would share one row, and one's failure would show as the other's."""
    first, second = "helpdesk-" + "x" * 60 + "-eu", "helpdesk-" + "x" * 60 + "-us"
    names = {imap.pass_name(first), imap.pass_name(second)}
    assert len(names) == 2 and all(len(name) <= 64 for name in names)
    assert imap.pass_name("support") == "imap:support"  # a short name stays as it reads
