"""Report pages: SLA compliance, times to respond and resolve, flow, reopen rate, the owner's
view. Team leads and admins see every team; agents their own figures and their teams'.
Charts are SVG drawn on the server, each with its numbers in a table beside it."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass

from flask import Blueprint, Response, abort, request
from flask_login import current_user

from helpdesk import exports, reports
from helpdesk.clock import now
from helpdesk.errors import DomainError
from helpdesk.models import PRIORITIES, Agent, Category, Membership, Service, Team
from helpdesk.rendering import format_duration, local_time, render_page
from helpdesk.security import AGENT, access
from helpdesk.web import context

bp = Blueprint("reports", __name__)


@dataclass
class Bar:
    label: str
    y: float
    segments: list[tuple[str, float, float, int]]  # (outcome, x, width, count)


def compliance_bars(rows: list[reports.ComplianceRow], target: str, width: float = 400,
                    height: float = 22) -> list[Bar]:
    """Each row as one 100 % bar split into met, met late and breached."""
    bars = []
    for index, row in enumerate(rows):
        decided = sum(row.counts[target].values())
        x, segments = 0.0, []
        for outcome in reports.OUTCOMES:
            count = row.counts[target][outcome]
            part = width * count / decided if decided else 0
            segments.append((outcome, x, part, count))
            x += part
        bars.append(Bar(row.label, index * (height + 8), segments))
    return bars


def flow_chart(days: list[reports.FlowDay], width: float = 640, height: float = 160
               ) -> dict[str, object]:
    """Opened and resolved per day as two polylines on one scale."""
    peak = max([max(d.opened, d.resolved) for d in days] + [1])
    step = width / max(len(days) - 1, 1)

    def points(values: list[int]) -> str:
        return " ".join(f"{i * step:.1f},{height - height * v / peak:.1f}" for i, v in enumerate(values))

    return {"opened": points([d.opened for d in days]), "resolved": points([d.resolved for d in days]),
            "peak": peak, "width": width, "height": height}


def _choices(scope: reports.Scope) -> dict[str, object]:
    teams = Team.select().order_by(Team.name)
    if not scope.everything:
        teams = teams.where(Team.id.in_(list(scope.team_ids) or [0]))
    agents = Agent.select().where(Agent.active).order_by(Agent.display_name)
    if not scope.everything:
        agents = agents.where(Agent.id == scope.agent_id)
    return {"teams": list(teams), "agents": list(agents), "priorities": PRIORITIES,
            "services": list(Service.select().order_by(Service.name)),
            "categories": list(Category.select().order_by(Category.name))}


def _filters() -> tuple[reports.Filters, reports.Scope]:
    """The period and filters of the URL, checked against what the viewer may see."""
    ctx = context()
    scope = reports.Scope.of(current_user)
    today = local_time(now(), ctx.settings.time_zone, "%Y-%m-%d")
    try:
        filters = reports.Filters.parse(request.args, dt.date.fromisoformat(today))
        scope.check(filters)
    except DomainError as error:
        if error.status != 422 or request.endpoint not in TITLES:
            abort(error.status, str(error))
        # A period or filter the report cannot take: the report's own page with the form as
        # sent and the reason beside it, so the lead corrects it there (the generic error page
        # had no form: back, and guess which field was wrong).
        default = reports.Filters.parse({}, dt.date.fromisoformat(today))
        page = render_page("reports/refused.html", set(), title=TITLES[request.endpoint],
                           action=request.endpoint, filters=default, scope=scope, sent=request.args,
                           error=str(error), dimensions=reports.DIMENSIONS, **_choices(scope))
        abort(Response(page, status=422))
    return filters, scope


#: The report pages whose filters are refused on the page itself, with their headings.
TITLES = {"reports.index": "Reports", "reports.backlog": "Backlog by age",
          "reports.escalations": "Escalations per level"}


@bp.get("/reports")
@access(AGENT)
def index() -> str:
    filters, scope = _filters()
    at = now()
    rows = reports.compliance(filters, scope, at)
    times = reports.durations(filters, scope)
    days = reports.flow(filters, scope)
    reopened = reports.reopens(filters, scope)
    return render_page(
        "reports/index.html", set(),
        filters=filters, scope=scope, rows=rows, times=times, days=days, reopened=reopened,
        dimensions=reports.DIMENSIONS, outcomes=reports.OUTCOMES,
        response_bars=compliance_bars(rows, "response"),
        resolution_bars=compliance_bars(rows, "resolution"),
        flow=flow_chart(days), **_choices(scope),
    )


def backlog_chart(days: list[reports.BacklogDay], width: float = 640, height: float = 160
                  ) -> dict[str, object]:
    """One stacked bar per day, a segment per age bucket (youngest at the bottom)."""
    peak = max([d.open for d in days] + [1])
    step = width / max(len(days), 1)
    bars = []
    for index, day in enumerate(days):
        y, segments = height, []
        for bucket, count in enumerate(day.ages):
            part = height * count / peak
            y -= part
            segments.append((bucket, y, part, count))
        bars.append((index * step, day, segments))
    return {"bars": bars, "bar_width": max(step - 1, 0.5), "peak": peak, "width": width,
            "height": height}


@bp.get("/reports/backlog")
@access(AGENT)
def backlog() -> str:
    """Open incidents at the end of each day of the period, by age."""
    filters, scope = _filters()
    days = reports.backlog(filters, scope)
    return render_page("reports/backlog.html", set(), filters=filters, scope=scope, days=days,
                       ages=[label for label, _, _ in reports.AGE_BUCKETS], chart=backlog_chart(days),
                       dimensions=reports.DIMENSIONS, **_choices(scope))


@bp.get("/reports/escalations")
@access(AGENT)
def escalations() -> str:
    """Escalation levels run in the period, per level."""
    filters, scope = _filters()
    levels = reports.escalations(filters, scope, context().settings.time_zone)
    peak = max([level.runs for level in levels] + [1])
    return render_page("reports/escalations.html", set(), filters=filters, scope=scope, levels=levels,
                       peak=peak, dimensions=reports.DIMENSIONS, **_choices(scope))


def _table(name: str, filters: reports.Filters, scope: reports.Scope) -> list[list[object]]:
    """A report table as rows (header first), exactly the rows its page shows."""
    if name == "compliance":
        table: list[list[object]] = [[reports.DIMENSIONS[filters.by]] + [
            f"{target.capitalize()} {label}" for target in ("response", "resolution")
            for label in ("met", "met late", "breached", "on time %")]]
        for row in reports.compliance(filters, scope, now()):
            cells: list[object] = [row.label]
            for target in ("response", "resolution"):
                rate = row.rate(target)
                cells += [row.counts[target][o] for o in reports.OUTCOMES]
                cells.append("" if rate is None else round(rate * 100, 1))
            table.append(cells)
        return table
    if name == "times":
        table = [["Measure", "Incidents", "Mean (s)", "Median (s)", "90th percentile (s)"]]
        for key, found in reports.durations(filters, scope).items():
            table.append([TIME_LABELS[key], found.count] + [
                "" if v is None else round(v) for v in (found.mean, found.p50, found.p90)])
        return table
    if name == "flow":
        return [["Day", "Logged", "Resolved"]] + [[d.day, d.opened, d.resolved]
                                                  for d in reports.flow(filters, scope)]
    if name == "reopens":
        found = reports.reopens(filters, scope)
        return [["Resolved at least once", "Reopened", "Reopen rate %"],
                [found.resolved, found.reopened, "" if found.rate is None else round(found.rate * 100, 1)]]
    if name == "backlog":
        return [["Day", "Open", *(f"Open {label}" for label, _, _ in reports.AGE_BUCKETS)]] + [
            [d.day, d.open, *d.ages] for d in reports.backlog(filters, scope)]
    return [["Level", "Runs", "Incidents", "Raised by hand", "Failed"]] + [
        [level.level, level.runs, level.incidents, level.manual, level.failed]
        for level in reports.escalations(filters, scope, context().settings.time_zone)]


TIME_LABELS = {"response_business": "Respond, business time", "response_wall": "Respond, wall time",
               "resolution_business": "Resolve, business time", "resolution_wall": "Resolve, wall time"}
TABLES = ("compliance", "times", "flow", "reopens", "backlog", "escalations")


def _download(name: str, fmt: str, filters: reports.Filters, scope: reports.Scope) -> Response:
    table = [[exports.neutralise(cell) for cell in line] for line in _table(name, filters, scope)]
    filename = f"{name}-{filters.start}-{filters.end}.{fmt}"
    if fmt == "csv":
        buffer = io.StringIO()
        csv.writer(buffer).writerows(table)
        response = Response("\ufeff" + buffer.getvalue(), mimetype="text/csv")
    else:
        spool = io.BytesIO()
        exports.write_rows_xlsx(table, spool, name.capitalize())
        response = Response(spool.getvalue(), mimetype=(
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.get("/reports/export/<name>.<fmt>")
@access(AGENT)
def export(name: str, fmt: str) -> Response:
    """Any report table as CSV or XLSX, with the page's filters and the viewer's scope (a
    report table is small: days or groups, never incidents, so it is built in memory)."""
    if name not in TABLES or fmt not in ("csv", "xlsx"):
        abort(404)
    filters, scope = _filters()
    return _download(name, fmt, filters, scope)


@bp.get("/reports/compliance.csv")
@access(AGENT)
def compliance_csv() -> Response:
    """The compliance table of the report page (the address kept from before XLSX)."""
    filters, scope = _filters()
    return _download("compliance", "csv", filters, scope)


@bp.get("/reports/mine")
@access(AGENT)
def mine() -> str:
    """The owner's view: what I own by nearest breach, and my compliance."""
    ctx = context()
    today = local_time(now(), ctx.settings.time_zone, "%Y-%m-%d")
    try:
        filters = reports.Filters.parse(request.args, dt.date.fromisoformat(today))
    except DomainError as error:
        abort(error.status, str(error))
    filters.owner, filters.by = current_user.id, "month"
    own = reports.Scope(False, current_user.id, frozenset())
    teams = [m.team for m in Membership.select().where(Membership.agent == current_user.id)]
    return render_page(
        "reports/mine.html", set(), filters=filters, teams=teams,
        at_risk=reports.nearest_breaches(current_user),
        rows=reports.compliance(filters, own, now()), outcomes=reports.OUTCOMES, now=now(),
    )


@bp.app_template_filter("seconds")
def seconds(value: float | None) -> str:
    """Seconds as a duration in words ("3 hours 20 minutes"), or a dash when there is none."""
    return "—" if value is None else format_duration(dt.timedelta(seconds=value))


