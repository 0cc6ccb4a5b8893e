"""Search and reports in a real browser (Debian's Chromium, Playwright): the header's search
box by keyboard, highlighted results, and report pages with their charts, without console
errors or CSP violations. Skips without Chromium, as tests/test_browser.py does."""

from __future__ import annotations

import re

import pytest
from browser_kit import require_chromium

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
