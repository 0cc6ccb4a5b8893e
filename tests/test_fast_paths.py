"""The per-request shortcuts behind fast pages keep their meaning: a kept SQLite connection
carries nothing uncommitted into the next request, a compiled statement binds each call's
own values, and the Python-built badges and pairs escape what people typed."""

from __future__ import annotations

import datetime as dt
import os
import re
import time

import pytest

from helpdesk import people
from helpdesk.db import Statement, database, hydrate, is_sqlite, release
from helpdesk.models import Agent, Incident, Membership, Team
from helpdesk.rendering import member_options, options, pair_text, priority_badge, status_badge

sqlite_only = pytest.mark.skipif(bool(os.environ.get("HELPDESK_TEST_DATABASE_URL")),
                                 reason="SQLite keeps its connection; PostgreSQL pools it")


@sqlite_only
def test_sqlite_connection_is_kept_between_requests(app, personas, login):
    client = login(personas.owner)
    client.get("/queues/open")
    first = database.connection()
    assert client.get("/queues/owned").status_code == 200
    assert not database.is_closed()
    assert database.connection() is first  # no reopening (and re-reading the schema) per request


@sqlite_only
def test_release_rolls_back_what_a_request_left_open(app, personas):
    with app.app_context():
        assert is_sqlite()
        database.connect(reuse_if_open=True)
        database.execute_sql("BEGIN")
        Team.create(name="Half-written")
        release()  # what the request teardown does
        assert database.is_closed()  # a connection with an open transaction is not kept
        assert Team.get_or_none(Team.name == "Half-written") is None
        release()  # and a second call on a closed database is harmless
        Team.create(name="Committed")
        release()
        assert not database.is_closed()  # autocommitted work leaves a clean connection, kept
        assert Team.get(Team.name == "Committed")


@sqlite_only
def test_a_forked_child_does_not_share_the_parents_connection(app):
    with app.app_context():
        database.connect(reuse_if_open=True)
        reader, writer = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            os.write(writer, b"closed" if database.is_closed() else b"shared")
            os._exit(0)
        os.waitpid(child, 0)
        assert os.read(reader, 10) == b"closed"
        os.close(reader)
        os.close(writer)
        assert not database.is_closed()  # the parent's own is untouched


def test_statement_binds_each_calls_values(app, personas):
    members = Statement(lambda agent_id, limit: Membership.select(Membership.team)
                        .where(Membership.agent == agent_id).order_by(Membership.team).limit(limit))
    with app.app_context():
        owner = [row[0] for row in members.execute(personas.owner.id, 10)]
        assignee = [row[0] for row in members.execute(personas.assignee.id, 10)]
        sql_once, _ = members.bind(1, 1)
        sql_again, params = members.bind(personas.assignee.id, 1)
    assert owner == [personas.service_desk.id]
    assert assignee == [personas.database_team.id]
    assert sql_once == sql_again  # compiled once
    assert params == [personas.assignee.id, 1]


def test_hydrate_builds_clean_models_and_none_for_an_absent_join(app, personas, log_incident):
    with app.app_context():
        incident = log_incident(title="Printer on fire")
        query = Statement(lambda incident_id: Incident.select(Incident, Agent)
                          .join(Agent, on=(Incident.assigned_agent == Agent.id), join_type="LEFT OUTER JOIN")
                          .where(Incident.id == incident_id))
        row = query.execute(incident.id).fetchone()
        found, agent = hydrate(row, Incident, Agent)
    assert agent is None  # nobody assigned
    assert found.title == "Printer on fire" and found.id == incident.id
    assert found.created_at == Incident.get_by_id(incident.id).created_at  # a datetime, converted
    assert not found._dirty


def test_new_rows_get_their_own_ids_values_and_defaults(app, frozen_clock):
    """Rows go in through an INSERT compiled once per set of columns: each row still gets its
    own id and values, and a default evaluated per row (never one compiled into the SQL)."""
    from helpdesk.models import IncidentFact

    with app.app_context():
        first = Team.create(name="Printers")
        frozen_clock.advance(minutes=5)
        second = Team(name="Plotters", description="Large formats")
        del second.__data__["created_at"]  # a default peewee itself would fill in at insert
        second.save()
        frozen_clock.advance(minutes=5)
        third = Team(name="Scanners")
        del third.__data__["created_at"]
        third.save(force_insert=True)
        ids = [first.id, second.id, third.id]
        stored = {team.name: team for team in Team.select().where(Team.id.in_(ids))}
        # a model whose key is not an auto-increment id keeps the key it was given
        IncidentFact(incident_id=987654, created_at=frozen_clock.now, created_day="2026-03-02",
                     owner_team=first.id, priority=3, status="new").save(force_insert=True)
        fact = IncidentFact.get_by_id(987654)
    assert len(set(ids)) == 3 and not first._dirty and not second._dirty and not third._dirty
    assert stored["Printers"].created_at + dt.timedelta(minutes=5) == stored["Plotters"].created_at
    assert stored["Plotters"].created_at + dt.timedelta(minutes=5) == stored["Scanners"].created_at
    assert stored["Plotters"].description == "Large formats" and stored["Scanners"].description == ""
    assert (fact.owner_team, fact.priority, fact.response_outcome) == (first.id, 3, "none")


def test_a_model_bound_to_another_database_saves_its_new_rows_there(app, tmp_path):
    """The compiled INSERT runs on the app's database; a model bound elsewhere (``bind_ctx``,
    as a copy tool would) keeps peewee's own path and writes where it is bound."""
    import peewee

    other = peewee.SqliteDatabase(str(tmp_path / "other.db"))
    with app.app_context(), other.bind_ctx([Team]):
        other.create_tables([Team])
        Team.create(name="Elsewhere")
        assert [team.name for team in Team.select()] == ["Elsewhere"]
    with app.app_context():
        assert not Team.select().where(Team.name == "Elsewhere").exists()


def test_pairs_and_badges_escape_names(app):
    team = Team(name='<img src=x onerror="alert(1)">')
    agent = Agent(display_name="Eve & <b>Mallory</b>")
    shown = (pair_text(team, agent), pair_text(team, agent, titled=True), pair_text(None, agent, titled=True))
    for html in shown:
        assert "<img" not in html and "<b>" not in html
        assert "&lt;b&gt;Mallory&lt;/b&gt;" in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in pair_text(team, None, titled=True)
    assert pair_text(None, None, "Unowned", titled=True) == '<span class="pair none">Unowned</span>'
    assert pair_text(None, None) == '<span class="pair">— / <em>no agent</em></span>'
    assert status_badge("in_progress") == '<span class="badge status-in_progress">In progress</span>'
    assert priority_badge(1) == '<span class="badge p1" title="P1 Critical">P1</span>'


def test_queue_page_shows_a_hostile_team_name_as_text(app, personas, login, log_incident):
    with app.app_context():
        evil = people.create_team('Ops <script>alert("x")</script>')
        Membership.create(team=evil, agent=personas.owner)
        incident = log_incident(title="Escaping check")
        Incident.update(owner_team=evil.id).where(Incident.id == incident.id).execute()
    page = login(personas.owner).get("/queues/open").get_data(as_text=True)
    assert '<script>alert("x")</script>' not in page
    assert "Ops &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


@sqlite_only
def test_a_writer_waits_for_the_lock_and_then_writes(app):
    import sqlite3
    import threading

    with app.app_context():
        path = database.obj.database
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        threading.Timer(0.3, holder.commit).start()  # the other writer finishes a little later
        from helpdesk.db import write_transaction

        with write_transaction():
            Team.create(name="Written after the wait")
        holder.close()
        assert Team.get(Team.name == "Written after the wait")
        timeout = database.execute_sql("PRAGMA busy_timeout").fetchone()[0]
    assert timeout == app.extensions["helpdesk"].settings.database_busy_seconds * 1000  # restored


@sqlite_only
def test_a_writer_gives_up_after_the_busy_time_and_writes_nothing(app):
    import sqlite3

    from helpdesk.db import write_transaction

    with app.app_context():
        real = database.obj
        holder = sqlite3.connect(real.database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        real.busy_seconds, kept = 0.2, real.busy_seconds
        try:
            with pytest.raises(Exception, match="locked"), write_transaction():
                Team.create(name="Never written")
        finally:
            real.busy_seconds = kept
            holder.rollback()
            holder.close()
        assert Team.get_or_none(Team.name == "Never written") is None


@sqlite_only
def test_threads_of_one_process_take_turns_to_write_and_a_late_one_gives_up(app):
    """Writing threads queue on the process's own lock: eight writing at once all get through;
    one that waits behind a transaction longer than the busy time fails with "locked" and
    writes nothing; whatever way a transaction ends (commit, rollback, a request that left it
    open), the next thread gets in."""
    import threading

    from helpdesk.db import write_transaction

    def write(name: str, hold: float = 0.0, errors: list | None = None) -> None:
        with app.app_context():
            try:
                with write_transaction():
                    Team.create(name=name)
                    time.sleep(hold)
            except Exception as error:  # noqa: BLE001 - the test looks at it
                if errors is None:
                    raise
                errors.append(error)
            finally:
                release()

    writers = [threading.Thread(target=write, args=(f"Crew {n}", 0.01)) for n in range(8)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=30)
    with app.app_context():
        assert Team.select().where(Team.name.startswith("Crew ")).count() == 8
        real = database.obj
        real.busy_seconds, kept = 0.2, real.busy_seconds
    errors: list = []
    try:
        holder = threading.Thread(target=write, args=("Slow", 0.8))
        holder.start()
        time.sleep(0.1)
        late = threading.Thread(target=write, args=("Late", 0.0, errors))
        late.start()
        late.join(timeout=30)
        holder.join(timeout=30)
    finally:
        real.busy_seconds = kept
    assert len(errors) == 1 and "locked" in str(errors[0])
    with app.app_context():
        assert Team.get_or_none(Team.name == "Late") is None and Team.get(Team.name == "Slow")
        # a rolled-back transaction, then one a request left open, each let the next writer in
        with pytest.raises(RuntimeError), write_transaction():
            Team.create(name="Rolled back")
            raise RuntimeError("the change failed half-way")
        database.begin("IMMEDIATE")
        Team.create(name="Left open")
        release()
    write("After all that")
    with app.app_context():
        assert Team.get(Team.name == "After all that")
        assert Team.get_or_none(Team.name.in_(["Rolled back", "Left open"])) is None


def test_options_escape_names_and_mark_only_the_selected_one():
    contacts = [(3, 'Ada "<b>" & co'), (31, "Bob"), (13, "Cy")]
    first = str(options(contacts, 31))
    assert first == ('<option value="3">Ada &#34;&lt;b&gt;&#34; &amp; co</option>'
                     '<option value="31" selected>Bob</option><option value="13">Cy</option>')
    again = str(options(contacts, 3))  # the remembered list does not keep the last selection
    assert again.count(" selected") == 1 and '<option value="3" selected>' in again
    assert " selected" not in str(options(contacts, 99)) + str(options(contacts))
    assert str(options([(31, "Bob renamed")], 31)) == '<option value="31" selected>Bob renamed</option>'


def test_incident_page_shows_a_hostile_requester_name_as_text(app, personas, login, log_incident):
    from helpdesk.models import Contact

    hostile = Contact.create(name='<img src=x onerror="alert(1)">', email="x@example.com")
    incident = log_incident(title="Requester check", requester=hostile)
    page = login(personas.owner).get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert '<img src=x onerror="alert(1)">' not in page
    shown = "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;"
    assert f'<label for="d-requester-{hostile.id}">{shown} &lt;x@example.com&gt;</label>' in page


def test_member_options_mark_an_agent_only_under_the_chosen_team():
    teams = [(1, "Desk"), (2, "DB & <Ops>"), (3, "Empty")]
    members = {1: [(7, "Ada"), (8, "Bo")], 2: [(7, "Ada")], 3: []}
    html = str(member_options(teams, members, selected_team=2, selected_agent=7))
    assert html == ('<optgroup label="Desk" data-team="1"><option value="7">Ada</option>'
                    '<option value="8">Bo</option></optgroup>'
                    '<optgroup label="DB &amp; &lt;Ops&gt;" data-team="2">'
                    '<option value="7" selected>Ada</option></optgroup>')
    assert " selected" not in str(member_options(teams, members, selected_team=3, selected_agent=7))


def test_incident_page_selects_the_assignee_under_the_assigned_team(app, personas, login, incident_factory):
    with app.app_context():  # the assignee also belongs to the service desk
        Membership.get_or_create(team=personas.service_desk, agent=personas.assignee)
    incident = incident_factory(title="Two teams", assigned_team=personas.database_team,
                                assigned_agent=personas.assignee)
    page = login(personas.owner).get(f"/incidents/{incident.id}").get_data(as_text=True)
    select = page[page.index('<select id="assigned-agent"'):]
    select = select[:select.index("</select>")]
    groups = dict(re.findall(r'<optgroup label="([^"]+)" data-team="\d+">(.*?)</optgroup>', select))
    assert f'<option value="{personas.assignee.id}" selected>' in groups["Database"]
    assert f'<option value="{personas.assignee.id}">' in groups[personas.service_desk.name]


def test_links_follow_the_prefix_the_app_is_served_under(app, personas, login):
    """Template links are remembered per script root: the same app behind /desk and at /
    (two reverse-proxy paths) links each request to its own."""
    client = login(personas.owner)
    root = client.get("/queues/open").get_data(as_text=True)
    prefixed = client.http.get("/queues/open", environ_overrides={"SCRIPT_NAME": "/desk"})
    prefixed = prefixed.get_data(as_text=True)
    assert 'href="/queues/assigned"' in root and "/desk/" not in root
    assert 'href="/desk/queues/assigned"' in prefixed
    assert 'href="/queues/assigned"' not in prefixed
    assert 'href="/queues/assigned"' in client.get("/queues/open").get_data(as_text=True)


def test_links_with_list_values_are_built_by_flask_each_time(app, personas, login):
    """Only plain values are remembered: a tuple of 1 and a tuple of True are different links."""
    with app.test_request_context("/"):
        build = app.jinja_env.globals["url_for"]
        assert build("queues.show", name="open", status=(1,)) == "/queues/open?status=1"
        assert build("queues.show", name="open", status=(True,)) == "/queues/open?status=True"
        assert build("queues.show", name="open", page=1) == "/queues/open?page=1"
        assert build("queues.show", name="open", page=True) == "/queues/open?page=True"
