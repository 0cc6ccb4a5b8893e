"""`helpdesk db copy`: a team that outgrows SQLite copies its whole desk to PostgreSQL (or back),
and the copy is proven by counts and checksums, then used as the live database."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import peewee
import psycopg
import pytest
from click.testing import CliRunner

from helpdesk import incidents, search
from helpdesk.cli import main
from helpdesk.db import database, open_database
from helpdesk.db_copy import CopyError, copy_database
from helpdesk.models import Agent, Incident, PeriodicRun, TimelineEntry
from helpdesk.testing import PG_URL_VARIABLE, make_app

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
COPY_DB = f"helpdesk_copy_target_{os.getpid()}"  # one per test run: runs may share the server
PASS_SECONDS = 0.000925931000040237  # needs a double: PostgreSQL's real kept 0.000925931


def _drop_postgres_target() -> None:
    with psycopg.connect(ADMIN_URL, connect_timeout=3, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {COPY_DB} WITH (FORCE)")


def _postgres_target(request: pytest.FixtureRequest) -> str:
    """A new, empty PostgreSQL database for the copy (dropped first if a run left one)."""
    try:
        connection = psycopg.connect(ADMIN_URL, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as error:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no PostgreSQL server on 127.0.0.1:5432 ({error})")
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {COPY_DB} WITH (FORCE)")
        cursor.execute(f"CREATE DATABASE {COPY_DB}")
    connection.close()
    request.addfinalizer(_drop_postgres_target)
    return f"postgresql://postgres@127.0.0.1:5432/{COPY_DB}"


@pytest.fixture
def desk(app, ctx, personas, log_incident):
    """A small desk with what a copy must keep: links between incidents (a child whose parent
    was logged after it), a conversation, a resolved incident, SLA clocks."""
    with app.app_context():
        child = log_incident(title="Printer offline on floor 3")
        parent = log_incident(title="Print server down", description="All printers are offline")
        incidents.link(ctx, child.id, personas.owner, "parent", parent.id)
        incidents.add_comment(ctx, parent.id, personas.owner, "Rebooting the print server", public=False)
        incidents.change_status(ctx, parent.id, personas.owner, "resolved", note="Server restarted")
        # What a worker that ran leaves: a pass's duration to the last bit of a double.
        PeriodicRun.create(name="sla_check", started_at=dt.datetime(2026, 12, 1, 9), seconds=PASS_SECONDS)
    return child, parent


def _source_url(app) -> str:
    return app.extensions["helpdesk"].settings.database_url


def _check_the_copy_works(tmp_path: Path, url: str, child_id: int, parent_id: int) -> None:
    """Run the app on the copy: links and conversation there, search finds words, and the next
    incident gets a new reference (the id sequences moved past the copied rows)."""
    app = make_app(tmp_path / "copy-instance", database_url=url)
    ctx = app.extensions["helpdesk"]
    with app.app_context(), database.connection_context():
        assert Incident.get_by_id(child_id).parent_id == parent_id
        assert Incident.get_by_id(parent_id).status == "resolved"
        assert TimelineEntry.select().where((TimelineEntry.incident == parent_id)
                                            & (TimelineEntry.body == "Rebooting the print server")).exists()
        john = Agent.get(Agent.username == "john")
        assert [hit.incident.id for hit in search.search(ctx, john, "print server").hits] == [parent_id]
        newest = incidents.log_incident(ctx, title="After the move", actor=john)
        assert newest.id > max(child_id, parent_id)
    _close(database.obj)


def _close(db: peewee.Database) -> None:
    db.close_all() if hasattr(db, "close_all") else db.close()


def test_copy_to_the_other_kind_of_database_and_run_on_it(app, desk, tmp_path, request):
    child, parent = desk
    source = _source_url(app)
    target = (_postgres_target(request) if source.startswith("sqlite")
              else f"sqlite:///{tmp_path / 'copied.db'}")
    result = copy_database(source, target)

    tables = {t.table: t.rows for t in result.tables}
    assert tables["incident"] == 2 and tables["agent"] == 7 and tables["timeline_entry"] > 4
    assert result.indexed == 2
    _check_the_copy_works(tmp_path, target, child.id, parent.id)


def test_the_command_refuses_a_target_that_holds_data(app, desk, tmp_path):
    target = f"sqlite:///{tmp_path / 'copied.db'}"
    first = CliRunner().invoke(main, ["db", "copy", "--from", _source_url(app), "--to", target])
    assert first.exit_code == 0, first.output
    assert "counts and checksums match" in first.output
    again = CliRunner().invoke(main, ["db", "copy", "--from", _source_url(app), "--to", target])
    assert again.exit_code != 0
    assert "Error: nothing was copied: the target database already holds data" in again.output


def test_a_source_behind_the_schema_is_refused_before_anything_is_written(app, tmp_path):
    old = tmp_path / "old.db"
    peewee.SqliteDatabase(str(old)).connect()  # a database no migration has run on
    target = tmp_path / "never.db"
    with pytest.raises(CopyError, match="helpdesk db upgrade"):
        copy_database(f"sqlite:///{old}", f"sqlite:///{target}")
    db = open_database(f"sqlite:///{target}")
    assert db.get_tables() == []


def test_a_misspelt_source_or_an_unreachable_target_is_one_line_and_leaves_nothing(app, desk, tmp_path):
    misspelt = tmp_path / "helpdsk.db"
    answer = CliRunner().invoke(main, ["db", "copy", "--from", f"sqlite:///{misspelt}",
                                       "--to", f"sqlite:///{tmp_path / 'new.db'}"])
    assert answer.exit_code == 1 and f"there is no source database at sqlite:///{misspelt}" in answer.output
    assert not misspelt.exists(), "no empty file made by asking"
    unreachable = "postgresql://postgres@127.0.0.1:9/nowhere?connect_timeout=2"
    answer = CliRunner().invoke(main, ["db", "copy", "--from", _source_url(app), "--to", unreachable])
    assert answer.exit_code == 1 and "nothing was copied: a database could not be used" in answer.output
    assert answer.exception is None or isinstance(answer.exception, SystemExit)


def test_copying_a_database_onto_itself_is_refused(app):
    with pytest.raises(CopyError, match="same database"):
        copy_database(_source_url(app), _source_url(app))


@pytest.mark.skipif(not os.environ.get(PG_URL_VARIABLE), reason="the PostgreSQL pass copies PG → SQLite "
                    "above; this checks the reverse from that pass too")
def test_sqlite_to_postgres_from_the_postgres_pass(tmp_path, monkeypatch, request):
    monkeypatch.delenv(PG_URL_VARIABLE)
    from helpdesk import people, schema
    from helpdesk.testing import PASSWORD

    app = make_app(tmp_path / "sqlite-instance")
    ctx = app.extensions["helpdesk"]
    with app.app_context(), database.connection_context():
        schema.upgrade(database)
        desk = people.ensure_team(ctx.settings.service_desk_team)
        john = people.create_agent("john", "John Carter", PASSWORD, teams=[desk])
        first = incidents.log_incident(ctx, title="Mail queue stuck", actor=john)
        PeriodicRun.create(name="sla_check", started_at=dt.datetime(2026, 12, 1, 9), seconds=PASS_SECONDS)
    source = _source_url(app)
    _close(database.obj)
    target = _postgres_target(request)
    result = copy_database(source, target)
    assert {t.table: t.rows for t in result.tables}["incident"] == 1
    check = make_app(tmp_path / "pg-instance", database_url=target)
    with check.app_context(), database.connection_context():
        assert Incident.get_by_id(first.id).title == "Mail queue stuck"
    _close(database.obj)
