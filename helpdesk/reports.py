"""Reports: SLA compliance, time to respond and resolve, flow and reopen rate.

Reports never read incidents, clocks or timelines. Each incident has one narrow
:class:`~helpdesk.models.IncidentFact` row, rewritten by :func:`refresh` in the
transaction of every change (the incidents package calls it) and rebuilt in bulk by
:func:`rebuild` (``helpdesk reports rebuild``); a report is a few ``GROUP BY`` queries over
those rows, indexed by day, so its cost follows the period asked for.

The figures come from the same SLA clocks the product runs on: a target is *met* when the
working time on its clock (its calendar, pauses left out — :func:`helpdesk.sla.elapsed`)
was within the target when it was met, *met late* when it was met after, and *breached*
when it is still unmet (or was stopped unmet) after its breach instant. Each target counts
under the team that owned the incident when its outcome was decided (the clock's
``outcome_team``: met, marked breached, or stopped), a target still undecided under the
owning team now; everything else follows the owning team now. Business time
uses each instant's own UTC offset (``zoneinfo``), so winter incidents keep their hours
when a report runs in summer. Days are local days of the instance's time zone.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import peewee

from helpdesk import sla
from helpdesk.context import Context
from helpdesk.db import Statement, database
from helpdesk.errors import DomainError, PermissionDenied
from helpdesk.models import (
    ACTIVE_STATUSES,
    PRIORITIES,
    REPORT_KEYS,
    STATUSES,
    Agent,
    Category,
    EscalationRun,
    Incident,
    IncidentFact,
    Membership,
    ReportDay,
    ReportDuration,
    Service,
    SlaClock,
    Team,
    TimelineEntry,
    incident_as_stored,
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
        worked = sla.met_elapsed(ctx, clock)  # as measured when met, in the calendar then
        # Late when met after its due time: the time met in is stored rounded up, so a part of
        # a second late is late here as on the incident page.
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


def _outcome_team(clock: SlaClock | None) -> int | None:
    """The team a target's outcome counts under, if decided (:func:`helpdesk.sla._attribute`)."""
    return None if clock is None else clock.outcome_team


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
        "response_team": _outcome_team(clocks.get("response")),
        "resolution_team": _outcome_team(clocks.get("resolution")),
        "ended_day": (None if incident.status in ACTIVE_STATUSES
                      else _local_day(incident.resolved_at or incident.closed_at or incident.updated_at,
                                      zone)),
    }


_RESOLVED_LABEL = STATUSES["resolved"]
_ACTIVE_LABELS = frozenset(STATUSES[s] for s in ACTIVE_STATUSES)


def _status_changes(incidents: Any) -> peewee.ModelSelect:
    """(incident, old, new) of the status changes into or out of resolved (``incidents``: the
    condition on the incident column's value)."""
    return (TimelineEntry.select(TimelineEntry.incident, TimelineEntry.old_value, TimelineEntry.new_value)
            .where(incidents(TimelineEntry.incident) & (TimelineEntry.kind == "change")
                   & (TimelineEntry.field == "status")
                   & ((TimelineEntry.new_value == _RESOLVED_LABEL)
                      | (TimelineEntry.old_value == _RESOLVED_LABEL))))


def _tally(rows: Iterable[Any]) -> dict[int, tuple[int, int]]:
    """How often each incident was resolved, and reopened (left resolved for an active status),
    from :func:`_status_changes` rows."""
    counts: dict[int, list[int]] = {}
    for incident_id, old, new in rows:
        pair = counts.setdefault(incident_id, [0, 0])
        if new == _RESOLVED_LABEL:
            pair[0] += 1
        elif old == _RESOLVED_LABEL and new in _ACTIVE_LABELS:
            pair[1] += 1
    return {k: (v[0], v[1]) for k, v in counts.items()}


# One incident's rewrite runs in the transaction of every change: its reads and writes are
# compiled once (peewee spent more building them than SQLite running them).
_CLOCKS = Statement(lambda incident_id: SlaClock.select().where(SlaClock.incident == incident_id),
                    models=(SlaClock,))
_STATUS_CHANGES = Statement(lambda incident_id: _status_changes(lambda column: column == incident_id))
_FACT = Statement(lambda incident_id: IncidentFact.select().where(IncidentFact.incident_id == incident_id),
                  models=(IncidentFact,))
_DROP_FACT = Statement(lambda incident_id: IncidentFact.delete()
                       .where(IncidentFact.incident_id == incident_id))


def _write(ctx: Context, incidents: list[Incident]) -> None:
    """Many incidents' facts at once (:func:`rebuild`)."""
    if not incidents:
        return
    ids = [i.id for i in incidents]
    zone = ZoneInfo(ctx.settings.time_zone)
    clocks: dict[int, dict[str, SlaClock]] = {}
    for clock in SlaClock.select().where(SlaClock.incident.in_(ids)):
        clocks.setdefault(clock.incident_id, {})[clock.target] = clock
    counts = _tally(_status_changes(lambda column: column.in_(ids)).tuples())
    rows = [_fact(ctx, i, clocks.get(i.id, {}), counts.get(i.id, (0, 0)), zone) for i in incidents]
    old = list(IncidentFact.select().where(IncidentFact.incident_id.in_(ids)).dicts())
    IncidentFact.delete().where(IncidentFact.incident_id.in_(ids)).execute()
    IncidentFact.insert_many(rows).execute()
    apply_delta(old, rows)


# -- per-day aggregates -----------------------------------------------------------------------
#
# Every fact adds a few numbers to a few aggregate rows (its day logged, the day it was
# resolved, the day it left the active statuses). A change rewrites the incident's fact, so
# the aggregates move by (new contributions - old contributions), written in the same
# transaction with an additive upsert: nothing to catch up, no worker to lag behind, and two
# changes to different incidents that touch one aggregate row add up instead of
# overwriting each other. (A worker with a high-water mark would keep the change's
# transaction shorter, but reports would lag and the delta would need the old fact anyway.)

#: Buckets of the duration histograms: under a minute, then a factor of 1.25 each.
BUCKET_BASE, BUCKET_RATIO, BUCKET_LAST = 60, 1.25, 90
#: Up to this many targets met in a period, percentiles are exact (from the facts); beyond,
#: they come from the histograms (within 12 % plus 30 s).
EXACT_PERCENTILES = 20_000
_OUTCOME_COLUMNS = {"met": "met", "late": "late"}


def bucket(seconds: int) -> int:
    """The histogram bucket of a duration: 0 under a minute, k for 60·1.25^(k-1) up to 60·1.25^k."""
    if seconds < BUCKET_BASE:
        return 0
    return min(BUCKET_LAST, 1 + int(math.log(seconds / BUCKET_BASE) / math.log(BUCKET_RATIO) + 1e-9))


def bucket_value(index: int) -> float:
    """The figure a bucket stands for: its geometric middle (30 s for the first)."""
    if index == 0:
        return BUCKET_BASE / 2
    return BUCKET_BASE * BUCKET_RATIO ** (index - 1) * math.sqrt(BUCKET_RATIO)


def _key(fact: dict[str, Any], day: str, team: int | None = None) -> tuple[Any, ...]:
    """The aggregate row a fact adds to on ``day``: under its owning team, or ``team``."""
    return (day, team or fact["owner_team"], fact["owner_agent"] or 0, fact["priority"], fact["service"] or 0,
            fact["category"] or 0)


def _contributions(fact: dict[str, Any], sign: int, days: dict[tuple[Any, ...], dict[str, int]],
                   spans: dict[tuple[Any, ...], int]) -> None:
    """Add ``sign`` × what one fact counts for to ``days`` (ReportDay) and ``spans``
    (ReportDuration)."""
    logged = _key(fact, fact["created_day"])
    row = days.setdefault(logged, {})

    def add(target: dict[str, int], column: str, value: int) -> None:
        target[column] = target.get(column, 0) + sign * value

    add(row, "opened", 1)
    for target in ("response", "resolution"):
        # A decided target counts under the team that owned the incident when it was decided
        # (the same day and other keys: a row of its own when that team no longer owns it).
        outcome = fact[f"{target}_outcome"]
        if outcome in ("met", "late"):
            column = f"{target}_{outcome}"
        elif outcome == "stopped" and fact[f"{target}_breach_at"] is not None:
            column = f"{target}_breached"
        else:
            continue
        add(days.setdefault(_key(fact, fact["created_day"], fact.get(f"{target}_team")), {}), column, 1)
    if fact["resolved_count"]:
        add(row, "resolved_once", 1)
    if fact["reopen_count"]:
        add(row, "reopened", 1)
    for index, measure in enumerate(MEASURES):
        value = fact[f"{measure}_seconds"]
        if value is not None:
            # A time to respond or resolve is a met target's: under the team it was met in.
            met = _key(fact, fact["created_day"], fact.get(f"{_TARGET_OF[measure]}_team"))
            add(days.setdefault(met, {}), f"{measure}_n", 1)
            add(days.setdefault(met, {}), f"{measure}_sum", value)
            span = (*met, index, bucket(value))
            spans[span] = spans.get(span, 0) + sign
    if fact["resolved_day"]:
        add(days.setdefault(_key(fact, fact["resolved_day"]), {}), "resolved", 1)
    if fact.get("ended_day"):
        ended = days.setdefault(_key(fact, fact["ended_day"]), {})
        add(ended, "ended", 1)
        age = (dt.date.fromisoformat(fact["ended_day"]) - dt.date.fromisoformat(fact["created_day"])).days
        if 0 <= age < 7:
            add(ended, f"ended_age{age}", 1)


def _adding(model: type[peewee.Model], keys: tuple[str, ...], columns: tuple[str, ...]
            ) -> Callable[[Any], peewee.Insert]:
    """An INSERT of ``model`` rows that, where a row with the same ``keys`` exists, adds the
    ``columns`` to it instead (``rows``: a list of dicts, or a tuple of placeholders)."""
    update = {getattr(model, c): getattr(model, c) + peewee.EXCLUDED[c] for c in columns}
    target = [getattr(model, k) for k in keys]

    def build(rows: Any) -> peewee.Insert:
        if isinstance(rows, tuple):
            rows = [dict(zip((*keys, *columns), rows, strict=True))]
        return model.insert_many(rows).on_conflict(conflict_target=target, update=update)
    return build


_ADD_ONE: dict[tuple[type, tuple[str, ...]], Statement] = {}
_SPAN_KEYS = (*REPORT_KEYS, "measure", "bucket")
FEW = 8  # up to this many rows a set of columns, one compiled statement a row (a change's delta)


def _add(model: type[peewee.Model], keys: tuple[str, ...], columns: tuple[str, ...],
         rows: list[tuple[Any, ...]], batch: int) -> None:
    """Add ``rows`` (key values, then column values) to the aggregate ``model``."""
    if len(rows) <= FEW:
        statement = _ADD_ONE.get((model, columns))
        if statement is None:
            build = _adding(model, keys, columns)
            statement = _ADD_ONE[(model, columns)] = Statement(lambda *values: build(values))
        for row in rows:
            statement.execute(*row)
        return
    build = _adding(model, keys, columns)
    names = (*keys, *columns)
    for start in range(0, len(rows), batch):
        build([dict(zip(names, row, strict=True)) for row in rows[start:start + batch]]).execute()


def _upsert(days: dict[tuple[Any, ...], dict[str, int]], spans: dict[tuple[Any, ...], int],
            batch: int = 500) -> None:
    # One statement per set of columns: an INSERT names the same columns in every row.
    by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for key, values in days.items():
        columns = tuple(sorted(c for c, v in values.items() if v))
        if columns:
            by_columns.setdefault(columns, []).append((*key, *(values[c] for c in columns)))
    for columns, rows in by_columns.items():
        _add(ReportDay, REPORT_KEYS, columns, rows, batch)
    _add(ReportDuration, _SPAN_KEYS, ("count",), [(*k, v) for k, v in spans.items() if v], batch)


def apply_delta(old: Iterable[dict[str, Any]], new: Iterable[dict[str, Any]]) -> None:
    """Move the aggregates from the ``old`` facts of some incidents to their ``new`` ones
    (in the caller's transaction)."""
    days: dict[tuple[Any, ...], dict[str, int]] = {}
    spans: dict[tuple[Any, ...], int] = {}
    for fact in old:
        _contributions(fact, -1, days, spans)
    for fact in new:
        _contributions(fact, 1, days, spans)
    _upsert(days, spans)


def refresh(ctx: Context, incident_id: int, new: Incident | None = None,
            new_clocks: Mapping[str, SlaClock] | None = None) -> None:
    """Rewrite one incident's fact row; call it in the transaction of the change, after the
    SLA clocks moved. ``new`` (with ``new_clocks``): the incident created in this transaction,
    as stored, and the clocks it started: it has no fact and no status change to read yet."""
    if new is not None:
        fact = _fact(ctx, new, dict(new_clocks or {}), (0, 0), ZoneInfo(ctx.settings.time_zone))
        IncidentFact(**fact).save(force_insert=True)
        apply_delta([], [fact])
        return
    incident = incident_as_stored(incident_id)
    clocks = {clock.target: clock for (clock,) in _CLOCKS.rows(incident_id)}
    counts = _tally(_STATUS_CHANGES.execute(incident_id)).get(incident_id, (0, 0))
    fact = _fact(ctx, incident, clocks, counts, ZoneInfo(ctx.settings.time_zone))
    old = [row.__data__ for (row,) in _FACT.rows(incident_id)]
    if old:
        _DROP_FACT.execute(incident_id)
    IncidentFact(**fact).save(force_insert=True)
    apply_delta(old, [fact])


def rebuild(ctx: Context, batch: int = 2000) -> int:
    """Every incident's fact row and the per-day aggregates again (after upgrading, a
    restore, or a change of calendar); the aggregates grow batch by batch as deltas from
    nothing, exactly as changes move them."""
    count, last = 0, 0
    with database.atomic():
        IncidentFact.delete().execute()
        ReportDay.delete().execute()
        ReportDuration.delete().execute()
    while True:
        with database.atomic():
            incidents = list(Incident.select().where(Incident.id > last).order_by(Incident.id).limit(batch))
            if not incidents:
                return count
            _write(ctx, incidents)
        count += len(incidents)
        last = incidents[-1].id


# -- asking ---------------------------------------------------------------------------------

FIRST_DAY, LAST_DAY = dt.date(1970, 1, 1), dt.date(9000, 12, 31)


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
                found = dt.date.fromisoformat(raw)
            except ValueError:
                raise DomainError(f"“{raw[:40]}” is not a date; use YYYY-MM-DD.") from None
            if not FIRST_DAY <= found <= LAST_DAY:  # the period's arithmetic must stay in the calendar
                raise DomainError(f"Choose a date from {FIRST_DAY} to {LAST_DAY}.")
            return found

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


def _filtered(filters: Filters, scope: Scope, model: type[peewee.Model] = IncidentFact,
              team: peewee.Node | None = None) -> peewee.Expression:
    """The filters and the viewer's scope on a fact or aggregate ``model`` (any period);
    ``team``: the team column they read (default the owning team; a target's outcome team
    for the targets it decided, :func:`_team_of`)."""
    scope.check(filters)
    if team is None:
        team = model.owner_team
    condition: peewee.Expression = peewee.SQL("1 = 1")
    for name in ("priority", "service", "category"):
        value = getattr(filters, name)
        if value is not None:
            condition &= getattr(model, name) == value
    if filters.team is not None:
        condition &= team == filters.team
    if filters.owner is not None:
        condition &= model.owner_agent == filters.owner
    if not scope.everything:
        condition &= ((model.owner_agent == scope.agent_id)
                      | team.in_(list(scope.team_ids) or [0]))
    return condition


def _where(filters: Filters, scope: Scope, day: peewee.Field = IncidentFact.created_day,
           team: peewee.Node | None = None) -> peewee.Expression:
    """The facts (or aggregate rows, by the model of ``day``) a report counts: ``day``
    (logged, by default) within the period, the filters, and only what the viewer may see."""
    return (day.between(filters.start.isoformat(), filters.end.isoformat())
            & _filtered(filters, scope, day.model, team))


def _team_of(target: str) -> peewee.Node:
    """The team a fact's ``target`` counts under: the team that owned the incident when its
    outcome was decided, else (still running undecided) the owning team now."""
    return peewee.fn.COALESCE(getattr(IncidentFact, f"{target}_team"), IncidentFact.owner_team)


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


def _group_column(by: str, model: type[peewee.Model] = IncidentFact, team: peewee.Node | None = None
                  ) -> peewee.Node:
    day = model.created_day if model is IncidentFact else model.day
    return {"team": model.owner_team if team is None else team, "priority": model.priority,
            "service": model.service, "category": model.category,
            "owner": model.owner_agent,
            "month": peewee.fn.SUBSTR(day, peewee.SQL("1"), peewee.SQL("7"))}[by]


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


def _no_counts() -> dict[str, dict[str, int]]:
    return {t: dict.fromkeys(OUTCOMES, 0) for t in ("response", "resolution")}


def compliance_from_facts(filters: Filters, scope: Scope, at: dt.datetime) -> list[ComplianceRow]:
    """Response and resolution targets met, met late and breached, grouped by ``filters.by``,
    counted over the facts (the reference :func:`compliance` must agree with): a group for
    every group of incidents logged, and each decided target under the team it was decided
    in (:func:`_team_of`), which may hold none of them now."""
    group = _group_column(filters.by)
    grouped: dict[Any, dict[str, dict[str, int]]] = {
        key: _no_counts() for (key,) in IncidentFact.select(group).where(_where(filters, scope))
        .group_by(group).tuples()}
    for target in ("response", "resolution"):
        team = _team_of(target)
        target_group = _group_column(filters.by, team=team)
        outcome = _outcome(target, at)
        columns = [target_group.alias("key")]
        for kind in OUTCOMES:
            columns.append(peewee.fn.SUM(peewee.Case(None, [(outcome == kind, 1)], 0)).alias(kind))
        for row in (IncidentFact.select(*columns)
                    .where(_where(filters, scope, team=team) & outcome.is_null(False))
                    .group_by(target_group).dicts()):
            counts = grouped.setdefault(row["key"], _no_counts())[target]
            for kind in OUTCOMES:
                counts[kind] += int(row[kind] or 0)
    return _compliance_rows(filters.by, grouped)


def _compliance_rows(by: str, grouped: dict[Any, dict[str, dict[str, int]]]) -> list[ComplianceRow]:
    labels = _labels(by, list(grouped))
    result = []
    for key in sorted(grouped, key=lambda k: (k is None, k)):
        if key is None:
            label = {"owner": "No owner", "service": "No service", "category": "No category"}.get(by, "—")
        else:
            label = labels.get(key, f"#{key}")
        result.append(ComplianceRow(key, label, grouped[key]))
    return result


@dataclass
class Durations:
    """Counts and seconds of one measure; every figure in whole seconds, a half rounded up."""

    count: int
    mean: int | None
    p50: int | None
    p90: int | None


def percentile(ordered: Sequence[int], percent: int) -> int | None:
    """The ``percent`` percentile of sorted whole seconds, interpolated linearly between the
    two nearest ranks (rank ``(n - 1) · percent / 100`` counted from 0, as spreadsheets'
    PERCENTILE.INC and numpy's default): the median of an even count is the mean of the two
    middle values. Rounded to whole seconds, a half up (:func:`whole_seconds`), in integers
    so no float drift moves a figure across a half."""
    if not ordered:
        return None
    low, rest = divmod((len(ordered) - 1) * percent, 100)
    if not rest:
        return ordered[low]
    return _round_half_up(ordered[low] * (100 - rest) + ordered[low + 1] * rest, 100)


def _round_half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


def whole_seconds(value: float | None) -> int | None:
    """A duration figure of a report in whole seconds, a half second rounded up (means and
    histogram estimates; :func:`percentile` rounds the same way in integers)."""
    return None if value is None else math.floor(value + 0.5)


MEASURES = ("response_business", "response_wall", "resolution_business", "resolution_wall")
_TARGET_OF = {measure: measure.split("_")[0] for measure in MEASURES}


def durations_from_facts(filters: Filters, scope: Scope) -> dict[str, Durations]:
    """Mean, median and 90th percentile seconds to respond and to resolve (targets met),
    in working time on the clock ("business") and in wall time.

    One pass per target over the period's facts (two small integers a row), each target under
    the team it was met in (:func:`_team_of`); the percentiles are taken here, since SQLite has
    no percentile function and one sort per figure would cost more."""
    values: dict[str, list[int]] = {m: [] for m in MEASURES}
    for target in ("response", "resolution"):
        measures = [m for m in MEASURES if _TARGET_OF[m] == target]
        columns = [getattr(IncidentFact, f"{m}_seconds") for m in measures]
        query = (IncidentFact.select(*columns)
                 .where(_where(filters, scope, team=_team_of(target)) & columns[0].is_null(False)))
        for row in query.tuples().iterator():
            for measure, value in zip(measures, row, strict=True):
                if value is not None:
                    values[measure].append(value)
    found = {}
    for measure, numbers in values.items():
        numbers.sort()
        found[measure] = Durations(len(numbers),
                                   _round_half_up(sum(numbers), len(numbers)) if numbers else None,
                                   percentile(numbers, 50), percentile(numbers, 90))
    return found


@dataclass
class FlowDay:
    day: str
    opened: int
    resolved: int


def flow_from_facts(filters: Filters, scope: Scope) -> list[FlowDay]:
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


def reopens_from_facts(filters: Filters, scope: Scope) -> Reopens:
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


# -- asking the aggregates ------------------------------------------------------------------
#
# What reports read. Per-day rows are summed over the period, so a quarter at a million
# incidents is a few thousand rows whatever the incident count. Two figures are not in them:
# "breached" for targets still open depends on when the report runs, so it is counted from
# the facts of the period's incidents with an open target (bounded by what is open, and
# indexed); and percentiles, which sums cannot give (see :func:`durations`).

_NONE_IS_ZERO = {"owner", "service", "category"}


def _agg_key(by: str, key: Any) -> Any:
    return None if by in _NONE_IS_ZERO and key == 0 else key


def compliance(filters: Filters, scope: Scope, at: dt.datetime) -> list[ComplianceRow]:
    """Response and resolution targets met, met late and breached, grouped by ``filters.by``:
    met, late and stopped-unmet from the per-day aggregates, open targets past their breach
    instant at ``at`` from the facts."""
    group = _group_column(filters.by, ReportDay)
    columns = [group.alias("key"), peewee.fn.SUM(ReportDay.opened).alias("opened")]
    for target in ("response", "resolution"):
        for kind in OUTCOMES:
            columns.append(peewee.fn.SUM(getattr(ReportDay, f"{target}_{kind}")).alias(f"{target}_{kind}"))
    grouped: dict[Any, dict[str, dict[str, int]]] = {}
    # A team's rows may hold decided targets only (of incidents another team owns now).
    counted = peewee.fn.SUM(ReportDay.opened)
    for target in ("response", "resolution"):
        for kind in OUTCOMES:
            counted += peewee.fn.SUM(getattr(ReportDay, f"{target}_{kind}"))
    for row in (ReportDay.select(*columns).where(_where(filters, scope, ReportDay.day))
                .group_by(group).having(counted > 0).dicts()):
        grouped[_agg_key(filters.by, row["key"])] = {
            t: {k: int(row[f"{t}_{k}"] or 0) for k in OUTCOMES} for t in ("response", "resolution")}
    for target in ("response", "resolution"):
        # Open targets past their breach instant, under the team each was breached in (marked by
        # the check), or the owning team now (not marked yet).
        team = _team_of(target)
        fact_group = _group_column(filters.by, team=team)
        outcome = getattr(IncidentFact, f"{target}_outcome")
        breach = getattr(IncidentFact, f"{target}_breach_at")
        overdue = (outcome == "open") & breach.is_null(False) & (breach <= at)
        for key, count in (IncidentFact.select(fact_group, peewee.fn.COUNT(IncidentFact.incident_id))
                           .where(_where(filters, scope, team=team) & overdue)
                           .group_by(fact_group).tuples()):
            grouped.setdefault(key, _no_counts())[target]["breached"] += int(count)
    return _compliance_rows(filters.by, grouped)


def _histogram_percentile(counts: dict[int, int], percent: int) -> int | None:
    """:func:`percentile` of a histogram: each value taken as the figure its bucket stands
    for, interpolated between the two nearest ranks the same way, in whole seconds."""
    total = sum(counts.values())
    if not total:
        return None
    low, rest = divmod((total - 1) * percent, 100)

    def at(rank: int) -> float:  # the figure of the value at 0-based ``rank``
        seen = 0
        for index in sorted(counts):
            seen += counts[index]
            if seen > rank:
                return bucket_value(index)
        raise AssertionError("rank beyond the total")  # pragma: no cover

    first = at(low)
    value = first if not rest else first + (at(low + 1) - first) * rest / 100
    return whole_seconds(value)


def durations(filters: Filters, scope: Scope, exact_limit: int = EXACT_PERCENTILES) -> dict[str, Durations]:
    """Mean, median and 90th percentile seconds to respond and to resolve (targets met), in
    working time on the clock ("business") and in wall time.

    Counts and means are exact, from the aggregates' sums. Percentiles (:func:`percentile`:
    interpolated between the two nearest ranks, so the median of an even count is the mean
    of the middle two) are exact over the facts while the period has at most
    ``exact_limit`` targets met; beyond, they come from the per-day histograms, each value
    taken as its bucket's geometric middle, so within 12 % plus 30 s of the exact figure.
    Every figure is whole seconds, a half rounded up."""
    columns = []
    for measure in MEASURES:
        columns += [peewee.fn.SUM(getattr(ReportDay, f"{measure}_n")),
                    peewee.fn.SUM(getattr(ReportDay, f"{measure}_sum"))]
    sums = ReportDay.select(*columns).where(_where(filters, scope, ReportDay.day)).tuples().get()
    counts = {m: int(sums[2 * i] or 0) for i, m in enumerate(MEASURES)}
    means = {m: (_round_half_up(int(sums[2 * i + 1] or 0), counts[m]) if counts[m] else None)
             for i, m in enumerate(MEASURES)}
    if max(counts.values()) <= exact_limit:
        exact = durations_from_facts(filters, scope) if max(counts.values()) else {}
        return {m: Durations(counts[m], means[m], exact[m].p50 if exact else None,
                             exact[m].p90 if exact else None) for m in MEASURES}
    histograms: dict[int, dict[int, int]] = {i: {} for i in range(len(MEASURES))}
    query = (ReportDuration.select(ReportDuration.measure, ReportDuration.bucket,
                                   peewee.fn.SUM(ReportDuration.count))
             .where(_where(filters, scope, ReportDuration.day))
             .group_by(ReportDuration.measure, ReportDuration.bucket))
    for measure, index, count in query.tuples():
        if count:
            histograms[measure][index] = int(count)
    return {m: Durations(counts[m], means[m], _histogram_percentile(histograms[i], 50),
                         _histogram_percentile(histograms[i], 90)) for i, m in enumerate(MEASURES)}


def _days(filters: Filters) -> list[str]:
    return [(filters.start + dt.timedelta(days=n)).isoformat()
            for n in range((filters.end - filters.start).days + 1)]


def flow(filters: Filters, scope: Scope) -> list[FlowDay]:
    """Incidents logged and resolved per local day of the period (a day with neither shows 0).

    Resolved counts the incidents whose current resolution falls on that day (a reopened
    incident leaves the count until it is resolved again)."""
    found = {day: (int(opened or 0), int(resolved or 0)) for day, opened, resolved in
             ReportDay.select(ReportDay.day, peewee.fn.SUM(ReportDay.opened),
                              peewee.fn.SUM(ReportDay.resolved))
             .where(_where(filters, scope, ReportDay.day)).group_by(ReportDay.day).tuples()}
    return [FlowDay(day, *found.get(day, (0, 0))) for day in _days(filters)]


def reopens(filters: Filters, scope: Scope) -> Reopens:
    """Of the incidents logged in the period and resolved at least once, how many were reopened."""
    resolved, reopened = (ReportDay.select(peewee.fn.SUM(ReportDay.resolved_once),
                                           peewee.fn.SUM(ReportDay.reopened))
                          .where(_where(filters, scope, ReportDay.day)).tuples().get())
    return Reopens(int(resolved or 0), int(reopened or 0))


#: Backlog age buckets: (label, from days, to days); ages are whole local days since logging.
#: Whole days since the day logged, [low, high): labels say the days each holds ("over 7 days" held
#: those logged exactly 7 days before, and "1–3" and "3–7" both seemed to hold 3).
AGE_BUCKETS = (("under 1 day", 0, 1), ("1–2 days", 1, 3), ("3–6 days", 3, 7), ("7 days or more", 7, None))


@dataclass
class BacklogDay:
    day: str
    open: int
    ages: tuple[int, ...]  # per AGE_BUCKETS


def backlog(filters: Filters, scope: Scope) -> list[BacklogDay]:
    """The incidents open at the end of each local day of the period (logged by then, not yet
    out of the active statuses), by age.

    An incident counts from the day it was logged to the day it last left the active
    statuses (resolved, closed or cancelled): one reopened and resolved again counts as open
    in between, as it was on the later resolution's account. Every incident counts, not only
    those logged in the period. From the aggregates alone: the running sum of logged minus
    ended, and for ages under a week the days logged minus those ended by then."""
    lead = filters.start - dt.timedelta(days=6)
    where = _filtered(filters, scope, ReportDay)
    base = (ReportDay.select(peewee.fn.SUM(ReportDay.opened) - peewee.fn.SUM(ReportDay.ended))
            .where(where & (ReportDay.day < lead.isoformat())).scalar())
    age_columns = [peewee.fn.SUM(getattr(ReportDay, f"ended_age{k}")) for k in range(7)]
    series: dict[str, tuple[int, ...]] = {}
    for row in (ReportDay.select(ReportDay.day, peewee.fn.SUM(ReportDay.opened),
                                 peewee.fn.SUM(ReportDay.ended), *age_columns)
                .where(where & ReportDay.day.between(lead.isoformat(), filters.end.isoformat()))
                .group_by(ReportDay.day).tuples()):
        series[row[0]] = tuple(int(v or 0) for v in row[1:])
    empty = (0,) * 9

    def at(day: dt.date) -> tuple[int, ...]:
        return series.get(day.isoformat(), empty)

    running = int(base or 0)
    day = lead
    while day < filters.start:
        running += at(day)[0] - at(day)[1]
        day += dt.timedelta(days=1)
    result = []
    for iso in _days(filters):
        day = dt.date.fromisoformat(iso)
        running += at(day)[0] - at(day)[1]
        ages = []
        for _label, low, high in AGE_BUCKETS[:-1]:
            first, last = day - dt.timedelta(days=high - 1), day - dt.timedelta(days=low)  # logged
            logged = sum(at(first + dt.timedelta(days=n))[0] for n in range((last - first).days + 1))
            ended = 0
            for back in range(high):  # ended on day - back, k days after logging
                ended_day = day - dt.timedelta(days=back)
                for k in range(7):
                    if first <= ended_day - dt.timedelta(days=k) <= last:
                        ended += at(ended_day)[2 + k]
            ages.append(logged - ended)
        result.append(BacklogDay(iso, running, (*ages, running - sum(ages))))
    return result


def backlog_from_facts(filters: Filters, scope: Scope) -> list[BacklogDay]:
    """:func:`backlog` counted over every fact (the reference; reads every incident)."""
    facts = list(IncidentFact.select(IncidentFact.created_day, IncidentFact.ended_day)
                 .where(_filtered(filters, scope)).tuples())
    result = []
    for iso in _days(filters):
        day = dt.date.fromisoformat(iso)
        ages = [0] * len(AGE_BUCKETS)
        for created, ended in facts:
            if created <= iso and (ended is None or ended > iso):
                age = (day - dt.date.fromisoformat(created)).days
                for n, (_label, low, high) in enumerate(AGE_BUCKETS):
                    if age >= low and (high is None or age < high):
                        ages[n] += 1
        result.append(BacklogDay(iso, sum(ages), tuple(ages)))
    return result


@dataclass
class EscalationLevel:
    level: int
    runs: int
    incidents: int
    manual: int
    failed: int


def escalations(filters: Filters, scope: Scope, time_zone: str) -> list[EscalationLevel]:
    """Escalation levels that ran in the period (local days), per level: how many runs, on how
    many incidents, how many raised by hand, how many failed. Read from the escalation runs
    themselves (a run is rare next to incidents), joined to the facts for the filters and
    the viewer's scope."""
    zone = ZoneInfo(time_zone)

    def utc(day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC).replace(tzinfo=None)

    start, end = utc(filters.start), utc(filters.end + dt.timedelta(days=1))
    query = (EscalationRun.select(
        EscalationRun.level, peewee.fn.COUNT(EscalationRun.id),
        peewee.fn.COUNT(EscalationRun.incident.distinct()),
        peewee.fn.SUM(peewee.Case(None, [(EscalationRun.manual == True, 1)], 0)),  # noqa: E712
        peewee.fn.SUM(peewee.Case(None, [(EscalationRun.state == "failed", 1)], 0)))
        .join(IncidentFact, on=(IncidentFact.incident_id == EscalationRun.incident))
        .where((EscalationRun.at >= start) & (EscalationRun.at < end) & _filtered(filters, scope))
        .group_by(EscalationRun.level).order_by(EscalationRun.level))
    return [EscalationLevel(int(level), int(runs), int(distinct), int(manual or 0), int(failed or 0))
            for level, runs, distinct, manual, failed in query.tuples()]
