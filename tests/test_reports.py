"""Reports as a team lead reads them: the figures are exactly what the timeline says.

The heart of this file is an independent account of SLA compliance: it replays each
incident's timeline (status changes and replies, nothing else) with its own business-hours
arithmetic (Monday to Friday 09:00-17:00 Europe/London, worked out per local day with
zoneinfo) and the ``priority`` policy's default targets, and hypothesis compares it with the
report over random histories — pauses, reopenings, SLA checks, both DST changes of 2026
(London is UTC+0 until 29 March and from 25 October, UTC+1 between).
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib
import io
import itertools
import os
import re
import statistics
import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpdesk import incidents, people, reports, search
from helpdesk.db import database
from helpdesk.errors import DomainError
from helpdesk.models import Incident, IncidentFact, ReportDay, SlaClock, TimelineEntry
from helpdesk_plugins import business_hours, sla_priority

LONDON = ZoneInfo("Europe/London")
YEAR = reports.Filters(dt.date(2026, 1, 1), dt.date(2026, 12, 31))
#: The priority policy's defaults: (response, resolution) seconds, and whether business time.
TARGETS = {1: (15 * 60, 4 * 3600, False), 2: (30 * 60, 8 * 3600, True),
           3: (4 * 3600, 24 * 3600, True), 4: (8 * 3600, 80 * 3600, True)}


@pytest.fixture
def helpdesk_plugins() -> list[Any]:
    return [business_hours, sla_priority]


@pytest.fixture
def helpdesk_settings() -> dict[str, Any]:
    return {"time_zone": "Europe/London"}


# -- the independent account ---------------------------------------------------------------

def business_seconds(start: dt.datetime, end: dt.datetime) -> float:
    """Working seconds between two naive UTC instants, day by local day."""
    if end <= start:
        return 0.0
    total = 0.0
    day = start.replace(tzinfo=dt.UTC).astimezone(LONDON).date() - dt.timedelta(days=1)
    while True:
        opens = dt.datetime.combine(day, dt.time(9), LONDON).astimezone(dt.UTC).replace(tzinfo=None)
        closes = dt.datetime.combine(day, dt.time(17), LONDON).astimezone(dt.UTC).replace(tzinfo=None)
        if opens >= end:
            return total
        if day.weekday() < 5:
            total += max(0.0, (min(closes, end) - max(opens, start)).total_seconds())
        day += dt.timedelta(days=1)


class Clock:
    """One target, replayed: working time counted, pauses subtracted."""

    def __init__(self, seconds: int, business: bool, start: dt.datetime) -> None:
        self.seconds, self.business, self.start = seconds, business, start
        self.met: dt.datetime | None = None
        self.paused_since: dt.datetime | None = None
        self.paused = 0.0

    def span(self, a: dt.datetime, b: dt.datetime) -> float:
        return business_seconds(a, b) if self.business else max(0.0, (b - a).total_seconds())

    def pause(self, at: dt.datetime) -> None:
        if self.paused_since is None:
            self.paused_since = at

    def resume(self, at: dt.datetime) -> None:
        if self.paused_since is not None:  # a pause counts until the target was met, if it was
            self.paused += self.span(self.paused_since, min(at, self.met or at))
            self.paused_since = None

    def worked(self, at: dt.datetime) -> float:
        ongoing = self.span(self.paused_since, at) if self.paused_since is not None else 0.0
        return self.span(self.start, at) - self.paused - ongoing

    def outcome(self, at: dt.datetime) -> str | None:
        if self.met is not None:
            return "met" if self.worked(self.met) <= self.seconds else "late"
        return "breached" if self.worked(at) >= self.seconds else None


def replay(incident: Incident) -> dict[str, Clock]:
    """The response and resolution clocks of one incident, from its timeline alone."""
    response_s, resolution_s, business = TARGETS[incident.priority]
    response = Clock(response_s, business, incident.created_at)
    resolution = Clock(resolution_s, business, incident.created_at)
    entries = TimelineEntry.select().where(TimelineEntry.incident == incident.id).order_by(TimelineEntry.id)
    for entry in entries:
        at = entry.at
        if entry.kind == "reply" and response.met is None:
            response.met = at
        if entry.kind != "change" or entry.field != "status":
            continue
        old, new = entry.old_value, entry.new_value
        if new == "Resolved":
            response.met = response.met or at
            resolution.met = resolution.met or at
            resolution.pause(at)
        elif old == "Resolved":  # reopened: resolution runs again from where it stood
            resolution.met = None
            resolution.resume(at)
        elif new == "Pending":
            for clock in (response, resolution):
                if clock.met is None:
                    clock.pause(at)
        elif old == "Pending":
            response.resume(at)
            resolution.resume(at)
    return {"response": response, "resolution": resolution}


def account(incident_ids: list[int], at: dt.datetime) -> dict[str, Any]:
    counts = {t: dict.fromkeys(reports.OUTCOMES, 0) for t in ("response", "resolution")}
    times: dict[str, list[float]] = {f"{t}_{k}": [] for t in ("response", "resolution")
                                     for k in ("business", "wall")}
    opened: dict[str, int] = {}
    resolved_once = reopened = 0
    for incident in Incident.select().where(Incident.id.in_(incident_ids)):
        day = incident.created_at.replace(tzinfo=dt.UTC).astimezone(LONDON).date().isoformat()
        opened[day] = opened.get(day, 0) + 1
        for target, clock in replay(incident).items():
            outcome = clock.outcome(at)
            if outcome:
                counts[target][outcome] += 1
            if clock.met is not None:
                times[f"{target}_business"].append(int(clock.worked(clock.met)))
                times[f"{target}_wall"].append(int((clock.met - clock.start).total_seconds()))
        statuses = [(e.old_value, e.new_value) for e in incident.timeline if e.field == "status"]
        resolved_once += any(new == "Resolved" for _, new in statuses)
        reopened += any(old == "Resolved" and new != "Closed" for old, new in statuses)
    return {"counts": counts, "times": times, "opened": opened, "reopens": (resolved_once, reopened)}


def half_up(value: float) -> int:
    return int(Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def quantile(values: list[float], percent: int) -> int:
    """The percentile as spreadsheets' PERCENTILE.INC gives it, in whole seconds (half up)."""
    if len(values) == 1:
        return half_up(values[0])
    if percent == 50:
        return half_up(statistics.median(values))
    return half_up(statistics.quantiles(values, n=100, method="inclusive")[percent - 1])


# -- random histories ----------------------------------------------------------------------

ACTIONS = ["reply", "note", "pending", "resume", "resolve", "reopen", "check"]
history = st.lists(st.tuples(st.integers(0, 4 * 24 * 60), st.sampled_from(ACTIONS)), max_size=8)
incident_plans = st.lists(st.tuples(st.sampled_from(["high", "medium", "low"]),
                                    st.sampled_from(["high", "medium", "low"]), history),
                          min_size=1, max_size=3)
starts = st.sampled_from([dt.datetime(2026, 3, 26, 8, 30), dt.datetime(2026, 10, 22, 16, 10),
                          dt.datetime(2026, 3, 28, 23, 0), dt.datetime(2026, 10, 24, 12, 0)])
_teams = itertools.count(1)


def act(ctx: Any, incident_id: int, actor: Any, action: str, sla_check: Any) -> None:
    try:
        if action in {"reply", "note"}:
            incidents.add_comment(ctx, incident_id, actor, f"A {action}", public=action == "reply")
        elif action == "pending":
            incidents.change_status(ctx, incident_id, actor, "pending", pending_reason="customer")
        elif action == "resume":
            incidents.change_status(ctx, incident_id, actor, "in_progress")
        elif action == "resolve":
            incidents.change_status(ctx, incident_id, actor, "resolved", resolution_code="fixed",
                                    note="Fixed")
        elif action == "reopen":
            incidents.reopen(ctx, incident_id, actor, note="Still broken")
        else:
            sla_check()
    except DomainError:
        pass  # not allowed from this status: nothing was recorded, and the account agrees


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plans=incident_plans, start=starts, offsets=st.lists(st.integers(0, 3 * 24 * 60), min_size=3,
                                                            max_size=3))
def test_report_figures_match_an_independent_account_of_the_timeline(
        app, ctx, frozen_clock, sla_check, plans, start, offsets):
    with app.app_context():
        team = people.create_team(f"Team {next(_teams)}")
        actor = people.create_agent(f"agent{team.id}", f"Agent {team.id}", "correct-horse-battery",
                                    teams=[team])
        created = []
        frozen_clock.set(start)
        for (impact, urgency, steps), offset in zip(plans, offsets, strict=False):
            frozen_clock.advance(minutes=offset)  # time only moves forward, as it does
            incident = incidents.log_incident(ctx, title="Random history", actor=actor,
                                              impact=impact, urgency=urgency)
            created.append(incident.id)
            for minutes, action in steps:
                frozen_clock.advance(minutes=minutes)
                act(ctx, incident.id, actor, action, sla_check)
        at = frozen_clock.advance(hours=1)
        expected = account(created, at)

        filters = reports.Filters(YEAR.start, YEAR.end, team=team.id)
        everything = reports.Scope(True, actor.id)
        [row] = reports.compliance(filters, everything, at)
        assert row.counts == expected["counts"]
        durations = reports.durations(filters, everything)
        for key, values in expected["times"].items():
            found = durations[key]
            assert found.count == len(values), key
            if values:
                assert found.mean == half_up(sum(values) / len(values)), key
                assert found.p50 == quantile(values, 50), key
                assert found.p90 == quantile(values, 90), key
        opened = {d.day: d.opened for d in reports.flow(filters, everything) if d.opened}
        assert opened == expected["opened"]
        reopen = reports.reopens(filters, everything)
        assert (reopen.resolved, reopen.reopened) == expected["reopens"]
        # A rebuild from scratch counts the same.
        facts = (IncidentFact.select().where(IncidentFact.incident_id.in_(created))
                 .order_by(IncidentFact.incident_id))  # (a row rewritten moves on PostgreSQL)
        before = list(facts.dicts())
        reports.rebuild(ctx)
        assert list(facts.dicts()) == before


def test_only_a_comment_that_moves_a_clock_rewrites_the_report_row(app, ctx, personas, count_queries):
    # Every reply rewrote the incident's report row and its day aggregates (seven statements of
    # a reply's sixteen), though only the first public reply, meeting the response target, moves
    # what the row holds while the incident is open.
    def fact_statements(public: bool) -> list[str]:
        count_queries.queries.clear()
        incidents.add_comment(ctx, incident.id, personas.owner, "Still looking", public=public)
        return [q for q in count_queries.queries if "incident_fact" in q]

    with app.app_context():
        incident = incidents.log_incident(ctx, title="VPN", actor=personas.owner, impact="high",
                                          urgency="high")
        assert fact_statements(public=True)  # the response target is met: the row changes
        assert fact_statements(public=True) == [] and fact_statements(public=False) == []
        kept = {row.incident_id: row.__data__ for row in IncidentFact.select()}
        reports.rebuild(ctx)  # and what it kept is what a rebuild writes
        assert {row.incident_id: row.__data__ for row in IncidentFact.select()} == kept
        incidents.change_status(ctx, incident.id, personas.owner, "resolved", note="Fixed")
        assert fact_statements(public=False)  # an ended incident's row may follow its last change


def test_an_outcome_stays_with_the_team_that_owned_the_incident_when_it_was_decided(
        app, ctx, personas, frozen_clock, sla_check, login):
    # Service Desk answers one P2 in time and lets another's resolution breach; both are then
    # handed to the Database team. The breach and the met target were Service Desk's.
    with app.app_context():
        frozen_clock.set(dt.datetime(2026, 3, 2, 9, 0))  # Monday 09:00 GMT
        answered = incidents.log_incident(ctx, title="Mail slow", actor=personas.owner, impact="high",
                                          urgency="medium")  # P2: 30 minutes, 8 business hours
        breached = incidents.log_incident(ctx, title="Payroll down", actor=personas.owner, impact="high",
                                          urgency="medium")
        frozen_clock.set(dt.datetime(2026, 3, 2, 9, 10))
        incidents.add_comment(ctx, answered.id, personas.owner, "Looking", public=True)
        incidents.add_comment(ctx, breached.id, personas.owner, "Looking", public=True)
        frozen_clock.set(dt.datetime(2026, 3, 3, 9, 30))  # a working day later: resolution breached
        sla_check()
        for incident in (answered, breached):
            incidents.transfer_ownership(ctx, incident.id, personas.owner, personas.database_team,
                                         personas.assignee, reason="Database work")
        at = frozen_clock.advance(hours=1)
        lead = reports.Scope(True, personas.lead.id)
        filters = reports.Filters(dt.date(2026, 3, 1), dt.date(2026, 3, 31))
        expected = {
            personas.service_desk.id: {"response": {"met": 2, "late": 0, "breached": 0},
                                       "resolution": {"met": 0, "late": 0, "breached": 2}},
            personas.database_team.id: {"response": {"met": 0, "late": 0, "breached": 0},
                                        "resolution": {"met": 0, "late": 0, "breached": 0}}}
        assert {r.key: r.counts for r in reports.compliance(filters, lead, at)} == expected
        assert {r.key: r.counts for r in reports.compliance_from_facts(filters, lead, at)} == expected
        # Filtered to a team, and in a team member's own scope, the same attribution.
        desk = reports.Filters(dt.date(2026, 3, 1), dt.date(2026, 3, 31), team=personas.service_desk.id)
        assert [r.counts for r in reports.compliance(desk, lead, at)] == [expected[personas.service_desk.id]]
        colleague = reports.Scope.of(personas.colleague)
        assert ({r.key: r.counts for r in reports.compliance(filters, colleague, at)}
                == {personas.service_desk.id: expected[personas.service_desk.id]})
        # The times to respond are the Service Desk's too (ten minutes each), not Database's.
        dbt = reports.Filters(dt.date(2026, 3, 1), dt.date(2026, 3, 31), team=personas.database_team.id)
        for durations in (reports.durations, reports.durations_from_facts):
            assert (durations(desk, lead)["response_business"].count,
                    durations(desk, lead)["response_business"].mean) == (2, 600)
            assert durations(dbt, lead)["response_business"].count == 0
            assert durations(filters, colleague)["response_wall"].count == 2
        assert reports.durations(desk, lead, exact_limit=0)["response_business"].p50 is not None
        assert reports.durations(dbt, lead, exact_limit=0)["response_business"].p50 is None
        # Resolved late by the Database team: still the Service Desk's breach, now met late.
        frozen_clock.advance(hours=1)
        incidents.change_status(ctx, breached.id, personas.assignee, "resolved", resolution_code="fixed",
                                note="Fixed")
        expected[personas.service_desk.id]["resolution"] = {"met": 0, "late": 1, "breached": 1}
        at = frozen_clock.advance(hours=1)
        assert {r.key: r.counts for r in reports.compliance(filters, lead, at)} == expected
        before = [(r.key, r.counts) for r in reports.compliance(filters, lead, at)]
        reports.rebuild(ctx)  # a rebuild counts them where the changes did
        assert [(r.key, r.counts) for r in reports.compliance(filters, lead, at)] == before
    table = (login(personas.lead).get("/reports?from=2026-03-01&to=2026-03-31&by=team")
             .get_data(as_text=True).split('id="compliance-table"')[1].split("</table>")[0])
    assert "Service Desk" in table and "Database" in table


# -- pages and permissions -----------------------------------------------------------------

def test_a_winter_incident_keeps_its_business_hours_when_the_report_runs_in_summer(
        app, ctx, personas, frozen_clock):
    with app.app_context():
        frozen_clock.set(dt.datetime(2026, 3, 27, 16, 0))  # Friday 16:00 GMT
        incident = incidents.log_incident(ctx, title="Printer", actor=personas.owner, impact="low",
                                          urgency="low")  # P4: 8 business hours to respond
        frozen_clock.set(dt.datetime(2026, 3, 30, 15, 0))  # Monday 16:00 BST: 1h + 7h = 8h
        incidents.add_comment(ctx, incident.id, personas.owner, "On it", public=True)
        frozen_clock.set(dt.datetime(2026, 7, 1, 12, 0))
        filters = reports.Filters(dt.date(2026, 3, 1), dt.date(2026, 3, 31))
        [row] = reports.compliance(filters, reports.Scope(True, personas.lead.id), dt.datetime(2026, 7, 1))
        assert row.counts["response"] == {"met": 1, "late": 0, "breached": 0}
        times = reports.durations(filters, reports.Scope(True, personas.lead.id))
        assert times["response_business"].mean == 8 * 3600
        assert times["response_wall"].mean == (3 * 24 - 1) * 3600


def test_the_median_of_an_even_count_is_the_mean_of_the_middle_two(app, ctx, personas, frozen_clock,
                                                                    login):
    # Four P1 incidents (around the clock) answered after 600, 1,201, 2,400 and 4,260 seconds.
    with app.app_context():
        for minute, answered in enumerate((600, 1201, 2400, 4260)):
            frozen_clock.set(dt.datetime(2026, 3, 2, 9, minute))
            incident = incidents.log_incident(ctx, title="Mail down", actor=personas.owner,
                                              impact="high", urgency="high")
            frozen_clock.advance(seconds=answered)
            incidents.add_comment(ctx, incident.id, personas.owner, "Looking", public=True)
        frozen_clock.set(dt.datetime(2026, 3, 3, 12, 0))
        filters = reports.Filters(dt.date(2026, 3, 1), dt.date(2026, 3, 31))
        lead = reports.Scope(True, personas.lead.id)
        exact = reports.durations(filters, lead)["response_business"]
        # Median (1,201 + 2,400) / 2 = 1,800.5, a half rounded up; 90th percentile at rank
        # 3 × 0.9 = 2.7: 2,400 + 0.7 × (4,260 - 2,400) = 3,702; mean 8,461 / 4 = 2,115.25.
        assert (exact.count, exact.mean, exact.p50, exact.p90) == (4, 2115, 1801, 3702)
        assert reports.durations(filters, lead)["response_wall"] == exact
        # From the histograms: the same rule over the figures the buckets stand for.
        rough = reports.durations(filters, lead, exact_limit=0)["response_business"]
        low, high = (reports.bucket_value(reports.bucket(s)) for s in (1201, 2400))
        assert (rough.mean, rough.p50) == (2115, int((low + high) / 2 + 0.5))
        assert low < rough.p50 < high
    client = login(personas.lead)
    rows = list(csv.reader(io.StringIO(client.get("/reports/export/times.csv?from=2026-03-01&to=2026-03-31")
                                       .get_data(as_text=True).removeprefix("\ufeff"))))
    assert rows[1] == ["Respond, business time", "4", "2115", "1801", "3702"]
    page = client.get("/reports?from=2026-03-01&to=2026-03-31").get_data(as_text=True)
    assert "<td>4</td><td>35 minutes</td><td>30 minutes</td><td>1 hour 1 minute</td>" in page


def test_agents_see_their_own_and_their_teams_figures_only(app, personas, log_incident, login):
    log_incident(title="Desk incident")  # owned by John, service desk
    log_incident(title="Network incident", actor=personas.other)  # owned by Kofi, network
    outsider = login(personas.assignee)  # Database team, owns nothing
    assert outsider.get(f"/reports?team={personas.service_desk.id}").status_code == 403
    assert outsider.get(f"/reports?owner={personas.owner.id}").status_code == 403
    body = outsider.get("/reports?by=team").get_data(as_text=True)
    assert "No incidents were logged in this period." in body
    desk_agent = login(personas.colleague).get("/reports?by=team").get_data(as_text=True)
    assert "Service Desk" in desk_agent and "Network" not in desk_agent.split('id="compliance-table"')[1]
    lead = login(personas.lead).get("/reports?by=team").get_data(as_text=True)
    table = lead.split('id="compliance-table"')[1].split("</table>")[0]
    assert "Service Desk" in table and "Network" in table
    assert login(None).get("/reports").status_code == 302


def test_report_page_is_bookmarkable_accessible_and_refuses_bad_filters(app, personas, log_incident, login):
    log_incident(title="Payroll slow")
    client = login(personas.lead)
    response = client.get("/reports?from=2026-01-01&to=2026-12-31&by=priority")
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert body.count('role="img"') == 3 and body.count("<desc id=") == 3  # every chart described
    assert 'value="2026-01-01"' in body and '<option value="priority" selected>' in body
    assert "<script" not in body.split("<main")[1]  # no chart script
    for bad in ("from=yesterday", "from=2026-02-01&to=2026-01-01", "by=colour", "priority=9",
                "team=x", "from=2020-01-01&to=2026-01-01"):
        assert client.get(f"/reports?{bad}").status_code == 422, bad


@pytest.mark.parametrize("path", ["/reports", "/reports/backlog", "/reports/mine", "/reports/escalations",
                                  "/reports/compliance.csv", "/reports/export/compliance.xlsx"])
@pytest.mark.parametrize("period", ["to=0001-01-10", "to=9999-12-31", "from=9998-01-01&to=9999-12-31"])
def test_a_period_at_the_ends_of_the_calendar_is_refused_not_a_crash(personas, login, path, period):
    # A shared report link may carry any date; the period's own arithmetic must not overflow.
    response = login(personas.lead).get(f"{path}?{period}")
    assert response.status_code == 422 and "Choose a date from" in response.get_data(as_text=True)


def test_the_owners_view_lists_what_they_own_nearest_breach_first(app, ctx, personas, frozen_clock, login):
    with app.app_context():
        slow = incidents.log_incident(ctx, title="Low one", actor=personas.owner, impact="low", urgency="low")
        fast = incidents.log_incident(ctx, title="Urgent one", actor=personas.owner, impact="high",
                                      urgency="high")
        incidents.log_incident(ctx, title="Colleague's", actor=personas.colleague)
    body = login(personas.owner).get("/reports/mine").get_data(as_text=True)
    table = body.split('id="nearest-breaches"')[1].split("</table>")[0]
    assert table.index(f"INC-{fast.id}") < table.index(f"INC-{slow.id}")
    assert "Colleague&#39;s" not in table and "Colleague's" not in table


def test_rebuild_commands_count_and_index_what_is_already_there(app, ctx, personas, log_incident, tmp_path):
    incident = log_incident(title="Payroll slow")
    with app.app_context():  # as after upgrading a database that had incidents before 0015
        IncidentFact.delete().execute()
        database.execute_sql("DELETE FROM search_document")
        assert search.search(ctx, personas.owner, "payroll").hits == []
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    env.update(HELPDESK_INSTANCE=str(tmp_path), HELPDESK_DATABASE_URL=ctx.settings.database_url,
               HELPDESK_SECRET_KEY="s" * 40, HELPDESK_QUEUE_URL="memory")
    for command, said in ((["search", "rebuild"], "Indexed 1 incident(s)."),
                          (["reports", "rebuild"], "Counted 1 incident(s).")):
        result = subprocess.run([sys.executable, "-m", "helpdesk.cli", *command], env=env,
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        assert said in result.stdout
    with app.app_context():
        assert [h.incident.id for h in search.search(ctx, personas.owner, "payroll").hits] == [incident.id]
        assert IncidentFact.get_by_id(incident.id).owner_agent == personas.owner.id


def test_upgrading_to_0035_gives_decided_targets_the_owning_team_and_moves_no_figure(
        app, ctx, personas, frozen_clock, sla_check):
    # Before 0035 a target had no team of its own: the upgrade gives every decided one the
    # incident's owning team then (the best there is), and the figures do not move.
    migration = importlib.import_module("helpdesk.migrations.0035_sla_outcome_team")
    with app.app_context():
        answered = incidents.log_incident(ctx, title="Mail slow", actor=personas.owner, impact="high",
                                          urgency="medium")  # P2: 30 minutes, 8 business hours
        waiting = incidents.log_incident(ctx, title="Printer", actor=personas.owner, impact="low",
                                         urgency="low")  # P4: 8 business hours, 80
        frozen_clock.advance(minutes=10)
        incidents.add_comment(ctx, answered.id, personas.owner, "Looking", public=True)
        frozen_clock.advance(days=3)
        sla_check()  # the P2's resolution and the P4's response breach
        incidents.transfer_ownership(ctx, answered.id, personas.owner, personas.database_team,
                                     personas.assignee, reason="Database work")
        SlaClock.update(outcome_team=None).execute()  # as the rows stood before 0035
        reports.rebuild(ctx)  # and the figures as they were counted: under the owning team now
        migration.backfill(database.obj)
        teams = {(c.incident_id, c.target): c.outcome_team for c in SlaClock.select()}
        facts = {f.incident_id: (f.response_team, f.resolution_team) for f in IncidentFact.select()}
        kept = {f.incident_id: f.__data__ for f in IncidentFact.select()}, day_rows()
        reports.rebuild(ctx)  # counts what the aggregates held: nothing moved to another team
        assert ({f.incident_id: f.__data__ for f in IncidentFact.select()}, day_rows()) == kept
    desk, dbt = personas.service_desk.id, personas.database_team.id
    assert teams == {(answered.id, "response"): dbt, (answered.id, "resolution"): dbt,
                     (waiting.id, "response"): desk, (waiting.id, "resolution"): None}
    assert facts == {answered.id: (dbt, dbt), waiting.id: (desk, None)}


def test_upgrading_to_0038_moves_the_times_to_respond_to_the_team_they_were_met_in(
        app, ctx, personas, frozen_clock):
    migration = importlib.import_module("helpdesk.migrations.0038_durations_met_team")
    with app.app_context():
        answered = incidents.log_incident(ctx, title="Mail slow", actor=personas.owner, impact="high",
                                          urgency="medium")
        incidents.log_incident(ctx, title="Printer", actor=personas.owner, impact="low", urgency="low")
        frozen_clock.advance(minutes=10)
        incidents.add_comment(ctx, answered.id, personas.owner, "Looking", public=True)
        incidents.transfer_ownership(ctx, answered.id, personas.owner, personas.database_team,
                                     personas.assignee, reason="Database work")
        reports.rebuild(ctx)
        now = day_rows(), duration_rows()
        migration.move(database.obj, back=True)  # the rows as an older version counted them
        before = day_rows()
        assert before != now[0]
        desk = reports.Filters(YEAR.start, YEAR.end, team=personas.service_desk.id)
        lead = reports.Scope(True, personas.lead.id)
        assert reports.durations(desk, lead)["response_business"].count == 0  # it was under Database
        migration.up(None, database.obj)
        assert (day_rows(), duration_rows()) == now  # what a rebuild gives
        assert reports.durations(desk, lead)["response_business"].count == 1


def duration_rows() -> list[tuple[Any, ...]]:
    from helpdesk.models import ReportDuration

    return sorted(row[1:] for row in ReportDuration.select().where(ReportDuration.count != 0).tuples())


def day_rows() -> list[dict[str, Any]]:
    """The per-day aggregate rows that count something, without their ids."""
    rows = ({k: v for k, v in row.items() if k != "id"} for row in ReportDay.select().dicts())
    return sorted((r for r in rows if any(v for k, v in r.items() if k not in reports.REPORT_KEYS)),
                  key=lambda r: sorted(r.items()))


def test_a_reply_while_pending_counts_the_time_worked_before_the_pause(app, ctx, personas, frozen_clock):
    with app.app_context():
        frozen_clock.set(dt.datetime(2026, 3, 2, 9, 0))  # Monday 09:00 GMT
        incident = incidents.log_incident(ctx, title="Slow", actor=personas.owner)  # P3: 4h
        frozen_clock.set(dt.datetime(2026, 3, 2, 10, 0))
        incidents.change_status(ctx, incident.id, personas.owner, "pending", pending_reason="customer")
        frozen_clock.set(dt.datetime(2026, 3, 2, 10, 30))
        incidents.add_comment(ctx, incident.id, personas.owner, "Could you send a screenshot?", public=True)
        frozen_clock.set(dt.datetime(2026, 3, 2, 14, 0))
        incidents.change_status(ctx, incident.id, personas.owner, "in_progress")
        fact = IncidentFact.get_by_id(incident.id)
    # Worked 09:00-10:00, then paused; met at 10:30 — the pause after that is not its time.
    assert fact.response_outcome == "met"
    assert fact.response_business_seconds == 3600
    assert fact.response_wall_seconds == 5400


def test_the_compliance_table_downloads_with_the_page_filters_and_scope(app, personas, log_incident, login):
    log_incident(title="Desk incident")
    log_incident(title="Network incident", actor=personas.other)
    lead = login(personas.lead)
    page = lead.get("/reports?by=team").get_data(as_text=True)
    link = re.search(r'href="(/reports/compliance\.csv\?[^"]+)"', page).group(1).replace("&amp;", "&")
    assert "by=team" in link
    rows = list(csv.reader(io.StringIO(lead.get(link).get_data(as_text=True).removeprefix("\ufeff"))))
    assert rows[0][:2] == ["Owning team", "Response met"]
    assert sorted(r[0] for r in rows[1:]) == ["Network", "Service Desk"]
    outsider = login(personas.assignee)
    assert outsider.get(f"/reports/compliance.csv?team={personas.network.id}").status_code == 403
    assert [r[0] for r in csv.reader(io.StringIO(
        login(personas.other).get("/reports/compliance.csv").get_data(as_text=True)))][1:] == ["Network"]
