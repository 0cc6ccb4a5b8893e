"""A team's on-call agent as the desk meets it: its lead (or an admin) sets it on the team's
page, and a policy's reassign step with ``agent = "on_call"`` gives the breached incident to
that agent — or, with nobody usable on call, to the team alone, saying why on the timeline."""

from __future__ import annotations

import datetime as dt

import pytest

from helpdesk import people
from helpdesk.escalation.policies import PolicyError
from helpdesk.models import ConfigChange, TeamOnCall

from .conftest import DUE, three_levels, utc


def on_call_policy() -> dict:
    policy = three_levels()
    policy["levels"][2]["steps"] = [{"step": "reassign", "team": "Network", "agent": "on_call"}]
    return policy


def steps_said(desk, incident) -> str:
    return [e.body for e in desk.escalation_entries(incident) if e.field == "steps"][-1]


def test_the_breach_level_assigns_the_target_teams_on_call_agent(desk):
    p = desk.p
    people.set_on_call(p.network, p.other, actor=p.admin)
    desk.policy(on_call_policy())
    incident = desk.log_p2()
    desk.check(DUE)
    after = desk.fresh(incident)
    assert (after.assigned_team_id, after.assigned_agent_id) == (p.network.id, p.other.id)
    assert "reassigned to Network / Kofi Mensah (on call)" in steps_said(desk, incident)
    assert "Kofi" in desk.login_page(incident)


@pytest.mark.parametrize("situation", ["nobody", "deactivated", "ended"])
def test_with_nobody_usable_on_call_the_team_alone_gets_it_and_the_timeline_says_why(desk, situation):
    p = desk.p
    if situation != "nobody":
        people.set_on_call(p.network, p.other, actor=p.admin,
                           until=utc(3, 9, 12) if situation == "ended" else None)
    if situation == "deactivated":
        people.update_agent(p.other, display_name=p.other.display_name, email=p.other.email, role="agent",
                            active=False, teams=[p.network], actor=p.admin, ctx=desk.ctx)
    desk.policy(on_call_policy())
    incident = desk.log_p2()
    desk.check(DUE)
    after = desk.fresh(incident)
    assert (after.assigned_team_id, after.assigned_agent_id) == (p.network.id, None)
    said = steps_said(desk, incident)
    expected = {"nobody": "Network has no on-call agent", "deactivated": "Kofi Mensah is deactivated",
                "ended": "Kofi Mensah's on-call for Network ended at 2026-03-09 12:00 UTC"}[situation]
    assert expected in said and "so assigned to the team only" in said
    assignee_entry = [e for e in after.timeline if e.field == "assignee"][-1]
    assert expected in assignee_entry.body


def test_a_bad_agent_parameter_is_refused_when_the_policy_is_saved(desk):
    policy = on_call_policy()
    policy["levels"][2]["steps"][0]["agent"] = "kofi"
    with pytest.raises(PolicyError, match=r"levels\[3\]\.steps\[1\]\.agent: choose one of on_call"):
        desk.policy(policy)


def test_a_team_lead_sets_their_teams_on_call_on_its_page_and_it_is_audited(desk):
    p = desk.p
    mateo = desk.login(p.db_lead)
    page = mateo.get(f"/teams/{p.database_team.id}/on-call")
    assert page.status_code == 200 and "Database has no on-call agent" in page.get_data(as_text=True)
    saved = mateo.post(f"/teams/{p.database_team.id}/on-call", {"on_call": p.assignee.id,
                                                                 "until": "2026-12-01T18:00"})
    assert saved.status_code == 303
    row = TeamOnCall.get(TeamOnCall.team == p.database_team.id)
    assert row.agent_id == p.assignee.id and row.until == dt.datetime(2026, 12, 1, 18, 0)  # London = UTC then
    audit = ConfigChange.get(ConfigChange.key == f"team:{p.database_team.id}.on_call")
    assert audit.new_value == "priya until 2026-12-01 18:00 UTC" and audit.actor_id == p.db_lead.id
    # only members may be on call; another team's page is not theirs; plain agents have none
    refused = mateo.post(f"/teams/{p.database_team.id}/on-call", {"on_call": p.other.id})
    assert refused.status_code == 422 and "not a member of Database" in refused.get_data(as_text=True)
    assert mateo.get(f"/teams/{p.network.id}/on-call").status_code == 404
    assert desk.login(p.assignee).get(f"/teams/{p.database_team.id}/on-call").status_code in {403, 404}
    # clearing it
    assert mateo.post(f"/teams/{p.database_team.id}/on-call", {"on_call": ""}).status_code == 303
    assert TeamOnCall.select().count() == 0


def test_admins_set_it_from_the_admin_team_page(desk):
    p = desk.p
    admin = desk.login(p.admin)
    page = admin.get(f"/admin/teams/{p.network.id}").get_data(as_text=True)
    assert f'action="/teams/{p.network.id}/on-call"' in page
    done = admin.post(f"/teams/{p.network.id}/on-call", {"on_call": p.other.id, "back": "admin"})
    assert done.status_code == 303 and done.headers["Location"].endswith(f"/admin/teams/{p.network.id}")
    assert people.on_call(p.network).agent.id == p.other.id
