"""The seed's calendar and SLA policy (Monday to Friday 09:00-17:00 Europe/London; P2: 30 min
response, 8 business hours resolution), the bundled escalation steps, and a desk that drives
the domain and the SLA check at chosen instants."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask

from helpdesk import incidents, sla
from helpdesk.escalation import engine, policies
from helpdesk.models import Delivery, EscalationRun, Incident, TimelineEntry
from helpdesk.testing import AgentClient, FrozenClock, Personas


def utc(month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute)


# A P2 logged Friday 6 March 16:30 London (UTC+0): 8 business hours end Monday 16:30;
# 75 % (6 h) is Monday 14:30, 90 % (7 h 12 min) Monday 15:42.
LOGGED, AT75, AT90, DUE = utc(3, 6, 16, 30), utc(3, 9, 14, 30), utc(3, 9, 15, 42), utc(3, 9, 16, 30)


def three_levels(name: str = "standard", **changes: Any) -> dict[str, Any]:
    """The seed's policy: the owner at 75 %, the owning team's leads at 90 %, the second line
    (Network) at the breach."""
    policy = {
        "name": name, "title": "Standard escalation", "conditions": {"priority": [1, 2]},
        "levels": [
            {"title": "Owner reviews", "trigger": "fraction", "target": "resolution", "fraction": 0.75,
             "steps": [{"step": "notify_owner"}]},
            {"title": "Team lead", "trigger": "fraction", "target": "resolution", "fraction": 0.9,
             "steps": [{"step": "notify_owner_team_leads", "message": "Please step in."}]},
            {"title": "Second line", "trigger": "breach", "target": "resolution",
             "steps": [{"step": "reassign", "team": "Network"}]},
        ],
    }
    policy.update(changes)
    return policy


@pytest.fixture
def helpdesk_bundled_plugins() -> list[str]:
    return ["business_hours", "sla_priority", "escalation_steps"]


@pytest.fixture
def helpdesk_settings() -> dict[str, Any]:
    return {"time_zone": "Europe/London"}


class Desk:
    def __init__(self, app: Flask, personas: Personas, clock: FrozenClock) -> None:
        self.app, self.ctx, self.p, self.clock = app, app.extensions["helpdesk"], personas, clock

    def call(self, when: dt.datetime | None, function: Any, *args: Any, **kwargs: Any) -> Any:
        if when is not None:
            self.clock.set(when)
        with self.app.app_context():
            return function(self.ctx, *args, **kwargs)

    def policy(self, raw: dict[str, Any], actor: Any = None) -> Any:
        return self.call(None, policies.save, raw, actor)

    def log_p2(self, when: dt.datetime = LOGGED, **values: Any) -> Incident:
        values.setdefault("title", "Orders database slow")
        values.setdefault("actor", self.p.owner)
        incident = self.call(when, incidents.log_incident, service_desk=self.p.service_desk,
                             impact="high", urgency="medium", **values)
        assert incident.priority == 2
        self.call(when, incidents.assign, incident.id, self.p.owner, self.p.database_team, self.p.assignee)
        return incident

    def check(self, when: dt.datetime) -> int:
        """One SLA pass at ``when``; returns how many escalation levels have run in all."""
        self.call(when, sla.check, when)
        return EscalationRun.select().count()

    def runs(self, incident: Incident) -> list[tuple[int, int, dt.datetime, str]]:
        query = EscalationRun.select().where(EscalationRun.incident == incident.id).order_by(EscalationRun.id)
        return [(r.level, r.version, r.at, r.state) for r in query]

    def deliveries(self, incident: Incident, agent: Any) -> list[Delivery]:
        return list(Delivery.select().where((Delivery.incident == incident.id) & (Delivery.agent == agent.id)
                                            & (Delivery.event == "incident_escalated")).order_by(Delivery.id))

    def escalation_entries(self, incident: Incident) -> list[TimelineEntry]:
        return list(TimelineEntry.select().where((TimelineEntry.incident == incident.id)
                                                 & (TimelineEntry.kind == "escalation"))
                    .order_by(TimelineEntry.id))

    def fresh(self, incident: Incident) -> Incident:
        return Incident.get_by_id(incident.id)

    def login(self, agent: Any) -> AgentClient:
        return AgentClient(self.app, agent)

    def login_page(self, incident: Incident, agent: Any = None) -> str:
        """The incident page as ``agent`` (the owner by default) sees it."""
        client = self.login(agent or self.p.owner)
        return client.get(f"/incidents/{incident.id}").get_data(as_text=True)

    def escalate(self, when: dt.datetime, incident: Incident, actor: Any, reason: str) -> Any:
        return self.call(when, engine.escalate, incident.id, actor, reason)


@pytest.fixture
def desk(helpdesk_app: Flask, personas: Personas, frozen_clock: FrozenClock) -> Desk:
    return Desk(helpdesk_app, personas, frozen_clock)
