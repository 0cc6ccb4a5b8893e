"""The outbox: every notification is a row written in the transaction of the change that
caused it, then delivered by background tasks.

:func:`record_event` runs inside the change's transaction (called by
:func:`helpdesk.events.emit`): it applies the rules, renders each kind once and
writes one row per person and channel, plus one per broadcast address.
:func:`enqueue` is the same door for plugins. :func:`deliver` claims one row
with a conditional UPDATE, checks that it is still worth sending (the
recipient may still receive it, its moment has not passed), sends it through
its channel type and records the attempt; temporary failures are retried with
exponential backoff and jitter (capped at 15 minutes, so a message is at most that late
after its channel recovers) for ``delivery_retry_hours`` (and at least
:data:`MAX_ATTEMPTS` times); permanent failures and exhausted retries go to the
dead state. :func:`sweep` re-queues rows a crashed worker left claimed, and
rows whose retry time has come: delivery is at least once, and every message
carries an idempotency key so receivers can drop repeats.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import secrets
import uuid
from collections.abc import Mapping
from typing import Any

import peewee

from helpdesk.clock import now
from helpdesk.context import SWEEP_GRACE_SECONDS, Context
from helpdesk.db import after_commit, write_transaction
from helpdesk.models import (
    Agent,
    Delivery,
    DeliveryAttempt,
    Incident,
    NotificationPreference,
    incident_as_stored,
)
from helpdesk.notify import addresses, conversation, rules
from helpdesk.notify.message import render_html, render_safely
from helpdesk.records import DeliveryError, Message
from helpdesk.workers import lapsed

logger = logging.getLogger(__name__)
LEASE = dt.timedelta(minutes=5)  # a claimed row is re-queued after this if its worker died
MAX_ATTEMPTS = 8  # at least this many tries, however short the retry window
BACKOFF_BASE = 30.0  # seconds; doubles per attempt, capped
BACKOFF_CAP = 900.0
#: Delivery states: waiting, claimed by a worker, done, given up (an admin may retry), not sent
#: because its moment passed, not sent because the recipient may no longer receive it.
STATES = ("pending", "sending", "sent", "dead", "expired", "cancelled")

# Kept here too for callers of the former module (the rules live in helpdesk.notify.rules).
KINDS, RULES, RULE_LABELS = rules.KINDS, rules.RULES, rules.RULE_LABELS


def _call_plugin(ctx: Context, channel: Any, what: str, call: Any) -> Any:
    """Call a channel record's callable; a plugin that raises is recorded and skipped."""
    try:
        return call()
    except Exception as error:
        from helpdesk.plugins import record_failure

        logger.exception("channel %r failed in %s", channel.name, what)
        record_failure(ctx.registry.owners.get(("helpdesk_channel_types", channel.name), channel.name),
                       what, None, error)
        return None


# -- recording (inside the change's transaction) ---------------------------------------------------


def record_event(ctx: Context, event: str, incident_id: int, payload: dict[str, Any],
                 as_stored: Incident | None = None) -> list[int]:
    """Apply the rules to one event; write its outbox rows; queue their delivery after commit
    (``as_stored``: the incident as stored now, when the caller read it already)."""
    incident = as_stored
    if incident is None:
        try:
            incident = incident_as_stored(incident_id)
        except Incident.DoesNotExist:
            return []
    found = rules.recipients(event, incident, payload.get("actor"), payload)
    channels = list(ctx.registry.channel_types.values())
    agent_ids = [r.agent.id for r in found if r.agent is not None]
    settings = addresses.settings_for(agent_ids)
    preferences = {(p.agent_id, p.kind, p.channel): p.enabled for p in NotificationPreference.select()
                   .where(NotificationPreference.agent.in_(agent_ids))} if agent_ids else {}
    rendered: dict[str, tuple[str, str, str]] = {}
    created: list[int] = []
    for recipient in found:
        if recipient.kind not in rendered:
            subject, text = render_safely(ctx, recipient.kind, incident, payload)
            rendered[recipient.kind] = (subject, text, render_html(recipient.kind, incident, payload, text))
        subject, text, html = rendered[recipient.kind]
        for channel in channels:
            if recipient.agent is not None:
                if not preferences.get((recipient.agent.id, recipient.kind, channel.name), True):
                    continue
                address = addresses.address(ctx, channel, recipient.agent, settings)
            elif recipient.contact is not None and channel.contact_address_for is not None:
                who = recipient.contact
                address = _call_plugin(ctx, channel, "contact_address_for",
                                       lambda c=channel, who=who: c.contact_address_for(ctx, who))
            else:
                address = None
            if address:
                # A requester's message joins their conversation on this channel (mail threads).
                thread = conversation.references(ctx, channel.name, str(address), incident,
                                                  recipient.contact) if recipient.contact is not None else []
                created.append(_write(ctx, channel.name, str(address), event=event, kind=recipient.kind,
                                      incident=incident, agent=recipient.agent, subject=subject, text=text,
                                      html=html, payload=payload, references=thread,
                                      expires_at=rules.expires_at(recipient.kind, payload)))
    told: tuple[str, str] | None = None  # what a broadcast says, written once for every address
    for channel in channels:
        if channel.broadcast is None:
            continue
        for address in _call_plugin(ctx, channel, "broadcast", lambda c=channel: c.broadcast(ctx)) or ():
            if told is None:  # a room or a feed reads it too, not only a machine's payload
                told = render_safely(ctx, "broadcast", incident, {**payload, "event": event})
            created.append(_write(ctx, channel.name, str(address), event=event, kind=event,
                                  incident=incident, agent=None, subject=told[0], text=told[1],
                                  payload=payload, expires_at=None))
    _deliver_after_commit(ctx, created)
    return created


def _deliver_after_commit(ctx: Context, delivery_ids: list[int]) -> None:
    tasks = ctx.tasks
    if delivery_ids and tasks is not None:
        after_commit(lambda: tasks.queue_outbox_rows(tasks.deliver, delivery_ids, "notification deliveries"))


def _write(ctx: Context, channel: str, address: str, *, event: str, kind: str, incident: Incident | None,
           agent: Agent | None, subject: str, text: str, payload: Mapping[str, Any],
           expires_at: dt.datetime | None, html: str = "", key: str | None = None,
           references: list[str] | None = None) -> int:
    stamp = now()
    reference = incident.reference if incident is not None else "none"
    # Unique per message; receivers use it to drop repeats of an at-least-once delivery.
    key = key or f"{reference}:{kind}:{channel}:{uuid.uuid4().hex}"
    # The incident page is for agents and integrations; a requester's mail has no use for it.
    url = ctx.incident_url(incident.id) if incident is not None and (
        agent is not None or kind == event) else None
    data = {"event": event, "kind": kind, "url": url,
            **({"incident": incident.reference, "title": incident.title, "status": incident.status,
                "priority": incident.priority} if incident is not None else {}),
            **{k: v for k, v in payload.items() if isinstance(v, str | int | float | bool) or v is None}}
    if references:
        data["references"] = references
    row = Delivery.create(channel=channel, recipient=address[:500], event=event[:64],
                          incident=incident.id if incident is not None else None, agent=agent,
                          subject=subject[:300], text=text, html=html, data=json.dumps(data),
                          idempotency_key=key[:200], next_attempt_at=stamp, created_at=stamp,
                          expires_at=expires_at)
    return row.id


def enqueue(ctx: Context, channel: str, recipient: str, subject: str, text: str, *,
            incident: Incident | None = None, agent: Agent | None = None, event: str = "plugin",
            kind: str = "", html: str = "", data: Mapping[str, Any] | None = None,
            idempotency_key: str | None = None, expires_at: dt.datetime | None = None) -> int:
    """Put one message in the outbox for ``channel`` to send to ``recipient``; returns its id.

    The public way for a plugin to notify: the row is written in the current
    transaction if there is one (so it exists exactly when the change does),
    delivered by the worker after commit with retries, backoff and dead
    letters, and listed on the admin Deliveries page. Give an
    ``idempotency_key`` that is the same for the same news (e.g. built from
    the event's key) and a repeated call returns the first row instead of
    queueing a second message. ``expires_at``: not sent after that moment.
    """
    _check_arguments(recipient=recipient, subject=subject, text=text, html=html, kind=kind,
                     idempotency_key=idempotency_key, expires_at=expires_at, incident=incident,
                     agent=agent)
    if channel not in ctx.registry.channel_types:
        raise DeliveryError(f"no channel type named {channel!r} is registered", permanent=True)
    if idempotency_key:
        existing = Delivery.get_or_none(Delivery.idempotency_key == idempotency_key[:200])
        if existing is not None:
            return existing.id
    with write_transaction():
        try:
            with write_transaction():
                delivery_id = _write(ctx, channel, recipient, event=event, kind=kind or event,
                                     incident=incident, agent=agent, subject=subject, text=text,
                                     payload=dict(data or {}), expires_at=expires_at, html=html,
                                     key=idempotency_key)
        except peewee.IntegrityError:  # the same key, written meanwhile by a concurrent call
            return Delivery.get(Delivery.idempotency_key == idempotency_key[:200]).id
        _deliver_after_commit(ctx, [delivery_id])
    return delivery_id


def _check_arguments(**given: Any) -> None:
    """Refuse a plugin's call with an argument of the wrong kind at once, naming it: queued, it
    would fail only when sent (an expiry given as text left its row in 'sending' for good)."""
    kinds: dict[str, tuple[type, ...]] = {
        "recipient": (str,), "subject": (str,), "text": (str,), "html": (str,), "kind": (str,),
        "idempotency_key": (str, type(None)), "expires_at": (dt.datetime, type(None)),
        "incident": (Incident, type(None)), "agent": (Agent, type(None))}
    for name, value in given.items():
        if not isinstance(value, kinds[name]):
            wanted = " or ".join("None" if kind is type(None) else kind.__name__ for kind in kinds[name])
            raise TypeError(f"enqueue: {name} must be {wanted}, not {type(value).__name__} {value!r:.60}")


# -- delivery (worker) ------------------------------------------------------------------------------


#: Kinds of message whose words a person wrote (an agent's public reply to the requester).
PERSONAL_KINDS = frozenset({"requester_reply"})


def message_for(delivery: Delivery, ctx: Context | None = None) -> Message:
    """The message a delivery sends; with ``ctx`` (at send time) a reply's files are read from
    storage now, and the text says which could not be attached (see :mod:`.conversation`)."""
    data = json.loads(delivery.data or "{}")
    references = tuple(str(r) for r in data.pop("references", None) or ())
    files, note = conversation.files_for(ctx, delivery, data) if ctx is not None else ((), "")
    text = delivery.text if not note else f"{delivery.text.rstrip()}\n\n{note}\n"
    return Message(recipient=delivery.recipient, subject=delivery.subject, text=text,
                   html=delivery.html, event=delivery.event, kind=data.get("kind", ""),
                   incident_reference=data.get("incident"), incident_id=delivery.incident_id,
                   idempotency_key=delivery.idempotency_key, url=data.get("url"), data=data,
                   attachments=files, references=references,
                   automatic=data.get("kind") not in PERSONAL_KINDS)


def send_now(ctx: Context, channel: str, message: Message) -> None:
    """Send one message through ``channel`` in this process, bypassing the outbox (the admin's
    and the CLI's "send test"); raises :class:`DeliveryError`."""
    transport = ctx.registry.channel_types.get(channel)
    if transport is None:
        raise DeliveryError(f"no channel type named {channel!r} is registered", permanent=True)
    transport.send(ctx, message)


def send_test_key(channel: str) -> str:
    """A key of its own for each test message: the e-mail's Message-ID and a webhook's
    Idempotency-Key derive from it, and a receiver drops a repeat of one it has seen (Gmail
    does), so a second test after a fix would say "sent" and never arrive."""
    return f"test-{channel}-{secrets.token_hex(8)}"


def backoff(attempts: int) -> dt.timedelta:
    """Doubling waits with jitter, never longer than :data:`BACKOFF_CAP` (jitter included)."""
    delay = BACKOFF_BASE * 2 ** max(0, attempts - 1) * random.uniform(0.8, 1.2)  # noqa: S311 - jitter
    return dt.timedelta(seconds=min(BACKOFF_CAP * random.uniform(0.8, 1.0), delay))  # noqa: S311


def claim(delivery_id: int, at: dt.datetime, lease: dt.timedelta = LEASE) -> bool:
    """Take a pending row whose time has come; exactly one worker can win it."""
    from helpdesk.leases import holder_id

    return Delivery.update(state="sending", claimed_until=at + lease, claimed_by=holder_id(),
                           attempts=Delivery.attempts + 1) \
        .where((Delivery.id == delivery_id) & (Delivery.state == "pending")
               & (Delivery.next_attempt_at <= at)).execute() == 1


def _withdrawn(delivery: Delivery, at: dt.datetime) -> tuple[str, str] | None:
    """Why a claimed row must not be sent any more: (state, reason), or None to send it."""
    if delivery.expires_at is not None and at >= delivery.expires_at:
        return "expired", f"not sent: its moment passed at {delivery.expires_at:%Y-%m-%d %H:%M} UTC"
    if delivery.agent_id is not None:
        agent = Agent.get_or_none(Agent.id == delivery.agent_id)
        if agent is None or not agent.active:
            return "cancelled", "not sent: the recipient is deactivated"
    return None


def deliver(ctx: Context, delivery_id: int) -> str | None:
    """Claim and send one delivery; return its new state (None if another worker has it)."""
    at = now()
    if not claim(delivery_id, at, dt.timedelta(seconds=ctx.settings.lease_seconds)):
        return None
    delivery = Delivery.get_by_id(delivery_id)
    withdrawn = _withdrawn(delivery, at)
    if withdrawn is not None:
        state, reason = withdrawn
        with write_transaction():
            Delivery.update(state=state, claimed_until=None, last_error=reason) \
                .where((Delivery.id == delivery_id) & (Delivery.state == "sending")).execute()
            DeliveryAttempt.create(delivery=delivery_id, at=at, ok=False, error=reason)
        return state
    channel = ctx.registry.channel_types.get(delivery.channel)
    try:
        if channel is None:
            # Another worker may have it (a rolling upgrade, a plugin installed on the web servers
            # first): retried like any temporary failure, dead only after the retry window.
            raise DeliveryError(f"the channel type {delivery.channel!r} is not available in this worker")
        channel.send(ctx, message_for(delivery, ctx))
    except DeliveryError as error:
        return _failed(ctx, delivery, str(error), error.permanent)
    except Exception as error:  # a broken transport: treat as temporary, but say what it was
        logger.exception("channel %s crashed on delivery %s", delivery.channel, delivery_id)
        return _failed(ctx, delivery, f"{type(error).__name__}: {error}", False)
    with write_transaction():
        Delivery.update(state="sent", sent_at=now(), claimed_until=None, last_error="") \
            .where((Delivery.id == delivery_id) & (Delivery.state == "sending")).execute()
        DeliveryAttempt.create(delivery=delivery_id, at=now(), ok=True)
    return "sent"


def _failed(ctx: Context, delivery: Delivery, error: str, permanent: bool) -> str:
    """A temporary failure is retried until the row is ``delivery_retry_hours`` old (an
    outage of hours must not turn every pending message into a dead letter, G3)."""
    window = dt.timedelta(hours=ctx.settings.delivery_retry_hours)
    dead = permanent or (delivery.attempts >= MAX_ATTEMPTS and now() - delivery.created_at >= window)
    state = "dead" if dead else "pending"
    with write_transaction():
        changed = Delivery.update(state=state, claimed_until=None, last_error=error[:2000],
                                  next_attempt_at=None if dead else now() + backoff(delivery.attempts)) \
            .where((Delivery.id == delivery.id) & (Delivery.state == "sending")).execute()
        DeliveryAttempt.create(delivery=delivery.id, at=now(), ok=False, error=error[:2000])
        if dead and changed:
            _tell_the_desk(delivery, error)
    return state


_TO_REQUESTER = {"requester_ack": "acknowledgement", "requester_reply": "public reply",
                 "requester_resolved": "resolution message"}


def _tell_the_desk(delivery: Delivery, error: str) -> None:
    """A message to the requester that will not be sent (their server refused it, or the
    retries ran out) is said on the incident as an internal note: otherwise the agent waits
    for an answer to a reply the customer never got, and only the admins' Deliveries page knows."""
    from helpdesk.incidents.changes import entry

    try:
        kind = json.loads(delivery.data or "{}").get("kind", "")
    except ValueError:
        return
    if delivery.incident_id is None or delivery.agent_id is not None or kind not in _TO_REQUESTER:
        return
    entry(delivery.incident_id, None, "note",
          body=f"The {_TO_REQUESTER[kind]} to the requester ({delivery.recipient}) could not be "
               f"delivered by {delivery.channel}: they have not received it. Reach them another "
               f"way, or correct their address and retry it on the Deliveries page.\n\n"
               f"Error: {error[:500]}")


def sweep(ctx: Context, limit: int = 1000) -> int:
    """Re-queue what is due: rows whose retry time came, and rows a dead worker left claimed.

    Due rows are queued only while the queue is short (:data:`helpdesk.context.SWEEP_BACKLOG`),
    oldest first, and a row never tried only once its own entry had time to run
    (:data:`helpdesk.context.SWEEP_GRACE_SECONDS`): sweeps never pile copies onto a backlog."""
    at = now()
    abandoned = [row.id for row in Delivery.select(Delivery.id).where(
        (Delivery.state == "sending")
        & lapsed(Delivery.claimed_until, Delivery.claimed_by, ctx.settings.lease_seconds, at))]
    if abandoned:
        with write_transaction():
            Delivery.update(state="pending", claimed_until=None, next_attempt_at=at) \
                .where((Delivery.id.in_(abandoned)) & (Delivery.state == "sending")
                       & (Delivery.claimed_until < at)).execute()
            DeliveryAttempt.insert_many([
                {"delivery": delivery_id, "at": at, "ok": False,
                 "error": "the worker sending it stopped before finishing (lease expired); queued again"}
                for delivery_id in abandoned]).execute()
    if ctx.tasks is None:
        return 0
    fresh_before = at - dt.timedelta(seconds=SWEEP_GRACE_SECONDS)
    due = [row.id for row in Delivery.select(Delivery.id).where(
        (Delivery.state == "pending") & (Delivery.next_attempt_at <= at)
        & ((Delivery.attempts > 0) | (Delivery.next_attempt_at <= fresh_before)))
        .order_by(Delivery.next_attempt_at, Delivery.id).limit(limit)]
    if not due or not ctx.tasks.room_to_sweep():
        return 0  # the entries waiting in the queue run first; a later sweep queues what is left
    for delivery_id in due:
        ctx.tasks.deliver(delivery_id)
    return len(due)


def retry(delivery_id: int) -> bool:
    """An admin's retry of a dead delivery: back to pending, due now, attempts reset."""
    return Delivery.update(state="pending", attempts=0, next_attempt_at=now(), last_error="") \
        .where((Delivery.id == delivery_id) & (Delivery.state == "dead")).execute() == 1
