"""The e-mail channel: SMTP with STARTTLS or TLS and authentication.

Every message about one incident carries ``References`` starting with the same
root id, so mail clients thread them; a message to a requester answers the
previous message of their conversation (``In-Reply-To``: ours or theirs, as the
core found it, ``Message.references``). The subject carries the reference;
``Auto-Submitted: auto-generated`` stops auto-replies. Files a message carries
(an agent's attachments on a public reply) are MIME parts with their
sanitised name (RFC 2231 for non-ASCII) and a safe content type.
The ``Message-ID`` derives from the delivery's idempotency key, so a retried
delivery is recognisably the same message. Every header holding user text is
built by :mod:`helpdesk.mail_headers` (encoded words decoded, line breaks
removed, the written message checked), and the envelope names only the
recipient: a title cannot smuggle in headers or recipients.

    [plugins.email]
    host = "smtp.example.com"      # without a host, the e-mail channel is off
    port = 587
    security = "starttls"          # none | starttls | tls
    username = "helpdesk"
    password_file = "/run/secrets/smtp"   # or password = "…" / HELPDESK_PLUGINS__EMAIL__PASSWORD
    from_address = "Helpdesk <helpdesk@example.com>"
"""

from __future__ import annotations

import html
import re
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

from helpdesk import ConfigError, Context, hookimpl, mail_headers
from helpdesk.records import ChannelType, DeliveryError, Message, SettingsTable

# Safe headers from user text whatever the Python: encoded words decoded and defused, breaks removed.
UnsafeHeader, header_text = mail_headers.UnsafeHeader, mail_headers.header_text
mailbox, message_id = mail_headers.mailbox, mail_headers.message_id
parse_mailbox, serialise = mail_headers.parse_mailbox, mail_headers.serialise
one_line = header_text  # every header value from user text


def build(message: Message, from_address: str) -> EmailMessage:
    try:
        sender_name, sender = parse_mailbox(from_address)
        address = parse_mailbox(message.recipient)[1]
    except UnsafeHeader as error:
        raise DeliveryError(str(error), permanent=True) from None
    domain = sender.rpartition("@")[2]
    mail = EmailMessage()
    mail["Subject"] = one_line(message.subject)
    mail["From"] = mailbox(sender, sender_name)
    mail["To"] = mailbox(address)
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = message_id(message.idempotency_key, domain)
    if message.automatic:  # (an agent's reply is a person's answer: RFC 3834)
        mail["Auto-Submitted"] = "auto-generated"
        mail["X-Auto-Response-Suppress"] = "All"  # Exchange/Outlook: no out-of-office answer
    mail["X-Helpdesk-Loop"] = domain  # inbound mail carrying our own mark is dropped (no loops)
    if message.incident_reference:
        root = message_id(message.incident_reference, domain)
        thread = [found for found in (mail_headers.reference_id(r) for r in message.references) if found]
        thread = list(dict.fromkeys([root, *thread]))
        mail["In-Reply-To"] = thread[-1]
        mail["References"] = " ".join(thread)
        mail["X-Helpdesk-Incident"] = one_line(message.incident_reference)
    text = message.text + (f"\n{message.url}\n" if message.url and message.url not in message.text else "")
    mail.set_content(text)
    body = message.html or "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>"
                                   for p in text.strip().split("\n\n"))
    mail.add_alternative(f"<!doctype html><html><body>{body}</body></html>", subtype="html")
    for file in message.attachments:
        maintype, subtype = _content_type(file.content_type)
        # The name travels only as a MIME parameter (quoted, or RFC 2231 when not ASCII), and
        # is made one harmless line first: it cannot end the header or start another one.
        name = one_line(file.filename, 120).replace('"', "_") or "attachment"
        mail.add_attachment(bytes(file.data), maintype=maintype, subtype=subtype, filename=name)
    return mail


def _content_type(value: str) -> tuple[str, str]:
    maintype, slash, subtype = str(value or "").lower().partition("/")
    token = re.compile(r"[a-z0-9][a-z0-9.+-]{0,60}")
    if not slash or not token.fullmatch(maintype) or not token.fullmatch(subtype) \
            or maintype in {"multipart", "message"}:
        return "application", "octet-stream"
    return maintype, subtype


def _connection_settings(ctx: Context) -> tuple[str, int, str, float]:
    """Host, port, security and timeout, checked (a ConfigError names the bad variable)."""
    settings = ctx.plugin_settings("email")
    host, security = settings.require("host"), settings.get("security", "none")
    if security not in {"none", "starttls", "tls"}:
        raise ConfigError("HELPDESK_PLUGINS__EMAIL__SECURITY: expected none, starttls or tls")
    try:
        port = int(settings.get("port", 465 if security == "tls" else 25))
        timeout = float(settings.get("timeout", 10))
    except (TypeError, ValueError):
        raise ConfigError("HELPDESK_PLUGINS__EMAIL__PORT/TIMEOUT: expected numbers") from None
    if not 0 < port < 65536 or not 0 < timeout <= 120:
        raise ConfigError("HELPDESK_PLUGINS__EMAIL__PORT/TIMEOUT: port 1-65535, timeout up to 120 s")
    return str(host), port, security, timeout


@hookimpl
def helpdesk_check_settings(ctx: Context) -> None:
    if "host" in ctx.plugin_settings("email"):
        _connection_settings(ctx)


def send(ctx: Context, message: Message) -> None:
    settings = ctx.plugin_settings("email")
    base_host = urlsplit(ctx.base_url).hostname or "localhost"
    from_address = settings.get("from_address", f"Helpdesk <helpdesk@{base_host}>")
    mail = build(message, from_address)
    try:  # written and checked here; the envelope names the one recipient, never header contents
        raw, envelope = serialise(mail), (parse_mailbox(from_address)[1], [parse_mailbox(mail["To"])[1]])
    except UnsafeHeader as error:
        raise DeliveryError(str(error), permanent=True) from None
    host, port, security, timeout = _connection_settings(ctx)
    try:
        if security == "tls":
            client = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        with client:
            if security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if settings.get("username"):
                client.login(settings["username"], settings.secret("password") or "")
            client.sendmail(*envelope, raw)
    except smtplib.SMTPRecipientsRefused as error:
        codes = [code for code, _ in error.recipients.values()]
        raise DeliveryError(f"recipient refused: {error.recipients}",
                            permanent=all(c >= 500 for c in codes)) from None
    except smtplib.SMTPAuthenticationError as error:
        raise DeliveryError(f"SMTP login refused ({error.smtp_code})", permanent=True) from None
    except smtplib.SMTPResponseException as error:
        raise DeliveryError(f"SMTP {error.smtp_code}: {error.smtp_error!r}",
                            permanent=error.smtp_code >= 500) from None
    except (OSError, smtplib.SMTPException) as error:
        raise DeliveryError(f"SMTP {host}:{port}: {type(error).__name__}: {error}") from None


def address_for(ctx: Context, agent: Any, values: Mapping[str, str]) -> str | None:
    """An agent's mail goes to the address on their account (an admin sets it)."""
    return agent.email or None


def contact_address_for(ctx: Context, contact: Any) -> str | None:
    return contact.email or None


@hookimpl
def helpdesk_channel_types(ctx: Context) -> list[ChannelType]:
    if "host" not in ctx.plugin_settings("email"):
        return []  # no SMTP server configured: no e-mail, rather than a pile of failed deliveries
    return [ChannelType("email", "E-mail (SMTP)", send, "Threaded e-mail to agents and requesters",
                        address_for=address_for, contact_address_for=contact_address_for)]


@hookimpl
def helpdesk_settings_tables() -> list[SettingsTable]:
    """The keys of [plugins.email] this plugin reads: any other is reported as a misspelling."""
    return [SettingsTable("email", ("from_address", "host", "password", "password_file", "port",
                                    "security", "timeout", "username"))]
