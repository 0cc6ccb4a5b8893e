"""Files over the server's limits are refused in the browser, before anything is sent: a
request over ``max_request_bytes`` is refused before the app reads it, so the answer could
not give the customer's typed text back (static/files.js)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from browser_kit import log_in, require_chromium

from helpdesk import customer_links
from helpdesk.models import Attachment, Incident, Macro, TimelineEntry

require_chromium()

pytestmark = pytest.mark.browser

TYPED = "The scanner on floor 2 saves blank pages since Monday."


@pytest.fixture
def helpdesk_settings() -> dict[str, Any]:
    return {"max_request_bytes": 200 * 1024, "attachment_max_bytes": 120 * 1024}


def signed_in_customer(app: Any, ctx: Any, page: Any, server: str, contact_factory: Any) -> None:
    contact_factory(name="Ada Lovelace", email="ada@example.org")
    with app.app_context():
        _contact, token = customer_links.issue(ctx, "ada@example.org", "127.0.0.1")
    page.goto(f"{server}/portal/sign-in/{token}")
    page.get_by_role("button", name="Continue to your requests").click()
    page.get_by_role("heading", name="Your requests").wait_for()


def file_of(folder: Path, name: str, kilobytes: int) -> str:
    path = folder / name
    path.write_bytes(b"x" * kilobytes * 1024)
    return str(path)


def validation_message(page: Any, label: str) -> str:
    return page.get_by_label(label).evaluate("input => input.validationMessage")


def test_the_portal_refuses_files_over_the_limits_before_sending_and_keeps_the_text(
        server, app, ctx, page, contact_factory, tmp_path):
    signed_in_customer(app, ctx, page, server, contact_factory)
    page.goto(f"{server}/portal/new")
    page.get_by_label("What is affected? (one line)").fill("Scanner")
    page.get_by_label("What happens, and since when?").fill(TYPED)
    files = "Screenshots or files (optional)"

    page.get_by_label(files).set_input_files(file_of(tmp_path, "scan.pdf", 150))
    assert "scan.pdf is 150 KB; one file may be at most 120 KB." in validation_message(page, files)
    page.get_by_role("button", name="Send").click()
    assert page.url.endswith("/portal/new"), "nothing was sent"
    assert page.get_by_label("What happens, and since when?").input_value() == TYPED
    assert Incident.select().count() == 0

    # each file under its limit, together over the request's
    page.get_by_label(files).set_input_files([file_of(tmp_path, "one.pdf", 100),
                                              file_of(tmp_path, "two.pdf", 100)])
    assert "one message may carry at most 200 KB" in validation_message(page, files)
    page.get_by_role("button", name="Send").click()
    assert page.url.endswith("/portal/new") and Incident.select().count() == 0

    # the text alone can tip it over, and shortening it makes it fit again
    page.get_by_label(files).set_input_files(file_of(tmp_path, "one.pdf", 100))
    assert validation_message(page, files) == ""
    page.get_by_label("What happens, and since when?").fill("x" * 120 * 1024)
    page.get_by_role("button", name="Send").click()
    assert "one message may carry at most 200 KB" in validation_message(page, files)
    assert page.url.endswith("/portal/new") and Incident.select().count() == 0
    page.get_by_label("What happens, and since when?").fill(TYPED)
    assert validation_message(page, files) == ""
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(re.compile(r"/portal/incidents/\d+$"))
    assert Incident.get().description == TYPED
    assert [a.filename for a in Attachment.select()] == ["one.pdf"]


def test_the_portal_refuses_a_reply_over_the_limit_and_the_server_check_stays(
        server, app, ctx, page, contact_factory, tmp_path):
    signed_in_customer(app, ctx, page, server, contact_factory)
    page.get_by_role("banner").get_by_role("link", name="Report a problem").click()
    page.get_by_label("What is affected? (one line)").fill("Scanner")
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(re.compile(r"/portal/incidents/\d+$"))
    incident = Incident.get()

    page.get_by_label("Your message").fill(TYPED)
    page.get_by_label("Attach files (optional)").set_input_files(file_of(tmp_path, "big.zip", 300))
    page.get_by_role("button", name="Send").click()
    assert page.get_by_label("Your message").input_value() == TYPED
    entries = TimelineEntry.select().where(TimelineEntry.incident == incident.id).count()

    # Without the script's check (an old page, a client without scripts) the server still
    # refuses, with the page that says nothing was saved.
    page.get_by_label("Attach files (optional)").evaluate("input => input.setCustomValidity('')")
    page.eval_on_selector("form[enctype]", "form => form.submit()")
    page.get_by_text("Nothing was saved").wait_for()
    assert TimelineEntry.select().where(TimelineEntry.incident == incident.id).count() == entries
    page.go_back()  # as the refusal page says, the browser kept the words
    assert page.get_by_label("Your message").input_value() == TYPED


def test_an_agent_reply_with_a_file_over_the_limit_is_not_sent(server, app, personas, log_incident,
                                                                page, tmp_path):
    incident = log_incident(title="Printer offline")
    log_in(page, server, personas.owner.username)
    page.goto(f"{server}/incidents/{incident.id}")
    page.get_by_label("Message (Markdown)").fill(TYPED)
    page.get_by_label("Attach files").set_input_files(file_of(tmp_path, "trace.log", 150))
    assert "trace.log is 150 KB" in validation_message(page, "Attach files")
    page.get_by_role("button", name="Add note").click()
    assert page.get_by_label("Message (Markdown)").input_value() == TYPED
    assert TimelineEntry.select().where(TimelineEntry.incident == incident.id,
                                        TimelineEntry.body.contains("scanner")).count() == 0


def test_send_with_macro_checks_the_files_too(server, app, personas, log_incident, page, tmp_path):
    Macro.create(name="Ask for logs", body="Please send the logs.", public=True, agent=personas.owner,
                 created_by=personas.owner, actions="[]")
    incident = log_incident(title="Printer offline")
    log_in(page, server, personas.owner.username)
    page.goto(f"{server}/incidents/{incident.id}")
    page.get_by_label("Canned reply (macro)").select_option(label="Ask for logs")
    deadline = time.monotonic() + 10  # (no wait_for_function: the page's CSP forbids eval)
    while "send the logs" not in page.get_by_label("Message (Markdown)").input_value():
        assert time.monotonic() < deadline, "the macro's text never came"
        page.wait_for_timeout(50)
    page.get_by_label("Message (Markdown)").fill(TYPED)  # the macro's text, then the agent's own
    page.get_by_label("Attach files").set_input_files([file_of(tmp_path, "a.log", 100),
                                                       file_of(tmp_path, "b.log", 110)])
    page.get_by_role("button", name="Send with macro").click()
    page.locator("#macro-result", has_text="one message may carry at most 200 KB").wait_for()
    assert "Nothing was sent." in page.locator("#macro-result").inner_text()
    assert page.get_by_label("Message (Markdown)").input_value() == TYPED
    entries = TimelineEntry.select().where(TimelineEntry.incident == incident.id)
    assert [e.kind for e in entries] == ["created"]
