"""The incident console without a browser: the Take route, one timeline entry per action,
the status form's defaults, canned resolutions, and SLA entries that keep their due time as data."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from helpdesk import incidents
from helpdesk.models import Incident, TimelineEntry
from helpdesk.testing import AgentClient

HTMX = {"HX-Request": "true", "HX-Target": "incident-body"}


def fresh(incident: Any) -> Incident:
    return Incident.get_by_id(incident.id)


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def entries(incident: Any) -> list[TimelineEntry]:
    query = TimelineEntry.select().where(TimelineEntry.incident == incident.id)
    return list(query.order_by(TimelineEntry.id))


# -- the Take route ------------------------------------------------------------------------------


def test_take_work_without_htmx_assigns_me_and_lands_on_what_changed(app, personas, log_incident):
    incident = log_incident()
    client = AgentClient(app, personas.assignee)
    response = client.post(f"/incidents/{incident.id}/take-work", {"version": incident.version})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/incidents/{incident.id}#assignee-heading")
    after = fresh(incident)
    assert (after.assigned_agent_id, after.status) == (personas.assignee.id, "in_progress")
    page = text(client.get(f"/incidents/{incident.id}"))
    assert "Took it: assigned to Database / Priya Raman and in progress." in page  # the flash


def test_take_work_from_htmx_returns_the_body_with_announcement_and_focus(app, personas, log_incident):
    incident = log_incident()
    response = AgentClient(app, personas.assignee).post(
        f"/incidents/{incident.id}/take-work", {"version": incident.version}, headers=HTMX)
    assert response.status_code == 200
    body = text(response).strip()
    assert body.startswith('<article id="incident-body"')
    assert 'data-announce="Took it: assigned to Database / Priya Raman and in progress."' in body
    assert 'data-focus="assignee-heading"' in body
    # Taken: the Take button is gone for me.
    assert 'data-shortcut="take"' not in body


def test_take_work_goes_back_to_a_local_page_only(app, personas, log_incident):
    first, second = log_incident(), log_incident(title="Second")
    client = AgentClient(app, personas.assignee)
    back = client.post(f"/incidents/{first.id}/take-work",
                       {"version": first.version, "next": "/queues/teams?sort=due"})
    assert back.headers["Location"].endswith("/queues/teams?sort=due")
    away = client.post(f"/incidents/{second.id}/take-work",
                       {"version": second.version, "next": "https://evil.example/"})
    assert away.headers["Location"].endswith(f"/incidents/{second.id}#assignee-heading")


@pytest.mark.parametrize("htmx", [False, True], ids=["form", "htmx"])
def test_stale_take_is_a_409_with_the_current_state(app, personas, log_incident, htmx):
    incident = log_incident()
    incidents.assign(incidents_ctx(app), incident.id, personas.owner, personas.network, None)
    response = AgentClient(app, personas.assignee).post(
        f"/incidents/{incident.id}/take-work", {"version": incident.version},
        headers=HTMX if htmx else {})
    assert response.status_code == 409
    assert "changed by someone else" in text(response)
    assert "Network / <em>no agent</em>" in text(response)
    assert fresh(incident).assigned_agent_id is None


def test_taking_an_incident_someone_else_works_on_is_refused(app, personas, log_incident):
    incident = log_incident()
    incidents.assign(incidents_ctx(app), incident.id, personas.owner, personas.database_team,
                     personas.db_lead)
    response = AgentClient(app, personas.assignee).post(
        f"/incidents/{incident.id}/take-work", {"version": fresh(incident).version}, headers=HTMX)
    assert response.status_code == 422
    assert "assigned to Mateo Silva" in text(response)
    assert fresh(incident).assigned_agent_id == personas.db_lead.id


def test_a_take_from_a_queue_that_lost_the_race_goes_back_to_the_queue_with_why(app, personas,
                                                                                  log_incident):
    raced, resolved = log_incident(), log_incident(title="Already fixed")
    ctx = incidents_ctx(app)
    seen = raced.version  # the queue page showed this version
    incidents.take_work(ctx, raced.id, personas.colleague, seen)
    incidents.change_status(ctx, resolved.id, personas.owner, "resolved", note="Fixed.")
    client = AgentClient(app, personas.assignee)
    lost = client.post(f"/incidents/{raced.id}/take-work",
                       {"version": seen, "next": "/queues/teams?sort=due"})
    assert lost.status_code == 303 and lost.headers["Location"].endswith("/queues/teams?sort=due")
    queue = text(client.get("/queues/teams?sort=due"))
    said = f"{raced.reference} was taken by Sara Berg before you; nothing was changed."
    assert f'<p class="error">{said}</p>' in queue
    refused = client.post(f"/incidents/{resolved.id}/take-work",
                          {"version": fresh(resolved).version, "next": "/queues/open"})
    assert refused.status_code == 303 and refused.headers["Location"].endswith("/queues/open")
    assert "is resolved; reopen it before taking it. Nothing was changed." in text(client.get("/queues/open"))
    assert fresh(raced).assigned_agent_id == personas.colleague.id
    assert fresh(resolved).assigned_agent_id is None


@pytest.mark.parametrize("htmx", [False, True], ids=["form", "htmx"])
def test_the_t_keys_take_does_not_resume_my_pending_incident(app, personas, log_incident, htmx):
    incident = log_incident()
    ctx = incidents_ctx(app)
    incidents.take_work(ctx, incident.id, personas.assignee)
    incidents.change_status(ctx, incident.id, personas.assignee, "pending", pending_reason="customer")
    client = AgentClient(app, personas.assignee)
    page = text(client.get(f"/incidents/{incident.id}"))
    assert 'data-shortcut="take"' in page  # the button still resumes it when clicked
    before = fresh(incident)
    response = client.post(f"/incidents/{incident.id}/take-work",
                           {"version": before.version, "claim_only": "1"}, headers=HTMX if htmx else {})
    assert response.status_code == (200 if htmx else 303)
    after = fresh(incident)
    assert (after.status, after.pending_reason, after.version) == ("pending", "customer", before.version)
    said = text(response) if htmx else text(client.get(f"/incidents/{incident.id}"))
    assert f"{incident.reference} is already yours; nothing changed." in said


def test_take_work_needs_csrf_a_session_and_an_incident(app, personas, log_incident):
    incident = log_incident()
    client = AgentClient(app, personas.assignee)
    no_token = client.http.post(f"/incidents/{incident.id}/take-work", data={"version": incident.version})
    assert no_token.status_code == 400
    anonymous = AgentClient(app, None).post(f"/incidents/{incident.id}/take-work",
                                            {"version": incident.version})
    assert anonymous.status_code in (302, 303) and "/login" in anonymous.headers["Location"]
    assert fresh(incident).assigned_agent_id is None
    assert client.post("/incidents/999999/take-work", {"version": 1}).status_code == 404


def incidents_ctx(app: Any) -> Any:
    return app.extensions["helpdesk"]


# -- one timeline entry per action --------------------------------------------------------------


def test_a_move_to_pending_and_back_writes_one_entry_each(ctx, personas, log_incident):
    incident = log_incident()
    before = len(entries(incident))
    incidents.change_status(ctx, incident.id, personas.owner, "pending", pending_reason="customer",
                            note="Asked for the error message.")
    added = entries(incident)[before:]
    assert [(e.field, e.old_value, e.new_value) for e in added] == [("status", "New", "Pending")]
    assert added[0].body == "Pending reason: Awaiting customer.\n\nAsked for the error message."
    incidents.change_status(ctx, incident.id, personas.owner, "in_progress")
    assert [(e.field, e.new_value) for e in entries(incident)[before + 1:]] == [("status", "In progress")]


def test_resolving_writes_one_entry_with_the_code(ctx, personas, log_incident):
    incident = log_incident()
    before = len(entries(incident))
    incidents.change_status(ctx, incident.id, personas.owner, "resolved", resolution_code="workaround",
                            note="Rebooted the print server.")
    added = entries(incident)[before:]
    assert [(e.field, e.new_value) for e in added] == [("status", "Resolved")]
    assert added[0].body == "Resolution code: Workaround.\n\nRebooted the print server."


def test_assigning_a_new_incident_is_one_entry(ctx, personas, log_incident):
    incident = log_incident()
    before = len(entries(incident))
    incidents.assign(ctx, incident.id, personas.owner, personas.database_team, personas.assignee,
                     note="Their index.")
    added = entries(incident)[before:]
    assert [(e.field, e.old_value, e.new_value) for e in added] == [("status", "New", "Assigned")]
    assert added[0].body == "Assigned to Database / Priya Raman.\n\nTheir index."
    # Reassigning an assigned incident changes no status: an assignee entry, as before.
    incidents.assign(ctx, incident.id, personas.owner, personas.network, None)
    assert [e.field for e in entries(incident)[before + 1:]] == ["assignee"]


def test_one_entry_still_drives_every_follow_up(ctx, personas, log_incident, monkeypatch):
    """Folding the assignee into the status entry must not lose the assignment's events."""
    from helpdesk import events

    incident = log_incident()
    fired: list[str] = []
    real = events.emit
    monkeypatch.setattr(events, "emit", lambda state, name, *a, **k: (fired.append(name),
                                                                      real(state, name, *a, **k)))
    incidents.take_work(ctx, incident.id, personas.assignee)
    assert fired[:2] == ["incident_assigned", "incident_status_changed"]


def test_a_stale_assignment_after_a_take_keeps_the_take(app, personas, log_incident):
    """The take is one status entry, yet a stale assignment form still sees the assignee changed."""
    incident = log_incident()
    client = AgentClient(app, personas.owner)
    page = text(client.get(f"/incidents/{incident.id}"))
    seen = re.search(r'name="seen" value="(\d+)"', page).group(1)
    incidents.take_work(incidents_ctx(app), incident.id, personas.assignee)
    response = client.post(f"/incidents/{incident.id}/assignee", {
        "version": incident.version, "seen": seen, "assigned_team": personas.network.id,
        "assigned_agent": ""}, headers=HTMX)
    assert response.status_code == 409
    assert "changed meanwhile to Database" in text(response)


# -- the page ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "expected"), [
    ("new", "in_progress"), ("in_progress", "resolved"), ("pending", "in_progress"), ("resolved", "closed")])
def test_the_status_form_preselects_the_likely_next_status(ctx, app, personas, log_incident, status,
                                                           expected):
    incident = log_incident()
    if status == "in_progress":
        incidents.take_work(ctx, incident.id, personas.assignee)
    elif status == "pending":
        incidents.change_status(ctx, incident.id, personas.owner, "pending", pending_reason="customer")
    elif status == "resolved":
        incidents.change_status(ctx, incident.id, personas.owner, "resolved", note="Done.")
    page = text(AgentClient(app, personas.owner).get(f"/incidents/{incident.id}"))
    form = page.split('<select id="status-to"', 1)[1].split("</select>", 1)[0]
    assert re.search(rf'<option value="{expected}" selected>', form), form


def test_transfer_is_not_offered_on_a_closed_incident(ctx, app, personas, log_incident):
    incident = log_incident()
    incidents.change_status(ctx, incident.id, personas.owner, "resolved", note="Done.")
    incidents.change_status(ctx, incident.id, personas.owner, "closed")
    page = text(AgentClient(app, personas.owner).get(f"/incidents/{incident.id}"))
    assert "Transfer ownership" not in page and "Choose an owner" not in page
    assert "Quick actions" not in page


def test_resolve_with_a_canned_resolution_uses_its_code_and_text(app, personas, log_incident):
    incident = log_incident()
    client = AgentClient(app, personas.owner)
    workaround = incidents.CANNED_RESOLUTIONS["workaround"]
    first_text = next(iter(incidents.CANNED_RESOLUTIONS.values()))[1]
    # Without JavaScript the note box still holds the first canned text: the choice wins.
    response = client.post(f"/incidents/{incident.id}/status", {
        "version": incident.version, "status": "resolved", "canned": "workaround", "note": first_text})
    assert response.status_code == 303
    after = fresh(incident)
    assert (after.status, after.resolution_code, after.resolution_note) == (
        "resolved", "workaround", workaround[1])


def test_a_note_written_over_a_canned_resolution_is_kept(app, personas, log_incident):
    incident = log_incident()
    AgentClient(app, personas.owner).post(f"/incidents/{incident.id}/status", {
        "version": incident.version, "status": "resolved", "canned": "restored",
        "note": "Replaced the switch in room 4."})
    assert fresh(incident).resolution_note == "Replaced the switch in room 4."


def test_timeline_filter_works_without_javascript(ctx, app, personas, log_incident):
    incident = log_incident()
    incidents.add_comment(ctx, incident.id, personas.owner, "Internal only", public=False)
    page = text(AgentClient(app, personas.owner).get(f"/incidents/{incident.id}?show=internal"))
    assert '<ol class="timeline" data-show="internal"' in page
    assert re.search(r'data-timeline-filter="internal"\s+aria-current="true"', page)
    hostile = text(AgentClient(app, personas.owner).get(f"/incidents/{incident.id}?show=%22%3E"))
    assert '<ol class="timeline" data-show="all"' in hostile


def test_a_note_sent_without_javascript_returns_to_the_new_entry(app, personas, log_incident):
    incident = log_incident()
    response = AgentClient(app, personas.owner).post(f"/incidents/{incident.id}/comments", {
        "visibility": "note", "body": "Checked the cable."})
    note = entries(incident)[-1]
    assert response.headers["Location"].endswith(f"#entry-{note.id}")


# -- SLA entries ---------------------------------------------------------------------------------


def test_sla_entries_keep_the_due_time_as_data_and_the_page_shows_it_in_the_zone(
        ctx, app, personas, log_incident):
    incident = log_incident()
    due = dt.datetime(2026, 6, 9, 8, 15)
    TimelineEntry.create(incident=incident.id, kind="sla", field="resolution", new_value="breach",
                         old_value=due.isoformat(), body="Resolution target breached")
    TimelineEntry.create(incident=incident.id, kind="sla", field="response", new_value="warning",
                         body="Response target 50% used (due 2026-06-09 07:00 UTC)")  # an old entry
    page = text(AgentClient(app, personas.owner).get(f"/incidents/{incident.id}"))
    with app.test_request_context():
        shown = app.jinja_env.from_string("{{ due|localtime }}").render(due=due)
    assert f"Resolution target breached (due <time datetime=\"2026-06-09T08:15:00Z\">{shown}</time>)" in page
    assert "Response target 50% used (due 2026-06-09 07:00 UTC)" in page


# -- a reply from a stale tab ------------------------------------------------------------------


def reply_form(page: str) -> dict[str, str]:
    """The hidden fields of the page's reply box, as a browser would post them."""
    form = re.search(r'<form class="reply".*?</form>', page, re.S).group(0)
    return dict(re.findall(r'<input type="hidden" name="(version|seen)" value="(\d+)"', form))


@pytest.mark.parametrize("htmx", [False, True], ids=["form", "htmx"])
def test_a_reply_from_a_tab_opened_before_the_resolve_is_held_back_with_its_text(
        app, personas, log_incident, htmx):
    incident = log_incident(title="Printer offline")
    ctx = incidents_ctx(app)
    incidents.take_work(ctx, incident.id, personas.assignee)
    client = AgentClient(app, personas.assignee)
    stale = reply_form(text(client.get(f"/incidents/{incident.id}")))
    assert set(stale) == {"version", "seen"}
    incidents.change_status(ctx, incident.id, personas.colleague, "resolved", note="Toner replaced.",
                            resolution_code="fixed")
    typed = "We are still looking into it & will call you at 3."
    response = client.post(f"/incidents/{incident.id}/comments",
                           {**stale, "visibility": "public", "body": typed}, headers=HTMX if htmx else {})
    assert response.status_code == 409
    page = text(response)
    assert "Your reply was not sent" in page and "to Resolved by Sara Berg" in page
    assert "We are still looking into it &amp; will call you at 3.</textarea>" in page
    assert 'id="vis-public" name="visibility" value="public" checked' in page
    assert not [e for e in entries(incident) if e.kind == "reply"]
    # The agent read it and still wants it sent: the box now carries the fresh page's version.
    again = client.post(f"/incidents/{incident.id}/comments",
                        {**reply_form(page), "visibility": "public", "body": typed},
                        headers=HTMX if htmx else {})
    assert again.status_code == (200 if htmx else 303)
    assert [e.body for e in entries(incident) if e.kind == "reply"] == [typed]


def test_a_newer_customer_message_holds_a_reply_but_a_field_edit_or_a_note_does_not(
        app, personas, log_incident, contact_factory):
    from helpdesk import customers

    requester = contact_factory(name="Ana Lima")
    incident = log_incident(title="VPN drops", requester=requester)
    ctx = incidents_ctx(app)
    client = AgentClient(app, personas.owner)
    stale = reply_form(text(client.get(f"/incidents/{incident.id}")))
    # Someone else overrides the priority: a field edit, the reply still goes.
    incidents.override_priority(ctx, incident.id, personas.colleague, 1, "CEO affected")
    sent = client.post(f"/incidents/{incident.id}/comments",
                       {**stale, "visibility": "public", "body": "Looking into it."})
    assert sent.status_code == 303
    # The customer writes again: a reply from the same old page waits for the agent to read it.
    customers.post_message(ctx, incident.id, requester, "It works again, never mind.", seen=True)
    held = client.post(f"/incidents/{incident.id}/comments",
                       {**stale, "visibility": "public", "body": "Please restart your laptop."})
    assert held.status_code == 409 and "Ana Lima wrote again" in text(held)
    # An internal note never reaches the customer: it is not held back.
    note = client.post(f"/incidents/{incident.id}/comments",
                       {**stale, "visibility": "note", "body": "Customer may have fixed it."})
    assert note.status_code == 303
    assert [e.body for e in entries(incident) if e.kind in ("reply", "note")] == [
        "Looking into it.", "Customer may have fixed it."]
