"""The project's own tests use the plugin authors' kit (helpdesk.testing), plus short names.

The suite runs on a SQLite file per test by default; set
HELPDESK_TEST_DATABASE_URL to a PostgreSQL database (wiped per test) to run
it there as well.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

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
