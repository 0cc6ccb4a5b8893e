"""One-time sign-in links for the customer portal.

A link carries a random 256-bit token, signed and time-stamped with the
instance's secret (a tampered or old link fails before the database is
asked); the database keeps only the token's SHA-256 hash, and redeeming it
is a conditional UPDATE that succeeds once. Asking for a link answers the
same whatever the address: unknown addresses, failing ones and rate-limited
requests simply get no mail. The link goes straight to the e-mail channel's
transport (in a background thread, so the answer does not wait on SMTP and
takes the same time either way) and is never written to the outbox, where
admins could read it. Its Message-ID carries a MAC of the address under the
secret key, so a delivery failure report quoting it proves the address failing
as an outbox message's would, with nothing stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets
import threading

from itsdangerous import BadSignature, URLSafeTimedSerializer

from helpdesk.clock import now
from helpdesk.context import Context
from helpdesk.customers import find_contact
from helpdesk.db import write_transaction
from helpdesk.models import Contact, LoginAttempt, PortalToken
from helpdesk.records import DeliveryError, Message

logger = logging.getLogger(__name__)
LINK_MINUTES = 15
PER_ADDRESS = 3  # links per address per window
PER_CLIENT = 20  # requests per client address per window
WINDOW = dt.timedelta(minutes=15)


def _serializer(ctx: Context) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(ctx.settings.secret_key, salt="helpdesk-portal-sign-in")


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _limited(keys: list[tuple[str, int]]) -> bool:
    """Count this request against each key; True when one is over its limit."""
    stamp = now()
    LoginAttempt.delete().where(LoginAttempt.key.startswith("portal-")
                                & (LoginAttempt.at < stamp - WINDOW)).execute()
    over = False
    for key, limit in keys:
        count = LoginAttempt.select().where((LoginAttempt.key == key)
                                            & (LoginAttempt.at > stamp - WINDOW)).count()
        over = over or count >= limit
    LoginAttempt.insert_many([{"key": key, "at": stamp} for key, _ in keys]).execute()
    return over


def issue(ctx: Context, address: str, client: str | None) -> tuple[Contact, str] | None:
    """A signed one-time token for the contact with this address, or ``None`` (unknown,
    failing address or too many requests: the caller answers the same either way)."""
    address = (address or "").strip().lower()[:254]
    with write_transaction():
        if _limited([(f"portal-address:{address}", PER_ADDRESS), (f"portal-client:{client or '-'}"[:300],
                                                                  PER_CLIENT)]):
            logger.warning("portal sign-in link refused: rate limit (client %r)", client)
            return None
        contact = find_contact(address) if "@" in address else None
        if contact is None or contact.email_failing_at is not None:
            return None
        raw = secrets.token_urlsafe(32)
        PortalToken.create(contact=contact.id, token_hash=_hash(raw), created_at=now(),
                           expires_at=now() + dt.timedelta(minutes=LINK_MINUTES))
    return contact, _serializer(ctx).dumps(raw)


def revoke(ctx: Context, signed: str) -> bool:
    """Use up a link that came back to the desk (quoted in an out-of-office reply, forwarded):
    whoever can read that mail must not sign in with it. True when a live link was revoked."""
    try:
        raw = _serializer(ctx).loads(signed or "", max_age=LINK_MINUTES * 60)
    except BadSignature:
        return False
    if not isinstance(raw, str):
        return False
    return PortalToken.update(used_at=now()).where(
        (PortalToken.token_hash == _hash(raw)) & PortalToken.used_at.is_null()).execute() == 1


def redeem(ctx: Context, signed: str) -> Contact | None:
    """The contact a link signs in, once; ``None`` for anything else (tampered, expired,
    used, unknown)."""
    try:
        raw = _serializer(ctx).loads(signed or "", max_age=LINK_MINUTES * 60)
    except BadSignature:  # includes SignatureExpired
        return None
    if not isinstance(raw, str):
        return None
    with write_transaction():
        token = PortalToken.get_or_none(PortalToken.token_hash == _hash(raw))
        if token is None or token.expires_at < now():
            return None
        used = PortalToken.update(used_at=now()).where(
            (PortalToken.id == token.id) & PortalToken.used_at.is_null()).execute()
        if used != 1:
            return None
        return Contact.get_or_none(Contact.id == token.contact_id)


_SIGN_IN_MESSAGE = re.compile(r"portal-sign-in\.([0-9a-f]{16})\.([0-9a-f]{32})@[^@\s]+")


def _message_mac(ctx: Context, nonce: str, address: str) -> str:
    key = ctx.settings.secret_key.encode()
    return hmac.new(key, f"portal-sign-in-message\0{nonce}\0{address.strip().lower()}".encode(),
                    hashlib.sha256).hexdigest()[:32]


def message_key(ctx: Context, address: str) -> str:
    """The key (and so the Message-ID, ``<portal-sign-in.<random>.<mac>@…>``) of one sign-in
    message to this address. The MAC lets a bounce prove that we mailed the address; the id
    holds nothing that signs anyone in."""
    nonce = secrets.token_hex(8)
    return f"portal-sign-in:{nonce}.{_message_mac(ctx, nonce, address)}"


def mailed_to(ctx: Context, message_id: str, address: str) -> bool:
    """Is ``message_id`` (lower case, without brackets) that of a sign-in message we sent to
    ``address``? (The caller checks that its domain is ours.)"""
    found = _SIGN_IN_MESSAGE.fullmatch(message_id)
    return bool(found) and hmac.compare_digest(found.group(2), _message_mac(ctx, found.group(1), address))


def send(ctx: Context, contact: Contact, url: str, *, wait: bool = False) -> threading.Thread | None:
    """Mail the link through the e-mail channel's transport (not the outbox: it is a secret)."""
    channel = ctx.registry.channel_types.get("email")
    if channel is None or channel.contact_address_for is None:
        logger.warning("portal sign-in link for contact %s not sent: no e-mail channel", contact.id)
        return None
    try:
        recipient = channel.contact_address_for(ctx, contact)
    except Exception as error:  # a plugin's channel: recorded for the admin, the page answers as usual
        from helpdesk.plugins import record_failure

        logger.exception("portal sign-in link for contact %s not sent: the e-mail channel failed",
                         contact.id)
        record_failure(ctx.registry.owners.get(("helpdesk_channel_types", "email"), "email"),
                       "contact_address_for", None, error)
        return None
    if not recipient:
        return None
    message = Message(recipient=str(recipient), subject="Your sign-in link", event="portal_sign_in",
                      kind="portal_sign_in", idempotency_key=message_key(ctx, str(recipient)),
                      text=(f"Hello {contact.name},\n\nopen this link within {LINK_MINUTES} minutes to "
                            f"see your requests:\n\n{url}\n\nIt works once. If you did not ask for it, "
                            "ignore this message.\n"))

    def deliver() -> None:
        try:
            channel.send(ctx, message)
        except DeliveryError as error:
            logger.warning("portal sign-in link for contact %s not sent: %s", contact.id, error)
        except Exception:
            logger.exception("portal sign-in link for contact %s failed", contact.id)

    worker = threading.Thread(target=deliver, name="portal-sign-in-link", daemon=True)
    worker.start()
    if wait:
        worker.join(30)
    return worker
