"""The plugin author's test kit: a pytest plugin with fixtures for testing in a few lines.

Enable it in your ``conftest.py``::

    pytest_plugins = ["helpdesk.testing"]

then override ``helpdesk_plugins`` to register your plugin and write tests
against ``helpdesk_app``, ``personas``, ``login``, ``incident_factory``,
``frozen_clock`` and ``channel_recorder``. Each test gets a fresh app on a
fresh SQLite file (or the PostgreSQL database named by
``HELPDESK_TEST_DATABASE_URL``, wiped per test); background tasks run
immediately; installed plugins are *not* loaded unless
``helpdesk_load_entry_points`` returns True, so results do not depend on
what else is installed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import peewee
import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient

from helpdesk import clock, people, plugins, schema
from helpdesk.app import create_app
from helpdesk.context import Context
from helpdesk.db import database, open_database
from helpdesk.models import Agent, Team
from helpdesk.records import Message

PG_URL_VARIABLE = "HELPDESK_TEST_DATABASE_URL"
PASSWORD = "correct-horse-battery"  # noqa: S105 - the personas' test password


def pytest_report_header() -> str:
    return f"helpdesk database: {os.environ.get(PG_URL_VARIABLE) or 'SQLite file per test'}"


@pytest.fixture(autouse=True)
def _helpdesk_fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id with small parameters: the same code path, a fraction of the time."""
    monkeypatch.setattr(people, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


#: The comment the kit leaves on a PostgreSQL database it has emptied: it may empty it again.
KIT_MARK = "helpdesk test kit: emptied before every test"


def reset_postgres(url: str) -> None:
    """Empty the test database (everything in schema public).

    Only a database that is empty, that the kit emptied before (its comment says so) or whose
    name says it is for tests: a development or production helpdesk named by mistake in
    ``HELPDESK_TEST_DATABASE_URL`` is refused, not dropped."""
    _MIGRATED.pop(url, None)
    db = open_database(url)
    try:
        with db.connection_context():
            name, comment = db.execute_sql(
                "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
                "WHERE datname = current_database()").fetchone()
            tables = db.execute_sql(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
            if tables and comment != KIT_MARK and "test" not in name.lower():
                raise RuntimeError(
                    f"{PG_URL_VARIABLE} names the database {name!r}, which holds {tables} tables the "
                    "test kit did not create; the kit empties its database before every test. "
                    "Name an empty database (or one whose name contains 'test') instead")
            db.execute_sql("DROP SCHEMA IF EXISTS public CASCADE")  # an interrupted run may have left none
            db.execute_sql("CREATE SCHEMA public")
            if comment != KIT_MARK:
                try:
                    with db.atomic():
                        db.execute_sql(f"COMMENT ON DATABASE {_quoted(name)} IS '{KIT_MARK}'")
                except peewee.DatabaseError:  # not its owner: such a database is reset while empty
                    pass
    finally:
        db.close_all()


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# Schema public as the migrations leave it, described by everything a test could change
# short of its rows: relations, columns, constraints, functions, triggers, types, views.
_SCHEMA_FINGERPRINT = """
SELECT md5(coalesce(string_agg(item, '|' ORDER BY item), '')) FROM (
  SELECT 'r ' || c.relname || ' ' || c.relkind::text || ' ' || coalesce(pg_get_indexdef(c.oid), '') AS item
    FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
  UNION ALL
  SELECT 'a ' || a.attrelid::regclass::text || ' ' || a.attname || ' '
         || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull::text || ' '
         || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT 'k ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = 'public'::regnamespace
  UNION ALL
  SELECT 'p ' || oid::regprocedure::text || ' ' || md5(prosrc)
    FROM pg_proc WHERE pronamespace = 'public'::regnamespace
  UNION ALL
  SELECT 't ' || tgrelid::regclass::text || ' ' || tgname || ' ' || tgenabled::text
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
   WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal
  UNION ALL
  SELECT 'y ' || typname FROM pg_type
   WHERE typnamespace = 'public'::regnamespace AND typtype IN ('e', 'd', 'r', 'm')
  UNION ALL
  SELECT 'v ' || viewname || ' ' || definition FROM pg_views WHERE schemaname = 'public'
) AS catalog
"""


@dataclass
class _Migrated:
    """What a fresh, migrated test database holds: its schema's fingerprint, the rows the
    migrations wrote (COPY text) and where its sequences stood."""

    fingerprint: str
    rows: dict[str, bytes]
    sequences: dict[str, tuple[int, bool]]


_MIGRATED: dict[str, _Migrated] = {}


def _remember_migrated(url: str) -> None:
    """Keep what the test database holds right after a reset and the migrations."""
    db = open_database(url)
    try:
        with db.connection_context():
            cursor = db.cursor()
            fingerprint = cursor.execute(_SCHEMA_FINGERPRINT).fetchone()[0]
            tables = [row[0] for row in cursor.execute(
                "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'")]
            rows = {}
            for table in tables:
                with cursor.copy(f"COPY {table} TO STDOUT") as copy:  # noqa: S608 - quoted names
                    rows[table] = b"".join(bytes(block) for block in copy)
            sequences = {name: (value, called) for name, value, called in cursor.execute(
                "SELECT quote_ident(sequencename), coalesce(last_value, start_value), "
                "last_value IS NOT NULL FROM pg_sequences WHERE schemaname = 'public'")}
    finally:
        db.close_all()
    _MIGRATED[url] = _Migrated(fingerprint, rows, sequences)


def _restore_migrated(url: str) -> bool:
    """Bring the test database back to its state right after the migrations, in tens of
    milliseconds instead of a dropped schema and every migration again (about 0.7 s a
    test). Only when nothing but rows changed since: the same schema, no planner statistics
    (a test that ran ANALYZE, or autovacuum's, would leave plans that a fresh database would
    not have); and only for a role that may skip foreign-key checks. False: reset instead."""
    migrated = _MIGRATED.get(url)
    if migrated is None:
        return False
    db = open_database(url)
    try:
        with db.connection_context():
            cursor = db.cursor()
            if cursor.execute(_SCHEMA_FINGERPRINT).fetchone()[0] != migrated.fingerprint:
                return False
            if cursor.execute("SELECT 1 FROM pg_stats WHERE schemaname = 'public' LIMIT 1").fetchone():
                return False
            with db.atomic():
                # Foreign keys and the append-only triggers are triggers: a replica role
                # skips them, so the tables empty in any order (superusers only).
                db.execute_sql("SET LOCAL session_replication_role = replica")
                for table, rows in migrated.rows.items():
                    cursor.execute(f"DELETE FROM {table}")  # noqa: S608 - quoted names
                    if rows:
                        with cursor.copy(f"COPY {table} FROM STDIN") as copy:  # noqa: S608
                            copy.write(rows)
                for name, (value, called) in migrated.sequences.items():
                    cursor.execute("SELECT setval(%s, %s, %s)", (name, value, called))
    except peewee.DatabaseError:
        _MIGRATED.pop(url, None)  # not allowed here (not a superuser): reset every time
        return False
    finally:
        db.close_all()
    return True


def make_app(instance: Path, with_plugins: list[Any] | tuple[Any, ...] = (),
             load_entry_points: bool = False, **settings: Any) -> Flask:
    """An app for tests: given instance folder, immediate tasks, the test database."""
    # A second app re-binds the one database proxy: close the first one's pool now, or its
    # open PostgreSQL connection is garbage-collected later, as a warning in some other test.
    previous = database.obj
    if previous is not None and hasattr(previous, "close_all"):
        if not database.is_closed():
            database.close()
        previous.close_all()
    config = {
        "instance_path": str(instance),
        "database_url": os.environ.get(PG_URL_VARIABLE) or f"sqlite:///{instance / 'helpdesk.db'}",
        "queue_url": "memory",
        "secret_key": "for-tests-only-" + "x" * 32,
        "testing": True,
        "allowed_hosts": "localhost",  # the Flask test client's host, whatever base_url a test sets
        **settings,
    }
    return create_app(config, plugins=with_plugins, load_entry_points=load_entry_points)


def bundled_plugin(name: str) -> Any:
    """A bundled plugin's module by its plugin name (``"sla_priority"``, ``"email"`` …), found
    through the entry points as the app finds it."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="helpdesk", name=name):
        if ep.dist is None or ep.dist.name == "helpdesk":
            return ep.load()
    raise LookupError(f"no bundled plugin named {name!r}")


@pytest.fixture
def helpdesk_settings() -> dict[str, Any]:
    """Settings for the test's app (override or parametrize), e.g.
    ``{"time_zone": "Europe/London", "plugins": {"myplugin": {"url": "…"}}}``."""
    return {}


@pytest.fixture
def helpdesk_plugins() -> list[Any]:
    """Plugins (modules or objects with ``@hookimpl`` functions) to register; override it."""
    return []


@pytest.fixture
def helpdesk_bundled_plugins() -> list[str]:
    """Bundled plugins to load by name, e.g. ``["sla_priority", "business_hours"]`` for SLAs
    as installed; override it (none by default, like every installed plugin)."""
    return []


@pytest.fixture
def helpdesk_load_entry_points() -> bool:
    """Whether installed plugins (entry points) load too; off so tests are reproducible."""
    return False


@pytest.fixture(scope="session")
def _helpdesk_migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session keeps a SQLite file as the migrations leave it (made by its first app)."""
    return tmp_path_factory.mktemp("helpdesk-migrated") / "helpdesk.db"


@pytest.fixture
def helpdesk_app(
    tmp_path: Path,
    _helpdesk_migrated_sqlite: Path,
    helpdesk_settings: dict[str, Any],
    helpdesk_plugins: list[Any],
    helpdesk_load_entry_points: bool,
    helpdesk_bundled_plugins: list[str],
) -> Iterator[Flask]:
    """A fresh app on a fresh, migrated database with the service-desk team."""
    pg_url = os.environ.get(PG_URL_VARIABLE)
    restored = bool(pg_url) and _restore_migrated(pg_url)
    if pg_url and not restored:
        reset_postgres(pg_url)
    own_file = not pg_url and "database_url" not in helpdesk_settings
    if own_file and _helpdesk_migrated_sqlite.exists():
        # The migrated file of the session's first app, copied: the same fresh database as
        # running every migration again, in a millisecond instead of a tenth of a second.
        shutil.copyfile(_helpdesk_migrated_sqlite, tmp_path / "helpdesk.db")
    chosen = [bundled_plugin(name) for name in helpdesk_bundled_plugins] + list(helpdesk_plugins)
    plugins.forget_recorded_failures()  # a fresh app is a fresh process: nothing throttled yet
    app = make_app(tmp_path, chosen, helpdesk_load_entry_points, **helpdesk_settings)
    with app.app_context():
        applied = schema.upgrade(database)
        if pg_url and not restored and app.extensions["helpdesk"].settings.database_url == pg_url:
            _remember_migrated(pg_url)
        if own_file and applied and not _helpdesk_migrated_sqlite.exists():
            migrated = sqlite3.connect(_helpdesk_migrated_sqlite)
            try:
                database.connection().backup(migrated)
            finally:
                migrated.close()
        people.ensure_team(app.extensions["helpdesk"].settings.service_desk_team)
    # No app context stays pushed during the test: each test-client request
    # gets its own, as in production (Flask-Login caches the user in it).
    database.connect(reuse_if_open=True)
    yield app
    if not database.is_closed():
        database.close()
    real = database.obj
    if hasattr(real, "close_all"):
        real.close_all()


@pytest.fixture
def helpdesk_ctx(helpdesk_app: Flask) -> Context:
    """The app's context, the first argument of every domain function."""
    return helpdesk_app.extensions["helpdesk"]


@dataclass
class Personas:
    """The people of the seed scenario, each with the password :data:`PASSWORD`."""

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
def personas(helpdesk_app: Flask) -> Personas:
    desk = Team.get(Team.name == helpdesk_app.extensions["helpdesk"].settings.service_desk_team)
    dbt = people.create_team("Database")
    net = people.create_team("Network")

    def agent(username: str, name: str, teams: list[Team], role: str = "agent") -> Agent:
        return people.create_agent(username, name, PASSWORD, role=role, teams=teams,
                                   email=f"{username}@example.com")

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
    """A test client logged in as one agent (through the real login form), posting with CSRF."""

    def __init__(self, app: Flask, agent: Agent | None) -> None:
        self.app = app
        self.agent = agent
        self.http: FlaskClient = app.test_client()
        self._token: str | None = None
        if agent is not None:
            response = self.http.post("/login", data={
                "username": agent.username, "password": PASSWORD, "csrf_token": self.csrf_token()})
            assert response.status_code == 302, response.get_data(as_text=True)
            self._token = None  # logging in starts a new session with a new CSRF token

    def csrf_token(self) -> str:
        if self._token is None:
            html = self.http.get("/login", follow_redirects=True).get_data(as_text=True)
            self._token = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)
        return self._token

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.http.get(url, **kwargs)

    def post(self, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return self.http.post(url, data={"csrf_token": self.csrf_token(), **(data or {})}, **kwargs)


@pytest.fixture
def login(helpdesk_app: Flask) -> Callable[[Agent | None], AgentClient]:
    """``login(personas.owner)``: a client with that agent's session (``None``: anonymous)."""
    return lambda agent: AgentClient(helpdesk_app, agent)


@pytest.fixture
def incident_factory(helpdesk_app: Flask, personas: Personas) -> Callable[..., Any]:
    """``incident_factory(title=…, actor=…, **fields)`` logs an incident through the domain,
    inside the app (so plugin events fire, immediately)."""
    from helpdesk import incidents

    state = helpdesk_app.extensions["helpdesk"]

    def factory(**values: Any) -> Any:
        values.setdefault("title", "Orders database slow")
        values.setdefault("actor", personas.owner)
        with helpdesk_app.app_context():
            return incidents.log_incident(state, service_desk=personas.service_desk, **values)

    return factory


class FrozenClock:
    """The app's clock, standing still until moved (naive UTC, as stored)."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def set(self, moment: dt.datetime) -> None:
        self.now = moment

    def advance(self, **delta: float) -> dt.datetime:
        """``advance(minutes=30)``: move forward; returns the new time."""
        self.now += dt.timedelta(**delta)
        return self.now


@pytest.fixture
def frozen_clock() -> Iterator[FrozenClock]:
    """Stops the app's clock at 2026-03-02 09:00 UTC (a Monday); move it with ``advance``."""
    frozen = FrozenClock(dt.datetime(2026, 3, 2, 9, 0))
    clock.set_source(lambda: frozen.now)
    yield frozen
    clock.set_source(None)


@dataclass
class ChannelRecorder:
    """What channels were asked to send, instead of sending it."""

    sent: list[tuple[str, Message]] = dataclasses.field(default_factory=list)

    def to(self, channel: str) -> list[Message]:
        return [message for name, message in self.sent if name == channel]


@pytest.fixture
def channel_recorder(helpdesk_app: Flask) -> ChannelRecorder:
    """Replaces every registered channel's transport with a recorder for this test."""
    recorder = ChannelRecorder()
    channels = helpdesk_app.extensions["helpdesk"].registry.channel_types
    for name, channel in list(channels.items()):
        channels[name] = dataclasses.replace(
            channel, send=lambda ctx, message, name=name: recorder.sent.append((name, message)))
    return recorder


@pytest.fixture
def register_plugin(helpdesk_app: Flask) -> Iterator[Callable[[Any], Any]]:
    """``register_plugin(obj)`` adds a throw-away plugin to the running app's event and
    decision hooks; it is always unregistered at the end of the test. Its ``__name__`` (a
    module's, or a class attribute) names it on the Plugins page and in failures, as the
    entry-point name does for an installed plugin."""
    pm = helpdesk_app.extensions["helpdesk"].pm
    added: list[Any] = []

    def register(plugin: Any) -> Any:
        name = getattr(plugin, "__name__", None)
        if not isinstance(name, str) or pm.has_plugin(name):
            name = f"test-plugin-{len(added)}-{id(plugin)}"
        pm.register(plugin, name=name)
        added.append(plugin)
        return plugin

    yield register
    for plugin in added:
        pm.unregister(plugin)


class QueryCounter(logging.Handler):
    """Collects the SQL statements peewee runs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.queries: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # A statement is logged as (sql, params); the PostgreSQL pool's own lines
        # ("Returning … to pool") are not statements.
        if isinstance(record.msg, tuple):
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


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


class HttpReceiver:
    """A real HTTP server on loopback that records requests and answers with ``statuses``
    in turn (then 200), for testing webhook-style channels."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[ReceivedRequest] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                receiver.requests.append(ReceivedRequest(
                    "POST", self.path, dict(self.headers.items()), self.rfile.read(length)))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    """A loopback HTTP receiver: ``.url``, ``.requests``, ``.statuses`` (answers to give)."""
    receiver = HttpReceiver()
    yield receiver
    receiver.close()


# -- people, SLA, outbox and receivers ---------------------------------------------------------


@pytest.fixture
def contact_factory(helpdesk_app: Flask) -> Callable[..., Any]:
    """``contact_factory(name=…, email=…, organisation="Acme Ltd")``: a requester (contact);
    the organisation is created when named."""
    from helpdesk.models import Contact, Organisation

    counter = iter(range(1, 1_000_000))

    def factory(**values: Any) -> Any:
        number = next(counter)
        values.setdefault("name", f"Contact {number}")
        values.setdefault("email", f"contact{number}@example.org")
        organisation = values.pop("organisation", None)
        if isinstance(organisation, str):
            organisation = Organisation.get_or_create(name=organisation)[0]
        return Contact.create(organisation=organisation, **values)

    return factory


@pytest.fixture
def sla_check(helpdesk_app: Flask) -> Callable[..., int]:
    """``sla_check(at=…)``: run one SLA pass as the worker would (default: the app's now);
    returns how many warnings and breaches fired."""
    from helpdesk import sla

    def run(at: dt.datetime | None = None) -> int:
        with helpdesk_app.app_context():
            return sla.check(helpdesk_app.extensions["helpdesk"], at)

    return run


class Outbox:
    """The notification outbox of the test's app: what is in it, and delivering it on demand."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def rows(self, **where: Any) -> list[Any]:
        """Outbox rows (``helpdesk.models.Delivery``) in order, e.g. ``rows(channel="email")``."""
        from helpdesk.models import Delivery

        query = Delivery.select().order_by(Delivery.id)
        for name, value in where.items():
            query = query.where(getattr(Delivery, name) == value)
        return list(query)

    def drain(self) -> int:
        """Deliver every row that is due now (as the sweeper and worker would); returns how many
        were attempted."""
        from helpdesk.notify import outbox

        ctx = self.app.extensions["helpdesk"]
        with self.app.app_context():
            due = [row.id for row in self.rows(state="pending") if row.next_attempt_at <= clock.now()]
            for delivery_id in due:
                outbox.deliver(ctx, delivery_id)
        return len(due)


@pytest.fixture
def outbox(helpdesk_app: Flask) -> Outbox:
    """``outbox.rows(...)`` and ``outbox.drain()``."""
    return Outbox(helpdesk_app)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Received:
    """One message the SMTP server accepted: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage


class SmtpServer:
    """A real SMTP server on loopback (aiosmtpd). ``replies`` are answers to DATA to give in
    turn (e.g. "451 try later"), then it accepts."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.refused: list[Received] = []  # messages answered with one of ``replies``
        self.replies: list[str] = []
        self.from_address = "Helpdesk <helpdesk@example.com>"
        self.port = _free_port()
        from aiosmtpd.controller import Controller

        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd
        import email
        import email.policy

        raw = envelope.original_content or envelope.content
        received = Received(envelope.mail_from, list(envelope.rcpt_tos), raw,
                            email.message_from_bytes(raw, policy=email.policy.default))
        if self.replies:
            self.refused.append(received)
            return self.replies.pop(0)
        self.received.append(received)
        return "250 OK"

    @property
    def settings(self) -> dict[str, Any]:
        """The e-mail channel's settings for this server: ``{"plugins": {"email": server.settings}}``."""
        return {"host": "127.0.0.1", "port": self.port, "from_address": self.from_address, "timeout": 5}

    def to(self, address: str) -> list[Received]:
        """Messages whose envelope went to ``address``."""
        return [r for r in self.received if address in r.rcpt_tos]

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()




@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on loopback (aiosmtpd): ``.settings`` for the e-mail channel,
    ``.received``, ``.to(address)``, ``.replies`` (answers to give before accepting)."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()
