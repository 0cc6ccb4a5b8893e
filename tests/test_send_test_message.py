"""The admin's "Send test" on Mail and channels, through a real SMTP server."""

from typing import Any

import pytest

from helpdesk.testing import SmtpServer


@pytest.fixture
def helpdesk_settings(smtp_server: SmtpServer) -> dict[str, Any]:
    return {"plugins": {"email": smtp_server.settings}}


@pytest.fixture
def helpdesk_bundled_plugins() -> list[str]:
    return ["email"]


def test_each_test_message_is_a_new_message(login, personas, smtp_server):
    # An admin sends a test, fixes something at the mail provider, and sends another: a mail
    # system drops a message whose Message-ID it has already seen (Gmail does), so a second
    # test with the first one's id would say "sent" and never arrive.
    admin = login(personas.admin)
    for _ in range(2):
        page = admin.post("/admin/channels/email/test", {"recipient": "it@example.com", "back": "channels"},
                          follow_redirects=True).get_data(as_text=True)
        assert "email: test message sent to it@example.com" in page
    ids = [received.message["Message-ID"] for received in smtp_server.to("it@example.com")]
    assert len(ids) == 2 and ids[0] != ids[1], ids
