"""The queue console as an agent meets it: rows (markup contract, due column, pairs), bulk
changes reported row by row, saved views and who may see or change them, the row density,
the bounded counts in the navigation, and a page's query count that does not follow its size."""

from __future__ import annotations

import dataclasses
import html
import json
import re
from typing import Any

import pytest
from flask import Flask

from helpdesk import incidents as domain
from helpdesk import queues
from helpdesk.models import Agent, Incident, SavedView
from helpdesk.testing import AgentClient


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def row_value(incident: Incident) -> str:
    return f"{incident.id}:{incident.version}"


def fresh(incident: Incident) -> Incident:
    return Incident.get_by_id(incident.id)


@pytest.fixture
def helpdesk_plugins() -> list[Any]:
    """Business hours and the priority SLA policy, so incidents have clocks and due times."""
    from helpdesk_plugins import business_hours, sla_priority

    return [business_hours, sla_priority]


@pytest.fixture
def take_route(app: Flask) -> None:
    """The one-step Take route lives with the incident pages (another part of the console);
    until it is there, stand in for it so the queue offers its Take buttons."""
    if "incidents.take_work" not in app.view_functions:
        app.add_url_rule("/incidents/<int:incident_id>/take-work", endpoint="incidents.take_work",
                         view_func=lambda incident_id: ("", 204), methods=["POST"])


# -- rows ---------------------------------------------------------------------------------------


def test_rows_carry_the_shortcut_contract_and_say_unassigned_plainly(app, personas, log_incident,
                                                                     take_route):
    free = log_incident(title="Printer jammed")
    taken = log_incident(title="VPN down", assigned_team=personas.database_team,
                         assigned_agent=personas.assignee)
    page = text(AgentClient(app, personas.owner).get("/queues/open"))
    rows = re.findall(r"<tr data-row[^>]*>.*?</tr>", page, re.S)
    assert len(rows) == 2
    by_id = {int(re.search(r'data-incident="(\d+)"', row).group(1)): row for row in rows}
    free_row, taken_row = by_id[free.id], by_id[taken.id]
    assert re.search(rf'<a href="/incidents/{free.id}" data-open>INC-{free.id}</a>', free_row)
    # the viewer may take the unassigned one only, with the version seen
    assert 'data-shortcut="take"' in free_row and 'data-shortcut="take"' not in taken_row
    form = re.search(r'<form method="post" action="([^"]+)" class="take">(.*?)</form>', free_row, re.S)
    assert form.group(1) == f"/incidents/{free.id}/take-work"
    assert 'name="csrf_token"' in form.group(2)
    assert f'name="version" value="{free.version}"' in form.group(2)
    # no team, no agent: "Unassigned", not "Unassigned / no agent"
    assignee = re.search(r'<td data-label="Assignee">(.*?)</td>', free_row).group(1)
    assert "Unassigned" in assignee and "no agent" not in assignee
    assert "Database" in taken_row and "Priya" in taken_row
    # each row's checkbox posts the id and the version the agent saw
    assert f'value="{row_value(free)}" form="bulk-form"' in free_row
    # the Sort label is a real label of its control
    assert '<label for="f-sort">Sort</label>' in page and 'id="f-sort"' in page


def test_a_team_joined_or_left_between_two_visits_changes_the_queue_at_once(app, personas, log_incident):
    """A first page's query is kept per agent and teams: joining the Network team shows its
    incidents on the next visit to My teams and At risk, and leaving it hides them again."""
    from helpdesk.models import Membership

    outage = log_incident(title="Core switch down", actor=None, owner_team=personas.network,
                          assigned_team=personas.network)
    client = AgentClient(app, personas.assignee)  # Database only

    def shown(queue: str) -> bool:
        return f'data-incident="{outage.id}"' in text(client.get(f"/queues/{queue}"))

    assert not shown("teams") and not shown("at_risk")
    with app.app_context():
        joined = Membership.create(team=personas.network, agent=personas.assignee)
    assert shown("teams") and shown("at_risk")
    with app.app_context():
        joined.delete_instance()
    assert not shown("teams") and not shown("at_risk")


def test_due_column_shows_the_running_due_time_and_marks_a_breach_in_words(app, personas, log_incident,
                                                                           frozen_clock):
    from helpdesk import sla

    incident = log_incident(title="Disk full", impact="high", urgency="high")
    if incident.sla_due_at is None and fresh(incident).sla_due_at is None:
        pytest.skip("no SLA policy applies in this configuration")
    client = AgentClient(app, personas.owner)
    row = re.search(r'<td data-label="Due" class="due">(.*?)</td>', text(client.get("/queues/open")), re.S)
    assert "left" in row.group(1) and "<time" in row.group(1) and "Breached" not in row.group(1)
    frozen_clock.advance(days=30)
    with app.app_context():
        sla.check(app.extensions["helpdesk"], frozen_clock.now)
    page = text(AgentClient(app, personas.owner).get("/queues/breached"))  # a month later: log in again
    row = re.search(r'<td data-label="Due" class="due">(.*?)</td>', page, re.S)
    assert row, page[page.find("<main"):][:3000]
    assert "Breached" in row.group(1) and "over" in row.group(1)


def test_the_due_sort_puts_breached_incidents_first_most_overdue_first(app, personas, log_incident):
    """ "Nearest SLA breach": a breached, unmet target is the most urgent work, not the least
    (it has no running due time, and sorted after everything, rows without an SLA included)."""
    import datetime as dt

    from helpdesk.models import SlaClock

    later_breach = log_incident(title="Breached an hour ago", impact="high", urgency="high")
    running = log_incident(title="Time left", impact="low", urgency="low")
    earlier_breach = log_incident(title="Breached two hours ago", impact="low", urgency="low")
    answered_late = log_incident(title="Answered late, resolution running", impact="low", urgency="medium")
    no_sla = log_incident(title="No SLA")
    with app.app_context():
        def response(incident: Incident) -> Any:
            return (SlaClock.target == "response") & (SlaClock.incident == incident.id)

        moment = fresh(running).created_at
        SlaClock.update(breached_at=moment - dt.timedelta(hours=1)).where(response(later_breach)).execute()
        SlaClock.update(breached_at=moment - dt.timedelta(hours=2)).where(response(earlier_breach)).execute()
        SlaClock.update(breached_at=moment - dt.timedelta(hours=3), met_at=moment).where(
            response(answered_late)).execute()
        SlaClock.delete().where(SlaClock.incident == no_sla.id).execute()
        assert fresh(answered_late).sla_breached and fresh(answered_late).sla_due_at is not None
        resolution_due = {i.id: fresh(i).sla_due_at for i in (running, answered_late)}
        later = sorted([running.id, answered_late.id], key=lambda i: (resolution_due[i], i))
        expected = [earlier_breach.id, later_breach.id, *later, no_sla.id]
        for queue in ("open", "teams", "breached", "owned"):
            ids, _ = queues.page_ids(queue, personas.owner, queues.Filters(sort="due"), 10)
            assert ids == [i for i in expected if i in ids], queue
        assert queues.page_ids("open", personas.owner, queues.Filters(sort="due"), 10)[0] == expected
        breached, _ = queues.page_ids("breached", personas.owner, queues.Filters(sort="due"), 10)
        assert breached == [earlier_breach.id, later_breach.id, answered_late.id]
        # a page boundary inside the breached rows keeps the order (the keyset reads the breach)
        first, after = queues.page_ids("open", personas.owner, queues.Filters(sort="due"), 1)
        second, _ = queues.page_ids("open", personas.owner, queues.Filters(sort="due"), 2, after)
        assert first + second == expected[:3]
    page = text(AgentClient(app, personas.owner).get("/queues/open?sort=due"))
    assert page.index("Breached two hours ago") < page.index("Breached an hour ago") < page.index("Time left")


def test_every_queue_sorts_by_due_time_with_rows_without_one_last(app, personas, log_incident):
    first = log_incident(title="Soon", impact="high", urgency="high")
    later = log_incident(title="Later", impact="low", urgency="low")
    none = log_incident(title="No clock")
    Incident.update(sla_due_at=None).where(Incident.id == none.id).execute()
    with app.app_context():
        due = {i.id: i.sla_due_at for i in Incident.select()}
        ids, _ = queues.page_ids("open", personas.owner, queues.Filters(sort="due"), 10)
    expected = sorted([first.id, later.id, none.id],
                      key=lambda i: (due[i] is None, due[i] or 0, i))
    assert ids == expected
    page = text(AgentClient(app, personas.owner).get("/queues/unassigned?sort=due"))
    assert '<option value="due" selected>' in page


# -- bulk changes -------------------------------------------------------------------------------


def post_bulk(client: AgentClient, rows: list[str], back: str = "/queues/open", **fields: Any) -> Any:
    return client.post("/queue-bulk", data={"queue": "open", "back": back, "row": rows, **fields})


def bulk(client: AgentClient, rows: list[str], **fields: Any) -> Any:
    """The bar's POST answers with a redirect to the queue (Post/Redirect/Get): that page."""
    posted = post_bulk(client, rows, **fields)
    assert posted.status_code == 303, text(posted)
    assert posted.headers["Location"].startswith("/queues/open?")
    return client.get(posted.headers["Location"])


def test_bulk_assign_applies_each_row_and_reports_the_stale_one(app, ctx, personas, log_incident):
    one, two, three = (log_incident(title=f"Bulk {n}") for n in range(3))
    seen = [row_value(i) for i in (one, two, three)]
    # someone else changes the second after the page was loaded
    domain.assign(ctx, two.id, personas.colleague, personas.network, personas.other)
    response = bulk(AgentClient(app, personas.owner), seen, action="assign",
                    assigned_team=personas.database_team.id, assigned_agent=personas.assignee.id)
    assert response.status_code == 200
    page = html.unescape(text(response))
    assert "2 applied, 1 not applied." in page
    assert re.search(rf"INC-{two.id}</a>:\s*not applied \(stale\) — Changed by someone else", page)
    assert 'role="status" aria-live="polite"' in text(response)
    assert fresh(one).assigned_agent_id == personas.assignee.id
    assert fresh(three).assigned_agent_id == personas.assignee.id
    assert fresh(two).assigned_agent_id == personas.other.id


def test_after_a_bulk_change_the_page_keeps_the_queue_and_its_filters(app, personas, log_incident):
    one = log_incident(title="Kept filter", impact="high", urgency="high")
    log_incident(title="Filtered out", impact="low", urgency="low")
    client = AgentClient(app, personas.owner)
    posted = post_bulk(client, [row_value(one)], back="/queues/open?priority=1&sort=due", action="take")
    assert posted.status_code == 303
    page = text(client.get(posted.headers["Location"]))
    assert "1 applied, 0 not applied." in page and "Filtered out" not in page
    # the forms on the result page return to the filtered queue, not to the bulk route
    assert page.count('name="back" value="/queues/open?priority=1&amp;sort=due"') == 2


def test_the_page_after_a_bulk_change_is_a_get_a_reload_shows_again_and_changes_nothing(
        app, ctx, personas, log_incident):
    """Post/Redirect/Get: reloading the result page must not send the bulk change again (nor
    make the browser ask to resend form data); the result, the ticks and the bar stay."""
    free = log_incident(title="Free", impact="high", urgency="high")
    taken = log_incident(title="Taken", impact="high", urgency="high",
                         assigned_team=personas.database_team, assigned_agent=personas.assignee)
    client = AgentClient(app, personas.owner)
    posted = post_bulk(client, [row_value(free), row_value(taken)], back="/queues/open?priority=1&sort=due",
                       action="take")
    assert posted.status_code == 303
    target = posted.headers["Location"]
    assert re.fullmatch(r"/queues/open\?priority=1&sort=due&bulk=[\w-]+", target), target
    versions = {i.id: fresh(i).version for i in (free, taken)}
    first, again = text(client.get(target)), text(client.get(target))  # the page, then a reload
    assert {i.id: fresh(i).version for i in (free, taken)} == versions, "a reload changed nothing"
    for page in (first, again):
        report = html.unescape(re.search(r'class="bulk-report.*?</section>', page, re.S).group(0))
        assert "1 applied, 1 not applied." in report and f"INC-{taken.id}" in report
        box = r'value="(\d+):\d+" form="bulk-form" data-select aria-label="[^"]+"( checked)?'
        assert {row for row, checked in re.findall(box, page) if checked} == {str(taken.id)}
        assert '<option value="take" selected>' in page
    # What the page links to or posts back to is the queue with its filters, not this result.
    assert first.count('name="back" value="/queues/open?priority=1&amp;sort=due"') == 2
    assert "bulk=" not in re.search(r'id="queue-list"[^>]*hx-get="([^"]*)"', first).group(1)
    exports = re.findall(r'href="(/queues/open/export[^"]*)"', first)
    assert len(exports) == 2 and all("priority=1" in link and "bulk=" not in link for link in exports)
    # Changed by someone else after the result was shown: a reload does not tick it again.
    domain.override_priority(ctx, taken.id, personas.colleague, 2, "Only one floor")
    later = text(client.get(target.replace("priority=1", "priority=2")))
    assert "1 applied, 1 not applied." in html.unescape(later)
    assert f'value="{taken.id}:{fresh(taken).version}" form="bulk-form" data-select' in later
    assert not re.search(rf'value="{taken.id}:\d+" form="bulk-form" data-select aria-label="[^"]+" checked',
                         later)
    # Only the agent who ran it sees the result; for anyone else it is the plain queue.
    other = text(AgentClient(app, personas.colleague).get(target))
    assert "bulk-report" not in other and "<h1>" in other


def test_bulk_reports_the_domains_reason_for_a_refused_row(app, ctx, personas, log_incident):
    mine = log_incident(title="Free")
    theirs = log_incident(title="Taken", assigned_team=personas.database_team,
                          assigned_agent=personas.assignee)
    response = bulk(AgentClient(app, personas.owner), [row_value(mine), row_value(theirs)], action="take")
    page = html.unescape(text(response))
    assert "1 applied, 1 not applied." in page
    refused = re.search(rf"INC-{theirs.id}</a>:\s*not applied — (.+?)</li>", page, re.S).group(1)
    assert refused.strip() and "Changed by someone else" not in refused
    assert fresh(mine).assigned_agent_id == personas.owner.id and fresh(mine).status == "in_progress"
    assert fresh(theirs).assigned_agent_id == personas.assignee.id


def test_bulk_status_and_priority_go_through_the_domain_rules(app, personas, log_incident):
    one, two = log_incident(title="A"), log_incident(title="B")
    client = AgentClient(app, personas.owner)
    page = html.unescape(text(bulk(client, [row_value(one), row_value(two)], action="priority",
                                   priority="1")))
    assert "0 applied, 2 not applied." in page and "Give a reason" in page  # the domain's rule
    page = html.unescape(text(bulk(client, [row_value(one), row_value(two)], action="priority",
                                   priority="1", reason="Whole floor down")))
    assert "2 applied, 0 not applied." in page
    assert fresh(one).priority == 1 and fresh(two).priority == 1
    page = html.unescape(text(bulk(client, [row_value(fresh(one))], action="status", status="pending",
                                   pending_reason="customer")))
    assert "1 applied, 0 not applied." in page and fresh(one).status == "pending"


def test_bulk_ownership_take_and_transfer_follow_the_ownership_rules(app, personas, log_incident):
    """A lead hands several incidents to another team's agent before leaving (a reason each, as on
    the incident page); the desk takes ownership of incoming unowned incidents in one go."""
    p = personas
    unowned = [log_incident(title=f"From the portal {n}", actor=None) for n in range(2)]
    owned_elsewhere = log_incident(title="Sara's", actor=p.colleague)
    rows = [row_value(i) for i in (*unowned, owned_elsewhere)]
    page = html.unescape(text(bulk(AgentClient(app, p.owner), rows, action="own")))
    assert "2 applied, 1 not applied." in page and "already owned by Sara Berg" in page
    assert [fresh(i).owner_agent_id for i in unowned] == [p.owner.id, p.owner.id]

    mine = [fresh(i) for i in unowned]
    client = AgentClient(app, p.owner)
    # No reason: the domain's rule refuses every owned row, the bar keeps its choices.
    page = html.unescape(text(bulk(client, [row_value(i) for i in mine], action="transfer",
                                   owner_team=p.database_team.id, owner_agent=p.assignee.id)))
    assert "0 applied, 2 not applied." in page and "Give a reason for transferring ownership" in page
    assert '<option value="transfer" selected>' in page
    assert f'<option value="{p.assignee.id}" selected' in page
    page = html.unescape(text(bulk(client, [row_value(i) for i in mine], action="transfer",
                                   owner_team=p.database_team.id, owner_agent=p.assignee.id,
                                   transfer_reason="Database work from now on")))
    assert "2 applied, 0 not applied." in page
    assert {(fresh(i).owner_team_id, fresh(i).owner_agent_id) for i in mine} == {(p.database_team.id,
                                                                                  p.assignee.id)}
    # An agent may not transfer what someone else owns (the incident page's rule, row by row).
    page = html.unescape(text(bulk(AgentClient(app, p.owner), [row_value(owned_elsewhere)], action="transfer",
                                   owner_team=p.service_desk.id, transfer_reason="Mine now")))
    assert "0 applied, 1 not applied." in page and "Only the owner" in page
    assert fresh(owned_elsewhere).owner_agent_id == p.colleague.id
    # A transfer without a team is refused as a whole: nothing runs.
    page = text(bulk(client, [row_value(fresh(mine[0]))], action="transfer", transfer_reason="x"))
    assert "Choose the team to transfer ownership to. Nothing was changed" in page


def test_a_refused_bulk_change_comes_back_with_the_rows_ticked_and_the_bar_as_it_was(
        app, personas, log_incident):
    one, two, other = log_incident(title="A"), log_incident(title="B"), log_incident(title="C")
    client = AgentClient(app, personas.owner)
    response = bulk(client, [row_value(one), row_value(two)], action="status", status="cancelled-ish",
                    note="Duplicate of the outage")
    page = text(response)
    assert "Choose the status to set. Nothing was changed; your selection is kept." in page
    box = r'value="(\d+):\d+" form="bulk-form" data-select aria-label="[^"]+" checked'
    ticked = set(re.findall(box, page))
    assert ticked == {str(one.id), str(two.id)}  # and not C
    assert '<option value="status" selected>' in page
    assert 'id="bulk-note" name="note" maxlength="2000" value="Duplicate of the outage"' in page
    assert fresh(one).version == one.version and fresh(other).version == other.version


def test_after_a_bulk_run_a_refused_row_stays_ticked_but_a_row_someone_changed_does_not(
        app, personas, log_incident):
    """Ticked again with its new version, a row another agent changed meanwhile would be
    overwritten by one more click on Apply, unseen (SECURITY-CASES G12)."""
    ready, raced, held = log_incident(title="Ready"), log_incident(title="Raced"), log_incident(title="Held")
    ctx = app.extensions["helpdesk"]
    with app.app_context():
        domain.change_status(ctx, held.id, personas.owner, "in_progress")
    seen = [row_value(ready), row_value(raced), row_value(fresh(held))]
    with app.app_context():
        domain.override_priority(ctx, raced.id, personas.colleague, 1, "CEO affected")
    client = AgentClient(app, personas.owner)
    page = text(bulk(client, seen, action="status", status="in_progress"))  # Held: already so
    report = html.unescape(re.search(r'class="bulk-report.*?</section>', page, re.S).group(0))
    assert "1 applied, 2 not applied." in report, report
    box = r'value="(\d+):\d+" form="bulk-form" data-select aria-label="[^"]+"( checked)?'
    ticked = {row for row, checked in re.findall(box, page) if checked}
    assert ticked == {str(held.id)}, "a refused row stays ticked; a changed one waits for a deliberate tick"
    assert fresh(raced).priority == 1 and fresh(raced).status == "new"
    assert "already in progress" in report and "Changed by someone else" in report
    # Refused by a rule and changed by someone else as well: not ticked either.
    with app.app_context():
        domain.override_priority(ctx, held.id, personas.colleague, 1, "VIP")
    page = text(bulk(client, [row_value(fresh(ready)), row_value(held)], action="status",
                     status="in_progress"))
    assert "0 applied, 2 not applied." in html.unescape(page)
    ticked = {row for row, checked in re.findall(box, page) if checked}
    assert ticked == {str(ready.id)}, "only the row as the agent saw it stays ticked"
    assert '<option value="status" selected>' in page, "the bar keeps its choices"


def test_bulk_needs_csrf_a_login_and_a_bounded_selection(app, personas, log_incident):
    incident = log_incident(title="Guarded")
    row = row_value(incident)
    client = AgentClient(app, personas.owner)
    forged = client.http.post("/queue-bulk", data={"queue": "open", "row": [row], "action": "take"})
    assert forged.status_code == 400 and fresh(incident).assigned_agent_id is None
    anonymous = AgentClient(app, None).post("/queue-bulk", data={"queue": "open", "row": [row],
                                                                 "action": "take"})
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    assert fresh(incident).version == incident.version
    too_many = post_bulk(client, [f"{n}:1" for n in range(1, 202)], action="take")
    assert too_many.status_code == 413 and "at most 200 rows" in text(too_many)
    assert post_bulk(client, ["x:1"], action="take").status_code == 400
    nothing = bulk(client, [], action="take")
    assert "Select at least one row" in text(nothing)
    unknown = bulk(client, [row], action="delete")
    assert "Choose what to do" in text(unknown) and fresh(incident).version == incident.version


# -- saved views --------------------------------------------------------------------------------


def save(client: AgentClient, **fields: Any) -> Any:
    data = {"name": "P1 in Database", "queue": "open", "query": "priority=1&sort=due",
            "column": ["priority", "status", "due", "assignee"], **fields}
    return client.post("/views", data=data)


def test_a_shared_view_is_used_by_a_teammate_but_not_seen_by_another_team(app, personas, log_incident):
    wanted = log_incident(title="Critical one", impact="high", urgency="high")
    log_incident(title="Minor one", impact="low", urgency="low")
    owner = AgentClient(app, personas.owner)
    created = save(owner, team_share=personas.service_desk.id)
    assert created.status_code == 303
    view = SavedView.get(SavedView.name == "P1 in Database")
    assert view.team_id == personas.service_desk.id and json.loads(view.filters)["sort"] == ["due"]

    teammate = AgentClient(app, personas.colleague)
    assert f'data-view="{view.id}"' in text(teammate.get("/queue-nav"))
    opened = teammate.get(f"/queues/open?view={view.id}")  # its filters spelled out in the address
    assert opened.status_code == 303 and "priority=1" in opened.headers["Location"]
    assert "sort=due" in opened.headers["Location"]
    page = text(teammate.get(opened.headers["Location"]))
    exports = re.search(r'<p class="export-links"[^>]*>.*?</p>', page, re.S).group(0)
    assert "priority=1" in exports and "sort=due" in exports  # the export holds what the view shows
    assert f"INC-{wanted.id}<" in page and "Minor one" not in page
    assert '<th scope="col" class="col-updated">' not in page  # the view's columns
    assert '<th scope="col" class="col-due">Due</th>' in page

    outsider = AgentClient(app, personas.other)  # Network team
    assert f'data-view="{view.id}"' not in text(outsider.get("/queue-nav"))
    assert outsider.get(f"/queues/open?view={view.id}").status_code == 404
    assert outsider.post(f"/views/{view.id}/delete").status_code == 404


def test_only_the_creator_or_a_lead_of_its_team_changes_a_shared_view(app, personas):
    owner = AgentClient(app, personas.owner)
    save(owner, team_share=personas.service_desk.id)
    view = SavedView.get(SavedView.name == "P1 in Database")
    teammate = AgentClient(app, personas.colleague)
    assert save(teammate, name="Renamed").status_code == 303  # a teammate may save their own copy
    denied = teammate.post(f"/views/{view.id}", data={"name": "Hijacked", "queue": "open", "query": ""})
    assert denied.status_code == 403
    assert teammate.post(f"/views/{view.id}/delete").status_code == 403
    assert SavedView.get_by_id(view.id).name == "P1 in Database"
    lead = AgentClient(app, personas.lead)  # service-desk lead
    changed = lead.post(f"/views/{view.id}", data={"name": "Desk P1", "queue": "open", "query": "priority=1",
                                                    "team_share": personas.service_desk.id})
    assert changed.status_code == 303 and SavedView.get_by_id(view.id).name == "Desk P1"
    assert SavedView.get_by_id(view.id).owner_id == personas.owner.id
    assert owner.post(f"/views/{view.id}/delete").status_code == 303
    assert SavedView.get_or_none(SavedView.id == view.id) is None


@pytest.mark.parametrize(("fields", "message"), [
    ({"query": "colour=red"}, "Unknown filter &#39;colour&#39;"),
    ({"query": "status=exploded"}, "Unknown status filter"),
    ({"name": "x" * 61}, "at most 60 characters"),
    ({"name": "   "}, "Give the view a name"),
    ({"column": ["secret"]}, "Unknown column"),
    ({"queue": "everything"}, "There is no queue"),
    ({"query": "q=" + "a" * 201}, "search text has at most 200 characters"),
    ({"query": "status=new&" * 200}, "filters have at most 2000 characters"),  # redirected to, once opened
])
def test_view_input_is_checked_with_a_clear_error(app, personas, fields, message):
    response = save(AgentClient(app, personas.owner), **fields)
    assert response.status_code == 422 and message in text(response)
    assert SavedView.select().count() == 0


def test_view_names_are_unique_per_owner_and_shared_only_with_own_teams(app, personas):
    owner = AgentClient(app, personas.owner)
    assert save(owner).status_code == 303
    again = save(owner, column=["owner", "priority"])
    assert again.status_code == 422 and "already a view named" in html.unescape(text(again))
    # The queue again, with the form open on what was typed: nothing to type twice.
    page = text(again)
    assert '<details class="save-view" open>' in page and 'value="P1 in Database"' in page
    assert 'value="owner" checked' in page and 'value="status" checked' not in page
    assert 'name="query" value="priority=1&amp;sort=due"' in page
    assert save(AgentClient(app, personas.colleague)).status_code == 303  # another owner: fine
    foreign = save(owner, name="Other", team_share=personas.network.id)
    assert foreign.status_code == 422 and "one of your teams" in text(foreign)


# -- density ------------------------------------------------------------------------------------


def test_density_is_stored_per_agent(app, personas, log_incident):
    log_incident(title="Dense")
    client = AgentClient(app, personas.owner)
    assert "density-comfortable" in text(client.get("/queues/open"))
    answer = client.post("/queue-density", data={"density": "compact", "back": "/queues/open?sort=newest"})
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/queues/open?sort=newest")
    assert "density-compact" in text(client.get("/queues/open"))
    assert Agent.get_by_id(personas.owner.id).queue_density == "compact"
    assert "density-comfortable" in text(AgentClient(app, personas.colleague).get("/queues/open"))
    assert client.post("/queue-density", data={"density": "tiny"}).status_code == 422
    for offsite in ("//evil.example/", "/\\evil.example/", "https://evil.example/"):
        answer = client.post("/queue-density", data={"density": "compact", "back": offsite})
        assert "evil" not in answer.headers["Location"], offsite


# -- counts -------------------------------------------------------------------------------------


def test_counts_per_queue_follow_the_viewer(app, ctx, personas, log_incident):
    db, priya = personas.database_team, personas.assignee
    log_incident(title="John owns, Priya works", assigned_team=db, assigned_agent=priya)
    log_incident(title="John owns, unassigned agent", assigned_team=db)
    log_incident(title="Nobody owns", actor=None)
    closed = log_incident(title="Closed", assigned_team=db, assigned_agent=priya)
    domain.change_status(ctx, closed.id, priya, "cancelled", note="Not needed")
    with app.app_context():
        john, mine = queues.counts(personas.owner), queues.counts(priya)
        for agent, found in ((personas.owner, john), (priya, mine)):
            for queue in queues.QUEUES:
                whole = Incident.select().where(queues.queue_condition(queue, agent) & queues.ACTIVE).count()
                assert found[queue] == whole, (agent.username, queue)
    assert mine["assigned"] == 1 and john["assigned"] == 0
    assert john["open"] == 3 and mine["open"] == 3
    nav = text(AgentClient(app, priya).get("/queue-nav?current=assigned"))
    assert re.search(r'href="/queues/assigned" aria-current="page">Assigned to me '
                     r'<span class="count"[^>]*>1</span>', nav)


def test_counts_stop_at_the_cap_and_say_so(app, personas, log_incident, monkeypatch):
    for n in range(4):
        log_incident(title=f"Many {n}")
    monkeypatch.setattr(queues, "COUNT_LIMIT", 3)
    with app.app_context():
        assert queues.counts(personas.owner)["open"] == 3
    assert queues.count_label(3) == "2+"
    assert ">2+</span>" in text(AgentClient(app, personas.owner).get("/queue-nav"))


# -- query count --------------------------------------------------------------------------------


def test_queue_page_query_count_is_the_same_at_page_size_10_and_100(app, personas, log_incident,
                                                                     count_queries, take_route):
    for n in range(105):
        log_incident(title=f"Row {n}", assigned_team=personas.database_team,
                     assigned_agent=personas.assignee if n % 2 else None)
    state = app.extensions["helpdesk"]
    client = AgentClient(app, personas.owner)
    client.get("/queues/open")  # warm up what is done once per client
    measured = {}
    for size in (10, 100):
        state.settings = dataclasses.replace(state.settings, page_size=size)
        count_queries.queries.clear()
        for sort in ("updated", "due"):
            response = client.get(f"/queues/open?sort={sort}")
            assert response.status_code == 200
            assert text(response).count("<tr data-row") == size
        measured[size] = len(count_queries.queries)
    assert measured[10] == measured[100], measured


def test_the_queue_filter_finds_words_whatever_their_case_and_takes_wildcards_literally(
        personas, login, incident_factory):
    titles = ["Printer on floor 3", "Laptop of ZOË", "Disk 500 GB full", "Disk 50% full", "Mail_relay down"]
    for title in titles:
        incident_factory(title=title)
    agent = login(personas.owner)

    def found(query: str) -> list[str]:
        page = agent.get("/queues/open", query_string={"q": query}).get_data(as_text=True)
        return [title for title in titles if title in page.replace("&amp;", "&")]

    assert found("PRINTER") == ["Printer on floor 3"]
    assert found("zoë") == ["Laptop of ZOË"]
    assert found("50%") == ["Disk 50% full"]
    assert found("l_r") == ["Mail_relay down"]
    assert found("lr") == []
