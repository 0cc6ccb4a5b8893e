"""Queues in a real browser (Chromium): a bulk assign where one row went stale, a saved view
shared with a team and used by a teammate, the row density, the header on one row, and
phone cards that keep their labels without overflowing."""

from __future__ import annotations

import re

import pytest
from browser_kit import log_in, require_chromium

from helpdesk import incidents as domain
from helpdesk.models import Incident, Notice

require_chromium()

pytestmark = pytest.mark.browser


def test_bulk_assign_reports_the_row_changed_meanwhile_and_applies_the_others(
        server, personas, page, log_incident, ctx):
    page.set_viewport_size({"width": 1366, "height": 900})
    incidents = [log_incident(title=f"Bulk printer {n}") for n in range(3)]
    log_in(page, server, personas.owner.username)
    page.goto(f"{server}/queues/open")
    page.get_by_label("Select all rows on this page").check()
    assert page.locator("input[data-select]:checked").count() == 3
    # Another agent assigns the second one after the page was loaded.
    stale = incidents[1]
    domain.assign(ctx, stale.id, personas.colleague, personas.network, personas.other)

    bar = page.get_by_role("form", name="Change the selected incidents")
    bar.get_by_label("With selected").select_option("assign")
    bar.get_by_label("Assign to team").select_option(label="Database")
    bar.get_by_label("Assign to agent").select_option(label="Priya Raman")
    assert not bar.get_by_label("Pending reason").is_visible()  # only what the action needs
    bar.get_by_role("button", name="Apply to selected").click()

    result = page.get_by_role("status").filter(has_text="applied")
    result.wait_for()
    assert "2 applied, 1 not applied." in result.inner_text()
    reported = page.locator(".not-applied li")
    assert reported.count() == 1
    assert stale.reference in reported.inner_text()
    assert "Changed by someone else since you loaded the page" in reported.inner_text()
    for incident in (incidents[0], incidents[2]):
        row = page.locator(f'tr[data-incident="{incident.id}"]')
        assert "Database / Priya Raman" in row.locator('td[data-label="Assignee"]').inner_text()
    stale_row = page.locator(f'tr[data-incident="{stale.id}"]')
    assert "Network / Kofi Mensah" in stale_row.locator('td[data-label="Assignee"]').inner_text()
    # The result is a GET page (Post/Redirect/Get): reloading shows it again, sends nothing.
    assert re.search(r"/queues/open\?bulk=[\w-]+$", page.url), page.url
    versions = [Incident.get_by_id(incident.id).version for incident in incidents]
    posts: list[str] = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    page.reload()
    assert "2 applied, 1 not applied." in page.get_by_role("status").filter(has_text="applied").inner_text()
    assert posts == [] and [Incident.get_by_id(i.id).version for i in incidents] == versions


def test_the_list_does_not_refresh_under_the_keyboard_focus(server, personas, page, log_incident, ctx):
    import dataclasses

    ctx.settings = dataclasses.replace(ctx.settings, queue_refresh_seconds=1)
    first = log_incident(title="Printer jam")
    log_in(page, server, personas.owner.username)
    page.goto(f"{server}/queues/open")
    link = page.locator(f'tr[data-incident="{first.id}"] a').first
    link.focus()
    later = log_incident(title="Mail down")
    page.wait_for_timeout(2500)  # two refresh periods: held while the focus is in the list
    assert page.locator(f'tr[data-incident="{later.id}"]').count() == 0
    assert page.evaluate("document.activeElement.closest('tr') && "
                         "document.activeElement.closest('tr').dataset.incident") == str(first.id)
    page.evaluate("document.activeElement.blur()")
    page.locator(f'tr[data-incident="{later.id}"]').wait_for(timeout=5000)  # and then it comes


def test_a_view_saved_and_shared_with_the_team_is_used_by_a_teammate(server, personas, page, log_incident):
    page.set_viewport_size({"width": 1366, "height": 900})
    critical = log_incident(title="Payroll down", impact="high", urgency="high")
    minor = log_incident(title="Mouse squeaks", impact="low", urgency="low")
    log_in(page, server, personas.owner.username)
    page.goto(f"{server}/queues/open")
    page.get_by_label("Priority", exact=True).select_option(label="P1 Critical")
    page.wait_for_url(re.compile(r"priority=1"))
    page.get_by_label("Sort").select_option("due")
    page.wait_for_url(re.compile(r"sort=due"))
    page.locator(".save-view summary").click()
    page.get_by_label("View name").fill("Desk critical")
    page.get_by_label("Share with").select_option(label="Service Desk")
    page.get_by_label("Updated column").uncheck()
    page.get_by_role("button", name="Save view").click()
    page.wait_for_url(re.compile(r"view=\d+"))
    assert page.get_by_role("heading", level=1).inner_text().startswith("Desk critical")

    log_in(page, server, personas.colleague.username)
    nav = page.get_by_role("navigation", name="Queues")
    nav.locator("summary", has_text="Views").click()  # loaded with the counts after the page
    nav.get_by_role("link", name="Desk critical").click()
    page.wait_for_url(re.compile(r"view=\d+"))
    rows = page.locator("tr[data-row]")
    assert rows.count() == 1 and critical.reference in rows.first.inner_text()
    assert minor.reference not in page.locator("#queue-list").inner_text()
    assert page.get_by_label("Sort").input_value() == "due"
    headers = page.locator(".queue thead th").all_inner_texts()
    assert "Due" in headers and "Updated" not in headers
    # a teammate uses it but does not edit it
    assert page.locator(".save-view summary").inner_text() == "Save as a view"


def test_density_switch_and_one_line_rows_with_the_header_on_one_row(server, personas, page, log_incident):
    page.set_viewport_size({"width": 1366, "height": 900})
    log_incident(title="A very long title that would wrap onto a second line in a narrow column " * 2)
    log_incident(title="Short one")
    Notice.create(agent=personas.owner.id, text="SLA warning on something")
    log_in(page, server, personas.owner.username)
    page.goto(f"{server}/queues/open")
    page.locator(".queue-nav .count").first.wait_for()  # counts arrived
    assert page.locator("#bell .unread").is_visible()
    brand = page.locator(".top .brand").bounding_box()
    logout = page.locator(".top .who").bounding_box()  # the menu holding Log out
    header = page.locator("header.top").bounding_box()
    assert header["height"] < 64, header  # one row, not two
    assert abs((brand["y"] + brand["height"] / 2) - (logout["y"] + logout["height"] / 2)) < 8
    last = page.get_by_role("navigation", name="Queues").locator(".queue-nav > ul > li").last.bounding_box()
    actions = page.locator(".top .actions").bounding_box()
    assert last["x"] + last["width"] <= actions["x"] + 1, (last, actions)  # all of the nav shows
    nav = page.get_by_role("navigation", name="Queues")
    assert nav.evaluate("el => el.scrollWidth <= el.clientWidth")  # nothing scrolled out of sight

    def row_heights() -> list[float]:
        return [page.locator("tr[data-row]").nth(n).bounding_box()["height"] for n in range(2)]

    comfortable = row_heights()
    page.get_by_label("Rows", exact=True).select_option("compact")
    page.get_by_role("button", name="Set", exact=True).click()
    page.wait_for_selector("#queue-list.density-compact")
    compact = row_heights()
    assert all(28 <= height <= 36 for height in compact), compact
    assert compact[0] == compact[1]  # the long title does not wrap
    assert all(c < f for c, f in zip(compact, comfortable, strict=True)), (compact, comfortable)
    ref = page.locator("td.ref a").first.bounding_box()
    assert ref["height"] < 24  # "INC-1" on one line
    page.reload()
    assert page.locator("#queue-list.density-compact").count() == 1  # stored, not per page

    # the profile page offers it too
    page.goto(f"{server}/profile")
    page.get_by_label("Queue rows").select_option("comfortable")
    page.get_by_role("button", name="Save row density").click()
    page.goto(f"{server}/queues/open")
    assert page.locator("#queue-list.density-comfortable").count() == 1


def test_phone_cards_keep_owner_and_assignee_labels_without_overflow(server, personas, page, log_incident):
    page.set_viewport_size({"width": 390, "height": 844})
    log_incident(title="Phone card " + "x" * 80, assigned_team=personas.database_team,
                 assigned_agent=personas.assignee)
    log_in(page, server, personas.owner.username)
    page.goto(f"{server}/queues/open")
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, overflow
    for label in ("Owner", "Assignee"):
        cell = page.locator(f'tr[data-row] td[data-label="{label}"]').first
        before = cell.evaluate("el => getComputedStyle(el, '::before').content")
        assert label in before and cell.is_visible()


def test_a_take_from_a_row_that_lost_the_race_comes_back_to_the_queue_saying_who_won(
        server, personas, page, log_incident, ctx):
    page.set_viewport_size({"width": 1366, "height": 900})
    incident = log_incident(title="Label printer offline")
    log_in(page, server, personas.owner.username)
    page.goto(f"{server}/queues/open?sort=oldest")
    row = page.locator(f'tr[data-incident="{incident.id}"]')
    # Sara takes it after this page was loaded.
    domain.take_work(ctx, incident.id, personas.colleague)
    row.get_by_role("button", name=f"Take {incident.reference}").click()
    flash = page.locator(".flash .error")
    flash.wait_for()
    said = f"{incident.reference} was taken by Sara Berg before you; nothing was changed."
    assert said in flash.inner_text()
    assert re.search(r"/queues/open\?sort=oldest$", page.url), page.url
    assert page.get_by_role("heading", level=1).inner_text() == "All open"
    fresh_row = page.locator(f'tr[data-incident="{incident.id}"]')
    assert "Sara Berg" in fresh_row.locator('td[data-label="Assignee"]').inner_text()
    assert fresh_row.get_by_role("button", name=f"Take {incident.reference}").count() == 0


def test_a_refused_bulk_change_keeps_the_ticked_rows_and_the_chosen_action(
        server, personas, page, log_incident, ctx):
    page.set_viewport_size({"width": 1366, "height": 900})
    incidents = [log_incident(title=f"Monitor flickers {n}") for n in range(3)]
    log_in(page, server, personas.owner.username)
    page.goto(f"{server}/queues/open")
    for incident in incidents[:2]:
        page.get_by_label(f"Select {incident.reference}").check()
    bar = page.get_by_role("form", name="Change the selected incidents")
    bar.get_by_label("With selected").select_option("assign")
    bar.get_by_role("button", name="Apply to selected").click()  # neither team nor agent chosen

    page.locator(".bulk-report .error").wait_for()
    assert "Choose a team or an agent to assign to." in page.locator(".bulk-report").inner_text()
    ticked = page.locator("input[data-select]:checked")
    assert sorted(ticked.evaluate_all("boxes => boxes.map(b => b.value.split(':')[0])")) == sorted(
        str(incident.id) for incident in incidents[:2])
    bar = page.get_by_role("form", name="Change the selected incidents")
    assert bar.get_by_label("With selected").input_value() == "assign"
    assert bar.get_by_label("Assign to team").is_visible()  # the action's own fields are shown

    # Now a team, and one of the two changed by someone else meanwhile (a stale row).
    domain.assign(ctx, incidents[1].id, personas.colleague, personas.network, personas.other)
    bar.get_by_label("Assign to team").select_option(label="Database")
    bar.get_by_label("Assign to agent").select_option(label="Priya Raman")
    bar.get_by_role("button", name="Apply to selected").click()
    page.get_by_role("status").filter(has_text="applied").wait_for()
    assert "1 applied, 1 not applied." in page.locator(".bulk-report").inner_text()
    # The row someone else changed is not ticked again (one more click would overwrite their
    # change unseen), and the bar still says what was chosen.
    assert page.locator("input[data-select]:checked").count() == 0
    bar = page.get_by_role("form", name="Change the selected incidents")
    assert bar.get_by_label("With selected").input_value() == "assign"
    assert bar.get_by_label("Assign to team").input_value() == str(personas.database_team.id)
    assert bar.get_by_label("Assign to agent").input_value() == str(personas.assignee.id)


def test_the_bulk_status_choice_offers_only_reachable_statuses_and_starts_unchosen(
        server, personas, page, log_incident):
    incidents = [log_incident(title=f"Badge reader {n}") for n in range(2)]
    log_in(page, server, personas.owner.username)
    page.goto(f"{server}/queues/open")
    for incident in incidents:
        page.get_by_label(f"Select {incident.reference}").check()
    bar = page.get_by_role("form", name="Change the selected incidents")
    bar.get_by_label("With selected").select_option("status")
    status = bar.get_by_label("New status")
    offered = status.evaluate("box => [...box.options].map(o => o.value)")
    assert offered == ["", "in_progress", "pending", "resolved", "closed", "cancelled"]
    assert status.input_value() == ""  # not "New", which every row would refuse
    bar.get_by_role("button", name="Apply to selected").click()
    page.locator(".bulk-report .error").wait_for()
    assert "Choose the status to set." in page.locator(".bulk-report").inner_text()
    assert page.locator("input[data-select]:checked").count() == 2
