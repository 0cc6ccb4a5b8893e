"""Search and reports in a real browser (Debian's Chromium, Playwright): the header's search
box by keyboard, highlighted results, and report pages with their charts, without console
errors or CSP violations. Skips without Chromium, as tests/test_browser.py does."""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from waitress.server import create_server

from helpdesk import incidents
from helpdesk.testing import PASSWORD

CHROMIUM = os.environ.get("HELPDESK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"CI=true but Chromium is missing at {CHROMIUM}: apt-get install chromium")
    pytest.skip(f"Chromium not found at {CHROMIUM}", allow_module_level=True)
pytestmark = pytest.mark.browser


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_type_launch_args, "executable_path": CHROMIUM,
            "args": ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync"]}


@pytest.fixture
def server(app: Any) -> Iterator[str]:
    httpd = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=httpd.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.effective_port}"
    httpd.close()
    thread.join(timeout=5)


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

    page.get_by_role("link", name="Reports", exact=True).click()
    page.wait_for_url(re.compile(r"/reports"))
    assert page.get_by_role("img", name=re.compile("Response target by")).is_visible()
    assert page.locator("#compliance-table").is_visible()
    page.screenshot(path=str(tmp_path / "reports.png"), full_page=True)
    assert problems == []
