"""Shared pieces of the adversarial suite: a real SMTP server on loopback, snapshots of the
database and outbox for the "nothing lost" checks, and the e-mail channel switched on."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from helpdesk.models import Delivery, Incident, Notice, TimelineEntry

FROM = "Helpdesk <help@example.com>"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Mail:
    envelope_to: list[str]
    raw: bytes
    message: EmailMessage

    def header_names(self) -> list[str]:
        """Top-level header names as they are on the wire (a folded line is not a header)."""
        head = self.raw.split(b"\r\n\r\n", 1)[0]
        return [line.split(b":", 1)[0].decode().lower() for line in head.split(b"\r\n")
                if line and line[:1] not in (b" ", b"\t")]


class SmtpServer:
    """aiosmtpd on loopback, keeping every accepted message."""

    def __init__(self) -> None:
        self.received: list[Mail] = []
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd
        raw = envelope.original_content or envelope.content
        self.received.append(Mail(list(envelope.rcpt_tos), raw,
                                  email.message_from_bytes(raw, policy=email.policy.default)))
        return "250 OK"

    @property
    def settings(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port, "from_address": FROM, "timeout": 5}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server._controller.start()
    yield server
    server._controller.stop()


def snapshot() -> dict[str, Any]:
    """What "nothing lost" compares: incidents, timeline, outbox and notices, row by row."""
    return {
        "incidents": [(i.id, i.version, i.title, i.status, i.assigned_agent_id, i.owner_agent_id)
                      for i in Incident.select().order_by(Incident.id)],
        "timeline": TimelineEntry.select().count(),
        "outbox": Delivery.select().count(),
        "notices": Notice.select().count(),
    }
