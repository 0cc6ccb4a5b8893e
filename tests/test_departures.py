"""An agent who leaves (deactivated, or taken out of a team) hands back what they answered for.

Before, their incidents stayed owned by or assigned to someone who could no longer log in or
act for that team: in nobody's Unowned or Unassigned queue, their reviews and warnings going to
an account nobody reads.
"""

from __future__ import annotations

import pytest

from helpdesk import incidents
from helpdesk.models import Incident, SlaClock, TimelineEntry


@pytest.fixture
def helpdesk_bundled_plugins() -> list[str]:
    return ["sla_priority", "business_hours"]  # SLA clocks as installed


def _form(agent, *, active: bool, teams) -> dict:
    form = {"display_name": agent.display_name, "email": agent.email, "role": agent.role,
            "teams": [str(team.id) for team in teams]}
    return {**form, "active": "on"} if active else form


def _pairs(incident_id: int) -> tuple:
    row = Incident.get_by_id(incident_id)
    return (row.owner_team_id, row.owner_agent_id), (row.assigned_team_id, row.assigned_agent_id)


def test_a_deactivated_agent_s_incidents_go_back_to_their_teams_queues(app, login, personas, log_incident):
    p = personas
    with app.app_context():
        owned = log_incident(title="VPN down for the Lyon office", actor=p.owner)
        worked = log_incident(title="Orders database slow", actor=p.colleague,
                              assigned_team=p.service_desk, assigned_agent=p.owner)
        resolved = log_incident(title="Printer jam", actor=p.owner)
        incidents.change_status(app.extensions["helpdesk"], resolved.id, p.owner, "resolved",
                                note="Cleared the tray")
        closed = log_incident(title="Old request", actor=p.owner)
        incidents.change_status(app.extensions["helpdesk"], closed.id, p.owner, "cancelled",
                                note="Duplicate")
        others = log_incident(title="Mail queue stuck", actor=p.colleague)
        response_due = SlaClock.get((SlaClock.incident == owned.id) & (SlaClock.target == "response"))
        assert response_due.met_at is None

    admin = login(p.admin)
    # The page says what saving would give back.
    assert "John Carter owns 2 open or resolved incidents and works on 1 active one." in admin.get(
        f"/admin/agents/{p.owner.id}").get_data(as_text=True)
    response = admin.post(f"/admin/agents/{p.owner.id}", _form(p.owner, active=False, teams=[p.service_desk]))
    assert response.status_code == 303
    page = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert "3 incidents they can no longer answer for went back" in page
    assert f"INC-{owned.id}" in page and f"INC-{closed.id}" not in page

    desk = p.service_desk.id
    with app.app_context():
        assert _pairs(owned.id)[0] == (desk, None)  # owned: the team's Unowned queue
        assert _pairs(worked.id) == ((desk, p.colleague.id), (desk, None))  # worked on: Unassigned
        assert _pairs(resolved.id)[0] == (desk, None)  # the review of a resolved one goes back too
        assert _pairs(closed.id)[0] == (desk, p.owner.id)  # history stays as it was
        assert _pairs(others.id)[0] == (desk, p.colleague.id)
        entry = (TimelineEntry.select().where((TimelineEntry.incident == owned.id)
                                              & (TimelineEntry.field == "owner"))
                 .order_by(TimelineEntry.id.desc()).get())
        assert entry.actor_id is None  # the system's doing, not an agent acting on it
        assert "John Carter was deactivated (by Admin)" in entry.body
        # ... so it meets no SLA target
        clock = SlaClock.get_by_id(response_due.id)
        assert clock.met_at is None

    # The colleague sees them where the service desk looks for work nobody has.
    sara = login(p.colleague)
    unowned = sara.get("/queues/unowned").get_data(as_text=True)
    assert "VPN down for the Lyon office" in unowned and "Mail queue stuck" not in unowned
    assert "Orders database slow" in sara.get("/queues/unassigned").get_data(as_text=True)


def test_an_agent_taken_out_of_a_team_gives_back_only_that_team_s_incidents(app, login, personas,
                                                                            log_incident):
    p = personas
    with app.app_context():
        # Priya works for Database and, from today, Network too.
        from helpdesk.models import Membership

        Membership.create(team=p.network, agent=p.assignee)
        database = log_incident(title="Replica lag", actor=p.owner, assigned_team=p.database_team,
                                assigned_agent=p.assignee)
        network = log_incident(title="Switch flapping", actor=p.owner, assigned_team=p.network,
                               assigned_agent=p.assignee)
        theirs = log_incident(title="Backups late", actor=p.assignee)  # owned by Database / Priya

    admin = login(p.admin)
    # Admin → Teams → Database: Priya is no longer a member (Mateo stays).
    form = {"name": "Database", "description": "", "active": "on", "escalation_mode": "open",
            "members": [str(p.db_lead.id)]}
    assert admin.post(f"/admin/teams/{p.database_team.id}", form).status_code == 303
    with app.app_context():
        assert _pairs(database.id)[1] == (p.database_team.id, None)
        entry = TimelineEntry.get((TimelineEntry.incident == database.id)
                                  & (TimelineEntry.field == "assignee"))
        assert entry.body == ("Priya Raman left Database (by Admin): the work back to Database, "
                              "for someone there to take.")
        assert _pairs(network.id)[1] == (p.network.id, p.assignee.id)  # still her team
        assert _pairs(theirs.id)[0] == (p.database_team.id, None)

    # Saving an agent who stays in their teams and active hands back nothing.
    response = admin.post(f"/admin/agents/{p.assignee.id}", _form(p.assignee, active=True, teams=[p.network]))
    assert response.status_code == 303
    assert "went back" not in admin.get(response.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        assert _pairs(network.id)[1] == (p.network.id, p.assignee.id)


def test_saving_an_agent_deactivated_earlier_hands_back_what_they_still_hold(app, login, personas,
                                                                             log_incident):
    # Deactivated by an older version (which left their incidents with them): saving their page
    # again gives the incidents back.
    p = personas
    with app.app_context():
        held = log_incident(title="Laptop stolen", actor=p.colleague)
        from helpdesk.models import Agent

        Agent.update(active=False).where(Agent.id == p.colleague.id).execute()
    admin = login(p.admin)
    response = admin.post(f"/admin/agents/{p.colleague.id}",
                          _form(p.colleague, active=False, teams=[p.service_desk]))
    assert response.status_code == 303
    assert f"INC-{held.id}" in admin.get(response.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        assert _pairs(held.id)[0] == (p.service_desk.id, None)
