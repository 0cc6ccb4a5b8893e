"""Receiving one inbound message: exactly once, on the right incident, never in a loop,
never lost.

Order of decisions (each one is recorded on the message's ``InboundMail`` row):

1. **Once**: the row's unique key (the ``Message-ID``, or the raw bytes' hash)
   is claimed in the same transaction as the incident change, so a message
   fetched twice, or by two pollers at once, lands once (``duplicate``). Another
   message reusing a ``Message-ID`` (other sender, subject or text) is not a
   duplicate: it is claimed under the id and its own bytes.
2. **Kept**: the raw bytes are written to ``<instance>/mail/`` before
   anything else; mail too large or unreadable is ``quarantined`` for an
   admin (the Inbound mail page), never dropped.
3. **No loops**: our own mail coming back (``X-Helpdesk-Loop`` with our
   domain, or ``From`` one of our addresses), automatic answers to a portal
   sign-in message, and bounces are ``dropped``
   (a bounce marks the failing contact's address); automatic mail
   (``Auto-Submitted``, ``Precedence: bulk|junk|list``, ``X-Autoreply``,
   mailing lists, an empty ``Return-Path``) never gets an acknowledgement, and
   an automatic reply on an incident is kept as a note without telling
   anyone or reopening anything (``recorded``). Past
   ``mail_auto_reply_limit`` acknowledgements to one sender within an hour,
   no more are sent and admins get a notice.
4. **Threading**: ``In-Reply-To``/``References`` naming a message we
   received or sent, then the signed ``[INC-n #sig]`` subject token.
5. **Who speaks**: only a participant (the requester, or a contact whose
   messages the incident holds) posts on an incident. Anyone else's reply
   (but an automatic one: a note, as in 3.) becomes a new incident with them as
   requester that names the one they replied to: a spoofed or forwarded reply never speaks for someone else.
6. A reply is trimmed of quotes and signatures (the full text is kept on the
   row, and shown to agents); to a resolved incident it reopens it, to a
   closed one it starts a follow-up incident (:mod:`helpdesk.customers`).
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import hashlib
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit

import peewee
from peewee import fn

from helpdesk import attachments, customers, mail_headers
from helpdesk.clock import now
from helpdesk.context import Context
from helpdesk.db import write_transaction
from helpdesk.errors import DomainError, StaleVersion, TryAgain
from helpdesk.incidents import log_incident
from helpdesk.incidents.changes import entry
from helpdesk.mail.parse import Attachment, Mail, Unreadable, message_ids, one_line, parse, trim_reply
from helpdesk.mail.reference import incident_in_subject, without_tokens
from helpdesk.models import Agent, Contact, Delivery, InboundMail, Incident, Notice

logger = logging.getLogger(__name__)
OUTCOMES = ("created", "replied", "reopened", "followed_up", "recorded", "dropped", "quarantined")
_OUR_ID = re.compile(r"^inc-(\d{1,18})[.@]")
#: A portal sign-in link (one-time, signs in as the customer): never stored where agents read.
_SIGN_IN_LINK = re.compile(r"((?:/|%2F)portal(?:/|%2F)sign-in(?:/|%2F))([A-Za-z0-9_.=-]{8,})", re.IGNORECASE)
_FINAL_RECIPIENT = re.compile(rb"(?im)^(?:final|original)-recipient:\s*rfc822\s*;\s*<?([^\s<>;]+@[^\s<>;]+)")
#: A delivery-status report's per-recipient action (RFC 3464): only ``failed`` says an address fails.
_ACTION = re.compile(rb"(?im)^action:\s*([a-z]+)")
_BLANK_LINE = re.compile(rb"\r?\n[ \t]*\r?\n")


@dataclass
class Received:
    """What became of one message."""

    outcome: str  # one of OUTCOMES, or "duplicate"
    mail: InboundMail
    reason: str = ""

    @property
    def incident(self) -> Incident | None:
        return self.mail.incident if self.mail.incident_id else None


def our_domain(ctx: Context) -> str:
    """The domain our outbound mail's Message-IDs carry (as the e-mail channel builds them)."""
    base_host = urlsplit(ctx.base_url).hostname or "localhost"
    sender = ctx.plugin_settings("email").get("from_address", f"Helpdesk <helpdesk@{base_host}>")
    return parseaddr(str(sender))[1].rpartition("@")[2].lower() or "helpdesk.invalid"


def our_addresses(ctx: Context) -> set[str]:
    base_host = urlsplit(ctx.base_url).hostname or "localhost"
    sender = ctx.plugin_settings("email").get("from_address", f"Helpdesk <helpdesk@{base_host}>")
    found = {parseaddr(str(sender))[1].lower(), ctx.settings.support_address.strip().lower()}
    return {address for address in found if "@" in address}


def store_raw(ctx: Context, raw: bytes) -> str:
    """Keep the raw message under ``<instance>/mail/`` by content hash; returns its relative path."""
    digest = hashlib.sha256(raw).hexdigest()
    folder = Path(ctx.instance_path) / "mail" / digest[:2]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}.eml"
    if not path.exists():
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(raw)
        os.replace(temporary, path)
    return str(path.relative_to(ctx.instance_path))


def raw_message(ctx: Context, mail: InboundMail) -> bytes:
    """The stored original of a received message (admins and agents may download it)."""
    path = (Path(ctx.instance_path) / mail.raw_path).resolve()
    if not mail.raw_path or Path(ctx.instance_path).resolve() / "mail" not in path.parents:
        raise DomainError("The original of this message is not kept.")
    return path.read_bytes()


def _key(message_id: str, raw: bytes) -> str:
    if message_id:
        return hashlib.sha256(f"message-id:{message_id}".encode()).hexdigest()
    return hashlib.sha256(b"raw:" + raw).hexdigest()


def _quick_headers(raw: bytes) -> tuple[str, str, str]:
    """Message-ID, sender and subject of a message we could not parse, as far as they go."""
    try:
        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw[:65536])
        ids = message_ids(str(headers.get("Message-ID", "")))
        sender = one_line(parseaddr(str(headers.get("From", "")))[1])
        # (parseaddr makes "Just" the address of "From: Just A Name": no "@", no address)
        return (ids[0] if ids else "", sender[:254] if "@" in sender else "",
                one_line(str(headers.get("Subject", "")))[:300])
    except Exception:  # noqa: BLE001 - we are already on the unreadable path
        return "", "", ""


def is_automatic(mail: Mail) -> str:
    """Why this message was sent by a machine ("" when a person sent it)."""
    h = mail.headers
    auto = h.get("auto-submitted", "").lower()
    if auto and not auto.startswith("no"):
        return f"Auto-Submitted: {auto}"
    if h.get("precedence", "").lower() in {"bulk", "junk", "list", "auto_reply"}:
        return f"Precedence: {h['precedence']}"
    for name in ("x-autoreply", "x-autorespond", "x-auto-response-suppress", "list-id"):
        if name in h:
            return f"{name}: {h[name]}"
    if mail.return_path is not None and mail.return_path.strip() in {"<>", ""}:
        return "empty Return-Path"
    return ""


def _is_bounce(mail: Mail) -> bool:
    """Is this a delivery failure report? Told by its form (a ``multipart/report`` of delivery
    status, Exim's ``X-Failed-Recipients``), by the mailer daemon sending it, or by a message
    from ``postmaster@`` that a machine sent (a null ``Return-Path``, ``Auto-Submitted``): a
    postmaster is also a person, and what they write is a message like any other."""
    ctype = mail.headers.get("content-type", "").lower()
    if ("report-type=delivery-status" in ctype.replace(" ", "").replace('"', "")
            or "x-failed-recipients" in mail.headers or mail.sender.startswith("mailer-daemon@")):
        return True
    if not mail.sender.startswith("postmaster@"):
        return False
    auto = mail.headers.get("auto-submitted", "").lower()
    null_sender = mail.return_path is not None and mail.return_path.strip() in {"<>", ""}
    return null_sender or bool(auto and not auto.startswith("no"))


def _thread(ctx: Context, mail: Mail) -> int | None:
    domain = our_domain(ctx)
    sent: dict[int, set[str]] = {}  # per incident: the ids of what we sent (read once)
    for reference in mail.references:
        known = InboundMail.select(InboundMail.incident).where(
            (InboundMail.key == _key(reference, b"")) & InboundMail.incident.is_null(False)).first()
        if known is not None:
            return known.incident_id
        local, _, host = reference.rpartition("@")
        found = _OUR_ID.match(local + "@")
        if found and host == domain:
            incident_id = int(found.group(1))
            if incident_id not in sent:
                sent[incident_id] = _sent_ids(incident_id, domain)
            if reference in sent[incident_id]:
                return incident_id
    return incident_in_subject(ctx, mail.subject)


def _sent_ids(incident_id: int, domain: str) -> set[str]:
    """The Message-IDs of the messages we sent about an incident. The form of our ids
    (``inc-<n>.…@<our domain>``) is public and the incident's root id is guessable, so only a
    message really sent (its id holds a random part) proves that a mail replies to us."""
    keys = (Delivery.select(Delivery.idempotency_key).where(Delivery.incident == incident_id)
            .order_by(Delivery.id.desc()).limit(2000).tuples())
    return {mail_headers.message_id(key, domain).lower().strip("<>") for (key,) in keys}


def _tell_admins(text: str) -> None:
    admins = Agent.select(Agent.id).where((Agent.role == "admin") & (Agent.active == True))  # noqa: E712
    Notice.insert_many([{"agent": admin.id, "text": text[:500], "created_at": now()}
                        for admin in admins]).execute()


def receive(ctx: Context, raw: bytes) -> Received:
    """Take one message (see the module docstring). Raises only when the database (or the
    instance folder) is unavailable, so the caller can ask the sender to try again."""
    raw_path = store_raw(ctx, raw)
    base = {"raw_path": raw_path, "size": len(raw), "received_at": now()}
    if len(raw) > ctx.settings.mail_max_bytes:
        message_id, sender, subject = _quick_headers(raw)
        return _quarantine(ctx, _keys(message_id, raw), base, message_id, sender, subject,
                           f"larger than mail_max_bytes ({len(raw)} > {ctx.settings.mail_max_bytes} bytes)")
    try:
        mail = parse(raw)
    except Unreadable as error:
        message_id, sender, subject = _quick_headers(raw)
        return _quarantine(ctx, _keys(message_id, raw), base, message_id, sender, subject, str(error))
    _revoke_sign_in_links(ctx, raw, mail)
    mail.text = _SIGN_IN_LINK.sub(r"\1(link removed: it would sign in as the customer)", mail.text)
    base.update(message_id=mail.original_id or mail.message_id, sender=mail.sender,
                subject=mail.subject[:300], full_text=mail.text)
    for key in _keys(mail.message_id, raw, mail):
        existing = InboundMail.get_or_none(InboundMail.key == key)
        if existing is None:
            try:
                return _take(ctx, mail, {**base, "key": key}, raw)
            except peewee.IntegrityError:  # claimed at this moment by another receiver
                existing = InboundMail.get_or_none(InboundMail.key == key)
                if existing is None:
                    raise
        if _same_message(ctx, existing, base, mail):
            return Received("duplicate", existing, "this Message-ID was received before")
        logger.warning("inbound mail from %s reuses the Message-ID of mail %s from %s: taken as "
                       "another message", mail.sender, existing.id, existing.sender)
    # The last key names this very content: what holds it is this message, received before.
    return Received("duplicate", existing, "this message was received before")


def _revoke_sign_in_links(ctx: Context, raw: bytes, mail: Mail) -> None:
    """A portal sign-in link that comes back in a message is used up at once: the text keeps no
    trace of it, but the raw message does, and so would a quote the text missed, or a file agents
    can download (the sign-in mail forwarded as an attachment, its body base64 inside)."""
    from helpdesk import customer_links

    sources = [raw[:5_000_000].decode("latin-1"), mail.text, *_file_texts(mail)]
    for signed in {found.group(2) for source in sources for found in _SIGN_IN_LINK.finditer(source)}:
        if customer_links.revoke(ctx, signed):
            logger.warning("a portal sign-in link came back in inbound mail and was revoked")


def _file_texts(mail: Mail) -> Iterator[str]:
    """The files of a message as text a link could be read from: each file's bytes, and the
    decoded parts of a message attached whole (``.eml``, ``message/rfc822``)."""
    for file in mail.attachments:
        data = file.data[:5_000_000]
        yield data.decode("latin-1")
        if file.content_type.lower() == "message/rfc822" or file.filename.lower().endswith(".eml"):
            inner = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data)
            for part in inner.walk():
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    yield payload[:5_000_000].decode("latin-1")


def _keys(message_id: str, raw: bytes, mail: Mail | None = None) -> Iterator[str]:
    """The keys a message may be claimed under, in turn: its Message-ID, then (when another
    message used that id before, a careless or hostile sender) the id and the message's
    content: its sender, subject, text and files (the same message again through another hop
    has the same content), or its bytes when it could not be read. The content is hashed only
    when the caller asks for that second key: almost every message is claimed under its id."""
    if not message_id:
        yield _key("", raw)
        return
    yield _key(message_id, raw)
    content = (hashlib.sha256("\0".join([mail.sender, mail.subject, mail.text, *_files(mail)]).encode())
               if mail is not None else hashlib.sha256(raw)).digest()
    yield hashlib.sha256(f"message-id:{message_id}\0".encode() + content).hexdigest()


def _same_message(ctx: Context, existing: InboundMail, base: dict, mail: Mail) -> bool:
    """Is this the message already received (fetched twice, or by IMAP and the MTA, with other
    transport headers), not another one carrying the same Message-ID (another sender, subject,
    text or files: a scanner that sends every scan under one id)?"""
    if existing.raw_path == base["raw_path"]:
        return True
    if (existing.sender, existing.subject, existing.full_text) != (
            base["sender"], base["subject"], base["full_text"]):
        return False
    try:
        earlier = parse(raw_message(ctx, existing))
    except (DomainError, OSError, Unreadable):
        return True  # its original is not kept: the same words from the same sender it is
    return _files(earlier) == _files(mail)


def _files(mail: Mail) -> list[str]:
    return sorted(hashlib.sha256(attachment.data).hexdigest() for attachment in mail.attachments)


def _take(ctx: Context, mail: Mail, base: dict, raw: bytes) -> Received:
    try:
        with write_transaction():
            return _decide(ctx, mail, base, raw)
    except peewee.DataError as error:  # the message's own content (a value no column takes)
        return _refused(ctx, base, mail, raw, error)
    except (peewee.DatabaseError, OSError, StaleVersion, TryAgain):
        raise  # the database, the instance folder or a race, for now: the sender tries again
    except Exception as error:  # noqa: BLE001 - this message cannot be taken (a rule refused it,
        # a plugin failed): rolled back, it waits in quarantine rather than stopping the intake
        return _refused(ctx, base, mail, raw, error)


def _refused(ctx: Context, base: dict, mail: Mail, raw: bytes, error: Exception) -> Received:
    logger.error("inbound mail from %s could not be taken", mail.sender, exc_info=error)
    kept = {name: base[name] for name in ("raw_path", "size", "received_at", "full_text")}
    if isinstance(error, peewee.DataError):  # the text itself may be what no column takes
        kept["full_text"] = "(not kept: see the raw message)"
    return _quarantine(ctx, _keys(mail.message_id, raw, mail), kept, base["message_id"], mail.sender,
                       base["subject"], f"it could not be taken: {type(error).__name__}: {error}"[:2000])


def _quarantine(ctx: Context, keys: Iterable[str], base: dict, message_id: str, sender: str,
                subject: str, reason: str) -> Received:
    for key in keys:  # the first one free, unless this very message holds one already
        existing = InboundMail.get_or_none(InboundMail.key == key)
        if existing is None:
            break
        if existing.raw_path == base["raw_path"] or (
                message_id and (existing.sender, existing.subject) == (sender, subject)):
            # (the same message through another hop: other transport headers, the same id,
            # sender and subject; it could not be read, so its words cannot be compared)
            return Received("duplicate", existing, "this message was received before")
    with write_transaction():
        row = InboundMail.create(key=key, message_id=message_id, sender=sender, subject=subject,
                                 outcome="quarantined", reason=reason, **base)
        _tell_admins(f"Inbound mail from {sender or 'an unknown sender'} was quarantined: {reason}")
    logger.warning("inbound mail %s quarantined: %s", row.id, reason)
    return Received("quarantined", row, reason)


def _record(base: dict, outcome: str, reason: str = "", **values: object) -> InboundMail:
    return InboundMail.create(outcome=outcome, reason=reason, **base, **values)


def _decide(ctx: Context, mail: Mail, base: dict, raw: bytes, again: InboundMail | None = None,
            late: str = "") -> Received:
    # Claim the key first: a concurrent receiver of the same message waits here, then fails.
    # (A message received again from quarantine was claimed by receive_again: its row goes on.)
    row = _record(base, "dropped", "being received") if again is None else again
    for name, value in (base.items() if again is not None else ()):
        setattr(row, name, value)
    automatic = is_automatic(mail)
    row.automatic = bool(automatic)

    def done(outcome: str, reason: str = "", **values: object) -> Received:
        row.outcome, row.reason = outcome, reason[:2000]
        for name, value in values.items():
            setattr(row, name, value)
        row.save()
        return Received(outcome, row, reason)

    loop_mark = mail.headers.get("x-helpdesk-loop", "").lower()
    if loop_mark == our_domain(ctx) or mail.sender in our_addresses(ctx):
        return done("dropped", "our own mail came back (X-Helpdesk-Loop or our From address)")
    if _is_bounce(mail):  # (before the rule below: a bounce of a sign-in message proves an address)
        failed = _bounced_addresses(ctx, mail, raw)
        if failed:
            Contact.update(email_failing_at=now()).where(Contact.email.in_(failed)).execute()
        return done("dropped", "delivery failure report" + (f" for {', '.join(sorted(failed))}" if failed
                                                             else ""))
    if automatic and any(reference.startswith("portal-sign-in.") and reference.endswith("@" + our_domain(ctx))
                         for reference in mail.references):
        return done("dropped", "an automatic answer to a portal sign-in message (no incident for it)")

    if Agent.select().where(fn.LOWER(Agent.email) == mail.sender).exists():
        # Anyone can write an agent's address in From: mail never speaks for an agent.
        _tell_admins(f"Inbound mail from agent address {mail.sender} was quarantined.")
        return done("quarantined", "sent from an agent's address: agents answer in the helpdesk, "
                                   "and mail never acts in an agent's name")
    kept, refused = _triage(ctx, mail)
    notes = list(mail.notes) + refused + ([late] if late else [])
    contact = customers.find_or_create_contact(mail.sender, mail.sender_name)
    if contact.email_failing_at is not None and not automatic:
        # They wrote to us from it: the address works again (a mailbox that was full, say).
        Contact.update(email_failing_at=None).where(Contact.id == contact.id).execute()
    incident_id = _thread(ctx, mail)
    incident = Incident.get_or_none(Incident.id == incident_id) if incident_id else None
    participant = incident is not None and customers.is_participant(incident, contact)
    if incident is not None and (participant or automatic):
        text = trim_reply(mail.text) or "(empty message)"
        if notes:
            text += "\n\n_" + "; ".join(notes) + "_"
        if automatic:
            # From anyone (the out-of-office of a colleague the requester's mail reaches): a
            # note for the desk, not a request; someone else's makes them no participant.
            stranger = "" if participant else f", who is not a participant of {incident.reference}"
            note = entry(incident.id, None, "note", contact=contact.id if participant else None,
                         body=f"Automatic reply from {contact.email}{stranger} ({automatic}), kept "
                              f"without answering:\n\n{text}")
            _keep_attachments(ctx, kept, incident.id, note.id, contact)
            return done("recorded", automatic, incident=incident.id, entry=note.id, contact=contact.id)
        def followed(follow_up: Incident) -> None:  # its acknowledgement threads under this mail
            done("followed_up", "", incident=follow_up.id, contact=contact.id)

        posted = customers.post_message(ctx, incident.id, contact, text, via="email", logged=followed)
        _keep_attachments(ctx, kept, posted.incident.id, posted.entry.id if posted.entry else None, contact)
        return done(posted.outcome, "", incident=posted.incident.id,
                    entry=posted.entry.id if posted.entry else None, contact=contact.id)

    reason = ""
    if incident is not None:
        reason = (f"{contact.email} is not a participant of {incident.reference}: "
                  "a new incident instead of a reply in someone else's name")
    acknowledge = not automatic
    if automatic:
        reason = "; ".join(filter(None, [reason, f"automatic mail ({automatic}): no acknowledgement"]))
    elif customers.recent_acknowledgements(contact) >= ctx.settings.mail_auto_reply_limit:
        acknowledge = False
        reason = "; ".join(filter(None, [reason, "acknowledgement withheld: loop brake "
                                         f"({ctx.settings.mail_auto_reply_limit} per hour) reached"]))
        _tell_admins(f"Mail loop brake: no more acknowledgements to {contact.email} this hour.")
    description = mail.text or "(empty message)"
    if incident is not None:
        description = f"Sent as a reply to {incident.reference}.\n\n{description}"
    if notes:
        description += "\n\n_" + "; ".join(notes) + "_"

    def link(incident: Incident) -> None:  # before the acknowledgement: it threads under this mail
        done("created", reason, incident=incident.id, contact=contact.id)

    created = log_incident(ctx, title=_title(mail), actor=None, requester=contact, source="email",
                           description=description, acknowledge=acknowledge, logged=link)
    _keep_attachments(ctx, kept, created.id, None, contact)
    return Received("created", row, reason[:2000])


class _NotWaiting(Exception):
    """Someone else received this message again, or marked it handled, a moment ago."""


def receive_again(ctx: Context, mail_id: int, by: str) -> Received:
    """Take a quarantined message in again, as if it had just arrived, once an admin has
    fixed what stopped it (a plugin's failure, a rule, a parser bug fixed by an upgrade) or
    decided that a message over ``mail_max_bytes`` is wanted after all: the size limit is not
    applied again. The same ``InboundMail`` row goes on (its id, key and received time), so
    links to it hold. What it becomes is decided afresh: a reply, a new incident with an
    acknowledgement, or quarantine again; the text says when the customer sent it, since
    the desk's clocks start when it is taken. Raises :class:`DomainError` when the message
    is not waiting in quarantine or its original is not kept."""
    row = InboundMail.get_or_none(InboundMail.id == mail_id)
    if row is None or row.outcome != "quarantined" or row.handled_at is not None:
        raise DomainError(f"Message {mail_id} is not waiting in quarantine.")
    try:
        raw = raw_message(ctx, row)
    except OSError as error:
        raise DomainError(f"The original of message {mail_id} cannot be read ({error.strerror}).") from error
    was = row.reason.split(" (received again by ")[0]  # not the history of earlier tries
    stamp = now()
    history = f"received again by {by} at {stamp:%Y-%m-%d %H:%M} UTC; quarantined before: {was}"
    try:
        mail = parse(raw)
    except Unreadable as error:
        return _quarantined_again(row, f"still unreadable: {error}", history)
    _revoke_sign_in_links(ctx, raw, mail)
    mail.text = _SIGN_IN_LINK.sub(r"\1(link removed: it would sign in as the customer)", mail.text)
    base = {"key": row.key, "raw_path": row.raw_path, "size": row.size, "received_at": row.received_at,
            "message_id": mail.original_id or mail.message_id, "sender": mail.sender,
            "subject": mail.subject[:300], "full_text": mail.text}
    late = (f"sent to the desk at {row.received_at:%Y-%m-%d %H:%M} UTC, held in quarantine "
            f"until {stamp:%Y-%m-%d %H:%M} UTC")
    try:
        with write_transaction():
            claimed = InboundMail.update(outcome="dropped", reason="being received").where(
                (InboundMail.id == row.id) & (InboundMail.outcome == "quarantined")
                & InboundMail.handled_at.is_null()).execute()
            if not claimed:
                raise _NotWaiting
            received = _decide(ctx, mail, base, raw, again=row, late=late)
            if received.outcome == "quarantined":  # a rule holds it again: today's reason first
                row.reason = f"{received.reason} ({history})"[:2000]
            else:
                row.reason = "; ".join(filter(None, [received.reason, history]))[:2000]
                row.handled_at = stamp
            row.save()
    except _NotWaiting:
        raise DomainError(f"Message {mail_id} is not waiting in quarantine.") from None
    except (peewee.OperationalError, peewee.InterfaceError, OSError, StaleVersion, TryAgain):
        raise  # the database or the instance folder, for now: the admin tries again
    except Exception as error:  # noqa: BLE001 - still refused (a rule, a plugin): it waits on
        logger.error("quarantined mail %s could not be taken again", mail_id, exc_info=error)
        return _quarantined_again(row, f"it could not be taken: {type(error).__name__}: {error}", history)
    logger.info("quarantined mail %s received again by %s: %s", mail_id, by, received.outcome)
    return Received(received.outcome, row, row.reason)


def _quarantined_again(row: InboundMail, reason: str, history: str) -> Received:
    """Still refused: the message waits on, with today's reason first."""
    text = f"{reason} ({history})"[:2000]
    InboundMail.update(reason=text).where(InboundMail.id == row.id).execute()
    return Received("quarantined", InboundMail.get_by_id(row.id), text)


def _triage(ctx: Context, mail: Mail) -> tuple[list[Attachment], list[str]]:
    """The files to keep, and notes for those not kept (over the size or count limit, or
    refused by a plugin's verdict); the raw message, kept as received, still has them all."""
    limit, kept, refused = ctx.settings.attachment_max_bytes, [], []
    for attachment in mail.attachments:
        name = attachments.sanitise_name(attachment.filename)
        if attachment.size > limit or len(kept) >= attachments.MAX_COUNT:
            refused.append(f"{name} ({attachment.size} bytes): over the size or count limit")
            continue
        reason = attachments.verdict(ctx, attachment.filename, attachment.data)
        if reason:
            refused.append(f"{name}: {reason}")
        else:
            kept.append(attachment)
    if not refused:
        return kept, []
    return kept, ["not kept (the original message has them): " + "; ".join(refused[:20])]


def _keep_attachments(ctx: Context, kept: list[Attachment], incident_id: int, entry_id: int | None,
                      contact: Contact) -> None:
    for attachment in kept:
        attachments.store(ctx, incident_id, entry_id, attachment.filename, attachment.data, contact=contact)


def _title(mail: Mail) -> str:
    title = without_tokens(one_line(mail.subject))
    return (title or f"E-mail from {mail.sender}")[:200]


def _bounced_addresses(ctx: Context, mail: Mail, raw: bytes) -> set[str]:
    """The recipients a delivery failure report names (X-Failed-Recipients, Final-Recipient
    with ``Action: failed``: a report that a message is delayed or went on names no failure)
    that it proves failing: only an address we sent a message to whose Message-ID the report
    quotes (one from the outbox, or a portal sign-in message, whose id is signed for its
    address). Anyone can write a "bounce"; without that proof it marks nobody."""
    from helpdesk import customer_links

    named = {a.strip().lower() for a in mail.headers.get("x-failed-recipients", "").split(",") if "@" in a}
    for block in _BLANK_LINE.split(raw[:1_000_000]):  # one block per recipient in the report
        action = _ACTION.search(block)
        if action and action.group(1).lower() != b"failed":
            continue  # delayed, delivered, relayed, expanded: the address works
        for match in _FINAL_RECIPIENT.finditer(block):
            named.add(match.group(1).decode("ascii", "replace").lower())
    domain = our_domain(ctx)
    quoted = {found for found in message_ids(raw[:1_000_000].decode("ascii", "replace"))
              if found.endswith("@" + domain)}
    if not quoted:
        return set()
    addresses = sorted(named)[:20]
    sent = (Delivery.select(Delivery.recipient, Delivery.idempotency_key)  # delivery_recipient index
            .where(Delivery.recipient.in_(addresses)).order_by(Delivery.id.desc()).limit(5000).tuples())
    failed = {recipient for recipient, key in sent
              if mail_headers.message_id(key, domain).lower().strip("<>") in quoted}
    sign_ins = [found for found in quoted if found.startswith("portal-sign-in.")][:20]
    return failed | {address for address in addresses
                     if any(customer_links.mailed_to(ctx, found, address) for found in sign_ins)}


def received_since(hours: int = 24) -> int:
    """How many messages arrived lately (for the admin page's summary)."""
    return InboundMail.select().where(InboundMail.received_at >= now() - dt.timedelta(hours=hours)).count()
