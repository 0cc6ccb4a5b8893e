"""Escalation as agents and leads see it in the browser: the level on the incident page and in
the queues, escalating and acknowledging with a reason, and the policy pages (TOML edit, import,
export, simulator) for leads, with CSRF and access checks."""

from __future__ import annotations

import datetime as dt
import io
import re

from helpdesk.models import EscalationPolicy, EscalationRun, TimelineEntry

from .conftest import AT75, AT90, LOGGED, three_levels


def _text(response) -> str:
    return response.get_data(as_text=True)


def test_the_incident_page_shows_the_level_the_next_one_and_when(desk):
    desk.policy(three_levels())
    incident = desk.log_p2()
    desk.clock.set(LOGGED + dt.timedelta(minutes=5))
    page = desk.login_page(incident)
    assert "Not escalated." in page
    assert "Next: level 1 (Owner reviews) at 2026-03-09 14:30" in page  # London = UTC in March
    desk.check(AT75)
    page = desk.login_page(incident)
    assert "Level <strong>1</strong> of Standard escalation (version 1)" in page
    assert "Next: level 2 (Team lead) at 2026-03-09 15:42" in page
    queue = _text(desk.login(desk.p.owner).get("/queues/escalated"))
    assert incident.reference in queue and ">L1</span>" in queue
    assert incident.reference not in _text(desk.login(desk.p.owner).get("/queues/escalated?priority=1"))


def test_escalating_by_hand_needs_a_reason_and_a_csrf_token(desk):
    desk.policy(three_levels())
    incident = desk.log_p2()
    client = desk.login(desk.p.colleague)
    url = f"/incidents/{incident.id}/escalate"
    assert client.http.post(url, data={"reason": "now"}).status_code == 400  # no CSRF token
    refused = client.post(url, data={"reason": "  "})
    assert refused.status_code == 422 and "Give a reason for escalating." in _text(refused)
    assert EscalationRun.select().count() == 0
    done = client.post(url, data={"reason": "CEO <b>called</b>"})
    assert done.status_code == 303
    page = desk.login_page(incident)
    assert "CEO &lt;b&gt;called&lt;/b&gt;" in page  # the reason is text, not markup
    assert "Level <strong>1</strong>" in page
    entry = TimelineEntry.get((TimelineEntry.kind == "escalation") & (TimelineEntry.field == "level"))
    assert entry.actor_id == desk.p.colleague.id


def test_the_owner_acknowledges_and_snoozes_and_others_may_not(desk):
    desk.policy(three_levels())
    incident = desk.log_p2()
    desk.check(AT75)
    url = f"/incidents/{incident.id}/acknowledge"
    assert "Acknowledge" not in re.sub(r"Acknowledged", "", desk.login_page(incident, desk.p.assignee))
    other = desk.login(desk.p.assignee).post(url, data={"reason": "mine", "snooze": "60"})
    assert other.status_code == 403
    bad = desk.login(desk.p.owner).post(url, data={"reason": "x", "snooze": "99999"})
    assert bad.status_code == 422
    desk.clock.set(AT75 + dt.timedelta(minutes=2))
    ok = desk.login(desk.p.owner).post(url, data={"reason": "Vendor engaged", "snooze": "240"})
    assert ok.status_code == 303
    page = desk.login_page(incident)
    assert "Automatic escalation snoozed until 2026-03-09 18:32" in page and "Acknowledged." in page
    assert desk.check(AT90) == 1  # held


def test_a_lead_writes_a_policy_in_the_browser_and_a_bad_one_comes_back_with_the_field_named(desk):
    lead = desk.login(desk.p.lead)
    assert desk.login(desk.p.owner).get("/escalation").status_code == 403
    assert desk.login(desk.p.owner).post("/escalation/edit", data={"toml": "x"}).status_code == 403
    form = _text(lead.get("/escalation/edit"))
    assert "notify_owner" in form and "reassign" in form  # the installed steps are listed
    bad = ('name = "standard"\n[conditions]\nteam = ["Service Desk"]\n[[levels]]\ntrigger = "breach"\n'
           '[[levels.steps]]\nstep = "reassign"\nteam = "Nope"\n')
    refused = lead.post("/escalation/edit", data={"toml": bad})
    assert refused.status_code == 422
    assert "levels[1].steps[1].team: there is no team named &#39;Nope&#39;" in _text(refused)
    assert "team = &#34;Nope&#34;" in _text(refused)  # the text typed is kept
    assert EscalationPolicy.select().count() == 0
    good = bad.replace("Nope", "Network")
    assert lead.post("/escalation/edit", data={"toml": good}).status_code == 303
    listed = _text(lead.get("/escalation"))
    assert "standard" in listed and "Resolution breach: reassign" in listed
    exported = lead.get("/escalation/standard.toml")
    assert exported.mimetype == "text/plain" and 'team = "Network"' in _text(exported)
    # Editing: another version; a stale form is refused.
    edited = _text(exported).replace('"Network"', '"Database"')
    saved = lead.post("/escalation/edit?name=standard", data={"toml": edited, "version": "1"})
    assert saved.status_code == 303
    stale = lead.post("/escalation/edit?name=standard",
                      data={"toml": edited.replace('team = "Database"', 'team = "Network"'), "version": "1"})
    assert stale.status_code == 422 and "saved by someone else" in _text(stale)
    assert EscalationPolicy.get().version == 2


def test_import_a_policy_file_and_delete_it(desk):
    lead = desk.login(desk.p.admin)  # an organisation-wide policy: an admin's
    desk.policy(three_levels())
    text = _text(lead.get("/escalation/standard.toml")).replace("Network", "Database")
    imported = lead.post("/escalation/import", data={"file": (io.BytesIO(text.encode()), "standard.toml")},
                         content_type="multipart/form-data")
    assert imported.status_code == 303 and EscalationPolicy.get().version == 2
    assert lead.post("/escalation/delete", data={"name": "standard"}).status_code == 303
    assert EscalationPolicy.select().count() == 0


def test_the_simulator_page_shows_the_next_p2_in_local_time(desk):
    desk.policy(three_levels())
    lead = desk.login(desk.p.lead)
    assert desk.login(desk.p.owner).get("/escalation/simulate").status_code == 403
    response = lead.post("/escalation/simulate", data={"logged_at": "2026-03-06T16:30", "priority": "2",
                                                       "horizon": "96", "type": "incident"})
    page = _text(response)
    assert response.status_code == 200
    for moment, what in (("2026-03-09 14:30", "level 1"), ("2026-03-09 15:42", "level 2"),
                         ("2026-03-09 16:30", "level 3")):
        assert re.search(rf"<td>{moment} GMT</td><td>Escalation: {what} of standard", page), what
    bad = lead.post("/escalation/simulate", data={"incident": "INC-x"})
    assert bad.status_code == 422 and "INC-42" in _text(bad)
