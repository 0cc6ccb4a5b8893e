"""Queue pages at any size: every queue and sort pages through exactly its incidents, and
the database reads each page from an index range instead of the whole pool.

The pool is bulk-loaded by ``helpdesk.seed`` (the rows the domain would write, SLA
summaries from the triggers) and then changed through the domain, so the denormalised
SLA columns are checked against the clocks they come from. Plans are checked on the
database the suite runs on (SQLite, or PostgreSQL with HELPDESK_TEST_DATABASE_URL). On
PostgreSQL nothing is switched off (no ``enable_seqscan = off``): the pool is large enough
and freshly VACUUM ANALYZEd, so the planner picks what it would pick in production.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
from typing import Any

import pytest
from flask import Flask

from helpdesk import clock, incidents, queues, seed, sla
from helpdesk.db import database, is_sqlite
from helpdesk.models import ACTIVE_STATUSES, Agent, Incident, Membership, SlaClock
from helpdesk.testing import PG_URL_VARIABLE
from helpdesk_plugins import business_hours, sla_priority

POOL = 3000


def is_sqlite_run() -> bool:
    return not os.environ.get(PG_URL_VARIABLE)


@pytest.fixture
def helpdesk_plugins() -> list[Any]:
    return [business_hours, sla_priority]


@pytest.fixture
def pool(helpdesk_app: Flask) -> Any:
    with helpdesk_app.app_context():
        seeded = seed.incidents(helpdesk_app.extensions["helpdesk"], POOL, batch=1000)
        # Some incidents escalated, as the escalation engine leaves them (tests/escalation run it).
        escalated = [row.id for row in Incident.select(Incident.id) if row.id % 7 == 0]
        Incident.update(escalation_level=2).where(Incident.id.in_(escalated)).execute()
        seed.analyse()  # statistics that know of them, as autovacuum's ANALYZE would
        return seeded


def combinations() -> list[tuple[str, str]]:
    """Every queue with every sort (the due sort too: migration 0016 indexes it everywhere)."""
    return [(queue, sort) for queue in queues.QUEUES for sort in queues.SORTS]


def two_team_agent() -> Agent:
    """An agent in the service desk and the Database team (queues over two teams)."""
    agent = Agent.get(Agent.username == "database0")
    desk = Membership.select().where(Membership.agent == agent.id).get().team_id
    Membership.get_or_create(team=1 if desk != 1 else 2, agent=agent)
    return agent


# -- what each queue holds, worked out from the raw rows and clocks -----------------------------


def due_and_breach(clocks: dict[str, SlaClock]) -> tuple[dt.datetime | None, bool, bool]:
    """(nearest running due time, breached on record, breached and unmet) as the queues define them."""
    response, resolution = clocks.get("response"), clocks.get("resolution")
    due = None
    if response is not None and response.met_at is None and response.stopped_at is None:
        due = response.due_at
    if due is None and resolution is not None:
        due = resolution.due_at
    on_record = any(c.breached_at is not None for c in clocks.values())
    unmet = any(c.breached_at is not None and c.met_at is None for c in clocks.values())
    return due, on_record, unmet


def expected_pages(queue: str, sort: str, agent: Agent) -> list[int]:
    teams = {m.team_id for m in Membership.select().where(Membership.agent == agent.id)}
    clocks: dict[int, dict[str, SlaClock]] = {}
    for clock_row in SlaClock.select():
        clocks.setdefault(clock_row.incident_id, {})[clock_row.target] = clock_row
    keep = []
    for incident in Incident.select().where(Incident.status.in_(ACTIVE_STATUSES)):
        due, on_record, unmet = due_and_breach(clocks.get(incident.id, {}))
        mine = incident.owner_agent_id == agent.id or incident.owner_team_id in teams
        holds = {
            "assigned": incident.assigned_agent_id == agent.id,
            "owned": incident.owner_agent_id == agent.id,
            "at_risk": mine and due is not None and not unmet,
            "breached": on_record,
            "escalated": incident.escalation_level > 0,
            "teams": incident.assigned_team_id in teams or incident.owner_team_id in teams,
            "unassigned": incident.assigned_agent_id is None,
            "unowned": incident.owner_agent_id is None,
            "open": True,
        }[queue]
        if holds:  # a breached, unmet target has no running due time, but its breach to sort by
            overdue = min((c.breached_at for c in clocks.get(incident.id, {}).values()
                           if c.breached_at is not None and c.met_at is None), default=None)
            keep.append((incident, overdue if unmet else due))
    keys = {
        "updated": lambda r: (-r[0].updated_at.timestamp(), -r[0].id),
        "newest": lambda r: (-r[0].created_at.timestamp(), -r[0].id),
        "oldest": lambda r: (r[0].created_at, r[0].id),
        "priority": lambda r: (r[0].priority, r[0].id),
        # breached rows by their breach (past: first), then due times, then rows with neither
        "due": lambda r: (r[1] or dt.datetime(9999, 12, 31), r[0].id),
    }
    return [incident.id for incident, _due in sorted(keep, key=keys[sort])]


def test_every_queue_and_sort_pages_through_exactly_its_incidents(ctx, helpdesk_app, pool):
    with helpdesk_app.app_context():
        state = helpdesk_app.extensions["helpdesk"]
        agent = two_team_agent()
        # Change part of the pool through the domain, so the clocks move as they do in use.
        active = [i.id for i in Incident.select(Incident.id).where(Incident.status.in_(ACTIVE_STATUSES))
                  .order_by(Incident.id.desc()).limit(40)]
        for n, incident_id in enumerate(active):
            incident = Incident.get_by_id(incident_id)
            if n % 4 == 0:
                incidents.add_comment(ctx, incident_id, agent, "On it.", public=True)
            elif n % 4 == 1 and incident.status != "pending":
                incidents.change_status(ctx, incident_id, agent, "pending", pending_reason="customer")
            elif n % 4 == 2 and incident.owner_agent_id is None:
                incidents.take_ownership(ctx, incident_id, agent)
        sla.check(state, clock.now() + dt.timedelta(days=3))
        for queue, sort in combinations():
            seen, after = [], None
            while True:
                ids, after = queues.page_ids(queue, agent, queues.Filters(sort=sort), 60, after)
                seen.extend(ids)
                if after is None:
                    break
            assert seen == expected_pages(queue, sort, agent), (queue, sort)
            whole = Incident.select(Incident.id).where(queues.queue_condition(queue, agent) & queues.ACTIVE)
            assert {row.id for row in whole} == set(seen), queue
        # the rows come back in the order of their ids, with the pairs joined in
        page = queues.page("teams", agent, queues.Filters(sort="priority"), 25)
        assert [row.id for row in page.rows] == expected_pages("teams", "priority", agent)[:25]


def test_the_migration_backfills_the_sla_summary_of_existing_incidents(helpdesk_app, pool):
    migration = importlib.import_module("helpdesk.migrations.0011_queue_indexes")
    with helpdesk_app.app_context():
        before = list(Incident.select(Incident.id, Incident.sla_due_at, Incident.sla_breached)
                      .order_by(Incident.id).tuples())
        assert any(row[1] for row in before) and any(row[2] for row in before)
        Incident.update(sla_due_at=None, sla_breached=False).execute()  # rows older than 0011
        migration.backfill(database.obj)
        after = list(Incident.select(Incident.id, Incident.sla_due_at, Incident.sla_breached)
                     .order_by(Incident.id).tuples())
    assert after == before


def test_migration_0037_gives_existing_breached_incidents_their_breach_to_sort_by(helpdesk_app, pool):
    migration = importlib.import_module("helpdesk.migrations.0037_breached_first")
    with helpdesk_app.app_context():
        sla.check(helpdesk_app.extensions["helpdesk"], clock.now() + dt.timedelta(days=3))
        before = list(Incident.select(Incident.id, Incident.sla_overdue_since).order_by(Incident.id).tuples())
        assert sum(1 for row in before if row[1]) > 10
        Incident.update(sla_overdue_since=None).execute()  # rows older than 0037
        migration.backfill(database.obj)
        after = list(Incident.select(Incident.id, Incident.sla_overdue_since).order_by(Incident.id).tuples())
    assert after == before


def _row_version(incident_id: int) -> Any:
    """Something that changes whenever the incident row is written: SQLite's count of rows
    changed on this connection (triggers' included), PostgreSQL's row version."""
    if is_sqlite():
        return database.connection().total_changes
    return database.execute_sql("SELECT xmin::text FROM incident WHERE id = %s", (incident_id,)).fetchone()[0]


def test_a_clock_change_that_leaves_the_sla_summary_as_it_was_does_not_rewrite_the_incident(helpdesk_app):
    """Migration 0025: the triggers write the summary only when it moves (each write also
    rewrites the row's SLA-keyed queue indexes)."""
    with helpdesk_app.app_context():
        seed.incidents(helpdesk_app.extensions["helpdesk"], 200, batch=200)
        running = (SlaClock.select().join(Incident, on=(SlaClock.incident == Incident.id))
                   .where(Incident.status.in_(list(ACTIVE_STATUSES)) & SlaClock.met_at.is_null()
                          & SlaClock.breached_at.is_null() & SlaClock.stopped_at.is_null()
                          & SlaClock.next_event_at.is_null(False)).first())
        assert running is not None
        incident_id = running.incident_id
        summary = (Incident.select(Incident.sla_due_at, Incident.sla_breached)
                   .where(Incident.id == incident_id))
        before, version = summary.tuples().get(), _row_version(incident_id)
        # the next warning's time moves: nothing the summary is made of
        SlaClock.update(next_event_at=running.next_event_at + dt.timedelta(minutes=5)).where(
            SlaClock.id == running.id).execute()
        assert summary.tuples().get() == before
        expected = version + 1 if is_sqlite() else version  # SQLite counts the clock's own row
        assert _row_version(incident_id) == expected, "the incident row was rewritten"
        # the target breaches: the summary moves, and is written
        SlaClock.update(breached_at=running.due_at).where(SlaClock.id == running.id).execute()
        assert bool(summary.tuples().get()[1]) is True
        assert _row_version(incident_id) != expected


# -- plans ----------------------------------------------------------------------------------------


def sqlite_plan(sql: str, params: list[Any]) -> list[str]:
    return [row[3] for row in database.execute_sql(f"EXPLAIN QUERY PLAN {sql}", params)]


def pg_nodes(sql: str, params: list[Any]) -> list[dict[str, Any]]:
    (plan,) = database.execute_sql(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchone()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    nodes, todo = [], [plan[0]["Plan"]]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo.extend(node.get("Plans", []))
    return nodes


#: A due-sorted range PostgreSQL may read whole and sort, when it expects at most this many rows.
SMALL_RANGE = 100


def assert_read_in_index_order(sql: str, params: list[Any], where: Any) -> None:
    """One branch: an index range of a queue index, read in order, nothing sorted.

    One exception, on PostgreSQL and the due sort only: past the last due time the rows
    without one share a key, and when the planner expects a small range (at most
    SMALL_RANGE rows of the queue's own due index) it may read that range as a bitmap and
    sort it, which costs no more; a large range is read in order like any other."""
    if is_sqlite():
        plan = sqlite_plan(sql, params)
        assert len(plan) == 1 and "USING" in plan[0] and "INDEX incident_q_" in plan[0], (where, plan)
        assert not any("TEMP B-TREE" in line for line in plan), (where, plan)
    else:
        nodes = pg_nodes(sql, params)
        scans = [n for n in nodes if n.get("Relation Name") == "incident"]
        if where[1] == "due" and scans and scans[0]["Node Type"] == "Bitmap Heap Scan":
            bitmaps = [n for n in nodes if n["Node Type"] == "Bitmap Index Scan"]
            assert len(scans) == 1 and len(bitmaps) == 1, (where, nodes)
            assert bitmaps[0]["Index Name"].startswith("incident_q_"), (where, bitmaps[0]["Index Name"])
            assert bitmaps[0]["Index Name"].endswith("_due"), (where, bitmaps[0]["Index Name"])
            assert scans[0]["Plan Rows"] <= SMALL_RANGE, (where, scans[0]["Plan Rows"])
            return
        assert len(scans) == 1 and scans[0]["Node Type"] in {"Index Scan", "Index Only Scan"}, (where, nodes)
        assert scans[0]["Index Name"].startswith("incident_q_"), (where, scans[0]["Index Name"])
        assert not any("Sort" in n["Node Type"] for n in nodes), (where, [n["Node Type"] for n in nodes])


def assert_no_full_scan(sql: str, params: list[Any], where: str) -> None:
    """No table of the pool (incidents, timeline, clocks) is read whole."""
    if is_sqlite():
        plan = sqlite_plan(sql, params)
        for line in plan:
            words = line.split()
            if words[:1] == ["SCAN"] and words[1] not in {"b0", "b1", "b2", "b3"}:
                assert "USING" in words and "INDEX" in line, (where, plan)
    else:
        nodes = pg_nodes(sql, params)
        assert not [n for n in nodes if n["Node Type"] == "Seq Scan"
                    and n.get("Relation Name") in {"incident", "timeline_entry", "sla_clock"}], (where, nodes)


def test_every_queue_and_sort_reads_an_index_range_not_the_pool(helpdesk_app, pool):
    with helpdesk_app.app_context():
        agent = two_team_agent()
        for queue, sort in combinations():
            filters = queues.Filters(sort=sort)
            ids, cursor = queues.page_ids(queue, agent, filters, 10)
            assert ids and cursor, (queue, sort)  # the pool is big enough for a second page
            for after in (None, cursor):
                branches = queues.branch_statements(queue, agent, filters, 10, after)
                assert branches
                for branch in branches:
                    assert_read_in_index_order(*branch, where=(queue, sort, after))
                statement = queues.ids_statement(queue, agent, filters, 10, after)
                assert_no_full_scan(*statement, where=(queue, sort, after))
            # the page's own rows: found by id, their pairs and clocks by key
            rows = queues.base_query().where(Incident.id.in_(ids))
            assert_no_full_scan(*rows.sql(), where=(queue, sort, "rows"))


def queue_plans_missing_their_index(agent: Agent) -> list[tuple[str, str]]:
    missing = []
    for queue, sort in combinations():
        for branch in queues.branch_statements(queue, agent, queues.Filters(sort=sort), 10):
            plan = sqlite_plan(*branch)
            if len(plan) != 1 or "incident_q_" not in plan[0]:
                missing.append((queue, sort))
    return missing


@pytest.mark.skipif(not is_sqlite_run(), reason="SQLite's planner statistics")
@pytest.mark.parametrize("statistics", ["none", "sampled"])
def test_sqlite_reads_the_queue_index_whatever_its_statistics(helpdesk_app, pool, statistics):
    # A pool that grew since its last ANALYZE has no statistics (or, analysed with
    # analysis_limit, skewed ones): SQLite would then read the status index and sort the
    # whole active pool, unless the query names its index.
    with helpdesk_app.app_context():
        agent = two_team_agent()
        database.execute_sql("DELETE FROM sqlite_stat1")
        if statistics == "sampled":
            database.execute_sql("PRAGMA analysis_limit = 100")
            database.execute_sql("ANALYZE")
        database.close()
        database.connect()
        assert queue_plans_missing_their_index(agent) == []


def test_the_navigation_counts_read_queue_indexes_bounded_not_the_pool(helpdesk_app, pool, monkeypatch):
    # Counts in the navigation (one statement for every queue): each branch reads at most
    # COUNT_LIMIT entries of its queue's partial index, so the cost stays flat at any pool.
    monkeypatch.setattr(queues, "COUNT_LIMIT", 100)  # below the pool's queues, so the cap bites
    with helpdesk_app.app_context():
        agent = two_team_agent()
        sql, params = queues.count_statement(agent)
        if is_sqlite():
            plan = sqlite_plan(sql, params)
            scans = [line for line in plan if line.split()[:2] == ["SCAN", "t1"]
                     or line.split()[:2] == ["SEARCH", "t1"]]
            assert scans and all("INDEX incident_q_" in line for line in scans), plan
        else:
            assert_no_full_scan(sql, params, where="counts")
        found = queues.counts(agent)
        for queue in queues.QUEUES:
            whole = Incident.select().where(queues.queue_condition(queue, agent) & queues.ACTIVE).count()
            assert found[queue] == min(whole, 100), queue
        assert any(value == 100 for value in found.values())


# -- PostgreSQL plans a kept statement once ----------------------------------------------------


def test_values_written_into_a_kept_statement_are_only_integers_and_plain_words(helpdesk_app, monkeypatch):
    import enum

    from helpdesk import db

    class Status(enum.StrEnum):
        NEW = "new"

    sql = "SELECT id FROM incident WHERE owner_agent_id = %s AND status IN (%s, %s) LIMIT %s"
    with helpdesk_app.app_context():
        if is_sqlite():  # SQLite keeps its own prepared statements: nothing to change
            assert db.planned_once(sql, [6, "new", "pending", 26]) == (sql, [6, "new", "pending", 26])
        monkeypatch.setattr(db, "is_sqlite", lambda: False)  # what PostgreSQL is given, on either run
        assert db.planned_once(sql, [6, "new", "in_progress", 26]) == (
            "SELECT id FROM incident WHERE owner_agent_id = 6 AND status IN ('new', 'in_progress') LIMIT 26",
            [])
        # "x -%s" with -5 must not become "x --5", the start of a comment
        assert db.planned_once("SELECT 1 - %s, %s", [-5, 2]) == ("SELECT 1 - (-5), 2", [])
        for unsafe in ["it's", "a\\b", "50%", "x" * 65, 1.5, True, None, dt.datetime(2026, 1, 1), Status.NEW]:
            assert db.planned_once(sql, [6, unsafe, "new", 26]) == (sql, [6, unsafe, "new", 26]), unsafe
        like = "SELECT id FROM incident WHERE title LIKE 'a%%' AND owner_agent_id = %s"
        assert db.planned_once(like, [6]) == (like, [6])  # a literal % in the text: left alone
        assert db.planned_once(sql, [6, "new"]) == (sql, [6, "new"])  # a miscount: left alone


@pytest.mark.skipif(is_sqlite_run(), reason="PostgreSQL's plan cache")
def test_postgresql_plans_a_queue_page_and_the_counts_once_per_connection(helpdesk_app, pool):
    # Planning the At-risk UNION over the incident table's partial indexes cost PostgreSQL
    # 6 ms a view against 0.3 ms to run it, every view, because a statement with parameters
    # is planned again for its values. Written without parameters and prepared by psycopg
    # (from its fifth run), it keeps one generic plan.
    with helpdesk_app.app_context():
        agent = two_team_agent()
        filters = queues.Filters(sort="due")
        first = queues.page("at_risk", agent, filters, 25)
        for _ in range(7):
            assert [row.id for row in queues.page("at_risk", agent, filters, 25).rows] == \
                [row.id for row in first.rows]
            queues.counts(agent)
        kept = {statement: (generic, custom) for statement, generic, custom in database.execute_sql(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")}
        risk = [plans for text, plans in kept.items() if "sort_key" in text and "sla_due_at" in text]
        counts = [plans for text, plans in kept.items() if text.startswith("SELECT (SELECT count(*)")]
        assert risk and counts, list(kept)
        for generic, custom in risk + counts:
            assert generic >= 1 and custom == 0, kept
