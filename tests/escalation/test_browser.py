"""Done when: a team lead configures a three-level policy in the browser, sees in the simulator
what will happen to the next P2, and the real run matches it (Debian's Chromium, Playwright)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from browser_kit import log_in, require_chromium
from playwright.sync_api import expect

from helpdesk.escalation import policies
from helpdesk.models import EscalationPolicy, EscalationRun, Incident

from .conftest import AT75, AT90, DUE, LOGGED

require_chromium()

pytestmark = pytest.mark.browser

POLICY = """name = "standard"
title = "Standard escalation"
[conditions]
priority = [1, 2]

[[levels]]
title = "Owner reviews"
trigger = "fraction"
fraction = 0.75
[[levels.steps]]
step = "notify_owner"

[[levels]]
title = "Team lead"
trigger = "fraction"
fraction = 0.9
[[levels.steps]]
step = "notify_owner_team_leads"

[[levels]]
title = "Second line"
trigger = "breach"
[[levels.steps]]
step = "reassign"
team = "Network"
"""


def _choose_step(page, level, name: str) -> None:
    """Pick a step type; htmx brings back the form with that step's parameter fields."""
    select = level.get_by_label("Step", exact=True).last
    with page.expect_response(lambda r: "/escalation/edit" in r.url and r.request.method == "POST"):
        select.select_option(name)
    expect(level.get_by_label("Step", exact=True).last).to_have_value(name)


def test_an_admin_builds_a_three_level_policy_in_the_form(server, desk, page):
    log_in(page, server, desk.p.admin.username)
    page.goto(f"{server}/escalation")
    page.get_by_role("link", name="New policy").click()
    page.wait_for_url(re.compile(r"/escalation/edit$"))
    policy = page.get_by_role("group", name="Policy", exact=True)
    policy.get_by_label(re.compile("^Name")).fill("standard")
    policy.get_by_label("Title").fill("Standard escalation")
    first = page.get_by_role("group", name="Level 1", exact=True)
    first.get_by_label("Title", exact=False).first.fill("Owner reviews")
    first.get_by_label("Trigger", exact=True).select_option("fraction")
    first.get_by_label(re.compile("^Share of the target")).fill("75")
    _choose_step(page, first, "notify_owner")
    page.get_by_role("button", name="Add a level").click()
    second = page.get_by_role("group", name="Level 2", exact=True)
    second.get_by_label("Trigger", exact=True).select_option("fraction")
    second.get_by_label(re.compile("^Share of the target")).fill("90")
    second.get_by_label("Title", exact=False).first.fill("Team lead")
    _choose_step(page, second, "notify_owner_team_leads")
    page.get_by_role("button", name="Add a level").click()
    third = page.get_by_role("group", name="Level 3", exact=True)
    third.get_by_label("Trigger", exact=True).select_option("breach")
    third.get_by_label("Title", exact=False).first.fill("Second line")
    _choose_step(page, third, "reassign")
    page.get_by_role("button", name="Save policy").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text('Level 3, step 1, parameter "team": is required')
    team = page.get_by_role("group", name="Level 3, step 1").get_by_label(re.compile("^Team"))
    expect(team).to_have_attribute("aria-invalid", "true")
    assert EscalationPolicy.select().count() == 0
    team.select_option("Network")
    page.get_by_role("button", name="Save policy").click()
    page.wait_for_url(re.compile(r"/escalation$"))
    expect(page.locator(".flash")).to_contain_text("Policy standard saved (version 1).")
    with desk.app.app_context():
        saved = policies.definition_of(EscalationPolicy.get())
    assert [(lv["title"], lv["trigger"], lv.get("fraction"), [s["step"] for s in lv["steps"]])
            for lv in saved["levels"]] == [
        ("Owner reviews", "fraction", 0.75, ["notify_owner"]),
        ("Team lead", "fraction", 0.9, ["notify_owner_team_leads"]),
        ("Second line", "breach", None, ["reassign"])]
    assert saved["levels"][2]["steps"][0]["params"] == {"team": "Network"}


def test_a_new_policy_with_a_taken_name_is_refused_not_saved_over_the_existing_one(server, desk, page):
    # The New policy form starts as a draft named "standard". A second lead saving it kept
    # that name and silently replaced the first lead's "standard" policy (as its version 2).
    with desk.app.app_context():
        policies.save(desk.app.extensions["helpdesk"], policies.from_toml(POLICY), desk.p.admin)
    log_in(page, server, desk.p.db_lead.username)
    page.goto(f"{server}/escalation")
    page.get_by_role("link", name="New policy").click()
    page.wait_for_url(re.compile(r"/escalation/edit$"))
    policy = page.get_by_role("group", name="Policy", exact=True)
    expect(policy.get_by_label(re.compile("^Name"))).to_have_value("standard")
    policy.get_by_label("Title").fill("Database out of hours")
    page.get_by_role("button", name="Save policy").click()
    expect(page.get_by_role("alert")).to_contain_text("a policy named 'standard' exists already")
    name = policy.get_by_label(re.compile("^Name"))
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(policy.get_by_label("Title")).to_have_value("Database out of hours")  # nothing typed is lost
    with desk.app.app_context():
        kept = EscalationPolicy.get()
        assert (kept.version, kept.title, len(policies.definition_of(kept)["levels"])) == (
            1, "Standard escalation", 3)
    name.fill("database-nights")
    page.get_by_role("button", name="Save policy").click()
    page.wait_for_url(re.compile(r"/escalation$"))
    expect(page.locator(".flash")).to_contain_text("Policy database-nights saved (version 1).")
    # The existing policy has no team condition (organisation-wide): its edit is an admin's.
    refused = page.goto(f"{server}/escalation/edit?name=standard")
    assert refused.status == 403
    expect(page.locator("main")).to_contain_text("it has no team condition")
    # An admin editing it still saves it as its next version.
    log_in(page, server, desk.p.admin.username)
    page.goto(f"{server}/escalation/edit?name=standard")
    page.get_by_role("group", name="Policy", exact=True).get_by_label("Title").fill("Standard, reviewed")
    page.get_by_role("button", name="Save policy").click()
    expect(page.locator(".flash")).to_contain_text("Policy standard saved (version 2).")


def test_a_lead_configures_simulates_and_the_real_run_matches(server, desk, page):
    p = desk.p
    desk.clock.set(LOGGED - dt.timedelta(hours=1))
    log_in(page, server, p.lead.username)
    page.locator("details.menu:has(.who) > summary").click()  # the header menu under the agent's name
    page.get_by_role("link", name="Escalation").click()
    page.get_by_role("link", name="New policy").click()
    page.get_by_text("Advanced: edit as TOML").click()
    # Her team's policy (the service desk owns every incident); one without a team condition
    # would apply to the whole organisation, which only an admin saves.
    policy = POLICY.replace("priority = [1, 2]\n", 'priority = [1, 2]\nteam = ["Service Desk"]\n')
    page.get_by_label(re.compile("The policy")).fill(policy.replace('team = "Network"', 'team = "Netwrk"'))
    page.get_by_role("button", name="Save the TOML").click()
    page.get_by_role("alert").wait_for()
    refusal = page.get_by_role("alert").inner_text()
    assert "levels[3].steps[1].team: there is no team named 'Netwrk'" in refusal
    page.get_by_label(re.compile("The policy")).fill(policy)
    page.get_by_role("button", name="Save the TOML").click()
    page.wait_for_url(re.compile(r"/escalation$"))
    assert "Policy standard saved (version 1)." in page.locator(".flash").inner_text()

    page.get_by_role("link", name="Simulator").click()
    page.get_by_label("Logged at (your time zone)").fill("2026-03-06T16:30")
    page.get_by_label("Priority").select_option("2")
    page.get_by_label("Horizon (hours)").fill("96")
    page.get_by_role("button", name="Simulate").click()
    page.get_by_role("heading", name="Live policies").wait_for()
    rows = page.get_by_role("row").filter(has_text="Escalation:")
    predicted = [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())]
    assert predicted == ["2026-03-09 14:30 GMT", "2026-03-09 15:42 GMT", "2026-03-09 16:30 GMT"]

    # The next P2 arrives, Friday 16:30, logged by John in the browser.
    desk.clock.set(LOGGED)
    log_in(page, server, p.owner.username)
    page.get_by_role("link", name="New incident").click()
    page.get_by_label("Title").fill("Orders database is slow")
    page.get_by_label("Impact").select_option("high")
    page.get_by_role("button", name="Log incident").click()
    page.wait_for_url(re.compile(r"/incidents/\d+$"))
    incident = Incident.get(Incident.title == "Orders database is slow")
    assert incident.priority == 2
    for moment in (AT75, AT90, DUE):  # the worker's passes at the predicted moments
        desk.check(moment)
    runs = [f"{run.at:%Y-%m-%d %H:%M} GMT" for run in EscalationRun.select().order_by(EscalationRun.id)]
    assert runs == predicted
    # The clock moved past the session's idle limit: John logs in again, as he would.
    url = page.url
    log_in(page, server, p.owner.username)
    page.goto(url)
    panel = page.get_by_role("region", name="Escalation").inner_text()
    assert "Level 3 of Standard escalation (version 1)." in panel
    assert "Network /" in page.get_by_role("region", name="Assignee").inner_text()

