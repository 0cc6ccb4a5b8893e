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


@bp.get("/reports")
@access(AGENT)
def index() -> str:
    ctx = context()
    scope = reports.Scope.of(current_user)
    today = local_time(now(), ctx.settings.time_zone, "%Y-%m-%d")
    try:
        filters = reports.Filters.parse(request.args, dt.date.fromisoformat(today))
        at = now()
        rows = reports.compliance(filters, scope, at)
        times = reports.durations(filters, scope)
        days = reports.flow(filters, scope)
        reopened = reports.reopens(filters, scope)
    except DomainError as error:
        abort(error.status, str(error))
    return render_page(
        "reports/index.html", set(),
        filters=filters, scope=scope, rows=rows, times=times, days=days, reopened=reopened,
        dimensions=reports.DIMENSIONS, outcomes=reports.OUTCOMES,
        response_bars=compliance_bars(rows, "response"),
        resolution_bars=compliance_bars(rows, "resolution"),
        flow=flow_chart(days), **_choices(scope),
    )


@bp.get("/reports/compliance.csv")
@access(AGENT)
def compliance_csv() -> Response:
    """The compliance table of the report page, with the same filters and the same scope."""
    ctx = context()
    scope = reports.Scope.of(current_user)
    today = local_time(now(), ctx.settings.time_zone, "%Y-%m-%d")
    try:
        filters = reports.Filters.parse(request.args, dt.date.fromisoformat(today))
        rows = reports.compliance(filters, scope, now())
    except DomainError as error:
        abort(error.status, str(error))
    header = [reports.DIMENSIONS[filters.by]] + [
        f"{target.capitalize()} {label}" for target in ("response", "resolution")
        for label in ("met", "met late", "breached", "on time %")]
    table = [header]
    for row in rows:
        cells: list[object] = [row.label]
        for target in ("response", "resolution"):
            rate = row.rate(target)
            cells += [row.counts[target][o] for o in reports.OUTCOMES]
            cells.append("" if rate is None else round(rate * 100, 1))
        table.append(cells)
    buffer = io.StringIO()
    csv.writer(buffer).writerows([[exports.neutralise(c) for c in line] for line in table])
    response = Response("\ufeff" + buffer.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="compliance-{filters.start}-{filters.end}.csv"')
    return response


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


