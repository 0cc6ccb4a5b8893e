"""SLA status over the API, with the bundled SLA plugins: the same clocks the incident page
shows, moving as the incident changes through the API."""

from __future__ import annotations

from typing import Any

import pytest

from helpdesk.api import tokens


@pytest.fixture
def helpdesk_bundled_plugins() -> list[str]:
    return ["sla_priority", "business_hours"]


def test_sla_clocks_run_pause_and_are_met_as_the_api_changes_the_incident(app, personas,
                                                                          frozen_clock):
    with app.app_context():
        secret = tokens.create(personas.owner, "sla", ["read", "write"]).secret
    client = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}

    def clocks(incident_id: int) -> dict[str, Any]:
        answer = client.get(f"/api/v1/incidents/{incident_id}/sla", headers=headers)
        assert answer.status_code == 200
        return {c["target"]: c for c in answer.get_json()["clocks"]}

    made = client.post("/api/v1/incidents", json={"title": "Mail down", "impact": "high",
                                                   "urgency": "high"}, headers=headers).get_json()
    start = clocks(made["id"])
    assert set(start) == {"response", "resolution"}
    assert start["resolution"]["state"] == "running" and start["resolution"]["due_at"].endswith("Z")
    frozen_clock.advance(minutes=10)  # within the P1's 15-minute response target
    client.post(f"/api/v1/incidents/{made['id']}/comments", json={"body": "Looking now",
                                                                   "visibility": "public"},
                headers=headers)
    # (the reply set the New incident in progress: version 2)
    client.post(f"/api/v1/incidents/{made['id']}/status", json={
        "status": "pending", "pending_reason": "customer"}, headers={**headers, "If-Match": '"2"'})
    after = clocks(made["id"])
    assert after["response"]["state"] == "met" and after["response"]["met_at"] is not None
    assert after["resolution"]["state"] == "paused"
    assert after["resolution"]["elapsed_seconds"] == 10 * 60
