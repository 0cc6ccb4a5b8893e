"""Refer and request in the browser (Debian's Chromium, Playwright): Priya of the Database team
hands an incident back to John with a request and a suggested team; John sees it at the top of
the incident page and accepts; the incident is with Network and the timeline says why."""

from __future__ import annotations

import re

import pytest
from browser_kit import log_in, require_chromium

from helpdesk.models import Team

from .conftest import LOGGED

require_chromium()

pytestmark = pytest.mark.browser


def test_a_specialist_hands_back_and_the_owner_accepts(server, desk, page):
    p = desk.p
    Team.update(escalation_mode="refer").where(Team.id == p.database_team.id).execute()
    incident = desk.log_p2(LOGGED)
    log_in(page, server, p.assignee.username)
    page.goto(f"{server}/incidents/{incident.id}")
    page.get_by_text("Hand back to Service Desk…").click()
    page.get_by_label("Your request to the owner").fill("Packet loss between app and db servers.")
    page.get_by_label("Suggested team (optional)").select_option(label="Network")
    page.get_by_role("button", name="Hand back", exact=True).click()
    banner = page.get_by_role("region", name="Hand-back request awaiting the owner")
    banner.wait_for()
    assert "Packet loss between app and db servers." in banner.inner_text()
    assert banner.get_by_role("button", name=re.compile("Accept")).count() == 0  # not Priya's to decide

    log_in(page, server, p.owner.username)
    page.goto(f"{server}/incidents/{incident.id}")
    banner = page.get_by_role("region", name="Hand-back request awaiting the owner")
    banner.get_by_role("button", name="Accept: assign to Network").click()
    page.get_by_role("region", name="Hand-back request awaiting the owner").wait_for(state="detached")
    assert "Network /" in page.get_by_role("region", name="Assignee").inner_text()
    timeline = page.get_by_role("list", name="Timeline").inner_text()
    assert "Accepted the hand-back from Database (Priya Raman)" in timeline
    assert "Handed back to Service Desk by Database" in timeline
