"""The project's own tests use the plugin authors' kit (helpdesk.testing), plus short names.

The suite runs on a SQLite file per test by default; set
HELPDESK_TEST_DATABASE_URL to a PostgreSQL database (wiped per test) to run
it there as well.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from browser_kit import CHROMIUM, CHROMIUM_ARGS
from flask import Flask
from waitress import wasyncore

from helpdesk.serving import make_server

pytest_plugins = ["helpdesk.testing"]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Settings for this test's app; parametrize this name to change them."""
    return {}


@pytest.fixture
def helpdesk_settings(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    return settings_overrides


@pytest.fixture
def app(helpdesk_app: Flask) -> Flask:
    return helpdesk_app


@pytest.fixture
def log_incident(incident_factory: Any) -> Any:
    return incident_factory


@pytest.fixture
def ctx(helpdesk_ctx: Any) -> Any:
    """The app's context (short name for the kit's ``helpdesk_ctx``)."""
    return helpdesk_ctx


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Playwright launches Debian's Chromium (``playwright install`` cannot download here)."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture
def server(app: Flask) -> Iterator[str]:
    """The app served by waitress on a free loopback port, as `helpdesk serve` does."""
    httpd = make_server(app, host="127.0.0.1", port=0, threads=4,
                        max_request_body_size=app.extensions["helpdesk"].settings.max_request_bytes)
    stop = threading.Event()

    def serve() -> None:
        # The loop thread closes the sockets itself once told to stop: closing them from
        # another thread while it sits in select() fails there with EBADF.
        try:
            while not stop.is_set():
                wasyncore.loop(timeout=0.2, map=httpd._map, count=1)
        finally:
            httpd.task_dispatcher.shutdown()
            wasyncore.close_all(httpd._map)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.effective_port}"
    stop.set()
    thread.join(timeout=10)
