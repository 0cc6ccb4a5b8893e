"""The escalation engine: which level of which policy is due for an incident, and running it
exactly once.

Each incident has one :class:`~helpdesk.models.EscalationState` row whose
``next_at`` (indexed) says when the check must look at it again; it is
recomputed whenever the incident changes (:func:`schedule`, called by the
domain's follow-ups), after every pass, and when a policy is saved. The SLA
check calls :func:`check` in the same pass as its warnings and breaches.

Rules, in the order they apply:

* **Which policy**: the first enabled policy (by position) whose conditions
  match. Once a level has run, the incident stays with that policy; an edit
  of it applies from the next level on (its current version), and levels
  already run are never run again, whatever their number in the new version.
* **When**: a level's moment is working time on its SLA clock (paused time
  does not count, the clock's calendar applies); a met or stopped clock
  reaches nothing, a paused one nothing more (a moment reached before the
  pause stands: a target that ran out before it was breached). Manual levels
  run only by hand.
* **Stale levels** (the worker was down, or a snooze ended): of the levels
  whose moment has passed, only the latest runs, once; the ones before it are
  named on the timeline as skipped. (SLA warnings whose moment passed are not
  sent late either: see :mod:`helpdesk.sla`.)
* **Exactly once**: a level is claimed by inserting its unique
  :class:`~helpdesk.models.EscalationRun` row (incident, policy, version,
  level, target cycle) in the transaction that also holds the steps'
  effects and the incident's timeline; two workers, or a rerun after a crash,
  find the row (or wait for the incident's lock) and do nothing.
* **Failures**: a step that fails has its writes undone (a savepoint) and is
  shown on the timeline; a temporary failure is retried with backoff (1, 2, 4,
  8 minutes) from the next check, only the steps that did not run, then the run
  is marked failed (listed on the admin Escalation page).
* **Cost**: a pass reads the policies once per batch of due incidents; a level
  reads its incident (locked), state, retries and clocks once, and again only
  after steps ran (they may reassign or retarget). The read policies are the
  ones of the pass's start: an edit saved meanwhile applies from the next pass.
* **Snooze**: an acknowledged, snoozed incident runs no automatic level until
  the snooze ends (then the stale rule applies); manual escalation still works.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import peewee

from helpdesk import business_time, events
from helpdesk.clock import now
from helpdesk.context import Context
from helpdesk.db import Statement, for_update, write_transaction
from helpdesk.errors import DomainError, PermissionDenied
from helpdesk.escalation import policies
from helpdesk.models import (
    Agent,
    EscalationPolicy,
    EscalationRun,
    EscalationState,
    Incident,
    Membership,
    SlaClock,
    TimelineEntry,
    incident_as_stored,
)
from helpdesk.records import DeliveryError, EscalationLevel, StepError, StepResult

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 5
MAX_SNOOZE = dt.timedelta(days=7)


@dataclass(frozen=True)
class Fired:
    """One level that ran (or was retried) in a pass: what the simulator and the CLI show."""

    incident_id: int
    at: dt.datetime
    policy: str
    version: int
    level: int
    title: str
    state: str
    summary: str
    manual: bool = False


# -- conditions and moments ------------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What conditions look at, read once per incident (a queue page reads them for all its
    rows in a few queries: see :func:`upcoming_for`)."""

    priority: int
    type: str
    teams: frozenset[str]
    service: str | None
    organisation: str | None


def _fact(incident: Incident | Facts, key: str) -> Any:
    """One fact; read from an incident only when a condition asks for it (each costs a query)."""
    if isinstance(incident, Facts):
        return getattr(incident, key)
    if key == "teams":
        pair = (incident.owner_team, incident.assigned_team)
        return frozenset(team.name for team in pair if team is not None)
    if key == "service":
        return incident.service.name if incident.service is not None else None
    if key == "organisation":
        organisation = incident.requester.organisation if incident.requester is not None else None
        return organisation.name if organisation is not None else None
    return getattr(incident, key)


def matches(incident: Incident | Facts, conditions: Mapping[str, list[Any]]) -> bool:
    """Whether ``incident`` meets every condition given (priority, type, team, service,
    organisation); no conditions match everything."""
    for key, values in conditions.items():
        if key == "team":
            if not _fact(incident, "teams") & set(values):
                return False
        elif key in {"priority", "type", "service", "organisation"} and _fact(incident, key) not in values:
            return False
    return True


def clocks_of(incident_id: int) -> dict[str, SlaClock]:
    return {clock.target: clock for clock in SlaClock.select().where(SlaClock.incident == incident_id)}


def moment(ctx: Context, level: Mapping[str, Any], clocks: Mapping[str, SlaClock]) -> dt.datetime | None:
    """When an automatic level is reached, in working time of its SLA clock; ``None`` for a
    manual level or a clock that is missing, met or stopped (it reaches nothing). A paused
    clock reaches nothing more, but a moment it reached before the pause stands: a target that
    ran out before the pause (no check came in between) was breached, and its "at breach"
    level runs while the incident waits, not only once it resumes."""
    if level["trigger"] == "manual":
        return None
    clock = clocks.get(level["target"])
    if clock is None or clock.met_at or clock.stopped_at:
        return None
    target = clock.target_seconds
    work = {"fraction": lambda: target * level.get("fraction", 1),
            "breach": lambda: target,
            "after_breach": lambda: target + 60 * level.get("minutes", 0),
            "before_due": lambda: max(0, target - 60 * level.get("minutes", 0))}[level["trigger"]]()
    from helpdesk import sla

    calendar = sla._calendar(ctx, clock.calendar)  # the SLA module's calendar lookup, on purpose
    reached = business_time.add(calendar, clock.started_at, dt.timedelta(seconds=work + clock.paused_seconds))
    if clock.paused_at is not None and reached > clock.paused_at:
        return None  # (the pauses before this one are in paused_seconds; this one is not yet)
    return reached


def _cycle(level: Mapping[str, Any], clocks: Mapping[str, SlaClock]) -> int:
    clock = clocks.get(level.get("target", ""))
    return clock.cycle if clock is not None else 1


# -- the policy of an incident ----------------------------------------------------------------------


_EVERY = Statement(lambda: EscalationPolicy.select(), models=(EscalationPolicy,))
_ENABLED = Statement(lambda: EscalationPolicy.select().where(EscalationPolicy.enabled == True),  # noqa: E712
                     models=(EscalationPolicy,))


def applicable(incident: Incident | Facts, candidates: list[EscalationPolicy] | None = None
               ) -> EscalationPolicy | None:
    """The first enabled policy (by position, then name) whose conditions the incident meets
    (``candidates``: every policy, read once for many incidents)."""
    if candidates is None:
        candidates = [policy for (policy,) in _ENABLED.rows()]
    for policy in sorted((p for p in candidates if p.enabled), key=lambda p: (p.position, p.name)):
        if matches(incident, policies.definition_of(policy).get("conditions") or {}):
            return policy
    return None


def _policy(incident: Incident, state: EscalationState,
            every: list[EscalationPolicy] | None = None) -> EscalationPolicy | None:
    """The incident keeps the policy that escalated it; before that, whichever applies now
    (``every``: all policies, read once for a batch of incidents)."""
    if state.level > 0 and state.policy_id is not None:
        if every is not None:
            return next((policy for policy in every if policy.id == state.policy_id), None)
        return EscalationPolicy.get_or_none(EscalationPolicy.id == state.policy_id)
    return applicable(incident, every)


_STATE = Statement(lambda incident_id: EscalationState.select().where(
    EscalationState.incident == incident_id), models=(EscalationState,))
_STATE_LOCKED = Statement(lambda incident_id: for_update(EscalationState.select().where(
    EscalationState.incident == incident_id)), models=(EscalationState,))


def _state(incident_id: int, lock: bool = False) -> EscalationState:
    statement = _STATE_LOCKED if lock else _STATE
    found = statement.rows(incident_id)
    if not found:
        try:
            with write_transaction():
                return EscalationState.create(incident=incident_id)
        except peewee.IntegrityError:  # created meanwhile by a concurrent change
            found = statement.rows(incident_id)
            if not found:
                raise
    return found[0][0]


@dataclass(frozen=True)
class Upcoming:
    """The level an incident reaches next: its number and title, when (``None``: by hand only,
    or its SLA clock does not run), whether a snooze holds it, and its steps' names."""

    number: int
    title: str
    at: dt.datetime | None
    steps: tuple[str, ...]
    manual: bool = False
    snoozed: bool = False


def pending(ctx: Context, facts: Facts | Incident, state: EscalationState, definition: Mapping[str, Any],
            clocks: Mapping[str, SlaClock]) -> list[tuple[int, Mapping[str, Any], dt.datetime | None]]:
    """The levels after the incident's current one that apply to it, each with its moment
    (``None``: manual, or its clock does not run), not before a snooze ends. What the check
    runs, what it schedules and what pages show as next all come from here."""
    found = []
    for number, level in enumerate(definition["levels"], 1):
        if number <= state.level or not matches(facts, level.get("conditions") or {}):
            continue
        when = moment(ctx, level, clocks)
        if when is not None and state.snoozed_until is not None:
            when = max(when, state.snoozed_until)
        found.append((number, level, when))
    return found


def next_level(ctx: Context, facts: Facts | Incident, state: EscalationState, definition: Mapping[str, Any],
               clocks: Mapping[str, SlaClock]) -> Upcoming | None:
    """The level the check runs next (the earliest moment among :func:`pending`); with no
    timed level left, the next one that runs only by hand."""
    levels = pending(ctx, facts, state, definition, clocks)
    timed = [item for item in levels if item[2] is not None]
    if timed:
        number, level, when = min(timed, key=lambda item: (item[2], item[0]))
    elif levels:
        number, level, when = levels[0]
    else:
        return None
    snoozed = when is not None and state.snoozed_until is not None and when == state.snoozed_until
    return Upcoming(number, level["title"], when, tuple(step["step"] for step in level["steps"]),
                    level["trigger"] == "manual", snoozed)


def upcoming_for(ctx: Context, incidents: list[Incident]) -> dict[int, Upcoming]:
    """The next level of each active incident (those a policy applies to), for a page of rows:
    a fixed number of queries whatever the number of incidents, and the same rules as the
    check (:func:`next_level`)."""
    from helpdesk.models import Contact, Organisation, Service, Team

    active = [incident for incident in incidents if incident.is_active]
    if not active:
        return {}
    every = [policy for (policy,) in _EVERY.rows()]
    if not every:  # no policy at all: nothing escalates, and the page reads nothing more
        return {}
    ids = [incident.id for incident in active]
    states = {s.incident_id: s for s in EscalationState.select().where(EscalationState.incident.in_(ids))}
    by_id = {policy.id: policy for policy in every}
    clocks: dict[int, dict[str, SlaClock]] = {}
    unread = []
    for incident in active:  # a queue page's rows come with both clocks (one per target)
        attached = [incident.__dict__.get(name, False) for name in ("response_clock", "resolution_clock")]
        if False in attached:
            unread.append(incident.id)
        else:
            clocks[incident.id] = {clock.target: clock for clock in attached if clock is not None}
    if unread:
        for clock in SlaClock.select().where(SlaClock.incident.in_(unread)):
            clocks.setdefault(clock.incident_id, {})[clock.target] = clock
    team_ids = {i.owner_team_id for i in active} | {i.assigned_team_id for i in active}
    teams = {t.id: t.name for t in Team.select(Team.id, Team.name).where(Team.id.in_(list(team_ids - {None})))
             } if team_ids - {None} else {}
    service_ids = [i.service_id for i in active if i.service_id is not None]
    services = {s.id: s.name for s in Service.select(Service.id, Service.name)
                .where(Service.id.in_(service_ids))}
    contact_ids = [i.requester_id for i in active if i.requester_id is not None]
    organisations = {c.id: c.organisation.name for c in Contact.select(Contact.id, Organisation.name)
                     .join(Organisation).where(Contact.id.in_(contact_ids))}
    found = {}
    for incident in active:
        pair = (incident.owner_team_id, incident.assigned_team_id)
        facts = Facts(incident.priority, incident.type, frozenset(teams[t] for t in pair if t in teams),
                      services.get(incident.service_id), organisations.get(incident.requester_id))
        state = states.get(incident.id) or EscalationState(incident=incident.id)
        policy = (by_id.get(state.policy_id) if state.level > 0 and state.policy_id is not None
                  else applicable(facts, every))
        if policy is None:
            continue
        upcoming = next_level(ctx, facts, state, policies.definition_of(policy), clocks.get(incident.id, {}))
        if upcoming is not None:
            found[incident.id] = upcoming
    return found


def _next_at(ctx: Context, incident: Incident, state: EscalationState, at: dt.datetime,
             every: list[EscalationPolicy] | None = None,
             clocks: Mapping[str, SlaClock] | None = None, retrying: bool = True) -> dt.datetime | None:
    """When the check must look again: a retry's time, or the next level's moment (not before the
    snooze ends); a moment already passed means now. ``every`` and ``clocks``: read already;
    ``retrying`` false: the incident has no runs to retry (it is new)."""
    candidates = [run.next_attempt_at for (run,) in _RETRYING.rows(incident.id)] if retrying else []
    if incident.is_active:
        policy = _policy(incident, state, every)
        if policy is not None:
            definition = policies.definition_of(policy)
            upcoming = next_level(ctx, incident, state, definition,
                                  clocks if clocks is not None else clocks_of(incident.id))
            if upcoming is not None and upcoming.at is not None:
                candidates.append(upcoming.at)
    return min(candidates) if candidates else None


_RETRYING = Statement(lambda incident_id: EscalationRun.select().where(
    (EscalationRun.incident == incident_id) & (EscalationRun.state == "retrying")), models=(EscalationRun,))


def schedule(ctx: Context, incident: Incident, new_clocks: Mapping[str, SlaClock] | None = None) -> None:
    """Recompute when the check next looks at ``incident`` (called in the change's transaction).

    ``new_clocks``: ``incident`` was created in this transaction and is given as stored, with
    the clocks it started; it has no escalation state or runs yet, so none are read."""
    if new_clocks is not None:
        next_at = _next_at(ctx, incident, EscalationState(incident=incident.id), now(),
                           clocks=new_clocks, retrying=False)
        EscalationState.create(incident=incident.id, next_at=next_at)
        return
    state = _state(incident.id)
    fresh = incident_as_stored(incident.id)
    next_at = _next_at(ctx, fresh, state, now())
    if next_at != state.next_at:
        EscalationState.update(next_at=next_at).where(EscalationState.id == state.id).execute()


# -- the check ----------------------------------------------------------------------------------------


def check(ctx: Context, at: dt.datetime | None = None, batch: int = 500) -> list[Fired]:
    """Run every level (and retry) due at ``at``; only incidents whose ``next_at`` came are read."""
    at = at or now()
    fired: list[Fired] = []
    seen: set[int] = set()
    while True:
        due = [row.incident_id for row in EscalationState.select(EscalationState.incident)
               .where(EscalationState.next_at <= at).order_by(EscalationState.next_at).limit(batch)]
        fresh = [incident_id for incident_id in due if incident_id not in seen]
        if not fresh:
            return fired
        every = list(EscalationPolicy.select())  # once per batch, not once per incident
        for incident_id in fresh:
            seen.add(incident_id)
            fired += process(ctx, incident_id, at, every=every)


def preview(ctx: Context, at: dt.datetime) -> list[tuple[int, str, str]]:
    """What a check at ``at`` would run, read only: (incident id, what, policy title) for each
    level (``"level 2 (Team lead)"``, the latest reached, as :func:`process` runs it) and each
    retry of a failed level then due. Nothing is written (``sla check --dry-run``)."""
    found: list[tuple[int, str, str]] = []
    every = list(EscalationPolicy.select())
    titles = {policy.name: policy.title for policy in every}
    retrying = (EscalationRun.select().where((EscalationRun.state == "retrying")
                                             & (EscalationRun.next_attempt_at <= at))
                .order_by(EscalationRun.next_attempt_at))
    for run in retrying:
        found.append((run.incident_id, f"retry of level {run.level}",
                      titles.get(run.policy_name, run.policy_name)))
    due = EscalationState.select().where(EscalationState.next_at <= at).order_by(EscalationState.next_at)
    for state in due:
        incident = Incident.get_or_none(Incident.id == state.incident_id)
        if incident is None or not incident.is_active or (
                state.snoozed_until is not None and at < state.snoozed_until):
            continue
        policy = _policy(incident, state, every)
        if policy is None:
            continue
        reached = [(number, level) for number, level, when
                   in pending(ctx, incident, state, policies.definition_of(policy), clocks_of(incident.id))
                   if when is not None and when <= at]
        if reached:
            number, level = reached[-1]
            found.append((incident.id, f"level {number} ({level['title']})", policy.title))
    return found


def process(ctx: Context, incident_id: int, at: dt.datetime, simulated: bool = False,
            every: list[EscalationPolicy] | None = None) -> list[Fired]:
    """One incident's due work at ``at``, in one transaction: retries, then the latest level
    reached (the stale rule), then the next time to look. ``every``: all policies, read once
    by the check for a batch of incidents."""
    with write_transaction():
        # Lock order as in the domain: the incident row first (read whole, in the same
        # statement), then its escalation state.
        locked = list(for_update(Incident.select().where(Incident.id == incident_id)))
        if not locked:
            return []
        incident = locked[0]
        state = _state(incident_id, lock=True)
        if state.next_at is None or state.next_at > at:
            return []  # another worker got here first
        fired = _retry_due(ctx, incident, at, every)
        snoozed = state.snoozed_until is not None and at < state.snoozed_until
        policy = _policy(incident, state, every)
        clocks = None
        if incident.is_active and policy is not None and not snoozed:
            definition = policies.definition_of(policy)
            clocks = clocks_of(incident.id)
            reached = [number for number, _level, when in pending(ctx, incident, state, definition, clocks)
                       if when is not None and when <= at]
            if reached:
                skipped = reached[:-1]
                run = _run_level(ctx, incident, state, policy, reached[-1], at, clocks=clocks,
                                 skipped=skipped, simulated=simulated)
                if run is not None:
                    fired.append(run)
                    every = [policy]  # the incident stays with it (see _run_level)
        if fired:  # steps may have changed the incident and its clocks (reassigned, retargeted)
            incident, clocks = Incident.get_by_id(incident_id), None
        next_at = _next_at(ctx, incident, state, at, every, clocks)
        EscalationState.update(next_at=next_at if next_at is None or next_at > at else None) \
            .where(EscalationState.id == state.id).execute()
    return fired


# -- running a level -----------------------------------------------------------------------------------


def _run_level(ctx: Context, incident: Incident, state: EscalationState, policy: EscalationPolicy,
               number: int, at: dt.datetime, *, clocks: Mapping[str, SlaClock], manual: bool = False,
               actor: Agent | None = None, reason: str = "", skipped: list[int] | None = None,
               simulated: bool = False) -> Fired | None:
    level = policies.definition_of(policy)["levels"][number - 1]
    cycle = _cycle(level, clocks)
    try:
        with write_transaction():
            run = EscalationRun.create(incident=incident.id, policy=policy.id, policy_name=policy.name,
                                       version=policy.version, level=number, cycle=cycle, at=at,
                                       manual=manual, actor=actor, reason=reason)
    except peewee.IntegrityError:
        return None  # claimed already (another worker, or an earlier pass)
    previous = state.level
    EscalationState.update(level=number, version=policy.version, policy=policy.id) \
        .where(EscalationState.id == state.id).execute()
    state.level, state.version, state.policy_id = number, policy.version, policy.id  # as written
    Incident.update(escalation_level=number).where(Incident.id == incident.id).execute()
    incident.escalation_level = number
    how = f"by {actor} ({reason})" if manual else level["title"]
    note = f"; skipped level {', '.join(map(str, skipped))} (its moment passed meanwhile)" if skipped else ""
    TimelineEntry.create(incident=incident.id, actor=actor, kind="escalation", at=at, field="level",
                         old_value=str(previous), new_value=str(number),
                         body=f"Escalated to level {number} of {policy.title} (v{policy.version}): "
                              f"{how}{note}")
    fired = _run_steps(ctx, run, level, policy.title, simulated, incident=incident)
    events.emit(ctx, "incident_escalated", incident.id, actor, level=number, policy=policy.name,
                version=policy.version, manual=manual)
    return fired


def _key(run: EscalationRun) -> str:
    return f"esc:{run.incident_id}:{run.policy_name}:v{run.version}:l{run.level}:c{run.cycle}"


def _run_steps(ctx: Context, run: EscalationRun, level: Mapping[str, Any], policy_title: str,
               simulated: bool = False, incident: Incident | None = None) -> Fired:
    """The level's steps not yet done, each in a savepoint; the run's state is updated with them.
    ``incident``: as read in this transaction, for the first step (later steps read it again:
    an earlier step may have changed it)."""
    from helpdesk.escalation.api import notify_agents, watchers

    done = [int(i) for i in run.steps_done.split(",") if i]
    info = EscalationLevel(policy=run.policy_name, version=run.version, number=run.level,
                           title=level["title"], key=_key(run), manual=run.manual, reason=run.reason,
                           simulated=simulated)
    summaries, failures, temporary = [], [], True
    # Watchers at the start are told of the level; one a step adds was told by that step.
    watching = watchers(run.incident_id) if run.attempts == 1 else []
    for index, step in enumerate(level["steps"]):
        if index in done:
            continue
        kind = ctx.registry.escalation_steps.get(step["step"])
        try:
            if kind is None:
                raise StepError(f"the step {step['step']!r} is not installed")
            with write_transaction():
                current = incident if incident is not None else Incident.get_by_id(run.incident_id)
                incident = None
                result = kind.run(ctx, current, info, dict(step["params"]))
                if result is None:  # a step that returns nothing did its work
                    result = StepResult()
                elif not isinstance(result, StepResult):  # False, a text …: not a sign of success
                    raise TypeError(f"the step returned {type(result).__name__}, not a StepResult "
                                    "(or None); nothing it wrote is kept")
                if not result.ok:
                    raise StepError(result.summary or "the step reported a failure",
                                    temporary=result.temporary)
            done.append(index)
            if result.summary:
                summaries.append(result.summary)
        except (StepError, DomainError, DeliveryError) as error:
            failures.append(f"{step['step']}: {error}")
            retry = (isinstance(error, StepError) and error.temporary) or (
                isinstance(error, DeliveryError) and not error.permanent)
            temporary = temporary and retry
        except Exception as error:  # a broken step: retried, and recorded for the admin Plugins page
            from helpdesk.plugins import record_failure

            logger.exception("escalation step %r failed on INC-%s", step["step"], run.incident_id)
            owner = ctx.registry.owners.get(("helpdesk_escalation_steps", step["step"]), step["step"])
            record_failure(owner, "run", Incident.get_by_id(run.incident_id), error)
            failures.append(f"{step['step']}: {type(error).__name__}: {error}")
    at = run.at if run.attempts == 1 else now()
    if failures:
        retry = temporary and run.attempts < MAX_ATTEMPTS
        state = "retrying" if retry else "failed"
        next_attempt = at + dt.timedelta(minutes=2 ** (run.attempts - 1)) if retry else None
        then = f"; retrying at {next_attempt:%Y-%m-%d %H:%M} UTC" if retry else "; not retried"
        TimelineEntry.create(incident=run.incident_id, actor=None, kind="escalation", at=at, field="failure",
                             body=f"Level {run.level} step failed (attempt {run.attempts}): "
                                  + "; ".join(failures) + then)
    else:
        state, next_attempt = "done", None
    EscalationRun.update(state=state, steps_done=",".join(map(str, sorted(done))),
                         next_attempt_at=next_attempt,
                         error="; ".join(failures)[:4000]).where(EscalationRun.id == run.id).execute()
    if summaries:
        TimelineEntry.create(incident=run.incident_id, actor=None, kind="escalation", at=at, field="steps",
                             body=f"Level {run.level}: " + "; ".join(summaries))
    if run.attempts == 1 and watching:
        incident = Incident.get_by_id(run.incident_id)
        notify_agents(ctx, incident, watching,
                      f"{incident.reference} escalated to level {run.level}: {incident.title}",
                      f"{incident.reference} {incident.title}\nEscalated to level {run.level} "
                      f"({level['title']}) of {policy_title}.", key=f"{_key(run)}:watchers", kind="watching")
    return Fired(run.incident_id, at, run.policy_name, run.version, run.level, level["title"], state,
                 "; ".join(summaries + failures), run.manual)


def _retry_due(ctx: Context, incident: Incident, at: dt.datetime,
               every: list[EscalationPolicy] | None = None) -> list[Fired]:
    fired = []
    for run in EscalationRun.select().where((EscalationRun.incident == incident.id)
                                            & (EscalationRun.state == "retrying")
                                            & (EscalationRun.next_attempt_at <= at)):
        policy = (next((p for p in every if p.id == run.policy_id), None) if every is not None
                  else EscalationPolicy.get_or_none(EscalationPolicy.id == run.policy_id))
        if policy is None:
            EscalationRun.update(state="failed", error="the policy was deleted", next_attempt_at=None) \
                .where(EscalationRun.id == run.id).execute()
            continue
        EscalationRun.update(attempts=EscalationRun.attempts + 1).where(EscalationRun.id == run.id).execute()
        run = EscalationRun.get_by_id(run.id)
        level = policies.definition_of(policy, run.version)["levels"][run.level - 1]
        fired.append(_run_steps(ctx, run, level, policy.title))
    return fired


# -- by hand ---------------------------------------------------------------------------------------------


def escalate(ctx: Context, incident_id: int, actor: Agent, reason: str) -> Fired:
    """Run the next level of the incident's policy now (any agent; a reason is required)."""
    reason = " ".join((reason or "").split())
    if not reason:
        raise DomainError("Give a reason for escalating.")
    at = now()
    with write_transaction():
        for_update(Incident.select(Incident.id).where(Incident.id == incident_id)).execute()
        incident = Incident.get_or_none(Incident.id == incident_id)
        if incident is None:
            from helpdesk.errors import NotFound

            raise NotFound(f"There is no incident INC-{incident_id}.")
        if not incident.is_active:
            raise DomainError(f"{incident.reference} is no longer open; there is nothing to escalate.")
        state = _state(incident_id, lock=True)
        policy = _policy(incident, state)
        if policy is None:
            raise DomainError(f"No escalation policy applies to {incident.reference}.")
        levels = policies.definition_of(policy)["levels"]
        following = [n for n, level in enumerate(levels, 1)
                     if n > state.level and matches(incident, level.get("conditions") or {})]
        if not following:
            raise DomainError(f"{incident.reference} is already at the last level of {policy.title}.")
        fired = _run_level(ctx, incident, state, policy, following[0], at, clocks=clocks_of(incident_id),
                           manual=True, actor=actor, reason=reason)
        if fired is None:
            raise DomainError(f"Level {following[0]} of {incident.reference} was just run by someone else.")
        schedule(ctx, incident)
    return fired


def can_acknowledge(incident: Incident, agent: Agent) -> bool:
    """The owner, a lead of the owning team, or an admin."""
    if agent.is_admin or incident.owner_agent_id == agent.id:
        return True
    return agent.role == "lead" and Membership.select().where(
        (Membership.agent == agent.id) & (Membership.team == incident.owner_team_id)).exists()


def acknowledge(ctx: Context, incident_id: int, actor: Agent, reason: str,
                snooze: dt.timedelta | None = None) -> EscalationState:
    """Acknowledge the current level and optionally hold further automatic levels for ``snooze``."""
    reason = " ".join((reason or "").split())
    if not reason:
        raise DomainError("Give a reason (what you are doing about it).")
    if snooze is not None and not dt.timedelta(0) <= snooze <= MAX_SNOOZE:
        raise DomainError("A snooze lasts from a minute to 7 days.")
    at = now()
    with write_transaction():
        for_update(Incident.select(Incident.id).where(Incident.id == incident_id)).execute()
        incident = Incident.get_by_id(incident_id)
        if not can_acknowledge(incident, actor):
            raise PermissionDenied("Only the owner, a lead of the owning team or an admin can acknowledge.")
        state = _state(incident_id, lock=True)
        until = at + snooze if snooze else None
        EscalationState.update(acknowledged_level=state.level, snoozed_until=until) \
            .where(EscalationState.id == state.id).execute()
        held = f"; automatic escalation snoozed until {until:%Y-%m-%d %H:%M} UTC" if until else ""
        TimelineEntry.create(incident=incident_id, actor=actor, kind="escalation", at=at,
                             field="acknowledged",
                             new_value=str(state.level),
                             body=f"Acknowledged escalation level {state.level}: {reason}{held}")
        schedule(ctx, incident)
    return EscalationState.get_by_id(state.id)
