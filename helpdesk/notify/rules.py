"""Who is told: the default rules, from an event to the people (and their kind of news).

Every rule goes through :func:`recipients`, which drops whoever may no longer
receive incident content (deactivated agents), rules an admin switched off,
the actor themself, and repeats. A new rule (watchers, escalation) is added
here and inherits those checks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from helpdesk.models import Agent, Contact, Incident, Membership, NotificationRule

# Kinds of notification an agent can switch per channel on the profile page.
KINDS = {
    "assigned": "Assigned to me",
    "team_new": "New incident for my team",
    "reassigned": "An incident I own was reassigned",
    "resolved": "An incident I own was resolved",
    "sla_warning": "SLA warning",
    "sla_breached": "SLA breached",
    "escalation": "An incident escalated to me",
    "watching": "An incident I watch changed",
    "customer_reply": "The customer wrote on an incident I own or work on",
    "weekly_summary": "Weekly summary of my team (team leads, Mondays)",
    "hand_back": "A specialist team handed an incident I own back with a request",
    "hand_back_decided": "The owner decided my hand-back request",
}

# The default rules an admin can switch off: audience -> kinds it hears of.
RULES = {
    "owner": ("reassigned", "resolved", "sla_warning", "sla_breached", "customer_reply", "hand_back"),
    "assignee": ("assigned", "sla_warning", "sla_breached", "customer_reply", "hand_back_decided"),
    "team": ("team_new",),
    "requester": ("requester_ack", "requester_reply", "requester_resolved"),
    "watcher": ("watching",),
}
# What watchers hear of (escalation levels are told to them by the escalation engine).
WATCHED = frozenset({"incident_assigned", "incident_owner_changed", "incident_status_changed",
                     "incident_sla_warning", "incident_sla_breached", "incident_commented"})
RULE_LABELS = {
    **KINDS,
    "requester_ack": "Acknowledgement of a new incident",
    "requester_reply": "Public replies",
    "requester_resolved": "Resolution",
}


def expires_at(kind: str, payload: dict[str, Any]) -> dt.datetime | None:
    """When a message of ``kind`` stops being worth sending (``None``: never).

    An SLA warning says "this will breach at …": once that moment has passed it
    is wrong, so it is not sent late (the breach has its own message).
    """
    if kind == "sla_warning" and payload.get("due_at"):
        try:
            return dt.datetime.fromisoformat(str(payload["due_at"])).replace(tzinfo=None)
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class Recipient:
    kind: str  # what the notification is about, for preferences and templates
    agent: Agent | None = None
    contact: Contact | None = None
    audience: str = "owner"  # which rule found them


def may_receive(recipient: Recipient) -> bool:
    """Whether this person may still receive incident content (deactivated agents may not)."""
    if recipient.agent is not None:
        return bool(recipient.agent.active)
    return recipient.contact is not None


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


def _watchers(incident_id: int) -> list[Agent]:
    from helpdesk.models import Watcher

    return list(Agent.select().join(Watcher, on=(Watcher.agent == Agent.id)).where(
        Watcher.incident == incident_id).order_by(Agent.id))


def _requester(incident: Incident, kind: str) -> list[Recipient]:
    return [Recipient(kind, contact=incident.requester, audience="requester")] \
        if incident.requester_id else []


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
        found += _requester(incident, "requester_resolved")
    elif event == "incident_created" and payload.get("acknowledge", True):
        found += _requester(incident, "requester_ack")
    elif event == "incident_commented" and payload.get("customer"):
        # The customer wrote (mail or portal): the owner answers for the conversation, the
        # assignee is doing the work; the customer is not sent their own words back.
        found += [Recipient("customer_reply", agent) for agent in _owner_side(incident)]
        if incident.assigned_agent_id is not None:
            found.append(Recipient("customer_reply", incident.assigned_agent, audience="assignee"))
    elif event == "incident_hand_back":
        # Refer and request: the owner side decides (helpdesk.incidents.handback).
        found += [Recipient("hand_back", agent) for agent in _owner_side(incident)]
    elif event == "incident_hand_back_decided" and payload.get("requested_by"):
        asked = Agent.get_or_none(Agent.id == payload["requested_by"])
        if asked is not None:
            found.append(Recipient("hand_back_decided", asked, audience="assignee"))
    elif event == "incident_commented" and payload.get("public"):
        found += _requester(incident, "requester_reply")
    if event in WATCHED:
        found += [Recipient("watching", agent, audience="watcher") for agent in _watchers(incident.id)]
    # Rules an admin switched off; an agent is not told of what they did; each person and kind once.
    switched_off = {(r.audience, r.kind) for r in NotificationRule.select().where(
        NotificationRule.enabled == False)} if found else set()  # noqa: E712 - peewee expression
    unique, seen = [], set()
    for recipient in found:
        if (recipient.audience, recipient.kind) in switched_off or not may_receive(recipient):
            continue
        person = ("agent", recipient.agent.id) if recipient.agent else ("contact", recipient.contact.id)
        key = (person, recipient.kind)
        if (recipient.agent is not None and recipient.agent.id == actor_id) or key in seen:
            continue
        seen.add(key)
        unique.append(recipient)
    return unique
