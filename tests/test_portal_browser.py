"""The portal in a real browser (Debian's Chromium): a customer signs in with the link mailed to
them, logs an incident with a screenshot, replies; the agent sees the conversation on the
incident page; the customer confirms the resolution.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from browser_kit import log_in, require_chromium

from helpdesk import incidents
from helpdesk.models import Attachment, Incident
from helpdesk.testing import SmtpServer

require_chromium()

pytestmark = pytest.mark.browser


@pytest.fixture
def smtp(smtp_server: SmtpServer) -> SmtpServer:
    smtp_server.from_address = "Helpdesk <help@example.com>"
    return smtp_server


@pytest.fixture
def helpdesk_settings(smtp: SmtpServer) -> dict[str, Any]:
    return {"support_address": "help@example.com", "plugins": {"email": smtp.settings}}


@pytest.fixture
def helpdesk_bundled_plugins() -> list[str]:
    return ["email"]


def test_customer_signs_in_logs_replies_and_confirms(server, app, ctx, smtp, personas, contact_factory,
                                                    page, browser, tmp_path):
    contact_factory(name="Ada Lovelace", email="ada@example.org")
    page.goto(f"{server}/portal/")
    page.get_by_label("Your e-mail address").fill("ada@example.org")
    page.get_by_role("button", name="E-mail me a sign-in link").click()
    page.get_by_text("If this address is known to us").wait_for()
    body = smtp.to("ada@example.org")[-1].message.get_body(("plain",)).get_content()
    path = re.search(r"https?://[^/\s]+(/portal/sign-in/\S+)", body).group(1)
    page.goto(server + path)
    page.get_by_role("button", name="Continue to your requests").click()
    page.get_by_role("heading", name="Your requests").wait_for()

    page.get_by_role("banner").get_by_role("link", name="Report a problem").click()
    page.get_by_label("What is affected? (one line)").fill("Printer on floor 3")
    page.get_by_label("What happens, and since when?").fill("Paper jam since this morning.")
    page.get_by_label("I cannot work at all").check()
    screenshot = tmp_path / "jam.png"
    screenshot.write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    page.get_by_label("Screenshots or files (optional)").set_input_files(str(screenshot))
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(re.compile(r"/portal/incidents/\d+$"))
    incident = Incident.get(Incident.title == "Printer on floor 3")
    assert incident.source == "portal" and incident.urgency == "high"
    assert Attachment.get().filename == "jam.png"
    page.get_by_role("link", name="jam.png").wait_for()

    page.get_by_label("Your message").fill("It is the big printer by the window.")
    page.get_by_role("button", name="Send").click()
    page.get_by_text("Thank you, we got your message.").wait_for()

    agent = browser.new_context().new_page()
    log_in(agent, server, personas.owner.username)
    agent.goto(f"{server}/incidents/{incident.id}")
    timeline = agent.locator(".timeline")
    timeline.get_by_text("It is the big printer by the window.").wait_for()
    assert "Ada Lovelace (customer)" in timeline.inner_text()
    assert agent.get_by_role("link", name="jam.png").count() == 1

    with app.app_context():
        incidents.change_status(ctx, incident.id, personas.owner, "resolved", note="Cleared the jam.")
    page.reload()
    page.get_by_role("button", name="Yes, it works again").click()
    page.get_by_text("The incident is closed.").wait_for()
    assert Incident.get_by_id(incident.id).status == "closed"
