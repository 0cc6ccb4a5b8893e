"""Who is told what, and the outbox that makes sure they are told.

:func:`record` runs inside the transaction of the change (called by
:func:`helpdesk.events.emit`): it applies the rules, writes in-app notices
and one outbox row per e-mail, chat or webhook message, and queues their
delivery for after the commit. So a notification exists exactly when its
change does. :func:`deliver` claims one row with a conditional UPDATE, sends
it through its channel type, and records the attempt; temporary failures are
retried with exponential backoff and jitter, permanent ones and exhausted
retries go to the dead state. :func:`sweep` re-queues rows a crashed worker
left claimed, and rows whose retry time has come: delivery is at least once,
and every message carries an idempotency key so receivers can drop repeats.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import current_app
from jinja2 import ChoiceLoader, FileSystemLoader, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment

from helpdesk.clock import now
from helpdesk.db import after_commit, write_transaction
from helpdesk.models import (
    Agent,
    Delivery,
    DeliveryAttempt,
    Incident,
    Membership,
    Notice,
    NotificationPreference,
    NotificationRule,
)
from helpdesk.records import DeliveryError, Message

logger = logging.getLogger(__name__)
LEASE = dt.timedelta(minutes=5)  # a claimed row is re-queued after this if its worker died
MAX_ATTEMPTS = 8
BACKOFF_BASE = 30.0  # seconds; doubles per attempt, capped
BACKOFF_CAP = 3600.0

# Kinds of notification an agent can switch per channel on the profile page.
KINDS = {
    "assigned": "Assigned to me",
    "team_new": "New incident for my team",
    "reassigned": "An incident I own was reassigned",
    "resolved": "An incident I own was resolved",
    "sla_warning": "SLA warning",
    "sla_breached": "SLA breached",
}
AGENT_CHANNELS = ("inapp", "email", "chat")


# The default rules an admin can switch off: audience -> kinds it hears of.
RULES = {
    "owner": ("reassigned", "resolved", "sla_warning", "sla_breached"),
    "assignee": ("assigned", "sla_warning", "sla_breached"),
    "team": ("team_new",),
    "requester": ("requester_ack", "requester_reply", "requester_resolved"),
}
RULE_LABELS = {
    **KINDS,
    "requester_ack": "Acknowledgement of a new incident",
    "requester_reply": "Public replies",
    "requester_resolved": "Resolution",
}


@dataclass(frozen=True)
class Recipient:
    kind: str  # what the notification is about, for preferences and templates
    agent: Agent | None = None
    address: str | None = None  # a contact's e-mail address or a webhook URL
    channel: str | None = None  # for non-agent recipients
    audience: str = "owner"  # which rule found them


# -- rules -------------------------------------------------------------------------------


def _owner_side(incident: Incident) -> list[Agent]:
    """The owner; the owning team's leads when nobody (active) owns it."""
    if incident.owner_agent_id is not None and incident.owner_agent.active:
        return [incident.owner_agent]
    return list(Agent.select().join(Membership).where(
        (Membership.team == incident.owner_team_id) & (Agent.role.in_(["lead", "admin"]))
        & (Agent.active == True)))  # noqa: E712 - peewee expression


def _team_members(team_id: int) -> list[Agent]:
    return list(Agent.select().join(Membership).where(
        (Membership.team == team_id) & (Agent.active == True)))  # noqa: E712


def recipients(event: str, incident: Incident, actor_id: int | None,
               payload: dict[str, Any]) -> list[Recipient]:
    """The default rules (the owner first, then the assignee, then teams and the requester)."""
    found: list[Recipient] = []
    if event == "incident_assigned":
        if incident.assigned_agent_id is not None:
            found.append(Recipient("assigned", incident.assigned_agent, audience="assignee"))
        elif incident.assigned_team_id is not None:
            found += [Recipient("team_new", agent, audience="team")
                      for agent in _team_members(incident.assigned_team_id)]
        if payload.get("previous_team") is not None or payload.get("previous_agent") is not None:
            found += [Recipient("reassigned", agent) for agent in _owner_side(incident)]
    elif event in {"incident_sla_warning", "incident_sla_breached"}:
        kind = "sla_warning" if event == "incident_sla_warning" else "sla_breached"
        found += [Recipient(kind, agent) for agent in _owner_side(incident)]
        if incident.assigned_agent_id is not None:
            found.append(Recipient(kind, incident.assigned_agent, audience="assignee"))
    elif event == "incident_resolved":
        found += [Recipient("resolved", agent) for agent in _owner_side(incident)]
        if incident.requester_id and incident.requester.email:
            found.append(Recipient("requester_resolved", address=incident.requester.email,
                                   channel="email", audience="requester"))
    elif event == "incident_created":
        if incident.requester_id and incident.requester.email:
            found.append(Recipient("requester_ack", address=incident.requester.email, channel="email",
                                   audience="requester"))
    elif event == "incident_commented" and payload.get("public"):
        if incident.requester_id and incident.requester.email:
            found.append(Recipient("requester_reply", address=incident.requester.email,
                                   channel="email", audience="requester"))
    # Rules an admin switched off; an agent is not told of what they did; each (agent, kind) once.
    switched_off = {(r.audience, r.kind) for r in NotificationRule.select().where(
        NotificationRule.enabled == False)} if found else set()  # noqa: E712 - peewee expression
    unique, seen = [], set()
    for recipient in found:
        if (recipient.audience, recipient.kind) in switched_off:
            continue
        key = (recipient.agent.id if recipient.agent else recipient.address, recipient.kind)
        if (recipient.agent is not None and recipient.agent.id == actor_id) or key in seen:
            continue
        seen.add(key)
        unique.append(recipient)
    return unique


def _enabled(agent_id: int, kind: str, channel: str, preferences: dict[tuple[int, str, str], bool]) -> bool:
    return preferences.get((agent_id, kind, channel), True)


# -- rendering --------------------------------------------------------------------------------


def _environment(state: Any) -> SandboxedEnvironment:
    """Templates for notifications: the instance folder's first, then the app's; sandboxed."""
    env = getattr(state, "notification_env", None)
    if env is None:
        folders = [Path(current_app.instance_path) / "templates",
                   Path(current_app.root_path) / (current_app.template_folder or "templates")]
        env = SandboxedEnvironment(loader=ChoiceLoader([FileSystemLoader(str(f)) for f in folders]),
                                   autoescape=False)
        state.notification_env = env
    return env


def render(state: Any, kind: str, incident: Incident, payload: dict[str, Any]) -> tuple[str, str]:
    """Subject and plain text for one kind, from ``notifications/<kind>.txt`` (user text is data)."""
    env = _environment(state)
    try:
        template = env.get_template(f"notifications/{kind}.txt")
    except TemplateNotFound:
        template = env.get_template("notifications/default.txt")
    base = state.settings.base_url
    context = {
        "incident": incident,
        "url": f"{base}/incidents/{incident.id}",
        "payload": payload,
        "kind": kind,
        "owner": f"{incident.owner_team.name} / {incident.owner_agent or '—'}",
        "assignee": (f"{incident.assigned_team.name} / {incident.assigned_agent or '—'}"
                     if incident.assigned_team_id else "unassigned"),
    }
    # The first line is the subject (the "subject" block), the rest the text.
    subject, _, text = template.render(context).strip().partition("\n")
    return " ".join(subject.split()), text.strip() + "\n"


# -- recording (inside the change's transaction) ---------------------------------------------------


def record(state: Any, event: str, incident_id: int, payload: dict[str, Any]) -> list[int]:
    """Apply the rules to one event; write notices and outbox rows; queue delivery after commit."""
    incident = Incident.get_or_none(Incident.id == incident_id)
    if incident is None:
        return []
    found = recipients(event, incident, payload.get("actor"), payload)
    channels = state.registry.channel_types
    agents = [r.agent.id for r in found if r.agent is not None]
    preferences = {(p.agent_id, p.kind, p.channel): p.enabled for p in NotificationPreference.select()
                   .where(NotificationPreference.agent.in_(agents))} if agents else {}
    created: list[int] = []
    stamp = now()
    rendered: dict[str, tuple[str, str]] = {}
    for recipient in found:
        if recipient.kind not in rendered:
            try:
                rendered[recipient.kind] = render(state, recipient.kind, incident, payload)
            except Exception:  # a broken override must not block the change it reports
                logger.exception("notification template for %r failed; using a plain text", recipient.kind)
                rendered[recipient.kind] = (f"[{incident.reference}] {incident.title}",
                                            f"{incident.reference}: {incident.title}\n")
        subject, text = rendered[recipient.kind]
        targets: list[tuple[str, str, Agent | None]] = []
        if recipient.agent is not None:
            agent = recipient.agent
            if _enabled(agent.id, recipient.kind, "inapp", preferences):
                Notice.create(agent=agent.id, incident=incident.id, text=subject[:500], created_at=stamp)
            wants_email = agent.notify_email and _enabled(agent.id, recipient.kind, "email", preferences)
            if agent.email and wants_email:
                targets.append(("email", agent.email, agent))
            if agent.chat_url and _enabled(agent.id, recipient.kind, "chat", preferences):
                targets.append(("chat", agent.chat_url, agent))
        elif recipient.address and recipient.channel:
            targets.append((recipient.channel, recipient.address, None))
        for channel, address, agent in targets:
            if channel not in channels:
                continue  # the channel's plugin is disabled
            created.append(_outbox(channel, address, agent, event, recipient.kind, incident, subject,
                                   text, payload, stamp))
    for url in _webhook_urls(state):
        if "webhook" in channels:
            created.append(_outbox("webhook", url, None, event, event, incident,
                                   f"{incident.reference} {event}", "", payload, stamp))
    if created:
        after_commit(lambda: [state.tasks["deliver"](delivery_id) for delivery_id in created])
    return created


def _webhook_urls(state: Any) -> list[str]:
    from helpdesk.config import PluginSettings

    return PluginSettings("webhook", state.settings.plugins.get("webhook", {})).list("urls")


def _outbox(channel: str, address: str, agent: Agent | None, event: str, kind: str, incident: Incident,
            subject: str, text: str, payload: dict[str, Any], stamp: dt.datetime) -> int:
    # Unique per message; receivers use it to drop repeats of an at-least-once delivery.
    key = f"{incident.reference}:{kind}:{channel}:{uuid.uuid4().hex}"
    # The incident page is for agents and integrations; a requester's mail has no use for it.
    url = (f"{current_app.extensions['helpdesk'].settings.base_url}/incidents/{incident.id}"
           if agent is not None or channel == "webhook" else None)
    data = {"event": event, "kind": kind, "incident": incident.reference, "title": incident.title,
            "status": incident.status, "priority": incident.priority, "url": url,
            **{k: v for k, v in payload.items() if isinstance(v, str | int | float | bool) or v is None}}
    row = Delivery.create(channel=channel, recipient=address, event=event, incident=incident.id,
                          agent=agent, subject=subject[:300], text=text, data=json.dumps(data),
                          idempotency_key=key, next_attempt_at=stamp, created_at=stamp)
    return row.id


# -- delivery (worker) ------------------------------------------------------------------------------


def message_for(delivery: Delivery) -> Message:
    data = json.loads(delivery.data or "{}")
    return Message(recipient=delivery.recipient, subject=delivery.subject, text=delivery.text,
                   html=delivery.html, event=delivery.event,
                   incident_reference=data.get("incident"), idempotency_key=delivery.idempotency_key,
                   url=data.get("url"), data=data)


def backoff(attempts: int) -> dt.timedelta:
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))
    return dt.timedelta(seconds=delay * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not crypto


def claim(delivery_id: int, at: dt.datetime, lease: dt.timedelta = LEASE) -> bool:
    """Take a pending row whose time has come; exactly one worker can win it."""
    from helpdesk.leases import holder_id

    return Delivery.update(state="sending", claimed_until=at + lease, claimed_by=holder_id(),
                           attempts=Delivery.attempts + 1) \
        .where((Delivery.id == delivery_id) & (Delivery.state == "pending")
               & (Delivery.next_attempt_at <= at)).execute() == 1


def deliver(state: Any, delivery_id: int) -> str | None:
    """Claim and send one delivery; return its new state (None if another worker has it)."""
    at = now()
    if not claim(delivery_id, at, dt.timedelta(seconds=state.settings.lease_seconds)):
        return None
    delivery = Delivery.get_by_id(delivery_id)
    channel = state.registry.channel_types.get(delivery.channel)
    try:
        if channel is None:
            raise DeliveryError(f"the channel type {delivery.channel!r} is not available", permanent=True)
        channel.send(message_for(delivery))
    except DeliveryError as error:
        return _failed(delivery, str(error), error.permanent)
    except Exception as error:  # a broken transport: treat as temporary, but say what it was
        logger.exception("channel %s crashed on delivery %s", delivery.channel, delivery_id)
        return _failed(delivery, f"{type(error).__name__}: {error}", False)
    with write_transaction():
        Delivery.update(state="sent", sent_at=now(), claimed_until=None, last_error="") \
            .where((Delivery.id == delivery_id) & (Delivery.state == "sending")).execute()
        DeliveryAttempt.create(delivery=delivery_id, at=now(), ok=True)
    return "sent"


def _failed(delivery: Delivery, error: str, permanent: bool) -> str:
    dead = permanent or delivery.attempts >= MAX_ATTEMPTS
    state = "dead" if dead else "pending"
    with write_transaction():
        Delivery.update(state=state, claimed_until=None, last_error=error[:2000],
                        next_attempt_at=None if dead else now() + backoff(delivery.attempts)) \
            .where((Delivery.id == delivery.id) & (Delivery.state == "sending")).execute()
        DeliveryAttempt.create(delivery=delivery.id, at=now(), ok=False, error=error[:2000])
    return state


def sweep(state: Any, limit: int = 1000) -> int:
    """Re-queue what is due: rows whose retry time came, and rows a dead worker left claimed."""
    at = now()
    abandoned = [row.id for row in Delivery.select(Delivery.id).where(
        (Delivery.state == "sending") & (Delivery.claimed_until < at))]
    if abandoned:
        with write_transaction():
            Delivery.update(state="pending", claimed_until=None, next_attempt_at=at) \
                .where((Delivery.id.in_(abandoned)) & (Delivery.state == "sending")
                       & (Delivery.claimed_until < at)).execute()
            DeliveryAttempt.insert_many([
                {"delivery": delivery_id, "at": at, "ok": False,
                 "error": "the worker sending it stopped before finishing (lease expired); queued again"}
                for delivery_id in abandoned]).execute()
    due = [row.id for row in Delivery.select(Delivery.id).where(
        (Delivery.state == "pending") & (Delivery.next_attempt_at <= at)).limit(limit)]
    for delivery_id in due:
        state.tasks["deliver"](delivery_id)
    return len(due)


def retry(delivery_id: int) -> bool:
    """An admin's retry of a dead delivery: back to pending, due now, attempts reset."""
    return Delivery.update(state="pending", attempts=0, next_attempt_at=now(), last_error="") \
        .where((Delivery.id == delivery_id) & (Delivery.state == "dead")).execute() == 1
