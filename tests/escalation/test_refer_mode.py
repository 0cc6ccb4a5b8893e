"""Functional escalation modes as the people involved meet them: a specialist team in "refer
and request" mode cannot move an incident away itself (page, bulk, API, macro all refused with
the rule named), hands it back with a request the owner accepts or rejects, each step one
timeline entry and the other side told; open teams and the system's own escalation are not
bound, and a team lead may override."""

from __future__ import annotations

import html
import json
import re

import pytest

from helpdesk import incidents, macros
from helpdesk.api import tokens
from helpdesk.errors import PermissionDenied
from helpdesk.incidents import handback
from helpdesk.models import Delivery, HandBack, Incident, Team, TimelineEntry

from .conftest import DUE, three_levels, utc

LATER = utc(3, 9, 10)


def refer(team: Team) -> None:
    Team.update(escalation_mode="refer").where(Team.id == team.id).execute()


def entries(incident: Incident) -> list[TimelineEntry]:
    query = TimelineEntry.select().where(TimelineEntry.incident == incident.id)
    return list(query.order_by(TimelineEntry.id))


def told(incident: Incident, agent, kind: str) -> list[Delivery]:
    rows = Delivery.select().where((Delivery.incident == incident.id) & (Delivery.agent == agent.id))
    return [d for d in rows if json.loads(d.data).get("kind") == kind]


@pytest.fixture
def case(desk):
    """A P2 owned by John (service desk), assigned to Database / Priya, Database in refer mode."""
    incident = desk.log_p2()
    refer(desk.p.database_team)
    return incident


def test_a_specialist_cannot_move_the_incident_to_another_team_and_nothing_is_written(desk, case):
    p = desk.p
    before = len(entries(case))
    with pytest.raises(PermissionDenied, match="Database works in refer-and-request mode.*Hand it back"):
        desk.call(LATER, incidents.assign, case.id, p.assignee, p.network, None)
    with pytest.raises(PermissionDenied, match="refer-and-request"):  # unassigning the team is moving it too
        desk.call(LATER, incidents.assign, case.id, p.assignee, None, None)
    assert len(entries(case)) == before
    assert desk.fresh(case).assigned_team_id == p.database_team.id
    # within the team it is theirs to share
    desk.call(LATER, incidents.assign, case.id, p.assignee, p.database_team, p.db_lead)
    assert desk.fresh(case).assigned_agent_id == p.db_lead.id


@pytest.mark.parametrize("how", ["take ownership", "transfer ownership"])
def test_a_specialist_cannot_own_an_unowned_incident_to_get_out_of_the_rule(desk, case, how):
    """Nobody owns it (as mail and the portal log them): taking or transferring the ownership put
    the specialist on the owner's side, where the rule no longer bound them, and the next
    reassignment sent the incident anywhere."""
    p = desk.p
    Incident.update(owner_agent=None).where(Incident.id == case.id).execute()
    before = len(entries(case))
    with pytest.raises(PermissionDenied, match="refer-and-request.*take or transfer the ownership"):
        if how == "take ownership":
            desk.call(LATER, incidents.take_ownership, case.id, p.assignee)
        else:
            desk.call(LATER, incidents.transfer_ownership, case.id, p.assignee, p.network, None, "")
    with pytest.raises(PermissionDenied, match="refer-and-request"):
        desk.call(LATER, incidents.assign, case.id, p.assignee, p.network, None)
    fresh = desk.fresh(case)
    assert (fresh.owner_team_id, fresh.owner_agent_id, fresh.assigned_team_id) == (
        p.service_desk.id, None, p.database_team.id)
    assert len(entries(case)) == before
    priya = desk.login(p.assignee)  # the page offers neither; a forged Take is refused
    shown = html.unescape(priya.get(f"/incidents/{case.id}").get_data(as_text=True))
    assert "Take ownership" not in shown and "Choose an owner" not in shown
    refused = priya.post(f"/incidents/{case.id}/take", {"version": fresh.version})
    assert refused.status_code == 403 and "refer-and-request" in html.unescape(refused.get_data(as_text=True))
    assert desk.fresh(case).owner_agent_id is None
    desk.call(LATER, incidents.take_ownership, case.id, p.db_lead)  # a lead may, as they may reassign


def test_open_mode_and_the_owners_side_are_not_bound(desk):
    p = desk.p
    incident = desk.log_p2()  # Database is open: its agents reassign freely
    desk.call(LATER, incidents.assign, incident.id, p.assignee, p.network, None)
    assert desk.fresh(incident).assigned_team_id == p.network.id
    refer(p.network)
    # John owns it (service desk): refer mode binds only the specialist team's own agents
    desk.call(LATER, incidents.assign, incident.id, p.owner, p.database_team, p.assignee)
    assert desk.fresh(incident).assigned_team_id == p.database_team.id


def test_a_team_lead_may_override_and_the_entry_says_so(desk, case):
    p = desk.p
    desk.call(LATER, handback.hand_back, case.id, p.assignee, "Not ours", None)
    desk.call(LATER, incidents.assign, case.id, p.db_lead, p.network, None)
    entry = entries(case)[-1]
    assert entry.field == "assignee" and "overriding Database's refer-and-request mode" in entry.body
    assert "The pending hand-back request lapsed." in entry.body
    assert HandBack.get().state == "lapsed" and handback.pending(case.id) is None


def test_hand_back_then_the_owner_accepts_the_suggested_team(desk, case):
    p = desk.p
    before = len(entries(case))
    desk.call(LATER, handback.hand_back, case.id, p.assignee,
              "Packet loss between app and db; needs Network.", p.network)
    written = entries(case)[before:]
    assert len(written) == 1 and written[0].field == "hand_back" and written[0].actor_id == p.assignee.id
    assert "needs Network" in written[0].body and "Suggested team: Network." in written[0].body
    [note] = told(case, p.owner, "hand_back")
    assert "Handed back by Database" in note.subject and "needs Network" in note.text
    # the page shows it prominently, Accept and Reject for the owner only
    page = desk.login_page(case)
    assert "Hand-back request awaiting the owner" in page and "Accept: assign to Network" in page
    assert "Accept: assign to Network" not in desk.login_page(case, p.assignee)
    with pytest.raises(PermissionDenied, match="Only the owner"):
        desk.call(LATER, handback.accept, case.id, p.assignee)
    with pytest.raises(Exception, match="already has a hand-back request"):
        desk.call(LATER, handback.hand_back, case.id, p.assignee, "Again", None)
    desk.call(LATER, handback.accept, case.id, p.owner)
    after = desk.fresh(case)
    assert (after.assigned_team_id, after.assigned_agent_id) == (p.network.id, None)
    accepted = entries(case)[before + 1:]
    assert len(accepted) == 1 and accepted[0].field == "assignee"
    assert "Accepted the hand-back from Database (Priya Raman)" in accepted[0].body
    [decided] = told(case, p.assignee, "hand_back_decided")
    assert "accepted" in decided.subject and "Network" in decided.text
    assert HandBack.get().state == "accepted" and HandBack.get().decided_by_id == p.owner.id


def test_the_owner_rejects_with_a_reason_and_it_stays(desk, case):
    p = desk.p
    desk.call(LATER, handback.hand_back, case.id, p.assignee, "Not a database problem", None)
    with pytest.raises(Exception, match="Give a reason"):
        desk.call(LATER, handback.reject, case.id, p.owner, "  ")
    before = len(entries(case))
    desk.call(LATER, handback.reject, case.id, p.owner, "The slow queries are yours: see the plan.")
    after = desk.fresh(case)
    assert (after.assigned_team_id, after.assigned_agent_id) == (p.database_team.id, p.assignee.id)
    [entry] = entries(case)[before:]
    assert (entry.field, entry.old_value, entry.new_value) == ("hand_back", "requested", "rejected")
    assert "see the plan" in entry.body
    [decided] = told(case, p.assignee, "hand_back_decided")
    assert "rejected" in decided.subject and "see the plan" in decided.text
    assert "Hand-back request awaiting the owner" not in desk.login_page(case)
    # the specialist may ask again later
    desk.call(LATER, handback.hand_back, case.id, p.assignee, "Still not ours", None)


def test_with_nobody_owning_it_a_member_of_the_owning_team_decides(desk, case):
    p = desk.p
    Incident.update(owner_agent=None).where(Incident.id == case.id).execute()
    desk.call(LATER, handback.hand_back, case.id, p.assignee, "Back to you", None)
    assert told(case, p.lead, "hand_back")  # the owning team's leads hear of it
    with pytest.raises(PermissionDenied):
        desk.call(LATER, handback.accept, case.id, p.other)  # Network: not the owning side
    desk.call(LATER, handback.accept, case.id, p.colleague)
    assert desk.fresh(case).assigned_team_id == p.service_desk.id  # back to the owning team's queue


def test_the_pages_hand_back_and_accept(desk, case):
    p = desk.p
    priya = desk.login(p.assignee)
    page = html.unescape(priya.get(f"/incidents/{case.id}").get_data(as_text=True))
    assert "Hand back to Service Desk" in page
    refused = priya.post(f"/incidents/{case.id}/assignee", {
        "assigned_team": p.network.id, "assigned_agent": "", "version": desk.fresh(case).version})
    assert refused.status_code == 403 and "refer-and-request" in refused.get_data(as_text=True)
    done = priya.post(f"/incidents/{case.id}/hand-back", {"request": "Needs <b>Network</b>",
                                                          "suggested_team": p.network.id})
    assert done.status_code == 303
    john = desk.login(p.owner)
    page = john.get(f"/incidents/{case.id}").get_data(as_text=True)
    assert "<b>Network</b>" not in page  # the request is user text: rendered safely
    assert john.post(f"/incidents/{case.id}/hand-back/accept", {"to": "owner"}).status_code == 303
    assert desk.fresh(case).assigned_team_id == p.service_desk.id
    assert priya.post(f"/incidents/{case.id}/hand-back/accept", {}).status_code == 404  # nothing pending


def test_bulk_queue_changes_obey_the_rule(desk, case):
    p = desk.p
    priya = desk.login(p.assignee)
    response = priya.post("/queue-bulk", data={
        "queue": "open", "back": "/queues/open", "row": [f"{case.id}:{desk.fresh(case).version}"],
        "action": "assign", "assigned_team": p.network.id, "assigned_agent": ""})
    assert response.status_code == 303  # to the queue, where the result is shown
    page = html.unescape(priya.get(response.headers["Location"]).get_data(as_text=True))
    assert "0 applied, 1 not applied." in page and "refer-and-request" in page
    assert desk.fresh(case).assigned_team_id == p.database_team.id


def test_the_api_obeys_the_rule_and_shows_the_mode(desk, case):
    p = desk.p
    with desk.app.app_context():
        secret = tokens.create(p.assignee, "script", ["read", "write"]).secret
    http = desk.app.test_client()
    headers = {"Authorization": f"Bearer {secret}", "If-Match": f'"{desk.fresh(case).version}"'}
    response = http.post(f"/api/v1/incidents/{case.id}/assignee", json={"team_id": p.network.id},
                         headers=headers)
    assert response.status_code == 403 and "refer-and-request" in response.get_json()["detail"]
    assert desk.fresh(case).assigned_team_id == p.database_team.id
    teams = {t["name"]: t for t in http.get("/api/v1/teams", headers=headers).get_json()["items"]}
    assert teams["Database"]["escalation_mode"] == "refer" and teams["Network"]["escalation_mode"] == "open"


def test_a_macro_that_assigns_elsewhere_is_refused_whole(desk, case):
    p = desk.p
    with desk.app.app_context():
        macro = macros.save(desk.ctx, p.assignee, None, name="To network", body="Passing on", public=False,
                            team=None, actions={"assign": {"team": "Network"}})
        before = len(entries(case))
        with pytest.raises(PermissionDenied, match="refer-and-request"):
            macros.apply(desk.ctx, case.id, p.assignee, macro.id, None, public=False, expected_version=None)
    assert len(entries(case)) == before


def test_the_systems_reassign_step_is_not_bound(desk, case):
    desk.policy(three_levels())
    desk.check(DUE)
    assert desk.fresh(case).assigned_team_id == desk.p.network.id


def test_admins_set_the_mode_on_the_team_page_and_it_is_audited(desk):
    p = desk.p
    admin = desk.login(p.admin)
    team = p.network
    form = {"name": team.name, "description": "", "active": "on", "escalation_mode": "refer",
            "members": [str(p.other.id)]}
    assert admin.post(f"/admin/teams/{team.id}", form).status_code == 303
    assert Team.get_by_id(team.id).escalation_mode == "refer"
    page = html.unescape(admin.get(f"/admin/teams/{team.id}").get_data(as_text=True))
    assert re.search(r"escalation_mode.*open.*refer", page.replace("\n", " "))
    bad = admin.post(f"/admin/teams/{team.id}", {**form, "escalation_mode": "closed"})
    assert bad.status_code == 422 and Team.get_by_id(team.id).escalation_mode == "refer"
    assert desk.login(p.db_lead).post(f"/admin/teams/{team.id}", {**form, "escalation_mode": "open"}) \
        .status_code in {403, 404}
    assert Team.get_by_id(team.id).escalation_mode == "refer"
