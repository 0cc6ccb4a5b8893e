"""Outages answered honestly: a locked or unreachable database answers 503, keeps what was typed,
and the next request works; /healthz is liveness only, /readyz checks the database and queue."""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import peewee
import pytest

from helpdesk.db import is_sqlite
from helpdesk.models import TimelineEntry
from helpdesk.testing import make_app

PG_URL = os.environ.get("HELPDESK_TEST_DATABASE_URL")
TYPED = 'Restarted <b>the "spooler"</b> & cleared the queue'


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"database_busy_seconds": 1}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens here once the socket is closed


def assert_honest_503(response: Any) -> str:
    body = response.get_data(as_text=True)
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert "Traceback" not in body and "peewee" not in body and "sqlite3" not in body
    return body


def notes(incident_id: int) -> int:
    return TimelineEntry.select().where((TimelineEntry.incident == incident_id)
                                        & (TimelineEntry.kind == "note")).count()


def test_a_note_while_sqlite_is_locked_waits_a_bounded_time_then_answers_503_keeping_the_text(
        app, personas, log_incident, login):
    if not is_sqlite():
        pytest.skip("SQLite's file lock")
    incident = log_incident(title="Printer offline")
    client = login(personas.owner)
    client.csrf_token()  # the form's token, read while the database answers
    database_file = Path(app.extensions["helpdesk"].settings.database_url.removeprefix("sqlite:///"))
    holder = sqlite3.connect(database_file, timeout=0, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        started = time.monotonic()
        response = client.post(f"/incidents/{incident.id}/comments", data={"body": TYPED})
        waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    body = assert_honest_503(response)
    assert 0.9 <= waited < 5, "a bounded wait (database_busy_seconds = 1), then the answer"
    assert "busy" in body
    assert "Restarted &lt;b&gt;the &#34;spooler&#34;&lt;/b&gt; &amp; cleared the queue" in body
    assert "<b>the" not in body, "the typed text is shown back escaped"
    assert client.csrf_token() not in body
    assert notes(incident.id) == 0, "nothing half-written"

    again = client.post(f"/incidents/{incident.id}/comments", data={"body": TYPED})
    assert again.status_code in {200, 303}
    assert notes(incident.id) == 1


@pytest.mark.skipif(not PG_URL, reason="a PostgreSQL server connection")
def test_a_note_while_postgresql_holds_a_lock_waits_a_bounded_time_then_answers_503(
        app, personas, log_incident, login):
    import psycopg

    incident = log_incident(title="Printer offline")
    client = login(personas.owner)
    client.csrf_token()
    with psycopg.connect(PG_URL) as holder:  # a stuck session holding the incident's row
        holder.execute("SELECT id FROM incident WHERE id = %s FOR UPDATE", (incident.id,))
        started = time.monotonic()
        response = client.post(f"/incidents/{incident.id}/comments", data={"body": TYPED})
        waited = time.monotonic() - started
        holder.rollback()
    assert "&lt;b&gt;the" in assert_honest_503(response)
    assert waited < 5, "a bounded wait (database_busy_seconds = 1), then the answer"
    assert notes(incident.id) == 0, "nothing half-written"
    again = client.post(f"/incidents/{incident.id}/comments", data={"body": TYPED})
    assert again.status_code in {200, 303}
    assert notes(incident.id) == 1


@pytest.mark.skipif(not PG_URL, reason="a PostgreSQL server connection")
def test_a_dropped_postgresql_connection_answers_503_once_and_the_next_request_works(
        app, personas, log_incident, login):
    import psycopg

    from helpdesk.db import database

    incident = log_incident(title="VPN flaps")
    client = login(personas.owner)
    assert client.get(f"/incidents/{incident.id}").status_code == 200
    client.csrf_token()  # the form's token, read before the connections drop
    backends = [row[0] for row in database.execute_sql(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
    own = database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        for pid in [*backends, own]:  # the app's pooled connections, this one included
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    response = client.post(f"/incidents/{incident.id}/comments", data={"body": TYPED})
    if response.status_code == 503:  # the request that met the dead connection says so
        assert "&lt;b&gt;the" in assert_honest_503(response)
        response = client.post(f"/incidents/{incident.id}/comments", data={"body": TYPED})
    assert response.status_code in {200, 303}, "the next request works"
    assert notes(incident.id) == 1


def test_an_unreachable_database_answers_503_and_healthz_stays_alive(tmp_path):
    if PG_URL:
        url = PG_URL.replace("@127.0.0.1:5432/", f"@127.0.0.1:{closed_port()}/")
        assert url != PG_URL
    else:
        (tmp_path / "gone.db").mkdir()  # a folder where the database file should be: cannot open
        url = f"sqlite:///{tmp_path / 'gone.db'}"
    app = make_app(tmp_path, database_url=url, database_busy_seconds=1)
    app.config["WTF_CSRF_ENABLED"] = False  # no page could hand out a token: it is about the database
    client = app.test_client()
    assert client.get("/login").status_code == 200, "a page that needs no database still works"
    body = assert_honest_503(client.post("/login", data={"username": "john", "password": "secret-words"}))
    assert "john" in body and "secret-words" not in body, "what was typed, never the password"
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["database"] == "unavailable"


def test_healthz_is_liveness_without_the_version_and_readyz_checks_database_and_queue(app):
    from helpdesk import __version__

    client = app.test_client()
    health = client.get("/healthz")
    assert health.status_code == 200 and health.get_json() == {"status": "ok"}
    assert __version__ not in health.get_data(as_text=True)
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ok", "database": "ok", "queue": "ok"}


def test_readyz_says_when_the_queue_is_unreachable(tmp_path: Path):
    from helpdesk.db import database

    broken = make_app(tmp_path, queue_url=f"redis://127.0.0.1:{closed_port()}/13", testing=False)
    try:
        ready = broken.test_client().get("/readyz")
    finally:
        if hasattr(database.obj, "close_all"):
            database.obj.close_all()
    assert ready.status_code == 503
    assert ready.get_json() == {"status": "unavailable", "database": "ok", "queue": "unavailable"}


@pytest.fixture
def bearer(app, personas) -> dict[str, str]:
    """The Authorization header of a read+write API token of John's (service desk)."""
    from helpdesk.api import tokens

    with app.app_context():
        secret = tokens.create(personas.owner, "monitoring", ["read", "write"]).secret
    return {"Authorization": f"Bearer {secret}"}


def assert_api_503(response: Any) -> dict[str, Any]:
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json", "an integration reads JSON, not a page"
    assert int(response.headers["Retry-After"]) > 0
    problem = response.get_json()
    assert problem["status"] == 503 and problem["saved"] is False
    assert "Traceback" not in response.get_data(as_text=True)
    return problem


def test_the_api_answers_an_unreachable_database_with_problem_details(tmp_path):
    if PG_URL:
        url = PG_URL.replace("@127.0.0.1:5432/", f"@127.0.0.1:{closed_port()}/")
    else:
        (tmp_path / "gone.db").mkdir()
        url = f"sqlite:///{tmp_path / 'gone.db'}"
    app = make_app(tmp_path, database_url=url, database_busy_seconds=1)
    response = app.test_client().get("/api/v1/incidents", headers={"Authorization": "Bearer hdp_anything"})
    assert "cannot reach its database" in assert_api_503(response)["detail"]


def test_an_api_note_while_sqlite_is_locked_answers_problem_details_and_writes_nothing(
        app, log_incident, bearer):
    if not is_sqlite():
        pytest.skip("SQLite's file lock")
    incident = log_incident(title="Printer offline")
    client = app.test_client()
    headers = bearer
    comments = f"/api/v1/incidents/{incident.id}/comments"
    assert client.get(f"/api/v1/incidents/{incident.id}", headers=headers).status_code == 200
    database_file = Path(app.extensions["helpdesk"].settings.database_url.removeprefix("sqlite:///"))
    holder = sqlite3.connect(database_file, timeout=0, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        response = client.post(comments, json={"body": TYPED}, headers=headers)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "busy" in assert_api_503(response)["detail"]
    assert notes(incident.id) == 0, "nothing half-written"
    again = client.post(comments, json={"body": TYPED}, headers=headers)
    assert again.status_code == 201, again.get_data(as_text=True)
    assert notes(incident.id) == 1


@pytest.mark.parametrize("failure", [peewee.OperationalError("server closed the connection unexpectedly"),
                                     RuntimeError("a bug in building the answer")])
def test_an_api_change_that_fails_after_its_commit_says_it_was_saved(app, log_incident, bearer,
                                                                      monkeypatch, failure):
    """A client told "nothing happened" would repeat the note; it is told to read it back."""
    from helpdesk.api import incidents as api_incidents
    incident = log_incident(title="Printer offline")

    def answer_fails(*args: Any, **kwargs: Any) -> Any:
        raise failure

    monkeypatch.setattr(api_incidents, "entry_json", answer_fails)
    response = app.test_client().post(f"/api/v1/incidents/{incident.id}/comments", json={"body": TYPED},
                                      headers=bearer)
    assert response.status_code == (503 if isinstance(failure, peewee.OperationalError) else 500)
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["saved"] is True
    assert "Read the resource again" in response.get_json()["detail"]
    assert notes(incident.id) == 1


def test_an_api_edit_that_fails_after_its_commit_says_it_was_saved(app, log_incident, bearer, monkeypatch):
    from helpdesk.api import incidents as api_incidents
    from helpdesk.models import Incident

    incident = log_incident(title="Printer offline")

    def answer_fails(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in building the answer")

    monkeypatch.setattr(api_incidents, "incident_json", answer_fails)
    response = app.test_client().patch(f"/api/v1/incidents/{incident.id}", json={"title": "Printer on fire"},
                                       headers={**bearer, "If-Match": '"1"'})
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["saved"] is True, "a client told nothing happened would edit again"
    assert Incident.get_by_id(incident.id).title == "Printer on fire"


@pytest.mark.skipif(not PG_URL, reason="a PostgreSQL server connection")
@pytest.mark.parametrize(("query", "expected"), [("", "3s"), ("?options=", "0")])
def test_a_blank_options_parameter_sends_no_startup_options_for_pgbouncer(query, expected):
    """PgBouncer before 1.20 refuses a connection that sends startup ``options``; the README
    says ``?options=`` turns them off (lock_timeout then comes from the role's settings)."""
    from helpdesk.db import open_database

    database = open_database(PG_URL.split("?")[0] + query, busy_seconds=3)
    try:
        assert database.execute_sql("SHOW lock_timeout").fetchone()[0] == expected
    finally:
        database.close_all()
