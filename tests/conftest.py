"""Shared fixtures: a fresh app and database per test, named personas, logged-in clients.

The suite runs on a SQLite file by default; set HELPDESK_TEST_DATABASE_URL to a
PostgreSQL database (which is wiped per test) to run it there as well.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient

from helpdesk import people, schema
from helpdesk.app import create_app
from helpdesk.db import database, open_database
from helpdesk.models import Agent, Team

PG_URL = os.environ.get("HELPDESK_TEST_DATABASE_URL")
PASSWORD = "correct-horse-battery"


def pytest_report_header() -> str:
    return f"helpdesk database: {PG_URL or 'SQLite file per test'}"


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id with small parameters: the same code path, a fraction of the time."""
    monkeypatch.setattr(people, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024,
                                                          parallelism=1))


def _reset_postgres(url: str) -> None:
    db = open_database(url)
    with db.connection_context():
        db.execute_sql("DROP SCHEMA public CASCADE")
        db.execute_sql("CREATE SCHEMA public")
    db.close_all()


def make_app(tmp_path: Any, **overrides: Any) -> Flask:
    config = {
        "instance_path": str(tmp_path),
        "database_url": PG_URL or f"sqlite:///{tmp_path / 'helpdesk.db'}",
        "queue_url": "memory",
        "secret_key": "test-secret-key-" + "x" * 32,
        "testing": True,
        **overrides,
    }
    return create_app(config)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Settings for this test's app; parametrize this name to change them."""
    return {}


@pytest.fixture
def app(tmp_path: Any, settings_overrides: dict[str, Any]) -> Iterator[Flask]:
    """A fresh app on a fresh database with the service-desk team."""
    if PG_URL:
        _reset_postgres(PG_URL)
    app = make_app(tmp_path, **settings_overrides)
    with app.app_context():
        schema.upgrade(database)
        people.ensure_team(app.extensions["helpdesk"].settings.service_desk_team)
    # No app context stays pushed during the test: each test-client request
    # must get its own, as in production (Flask-Login caches the user in it).
    database.connect(reuse_if_open=True)
    yield app
    if not database.is_closed():
        database.close()
    real = database.obj
    if hasattr(real, "close_all"):
        real.close_all()


@dataclass
class Personas:
    service_desk: Team
    database_team: Team
    network: Team
    owner: Agent  # service-desk agent who logs and owns incidents
    colleague: Agent  # another service-desk agent
    assignee: Agent  # Database specialist
    other: Agent  # Network specialist
    lead: Agent  # service-desk team lead
    db_lead: Agent  # Database team lead
    admin: Agent


@pytest.fixture
def personas(app: Flask) -> Personas:
    desk = Team.get(Team.name == app.extensions["helpdesk"].settings.service_desk_team)
    dbt = people.create_team("Database")
    net = people.create_team("Network")

    def agent(username: str, name: str, teams: list[Team], role: str = "agent") -> Agent:
        return people.create_agent(username, name, PASSWORD, role=role, teams=teams)

    return Personas(
        service_desk=desk,
        database_team=dbt,
        network=net,
        owner=agent("john", "John Carter", [desk]),
        colleague=agent("sara", "Sara Berg", [desk]),
        assignee=agent("priya", "Priya Raman", [dbt]),
        other=agent("kofi", "Kofi Mensah", [net]),
        lead=agent("amira", "Amira Haddad", [desk], role="lead"),
        db_lead=agent("mateo", "Mateo Silva", [dbt], role="lead"),
        admin=agent("root", "Admin", [desk], role="admin"),
    )


class AgentClient:
    """A test client logged in as one agent, posting with a real CSRF token."""

    def __init__(self, app: Flask, agent: Agent | None) -> None:
        self.app = app
        self.agent = agent
        self.http: FlaskClient = app.test_client()
        self._token: str | None = None
        if agent is not None:
            response = self.http.post(
                "/login", data={"username": agent.username, "password": PASSWORD,
                                "csrf_token": self.csrf_token()})
            assert response.status_code == 302, response.get_data(as_text=True)

    def csrf_token(self) -> str:
        if self._token is None:
            html = self.http.get("/login").get_data(as_text=True)
            self._token = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)
        return self._token

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.http.get(url, **kwargs)

    def post(self, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        data = {"csrf_token": self.csrf_token(), **(data or {})}
        return self.http.post(url, data=data, **kwargs)


@pytest.fixture
def login(app: Flask) -> Any:
    """``login(agent)`` returns a client with that agent's session (``None``: anonymous)."""
    return lambda agent: AgentClient(app, agent)


@pytest.fixture
def log_incident(app: Flask, personas: Personas) -> Any:
    """Incident factory: ``log_incident(title=..., actor=...)`` through the domain."""
    from helpdesk import incidents

    state = app.extensions["helpdesk"]

    def factory(**values: Any) -> Any:
        values.setdefault("title", "Orders database slow")
        values.setdefault("actor", personas.owner)
        with app.app_context():
            return incidents.log_incident(state.pm, service_desk=personas.service_desk, **values)

    return factory


class QueryCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.queries: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.queries.append(record.getMessage())


@pytest.fixture
def count_queries() -> Iterator[QueryCounter]:
    """Records every SQL statement peewee runs while the fixture is active."""
    logger = logging.getLogger("peewee")
    counter = QueryCounter()
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(counter)
    yield counter
    logger.removeHandler(counter)
    logger.setLevel(previous)
