"""The webhook channel: every incident event as signed JSON to the URLs an admin configured.

    [plugins.webhook]
    urls = ["https://hooks.example.com/helpdesk"]
    secret_file = "/run/secrets/webhook"   # or secret = "…"
    timeout = 10
    allow_private = []                     # hosts or networks allowed although private

Body (``Content-Type: application/json``)::

    {"event": "incident_assigned", "kind": "incident_assigned", "incident": "INC-42",
     "title": "…", "status": "assigned", "priority": 2, "url": "https://…/incidents/42",
     "subject": "…", "idempotency_key": "…", "sent_at": 1767225600, …event fields}

Headers: ``X-Helpdesk-Event``, ``Idempotency-Key``, ``X-Helpdesk-Timestamp`` (Unix
seconds) and ``X-Helpdesk-Signature: sha256=<hex>``, the HMAC-SHA256 of
``<timestamp>.<body>`` with the shared secret. Verify the signature, reject
old timestamps, and drop repeated idempotency keys: delivery is at least once.
Redirects are not followed; private, loopback and link-local addresses are
refused unless allow-listed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from helpdesk import ConfigError, Context, hookimpl, post, url_problem
from helpdesk.records import ChannelType, Message, SettingsTable


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def send(ctx: Context, message: Message) -> None:
    settings = ctx.plugin_settings("webhook")
    timestamp = str(int(time.time()))
    body = json.dumps({**message.data, "subject": message.subject,
                       "idempotency_key": message.idempotency_key, "sent_at": int(timestamp)},
                      sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "X-Helpdesk-Event": message.event,
               "Idempotency-Key": message.idempotency_key, "X-Helpdesk-Timestamp": timestamp}
    secret = settings.secret("secret")
    if secret:
        headers["X-Helpdesk-Signature"] = signature(secret, timestamp, body)
    post(message.recipient, body, headers=headers, timeout=float(settings.get("timeout", 10)),
         allow_private=settings.list("allow_private"))


def broadcast(ctx: Context) -> list[str]:
    """Every incident event goes to every configured URL."""
    return ctx.plugin_settings("webhook").list("urls")


@hookimpl
def helpdesk_check_settings(ctx: Context) -> None:
    """A URL that can only be refused when sending is refused when saved (or at start-up)."""
    settings = ctx.plugin_settings("webhook")
    timeout = settings.get("timeout", 10)
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        seconds = -1.0
    if isinstance(timeout, bool) or not 1 <= seconds <= 120:
        raise ConfigError(f"HELPDESK_PLUGINS__WEBHOOK__TIMEOUT: expected 1 to 120 seconds, got {timeout!r}")
    for url in settings.list("urls"):
        problem = url_problem(str(url), settings.list("allow_private"))
        if problem:
            raise ConfigError(f"HELPDESK_PLUGINS__WEBHOOK__URLS: {problem}")


@hookimpl
def helpdesk_channel_types() -> list[ChannelType]:
    return [ChannelType("webhook", "Webhook (signed JSON)", send, "Every event to configured URLs",
                        broadcast=broadcast)]


@hookimpl
def helpdesk_settings_tables() -> list[SettingsTable]:
    """The keys of [plugins.webhook] this plugin reads: any other is reported as a misspelling."""
    return [SettingsTable("webhook", ("allow_private", "secret", "secret_file", "timeout", "urls"))]
