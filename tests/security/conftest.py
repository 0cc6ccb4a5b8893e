"""Shared pieces of the adversarial suite: a real SMTP server on loopback, snapshots of the
database and outbox for the "nothing lost" checks, and the e-mail channel switched on."""

from __future__ import annotations

import email
import email.policy
import http.client
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from aiosmtpd.controller import Controller
from werkzeug.serving import make_server

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


class WebClient:
    """A browser-like client over real HTTP (http.client): keeps its cookie, reads the CSRF
    token from pages, never follows redirects."""

    def __init__(self, base: str, address_header: dict[str, str] | None = None,
                 source: str | None = None, connect: str | None = None) -> None:
        self.base = base
        self.connect = connect  # an address to dial instead of the base URL's host (a proxy)
        self.source = (source, 0) if source else None
        self.cookies: dict[str, str] = {}
        self.extra = address_header or {}
        self.token = ""

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        parts = urlsplit(self.base)
        if parts.scheme == "https":  # a test's self-signed certificate: not verified
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.connect or parts.hostname, parts.port, timeout=30, source_address=self.source,
                context=ssl._create_unverified_context())  # noqa: S323 - loopback test proxy
        else:
            connection = http.client.HTTPConnection(self.connect or parts.hostname, parts.port,
                                                    timeout=30, source_address=self.source)
        body = urlencode(form).encode() if form is not None else None
        sent = {**self.extra, **(headers or {})}
        if self.connect:
            sent.setdefault("Host", parts.netloc)
        if body is not None:
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            text = response.read().decode("utf-8", "replace")
        finally:
            connection.close()
        for value in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        found = re.search(r'name="csrf-token" content="([^"]+)"', text)
        if found:
            self.token = found.group(1)
        return response.status, dict(response.headers), text

    def get(self, path: str, **kwargs: Any) -> tuple[int, dict[str, str], str]:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, form: dict[str, str] | None = None,
             **kwargs: Any) -> tuple[int, dict[str, str], str]:
        return self.request("POST", path, {"csrf_token": self.token, **(form or {})}, **kwargs)


@pytest.fixture
def web_client() -> type[WebClient]:
    """``web_client(base_url, source="127.0.0.2")``: a client over real HTTP."""
    return WebClient


@dataclass
class LiveServer:
    url: str
    server: Any

    def client(self, **kwargs: Any) -> WebClient:
        return WebClient(self.url, **kwargs)


@pytest.fixture
def live_server(helpdesk_app: Any) -> Iterator[LiveServer]:
    """The app behind a real threaded HTTP server on loopback."""
    server = make_server("127.0.0.1", 0, helpdesk_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield LiveServer(f"http://127.0.0.1:{server.server_port}", server)
    server.shutdown()
    thread.join(5)


class CountingHasher:
    """Wraps the password hasher to record which hashes were verified (the code path an
    account-existence timing oracle would reveal)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.verified: list[str] = []
        self._lock = threading.Lock()

    def verify(self, hashed: str, password: str) -> bool:
        with self._lock:
            self.verified.append(hashed)
        return self.inner.verify(hashed, password)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    from helpdesk import people

    counting = CountingHasher(people._hasher)
    monkeypatch.setattr(people, "_hasher", counting)
    return counting
