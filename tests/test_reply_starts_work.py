"""A reply to the customer starts the work: a New incident goes in progress, by the replying
agent's status change, in the reply's transaction. Notes, the customer's own messages and
replies in any other status leave the status alone. Through the incident page (plain and HTMX),
the API and the domain."""

from __future__ import annotations

from typing import Any

from helpdesk import customers, hookimpl, incidents
from helpdesk.api import tokens
from helpdesk.models import Incident, TimelineEntry
from helpdesk.testing import AgentClient


def story(incident: Incident) -> list[tuple[str, str | None, str | None, str | None, int | None]]:
    """The incident's replies, notes and status entries, oldest first: (kind, field, old, new, actor)."""
    talk_or_status = (TimelineEntry.kind != "change") | (TimelineEntry.field == "status")
    query = (TimelineEntry.select().where((TimelineEntry.incident == incident.id) & talk_or_status)
             .order_by(TimelineEntry.id))
    return [(e.kind, e.field, e.old_value, e.new_value, e.actor_id) for e in query
            if e.kind in {"reply", "note", "change", "customer"}]


def fresh(incident: Incident) -> Incident:
    return Incident.get_by_id(incident.id)


class StatusEvents:
    def __init__(self) -> None:
        self.seen: list[tuple[int, int | None, str, str]] = []

    @hookimpl
    def incident_status_changed(self, incident: Any, actor: Any, old_status: str, new_status: str) -> None:
        self.seen.append((incident.id, actor.id if actor else None, old_status, new_status))


def test_a_reply_from_the_incident_page_sets_a_new_incident_in_progress(app, personas, log_incident,
                                                                        register_plugin):
    heard = register_plugin(StatusEvents())
    incident = log_incident()
    assert incident.status == "new"
    priya = AgentClient(app, personas.assignee)
    page = priya.get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert 'id="reply-starts-work"' in page and "sets this new incident in progress" in page
    version = fresh(incident).version

    # An internal note is not the customer hearing from the desk: still new, version kept.
    assert priya.post(f"/incidents/{incident.id}/comments",
                      {"body": "Looking at the slow queries", "visibility": "note"}).status_code == 303
    assert (fresh(incident).status, fresh(incident).version) == ("new", version)

    sent = priya.post(f"/incidents/{incident.id}/comments",
                      {"body": "We are on it.", "visibility": "public"})
    assert sent.status_code == 303
    after = fresh(incident)
    assert (after.status, after.version) == ("in_progress", version + 1)
    assert story(incident)[-3:] == [
        ("note", None, None, None, personas.assignee.id),
        ("reply", None, None, None, personas.assignee.id),
        ("change", "status", "New", "In progress", personas.assignee.id)]  # after the reply, by her
    assert heard.seen == [(incident.id, personas.assignee.id, "new", "in_progress")]
    page = priya.get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert 'id="reply-starts-work"' not in page
    # A second reply changes nothing more.
    priya.post(f"/incidents/{incident.id}/comments", {"body": "Still on it.", "visibility": "public"})
    assert fresh(incident).version == version + 1
    assert [row for row in story(incident) if row[0] == "change"] == [
        ("change", "status", "New", "In progress", personas.assignee.id)]


def test_a_reply_sent_with_htmx_shows_the_incident_in_progress(app, personas, log_incident):
    incident = log_incident()
    john = AgentClient(app, personas.owner)
    answer = john.post(f"/incidents/{incident.id}/comments",
                       {"body": "Thanks, we are looking.", "visibility": "public",
                        "version": str(fresh(incident).version)},
                       headers={"HX-Request": "true", "HX-Target": "incident-body"})
    assert answer.status_code == 200
    body = answer.get_data(as_text=True)
    assert "Reply sent to the customer." in body
    status_panel = body[body.index('<h2 id="status-heading">'):]
    assert "In progress" in status_panel[:status_panel.index("</p>")]
    # The fresh body carries the new version: the next action from it is not refused as stale.
    version = fresh(incident).version
    assert f'name="version" value="{version}"' in body
    assert john.post(f"/incidents/{incident.id}/status",
                     {"status": "pending", "pending_reason": "customer", "version": str(version)},
                     headers={"HX-Request": "true", "HX-Target": "incident-body"}).status_code == 200
    assert fresh(incident).status == "pending"


def test_a_public_reply_through_the_api_sets_a_new_incident_in_progress(app, personas, log_incident):
    with app.app_context():
        secret = tokens.create(personas.owner, "integration", ["read", "write"]).secret
    http = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    noted, replied = log_incident(title="Printer jams"), log_incident(title="VPN drops")
    note = http.post(f"/api/v1/incidents/{noted.id}/comments", headers=headers,
                     json={"body": "Checked the logs", "visibility": "internal"})
    reply = http.post(f"/api/v1/incidents/{replied.id}/comments", headers=headers,
                      json={"body": "We are on it", "visibility": "public"})
    assert (note.status_code, reply.status_code) == (201, 201)
    assert reply.get_json()["kind"] == "reply"  # the entry answered is still the reply
    assert http.get(f"/api/v1/incidents/{noted.id}", headers=headers).get_json()["status"] == "new"
    assert http.get(f"/api/v1/incidents/{replied.id}", headers=headers).get_json()["status"] == "in_progress"
    timeline = http.get(f"/api/v1/incidents/{replied.id}/timeline", headers=headers).get_json()["items"]
    changes = [(e["old_value"], e["new_value"], e["actor"]["name"]) for e in timeline
               if e["kind"] == "change" and e["field"] == "status"]
    assert changes == [("New", "In progress", "John Carter")]


def test_notes_customer_messages_and_other_statuses_leave_the_status_alone(app, ctx, personas,
                                                                           log_incident):
    with app.app_context():
        ada = customers.find_or_create_contact("ada@example.org", "Ada")
        waiting = log_incident(title="Printer jams", requester=ada)
        customers.post_message(ctx, waiting.id, ada, "It jams again.", seen=True)
        assert fresh(waiting).status == "new"  # the customer writing is not the desk working

        assigned = log_incident(title="VPN drops", assigned_team=personas.database_team)
        assert fresh(assigned).status == "assigned"
        incidents.add_comment(ctx, assigned.id, personas.owner, "Passed to Database.", public=True)
        assert fresh(assigned).status == "assigned"

        pending = log_incident(title="Mail slow")
        incidents.change_status(ctx, pending.id, personas.owner, "pending", pending_reason="customer")
        incidents.add_comment(ctx, pending.id, personas.owner, "Any news?", public=True)
        assert (fresh(pending).status, fresh(pending).pending_reason) == ("pending", "customer")

        # Whoever replies first starts the work: the status entry is theirs.
        started = log_incident(title="Orders slow")
        incidents.add_comment(ctx, started.id, personas.colleague, "On it.", public=True)
        assert fresh(started).status == "in_progress"
        assert [row for row in story(started) if row[0] == "change"] == [
            ("change", "status", "New", "In progress", personas.colleague.id)]
