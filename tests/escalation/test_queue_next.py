"""The owner's At-risk queue says what fires next on each row (level, steps, when, in the
agent's own time zone), from the engine's own rules, at a fixed number of queries a page."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import re

from helpdesk import incidents
from helpdesk.models import Agent, Contact, Organisation, Service
from helpdesk.words import format_duration

from .conftest import AT75, AT90, LOGGED, three_levels


def text(response) -> str:
    return response.get_data(as_text=True)


def cell(page: str, reference: str) -> str:
    rows = [chunk.split("</tr>")[0] for chunk in page.split("<tr data-row")[1:]]
    row = [chunk for chunk in rows if f">{reference}</a>" in chunk]
    assert len(row) == 1, reference
    found = re.search(r'<td data-label="Next escalation"[^>]*>(.*?)</td>', row[0], re.S)
    assert found, reference
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1)).strip())


def test_the_at_risk_queue_shows_the_next_level_and_when_in_the_agents_zone(desk):
    desk.policy(three_levels())
    incident = desk.log_p2()
    low = desk.call(LOGGED, incidents.log_incident, title="Printer toner", actor=desk.p.owner,
                    service_desk=desk.p.service_desk, impact="low", urgency="low")  # P4: no policy
    now = LOGGED + dt.timedelta(minutes=5)
    # A first public reply meets the response target: the incident stays at risk, not breached.
    desk.call(now, incidents.add_comment, incident.id, desk.p.owner, "Looking into it.", public=True)
    desk.clock.set(now)
    page = text(desk.login(desk.p.owner).get("/queues/at_risk"))
    assert "<th scope=\"col\" class=\"col-escalation\">Next escalation</th>" in page
    assert cell(page, incident.reference) == (
        f"Level 1 · Notify the owner · in {format_duration(dt.datetime(2026, 3, 9, 14, 30) - now)}, "
        "2026-03-09 14:30 GMT")
    assert cell(page, low.reference) == "—"
    desk.check(AT75)
    desk.clock.set(AT75 + dt.timedelta(minutes=47))
    Agent.update(time_zone="America/New_York").where(Agent.id == desk.p.owner.id).execute()
    page = text(desk.login(desk.p.owner).get("/queues/at_risk"))
    assert cell(page, incident.reference) == ("Level 2 · Notify the owning team's leads · in 25 minutes, "
                                              "2026-03-09 11:42 EDT")
    # The incident page's escalation box says the same.
    box = desk.login_page(incident)
    assert ("Next: level 2 (Team lead) at 2026-03-09 11:42 EDT. Steps: Notify the owning team&#39;s leads."
            in box)
    # Acknowledged with a snooze past the level's moment: it fires when the snooze ends.
    desk.login(desk.p.owner).post(f"/incidents/{incident.id}/acknowledge",
                                  data={"reason": "On it", "snooze": "60"})
    page = text(desk.login(desk.p.owner).get("/queues/at_risk"))
    assert cell(page, incident.reference).startswith("Level 2 · Notify the owning team's leads · in 1 hour")
    assert "(snoozed)" in cell(page, incident.reference)
    desk.check(AT90 + dt.timedelta(minutes=38))  # 16:20, after the snooze
    page = text(desk.login(desk.p.owner).get("/queues/at_risk"))
    assert cell(page, incident.reference) == ("Level 3 · Reassign to a team · in 10 minutes, "
                                              "2026-03-09 12:30 EDT")
    # Other queues have no such column.
    assert "Next escalation" not in text(desk.login(desk.p.owner).get("/queues/owned"))


def test_the_column_costs_the_same_queries_for_3_rows_or_30(desk, count_queries):
    mail = Service.create(name="Mail")
    acme = Organisation.create(name="Acme")
    desk.policy(three_levels(conditions={"priority": [1, 2], "service": ["Mail"]}))
    second = three_levels("by-organisation", conditions={"organisation": ["Acme"]}, position=1)
    desk.policy(second)

    def log(n: int) -> None:
        for k in range(n):
            requester = Contact.create(name=f"Req {k}", email=f"r{k}-{n}@example.org",
                                       organisation=acme if k % 2 else None)
            incident = desk.log_p2(title=f"Row {n}-{k}", requester=requester, service=mail if k % 3 else None)
            if k % 4 == 1:  # some escalated already, by hand: they keep their policy
                desk.escalate(LOGGED, incident, desk.p.owner, "early")

    state = desk.app.extensions["helpdesk"]
    state.settings = dataclasses.replace(state.settings, page_size=50)

    def measure() -> tuple[int, str]:
        desk.clock.set(LOGGED + dt.timedelta(minutes=5))
        client = desk.login(desk.p.owner)
        client.get("/queues/at_risk")  # warm up what is done once per client
        count_queries.queries.clear()
        page = text(client.get("/queues/at_risk"))
        return len(count_queries.queries), page

    log(3)
    few, page = measure()
    levels = r'class="next-escalation">Level \d'
    assert len(re.findall(levels, page)) == 2  # the first has neither the service nor the organisation
    log(27)
    many, page = measure()
    assert page.count("<tr data-row") == 30
    assert len(re.findall(levels, page)) == 24 and page.count('class="next-escalation">—') == 6
    assert many == few, "\n".join(count_queries.queries)


def test_with_no_policy_at_all_the_column_says_so_and_reads_only_the_policies(desk, count_queries):
    """A team that has not written a policy pays one query for the column, not five."""
    incident = desk.log_p2()
    desk.clock.set(LOGGED + dt.timedelta(minutes=5))
    client = desk.login(desk.p.owner)
    client.get("/queues/at_risk")
    count_queries.queries.clear()
    page = text(client.get("/queues/at_risk"))
    assert cell(page, incident.reference) == "—"
    escalation = [q for q in count_queries.queries
                  if 'FROM "escalation_' in q or 'FROM "service"' in q or 'JOIN "organisation"' in q]
    assert len(escalation) == 1 and "escalation_policy" in escalation[0], escalation
    desk.policy(three_levels())  # once a policy exists, the column reads what it needs
    page = text(client.get("/queues/at_risk"))
    assert cell(page, incident.reference).startswith("Level 1 · Notify the owner")
