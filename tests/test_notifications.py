"""Notifications as people receive them: threaded e-mail to requesters through a real SMTP
server, signed webhooks with retries, timeouts, redirects and the private-address guard, the
outbox committing with the change or not at all, recovery after a worker dies holding a
claim, dead letters retried by an admin, the seed scenario's SLA warning to the owner,
per-agent preferences, and Slack-compatible chat messages.

Channels talk to real servers on loopback: an aiosmtpd SMTP server, the kit's
``http_receiver`` and, where needed, small servers written here (one that hangs, one that
redirects). Tasks run immediately, so a delivery is attempted as soon as its change commits;
retries happen when the frozen clock has moved past the backoff and the sweeper runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import parseaddr
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask

from helpdesk import event_outbox, incidents, sla
from helpdesk.context import SWEEP_GRACE_SECONDS
from helpdesk.db import write_transaction
from helpdesk.errors import DomainError
from helpdesk.models import (
    PRIORITIES,
    Agent,
    AgentChannel,
    Contact,
    Delivery,
    DeliveryAttempt,
    Incident,
    Notice,
    NotificationPreference,
)
from helpdesk.notify import outbox as notifications
from helpdesk.testing import FrozenClock, Personas, SmtpServer
from helpdesk_plugins import business_hours, chat_channel, email_channel, sla_priority, webhook_channel

SECRET = "s3cret"  # the webhook's shared secret
FROM = "Helpdesk <help@example.com>"
REQUESTER = "ada@example.org"


def utc(month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    """An instant of 2026 as stored (naive UTC; London is on UTC until 29 March)."""
    return dt.datetime(2026, month, day, hour, minute)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- servers -------------------------------------------------------------------------------


@pytest.fixture
def smtp(smtp_server: SmtpServer) -> SmtpServer:
    smtp_server.from_address = FROM
    return smtp_server


@dataclass
class _Server:
    """A tiny HTTP server on loopback with a custom answer; records the paths it was sent."""

    answer: Any  # callable(handler) that writes the response
    paths: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.paths.append(self.path)
                server.answer(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_port}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def hanging_server() -> Iterator[_Server]:
    """Reads the request, then says nothing for far longer than the webhook's timeout."""
    release = threading.Event()

    def hang(handler: BaseHTTPRequestHandler) -> None:
        release.wait(10)
        handler.send_response(200)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    server = _Server(hang)
    yield server
    release.set()
    server.close()


@pytest.fixture
def redirecting_server(http_receiver: Any) -> Iterator[_Server]:
    """Answers 302 with a Location on the kit's receiver (which must then see nothing)."""

    def redirect(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", f"{http_receiver.url}/redirected")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    server = _Server(redirect)
    yield server
    server.close()


def header(request: Any, name: str) -> str | None:
    """A request header, whatever its case."""
    return next((v for k, v in request.headers.items() if k.lower() == name.lower()), None)


# -- the app -------------------------------------------------------------------------------


@pytest.fixture
def helpdesk_plugins() -> list[Any]:
    return [email_channel, webhook_channel, chat_channel]


@pytest.fixture
def channel_settings(smtp: SmtpServer) -> dict[str, Any]:
    """``[plugins.*]`` for the channels; classes override it (e.g. to add webhooks)."""
    return {"email": smtp.settings, "chat": {"allow_private": ["127.0.0.1"], "timeout": 1}}


@pytest.fixture
def helpdesk_settings(channel_settings: dict[str, Any]) -> dict[str, Any]:
    return {"time_zone": "Europe/London", "plugins": channel_settings}


@pytest.fixture
def state(helpdesk_app: Flask) -> Any:
    return helpdesk_app.extensions["helpdesk"]


@pytest.fixture
def requester(helpdesk_app: Flask) -> Contact:
    with helpdesk_app.app_context():
        return Contact.create(name="Ada Lovelace", email=REQUESTER)


def fresh(model: Any, row_id: int) -> Any:
    return model.get_by_id(row_id)


def only_delivery(channel: str) -> Delivery:
    rows = list(Delivery.select().where(Delivery.channel == channel))
    assert len(rows) == 1, [(r.channel, r.recipient, r.event) for r in rows]
    return rows[0]


def attempts_of(delivery: Delivery) -> list[bool]:
    return [a.ok for a in DeliveryAttempt.select().where(DeliveryAttempt.delivery == delivery.id)
            .order_by(DeliveryAttempt.id)]


# -- 1. e-mail to the requester ----------------------------------------------------------------


def test_requester_gets_acknowledgement_reply_and_resolution_as_one_thread(ctx,
        helpdesk_app: Flask, state: Any, personas: Personas, requester: Contact, smtp: SmtpServer,
        frozen_clock: FrozenClock) -> None:
    reply = "Please install the new VPN client: version 5 < 6 & it reconnects by itself."
    resolution = "Replaced the power supply of the VPN concentrator."
    with helpdesk_app.app_context():
        incident = incidents.log_incident(ctx, title="VPN drops every hour", actor=personas.owner,
                                          service_desk=personas.service_desk, requester=requester)
        frozen_clock.advance(minutes=10)
        incidents.add_comment(ctx, incident.id, personas.owner, "Internal: check the concentrator logs.",
                              public=False)
        incidents.add_comment(ctx, incident.id, personas.owner, reply, public=True)
        frozen_clock.advance(hours=2)
        incidents.change_status(ctx, incident.id, personas.owner, "resolved", note=resolution)

    mails = smtp.to(REQUESTER)
    assert len(mails) == 3, "acknowledgement, public reply and resolution; the internal note is not sent"
    assert len(smtp.received) == 3, "nobody else is mailed: the owner did all of it himself"
    acknowledgement, answer, resolved = (m.message for m in mails)
    for received in mails:
        message = received.message
        assert received.rcpt_tos == [REQUESTER]
        assert parseaddr(message["From"]) == parseaddr(FROM)
        assert parseaddr(message["To"])[1] == REQUESTER
        assert incident.reference in message["Subject"]
        # RFC 3834: no auto-replies to what the desk generates; the agent's reply is a person's.
        assert message["Auto-Submitted"] == (None if message is answer else "auto-generated")
        assert message["Message-ID"]
        assert message.get_content_type() == "multipart/alternative"
        plain = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        assert plain.strip() and html.strip()
    message_ids = [m["Message-ID"] for m in (acknowledgement, answer, resolved)]
    assert len(set(message_ids)) == 3
    # Threaded: every message's References start with one root id of the incident (none of
    # them), and each answers the one before it, as a person replying would.
    roots = {m["References"].split()[0] for m in (acknowledgement, answer, resolved)}
    assert len(roots) == 1
    root = roots.pop()
    assert root not in message_ids
    assert acknowledgement["In-Reply-To"] == root
    assert answer["In-Reply-To"] == acknowledgement["Message-ID"]
    assert resolved["In-Reply-To"] == answer["Message-ID"]
    assert resolved["References"].split() == [root, *message_ids[:2]]

    assert incident.title in acknowledgement.get_body(("plain",)).get_content() \
        or incident.title in acknowledgement["Subject"]
    assert reply in answer.get_body(("plain",)).get_content()
    assert "check the concentrator" not in answer.as_string()
    # The reply is text, shown literally in the HTML part rather than read as markup.
    answer_html = answer.get_body(("html",)).get_content()
    assert "version 5 &lt; 6 &amp; it" in answer_html and "5 < 6" not in answer_html
    assert resolution in resolved.get_body(("plain",)).get_content()
    assert resolution in resolved.get_body(("html",)).get_content()


def test_the_agents_markdown_reads_as_formatting_in_the_mails_html_part(ctx,
        helpdesk_app: Flask, personas: Personas, requester: Contact, smtp: SmtpServer) -> None:
    # The reply box says "Markdown" and the portal renders it; the mail showed "**restart**".
    reply = ("Please **restart** the router:\n\n1. unplug it\n2. wait a minute\n\n"
             "<img src=x onerror=alert(1)> [portal](javascript:alert(1))")
    resolution = "Replaced the `VPN` concentrator's *power supply*."
    with helpdesk_app.app_context():
        incident = incidents.log_incident(ctx, title="VPN drops", actor=personas.owner,
                                          service_desk=personas.service_desk, requester=requester)
        incidents.add_comment(ctx, incident.id, personas.owner, reply, public=True)
        incidents.change_status(ctx, incident.id, personas.owner, "resolved", note=resolution)
    _acknowledgement, answer, resolved = (m.message for m in smtp.to(REQUESTER))
    answer_html = answer.get_body(("html",)).get_content()
    assert "<strong>restart</strong>" in answer_html and "<li>unplug it</li>" in answer_html
    assert "<img" not in answer_html and 'href="javascript' not in answer_html  # sanitised as on the pages
    assert "Please **restart** the router" in answer.get_body(("plain",)).get_content()
    resolved_html = resolved.get_body(("html",)).get_content()
    assert "<code>VPN</code>" in resolved_html and "<em>power supply</em>" in resolved_html
    assert f"{incident.reference} is resolved" in resolved_html  # the template's own words stay


def test_a_retried_mail_is_recognisably_the_same_message(
        helpdesk_app: Flask, state: Any, requester: Contact, smtp: SmtpServer, incident_factory: Any,
        frozen_clock: FrozenClock) -> None:
    smtp.replies = ["451 4.3.0 Mailbox temporarily unavailable"]
    incident_factory(title="Printer offline", requester=requester)
    delivery = only_delivery("email")
    assert delivery.state == "pending" and smtp.received == []
    assert delivery.next_attempt_at > frozen_clock.now, "a temporary refusal is retried later"

    frozen_clock.advance(minutes=5)
    with helpdesk_app.app_context():
        notifications.sweep(state)
    assert fresh(Delivery, delivery.id).state == "sent"
    (refused,) = smtp.refused
    (mail,) = smtp.to(REQUESTER)
    assert mail.message["Message-ID"] == refused.message["Message-ID"]
    assert mail.message["Subject"] == refused.message["Subject"]


@pytest.mark.parametrize("path", ["domain", "stored"])
def test_a_title_cannot_add_recipients_or_headers(ctx,
        helpdesk_app: Flask, state: Any, personas: Personas, requester: Contact, smtp: SmtpServer,
        path: str) -> None:
    """Through the domain (which normalises titles) and for a title that reached the database
    unnormalised (an import, an old row): the mail channel keeps header values on one line."""
    evil = "Printer jam\r\nBcc: victim@example.com\r\nX-Injected: yes"
    with helpdesk_app.app_context():
        if path == "domain":
            incident = incidents.log_incident(ctx, title=evil, actor=personas.owner,
                                              service_desk=personas.service_desk, requester=requester)
        else:
            incident = incidents.log_incident(ctx, title="Printer jam", actor=personas.owner,
                                              service_desk=personas.service_desk, requester=requester)
            Incident.update(title=evil).where(Incident.id == incident.id).execute()
        incidents.add_comment(ctx, incident.id, personas.owner, "We are on it.", public=True)

    assert len(smtp.received) == 2
    for received in smtp.received:
        assert received.rcpt_tos == [REQUESTER]
        assert "victim@example.com" not in received.rcpt_tos
        message = received.message
        assert message["Bcc"] is None and message["X-Injected"] is None
        head = received.raw.split(b"\r\n\r\n", 1)[0]
        assert not re.search(rb"^(bcc|x-injected):", head, re.IGNORECASE | re.MULTILINE)
        assert incident.reference in message["Subject"]
        assert all("\r" not in str(v) and "\n" not in str(v) for v in message.values())


# -- 2. webhooks -------------------------------------------------------------------------------


def webhook_settings(smtp: SmtpServer, url: str, **extra: Any) -> dict[str, Any]:
    values = {"urls": [url], "secret": SECRET, "allow_private": ["127.0.0.1"], "timeout": 1, **extra}
    return {"email": smtp.settings, "webhook": values}


class TestWebhook:
    @pytest.fixture
    def channel_settings(self, smtp: SmtpServer, http_receiver: Any) -> dict[str, Any]:
        return webhook_settings(smtp, f"{http_receiver.url}/hooks/helpdesk")

    def test_signed_with_the_shared_secret_and_keyed_for_idempotency(
            self, state: Any, http_receiver: Any, incident_factory: Any) -> None:
        incident = incident_factory(title="Mail server down")
        (request,) = http_receiver.requests
        assert request.path == "/hooks/helpdesk"
        assert header(request, "Content-Type") == "application/json"
        timestamp = header(request, "X-Helpdesk-Timestamp")
        assert abs(int(timestamp) - time.time()) < 300, "receivers reject old timestamps"
        expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + request.body,
                            hashlib.sha256).hexdigest()
        assert hmac.compare_digest(header(request, "X-Helpdesk-Signature"), f"sha256={expected}")
        forged = hmac.new(b"not the secret", timestamp.encode() + b"." + request.body,
                          hashlib.sha256).hexdigest()
        assert header(request, "X-Helpdesk-Signature") != f"sha256={forged}"

        body = request.json()
        assert body["idempotency_key"] and header(request, "Idempotency-Key") == body["idempotency_key"]
        assert body["event"] == header(request, "X-Helpdesk-Event") == "incident_created"
        assert body["incident"] == incident.reference and body["title"] == incident.title
        assert body["url"] == f"{state.settings.base_url}/incidents/{incident.id}"

    def test_every_event_has_its_own_idempotency_key(
            self, ctx: Any, helpdesk_app: Flask, personas: Personas, http_receiver: Any,
            incident_factory: Any) -> None:
        incident = incident_factory()
        with helpdesk_app.app_context():
            incidents.assign(ctx, incident.id, personas.owner, personas.database_team, personas.assignee)
        keys = [header(r, "Idempotency-Key") for r in http_receiver.requests]
        assert len(keys) >= 2 and len(set(keys)) == len(keys)

    def test_server_errors_are_retried_with_backoff_until_delivered_once(
            self, helpdesk_app: Flask, state: Any, http_receiver: Any, incident_factory: Any,
            frozen_clock: FrozenClock) -> None:
        http_receiver.statuses = [500, 500]
        incident_factory(title="Backups failing")
        delivery = only_delivery("webhook")
        assert (delivery.state, delivery.attempts, len(http_receiver.requests)) == ("pending", 1, 1)
        first_wait = delivery.next_attempt_at - frozen_clock.now
        assert first_wait > dt.timedelta(0)

        with helpdesk_app.app_context():
            assert notifications.sweep(state) == 0, "not retried before its time"
            assert notifications.deliver(state, delivery.id) is None, "not even by a stray task"
            assert len(http_receiver.requests) == 1

            frozen_clock.advance(seconds=first_wait.total_seconds())
            notifications.sweep(state)
            delivery = fresh(Delivery, delivery.id)
            assert (delivery.state, len(http_receiver.requests)) == ("pending", 2)
            second_wait = delivery.next_attempt_at - frozen_clock.now
            assert second_wait > first_wait, "each failure waits longer"

            frozen_clock.advance(seconds=second_wait.total_seconds())
            notifications.sweep(state)
            delivery = fresh(Delivery, delivery.id)
            assert delivery.state == "sent" and delivery.sent_at == frozen_clock.now

            frozen_clock.advance(days=1)
            notifications.sweep(state)
        assert len(http_receiver.requests) == 3, "delivered once, then never again"
        assert len({header(r, "Idempotency-Key") for r in http_receiver.requests}) == 1
        assert attempts_of(delivery) == [False, False, True]

    def test_retries_back_off_exponentially(
            self, helpdesk_app: Flask, state: Any, http_receiver: Any, incident_factory: Any,
            frozen_clock: FrozenClock) -> None:
        http_receiver.statuses = [503, 503, 503]
        incident_factory(title="Receiver overloaded")
        delivery = only_delivery("webhook")
        waits = []
        with helpdesk_app.app_context():
            for _ in range(3):
                delivery = fresh(Delivery, delivery.id)
                assert delivery.state == "pending"
                waits.append(delivery.next_attempt_at - frozen_clock.now)
                frozen_clock.set(delivery.next_attempt_at)
                notifications.sweep(state)
        assert fresh(Delivery, delivery.id).state == "sent" and len(http_receiver.requests) == 4
        assert all(wait > dt.timedelta(0) for wait in waits)
        # Doubling per failure, give or take the jitter that spreads receivers' load.
        assert waits[2] >= 2 * waits[0]

    def test_a_dead_worker_s_claim_expires_and_the_sweeper_delivers(
            self, helpdesk_app: Flask, state: Any, http_receiver: Any, incident_factory: Any,
            frozen_clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> None:
        # The queued task is lost: no worker picks it up straight away.
        with monkeypatch.context() as patch:
            patch.setattr(state.tasks, "deliver", lambda delivery_id: None)
            incident_factory(title="Disk full on app01")
        delivery = only_delivery("webhook")
        assert delivery.state == "pending" and http_receiver.requests == []

        with helpdesk_app.app_context():
            assert notifications.claim(delivery.id, frozen_clock.now), "a worker claims it, then dies"
            assert not notifications.claim(delivery.id, frozen_clock.now), "only one worker wins"
            frozen_clock.advance(seconds=notifications.LEASE.total_seconds() - 1)
            notifications.sweep(state)
            assert fresh(Delivery, delivery.id).state == "sending"
            assert http_receiver.requests == [], "not taken from a worker that may still be sending"

            frozen_clock.advance(seconds=2)
            notifications.sweep(state)
            assert fresh(Delivery, delivery.id).state == "sent"
            frozen_clock.advance(hours=1)
            notifications.sweep(state)
        assert len(http_receiver.requests) == 1


class TestHangingWebhook:
    @pytest.fixture
    def channel_settings(self, smtp: SmtpServer, hanging_server: _Server) -> dict[str, Any]:
        return webhook_settings(smtp, f"{hanging_server.url}/hook")

    def test_times_out_and_stays_pending_for_a_retry(
            self, hanging_server: _Server, incident_factory: Any, frozen_clock: FrozenClock) -> None:
        started = time.monotonic()
        incident_factory(title="Slow receiver")
        assert time.monotonic() - started < 5, "the change is not held up by a silent receiver"
        assert hanging_server.paths == ["/hook"]
        delivery = only_delivery("webhook")
        assert delivery.state == "pending" and delivery.next_attempt_at > frozen_clock.now
        assert re.search(r"time|within|1 s\b", delivery.last_error, re.IGNORECASE), delivery.last_error
        assert attempts_of(delivery) == [False]


class TestRedirectingWebhook:
    @pytest.fixture
    def channel_settings(self, smtp: SmtpServer, redirecting_server: _Server) -> dict[str, Any]:
        return webhook_settings(smtp, f"{redirecting_server.url}/hook")

    def test_a_redirect_is_not_followed_and_is_final(
            self, helpdesk_app: Flask, state: Any, redirecting_server: _Server, http_receiver: Any,
            incident_factory: Any, frozen_clock: FrozenClock) -> None:
        incident_factory(title="Moved receiver")
        assert redirecting_server.paths == ["/hook"]
        assert http_receiver.requests == [], "the redirect target got nothing"
        delivery = only_delivery("webhook")
        assert delivery.state == "dead" and "302" in delivery.last_error
        frozen_clock.advance(days=1)
        with helpdesk_app.app_context():
            notifications.sweep(state)
        assert redirecting_server.paths == ["/hook"], "a permanent failure is not retried"


def _machine_name() -> str:
    """A name of this machine that resolves to a private or loopback address: refused when
    sending, since nothing in the URL itself tells (127.0.0.1 or localhost are refused when saved)."""
    name = socket.gethostname()
    try:
        address = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)[0][4][0]
    except OSError:
        pytest.skip(f"this machine's name {name!r} does not resolve")
    if ipaddress.ip_address(address).is_global:
        pytest.skip(f"this machine's name {name!r} resolves to a public address")
    return name


class TestPrivateWebhook:
    @pytest.fixture
    def channel_settings(self, smtp: SmtpServer, http_receiver: Any) -> dict[str, Any]:
        port = http_receiver.url.rsplit(":", 1)[1]
        return webhook_settings(smtp, f"http://{_machine_name()}:{port}/hook", allow_private=[])

    def test_a_loopback_address_is_refused_unless_allow_listed(
            self, http_receiver: Any, incident_factory: Any) -> None:
        incident_factory(title="Internal receiver")
        assert http_receiver.requests == [], "no request was made"
        delivery = only_delivery("webhook")
        assert delivery.state == "dead"
        assert re.search(r"private|loopback|link-local", delivery.last_error), delivery.last_error


# -- 3. the outbox commits with the change ---------------------------------------------------------


def _crash() -> None:
    raise RuntimeError("the worker process died half-way")


class TestOutboxAtomicity:
    @pytest.fixture
    def channel_settings(self, smtp: SmtpServer, http_receiver: Any) -> dict[str, Any]:
        return webhook_settings(smtp, f"{http_receiver.url}/hook")

    @pytest.mark.parametrize("failure", ["illegal status change", "crash"])
    def test_a_change_that_fails_leaves_no_notification(
            self, ctx: Any, helpdesk_app: Flask, personas: Personas, requester: Contact, smtp: SmtpServer,
            http_receiver: Any, incident_factory: Any, failure: str) -> None:
        incident = incident_factory(title="Payroll export fails", requester=requester)
        before = (Delivery.select().count(), Notice.select().count(), len(smtp.received),
                  len(http_receiver.requests))
        assert before[0] > 0, "logging it did notify (the requester and the webhook)"

        with helpdesk_app.app_context(), pytest.raises((DomainError, RuntimeError)):
            with write_transaction():  # one change made of several steps, e.g. a bulk action
                incidents.assign(ctx, incident.id, personas.owner, personas.database_team, personas.assignee)
                incidents.add_comment(ctx, incident.id, personas.owner, "Passed to the DBAs.", public=True)
                if failure == "crash":
                    _crash()
                incidents.change_status(ctx, incident.id, personas.owner, "closed")  # not from assigned

        after = (Delivery.select().count(), Notice.select().count(), len(smtp.received),
                 len(http_receiver.requests))
        assert after == before
        assert Incident.get_by_id(incident.id).assigned_agent_id is None

        # The same steps without the failure do notify: the assignee, the requester, the webhook.
        with helpdesk_app.app_context():
            incidents.assign(ctx, incident.id, personas.owner, personas.database_team, personas.assignee)
            incidents.add_comment(ctx, incident.id, personas.owner, "Passed to the DBAs.", public=True)
        assert Notice.select().where(Notice.agent == personas.assignee.id).count() == 1
        assert len(smtp.to(personas.assignee.email)) == 1
        assert len(smtp.to(REQUESTER)) == 2
        assert len(http_receiver.requests) > before[3]


    def test_a_committed_change_is_notified_even_if_the_process_dies_right_after_commit(
            self, ctx: Any, helpdesk_app: Flask, state: Any, personas: Personas, requester: Contact,
            smtp: SmtpServer, http_receiver: Any, incident_factory: Any,
            monkeypatch: pytest.MonkeyPatch, frozen_clock: FrozenClock) -> None:
        incident = incident_factory(title="Payroll export fails", requester=requester)
        sent_before = len(smtp.received), len(http_receiver.requests)
        with monkeypatch.context() as patch:
            # Nothing registered to run after the commit runs: the process is gone.
            patch.setattr(event_outbox, "after_commit", lambda callback: None)
            patch.setattr(notifications, "after_commit", lambda callback: None)
            with helpdesk_app.app_context():
                incidents.assign(ctx, incident.id, personas.owner, personas.database_team, personas.assignee)
                incidents.add_comment(ctx, incident.id, personas.owner, "Passed to the DBAs.", public=True)
        assert (len(smtp.received), len(http_receiver.requests)) == sent_before
        waiting = Delivery.select().where(Delivery.state == "pending").count()
        assert waiting >= 4, "the assignee's notice and mail, the requester's mail, the webhook"
        assert Notice.select().where(Notice.agent == personas.assignee.id).count() == 0

        with helpdesk_app.app_context():  # a sweep right away leaves the rows to their queue entries
            assert notifications.sweep(state) == 0
        assert len(smtp.received) == sent_before[0]
        frozen_clock.advance(seconds=SWEEP_GRACE_SECONDS + 1)
        with helpdesk_app.app_context():  # the next worker's periodic sweep: those entries never ran
            assert notifications.sweep(state) == waiting
        assert len(smtp.to(personas.assignee.email)) == 1
        assert len(smtp.to(REQUESTER)) == 2
        assert Notice.select().where(Notice.agent == personas.assignee.id).count() == 1
        assert len(http_receiver.requests) > sent_before[1]
        assert Delivery.select().where(Delivery.state != "sent").count() == 0


# -- 4b. a long outage of every channel (G3) -----------------------------------------------------


class _LateReceiver:
    """An HTTP receiver on a port chosen now but listening only from :meth:`start` (a
    service that is down, then comes back); records each request's idempotency key."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.keys: list[str] = []
        self._httpd: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.keys.append(self.headers.get("Idempotency-Key", ""))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


class TestLongOutage:
    """SMTP, webhook and chat all refuse connections for two hours, then recover: work on
    incidents goes on meanwhile, and afterwards everything pending is delivered, once each."""

    @pytest.fixture
    def down(self) -> Iterator[dict[str, Any]]:
        servers = {"smtp": SmtpServer(), "webhook": _LateReceiver(), "chat": _LateReceiver()}
        yield servers
        servers["webhook"].close()
        servers["chat"].close()
        if getattr(servers["smtp"], "_started", False):
            servers["smtp"].stop()
        else:
            servers["smtp"]._controller.loop.close()  # made in advance, never served

    @pytest.fixture
    def channel_settings(self, down: dict[str, Any]) -> dict[str, Any]:
        down["smtp"].from_address = FROM
        return {"email": down["smtp"].settings,
                "webhook": {"urls": [f"{down['webhook'].url}/hook"], "secret": SECRET,
                            "allow_private": ["127.0.0.1"], "timeout": 1},
                "chat": {"allow_private": ["127.0.0.1"], "timeout": 1}}

    def test_everything_pending_is_delivered_once_after_two_hours_down(
            self, ctx: Any, helpdesk_app: Flask, state: Any, personas: Personas, down: dict[str, Any],
            incident_factory: Any, frozen_clock: FrozenClock) -> None:
        with helpdesk_app.app_context():
            AgentChannel.create(agent=personas.assignee.id, channel="chat",
                                values=json.dumps({"url": f"{down['chat'].url}/services/T/B/x"}))
        started = frozen_clock.now
        made = []
        while frozen_clock.now < started + dt.timedelta(hours=2):
            if len(made) < 4 and (frozen_clock.now - started) >= dt.timedelta(minutes=30 * len(made)):
                incident = incident_factory(title=f"Outage report {len(made)}")  # the desk works on
                with helpdesk_app.app_context():
                    incidents.assign(ctx, incident.id, personas.owner, personas.database_team,
                                     personas.assignee)
                made.append(incident.id)
            frozen_clock.advance(minutes=5)
            with helpdesk_app.app_context():
                notifications.sweep(state)
        with helpdesk_app.app_context():
            rows = list(Delivery.select())
        rows = [r for r in rows if r.channel != "inapp"]  # the in-app notices need no network
        assert len(made) == 4 and {r.channel for r in rows} == {"email", "webhook", "chat"}
        assert {r.state for r in rows} == {"pending"}, "two hours down: nothing given up yet"
        assert max(r.attempts for r in rows) > 8, "it kept trying through the outage"

        down["smtp"].start()
        down["smtp"]._started = True
        down["webhook"].start()
        down["chat"].start()
        for _ in range(17):  # backoff is capped at 15 minutes (give or take its jitter)
            frozen_clock.advance(minutes=1)
            with helpdesk_app.app_context():
                notifications.sweep(state)

        with helpdesk_app.app_context():
            rows = list(Delivery.select())
        assert {r.state for r in rows} == {"sent"}
        by_channel = {name: [r for r in rows if r.channel == name] for name in ("email", "webhook", "chat")}
        webhook_keys, chat_keys = down["webhook"].keys, down["chat"].keys
        assert sorted(webhook_keys) == sorted(r.idempotency_key for r in by_channel["webhook"])
        assert sorted(chat_keys) == sorted(r.idempotency_key for r in by_channel["chat"])
        assert len(down["smtp"].received) == len(by_channel["email"]) > 0
        assert len({m.message["Message-ID"] for m in down["smtp"].received}) == len(by_channel["email"])

    def test_a_failure_older_than_the_retry_window_is_dead(
            self, ctx: Any, helpdesk_app: Flask, state: Any, incident_factory: Any,
            frozen_clock: FrozenClock) -> None:
        incident_factory(title="Nobody listens")
        delivery = only_delivery("webhook")
        for _ in range(200):
            frozen_clock.advance(minutes=20)
            with helpdesk_app.app_context():
                notifications.sweep(state)
            if fresh(Delivery, delivery.id).state != "pending":
                break
        delivery = fresh(Delivery, delivery.id)
        assert delivery.state == "dead" and delivery.attempts >= notifications.MAX_ATTEMPTS
        window = dt.timedelta(hours=state.settings.delivery_retry_hours)
        assert frozen_clock.now - delivery.created_at >= window


# -- 5. dead letters retried by an admin -------------------------------------------------------------


class TestAdminRetry:
    @pytest.fixture
    def channel_settings(self, smtp: SmtpServer, http_receiver: Any) -> dict[str, Any]:
        return webhook_settings(smtp, f"{http_receiver.url}/hook")

    def test_an_admin_retries_a_dead_delivery(
            self, personas: Personas, http_receiver: Any, incident_factory: Any, login: Any) -> None:
        http_receiver.statuses = [400]
        incident_factory(title="Receiver misconfigured")
        delivery = only_delivery("webhook")
        assert delivery.state == "dead", "a 400 is permanent"
        url = f"/admin/deliveries/{delivery.id}/retry"

        response = login(personas.owner).post(url)
        assert response.status_code == 403
        assert fresh(Delivery, delivery.id).state == "dead"
        assert len(http_receiver.requests) == 1

        response = login(personas.admin).post(url)  # the receiver was fixed meanwhile: 200 now
        assert response.status_code == 303
        delivery = fresh(Delivery, delivery.id)
        assert delivery.state == "sent"
        assert len(http_receiver.requests) == 2
        assert len({header(r, "Idempotency-Key") for r in http_receiver.requests}) == 1
        assert attempts_of(delivery) == [False, True]


# -- 6. the seed scenario: SLA warning to the owner -------------------------------------------------


class TestSeedScenario:
    @pytest.fixture
    def helpdesk_plugins(self) -> list[Any]:
        return [business_hours, sla_priority, email_channel]

    def test_owner_is_warned_at_75_percent_and_the_requester_told_of_the_resolution(
            self, ctx: Any, helpdesk_app: Flask, state: Any, personas: Personas, requester: Contact,
            smtp: SmtpServer, frozen_clock: FrozenClock) -> None:
        owner, assignee = personas.owner, personas.assignee
        frozen_clock.set(utc(3, 6, 16, 30))  # Friday, half an hour before business hours end
        with helpdesk_app.app_context():
            incident = incidents.log_incident(ctx, title="Orders database slow", actor=owner,
                                              service_desk=personas.service_desk, requester=requester,
                                              impact="high", urgency="medium")
            assert incident.priority == 2
            frozen_clock.advance(minutes=5)
            incidents.add_comment(ctx, incident.id, owner, "We are looking into it.", public=True)
            frozen_clock.advance(minutes=5)
            incidents.assign(ctx, incident.id, owner, personas.database_team, assignee)
        incident = Incident.get_by_id(incident.id)
        assert incident.owner_agent_id == owner.id, "the service desk keeps ownership"
        assert len(smtp.to(owner.email)) == 0, "nothing yet for the owner: he did it all"
        assert len(smtp.to(assignee.email)) == 1  # assigned to her

        # P2 resolution target: 8 business hours = Fri 16:30-17:00 + Mon 09:00-16:30.
        # 75 % (6 h) is reached on Monday at 14:30.
        with helpdesk_app.app_context():
            frozen_clock.set(utc(3, 9, 14, 30))
            sla.check(state, frozen_clock.now)
            sla.check(state, frozen_clock.now)
            frozen_clock.advance(minutes=1)
            sla.check(state, frozen_clock.now)
        warnings = smtp.to(owner.email)
        assert len(warnings) == 1, "the owner is warned once, however often the check runs"
        warning = warnings[0].message
        assert parseaddr(warning["To"])[1] == owner.email == "john@example.com"
        assert incident.reference in warning["Subject"] and "75%" in warning["Subject"]
        assert f"{state.settings.base_url}/incidents/{incident.id}" in \
            warning.get_body(("plain",)).get_content()
        assignee_warnings = [m for m in smtp.to(assignee.email) if "75%" in m.message["Subject"]]
        assert len(assignee_warnings) == 1, "the assignee is warned too"

        before = len(smtp.to(REQUESTER))
        with helpdesk_app.app_context():
            frozen_clock.advance(minutes=30)
            incidents.change_status(ctx, incident.id, assignee, "resolved", note="Rebuilt the orders index.")
            frozen_clock.set(utc(3, 10, 9, 0))
            sla.check(state, frozen_clock.now)
            sla.check(state, frozen_clock.now)
        resolution = smtp.to(REQUESTER)[before:]
        assert len(resolution) == 1
        assert incident.reference in resolution[0].message["Subject"]
        assert "Rebuilt the orders index." in resolution[0].message.get_body(("plain",)).get_content()
        assert Delivery.select().where(Delivery.state != "sent").count() == 0


# -- 7. preferences ------------------------------------------------------------------------------


@pytest.mark.parametrize("switched_off, team_mails, assigned_mails", [
    (None, 1, 1),
    ("all e-mail on the profile", 0, 0),
    ("e-mail when assigned", 1, 0),
])
def test_an_agent_who_switched_off_email_still_gets_the_in_app_notice(
        ctx: Any, helpdesk_app: Flask, personas: Personas, smtp: SmtpServer, incident_factory: Any,
        switched_off: str | None, team_mails: int, assigned_mails: int) -> None:
    priya = personas.assignee
    with helpdesk_app.app_context():
        if switched_off == "all e-mail on the profile":
            AgentChannel.create(agent=priya.id, channel="email", enabled=False)
        elif switched_off == "e-mail when assigned":
            NotificationPreference.create(agent=priya.id, kind="assigned", channel="email", enabled=False)
    incident = incident_factory(title="Replication lag")

    def assign(agent: Agent | None) -> None:
        with helpdesk_app.app_context():
            incidents.assign(ctx, incident.id, personas.owner, personas.database_team, agent)

    assign(None)  # new for her team
    assert len(smtp.to(priya.email)) == team_mails
    assert len(smtp.to(personas.db_lead.email)) == 1, "her team lead's choice is his own"
    assign(priya)  # assigned to her
    assert len(smtp.to(priya.email)) == team_mails + assigned_mails
    assert Notice.select().where(Notice.agent == priya.id).count() == 2


def test_an_agent_is_not_notified_of_their_own_action(ctx,
        helpdesk_app: Flask, personas: Personas, smtp: SmtpServer, incident_factory: Any) -> None:
    priya, john = personas.assignee, personas.owner
    incident = incident_factory(title="Replication lag", actor=john)
    assert Notice.select().count() == 0 and smtp.received == [], "john logged it himself"
    with helpdesk_app.app_context():
        incidents.assign(ctx, incident.id, john, personas.database_team, None)
    assert Notice.select().where(Notice.agent == priya.id).count() == 1
    assert len(smtp.to(priya.email)) == 1

    with helpdesk_app.app_context():
        incidents.assign(ctx, incident.id, priya, personas.database_team, priya)  # she takes it
    assert Notice.select().where(Notice.agent == priya.id).count() == 1
    assert len(smtp.to(priya.email)) == 1
    # The owner is told his incident moved: the rule applies to the one who acted only.
    assert Notice.select().where(Notice.agent == john.id).count() == 1
    assert len(smtp.to(john.email)) == 1


# -- 8. chat ---------------------------------------------------------------------------------------


def test_an_agent_gets_a_slack_compatible_chat_message_when_assigned(ctx,
        helpdesk_app: Flask, state: Any, personas: Personas, http_receiver: Any,
        incident_factory: Any) -> None:
    priya = personas.assignee
    with helpdesk_app.app_context():
        AgentChannel.create(agent=priya.id, channel="chat",
                            values=json.dumps({"url": f"{http_receiver.url}/services/T0/B0/abc"}))
    incident = incident_factory(title="Orders database slow", impact="high", urgency="medium")
    assert http_receiver.requests == []
    with helpdesk_app.app_context():
        incidents.assign(ctx, incident.id, personas.owner, personas.database_team, priya)

    (request,) = http_receiver.requests
    assert request.path == "/services/T0/B0/abc"
    assert header(request, "Content-Type") == "application/json"
    body = request.json()
    assert isinstance(body, dict) and isinstance(body["text"], str)
    url = f"{state.settings.base_url}/incidents/{incident.id}"
    assert f"<{url}|{incident.reference}>" in body["text"], "a Slack link to the incident"
    assert PRIORITIES[incident.priority] in body["text"]
    assert only_delivery("chat").state == "sent"


def test_a_title_cannot_ping_the_chat_channel_or_smuggle_in_a_link(ctx,
        helpdesk_app: Flask, state: Any, personas: Personas, http_receiver: Any,
        incident_factory: Any) -> None:
    """Titles come from requesters; in Slack's format ``<!channel>`` pings everyone and
    ``<url|label>`` is a disguised link, so &, < and > must arrive as entities."""
    priya = personas.assignee
    with helpdesk_app.app_context():
        AgentChannel.create(agent=priya.id, channel="chat",
                            values=json.dumps({"url": f"{http_receiver.url}/hook"}))
    incident = incident_factory(title="<!channel> urgent <https://evil.example/login|Reset password> & more")
    with helpdesk_app.app_context():
        incidents.assign(ctx, incident.id, personas.owner, personas.database_team, priya)

    (request,) = http_receiver.requests
    text = request.json()["text"]
    url = f"{state.settings.base_url}/incidents/{incident.id}"
    assert re.findall(r"<[^<>]*>", text) == [f"<{url}|{incident.reference}>"], "only our own link"
    assert "&lt;!channel&gt; urgent &lt;https://evil.example/login|Reset password&gt; &amp; more" in text
