"""The demo data a newcomer sees on the first `make run`."""

import re

from helpdesk import demo
from helpdesk.models import STATUSES, Incident, Team, TimelineEntry


def test_demo_covers_every_status_and_team_with_real_timelines(app):
    demo.seed(app.extensions["helpdesk"])
    incidents = list(Incident.select())
    assert 190 <= len(incidents) <= 210
    assert {i.status for i in incidents} == set(STATUSES)
    team_names = {t.id: t.name for t in Team.select()}
    assert {team_names[i.assigned_team_id] for i in incidents if i.assigned_team_id} == set(demo.TOPICS)
    assert any(i.owner_agent_id is None for i in incidents)  # some wait to be taken
    assert any(i.owner_agent_id is not None for i in incidents)
    for incident in incidents:
        assert TimelineEntry.select().where(TimelineEntry.incident == incident.id).exists()
        if incident.status == "closed":
            assert incident.resolution_note and incident.closed_at >= incident.resolved_at


def test_demo_agents_log_in_with_the_printed_password(app):
    demo.seed(app.extensions["helpdesk"], count=5)
    client = app.test_client()
    token = re.search(r'name="csrf-token" content="([^"]+)"',
                      client.get("/login").get_data(as_text=True)).group(1)
    response = client.post("/login", data={"username": "john", "password": demo.PASSWORD,
                                           "csrf_token": token})
    assert response.status_code == 302
    assert demo.PASSWORD in demo.LOGIN_HELP
