"""Polling IMAP mailboxes: each message is received, committed, and only then marked seen.

A message is fetched with ``BODY.PEEK[]`` (which leaves it unseen), handed to
:func:`helpdesk.mail.receive.receive` (which commits it, or quarantines it),
and only after that commit flagged ``\\Seen``. A crash in between leaves it
unseen; the next poll fetches it again and the Message-ID makes it a
duplicate — so it lands exactly once. Two pollers at once are safe for the
same reason (and the periodic task also takes a per-mailbox lock). A
message that cannot be read is quarantined like any other, so it never
blocks the ones behind it; while the database is unavailable the poll stops
and leaves the rest unseen for the next one.

Mailboxes are configured in the instance file::

    [plugins.imap.mailboxes.support]
    host = "imap.example.com"
    port = 993
    security = "tls"               # tls | starttls | none
    username = "support@example.com"
    password_file = "/run/secrets/imap"
    folder = "INBOX"
"""

from __future__ import annotations

import contextlib
import hashlib
import imaplib
import logging
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import peewee

from helpdesk.config import ConfigError
from helpdesk.context import Context
from helpdesk.mail.receive import receive

logger = logging.getLogger(__name__)
BATCH = 50


@dataclass(frozen=True)
class Mailbox:
    name: str
    host: str
    port: int
    security: str
    username: str
    password: str
    folder: str = "INBOX"
    timeout: float = 30.0


@dataclass
class Polled:
    """What one poll of one mailbox did: outcomes by message, and why it stopped early, if it did."""

    mailbox: str
    outcomes: list[str] = field(default_factory=list)
    stopped: str = ""

    def summary(self) -> str:
        """One line for people: what was received, and why the poll stopped. A poll that
        failed before any message must not read "nothing new": the mail is still waiting."""
        done = ", ".join(self.outcomes)
        if not self.stopped:
            return done or "nothing new"
        return f"{done}; then {self.stopped}" if done else f"FAILED, {self.stopped}"


def mailboxes(ctx: Context) -> list[Mailbox]:
    """The configured mailboxes, checked (a :class:`ConfigError` names the bad one)."""
    configured = ctx.plugin_settings("imap").get("mailboxes") or {}
    if not isinstance(configured, Mapping):
        raise ConfigError("[plugins.imap.mailboxes.<name>]: expected one table per mailbox")
    found = []
    for name, values in configured.items():
        if not isinstance(values, Mapping) or "host" not in values or "username" not in values:
            raise ConfigError(f"[plugins.imap.mailboxes.{name}]: host and username are required")
        security = str(values.get("security", "tls"))
        if security not in {"tls", "starttls", "none"}:
            raise ConfigError(f"[plugins.imap.mailboxes.{name}] security: tls, starttls or none")
        password = values.get("password")
        if password is None and values.get("password_file"):
            try:
                password = Path(str(values["password_file"])).read_text(encoding="utf-8").strip()
            except OSError as error:
                raise ConfigError(
                    f"[plugins.imap.mailboxes.{name}] password_file: {error.strerror}") from None
        try:
            port = int(values.get("port", 993 if security == "tls" else 143))
            timeout = float(values.get("timeout", 30))
        except (TypeError, ValueError):
            raise ConfigError(f"[plugins.imap.mailboxes.{name}] port/timeout: expected numbers") from None
        found.append(Mailbox(str(name), str(values["host"]), port, security, str(values["username"]),
                             str(password or ""), str(values.get("folder", "INBOX")), timeout))
    return found


def _connect(box: Mailbox) -> imaplib.IMAP4:
    if box.security == "tls":
        client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
            box.host, box.port, ssl_context=ssl.create_default_context(), timeout=box.timeout)
    else:
        client = imaplib.IMAP4(box.host, box.port, timeout=box.timeout)
    try:
        if box.security == "starttls":
            client.starttls(ssl_context=ssl.create_default_context())
        client.login(box.username, box.password)
        status, _ = client.select(_quote(box.folder))
        if status != "OK":
            raise imaplib.IMAP4.error(f"cannot open folder {box.folder!r}")
    except BaseException:
        with contextlib.suppress(OSError):  # the connection is open: a refused login (or
            client.shutdown()  # a password imaplib cannot send) must not leave it so
        raise
    return client


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _raw(fetched: list[Any]) -> bytes | None:
    for item in fetched:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
            return item[1]
    return None


def pass_name(box: str) -> str:
    """The name a mailbox's polls are recorded under (``PeriodicRun``; /metrics shows it)."""
    name = f"imap:{box}"
    if len(name) <= 64:  # the column's length
        return name
    # Two long names alike in their first characters must not share one row: cut, and tell
    # them apart by a hash of the whole name.
    return f"{name[:55]}~{hashlib.sha256(box.encode()).hexdigest()[:8]}"


def poll(ctx: Context, box: Mailbox, batch: int = BATCH) -> Polled:
    """Receive up to ``batch`` unseen messages of one mailbox (see the module docstring), and
    record the poll with why it stopped: a mailbox that cannot be reached (a wrong host or
    password) would otherwise show only in the worker's log while customers' mail waits."""
    from helpdesk.clock import now
    from helpdesk.leases import record_pass

    started, clock_start = now(), time.monotonic()
    result = Polled(box.name)
    try:
        result = _poll(ctx, box, batch)
    except Exception as error:  # noqa: BLE001 - a bug: said like any other failed poll (the
        # Inbound mail page, mail-poll, /metrics), not a silent crash every minute
        result.stopped = f"the poll failed: {type(error).__name__}: {error}"
        logger.exception("IMAP %s: the poll failed", box.name)
    record_pass(pass_name(box.name), started, time.monotonic() - clock_start, result.stopped)
    return result


def _poll(ctx: Context, box: Mailbox, batch: int) -> Polled:
    result = Polled(box.name)
    try:
        client = _connect(box)
    except (OSError, imaplib.IMAP4.error, ValueError) as error:  # ValueError: imaplib sends
        # ASCII only, so a user name, password or folder with "ä" in it cannot be sent
        result.stopped = f"cannot reach the mailbox: {error}"
        logger.warning("IMAP %s: %s", box.name, result.stopped)
        return result
    try:
        status, data = client.uid("SEARCH", None, "UNSEEN")
        uids = (data[0] or b"").split() if status == "OK" and data else []
        for uid in uids[:batch]:
            if not re.fullmatch(rb"\d+", uid):
                continue
            status, fetched = client.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
            raw = _raw(fetched) if status == "OK" else None
            if raw is None:
                continue
            try:
                received = receive(ctx, raw)  # committed (or quarantined) when this returns
            except (peewee.OperationalError, peewee.InterfaceError, peewee.DatabaseError, OSError) as error:
                result.stopped = f"stopped, the rest stays unseen: {type(error).__name__}: {error}"
                logger.warning("IMAP %s: %s", box.name, result.stopped)
                break
            except Exception:  # noqa: BLE001 - a bug on one message: it stays unseen, the rest go on
                logger.exception("IMAP %s: message %s could not be received; it stays unseen",
                                 box.name, uid.decode())
                continue
            result.outcomes.append(received.outcome)
            client.uid("STORE", uid.decode(), "+FLAGS.SILENT", "(\\Seen)")
    except (OSError, imaplib.IMAP4.error) as error:
        result.stopped = f"connection lost: {error}"
        logger.warning("IMAP %s: %s", box.name, result.stopped)
    finally:
        try:
            client.logout()
        except (OSError, imaplib.IMAP4.error):
            pass
    return result


def register(app: Any, huey: Any, ctx: Context) -> None:
    """The periodic poll: every minute, one task per mailbox (they run in parallel in the
    worker's threads), each under its own lock so a slow poll is never doubled."""
    from huey import crontab
    from huey.exceptions import TaskLockedException

    from helpdesk.db import database

    @huey.task(name="poll_mailbox", retries=0)
    def poll_mailbox(name: str) -> None:
        try:
            with huey.lock_task(f"imap-{name}"), app.app_context(), database.connection_context():
                for box in mailboxes(ctx):
                    if box.name == name:
                        polled = poll(ctx, box)
                        if polled.outcomes:
                            logger.info("IMAP %s: %s", name, ", ".join(polled.outcomes))
        except TaskLockedException:
            logger.info("IMAP %s: the previous poll is still running", name)

    @huey.periodic_task(crontab(minute="*"), name="poll_mailboxes")
    def poll_mailboxes() -> None:
        for box in mailboxes(ctx):
            poll_mailbox(box.name)
