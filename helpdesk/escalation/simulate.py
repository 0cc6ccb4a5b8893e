"""The simulator: what an SLA check would fire for one incident — existing or hypothetical —
over a horizon, under the current policies and calendars (or a draft policy).

It is not a model of the check: it runs the check's own per-event code
(:func:`helpdesk.sla._process` for each due clock, then
:func:`helpdesk.escalation.engine.process`) and lists only the SLA events the
check sends (:func:`helpdesk.sla.announced`: not one a re-target brought back
to a due time already announced), inside one transaction that is rolled back
at the end, with this thread's clock held at each instant where
something is due. Steps write, they don't send (the records' rule), so
nothing leaves the system; the outbox rows they would queue are rolled back
with everything else.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from helpdesk import clock
from helpdesk.context import Context
from helpdesk.db import write_transaction
from helpdesk.errors import DomainError
from helpdesk.escalation import engine, policies
from helpdesk.models import EscalationRun, EscalationState, Incident, SlaClock, SlaEvent, TimelineEntry

MAX_HORIZON = dt.timedelta(days=90)
MAX_STEPS = 500


@dataclass(frozen=True)
class Happening:
    """One thing that fires: an SLA warning or breach, or an escalation level."""

    at: dt.datetime
    kind: str  # sla_warning, sla_breach, escalation
    what: str  # e.g. "resolution 75%", "level 2 (v3)"
    detail: str = ""


@dataclass
class Simulation:
    incident: str  # reference, or "hypothetical"
    start: dt.datetime
    end: dt.datetime
    happenings: list[Happening] = field(default_factory=list)
    instants: list[dt.datetime] = field(default_factory=list)  # where the clock was held


class _Rollback(Exception):
    pass


def simulate(ctx: Context, *, incident_id: int | None = None, hypothetical: Mapping[str, Any] | None = None,
             start: dt.datetime | None = None, horizon: dt.timedelta = dt.timedelta(days=7),
             draft: Mapping[str, Any] | None = None) -> Simulation:
    """The timeline from ``start`` (default now; a hypothetical incident's logging time) to
    ``start + horizon``. ``hypothetical``: ``logged_at``, ``impact``, ``urgency``, ``priority``
    (an override), ``type``, ``team`` (assigned), ``service``. ``draft``: a policy (as
    :func:`helpdesk.escalation.policies.validate` takes it) saved for the simulation only."""
    if horizon <= dt.timedelta(0) or horizon > MAX_HORIZON:
        raise DomainError("The horizon is from a minute to 90 days.")
    if (incident_id is None) == (hypothetical is None):
        raise DomainError("Simulate either an existing incident or a hypothetical one.")
    result: Simulation | None = None
    try:
        with write_transaction():
            if draft is not None:
                policies.save(ctx, draft)
            if hypothetical is not None:
                start = hypothetical.get("logged_at") or start or clock.now()
                with clock.held_at(start):
                    incident = _hypothetical(ctx, hypothetical)
                label = "hypothetical"
            else:
                incident = Incident.get_or_none(Incident.id == incident_id)
                if incident is None:
                    raise DomainError(f"There is no incident INC-{incident_id}.")
                label = incident.reference
                start = start or clock.now()
            with clock.held_at(start):
                engine.schedule(ctx, incident)
            result = Simulation(label, start, start + horizon)
            _run(ctx, incident.id, result)
            raise _Rollback
    except _Rollback:
        pass
    assert result is not None
    return result


def _hypothetical(ctx: Context, values: Mapping[str, Any]) -> Incident:
    from helpdesk import incidents
    from helpdesk.models import Service, Team

    def named(model: Any, name: Any) -> Any:
        if not name:
            return None
        found = model.get_or_none(model.name == name)
        if found is None:
            raise DomainError(f"There is no {model.__name__.lower()} named {name!r}.")
        return found

    incident = incidents.log_incident(
        ctx, title=values.get("title") or "Simulated incident", actor=None,
        type=values.get("type") or "incident", impact=values.get("impact") or "medium",
        urgency=values.get("urgency") or "medium", assigned_team=named(Team, values.get("team")),
        service=named(Service, values.get("service")))
    if values.get("priority") and values["priority"] != incident.priority:
        incidents.override_priority(ctx, incident.id, None, int(values["priority"]), "simulated")
    return Incident.get_by_id(incident.id)


def next_instant(incident_id: int) -> dt.datetime | None:
    """The earliest moment the check has something to do for the incident."""
    moments = [c.next_event_at for c in SlaClock.select(SlaClock.next_event_at).where(
        (SlaClock.incident == incident_id) & SlaClock.next_event_at.is_null(False))]
    state = EscalationState.get_or_none(EscalationState.incident == incident_id)
    if state is not None and state.next_at is not None:
        moments.append(state.next_at)
    return min(moments) if moments else None


def _run(ctx: Context, incident_id: int, sim: Simulation) -> None:
    from helpdesk import sla

    last_event = SlaEvent.select(SlaEvent.id).order_by(SlaEvent.id.desc()).scalar() or 0
    last_run = EscalationRun.select(EscalationRun.id).order_by(EscalationRun.id.desc()).scalar() or 0
    for _ in range(MAX_STEPS):
        moment = next_instant(incident_id)
        if moment is None or moment > sim.end:
            return
        moment = max(moment, sim.start)
        sim.instants.append(moment)
        with clock.held_at(moment):
            # The check's own steps, for this incident only: its due clocks, then its escalation.
            for clock_id in [c.id for c in SlaClock.select(SlaClock.id).where(
                    (SlaClock.incident == incident_id) & (SlaClock.next_event_at <= moment))
                    .order_by(SlaClock.next_event_at)]:
                sla._process(ctx, clock_id, moment)
            engine.process(ctx, incident_id, moment, simulated=True)
        # What the check claimed and sent: an event a re-target brought back to a due time
        # already announced is claimed but not sent (the check's own rule, sla.repeats).
        events = list(SlaEvent.select().where(SlaEvent.incident == incident_id).order_by(SlaEvent.id))
        for event, sent in sla.announced(events):
            if event.id <= last_event:
                continue
            last_event = event.id
            if not sent:
                continue
            what = (f"{event.target} breached" if event.kind == "breach"
                    else f"{event.target} {event.point / 10:g}%")
            sim.happenings.append(Happening(event.at, f"sla_{event.kind}", what))
        for run in EscalationRun.select().where((EscalationRun.incident == incident_id)
                                                & (EscalationRun.id > last_run)).order_by(EscalationRun.id):
            last_run = run.id
            steps = TimelineEntry.select(TimelineEntry.body).where(
                (TimelineEntry.incident == incident_id) & (TimelineEntry.kind == "escalation")
                & (TimelineEntry.field.in_(["steps", "failure"])) & (TimelineEntry.at == run.at))
            sim.happenings.append(Happening(run.at, "escalation", f"level {run.level} of {run.policy_name} "
                                            f"(v{run.version})", "; ".join(s.body for s in steps)))
