"""The per-day aggregates reports read agree with the incident facts they summarise.

Hypothesis drives random histories (logging, replies, pauses, resolutions, reopenings,
cancellations, ownership moving to another agent, SLA checks) through the domain, so the
aggregates only ever move by the deltas each change writes; then every report read from
the aggregates is compared with the same report counted over the facts, for every
grouping and for an agent's narrower scope, and a rebuild from nothing must give the same
rows. Backlog and escalation reports, and their CSV/XLSX downloads, are checked as a user
reads them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from helpdesk import incidents, people, reports
from helpdesk.errors import DomainError
from helpdesk.models import EscalationRun, ReportDay, ReportDuration
from helpdesk_plugins import business_hours, sla_priority


@pytest.fixture
def helpdesk_plugins() -> list[Any]:
    return [business_hours, sla_priority]


@pytest.fixture
def helpdesk_settings() -> dict[str, Any]:
    return {"time_zone": "Europe/London"}


ACTIONS = ["reply", "pending", "resume", "resolve", "reopen", "cancel", "transfer", "hand over", "check"]
plans = st.lists(st.tuples(st.sampled_from(["high", "medium", "low"]), st.sampled_from(["high", "low"]),
                           st.integers(0, 2 * 24 * 60),
                           st.lists(st.tuples(st.integers(0, 3 * 24 * 60), st.sampled_from(ACTIONS)),
                                    max_size=6)),
                 min_size=1, max_size=5)
starts = st.sampled_from([dt.datetime(2026, 3, 26, 8, 30), dt.datetime(2026, 10, 23, 16, 10)])
_teams = itertools.count(1)


def act(ctx: Any, incident_id: int, actor: Any, other: Any, team: Any, action: str, sla_check: Any,
        second: Any = None) -> None:
    try:
        if action == "reply":
            incidents.add_comment(ctx, incident_id, actor, "Looking", public=True)
        elif action == "pending":
            incidents.change_status(ctx, incident_id, actor, "pending", pending_reason="customer")
        elif action == "resume":
            incidents.change_status(ctx, incident_id, actor, "in_progress")
        elif action == "resolve":
            incidents.change_status(ctx, incident_id, actor, "resolved", resolution_code="fixed",
                                    note="Fixed")
        elif action == "reopen":
            incidents.reopen(ctx, incident_id, actor, note="Still broken")
        elif action == "cancel":
            incidents.change_status(ctx, incident_id, actor, "cancelled", note="Duplicate")
        elif action == "transfer":
            incidents.transfer_ownership(ctx, incident_id, actor, team, other, reason="Holiday")
        elif action == "hand over":  # to the other team and back: decided targets stay put
            to = second if incidents.get(incident_id).owner_team_id == team.id else team
            incidents.transfer_ownership(ctx, incident_id, actor, to, None, reason="Their system")
        else:
            sla_check()
    except DomainError:
        pass


def rollups() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    def keep(row: dict[str, Any]) -> bool:
        return any(v for k, v in row.items() if k not in {"id", *reports.REPORT_KEYS, "measure", "bucket"})

    def clean(rows: Any) -> list[dict[str, Any]]:
        return sorted(({k: v for k, v in r.items() if k != "id"} for r in rows if keep(r)),
                      key=lambda r: sorted(r.items()))

    return clean(ReportDay.select().dicts()), clean(ReportDuration.select().dicts())


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=plans, start=starts)
def test_reports_from_the_aggregates_equal_reports_from_the_facts(app, ctx, frozen_clock, sla_check,
                                                                  plan, start):
    with app.app_context():
        team = people.create_team(f"Days team {next(_teams)}")
        lead = people.create_agent(f"d{team.id}a", "Ada", "correct-horse-battery", teams=[team])
        other = people.create_agent(f"d{team.id}b", "Bo", "correct-horse-battery", teams=[team])
        second = people.create_team(f"Days team {next(_teams)}")
        people.create_agent(f"d{second.id}c", "Cy", "correct-horse-battery", teams=[second])
        frozen_clock.set(start)
        for impact, urgency, gap, steps in plan:
            frozen_clock.advance(minutes=gap)
            incident = incidents.log_incident(ctx, title="Random", actor=lead, impact=impact, urgency=urgency)
            for minutes, action in steps:
                frozen_clock.advance(minutes=minutes)
                act(ctx, incident.id, lead, other, team, action, sla_check, second)
        at = frozen_clock.advance(hours=1)
        period = (start.date() - dt.timedelta(days=2), at.date() + dt.timedelta(days=3))
        scopes = [reports.Scope(True, lead.id), reports.Scope(False, other.id, frozenset()),
                  reports.Scope(False, other.id, frozenset({second.id}))]
        later = at + dt.timedelta(days=30)  # open targets breach as the report time moves on
        for scope, by, when in itertools.product(scopes, reports.DIMENSIONS, (at, later)):
            filters = reports.Filters(*period, team=team.id if scope.everything else None, by=by)
            assert ([(r.key, r.counts) for r in reports.compliance(filters, scope, when)]
                    == [(r.key, r.counts) for r in reports.compliance_from_facts(filters, scope, when)]), by
        for scope in scopes:
            filters = reports.Filters(*period, team=team.id if scope.everything else None)
            exact = reports.durations_from_facts(filters, scope)
            assert reports.durations(filters, scope) == exact
            for key, found in reports.durations(filters, scope, exact_limit=0).items():
                assert (found.count, found.mean) == (exact[key].count, pytest.approx(exact[key].mean)), key
                for mine, theirs in ((found.p50, exact[key].p50), (found.p90, exact[key].p90)):
                    assert (mine is None) == (theirs is None), key
                    if mine is not None:  # each ranked value off by at most 12 % or 30 s, and
                        # both rounded to the second: the interpolation between them no more
                        assert abs(mine - theirs) <= 30 + 0.12 * theirs + 1, key
            assert reports.flow(filters, scope) == reports.flow_from_facts(filters, scope)
            assert reports.reopens(filters, scope) == reports.reopens_from_facts(filters, scope)
            assert reports.backlog(filters, scope) == reports.backlog_from_facts(filters, scope)
        before = rollups()
        reports.rebuild(ctx)
        assert rollups() == before


def test_backlog_by_age_as_a_lead_reads_it(app, ctx, personas, frozen_clock, login):
    with app.app_context():
        frozen_clock.set(dt.datetime(2026, 3, 2, 10, 0))  # Monday
        old = incidents.log_incident(ctx, title="Old one", actor=personas.owner)
        frozen_clock.set(dt.datetime(2026, 3, 6, 10, 0))
        incidents.log_incident(ctx, title="New one", actor=personas.owner)
        frozen_clock.set(dt.datetime(2026, 3, 7, 10, 0))
        incidents.change_status(ctx, old.id, personas.owner, "resolved", resolution_code="fixed", note="Done")
        frozen_clock.set(dt.datetime(2026, 3, 9, 10, 0))
    days = {d.day: d for d in reports.backlog(reports.Filters(dt.date(2026, 3, 1), dt.date(2026, 3, 8)),
                                              reports.Scope(True, personas.lead.id))}
    assert days["2026-03-01"].open == 0
    assert days["2026-03-02"].ages == (1, 0, 0, 0)
    assert days["2026-03-05"].ages == (0, 0, 1, 0)  # 3 days old
    assert days["2026-03-06"].ages == (1, 0, 1, 0)
    assert days["2026-03-07"].open == 1 and days["2026-03-08"].ages == (0, 1, 0, 0)
    page = login(personas.lead).get("/reports/backlog?from=2026-03-01&to=2026-03-08")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and 'role="img"' in body and "<desc id=" in body
    row = re.search(r'<tr><th scope="row">2026-03-06</th>(.*?)</tr>', body).group(1)
    assert re.findall(r"<td>(\d+)</td>", row) == ["2", "1", "0", "1", "0"]


def test_backlog_age_columns_say_which_whole_days_they_hold(app, ctx, personas, frozen_clock, login):
    # Logged on 1 March; on 4 March it is 3 days old, on 8 March exactly 7. The columns read
    # "1–3 days", "3–7 days" and "over 7 days": 3 days fitted two of them, and 7 days old was
    # counted "over 7 days".
    with app.app_context():
        frozen_clock.set(dt.datetime(2026, 3, 1, 10, 0))
        incidents.log_incident(ctx, title="Week-old printer", actor=personas.owner)
        frozen_clock.set(dt.datetime(2026, 3, 9, 10, 0))
    body = login(personas.lead).get("/reports/backlog?from=2026-03-01&to=2026-03-08").get_data(as_text=True)
    head = re.search(r"<thead>(.*?)</thead>", body.split("<caption>Open at the end")[1]).group(1)
    assert re.findall(r'<th scope="col">([^<]*)</th>', head) == [
        "Day", "Open", "Under 1 day", "1–2 days", "3–6 days", "7 days or more"]

    def ages(day: str) -> list[str]:
        row = re.search(rf'<tr><th scope="row">{day}</th>(.*?)</tr>', body).group(1)
        return re.findall(r"<td>(\d+)</td>", row)[1:]

    assert ages("2026-03-03") == ["0", "1", "0", "0"]  # 2 days old
    assert ages("2026-03-04") == ["0", "0", "1", "0"]  # 3 days old
    assert ages("2026-03-07") == ["0", "0", "1", "0"]  # 6 days old
    assert ages("2026-03-08") == ["0", "0", "0", "1"]  # 7 days old
    csv_head = login(personas.lead).get("/reports/export/backlog.csv?from=2026-03-01&to=2026-03-08")
    assert csv_head.get_data(as_text=True).removeprefix("\ufeff").splitlines()[0] == (
        "Day,Open,Open under 1 day,Open 1–2 days,Open 3–6 days,Open 7 days or more")


def test_escalations_per_level_respect_filters_and_scope(app, ctx, personas, log_incident, login,
                                                         frozen_clock):
    desk = log_incident(title="Desk incident")
    net = log_incident(title="Network incident", actor=personas.other)
    with app.app_context():
        at = dt.datetime(2026, 3, 2, 12, 0)
        for incident, level, state in ((desk, 1, "done"), (desk, 2, "failed"), (net, 1, "done")):
            EscalationRun.create(incident=incident.id, policy_name="default", version=1, level=level,
                                 cycle=1, at=at, state=state)
    lead = login(personas.lead).get("/reports/escalations?from=2026-03-01&to=2026-03-31")
    table = lead.get_data(as_text=True).split('id="escalations-table"')[1].split("</table>")[0]
    assert re.findall(r"<td>(\d+)</td>", table) == ["2", "2", "0", "0", "1", "1", "0", "1"]
    other = login(personas.other).get("/reports/escalations?from=2026-03-01&to=2026-03-31")
    table = other.get_data(as_text=True).split('id="escalations-table"')[1].split("</table>")[0]
    assert re.findall(r"<td>(\d+)</td>", table) == ["1", "1", "0", "0"]  # the network's only
    assert login(personas.assignee).get(
        f"/reports/escalations?team={personas.network.id}").status_code == 403


TABLES = ("compliance", "times", "flow", "reopens", "backlog", "escalations")
PAGES = {"backlog": "/reports/backlog", "escalations": "/reports/escalations"}


def _csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def _xlsx(data: bytes) -> list[list[str]]:
    sheet = load_workbook(io.BytesIO(data), read_only=True).active
    return [["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)]


@pytest.mark.parametrize("table", TABLES)
def test_every_report_table_downloads_as_csv_and_xlsx_with_the_pages_rows(
        app, personas, log_incident, login, table):
    log_incident(title="Desk incident")
    log_incident(title="Network incident", actor=personas.other)
    args = "from=2026-01-01&to=2026-03-31&by=team"
    for persona in (personas.lead, personas.other, personas.assignee):
        client = login(persona)
        page = client.get(PAGES.get(table, "/reports") + f"?{args}")
        body = page.get_data(as_text=True)
        links = re.findall(rf'href="(/reports/(?:export/)?{table}\.(csv|xlsx)\?[^"]+)"', body)
        assert {fmt for _, fmt in links} == {"csv", "xlsx"}, persona.username
        got = {}
        for link, fmt in links:
            response = client.get(link.replace("&amp;", "&"))
            assert response.status_code == 200
            assert "attachment" in response.headers["Content-Disposition"]
            got[fmt] = _csv(response.data) if fmt == "csv" else _xlsx(response.data)
        assert [r[0] for r in got["csv"]] == [r[0] for r in got["xlsx"]]
        if table == "compliance":  # the rows of the page's table, no more
            section = body.split('id="compliance-table"')
            shown = sorted(re.findall(r'<tr><th scope="row">([^<]+)</th>', section[1].split("</table>")[0])
                           ) if len(section) > 1 else []
            assert sorted(r[0] for r in got["csv"][1:]) == shown, persona.username
    assert login(personas.assignee).get(
        f"/reports/export/{table}.xlsx?team={personas.network.id}").status_code == 403
    assert login(personas.lead).get(f"/reports/export/{table}.pdf").status_code == 404


def test_report_cells_that_look_like_formulas_are_neutralised(app, ctx, personas, log_incident, login):
    with app.app_context():
        people.create_team("=HYPERLINK(\"http://x\")")
        team = people.create_team("+cmd")
        agent = people.create_agent("formula", "@SUM(1)", "correct-horse-battery", teams=[team])
        incidents.log_incident(ctx, title="Evil", actor=agent)
    client = login(personas.lead)
    rows = _csv(client.get("/reports/export/compliance.csv?by=owner").data)
    assert "'@SUM(1)" in [r[0] for r in rows]
    sheet = load_workbook(io.BytesIO(client.get("/reports/export/compliance.xlsx?by=team").data)).active
    cells = [c for c in sheet["A"] if c.value and str(c.value).startswith("'+")]
    assert cells and all(c.data_type == "s" for c in cells)
