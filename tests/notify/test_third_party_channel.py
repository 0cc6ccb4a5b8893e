"""A third-party channel, installed from its own distribution (tests/example_pager), reaches
owners and assignees through the notification rules once they chose it on their profile pages;
a failing gateway is retried, dead-lettered and retried by an admin on the Deliveries page."""

from __future__ import annotations

import re
from typing import Any

import pytest

from helpdesk import incidents
from helpdesk.models import AgentChannel, Delivery
from helpdesk.notify.rules import KINDS

pytest.importorskip("helpdesk_example_pager", reason="pip install ./tests/example_pager (make test does)")


@pytest.fixture
def helpdesk_load_entry_points() -> bool:
    return True  # found as an installed distribution, like any third-party plugin


@pytest.fixture
def helpdesk_settings(http_receiver: Any) -> dict[str, Any]:
    return {"plugins": {"example_pager": {"gateway": f"{http_receiver.url}/page",
                                          "allow_private": ["127.0.0.1"]}}}


def choose_pager(client: Any, number: str) -> Any:
    """The profile form as an agent sends it: in-app and pager on, every kind on both."""
    form = {"channel-inapp": "on", "channel-example_pager": "on",
            "channel-example_pager-number": number}
    form.update({f"pref-{kind}-{channel}": "on" for kind in KINDS for channel in ("inapp", "example_pager")})
    return client.post("/profile", form)


def pages(http_receiver: Any) -> list[dict[str, Any]]:
    return [request.json() for request in http_receiver.requests if request.path == "/page"]


def test_the_profile_offers_the_plugin_channel_and_its_field(login, personas):
    page = login(personas.owner).get("/profile").get_data(as_text=True)
    assert 'name="channel-example_pager"' in page and "Pager number" in page
    assert 'name="channel-example_pager-number"' in page
    assert 'aria-label="SLA warning: Pager"' in page


def test_owner_and_assignee_are_paged_after_choosing_the_pager(ctx, helpdesk_app, login, personas,
                                                               incident_factory, http_receiver):
    assert choose_pager(login(personas.owner), "+44 7700 900001").status_code == 303
    assert choose_pager(login(personas.assignee), "+44 7700 900002").status_code == 303
    incident = incident_factory(title="Orders database slow")  # owned by John
    with helpdesk_app.app_context():
        incidents.assign(ctx, incident.id, personas.owner, personas.database_team, None)
        (team_news,) = pages(http_receiver)  # Priya chose to hear of new work for her team
        assert team_news["to"] == "+44 7700 900002" and "New for your team" in team_news["text"]
        # A colleague reassigns it: Priya is told she has it, John that his incident moved.
        incidents.assign(ctx, incident.id, personas.colleague, personas.database_team, personas.assignee)
    received = sorted((page["to"], page["text"]) for page in pages(http_receiver)[1:])
    assert [to for to, _ in received] == ["+44 7700 900001", "+44 7700 900002"]
    assert all(incident.reference in text for _, text in received)
    assert {row.state for row in Delivery.select().where(Delivery.channel == "example_pager")} == {"sent"}


def test_agents_who_did_not_choose_the_pager_are_not_paged(ctx, helpdesk_app, personas, incident_factory,
                                                           http_receiver):
    incident = incident_factory()
    with helpdesk_app.app_context():
        incidents.assign(ctx, incident.id, personas.colleague, personas.database_team, personas.assignee)
    assert pages(http_receiver) == []


@pytest.mark.parametrize("number", ["call me", "12", "+1 555 0100\r\nX-Evil: 1"])
def test_a_bad_pager_number_is_refused_naming_the_field_and_nothing_is_stored(login, personas, number):
    response = choose_pager(login(personas.owner), number)
    assert response.status_code == 422
    assert "Pager: Pager number" in response.get_data(as_text=True)
    assert not AgentChannel.select().where(AgentChannel.agent == personas.owner.id).exists()


def test_a_failing_gateway_is_retried_then_dead_lettered_and_an_admin_retries_it(
        ctx, helpdesk_app, login, personas, incident_factory, http_receiver, frozen_clock, outbox):
    choose_pager(login(personas.assignee), "+44 7700 900002")
    http_receiver.statuses = [503, 400]  # down for a moment, then it refuses the message
    incident = incident_factory()
    with helpdesk_app.app_context():
        incidents.assign(ctx, incident.id, personas.owner, personas.database_team, personas.assignee)
    (row,) = outbox.rows(channel="example_pager")
    assert (row.state, row.attempts) == ("pending", 1), "a 503 is temporary: retried later"
    frozen_clock.advance(hours=2)
    assert outbox.drain() == 1
    row = Delivery.get_by_id(row.id)
    assert (row.state, row.attempts) == ("dead", 2) and "400" in row.last_error

    admin = login(personas.admin)
    page = admin.get("/admin/deliveries?state=dead").get_data(as_text=True)
    assert f"Retry delivery {row.id}" in page and "400" in page
    assert admin.post(f"/admin/deliveries/{row.id}/retry").status_code == 303
    assert Delivery.get_by_id(row.id).state == "sent"
    assert len(pages(http_receiver)) == 3, "one page per attempt, the same message each time"
    assert len({re.sub(r"\s", "", str(page)) for page in pages(http_receiver)}) == 1
