"""Refer and request through the API: a specialist's script hands an incident back, the owner's
script reads the request and accepts or rejects it, under the same rules as the pages."""

from __future__ import annotations

from typing import Any

import pytest

from helpdesk.api import tokens
from helpdesk.models import HandBack, Incident, Team, TimelineEntry

from .conftest import utc

LATER = utc(3, 9, 10)


class Api:
    def __init__(self, desk: Any, agent: Any) -> None:
        with desk.app.app_context():
            secret = tokens.create(agent, "script", ["read", "write"]).secret
        self.http, self.headers = desk.app.test_client(), {"Authorization": f"Bearer {secret}"}

    def call(self, method: str, path: str, body: Any = None, version: int | None = None) -> Any:
        extra = {"If-Match": f'"{version}"'} if version is not None else {}
        return self.http.open(f"/api/v1{path}", method=method, json=body, headers={**self.headers, **extra})


@pytest.fixture
def case(desk):
    """A P2 owned by John (service desk), assigned to Database / Priya, Database in refer mode."""
    incident = desk.log_p2()
    Team.update(escalation_mode="refer").where(Team.id == desk.p.database_team.id).execute()
    return incident


def entries(incident: Incident) -> int:
    return TimelineEntry.select().where(TimelineEntry.incident == incident.id).count()


def test_a_hand_back_asked_read_and_accepted_through_the_api(desk, case):
    p, at = desk.p, f"/incidents/{case.id}/hand-back"
    priya, john = Api(desk, p.assignee), Api(desk, p.owner)
    assert john.call("GET", at).status_code == 404
    before = entries(case)
    made = priya.call("POST", at, {"request": "Not a database fault: the switch drops packets",
                                   "suggested_team_id": p.network.id})
    assert made.status_code == 201, made.get_data(as_text=True)
    data = made.get_json()
    assert (data["state"], data["team"]["name"], data["suggested_team"]["name"]) == (
        "pending", "Database", "Network")
    assert data["requested_by"]["id"] == p.assignee.id and entries(case) == before + 1
    assert made.headers["Location"].endswith(f"/api/v1{at}")
    assert john.call("GET", at).get_json()["id"] == data["id"]

    again = priya.call("POST", at, {"request": "Still waiting"})
    assert again.status_code == 422 and "already has a hand-back" in again.get_json()["detail"]
    version = Incident.get_by_id(case.id).version
    refused = priya.call("POST", f"{at}/accept", {}, version)
    assert refused.status_code == 403 and refused.mimetype == "application/problem+json", \
        "the specialist cannot decide"
    assert john.call("POST", f"{at}/accept", {}).status_code == 428, "accepting moves it: If-Match"
    assert john.call("POST", f"{at}/accept", {}, version - 1).status_code == 412
    back = john.call("POST", f"{at}/accept", {"team_id": p.database_team.id}, version)
    assert back.status_code == 422 and "reject" in back.get_json()["detail"], \
        "sending it back to the team that asked is a rejection"
    assert HandBack.get_by_id(data["id"]).state == "pending"

    accepted = john.call("POST", f"{at}/accept", {}, version)
    assert accepted.status_code == 200, accepted.get_data(as_text=True)
    assert accepted.get_json()["assignee"]["team"]["name"] == "Network"
    assert accepted.headers["ETag"] == f'"{accepted.get_json()["version"]}"'
    assert HandBack.get_by_id(data["id"]).state == "accepted"
    assert john.call("GET", at).status_code == 404


def test_a_hand_back_rejected_through_the_api_stays_with_the_team(desk, case):
    p, at = desk.p, f"/incidents/{case.id}/hand-back"
    priya, john = Api(desk, p.assignee), Api(desk, p.owner)
    assert priya.call("POST", at, {"request": "Please take it back"}).status_code == 201
    assert john.call("POST", f"{at}/reject", {"reason": ""}).status_code == 422, "a reason is required"
    rejected = john.call("POST", f"{at}/reject", {"reason": "The slow query is yours"})
    assert rejected.status_code == 200
    assert (rejected.get_json()["state"], rejected.get_json()["decision"]) == (
        "rejected", "The slow query is yours")
    assert Incident.get_by_id(case.id).assigned_team_id == p.database_team.id


@pytest.mark.parametrize("body, field", [
    ({}, "request"), ({"request": ""}, "request"), ({"request": "x" * 2001}, "request"),
    ({"request": "Take it", "suggested_team_id": 999999}, "suggested_team_id"),
])
def test_a_bad_hand_back_is_refused_naming_the_field_and_writes_nothing(desk, case, body, field):
    before = entries(case)
    response = Api(desk, desk.p.assignee).call("POST", f"/incidents/{case.id}/hand-back", body)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["field"] == field
    assert entries(case) == before and HandBack.select().count() == 0


def test_a_closed_incident_has_no_hand_back_awaiting_a_decision(desk, case):
    from helpdesk import incidents

    p, at = desk.p, f"/incidents/{case.id}/hand-back"
    assert Api(desk, p.assignee).call("POST", at, {"request": "Please take it back"}).status_code == 201
    desk.call(None, incidents.change_status, case.id, p.owner, "resolved", resolution_code="fixed",
              note="Fixed by a restart")
    missing = Api(desk, p.owner).call("GET", at)
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"


def test_an_agent_outside_the_assigned_team_cannot_hand_back_and_a_missing_incident_is_404(desk, case):
    kofi = Api(desk, desk.p.other)
    assert kofi.call("POST", f"/incidents/{case.id}/hand-back", {"request": "Not ours"}).status_code == 403
    assert kofi.call("POST", "/incidents/999999/hand-back", {"request": "Where?"}).status_code == 404
    assert HandBack.select().count() == 0
