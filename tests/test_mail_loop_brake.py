"""The mail loop brake counts acknowledgements mailed to the sender, nothing else: a desk with
webhooks (which broadcast every new incident too) still answers a customer's first mails."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from helpdesk.mail.receive import receive
from helpdesk.models import Delivery, Notice
from helpdesk.testing import HttpReceiver, SmtpServer

SUPPORT = "help@example.com"


@pytest.fixture
def helpdesk_bundled_plugins() -> list[str]:
    return ["email", "webhook"]


@pytest.fixture
def helpdesk_settings(smtp_server: SmtpServer, http_receiver: HttpReceiver) -> dict[str, Any]:
    smtp_server.from_address = f"Helpdesk <{SUPPORT}>"
    hooks = [f"{http_receiver.url}/{n}" for n in range(4)]
    return {"support_address": SUPPORT, "plugins": {
        "email": smtp_server.settings,
        "webhook": {"urls": hooks, "secret": "s" * 32, "allow_private": ["127.0.0.1"], "timeout": 1}}}


def test_webhook_broadcasts_do_not_count_as_acknowledgements(app: Flask, smtp_server: SmtpServer,
                                                            personas: Any) -> None:
    ctx = app.extensions["helpdesk"]
    for number in range(3):
        raw = (f"From: Zoe <zoe@example.org>\r\nTo: {SUPPORT}\r\nSubject: Request {number}\r\n"
               f"Message-ID: <req-{number}@example.org>\r\n\r\nPlease help with {number}.\r\n")
        with app.app_context():
            assert receive(ctx, raw.encode()).outcome == "created"
    assert Delivery.select().where(Delivery.channel == "webhook").count() == 12  # 4 URLs x 3
    assert len(smtp_server.to("zoe@example.org")) == 3  # each mail acknowledged
    assert not Notice.select().where(Notice.text.contains("loop brake")).exists()
