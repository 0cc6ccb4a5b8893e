"""Search and reports in a real browser (Debian's Chromium, Playwright): the header's search
box by keyboard, highlighted results, and report pages with their charts, without console
errors or CSP violations. Skips without Chromium, as tests/test_browser.py does."""

from __future__ import annotations

import re

import pytest
from browser_kit import log_in, require_chromium

from helpdesk import incidents
from helpdesk.testing import PASSWORD

require_chromium()
pytestmark = pytest.mark.browser


def test_search_from_the_header_by_keyboard_then_open_the_reports(app, ctx, server, personas, page,
                                                                  log_incident, tmp_path):
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    incident = log_incident(title="Month-end run failed")
    with app.app_context():
        incidents.add_comment(ctx, incident.id, personas.owner, "Payroll is slow again", public=True)
    page.goto(f"{server}/login")
    page.get_by_label("User name").fill(personas.lead.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/queues/"))

    page.get_by_role("searchbox", name="Search incidents").first.focus()
    page.keyboard.type("payroll slow")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/search\?q=payroll"))
    hit = page.locator(".search-hits li").first
    assert incident.reference in hit.inner_text()
    assert page.locator(".search-hits mark").all_inner_texts() == ["Payroll", "slow"]

    page.locator("details.menu:has(.who) > summary").click()  # the header menu under the agent's name
    page.get_by_role("link", name="Reports", exact=True).click()
    page.wait_for_url(re.compile(r"/reports"))
    assert page.get_by_role("img", name=re.compile("Response target by")).is_visible()
    assert page.locator("#compliance-table").is_visible()
    page.screenshot(path=str(tmp_path / "reports.png"), full_page=True)
    assert problems == []


def test_a_refused_report_period_comes_back_in_its_form_beside_the_reason(server, personas, page,
                                                                          log_incident):
    # A period ending before it starts gave the generic "Error 422 · Back to the queues" page:
    # no form, so the lead went back and guessed what to correct.
    log_incident(title="Printer offline")
    log_in(page, server, personas.lead.username)
    page.goto(f"{server}/reports/backlog")
    form = page.get_by_role("form", name="Report period and filters")
    form.get_by_label("From").fill("2026-12-10")
    form.get_by_label("To").fill("2026-12-01")
    form.get_by_label("Priority").select_option(label="P2 High")
    form.get_by_label("Group by").select_option(label="Priority")
    with page.expect_navigation() as sent:
        form.get_by_role("button", name="Show").click()
    assert sent.value.status == 422
    assert page.get_by_role("heading", level=1).inner_text() == "Backlog by age"
    assert "The start of the period is after its end." in page.get_by_role("alert").inner_text()
    form = page.get_by_role("form", name="Report period and filters")
    assert form.get_by_label("From").input_value() == "2026-12-10"
    assert form.get_by_label("To").input_value() == "2026-12-01"
    assert form.get_by_label("Priority").evaluate("s => s.selectedOptions[0].text") == "P2 High"
    assert form.get_by_label("Group by").evaluate("s => s.selectedOptions[0].text") == "Priority"
    form.get_by_label("From").fill("2026-11-01")
    with page.expect_navigation() as corrected:
        form.get_by_role("button", name="Show").click()
    assert corrected.value.status == 200
    assert "priority=2" in page.url and page.get_by_role("table").count() >= 1
