import datetime as dt
from zoneinfo import ZoneInfo

from helpdesk.models import Agent
from helpdesk.people import check_password
from helpdesk.testing import PASSWORD


def test_agent_sees_times_in_their_own_time_zone(login, personas, log_incident):
    incident = log_incident(title="Clock check")
    client = login(personas.owner)
    utc = incident.created_at.strftime("%Y-%m-%d %H:%M")
    kolkata = (incident.created_at.replace(tzinfo=dt.UTC).astimezone(ZoneInfo("Asia/Kolkata"))
               .strftime("%Y-%m-%d %H:%M"))
    assert f"Logged {utc}" in client.get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert client.post("/profile", {"time_zone": "Asia/Kolkata"}).status_code == 303
    assert f"Logged {kolkata}" in client.get(f"/incidents/{incident.id}").get_data(as_text=True)


def test_password_change_needs_the_current_password(login, personas):
    client = login(personas.owner)
    refused = client.post("/profile", {"current_password": "wrong-one-123",
                                       "new_password": "a-new-password-1"})
    assert refused.status_code == 422
    assert check_password(Agent.get_by_id(personas.owner.id), PASSWORD)
    accepted = client.post("/profile", {"current_password": PASSWORD,
                                        "new_password": "a-new-password-1"})
    assert accepted.status_code == 303
    fresh = Agent.get_by_id(personas.owner.id)
    assert check_password(fresh, "a-new-password-1")
    assert not check_password(fresh, PASSWORD)


def test_a_password_of_only_spaces_is_refused(login, personas):
    refused = login(personas.owner).post("/profile", {"current_password": PASSWORD,
                                                      "new_password": " " * 14})
    assert refused.status_code == 422 and "more than spaces" in refused.get_data(as_text=True)
    assert check_password(Agent.get_by_id(personas.owner.id), PASSWORD)


def test_unknown_time_zone_is_refused(login, personas):
    response = login(personas.owner).post("/profile", {"time_zone": "Mars/Olympus"})
    assert response.status_code == 422
    assert Agent.get_by_id(personas.owner.id).time_zone is None
