"""An agent attaches files to a reply in Chromium (htmx posts the form as multipart), sees them
under the new entry, and the customer's mail carries them; a refused file, or a request over
the server's size limit, keeps the text."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from browser_kit import log_in, require_chromium

from helpdesk.testing import SmtpServer

require_chromium()

pytestmark = pytest.mark.browser
ADA = "ada@example.org"


@pytest.fixture
def smtp(smtp_server: SmtpServer) -> SmtpServer:
    smtp_server.from_address = "Helpdesk <help@example.com>"
    return smtp_server


@pytest.fixture
def helpdesk_settings(smtp: SmtpServer) -> dict[str, Any]:
    return {"support_address": "help@example.com", "plugins": {"email": smtp.settings},
            "attachment_max_bytes": 16 * 1024, "max_request_bytes": 64 * 1024}


@pytest.fixture
def helpdesk_bundled_plugins() -> list[str]:
    return ["email"]


def wait_for_mails(smtp: SmtpServer, count: int, timeout: float = 10.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while len(smtp.to(ADA)) < count:
        assert time.monotonic() < deadline, f"{len(smtp.to(ADA))} mails to {ADA}, expected {count}"
        time.sleep(0.05)
    return [received.message for received in smtp.to(ADA)]


def test_agent_attaches_files_to_a_reply_and_sees_them_on_the_timeline(
        server: str, personas: Any, page: Any, log_incident: Any, contact_factory: Any, smtp: SmtpServer,
        tmp_path: Path) -> None:
    ada = contact_factory(name="Ada Lovelace", email=ADA)
    incident = log_incident(title="Printer prints blank pages", requester=ada)
    wait_for_mails(smtp, 1)  # the acknowledgement
    guide = tmp_path / "Anleitung für Drucker.pdf"
    guide.write_bytes(b"%PDF-1.4 a short guide")
    too_big = tmp_path / "firmware.bin"
    too_big.write_bytes(b"\0" * (17 * 1024))

    log_in(page, server, personas.owner.username)
    page.goto(f"{server}/incidents/{incident.id}")

    # The server's own checks: the browser's check before sending (static/files.js, see
    # test_browser_file_limits.py) is taken off, as for a client without scripts.
    def without_browser_check() -> None:
        page.locator("#reply-files").evaluate("input => input.removeAttribute('data-max-request-bytes')")

    without_browser_check()
    # A file over the limit: nothing is sent, the text stays, the error says why.
    page.locator("#vis-public").check()
    page.locator("#reply-body").fill("Please install the attached firmware.")
    page.get_by_label("Attach files").set_input_files(str(too_big))
    page.get_by_role("button", name="Send reply").click()
    page.wait_for_selector("#reply-error:has-text('firmware.bin is 17 KB')")
    assert page.locator("#reply-body").input_value() == "Please install the attached firmware."
    assert page.locator("#vis-public").is_checked()
    assert page.locator(".entry-reply").count() == 0

    # A request over max_request_bytes (413, not swapped by htmx): said so, the text is kept.
    huge = tmp_path / "disk-image.bin"
    huge.write_bytes(b"\0" * (80 * 1024))
    without_browser_check()  # the refusal above brought a new form
    page.get_by_label("Attach files").set_input_files(str(huge))
    page.get_by_role("button", name="Send reply").click()
    page.wait_for_selector("#request-error:has-text('too large to send at once')")
    assert page.locator("#reply-body").input_value() == "Please install the attached firmware."
    assert page.locator(".entry-reply").count() == 0

    # The right file: the reply and its file appear under the new entry.
    page.locator("#reply-body").fill("Here is the guide; page 2 shows the fix.")
    page.get_by_label("Attach files").set_input_files(str(guide))
    page.get_by_role("button", name="Send reply").click()
    entry = page.locator(".entry-reply:has-text('page 2 shows the fix')")
    entry.wait_for()
    link = entry.locator("ul.attachments a", has_text="Anleitung für Drucker.pdf")
    assert link.count() == 1
    with page.expect_download() as download:  # a download, not a boosted swap of the page
        link.click()
    assert download.value.suggested_filename == "Anleitung für Drucker.pdf"
    assert Path(download.value.path()).read_bytes() == b"%PDF-1.4 a short guide"
    assert page.locator(".entry-reply:has-text('page 2 shows the fix')").count() == 1  # page intact

    mail = wait_for_mails(smtp, 2)[-1]
    (part,) = list(mail.iter_attachments())
    assert part.get_filename() == "Anleitung für Drucker.pdf"
    assert part.get_payload(decode=True) == b"%PDF-1.4 a short guide"
