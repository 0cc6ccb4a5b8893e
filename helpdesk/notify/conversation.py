"""The conversation with a requester: which earlier messages a new one answers (so the
customer's mail client threads it), and the files an agent's public reply carries.

Threading is decided when the message is written to the outbox, from what the desk and
the requester had said by then on that incident: our earlier messages to the same address
on the same channel (their Message-IDs derive from their idempotency keys, as the e-mail
channel writes them) and the requester's own mails placed on the incident. The message
answers the latest of them (``In-Reply-To``); ``References`` starts with the incident's root
id, which every message about it shares, then the latest few.

Files are read from storage when the message is *sent* (the outbox may retry hours later),
only for a reply entry (never an internal note), and only up to
``mail_attachments_max_bytes`` in total; beyond it none are attached and the text says the
files are in the portal. A file gone from storage is named in the text instead of failing
the delivery.
"""

from __future__ import annotations

import logging
from typing import Any

from helpdesk.context import Context
from helpdesk.models import Attachment, Contact, Delivery, InboundMail, Incident, TimelineEntry
from helpdesk.records import MessageFile

logger = logging.getLogger(__name__)
THREAD_DEPTH = 10  # ids in References besides the root: enough for any client to thread
#: Outcomes of inbound mail that are the requester speaking on the incident.
_SPOKEN = ("created", "replied", "reopened", "followed_up")
_GONE = ("dead", "expired", "cancelled")  # outbox states of messages the requester never got


def _domain(ctx: Context) -> str:
    from helpdesk.mail.receive import our_domain  # the domain our Message-IDs carry

    return our_domain(ctx)


def references(ctx: Context, channel: str, address: str, incident: Incident,
               contact: Contact) -> list[str]:
    """The thread a new message to ``contact`` on ``channel`` joins: the incident's root id,
    then the latest earlier messages (ours and theirs), oldest first; the last is the parent."""
    from helpdesk.mail_headers import UnsafeHeader, message_id, reference_id

    try:
        domain = _domain(ctx)
        root = message_id(incident.reference, domain)
    except UnsafeHeader:
        return []
    said: list[tuple[Any, int, int, str]] = []
    ours = (Delivery.select(Delivery.id, Delivery.created_at, Delivery.idempotency_key)
            .where((Delivery.incident == incident.id) & (Delivery.channel == channel)
                   & (Delivery.recipient == address[:500]) & (Delivery.agent.is_null())
                   & Delivery.state.not_in(_GONE))
            .order_by(Delivery.id.desc()).limit(THREAD_DEPTH))
    for row in ours:
        said.append((row.created_at, 1, row.id, message_id(row.idempotency_key, domain)))
    theirs = (InboundMail.select(InboundMail.id, InboundMail.received_at, InboundMail.message_id)
              .where((InboundMail.incident == incident.id) & (InboundMail.contact == contact.id)
                     & InboundMail.outcome.in_(_SPOKEN) & (InboundMail.message_id != ""))
              .order_by(InboundMail.id.desc()).limit(THREAD_DEPTH))
    for row in theirs:
        checked = reference_id(row.message_id)  # the customer's words: used only if harmless
        if checked:
            said.append((row.received_at, 0, row.id, checked))
    said.sort(key=lambda item: item[:3])
    chain = [found for *_, found in said[-THREAD_DEPTH:] if found != root]
    return [root, *dict.fromkeys(chain)]


def portal_url(ctx: Context, incident_id: int) -> str:
    return f"{ctx.base_url}/portal/incidents/{incident_id}"


def files_for(ctx: Context, delivery: Delivery, data: dict[str, Any]) -> tuple[tuple[MessageFile, ...], str]:
    """The files a message to a requester carries, read now, and a paragraph for its text
    about any that are not attached ("" when all are). Only a public reply's files, only to a
    requester (not an agent, not a broadcast)."""
    from helpdesk import attachments

    entry_id = data.get("entry")
    if (delivery.agent_id is not None or data.get("kind") != "requester_reply"
            or not isinstance(entry_id, int) or delivery.incident_id is None):
        return (), ""
    entry = TimelineEntry.get_or_none((TimelineEntry.id == entry_id)
                                      & (TimelineEntry.incident == delivery.incident_id))
    if entry is None or entry.kind != "reply":  # an internal note's files never leave the desk
        return (), ""
    found = list(Attachment.select().where((Attachment.entry == entry.id)
                                           & (Attachment.incident == delivery.incident_id))
                 .order_by(Attachment.id))
    if not found:
        return (), ""
    where = portal_url(ctx, delivery.incident_id)
    limit = ctx.settings.mail_attachments_max_bytes
    if sum(item.size for item in found) > limit:
        names = ", ".join(f"{item.filename} ({_size(item.size)})" for item in found)
        return (), (f"The files of this reply are too large together to send by e-mail "
                    f"(more than {_size(limit)}): {names}. They are in the portal: {where}")
    files, missing = [], []
    for item in found:
        try:
            files.append(MessageFile(item.filename, item.content_type,
                                     attachments.path_of(ctx, item).read_bytes()))
        except OSError as error:
            logger.warning("attachment %s of delivery %s is not in storage: %s", item.id, delivery.id, error)
            missing.append(item.filename)
    note = ""
    if missing:
        note = (f"Not attached, as it could not be read from our storage: {', '.join(missing)}. "
                "Please reply to this message if you need it.")
    return tuple(files), note


def _size(count: int) -> str:
    from helpdesk.words import format_size

    return format_size(count)
