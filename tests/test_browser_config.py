"""Configuration in the browser, as an admin uses it in Chromium (a team lead only reads the SLA
settings): business hours
that move a new incident's SLA due time, SMTP settings with a working test button, and a
value the environment sets that the page shows as locked and a crafted POST cannot change."""

from __future__ import annotations

import re

import pytest
from browser_kit import log_in, require_chromium

from helpdesk.models import SlaClock, StoredSetting
from helpdesk_plugins import business_hours, email_channel, sla_priority

require_chromium()

pytestmark = pytest.mark.browser
LOCKED_SENDER = "Service Desk <desk@example.com>"


@pytest.fixture
def helpdesk_plugins():
    return [business_hours, sla_priority, email_channel]


@pytest.fixture
def helpdesk_settings(monkeypatch):
    """The environment sets the sender (infrastructure as code): the browser must not."""
    monkeypatch.setenv("HELPDESK_PLUGINS__EMAIL__FROM_ADDRESS", LOCKED_SENDER)
    return {}


def response_due(incident_id: int) -> str:
    clock = SlaClock.get((SlaClock.incident == incident_id) & (SlaClock.target == "response"))
    return f"{clock.due_at:%Y-%m-%d %H:%M}"  # the lead's zone is the default, UTC


def test_an_admin_sets_business_hours_and_a_new_incidents_due_time_follows(server, personas, page,
                                                                              log_incident, frozen_clock):
    # Monday 09:00, before the one-hour window below opens: with the real clock, an incident
    # logged between 10:00 and 11:00 would fall due at that minute four days later, not 11:00.
    before = log_incident(title="Before the change", impact="medium", urgency="medium")  # P3: 4 h
    # A lead reads the hours (the header's SLA link) but has no form: they apply to every team.
    log_in(page, server, personas.lead.username)
    page.locator("details.menu summary", has_text=personas.lead.display_name).click()  # header menu
    page.get_by_role("link", name="SLA", exact=True).click()
    page.wait_for_url(re.compile(r"/admin/sla$"))
    assert page.get_by_text("Only an admin can change the business hours").count() == 1
    assert page.get_by_role("button", name="Save business hours").count() == 0
    log_in(page, server, personas.admin.username)
    page.goto(f"{server}/admin/sla")
    page.get_by_label("Time zone of the calendar").fill("UTC")
    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"):  # one working hour, every day
        page.locator(f"#bh-works-{day}").check()
        page.locator(f"#bh-open-{day}").fill("10:00")
        page.locator(f"#bh-close-{day}").fill("11:00")
    page.get_by_role("button", name="Save business hours").click()
    page.wait_for_selector("text=business_hours.hours.")  # the flash names what was saved

    after = log_incident(title="After the change", impact="medium", urgency="medium")
    page.goto(f"{server}/incidents/{after.id}")
    html = page.content()
    due = response_due(after.id)
    assert due in html, "the incident page shows the new response due time"
    # Four working hours at one hour a day: due at the close of a 10:00-11:00 window, days away.
    assert due.endswith("11:00") and due != response_due(before.id)
    page.goto(f"{server}/incidents/{before.id}")
    assert response_due(before.id) in page.content()  # a running clock is not moved retroactively


def test_an_admin_sets_smtp_and_the_test_button_delivers(server, personas, page, smtp_server):
    log_in(page, server, personas.admin.username)
    page.goto(f"{server}/admin/channels")
    assert page.get_by_label("Send a test e-mail to").count() == 0  # off until a host is set
    page.get_by_label("SMTP host").fill("127.0.0.1")
    page.get_by_label("Port").first.fill(str(smtp_server.port))
    page.get_by_label("Security").select_option("none")
    page.get_by_role("button", name="Save email settings").click()
    page.wait_for_selector("text=Saved: email.host")
    page.get_by_label("Send a test e-mail to").fill("lead@example.com")
    page.get_by_role("button", name="Send test").first.click()
    page.wait_for_selector("text=test message sent to lead@example.com")
    received = smtp_server.to("lead@example.com")
    assert len(received) == 1 and received[0].message["Subject"] == "Helpdesk test message"
    assert "desk@example.com" in received[0].message["From"]  # the locked sender from the environment


def test_a_locked_value_shows_as_locked_and_a_crafted_post_cannot_change_it(server, personas, page):
    log_in(page, server, personas.admin.username)
    page.goto(f"{server}/admin/channels")
    sender = page.get_by_label("From")
    assert sender.is_disabled() and sender.input_value() == LOCKED_SENDER
    assert "HELPDESK_PLUGINS__EMAIL__FROM_ADDRESS" in page.locator("#channel-email").inner_text()
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    response = page.request.post(f"{server}/admin/channels/email", form={
        "csrf_token": token, "email.host": "127.0.0.1", "email.from_address": "Mallory <m@evil.example>"})
    assert response.status == 422 and "change it there" in response.text()
    assert StoredSetting.select().count() == 0
    page.reload()
    assert page.get_by_label("From").input_value() == LOCKED_SENDER
