"""F. Outbound requests (F1, F3): the guarded POST every webhook-style channel uses refuses
internal addresses and other schemes, and never follows a redirect. (Refusing such URLs when
they are saved is part of the notification work; F5's rate limit and F6 are tested with it.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from helpdesk.outbound import post_json
from helpdesk.records import DeliveryError


class Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        Recorder.hits.append(self.path)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/admin")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b'{"secret": "AKIA..."}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def internal_service() -> Iterator[str]:
    Recorder.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:6379/", "http://localhost/",
    "http://[::1]/", "http://0.0.0.0/", "http://2130706433/", "http://0x7f.1/", "http://10.0.0.1/",
    "http://192.168.1.1/", "http://[::ffff:127.0.0.1]/", "file:///etc/passwd", "gopher://127.0.0.1:6379/_x",
    "ftp://example.com/", "http://user:pass@example.com/"])
def test_f1_internal_addresses_and_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(DeliveryError) as refused:
        post_json(url, {"text": "hi"}, timeout=2)
    assert refused.value.permanent or "resolve" in str(refused.value)


def test_f1_a_real_internal_service_is_never_reached(internal_service: str) -> None:
    with pytest.raises(DeliveryError):
        post_json(f"http://{internal_service}/hook", {"text": "hi"}, timeout=2)
    assert Recorder.hits == []


def test_f3_a_redirect_is_not_followed_and_the_delivery_fails(internal_service: str) -> None:
    with pytest.raises(DeliveryError, match="redirect") as refused:
        post_json(f"http://{internal_service}/redirect", {"text": "hi"}, timeout=2,
                  allow=["127.0.0.1"])
    assert Recorder.hits == ["/redirect"], "the Location was not fetched"
    assert "AKIA" not in str(refused.value)
