"""What every browser test shares: Debian's Chromium, driven by Playwright, and logging in.

A browser test module calls ``require_chromium()`` at import: without Chromium it skips with
the reason shown; with CI=true it fails instead, so a CI run can never pass without having
driven the browser. The live server and the launch arguments are fixtures in conftest.py.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

import pytest

CHROMIUM = os.environ.get("HELPDESK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = os.path.exists(CHROMIUM)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_chromium() -> None:
    """Skip the calling module without Chromium (fail under CI=true)."""
    if HAVE_CHROMIUM:
        return
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"CI=true but Chromium is missing at {CHROMIUM}: apt-get install chromium")
    pytest.skip(f"Chromium not found at {CHROMIUM}; apt-get install chromium to run browser tests",
                allow_module_level=True)


def leave_page(page: Any, attempts: int = 3) -> None:
    """Go to about:blank, retrying if the page's own navigation (an htmx "log in" redirect)
    interrupts it."""
    from playwright.sync_api import Error

    for attempt in range(attempts):
        try:
            page.goto("about:blank")
            return
        except Error as error:
            if "interrupted by another navigation" not in str(error) or attempt == attempts - 1:
                raise
            page.wait_for_load_state()


def log_in(page: Any, base: str, username: str) -> None:
    """Log in afresh (any earlier session's cookies dropped) and wait for the first queue page."""
    from helpdesk.testing import PASSWORD  # not at import: conftest imports this module early

    # Leave the old page first: its htmx requests (queue counts, refreshes) would otherwise be
    # answered "log in" once the cookies are gone and navigate away under this goto. If the
    # session has already ended, such an answer may be navigating right now: leave again.
    leave_page(page)
    page.context.clear_cookies()
    page.goto(f"{base}/login")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/queues/"))
