"""G9: a request whose transaction PostgreSQL undid because another transaction raced it (a
serialization failure, 40001, or a deadlock, 40P01) runs again and succeeds, writing its change
once; one that keeps losing answers 503 with what was typed and changes nothing.

The races are real PostgreSQL errors: a trigger raises the SQLSTATE for the first writes it sees,
counted by a sequence (which a rollback does not undo). The dispatcher's rule that a request that
already committed is never run twice is checked on both databases with a route of the test's own.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from peewee import OperationalError

from helpdesk.api import tokens
from helpdesk.app import CONFLICT_ATTEMPTS
from helpdesk.attachments import path_of
from helpdesk.db import database, is_sqlite, write_transaction
from helpdesk.models import Attachment, Incident, Notice, TimelineEntry
from helpdesk.security import AGENT, access
from helpdesk.testing import AgentClient, Personas

TYPED = 'Rebooted <b>the "core" switch</b> & checked the uplinks'


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def timeline(incident_id: int) -> list[tuple[str, str]]:
    return [(entry.kind, entry.body) for entry in
            TimelineEntry.select().where(TimelineEntry.incident == incident_id).order_by(TimelineEntry.id)]


def opened(client: AgentClient, incident_id: int) -> dict[str, str]:
    page = text(client.get(f"/incidents/{incident_id}"))
    return {"version": re.search(r'name="version" value="(\d+)"', page).group(1),
            "seen": re.search(r'name="seen" value="(\d+)"', page).group(1)}


@pytest.fixture
def races(app: Flask) -> Iterator[Callable[..., Callable[[], int]]]:
    """``races(table, sqlstate, lost, event)``: the first ``lost`` row writes of ``event`` on
    ``table`` fail with ``sqlstate``; returns a function telling how many writes were tried."""
    if is_sqlite():
        pytest.skip("PostgreSQL's serialization failures and deadlocks")
    tables: list[str] = []

    def install(table: str, sqlstate: str, lost: int, event: str = "UPDATE") -> Callable[[], int]:
        with database.atomic():
            database.execute_sql("DROP SEQUENCE IF EXISTS g9_writes")
            database.execute_sql("CREATE SEQUENCE g9_writes")
            database.execute_sql(
                "CREATE OR REPLACE FUNCTION g9_race() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF nextval('g9_writes') <= {int(lost)} THEN "
                f"RAISE EXCEPTION 'lost a race (test)' USING ERRCODE = '{sqlstate}'; END IF; "
                "RETURN NEW; END $$")
            database.execute_sql(f"CREATE TRIGGER g9_race BEFORE {event} ON {table} "
                                 "FOR EACH ROW EXECUTE FUNCTION g9_race()")
        tables.append(table)

        def tried() -> int:
            last, called = database.execute_sql("SELECT last_value, is_called FROM g9_writes").fetchone()
            return last if called else 0

        return tried

    yield install
    with database.atomic():
        for table in tables:
            database.execute_sql(f"DROP TRIGGER IF EXISTS g9_race ON {table}")
        database.execute_sql("DROP FUNCTION IF EXISTS g9_race()")
        database.execute_sql("DROP SEQUENCE IF EXISTS g9_writes")


def edit(client: AgentClient, incident_id: int, title: str) -> Any:
    return client.post(f"/incidents/{incident_id}/details", {
        **opened(client, incident_id), "title": title, "description": "Core switch",
        "type": "incident", "impact": "high", "urgency": "medium"})


@pytest.mark.parametrize("sqlstate", ["40001", "40P01"], ids=["serialization", "deadlock"])
def test_g9_an_edit_that_loses_two_races_succeeds_on_the_third_run_with_one_audit_row(
        app: Flask, personas: Personas, incident_factory: Any, races: Any, sqlstate: str) -> None:
    john = AgentClient(app, personas.owner)
    calm, raced = incident_factory(title="Network slow"), incident_factory(title="Network slow")
    assert edit(john, calm.id, "Network down in building B").status_code == 303
    tried = races("incident", sqlstate, lost=2)
    response = edit(john, raced.id, "Network down in building B")
    assert response.status_code == 303, text(response)
    assert tried() >= 3, "the first two runs met the injected race"
    assert Incident.get_by_id(raced.id).title == "Network down in building B"
    assert Incident.get_by_id(raced.id).version == Incident.get_by_id(calm.id).version
    assert len(timeline(raced.id)) == len(timeline(calm.id)), "one audit row per change, as without races"
    assert "Network down in building B" in text(john.get(response.headers["Location"]))


def test_g9_an_api_update_that_deadlocks_twice_answers_200_once(
        app: Flask, personas: Personas, incident_factory: Any, races: Any) -> None:
    incident = incident_factory(title="Printer offline")
    with app.app_context():
        secret = tokens.create(personas.owner, "script", ["read", "write"]).secret
    client = app.test_client()
    tried = races("incident", "40P01", lost=2)
    response = client.patch(f"/api/v1/incidents/{incident.id}", json={"urgency": "high"},
                            headers={"Authorization": f"Bearer {secret}", "If-Match": '"1"'})
    assert response.status_code == 200, text(response)
    assert tried() >= 3
    assert response.get_json()["version"] == 2 == Incident.get_by_id(incident.id).version
    assert Incident.get_by_id(incident.id).urgency == "high"


def test_g9_an_api_update_that_loses_every_race_answers_problem_details_and_changes_nothing(
        app: Flask, personas: Personas, incident_factory: Any, races: Any) -> None:
    incident = incident_factory(title="Printer offline")
    with app.app_context():
        secret = tokens.create(personas.owner, "script", ["read", "write"]).secret
    assert incident.urgency != "high"
    tried = races("incident", "40001", lost=1000)
    response = app.test_client().patch(
        f"/api/v1/incidents/{incident.id}", json={"urgency": "high"},
        headers={"Authorization": f"Bearer {secret}", "If-Match": '"1"'})
    assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
    assert response.mimetype == "application/problem+json", "an integration reads JSON, not a page"
    assert response.get_json()["saved"] is False
    assert tried() == CONFLICT_ATTEMPTS
    after = Incident.get_by_id(incident.id)
    assert (after.urgency, after.version) == (incident.urgency, 1), "nothing changed"


def test_g9_a_note_with_a_file_run_again_stores_the_whole_file_once(
        app: Flask, ctx: Any, personas: Personas, incident_factory: Any, races: Any) -> None:
    incident = incident_factory(title="Backup job failed")
    john = AgentClient(app, personas.owner)
    john.csrf_token()
    content = b"job 17: exit 3\n" * 4000
    tried = races("timeline_entry", "40001", lost=2, event="INSERT")
    response = john.post(f"/incidents/{incident.id}/comments", data={
        "body": TYPED, "visibility": "note", "files": [(io.BytesIO(content), "backup.log")]},
        content_type="multipart/form-data")
    assert response.status_code in {200, 303}, text(response)
    assert tried() >= 3
    assert [body for kind, body in timeline(incident.id) if kind == "note"] == [TYPED]
    (stored,) = Attachment.select().where(Attachment.incident == incident.id)
    assert stored.size == len(content)
    with app.app_context():
        assert path_of(ctx, stored).read_bytes() == content


def test_g9_a_form_whose_idempotency_key_deadlocks_keeps_the_key_on_the_run_that_commits(
        app: Flask, personas: Personas, incident_factory: Any, races: Any) -> None:
    """The key is written just before the commit; when that write loses, the next run writes it,
    so sending the same form again still answers "already saved" instead of a second note."""
    incident = incident_factory(title="Laptop will not boot")
    john = AgentClient(app, personas.owner)
    key = re.search(r'name="idempotency_key" value="([0-9a-f]{32})"',
                    text(john.get(f"/incidents/{incident.id}"))).group(1)
    form = {"body": TYPED, "visibility": "note", "idempotency_key": key}
    tried = races("idempotent_request", "40P01", lost=2, event="INSERT")
    assert john.post(f"/incidents/{incident.id}/comments", form).status_code in {200, 303}
    assert tried() == 3
    again = john.post(f"/incidents/{incident.id}/comments", form, follow_redirects=True)
    assert "not saved a second time" in text(again)
    assert [body for kind, body in timeline(incident.id) if kind == "note"] == [TYPED]


def test_g9_an_edit_that_loses_every_race_answers_503_keeping_the_text_and_changing_nothing(
        app: Flask, personas: Personas, incident_factory: Any, races: Any) -> None:
    incident = incident_factory(title="Wi-Fi drops")
    john = AgentClient(app, personas.owner)
    form = opened(john, incident.id)
    before = timeline(incident.id)
    tried = races("incident", "40001", lost=1000)
    response = john.post(f"/incidents/{incident.id}/details", {
        **form, "title": "Wi-Fi drops on floor 3", "description": TYPED, "type": "incident",
        "impact": "high", "urgency": "high"})
    body = text(response)
    assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
    assert "Traceback" not in body and "psycopg" not in body
    assert "&lt;b&gt;the &#34;core&#34; switch&lt;/b&gt;" in body or "&lt;b&gt;the &quot;core" in body
    assert tried() == CONFLICT_ATTEMPTS, "each run met the race once and the last one gave up"
    assert Incident.get_by_id(incident.id).title == "Wi-Fi drops"
    assert timeline(incident.id) == before


class Race(Exception):
    """What the driver raises for a lost race (peewee passes it on as the first argument)."""

    sqlstate = "40001"


def test_a_request_that_committed_before_losing_a_race_is_not_run_again(
        app: Flask, personas: Personas) -> None:
    """Running it again would repeat the committed change; it answers as an outage does."""
    runs: dict[str, int] = {"clean": 0, "committed": 0}

    @app.get("/test/race/clean")
    @access(AGENT)
    def clean() -> str:
        runs["clean"] += 1
        if runs["clean"] < 3:
            raise OperationalError(Race("lost a race"))
        return "done"

    @app.get("/test/race/committed")
    @access(AGENT)
    def committed() -> str:
        runs["committed"] += 1
        with write_transaction():
            Notice.select().count()
        raise OperationalError(Race("lost a race"))

    client = AgentClient(app, personas.owner)
    response = client.get("/test/race/clean")
    assert (response.status_code, text(response), runs["clean"]) == (200, "done", 3)
    response = client.get("/test/race/committed")
    assert response.status_code == 503 and runs["committed"] == 1
