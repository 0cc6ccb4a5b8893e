"""API tokens in a real browser (Debian's Chromium via Playwright): an agent makes a token on
the profile's token page, copies the secret shown once, uses it over HTTP, and revokes it."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest
from browser_kit import require_chromium

from helpdesk.testing import PASSWORD

require_chromium()

pytestmark = pytest.mark.browser


def api_status(base: str, secret: str) -> int:
    request = urllib.request.Request(f"{base}/api/v1/teams",
                                     headers={"Authorization": f"Bearer {secret}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            json.load(answer)
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code


def test_an_agent_makes_uses_and_revokes_a_token_in_the_browser(server, personas, page):
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{server}/login")
    page.get_by_label("User name").fill(personas.owner.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/queues/"))
    page.goto(f"{server}/profile")
    page.get_by_role("link", name="API tokens").click()
    page.get_by_label("Name (what uses it)").fill("Nightly report")
    page.get_by_label(re.compile(r"\bread: ")).check()
    page.get_by_role("button", name="Create token").click()
    secret = page.get_by_label("Token").input_value()
    assert secret.startswith("hdp_")
    assert api_status(server, secret) == 200
    page.goto(f"{server}/profile/tokens")  # shown once: the list shows only its start
    assert secret not in page.content() and secret[:8] in page.content()
    page.get_by_text("Revoke…").click()  # one click alone does not revoke: it asks first
    assert api_status(server, secret) == 200
    page.get_by_role("button", name="Revoke Nightly report").click()
    page.wait_for_selector("text=Token Nightly report revoked.")
    assert api_status(server, secret) == 401
    page.get_by_role("link", name="reference").click()
    page.wait_for_selector("h1:has-text('API reference')")
    assert problems == []
