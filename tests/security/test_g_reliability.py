"""G. Reliability as agents meet it: a stale edit keeps what the second agent typed (G12,
#10 item 9) and twenty simultaneous "take" requests through a real server (G13).
Also the small defects of #10: no ownership transfer on closed or cancelled incidents, the
SLA panel's paused time stops with the clock, and the resolution note's label.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import threading
from typing import Any

import pytest
from flask import Flask

from helpdesk.models import Delivery, Incident, Notice, TimelineEntry
from helpdesk.testing import AgentClient, FrozenClock, Personas
from helpdesk_plugins import business_hours, sla_priority

HTMX = {"HX-Request": "true", "HX-Target": "incident-body"}


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def snapshot() -> dict[str, Any]:
    return {"incidents": [(i.id, i.version, i.title, i.status, i.owner_team_id, i.owner_agent_id)
                          for i in Incident.select().order_by(Incident.id)],
            "timeline": TimelineEntry.select().count(), "outbox": Delivery.select().count(),
            "notices": Notice.select().count()}


def version(incident_id: int) -> int:
    return Incident.get_by_id(incident_id).version


def opened(client: AgentClient, incident_id: int) -> dict[str, str]:
    """What an agent's page holds for its forms: the version and the last timeline entry seen."""
    page = text(client.get(f"/incidents/{incident_id}"))
    return {"version": re.search(r'name="version" value="(\d+)"', page).group(1),
            "seen": re.search(r'name="seen" value="(\d+)"', page).group(1)}


@pytest.mark.parametrize("htmx", [False, True], ids=["form", "htmx"])
def test_g12_a_stale_edit_shows_the_fresh_state_and_keeps_what_was_typed(
        app: Flask, personas: Personas, incident_factory: Any, htmx: bool) -> None:
    """Sara and John open version 1; Sara saves a new title, description and impact; John's
    save (new title, description, type, urgency) is refused with both intents shown, and
    one click applies John's type and urgency without undoing any of Sara's fields."""
    incident = incident_factory(title="Mail slow")
    sara, john = AgentClient(app, personas.colleague), AgentClient(app, personas.owner)
    johns_page = opened(john, incident.id)
    assert sara.post(f"/incidents/{incident.id}/details", {
        **opened(sara, incident.id), "title": "Mail slow for the whole finance floor",
        "description": "Sara's notes", "type": "incident", "impact": "high",
        "urgency": "medium"}).status_code == 303
    before = snapshot()

    typed = "Outlook hangs on send.\n\nSteps:\n1. open\n2. send <b>now</b>"
    response = john.post(f"/incidents/{incident.id}/details", {
        **johns_page, "title": "Mail slow since 9:00", "description": typed,
        "type": "service_request", "impact": "medium", "urgency": "high"},
        headers=HTMX if htmx else {})
    assert response.status_code == 409
    body = text(response)
    assert ("<html" in body) is not htmx
    assert snapshot() == before, "nothing of John's edit was saved"
    assert '<h1 id="incident-title">Mail slow for the whole finance floor</h1>' in body, "the fresh state"
    kept = body.split('id="stale-heading"', 1)[1].split("</section>", 1)[0]
    assert "Mail slow since 9:00" in kept and "Service request" in kept
    assert "send &lt;b&gt;now&lt;/b&gt;" in kept and "<b>now</b>" not in kept
    assert kept.count("changed meanwhile") == 3, "title, description, impact: Sara's stay"
    # one click applies the rest on top of the fresh version
    form = re.search(r'<form method="post" action="([^"]+)"[^>]*>(.*?)</form>', kept, re.S)
    fields = {k: html.unescape(v) for k, v in re.findall(r'name="([^"]+)" value="([^"]*)"', form.group(2))}
    assert int(fields["version"]) == version(incident.id)
    fields.pop("csrf_token")
    assert john.post(form.group(1), fields).status_code == 303
    saved = Incident.get_by_id(incident.id)
    assert (saved.title, saved.description, saved.impact) == (
        "Mail slow for the whole finance floor", "Sara's notes", "high"), "Sara's change stands"
    assert (saved.type, saved.urgency) == ("service_request", "high"), "John's change applied"


def test_g12_a_stale_assignment_keeps_the_chosen_team_and_agent(
        app: Flask, personas: Personas, incident_factory: Any) -> None:
    incident = incident_factory()
    john = AgentClient(app, personas.owner)
    johns_page = opened(john, incident.id)
    assert AgentClient(app, personas.colleague).post(f"/incidents/{incident.id}/assignee", {
        **johns_page, "assigned_team": personas.database_team.id}).status_code == 303
    response = john.post(f"/incidents/{incident.id}/assignee", {
        **johns_page, "assigned_team": personas.network.id, "assigned_agent": personas.other.id})
    assert response.status_code == 409
    kept = text(response).split('id="stale-heading"', 1)[1].split("</section>", 1)[0]
    assert "<dd>Network <strong>(changed meanwhile to Database;" in kept
    assert "<dd>Kofi Mensah <strong>(changed meanwhile to —;" in kept
    assert Incident.get_by_id(incident.id).assigned_team_id == personas.database_team.id


def test_g13_twenty_simultaneous_takes_one_owner(
        live_server: Any, personas: Personas, incident_factory: Any) -> None:
    incident = incident_factory(actor=None)  # arrives unowned
    agents = [personas.owner, personas.colleague, personas.lead, personas.admin]
    clients = []
    for n in range(20):
        client = live_server.client()
        client.get("/login")
        agent = agents[n % 4]
        assert client.post("/login", {"username": agent.username,
                                      "password": "correct-horse-battery"})[0] == 302
        client.get(f"/incidents/{incident.id}")
        clients.append(client)
    entries = TimelineEntry.select().where(TimelineEntry.incident == incident.id).count()
    start, answers = threading.Barrier(20), []

    def take(client: Any) -> None:
        start.wait()
        answers.append(client.post(f"/incidents/{incident.id}/take", {"version": incident.version})[0])

    threads = [threading.Thread(target=take, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert answers.count(303) == 5, "the winner's five requests; taking what you own is a no-op"
    owner = Incident.get_by_id(incident.id).owner_agent_id
    assert owner in {a.id for a in agents}
    winners = TimelineEntry.select().where((TimelineEntry.incident == incident.id)
                                           & (TimelineEntry.field == "owner")).count()
    assert winners == 1 and TimelineEntry.select().where(
        TimelineEntry.incident == incident.id).count() == entries + 1
    assert all(code in {303, 409, 422} for code in answers)


# -- the small ones ---------------------------------------------------------------------------


@pytest.mark.parametrize("final", ["closed", "cancelled"])
def test_ownership_is_not_transferred_on_a_closed_or_cancelled_incident(
        app: Flask, personas: Personas, incident_factory: Any, final: str) -> None:
    incident = incident_factory()
    Incident.update(status=final).where(Incident.id == incident.id).execute()
    admin = AgentClient(app, personas.admin)
    page = text(admin.get(f"/incidents/{incident.id}"))
    assert "Transfer ownership" not in page and "Save owner" not in page
    before = snapshot()
    refused = admin.post(f"/incidents/{incident.id}/owner", {
        "version": version(incident.id), "owner_team": personas.network.id, "reason": "tidy up"})
    assert refused.status_code == 422 and final in text(refused)
    assert snapshot() == before


def test_an_unowned_closed_incident_cannot_be_taken(
        app: Flask, personas: Personas, incident_factory: Any) -> None:
    incident = incident_factory(actor=None)
    Incident.update(status="closed").where(Incident.id == incident.id).execute()
    john = AgentClient(app, personas.owner)
    assert "Take ownership" not in text(john.get(f"/incidents/{incident.id}"))
    before = snapshot()
    assert john.post(f"/incidents/{incident.id}/take", {"version": version(incident.id)}).status_code == 422
    assert snapshot() == before


class TestPausedFigure:
    @pytest.fixture
    def helpdesk_plugins(self) -> list[Any]:
        return [sla_priority, business_hours]

    def test_paused_time_stops_growing_once_resolved(
            self, app: Flask, personas: Personas, incident_factory: Any, frozen_clock: FrozenClock) -> None:
        """Pending for 45 minutes, then resolved: two days later the panel still says 45m."""
        frozen_clock.set(dt.datetime(2026, 3, 2, 10, 0))  # a Monday, inside working hours
        incident = incident_factory(impact="low", urgency="low")
        john = AgentClient(app, personas.owner)
        assert john.post(f"/incidents/{incident.id}/status", {
            "version": version(incident.id), "status": "pending",
            "pending_reason": "customer"}).status_code == 303
        frozen_clock.advance(minutes=45)
        assert john.post(f"/incidents/{incident.id}/status", {
            "version": version(incident.id), "status": "resolved", "resolution_code": "fixed",
            "note": "Replaced the toner."}).status_code == 303
        frozen_clock.advance(days=2)
        page = text(AgentClient(app, personas.owner).get(f"/incidents/{incident.id}"))
        sla_table = page.split('<table class="sla">', 1)[1].split("</table>", 1)[0]
        rows = re.findall(r'<tr>\s*<th scope="row">(\w+).*?</tr>', sla_table, re.S)
        paused = {target: re.findall(r"<td>(.*?)</td>", row, re.S)[3] for target, row in zip(
            rows, re.findall(r'<tr>\s*<th scope="row">.*?</tr>', sla_table, re.S), strict=True)}
        assert paused == {"Response": "45 business minutes", "Resolution": "45 business minutes"}


def test_the_resolution_note_says_it_goes_to_the_requester(
        app: Flask, personas: Personas, incident_factory: Any) -> None:
    incident = incident_factory()
    page = text(AgentClient(app, personas.owner).get(f"/incidents/{incident.id}"))
    label = re.search(r'<label for="status-note">(.*?)</label>', page).group(1)
    assert "e-mailed to the requester" in label


def test_nothing_is_queued_by_a_refused_transfer(
        app: Flask, personas: Personas, incident_factory: Any) -> None:
    incident = incident_factory()
    Incident.update(status="closed").where(Incident.id == incident.id).execute()
    deliveries, notices = Delivery.select().count(), Notice.select().count()
    AgentClient(app, personas.owner).post(f"/incidents/{incident.id}/owner", {
        "version": version(incident.id), "owner_team": personas.network.id, "reason": "x"})
    assert (Delivery.select().count(), Notice.select().count()) == (deliveries, notices)
