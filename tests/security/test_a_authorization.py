"""A. Authorization and mass assignment, as far as the agent console goes today: ids that
do not exist (A5's class: by id, nothing is reachable that the route does not check), an
agent raising their own role (A10), forged fields on the new-incident and comment forms
(A11, A12). Undeclared plugin routes (A9) are in test_route_matrix.py; the customer
portal's rows (A1-A3, A6, A13) wait for it (PENDING.md).
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from helpdesk.models import Agent, Delivery, Incident, Notice, TimelineEntry
from helpdesk.testing import PASSWORD, AgentClient, FrozenClock, Personas

ACTIONS = ("assignee", "comments", "details", "links", "owner", "priority", "status", "take")


def state() -> tuple[Any, ...]:
    return (list(Incident.select().order_by(Incident.id).tuples()), TimelineEntry.select().count(),
            Delivery.select().count(), Notice.select().count(),
            list(Agent.select(Agent.id, Agent.role, Agent.active, Agent.password_hash, Agent.email)
                 .order_by(Agent.id).tuples()))


@pytest.mark.parametrize("incident_id", ["999999", "9" * 19, "0", "-1", "1e3", "٣", "1%00"])
def test_a5_an_incident_that_does_not_exist_is_404_on_every_route(
        app: Flask, personas: Personas, incident_factory: Any, incident_id: str) -> None:
    incident_factory()
    john = AgentClient(app, personas.owner)
    before = state()
    assert john.get(f"/incidents/{incident_id}").status_code == 404
    for action in ACTIONS:
        response = john.post(f"/incidents/{incident_id}/{action}", {
            "version": "1", "body": "hello", "status": "in_progress", "assigned_team": "1",
            "owner_team": "1", "reason": "x", "priority": "1", "title": "x", "kind": "parent",
            "other": "INC-1"})
        assert response.status_code == 404, action
    assert state() == before


@pytest.mark.parametrize("field", [{"role": "admin"}, {"is_admin": "1"}, {"active": "on", "role": "lead"},
                                   {"groups[]": "*"}, {"teams": "1"}, {"password": "owned-by-me-now"},
                                   {"password_hash": "x"}, {"username": "root"}, {"email": "evil@x.example"}])
def test_a10_an_agent_cannot_raise_their_role_through_their_profile(
        app: Flask, personas: Personas, field: dict[str, str]) -> None:
    john = AgentClient(app, personas.owner)
    before = Agent.get_by_id(personas.owner.id)
    response = john.post("/profile", {"time_zone": "", **field})
    assert response.status_code in {303, 403, 422}
    after = Agent.get_by_id(personas.owner.id)
    assert (after.role, after.username, after.email, after.password_hash, after.active) == (
        before.role, before.username, before.email, before.password_hash, before.active)
    assert john.get("/admin/agents").status_code == 403


def test_a10_an_agent_cannot_edit_anyone_through_the_admin_form(
        app: Flask, personas: Personas, caplog: pytest.LogCaptureFixture) -> None:
    john = AgentClient(app, personas.owner)
    before = state()
    with caplog.at_level("WARNING", logger="helpdesk.security"):
        for target in (personas.owner, personas.admin):
            response = john.post(f"/admin/agents/{target.id}", {
                "display_name": "x", "role": "admin", "active": "on", "password": "owned-by-me-now"})
            assert response.status_code == 403
        assert john.post("/admin/agents", {"username": "mole", "display_name": "Mole",
                                           "password": "owned-by-me-now", "role": "admin"}).status_code == 403
    assert state() == before
    assert sum("access refused user=john" in r.getMessage() for r in caplog.records) == 3
    mole = AgentClient(app, None).post("/login", {"username": "mole", "password": PASSWORD})
    assert mole.status_code == 401


def test_a11_forged_fields_on_the_new_incident_form_are_ignored(
        app: Flask, personas: Personas, frozen_clock: FrozenClock) -> None:
    john = AgentClient(app, personas.owner)
    response = john.post("/incidents/new", {
        "title": "VPN down", "type": "incident", "impact": "medium", "urgency": "medium",
        "keep_ownership": "y",
        # none of these belong to the form
        "created_at": "2001-01-01 00:00", "created_by": personas.admin.id, "author_id": personas.admin.id,
        "owner_agent": personas.admin.id, "owner_team": personas.network.id, "source": "monitoring",
        "version": "99", "id": "7", "status": "resolved", "priority": "1", "sla_policy_id": "1",
        "internal": "true", "resolution_note": "done"})
    assert response.status_code == 303
    (incident,) = Incident.select()
    assert (incident.created_by_id, incident.owner_agent_id, incident.owner_team_id) == (
        personas.owner.id, personas.owner.id, personas.service_desk.id)
    assert (incident.source, incident.status, incident.version, incident.resolution_note) == (
        "agent", "new", 1, None)
    assert incident.created_at == frozen_clock.now
    assert incident.priority == 3, "derived from impact x urgency, not forged"
    (created,) = TimelineEntry.select().where(TimelineEntry.incident == incident.id)
    assert created.actor_id == personas.owner.id


@pytest.mark.parametrize("forged", [{"visibility": "internal"}, {"visibility": "public ", "public": "1"},
                                    {"author_id": "1", "actor": "1"}, {"from": "admin@corp.example"},
                                    {"created_at": "2001-01-01"}])
def test_a12_a_comment_is_stored_as_the_caller_wrote_it(
        app: Flask, personas: Personas, incident_factory: Any, forged: dict[str, str]) -> None:
    incident = incident_factory()
    before = TimelineEntry.select().where(TimelineEntry.incident == incident.id).count()
    response = AgentClient(app, personas.colleague).post(f"/incidents/{incident.id}/comments",
                                                         {"body": "On it.", **forged})
    assert response.status_code == 303
    entries = list(TimelineEntry.select().where(TimelineEntry.incident == incident.id)
                   .order_by(TimelineEntry.id))
    assert len(entries) == before + 1
    entry = entries[-1]
    assert (entry.actor_id, entry.kind, entry.body) == (personas.colleague.id, "note", "On it.")
    assert entry.at.year > 2001
