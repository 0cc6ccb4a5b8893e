"""Reports: SLA compliance, time to respond and resolve, flow and reopen rate.

Reports never read incidents, clocks or timelines. Each incident has one narrow
:class:`~helpdesk.models.IncidentFact` row, rewritten by :func:`refresh` in the
transaction of every change (the incidents package calls it) and rebuilt in bulk by
:func:`rebuild` (``helpdesk reports rebuild``); a report is a few ``GROUP BY`` queries over
those rows, indexed by day, so its cost follows the period asked for.

The figures come from the same SLA clocks the product runs on: a target is *met* when the
working time on its clock (its calendar, pauses left out — :func:`helpdesk.sla.elapsed`)
was within the target when it was met, *met late* when it was met after, and *breached*
when it is still unmet (or was stopped unmet) after its breach instant. Business time
uses each instant's own UTC offset (``zoneinfo``), so winter incidents keep their hours
when a report runs in summer. Days are local days of the instance's time zone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import peewee

from helpdesk import sla
from helpdesk.context import Context
from helpdesk.db import database
from helpdesk.errors import DomainError, PermissionDenied
from helpdesk.models import (
    ACTIVE_STATUSES,
    PRIORITIES,
    STATUSES,
    Agent,
    Category,
    Incident,
    IncidentFact,
    Membership,
    Service,
    SlaClock,
    Team,
    TimelineEntry,
)

OUTCOMES = ("met", "late", "breached")
DIMENSIONS = {
    "team": "Owning team",
    "priority": "Priority",
    "service": "Service",
    "category": "Category",
    "owner": "Owner",
    "month": "Month",
}
MAX_DAYS = 3 * 366


# -- keeping the facts ----------------------------------------------------------------------

def _local_day(moment: dt.datetime | None, zone: ZoneInfo) -> str | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=dt.UTC).astimezone(zone).date().isoformat()


def _target(ctx: Context, clock: SlaClock | None) -> tuple[str, dt.datetime | None, int | None, int | None]:
    """(outcome, breach instant, working seconds to met, wall seconds to met) of one clock."""
    if clock is None:
        return "none", None, None, None
    if clock.met_at is not None:
        worked = sla.elapsed(ctx, clock, clock.met_at)
        outcome = "met" if worked.total_seconds() <= clock.target_seconds else "late"
        wall = int((clock.met_at - clock.started_at).total_seconds())
        return outcome, None, int(worked.total_seconds()), wall
    stood = clock.stopped_at or clock.paused_at
    if stood is not None:
        # Stopped or paused: breached if the target was used up by then. The exact instant
        # matters only as "before now", which it is (it is no later than the stop or pause).
        breach = None
        if sla.elapsed(ctx, clock, stood).total_seconds() >= clock.target_seconds:
            breach = clock.breached_at or (clock.due_at if clock.due_at and clock.due_at <= stood
                                           else stood)
        return ("stopped" if clock.stopped_at else "open"), breach, None, None
    return "open", clock.due_at, None, None


def _fact(ctx: Context, incident: Incident, clocks: dict[str, SlaClock], counts: tuple[int, int],
          zone: ZoneInfo) -> dict[str, Any]:
    response = _target(ctx, clocks.get("response"))
    resolution = _target(ctx, clocks.get("resolution"))
    pending = [t[1] for t in (response, resolution) if t[0] == "open" and t[1] is not None]
    return {
        "incident_id": incident.id,
        "created_at": incident.created_at,
        "created_day": _local_day(incident.created_at, zone),
        "resolved_day": _local_day(incident.resolved_at, zone),
        "owner_team": incident.owner_team_id,
        "owner_agent": incident.owner_agent_id,
        "assigned_team": incident.assigned_team_id,
        "priority": incident.priority,
        "category": incident.category_id,
        "service": incident.service_id,
        "status": incident.status,
        "resolved_count": counts[0],
        "reopen_count": counts[1],
        "next_breach_at": min(pending) if pending and incident.status in ACTIVE_STATUSES else None,
        "response_outcome": response[0],
        "response_breach_at": response[1],
        "response_business_seconds": response[2],
        "response_wall_seconds": response[3],
        "resolution_outcome": resolution[0],
        "resolution_breach_at": resolution[1],
        "resolution_business_seconds": resolution[2],
        "resolution_wall_seconds": resolution[3],
    }


def _status_counts(incident_ids: list[int]) -> dict[int, tuple[int, int]]:
    """How often each incident was resolved, and reopened (left resolved for an active status)."""
    resolved_label = STATUSES["resolved"]
    active = [STATUSES[s] for s in ACTIVE_STATUSES]
    counts: dict[int, list[int]] = {}
    query = (TimelineEntry.select(TimelineEntry.incident, TimelineEntry.old_value, TimelineEntry.new_value)
             .where(TimelineEntry.incident.in_(incident_ids) & (TimelineEntry.kind == "change")
                    & (TimelineEntry.field == "status")
                    & ((TimelineEntry.new_value == resolved_label)
                       | (TimelineEntry.old_value == resolved_label))))
    for row in query.tuples():
        pair = counts.setdefault(row[0], [0, 0])
        if row[2] == resolved_label:
            pair[0] += 1
        elif row[1] == resolved_label and row[2] in active:
            pair[1] += 1
    return {k: (v[0], v[1]) for k, v in counts.items()}


def _write(ctx: Context, incidents: list[Incident]) -> None:
    if not incidents:
        return
    ids = [i.id for i in incidents]
    zone = ZoneInfo(ctx.settings.time_zone)
    clocks: dict[int, dict[str, SlaClock]] = {}
    for clock in SlaClock.select().where(SlaClock.incident.in_(ids)):
        clocks.setdefault(clock.incident_id, {})[clock.target] = clock
    counts = _status_counts(ids)
    rows = [_fact(ctx, i, clocks.get(i.id, {}), counts.get(i.id, (0, 0)), zone) for i in incidents]
    IncidentFact.delete().where(IncidentFact.incident_id.in_(ids)).execute()
    IncidentFact.insert_many(rows).execute()


def refresh(ctx: Context, incident_id: int) -> None:
    """Rewrite one incident's fact row; call it in the transaction of the change, after the
    SLA clocks moved."""
    _write(ctx, [Incident.get_by_id(incident_id)])


def rebuild(ctx: Context, batch: int = 2000) -> int:
    """Every incident's fact row again (after upgrading, a restore, or a change of calendar)."""
    count, last = 0, 0
    IncidentFact.delete().execute()
    while True:
        with database.atomic():
            incidents = list(Incident.select().where(Incident.id > last).order_by(Incident.id).limit(batch))
            if not incidents:
                return count
            _write(ctx, incidents)
        count += len(incidents)
        last = incidents[-1].id


# -- asking ---------------------------------------------------------------------------------

@dataclass
class Filters:
    """What a report covers: incidents logged from ``start`` to ``end`` (local days, inclusive),
    optionally one owning team, owner, priority, service or category."""

    start: dt.date
    end: dt.date
    team: int | None = None
    owner: int | None = None
    priority: int | None = None
    service: int | None = None
    category: int | None = None
    by: str = "team"

    @classmethod
    def parse(cls, args: Any, today: dt.date) -> Filters:
        """From URL arguments (bookmarkable); the last 30 days by default; a bad value is an error."""
        def day(name: str, default: dt.date) -> dt.date:
            raw = (args.get(name) or "").strip()
            if not raw:
                return default
            try:
                return dt.date.fromisoformat(raw)
            except ValueError:
                raise DomainError(f"“{raw[:40]}” is not a date; use YYYY-MM-DD.") from None

        def number(name: str) -> int | None:
            raw = (args.get(name) or "").strip()
            if not raw:
                return None
            if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
                raise DomainError(f"The {name} filter takes an id.")
            return int(raw)

        end = day("to", today)
        start = day("from", end - dt.timedelta(days=29))
        if start > end:
            raise DomainError("The start of the period is after its end.")
        if (end - start).days > MAX_DAYS:
            raise DomainError("A report covers at most three years.")
        by = args.get("by") or "team"
        if by not in DIMENSIONS:
            raise DomainError(f"Reports can be grouped by {', '.join(DIMENSIONS)}.")
        priority = number("priority")
        if priority is not None and priority not in PRIORITIES:
            raise DomainError("The priority filter takes 1 to 4.")
        return cls(start, end, number("team"), number("owner"), priority, number("service"),
                   number("category"), by)

    def args(self, **changes: Any) -> dict[str, Any]:
        """These filters as URL arguments (for links that keep them)."""
        values = {"from": self.start.isoformat(), "to": self.end.isoformat(), "team": self.team,
                  "owner": self.owner, "priority": self.priority, "service": self.service,
                  "category": self.category, "by": self.by}
        values.update(changes)
        return {k: v for k, v in values.items() if v is not None}


@dataclass
class Scope:
    """What one viewer may see: everything (team leads, admins) or their own and their teams'."""

    everything: bool
    agent_id: int
    team_ids: frozenset[int] = field(default_factory=frozenset)

    @classmethod
    def of(cls, viewer: Agent) -> Scope:
        teams = frozenset(m.team_id for m in Membership.select(Membership.team)
                          .where(Membership.agent == viewer.id))
        return cls(bool(viewer.is_lead), viewer.id, teams)

    def check(self, filters: Filters) -> None:
        if self.everything:
            return
        if filters.team is not None and filters.team not in self.team_ids:
            raise PermissionDenied("You can see reports of your own teams only.")
        if filters.owner is not None and filters.owner != self.agent_id:
            raise PermissionDenied("You can see your own figures and your teams'.")

    def condition(self) -> peewee.Expression | None:
        if self.everything:
            return None
        return (IncidentFact.owner_agent == self.agent_id) | (
            IncidentFact.owner_team.in_(list(self.team_ids) or [0]))


def _where(filters: Filters, scope: Scope, day: peewee.Field = IncidentFact.created_day) -> peewee.Expression:
    """The facts a report counts: ``day`` (logged, by default) within the period, the filters,
    and only what the viewer may see."""
    scope.check(filters)
    condition = day.between(filters.start.isoformat(), filters.end.isoformat())
    for name in ("priority", "service", "category"):
        value = getattr(filters, name)
        if value is not None:
            condition &= getattr(IncidentFact, name) == value
    if filters.team is not None:
        condition &= IncidentFact.owner_team == filters.team
    if filters.owner is not None:
        condition &= IncidentFact.owner_agent == filters.owner
    scoped = scope.condition()
    return condition & scoped if scoped is not None else condition


def _outcome(target: str, at: dt.datetime) -> peewee.Node:
    outcome = getattr(IncidentFact, f"{target}_outcome")
    breach = getattr(IncidentFact, f"{target}_breach_at")
    return peewee.Case(None, [
        (outcome.in_(["met", "late"]), outcome),
        (outcome.in_(["open", "stopped"]) & breach.is_null(False) & (breach <= at), "breached"),
    ], None)


@dataclass
class ComplianceRow:
    key: Any
    label: str
    counts: dict[str, dict[str, int]]  # target -> outcome -> incidents

    def rate(self, target: str) -> float | None:
        """Met on time, as a share of the targets decided (met, met late or breached)."""
        decided = sum(self.counts[target].values())
        return self.counts[target]["met"] / decided if decided else None


def _group_column(by: str) -> peewee.Node:
    return {"team": IncidentFact.owner_team, "priority": IncidentFact.priority,
            "service": IncidentFact.service, "category": IncidentFact.category,
            "owner": IncidentFact.owner_agent,
            "month": peewee.fn.SUBSTR(IncidentFact.created_day, peewee.SQL("1"), peewee.SQL("7"))}[by]


def _labels(by: str, keys: list[Any]) -> dict[Any, str]:
    known = [k for k in keys if k is not None]
    if by == "priority":
        return {k: PRIORITIES.get(k, str(k)) for k in known}
    if by == "month":
        return {k: k for k in known}
    model, column = {"team": (Team, Team.name), "service": (Service, Service.name),
                     "category": (Category, Category.name),
                     "owner": (Agent, Agent.display_name)}[by]
    return {row.id: getattr(row, column.name) for row in model.select(model.id, column)
            .where(model.id.in_(known))} if known else {}


def compliance(filters: Filters, scope: Scope, at: dt.datetime) -> list[ComplianceRow]:
    """Response and resolution targets met, met late and breached, grouped by ``filters.by``."""
    group = _group_column(filters.by)
    columns = [group.alias("key")]
    for target in ("response", "resolution"):
        outcome = _outcome(target, at)
        for kind in OUTCOMES:
            columns.append(peewee.fn.SUM(peewee.Case(None, [(outcome == kind, 1)], 0))
                           .alias(f"{target}_{kind}"))
    rows = list(IncidentFact.select(*columns).where(_where(filters, scope))
                .group_by(group).order_by(group).dicts())
    labels = _labels(filters.by, [r["key"] for r in rows])
    result = []
    for row in rows:
        counts = {t: {k: int(row[f"{t}_{k}"] or 0) for k in OUTCOMES} for t in ("response", "resolution")}
        if row["key"] is None:
            label = {"owner": "No owner", "service": "No service", "category": "No category"}.get(
                filters.by, "—")
        else:
            label = labels.get(row["key"], f"#{row['key']}")
        result.append(ComplianceRow(row["key"], label, counts))
    return result


@dataclass
class Durations:
    count: int
    mean: float | None
    p50: float | None
    p90: float | None


def _nearest_rank(ordered: list[int], fraction: float) -> float | None:
    """The nearest-rank percentile: the smallest value with at least ``fraction`` of the values
    at or below it."""
    if not ordered:
        return None
    return ordered[max(1, -(-int(len(ordered) * fraction * 1000) // 1000)) - 1]  # ceil, no float drift


MEASURES = ("response_business", "response_wall", "resolution_business", "resolution_wall")


def durations(filters: Filters, scope: Scope) -> dict[str, Durations]:
    """Mean, median and 90th percentile seconds to respond and to resolve (targets met),
    in working time on the clock ("business") and in wall time.

    One pass over the period's facts (four small integers a row); the percentiles are taken
    here, since SQLite has no percentile function and one sort per figure would cost more."""
    columns = [getattr(IncidentFact, f"{m}_seconds") for m in MEASURES]
    values: dict[str, list[int]] = {m: [] for m in MEASURES}
    query = (IncidentFact.select(*columns)
             .where(_where(filters, scope) & (columns[0].is_null(False) | columns[2].is_null(False))))
    for row in query.tuples().iterator():
        for measure, value in zip(MEASURES, row, strict=True):
            if value is not None:
                values[measure].append(value)
    found = {}
    for measure, numbers in values.items():
        numbers.sort()
        found[measure] = Durations(len(numbers), sum(numbers) / len(numbers) if numbers else None,
                                   _nearest_rank(numbers, 0.5), _nearest_rank(numbers, 0.9))
    return found


@dataclass
class FlowDay:
    day: str
    opened: int
    resolved: int


def flow(filters: Filters, scope: Scope) -> list[FlowDay]:
    """Incidents logged and resolved per local day of the period (a day with neither shows 0).

    Resolved counts the incidents whose current resolution falls on that day (a reopened
    incident leaves the count until it is resolved again)."""
    where = _where(filters, scope)
    opened = dict(IncidentFact.select(IncidentFact.created_day, peewee.fn.COUNT(IncidentFact.incident_id))
                  .where(where).group_by(IncidentFact.created_day).tuples())
    resolved = dict(IncidentFact.select(IncidentFact.resolved_day, peewee.fn.COUNT(IncidentFact.incident_id))
                    .where(_where(filters, scope, IncidentFact.resolved_day))
                    .group_by(IncidentFact.resolved_day).tuples())
    days = []
    day = filters.start
    while day <= filters.end:
        key = day.isoformat()
        days.append(FlowDay(key, int(opened.get(key, 0)), int(resolved.get(key, 0))))
        day += dt.timedelta(days=1)
    return days


@dataclass
class Reopens:
    resolved: int
    reopened: int

    @property
    def rate(self) -> float | None:
        return self.reopened / self.resolved if self.resolved else None


def reopens(filters: Filters, scope: Scope) -> Reopens:
    """Of the incidents logged in the period and resolved at least once, how many were reopened."""
    resolved, reopened = (IncidentFact.select(
        peewee.fn.SUM(peewee.Case(None, [(IncidentFact.resolved_count > 0, 1)], 0)),
        peewee.fn.SUM(peewee.Case(None, [(IncidentFact.reopen_count > 0, 1)], 0)))
        .where(_where(filters, scope)).tuples().get())
    return Reopens(int(resolved or 0), int(reopened or 0))


def nearest_breaches(agent: Agent, limit: int = 20) -> list[tuple[Incident, dt.datetime]]:
    """The owner's view: the open incidents ``agent`` owns, nearest SLA breach first."""
    facts = list(IncidentFact.select(IncidentFact.incident_id, IncidentFact.next_breach_at)
                 .where((IncidentFact.owner_agent == agent.id) & IncidentFact.next_breach_at.is_null(False))
                 .order_by(IncidentFact.next_breach_at, IncidentFact.incident_id).limit(limit))
    incidents = {i.id: i for i in Incident.select().where(
        Incident.id.in_([f.incident_id for f in facts]))} if facts else {}
    return [(incidents[f.incident_id], f.next_breach_at) for f in facts if f.incident_id in incidents]
