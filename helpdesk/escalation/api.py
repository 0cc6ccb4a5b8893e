"""What escalation steps need beyond the domain functions, on the public face (plugin API 1.1):
telling agents on their own channels, a team's leads, watchers, and major incidents."""

from __future__ import annotations

from collections.abc import Iterable

import peewee

from helpdesk.clock import now
from helpdesk.context import Context
from helpdesk.db import Statement, write_transaction
from helpdesk.models import Agent, Incident, Membership, NotificationPreference, TimelineEntry, Watcher


def team_leads(team_id: int | None) -> list[Agent]:
    """The active leads (and admins) of a team, by name."""
    if team_id is None:
        return []
    return list(Agent.select().join(Membership).where(
        (Membership.team == team_id) & (Agent.role.in_(["lead", "admin"]))
        & (Agent.active == True)).order_by(Agent.display_name))  # noqa: E712 - peewee expression


def watchers(incident_id: int) -> list[Agent]:
    """The incident's watchers who are still active (a deactivated agent is told nothing)."""
    return [agent for (agent,) in _WATCHERS.rows(incident_id)]


_WATCHERS = Statement(lambda incident_id: Agent.select().join(Watcher, on=(Watcher.agent == Agent.id)).where(
    (Watcher.incident == incident_id) & (Agent.active == True)).order_by(Agent.id),  # noqa: E712
    models=(Agent,))


def add_watchers(ctx: Context, incident_id: int, agents: Iterable[Agent],
                 actor: Agent | None = None) -> list[Agent]:
    """Make active ``agents`` watch the incident (recorded on its timeline); returns those added."""
    added = []
    with write_transaction():
        for agent in agents:
            if not agent.active:
                continue
            try:
                with write_transaction():
                    Watcher.create(incident=incident_id, agent=agent, added_at=now())
            except peewee.IntegrityError:
                continue  # watching already
            added.append(agent)
        if added:
            TimelineEntry.create(incident=incident_id, actor=actor, kind="change", at=now(), field="watchers",
                                 new_value=", ".join(str(a) for a in added),
                                 body="Watching: " + ", ".join(str(a) for a in added))
    return added


def notify_agents(ctx: Context, incident: Incident, agents: Iterable[Agent], subject: str, text: str, *,
                  key: str, kind: str = "escalation") -> list[int]:
    """Tell each active agent on every channel they are reachable on (their profile choices and
    per-kind preferences apply); returns the outbox rows. ``key`` makes it idempotent: the same
    key again queues nothing new."""
    from helpdesk.notify import addresses
    from helpdesk.notify.outbox import enqueue

    people = [agent for agent in agents if agent.active]
    if not people:
        return []
    settings = addresses.settings_for([a.id for a in people])
    switched_off = {(p.agent_id, p.channel) for p in NotificationPreference.select().where(
        (NotificationPreference.agent.in_([a.id for a in people])) & (NotificationPreference.kind == kind)
        & (NotificationPreference.enabled == False))}  # noqa: E712
    rows = []
    for agent in people:
        for channel in addresses.agent_channel_types(ctx):
            if (agent.id, channel.name) in switched_off:
                continue
            address = addresses.address(ctx, channel, agent, settings)
            if address:
                rows.append(enqueue(ctx, channel.name, address, subject, text, incident=incident, agent=agent,
                                    event="incident_escalated", kind=kind,
                                    idempotency_key=f"{key}:{channel.name}:{agent.id}"))
    return rows


def declare_major(ctx: Context, incident_id: int, reason: str, actor: Agent | None = None) -> bool:
    """Flag the incident as a major incident (a banner on its page; recorded on the timeline);
    ``False`` if it was one already."""
    with write_transaction():
        changed = Incident.update(major=True).where((Incident.id == incident_id)
                                                    & (Incident.major == False)).execute()  # noqa: E712
        if changed:
            TimelineEntry.create(incident=incident_id, actor=actor, kind="change", at=now(), field="major",
                                 old_value="no", new_value="yes", body=reason or "Declared a major incident")
    return bool(changed)
