"""F. Outbound requests (F1, F3, F5): the guarded POST every webhook-style channel uses refuses
internal addresses and other schemes, and never follows a redirect; "Send test" never echoes
what the receiver answered and is rate-limited per person. (Refusing such URLs when an admin
saves them: test_f1_on_save.py.)
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
        self.send_response(500 if self.path == "/fail" else 200)
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


@pytest.mark.parametrize("url", [
    "http://[64:ff9b::7f00:1]/", "http://[2002:7f00:1::]/",  # 127.0.0.1 behind NAT64, and in 6to4
    "http://224.0.0.1/", "http://[ff02::1]/", "http://240.0.0.1/"])  # multicast, reserved
def test_f1_an_internal_address_inside_another_form_is_refused_before_connecting(url: str) -> None:
    with pytest.raises(DeliveryError, match="private, loopback or link-local") as refused:
        post_json(url, {"text": "hi"}, timeout=2)
    assert refused.value.permanent


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


@pytest.fixture
def helpdesk_bundled_plugins() -> list[str]:
    return ["webhook"]


@pytest.fixture
def helpdesk_settings(internal_service: str) -> dict[str, Any]:
    return {"plugins": {"webhook": {"urls": [f"http://{internal_service}/fail"], "secret": "s" * 32,
                                    "allow_private": ["127.0.0.1"], "timeout": 2}}}


def test_f5_send_test_says_what_happened_but_never_what_the_receiver_answered(
        login, personas, internal_service):
    hook = {"recipient": f"http://{internal_service}/fail"}  # a webhook's recipient is its URL
    answer = login(personas.admin).post("/admin/channels/webhook/test", hook, follow_redirects=True)
    page = answer.get_data(as_text=True)
    assert Recorder.hits == ["/fail"] and "webhook: temporary failure" in page and "500" in page
    assert "AKIA" not in page and "secret" not in page.lower().split("webhook: temporary failure")[1][:300]


def test_f5_send_test_is_rate_limited_per_person(login, personas, internal_service):
    from helpdesk.web.admin import SEND_TESTS_PER_WINDOW

    hook = {"recipient": f"http://{internal_service}/fail"}
    admin = login(personas.admin)
    for _ in range(SEND_TESTS_PER_WINDOW):
        admin.post("/admin/channels/webhook/test", hook)
    assert len(Recorder.hits) == SEND_TESTS_PER_WINDOW
    refused = admin.post("/admin/channels/webhook/test", hook, follow_redirects=True)
    assert "At most 10 test messages per 15 minutes" in refused.get_data(as_text=True)
    assert len(Recorder.hits) == SEND_TESTS_PER_WINDOW, "the refused test made no request"
    from helpdesk import people
    from helpdesk.testing import PASSWORD

    other = people.create_agent("root2", "Second Admin", PASSWORD, role="admin")
    login(other).post("/admin/channels/webhook/test", hook)  # counted per person: not blocked
    assert len(Recorder.hits) == SEND_TESTS_PER_WINDOW + 1
    assert login(personas.lead).post("/admin/channels/webhook/test", hook).status_code == 403  # F5: admins'
    assert len(Recorder.hits) == SEND_TESTS_PER_WINDOW + 1
