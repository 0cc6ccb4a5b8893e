"""Each test of the kit starts on a fresh, migrated database, whatever the test before it did.

On PostgreSQL the kit does not drop the schema and run every migration again for each test
(about 0.7 s a test): it empties the tables back to what the migrations wrote, as long as
only rows changed. These tests check that what it restores is what a reset would give, and
that it resets instead when a test left more than rows behind.
"""

from __future__ import annotations

import os

import pytest

from helpdesk import incidents, people, schema, testing
from helpdesk.db import database
from helpdesk.models import Agent, Incident, TimelineEntry

pytestmark = pytest.mark.skipif(not os.environ.get(testing.PG_URL_VARIABLE),
                                reason="the PostgreSQL test database")


def contents() -> dict[str, list[tuple]]:
    """Every row of every table in schema public, in a stable order."""
    tables = [row[0] for row in database.execute_sql(
        "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
    return {table: sorted(map(repr, database.execute_sql(f"SELECT * FROM {table}").fetchall()))
            for table in tables}


def log_an_incident(app, title: str) -> Incident:
    """An incident logged through the domain: incident, timeline (append-only), search …"""
    desk = people.ensure_team(app.extensions["helpdesk"].settings.service_desk_team)
    actor = (Agent.get_or_none(Agent.username == "john")
             or people.create_agent("john", "John", testing.PASSWORD, teams=[desk]))
    return incidents.log_incident(app.extensions["helpdesk"], title=title, actor=actor,
                                  service_desk=desk)


def sequences() -> list[tuple]:
    return database.execute_sql(
        "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1"
    ).fetchall()


def test_a_restored_database_holds_what_a_reset_and_the_migrations_give(app):
    url = os.environ[testing.PG_URL_VARIABLE]
    database.close()
    testing.reset_postgres(url)
    with app.app_context():
        schema.upgrade(database)
        fresh, fresh_sequences = contents(), sequences()
    testing._remember_migrated(url)
    with app.app_context():
        log_an_incident(app, "Printer jams")
        assert Incident.select().count() == 1 and TimelineEntry.select().count() >= 1
        database.close()
    assert testing._restore_migrated(url)
    with app.app_context():
        assert contents() == fresh
        assert sequences() == fresh_sequences
        assert schema.pending(database.obj) == []
        assert log_an_incident(app, "Printer jams again").id == 1  # numbering starts again


@pytest.mark.parametrize("change", [
    "CREATE TABLE left_behind (id integer)",
    "ALTER TABLE incident ADD COLUMN left_behind integer",
    "DROP INDEX search_document_title",
    "ANALYZE incident",  # planner statistics a fresh database would not have
])
def test_a_test_that_changed_more_than_rows_gets_a_reset(app, change):
    url = os.environ[testing.PG_URL_VARIABLE]
    database.close()
    testing.reset_postgres(url)
    with app.app_context():
        schema.upgrade(database)
    testing._remember_migrated(url)
    with app.app_context():
        log_an_incident(app, "Printer jams")
        database.execute_sql(change)
        database.close()
    assert not testing._restore_migrated(url)


def test_a_role_that_may_not_skip_foreign_keys_gets_a_reset_not_an_error(tmp_path):
    # Plugin authors may run their tests as a plain role: emptying the tables needs a
    # superuser, so the kit resets the schema for them as it always did.
    from urllib.parse import urlsplit, urlunsplit

    from helpdesk.db import open_database

    url = os.environ[testing.PG_URL_VARIABLE]
    admin = open_database(url)
    name = "helpdesk_kit_plain"
    with admin.connection_context():
        admin.execute_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # an interrupted run's
        admin.execute_sql("DROP ROLE IF EXISTS helpdesk_kit_plain")
        admin.execute_sql("CREATE ROLE helpdesk_kit_plain LOGIN")
        admin.execute_sql(f"CREATE DATABASE {name} OWNER helpdesk_kit_plain")
    admin.close_all()
    parts = urlsplit(url)
    plain = urlunsplit((parts.scheme, f"helpdesk_kit_plain@{parts.hostname}:{parts.port or 5432}",
                        "/" + name, "", ""))
    try:
        database.close()
        testing.reset_postgres(plain)
        app = testing.make_app(tmp_path, database_url=plain)
        with app.app_context():
            schema.upgrade(database)
            database.close()
        testing._remember_migrated(plain)
        assert not testing._restore_migrated(plain)  # refused by the server, reported as "reset"
        assert plain not in testing._MIGRATED  # and not tried again for this database
    finally:
        database.close()
        if hasattr(database.obj, "close_all"):
            database.obj.close_all()
        with admin.connection_context():
            admin.execute_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.execute_sql("DROP ROLE IF EXISTS helpdesk_kit_plain")
        admin.close_all()


def _other_database(name: str) -> tuple[str, object]:
    """A database of its own on the test server (an interrupted run's is dropped first)."""
    from urllib.parse import urlsplit, urlunsplit

    from helpdesk.db import open_database

    url = os.environ[testing.PG_URL_VARIABLE]
    admin = open_database(url)
    with admin.connection_context():
        admin.execute_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute_sql(f"CREATE DATABASE {name}")
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, "", "")), admin


def test_the_kit_refuses_to_empty_a_database_that_holds_someone_elses_tables():
    """A plugin author who points HELPDESK_TEST_DATABASE_URL at their development helpdesk by
    mistake must not lose it: the kit empties only an empty database, one it emptied before,
    or one whose name says it is for tests."""
    from helpdesk.db import open_database

    url, admin = _other_database("helpdesk_kit_in_use")
    try:
        own = open_database(url)
        with own.connection_context():
            own.execute_sql("CREATE TABLE incident (id integer, title text)")
            own.execute_sql("INSERT INTO incident VALUES (1042, 'Mail down')")
        own.close_all()
        with pytest.raises(RuntimeError, match="HELPDESK_TEST_DATABASE_URL.*helpdesk_kit_in_use"):
            testing.reset_postgres(url)
        with own.connection_context():
            assert own.execute_sql("SELECT title FROM incident").fetchall() == [("Mail down",)]
        own.close_all()
    finally:
        with admin.connection_context():
            admin.execute_sql("DROP DATABASE IF EXISTS helpdesk_kit_in_use WITH (FORCE)")
        admin.close_all()


def test_an_empty_database_the_kit_took_stays_the_kits(tmp_path):
    url, admin = _other_database("helpdesk_kit_fresh")
    try:
        testing.reset_postgres(url)
        app = testing.make_app(tmp_path, database_url=url)
        with app.app_context():
            schema.upgrade(database)  # the kit's tables now, not someone else's
            database.close()
        database.obj.close_all()
        testing.reset_postgres(url)  # and emptied again for the next test
    finally:
        database.close()
        with admin.connection_context():
            admin.execute_sql("DROP DATABASE IF EXISTS helpdesk_kit_fresh WITH (FORCE)")
        admin.close_all()
