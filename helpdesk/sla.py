"""SLA clocks: started, paused, resumed, met and re-targeted with the incident, and the
background check that fires warnings and breaches exactly once.

The domain module calls the ``on_*`` functions inside its transactions, so a
clock always changes together with the incident. :func:`check` is the
periodic pass: it reads only clocks whose ``next_event_at`` is due (an
indexed column), claims each event with a unique row before any side effect,
and queues the plugin event hook to fire after commit.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import peewee

from helpdesk import business_time, events
from helpdesk.clock import now
from helpdesk.config import NO_SLA
from helpdesk.context import Context
from helpdesk.db import Statement, for_update, write_transaction
from helpdesk.escalation.engine import check as escalation_check
from helpdesk.escalation.engine import schedule as escalation_schedule
from helpdesk.models import Incident, SlaCalendar, SlaClock, SlaEvent, TimelineEntry

logger = logging.getLogger(__name__)
TARGETS = ("response", "resolution")
BREACH = 1000  # the per-mille "point" of a breach
_missing_calendars: set[str] = set()


@dataclass(frozen=True)
class Status:
    """Where one clock stands, for badges and the SLA panel."""

    target: str
    state: str  # running, warning, breached, paused, met, late (met after a breach), stopped
    due_at: dt.datetime | None
    elapsed: dt.timedelta
    paused: dt.timedelta
    remaining: dt.timedelta
    used: float  # fraction of the target used
    calendar: str | None = None  # what ``elapsed`` and ``remaining`` are counted in (None: wall time)

    @property
    def label(self) -> str:
        return {"running": "On track", "warning": "At risk", "breached": "Breached",
                "paused": "Paused", "met": "Met", "late": "Met late", "stopped": "Stopped"}[self.state]


def _calendar(state: Any, name: str | None) -> Any:
    if name is None:
        return None
    calendar = state.registry.business_calendars.get(name)
    if calendar is None and name not in _missing_calendars:
        _missing_calendars.add(name)  # said once per process, not on every computation
        logger.warning("SLA: business calendar %r is not registered; counting around the clock", name)
    return calendar


def _points(clock: SlaClock) -> tuple[int, ...]:
    return _warning_points(clock.warnings)


@functools.lru_cache(maxsize=256)
def _warning_points(warnings: str) -> tuple[int, ...]:
    # A policy has a few warning lists; a queue page asks for one per row.
    return tuple(sorted(int(round(float(p) * 1000)) for p in warnings.split(",") if p.strip()))


def chosen_policy(ctx: Context, incident: Incident) -> tuple[str | None, str | None]:
    """The plugin that chose ``incident``'s SLA policy and the policy's name (``None``s: no
    plugin chose one), whether or not a plugin registered a policy of that name."""
    from helpdesk.plugins import first_answer_owned

    return first_answer_owned(ctx.pm, "helpdesk_sla_policy", str, incident=incident, ctx=ctx)


def unavailable_policy(ctx: Context, incident: Incident) -> str | None:
    """The name of the policy chosen for ``incident`` when no plugin registers it (its plugin
    disabled, uninstalled or misspelt): why the incident has no SLA, for the pages to say."""
    name = chosen_policy(ctx, incident)[1]
    return name if name is not None and name not in ctx.registry.sla_policies else None


def missing_policy_problem(name: str) -> LookupError:
    """What the Plugins page says when a chosen policy is not there (one line for all the
    incidents it is chosen for, with the latest of them)."""
    return LookupError(f"SLA policy {name!r} is not registered (no enabled plugin provides it): "
                       "the incidents it is chosen for have no SLA")


def runs_without_sla(ctx: Context) -> bool:
    """Whether the desk chose to run without a default SLA (``default_sla_policy = "none"``):
    incidents no plugin picks a policy for get no clocks, and that is no problem to report."""
    return ctx.settings.default_sla_policy == NO_SLA


def policy_pickers(ctx: Context) -> list[str]:
    """The plugins besides the built-in default that pick SLA policies for incidents."""
    from helpdesk.plugins import BUILTIN

    return sorted({impl.plugin_name for impl in ctx.pm.hook.helpdesk_sla_policy.get_hookimpls()}
                  - {BUILTIN})


def without_sla_by_choice(ctx: Context, incident: Incident) -> bool:
    """Whether ``incident`` has no SLA because the desk runs without one by default and no
    plugin picked a policy for it (the incident page says so, rather than "not available")."""
    return runs_without_sla(ctx) and chosen_policy(ctx, incident)[1] is None


def missing_default_policy(ctx: Context) -> str | None:
    """What to say when the policy the built-in default chooses (``default_sla_policy``) is not
    registered (its plugin disabled or not installed, the setting misspelt): every incident no
    plugin picks another policy for has no SLA. Said once, at start-up and on the Plugins and
    SLA pages, rather than per incident. Nothing when the desk runs without an SLA on purpose."""
    if runs_without_sla(ctx):
        return None
    name = ctx.settings.default_sla_policy
    if name in ctx.registry.sla_policies:
        return None
    return (f"the default SLA policy {name!r} is not registered (no enabled plugin provides it): "
            "incidents no plugin picks another policy for have no SLA. Enable its plugin, name "
            "another policy in default_sla_policy, or set default_sla_policy = \"none\" to run "
            "without an SLA on purpose")


def policy_targets(ctx: Context, incident: Incident) -> tuple[Any, Any] | None:
    """The policy that applies to ``incident`` and the targets it sets, or ``None`` (no SLA).

    A plugin failing here (its choice of policy, or its policy's targets) is recorded for the
    Plugins page and the incident goes on without those targets: a bug in an SLA plugin must
    not stop incidents from being logged or changed. So is a chosen policy nobody registered."""
    from helpdesk.plugins import BUILTIN, note_if_slow, record_failure
    from helpdesk.records import SlaTargets

    chooser, name = chosen_policy(ctx, incident)
    if name is None:
        return None
    policy = ctx.registry.sla_policies.get(name)
    if policy is None:
        logger.warning("SLA: policy %r chosen for %s is not registered", name, incident.reference)
        if chooser != BUILTIN:  # a plugin's choice; the default's is said once (missing_default_policy)
            record_failure(chooser or name, "helpdesk_sla_policy", incident, missing_policy_problem(name))
        return None
    started = time.monotonic()
    try:
        targets = policy.targets(ctx, incident)
        note_if_slow(ctx.registry.owners.get(("helpdesk_sla_policies", name), name),
                     f"SlaPolicy({name!r}).targets", incident, time.monotonic() - started,
                     "the agent logging or changing an incident")
        if targets is not None and not isinstance(targets, SlaTargets):
            raise TypeError(f"policy {name!r} gave {targets!r:.120}, not SlaTargets or None")
        if targets is not None:
            _check_targets(name, targets)
    except Exception as error:  # noqa: BLE001 - the policy's plugin failed: recorded, no targets
        owner = ctx.registry.owners.get(("helpdesk_sla_policies", name), name)
        logger.error("SLA: policy %r failed for %s: %s", name, incident.reference, error)
        record_failure(owner, f"SlaPolicy({name!r}).targets", incident, error)
        return None
    if targets is not None and targets.calendar and targets.calendar not in ctx.registry.business_calendars:
        # A misspelt calendar counts around the clock: said where admins look, not only in a log.
        owner = ctx.registry.owners.get(("helpdesk_sla_policies", name), name)
        record_failure(owner, f"SlaPolicy({name!r}).targets", incident, LookupError(
            f"business calendar {targets.calendar!r} is not registered: its targets are counted "
            "around the clock until it is"))
    return (policy, targets) if targets is not None else None


#: The longest target a policy may set: anything longer is a unit mistake (days for minutes),
#: and past some length no due time can even be written down.
LONGEST_TARGET = dt.timedelta(days=3660)


def _check_targets(name: str, targets: Any) -> None:
    """Refuse targets no clock can run on (a negative or absurdly long duration, minutes given
    as a number, a calendar that is not a name), so a policy's bug is said on the Plugins page
    and the incident is logged without those targets, instead of failing to be logged."""
    for target, duration in (("response", targets.response), ("resolution", targets.resolution)):
        if duration is None:
            continue
        if not isinstance(duration, dt.timedelta):
            raise TypeError(f"policy {name!r} gave a {target} target of {duration!r:.60}, "
                            "not a timedelta or None")
        if duration < dt.timedelta(0):
            raise ValueError(f"policy {name!r} gave a negative {target} target ({duration})")
        if duration > LONGEST_TARGET:
            raise ValueError(f"policy {name!r} gave a {target} target longer than "
                             f"{LONGEST_TARGET.days} days ({duration.days} days)")
    if targets.calendar is not None and not isinstance(targets.calendar, str):
        raise TypeError(f"policy {name!r} gave the calendar {targets.calendar!r:.60}, "
                        "not a calendar's name or None")


# -- clock arithmetic -------------------------------------------------------------


def paused_for(state: Any, clock: SlaClock, at: dt.datetime) -> dt.timedelta:
    calendar = _calendar(state, clock.calendar)
    paused = dt.timedelta(seconds=clock.paused_seconds)
    if clock.paused_at is not None and at > clock.paused_at:
        paused += business_time.between(calendar, clock.paused_at, at)
    return paused


def elapsed(state: Any, clock: SlaClock, at: dt.datetime, paused: dt.timedelta | None = None
            ) -> dt.timedelta:
    """Working time on the clock at ``at``: since the start, less the time paused (``paused``:
    :func:`paused_for` at the clock's end, when the caller has it already)."""
    calendar = _calendar(state, clock.calendar)
    end = min(at, clock.met_at or at, clock.stopped_at or at)
    total = business_time.between(calendar, clock.started_at, end)
    return max(dt.timedelta(0), total - (paused_for(state, clock, end) if paused is None else paused))


def met_elapsed(state: Any, clock: SlaClock) -> dt.timedelta:
    """Working time on a met clock when it was met, as measured then (a later change of the
    calendar does not re-judge a met target); a clock met before migration 0032 is measured
    in its calendar as it is now."""
    if clock.worked_seconds is not None:
        return dt.timedelta(seconds=clock.worked_seconds)
    return elapsed(state, clock, clock.met_at)


def _instant_of(state: Any, clock: SlaClock, fraction_per_mille: int,
                pauses: list[tuple[dt.datetime, dt.datetime]] | None = None) -> dt.datetime:
    """When the clock reaches this share of its target. Only the pauses taken before that
    moment move it: a pause that began once the target was used up (pending after a breach)
    does not push the due time later."""
    calendar = _calendar(state, clock.calendar)
    work = dt.timedelta(seconds=clock.target_seconds * fraction_per_mille / 1000)
    if pauses is None:
        pauses = _pause_spans(state, clock) if clock.paused_seconds else []
    if not pauses:
        return business_time.add(calendar, clock.started_at,
                                 work + dt.timedelta(seconds=clock.paused_seconds))
    position = clock.started_at
    for begin, end in pauses:
        if end <= position:
            continue
        before = business_time.between(calendar, position, max(begin, position))
        if before >= work:
            break
        work, position = work - before, end
    return business_time.add(calendar, position, work)


def _pause_spans(state: Any, clock: SlaClock) -> list[tuple[dt.datetime, dt.datetime]]:
    """The stored clock's finished pauses, replayed from the incident's timeline, in order; []
    when they cannot be (a clock not stored yet, a replay that does not add up to the stored
    pause time): the total then stands for them, as before."""
    if clock.id is None or clock.incident_id is None:
        return []
    incident = (Incident.select(Incident.id, Incident.created_at)
                .where(Incident.id == clock.incident_id).first())
    if incident is None:
        return []
    spans = derive(state, incident, spans=True).get(clock.target)
    found = getattr(spans, "spans", None) or []
    calendar = _calendar(state, clock.calendar)
    total = sum(int(business_time.between(calendar, begin, end).total_seconds()) for begin, end in found)
    return found if abs(total - clock.paused_seconds) <= 60 else []


_FIRED = Statement(lambda incident_id, target, cycle: SlaEvent.select(SlaEvent.point).where(
    (SlaEvent.incident == incident_id) & (SlaEvent.target == target) & (SlaEvent.cycle == cycle)))


def repeats(event: Any, earlier: Iterable[Any]) -> bool:
    """Whether ``event`` (an :class:`SlaEvent` claimed by the check) repeats one fired in an
    earlier cycle for the very same due time (P3 -> P4 -> P3 comes back to it): its row is
    claimed, so it never fires again, but it is not news and nothing is sent. The one rule
    the check, the incident page and the simulator judge sent and unsent events by."""
    if event.cycle <= 1 or event.due_at is None:
        return False
    return any(other.target == event.target and other.kind == event.kind and other.point == event.point
               and other.due_at == event.due_at and other.cycle < event.cycle for other in earlier)


def announced(events: Iterable[Any]) -> list[tuple[Any, bool]]:
    """Each of one incident's claimed SLA events with whether it was sent (see :func:`repeats`)."""
    found = list(events)
    return [(event, not repeats(event, found)) for event in found]


def _said_before(event: SlaEvent) -> bool:
    """:func:`repeats` for an event just claimed, against the earlier cycles' rows of its point."""
    if event.cycle <= 1 or event.due_at is None:
        return False
    earlier = SlaEvent.select().where(
        (SlaEvent.incident == event.incident_id) & (SlaEvent.target == event.target)
        & (SlaEvent.kind == event.kind) & (SlaEvent.point == event.point) & (SlaEvent.due_at == event.due_at)
        & (SlaEvent.cycle < event.cycle))
    return repeats(event, earlier)


def _fired(clock: SlaClock) -> set[int]:
    return {point for (point,) in _FIRED.execute(clock.incident_id, clock.target, clock.cycle)}


def _schedule(state: Any, clock: SlaClock, fired: set[int] | None = None) -> None:
    """Recompute ``due_at`` and ``next_event_at`` from the recorded facts (``fired``: the
    points already fired, when the caller knows them: none for a new clock)."""
    clock.next_event_at = None
    if clock.met_at or clock.stopped_at:
        return  # finished: the due time stays for the record
    if clock.paused_at:
        # Unknown until the clock runs again, unless the target ran out before the pause (no
        # check came in between): that due time stands, and the check announces the breach.
        clock.due_at = None
        if elapsed(state, clock, clock.paused_at).total_seconds() >= clock.target_seconds:
            due = _instant_of(state, clock, BREACH)  # (only then: it may replay the pauses)
            clock.due_at = due if due <= clock.paused_at else None
        if clock.due_at is not None and clock.breached_at is None:
            clock.next_event_at = clock.due_at
        return
    pauses = _pause_spans(state, clock) if clock.paused_seconds else []  # read once for both
    clock.due_at = _instant_of(state, clock, BREACH, pauses)
    if clock.breached_at is not None:
        return
    fired = _fired(clock) if fired is None else fired
    upcoming = [p for p in _points(clock) if p > max(fired, default=0)] + [BREACH]
    clock.next_event_at = _instant_of(state, clock, upcoming[0], pauses)


def status(state: Any, clock: SlaClock, at: dt.datetime) -> Status:
    finished = min(at, clock.met_at or at, clock.stopped_at or at)  # a pause ends with the clock
    paused = paused_for(state, clock, finished)  # once: a paused clock's pause is business time too
    used_time = met_elapsed(state, clock) if clock.met_at else elapsed(state, clock, at, paused)
    target = dt.timedelta(seconds=clock.target_seconds)
    used = used_time / target if target else 1.0
    if clock.met_at:
        # Late whether or not a check ran between the due time and the meeting (``breached_at``
        # is set by either); ``used`` also judges clocks met before that was so.
        kind = "late" if clock.breached_at or used_time > target else "met"
    elif clock.stopped_at:
        kind = "stopped"
    elif clock.breached_at or (clock.due_at and at >= clock.due_at):
        kind = "breached"
    elif clock.paused_at:
        kind = "paused"
    elif _points(clock) and used * 1000 >= _points(clock)[0]:
        kind = "warning"
    else:
        kind = "running"
    return Status(clock.target, kind, clock.due_at, used_time, paused, target - used_time, used,
                  clock.calendar)


# -- changes, called by the domain inside its transaction ---------------------------


def on_created(ctx: Context, incident: Incident) -> dict[str, SlaClock]:
    """Start the clocks of a new incident; returns them by target (the create's later steps
    take them from here instead of reading them back)."""
    applicable = policy_targets(ctx, incident)
    if applicable is None:
        return {}
    state, (policy, targets) = ctx, applicable
    started = {}
    for target, duration in (("response", targets.response), ("resolution", targets.resolution)):
        if duration is None:
            continue
        clock = SlaClock(incident=incident.id, target=target, policy=policy.name,
                         calendar=targets.calendar, target_seconds=int(duration.total_seconds()),
                         warnings=",".join(str(p) for p in policy.warnings),
                         started_at=incident.created_at)
        _schedule(state, clock, fired=set())  # a new clock has fired nothing
        clock.save(force_insert=True)
        started[target] = clock
    return started


def _clocks(incident_id: int, targets: Iterable[str] = TARGETS) -> list[SlaClock]:
    return list(SlaClock.select().where((SlaClock.incident == incident_id)
                                        & (SlaClock.target.in_(list(targets)))))


def _attribute(clock: SlaClock, owner_team: int | None) -> None:
    """Keep the team a target's outcome belongs to: the incident's owning team when it was
    decided (met, breached, or stopped), so a later transfer leaves it where it was decided.
    The first decision holds (a breach met late is the breaching team's); a target running
    again undecided (reopened, re-targeted out of its breach) belongs to no team yet."""
    if clock.met_at is None and clock.breached_at is None and clock.stopped_at is None:
        clock.outcome_team = None
    elif clock.outcome_team is None:
        clock.outcome_team = owner_team


def _save(state: Any, clock: SlaClock, owner_team: int | None) -> None:
    """Schedule and store a clock that moved; ``owner_team``: the incident's owning team now."""
    _attribute(clock, owner_team)
    _schedule(state, clock)
    clock.save()


def on_status(ctx: Context, incident: Incident, old: str, new: str) -> None:
    """Pause, resume, meet or stop the clocks as the status moves."""
    state, at = ctx, now()
    for clock in _clocks(incident.id):
        _move(state, clock, old, new, at)
        _save(state, clock, incident.owner_team_id)


def _breach_sent(clock: SlaClock) -> bool:
    """Whether this target's breach was announced: in this cycle, or in an earlier one whose
    breach a re-target kept (still overdue on the new length, see :func:`on_retarget`)."""
    return SlaEvent.select().where(
        (SlaEvent.incident == clock.incident_id) & (SlaEvent.target == clock.target)
        & (SlaEvent.kind == "breach") & (SlaEvent.cycle <= clock.cycle)).exists()


def _meet(state: Any, clock: SlaClock, at: dt.datetime) -> None:
    """The target is met at ``at``; met after its due time, it is on the breached record too,
    whether or not a check ran in between (nothing is sent: the target is met)."""
    clock.met_at = at
    if clock.started_at is not None:  # kept as measured now: a later calendar does not re-judge it
        clock.worked_seconds = math.ceil(elapsed(state, clock, at).total_seconds())
    if clock.breached_at is not None or clock.started_at is None:
        return
    if clock.due_at is not None and clock.paused_at is None:
        if at > clock.due_at:
            clock.breached_at = clock.due_at
    elif clock.paused_at is not None and elapsed(state, clock, at).total_seconds() > clock.target_seconds:
        clock.breached_at = _instant_of(state, clock, BREACH)


def _move(state: Any, clock: SlaClock, old: str, new: str, at: dt.datetime) -> None:
    """One status change applied to one clock: the rule both live changes and audits use."""
    pausing = set(state.settings.sla_pause_statuses)
    calendar = _calendar(state, clock.calendar)
    was_paused = clock.paused_at is not None
    if new in {"closed", "cancelled"}:
        if not clock.met_at and not clock.stopped_at:
            clock.stopped_at = at
    elif new == "resolved":
        if not clock.met_at:
            _meet(state, clock, at)  # restoring service answers the customer too
        if clock.target == "resolution" and not was_paused:
            clock.paused_at = at  # while resolved the clock stands; reopening resumes it
    elif old == "resolved" and clock.target == "resolution":
        clock.met_at = clock.worked_seconds = None  # reopened: the resolution clock resumes where it stood
        if clock.breached_at is not None and clock.id is not None and not _breach_sent(clock):
            clock.breached_at = None  # marked when met late, never announced: the check will
        if was_paused:
            clock.paused_seconds += int(business_time.between(calendar, clock.paused_at, at).total_seconds())
            clock.paused_at = None
    elif new in pausing and not was_paused and not clock.met_at:
        clock.paused_at = at
    elif new not in pausing and was_paused and old in pausing:
        # A target met during the pause (a reply while pending) stopped counting when it was met.
        until = min(at, clock.met_at or at)
        clock.paused_seconds += int(business_time.between(calendar, clock.paused_at, until).total_seconds())
        clock.paused_at = None
    if (clock.target == "response" and not clock.met_at and new == "in_progress"
            and state.settings.sla_response_met_by == "action"):
        _meet(state, clock, at)


def on_response(ctx: Context, incident: Incident, public_reply: bool) -> bool:
    """The first public reply (or first agent action, as configured) meets the response target;
    returns whether this one did (a clock changed)."""
    state = ctx
    if not public_reply and state.settings.sla_response_met_by != "action":
        return False
    met = False
    for clock in _clocks(incident.id, ["response"]):
        if clock.met_at is None and clock.stopped_at is None:
            _meet(state, clock, now())
            _save(state, clock, incident.owner_team_id)
            met = True
    return met


def on_retarget(ctx: Context, incident: Incident) -> None:
    """Priority or policy changed: new targets from the same start, keeping every pause."""
    applicable = policy_targets(ctx, incident)
    if applicable is None:
        return
    state, (policy, targets) = ctx, applicable
    clocks = _clocks(incident.id)
    _start_missing(state, incident, policy, targets, {clock.target for clock in clocks})
    for clock in clocks:
        duration = targets.response if clock.target == "response" else targets.resolution
        if duration is None or clock.met_at or clock.stopped_at:
            continue
        seconds = int(duration.total_seconds())
        if (seconds, policy.name, targets.calendar) == (clock.target_seconds, clock.policy, clock.calendar):
            continue
        if targets.calendar != clock.calendar:
            # Pauses are working time of a calendar: measure them again in the new one.
            replayed = derive(state, incident, {clock.target: targets.calendar})[clock.target]
            clock.paused_seconds = replayed.paused_seconds
        clock.target_seconds, clock.policy, clock.calendar = seconds, policy.name, targets.calendar
        clock.warnings = ",".join(str(p) for p in policy.warnings)
        clock.cycle += 1
        breached, clock.breached_at = clock.breached_at, None
        if breached is not None and elapsed(state, clock, now()).total_seconds() >= clock.target_seconds:
            # Still overdue on the new target: the breach was announced, and is not news again
            # (an escalation's reassign or raise of priority re-targets exactly then).
            clock.breached_at = breached
        _save(state, clock, incident.owner_team_id)


def _start_missing(state: Any, incident: Incident, policy: Any, targets: Any, present: set[str]) -> None:
    """Clocks a target now applies to but that never started (the policy failed or did not
    apply when the incident was logged): started from the incident's start, with what the
    timeline says since (pauses, a reply, resolving), so the incident does not stay without
    an SLA for good."""
    if incident.status in {"closed", "cancelled"}:
        return
    for target, duration in (("response", targets.response), ("resolution", targets.resolution)):
        if duration is None or target in present:
            continue
        clock = SlaClock(incident=incident.id, target=target, policy=policy.name, calendar=targets.calendar,
                         target_seconds=int(duration.total_seconds()),
                         warnings=",".join(str(p) for p in policy.warnings), started_at=incident.created_at)
        clock.save(force_insert=True)
        replayed = derive(state, incident).get(target)
        if replayed is not None:
            for name in AUDITED:
                setattr(clock, name, getattr(replayed, name))
            if clock.met_at is not None:
                clock.worked_seconds = math.ceil(elapsed(state, clock, clock.met_at).total_seconds())
        _save(state, clock, incident.owner_team_id)
        logger.info("SLA: %s clock of %s started late (policy %r)", target, incident.reference, policy.name)


# -- audit: the clocks again, from the timeline alone ----------------------------------


AUDITED = ("paused_seconds", "paused_at", "met_at", "stopped_at")
ACTION_FIELDS = {"owner", "assignee", "status"}  # the changes that count as an agent's action


def derive(state: Any, incident: Incident, calendars: dict[str, str | None] | None = None,
           spans: bool = False) -> dict[str, SlaClock]:
    """Replay the incident's timeline through the same rules to rebuild its clocks' facts.

    Start, pauses, meeting and stopping come only from the timeline entries
    (status changes, replies, agent actions); the target and calendar are the
    stored ones unless ``calendars`` names others (a re-target keeps the start
    and every pause, measured again in the new calendar). ``spans``: each
    rebuilt clock also lists its finished pauses as ``(begin, end)`` in ``.spans``
    (a pause still open at the end of the timeline ends now: the change that
    ends it may be written after the clock is scheduled).
    """
    from helpdesk.models import STATUSES

    by_label = {label: code for code, label in STATUSES.items()}
    clocks = {}
    for stored in _clocks(incident.id):
        calendar = (calendars or {}).get(stored.target, stored.calendar)
        clocks[stored.target] = SlaClock(target=stored.target, calendar=calendar,
                                         target_seconds=stored.target_seconds,
                                         started_at=incident.created_at, paused_seconds=0)
    action_meets = state.settings.sla_response_met_by == "action"
    entries = (TimelineEntry.select(TimelineEntry.id, TimelineEntry.kind, TimelineEntry.field,
                                    TimelineEntry.actor, TimelineEntry.old_value, TimelineEntry.new_value,
                                    TimelineEntry.at)
               .where(TimelineEntry.incident == incident.id).order_by(TimelineEntry.id))  # not the bodies
    for entry in entries:
        response = clocks.get("response")
        if entry.kind == "change" and entry.field == "status":
            old, new = by_label.get(entry.old_value), by_label.get(entry.new_value)
            for clock in clocks.values():
                began = clock.paused_at
                _move(state, clock, old, new, entry.at)
                if spans and began is not None and clock.paused_at is None:
                    ended = min(entry.at, clock.met_at or entry.at)
                    clock.spans = [*getattr(clock, "spans", []), (began, ended)]
        if response is None or response.met_at or response.stopped_at:
            continue
        agent_action = entry.actor_id is not None and (
            entry.kind == "note" or (entry.kind == "change" and entry.field in ACTION_FIELDS))
        if entry.kind == "reply" or (action_meets and agent_action):
            response.met_at = entry.at
    if spans:
        for clock in clocks.values():
            if clock.paused_at is not None:
                clock.spans = [*getattr(clock, "spans", []), (clock.paused_at, now())]
    return clocks


def audit(state: Any, incident: Incident, tolerance: int = 1) -> list[str]:
    """Where the stored clocks differ from the timeline's account (empty: they agree)."""
    derived = derive(state, incident)
    problems = []
    for stored in _clocks(incident.id):
        rebuilt = derived[stored.target]
        for name in AUDITED:
            mine, theirs = getattr(stored, name), getattr(rebuilt, name)
            if isinstance(mine, dt.datetime) and isinstance(theirs, dt.datetime):
                same = abs((mine - theirs).total_seconds()) <= tolerance
            elif isinstance(mine, int) and isinstance(theirs, int):
                same = abs(mine - theirs) <= tolerance
            else:
                same = mine == theirs
            if not same:
                problems.append(f"{incident.reference} {stored.target} {name}: stored {mine}, "
                                f"timeline says {theirs}")
        overdue = _overdue_before_pause(state, stored)
        if overdue is not None and stored.next_event_at is None:
            # Left so by a version before the rule, and no check will look at it: shown
            # "Paused", never announced, missing from the Breached queue.
            problems.append(f"{incident.reference} {stored.target} breached_at: stored None, "
                            f"timeline says {overdue} (the target ran out before the pause: breached, "
                            "never announced)")
    return problems


# -- the background check -------------------------------------------------------------


# -- calendars changed by an admin (H7) ------------------------------------------------


def calendar_definition(calendar: Any, year: int) -> dict[str, Any]:
    """What decides business time in ``calendar``: zone, weekly hours, and the holidays from
    the year before ``year`` to two years after (within the years its holidays are known for,
    ``holiday_years``), with those years. Calendars built from a country's holidays cover a
    window of years that moves each new year (and depends on when their process started), so
    only the holidays of years two sightings both cover are compared (:func:`calendar_changed`)."""
    years = (year - 1, year + 2)
    known = getattr(calendar, "holiday_years", None)
    if known is not None:  # holidays known only for some years: compare within those
        years = (max(years[0], known[0]), min(years[1], known[1]))
    return {
        "zone": str(calendar.time_zone),
        "hours": sorted([int(day), str(opens), str(closes)]
                        for day, (opens, closes) in calendar.hours.items()),
        "years": list(years),
        "holidays": sorted(str(day) for day in calendar.holidays
                           if isinstance(day, dt.date) and years[0] <= day.year <= years[1]),
    }


def calendar_fingerprint(calendar: Any, year: int) -> str:
    """The hash a check before migration 0031 stored for ``calendar`` seen in ``year`` (read
    once to judge a row written then; see :func:`calendar_definition` for the years)."""
    years = range(year - 1, year + 3)
    described = {
        "zone": str(calendar.time_zone),
        "hours": sorted((int(day), str(opens), str(closes))
                        for day, (opens, closes) in calendar.hours.items()),
        "holidays": sorted(str(day) for day in calendar.holidays
                           if isinstance(day, dt.date) and day.year in years),
    }
    return hashlib.sha256(json.dumps(described, default=str).encode()).hexdigest()


def calendar_changed(before: Mapping[str, Any], now_seen: Mapping[str, Any]) -> bool:
    """Whether a calendar's definition changed between two sightings: its zone or weekly hours,
    or its holidays in a year both sightings cover. A new year moves the years compared, and
    that alone is no change."""
    if before["zone"] != now_seen["zone"] or before["hours"] != now_seen["hours"]:
        return True
    first = max(before["years"][0], now_seen["years"][0])
    last = min(before["years"][1], now_seen["years"][1])

    def within(found: Mapping[str, Any]) -> list[str]:
        return [day for day in found["holidays"] if first <= int(day[:4]) <= last]
    return within(before) != within(now_seen)


def _seen_changed(row: SlaCalendar, calendar: Any, definition: dict[str, Any]) -> bool:
    if row.definition is None:  # written before 0031: judged by its hash, in its own year
        return row.fingerprint != calendar_fingerprint(calendar, row.seen_at.year)
    return calendar_changed(json.loads(row.definition), definition)


def follow_calendar_changes(state: Any, at: dt.datetime | None = None, batch: int = 200) -> int:
    """Re-time the open clocks of every business calendar whose zone, hours or holidays changed
    since the last check saw it; return how many clocks moved.

    The rule (README, Settings in the browser): a running clock's pauses are measured again
    and its due time and next warning computed again, as if the new calendar had always
    applied, and the incident's timeline says so. Warnings and breaches already fired stay
    fired and are not sent again; met, stopped and breached clocks keep the times they were
    judged by; a paused clock's pauses are measured again and it takes the new hours when it
    runs again. A calendar seen for the first time (a new install, a new calendar) is only
    recorded, and so is one seen again in a new year with the same definition
    (:func:`calendar_changed`). A calendar that cannot be read is logged and skipped: the
    check goes on."""
    at = at or now()
    seen = {row.name: row for row in SlaCalendar.select()}
    moved = 0
    for name, calendar in state.registry.business_calendars.items():
        try:
            definition = calendar_definition(calendar, at.year)
            text = json.dumps(definition, sort_keys=True)
            row = seen.get(name)
            if row is not None and row.definition == text:
                continue
            if row is not None and _seen_changed(row, calendar, definition):
                retimed = _retime(state, name, at, batch)
                logger.warning("SLA: business calendar %r changed; %d open clock(s) re-timed", name, retimed)
                moved += retimed
            fingerprint = hashlib.sha256(text.encode()).hexdigest()
            with write_transaction():
                SlaCalendar.insert(name=name, fingerprint=fingerprint, seen_at=at,
                                   definition=text).on_conflict(
                    conflict_target=[SlaCalendar.name],
                    update={SlaCalendar.fingerprint: fingerprint, SlaCalendar.seen_at: at,
                            SlaCalendar.definition: text}).execute()
        except Exception:  # a broken calendar must not stop every warning and breach
            logger.exception("SLA: could not follow changes to business calendar %r", name)
    return moved


def _retime(state: Any, name: str, at: dt.datetime, batch: int) -> int:
    """Re-measure and reschedule the open, unbreached clocks on calendar ``name``, a batch per
    transaction (by id, through migration 0026's partial index); return how many due times
    moved."""
    moved, after = 0, 0
    open_clocks = ((SlaClock.calendar == name) & SlaClock.met_at.is_null() & SlaClock.stopped_at.is_null()
                   & SlaClock.breached_at.is_null())
    while True:
        ids = [clock_id for (clock_id,) in SlaClock.select(SlaClock.id)
               .where(open_clocks & (SlaClock.id > after)).order_by(SlaClock.id).limit(batch).tuples()]
        if not ids:
            return moved
        after = ids[-1]
        with write_transaction():
            # Lock order as in the domain: the incident rows first, then their clocks.
            incidents = {incident.id: incident for incident in for_update(
                Incident.select(Incident.id, Incident.created_at)
                .where(Incident.id.in_(SlaClock.select(SlaClock.incident).where(SlaClock.id.in_(ids))))
                .order_by(Incident.id))}
            clocks = list(for_update(SlaClock.select().where(SlaClock.id.in_(ids) & open_clocks)
                                     .order_by(SlaClock.id)))
            paused_before = {clock.incident_id for clock in clocks if clock.paused_seconds or clock.paused_at}
            replayed = {incident_id: derive(state, incidents[incident_id]) for incident_id in paused_before}
            retimed: set[int] = set()
            for clock in clocks:
                before = (clock.due_at, clock.next_event_at, clock.paused_seconds)
                if clock.incident_id in replayed:  # pauses are working time: measured in the new hours
                    clock.paused_seconds = replayed[clock.incident_id][clock.target].paused_seconds
                _schedule(state, clock)
                if (clock.due_at, clock.next_event_at, clock.paused_seconds) == before:
                    continue
                clock.save()
                if clock.due_at == before[0]:
                    continue
                moved += 1
                retimed.add(clock.incident_id)
                TimelineEntry.create(
                    incident=clock.incident_id, actor=None, kind="sla", at=at, field=clock.target,
                    old_value=clock.due_at.isoformat() if clock.due_at else None, new_value="retimed",
                    body=f"{clock.target.capitalize()} due time recomputed: the business calendar "
                         f"{name!r} changed")
            from helpdesk import reports  # (it reads the clocks through this module)

            for incident_id in sorted(retimed):  # escalation levels and report facts follow
                escalation_schedule(state, Incident(id=incident_id))
                reports.refresh(state, incident_id)


def check(state: Any, at: dt.datetime | None = None, batch: int = 500) -> int:
    """Fire every SLA event due at ``at`` (default now); return how many fired.

    Only clocks whose ``next_event_at`` has come are read. Each event is claimed
    by inserting its unique :class:`SlaEvent` row in the same transaction as its
    timeline entry, so running twice, in two workers at once, or again after a
    crash never fires an event twice.
    """
    at = at or now()
    fired = _fire_due(state, at, batch)
    # After what was due (a re-time of many clocks must not hold back a breach), and again for
    # the clocks a changed calendar made due at once.
    if follow_calendar_changes(state, at):
        fired += _fire_due(state, at, batch)
    escalation_check(state, at)  # the same pass runs the escalation levels now due
    return fired


def _fire_due(state: Any, at: dt.datetime, batch: int) -> int:
    fired = 0
    seen: set[int] = set()
    while True:
        # The index on next_event_at finds what is due; nothing else is read.
        due = [row.id for row in SlaClock.select(SlaClock.id).where(SlaClock.next_event_at <= at)
               .order_by(SlaClock.next_event_at).limit(batch)]
        fresh = [clock_id for clock_id in due if clock_id not in seen]
        if not fresh:
            return fired
        for clock_id in fresh:
            seen.add(clock_id)
            fired += _process(state, clock_id, at)


def preview(state: Any, at: dt.datetime) -> list[tuple[int, str, str, int]]:
    """What a check at ``at`` would fire, without firing it: (incident id, target, kind, point).
    An event it would claim but not send (:func:`repeats`) is left out, as the check counts it."""
    due = []
    for clock in SlaClock.select().where(SlaClock.next_event_at <= at).order_by(SlaClock.next_event_at):
        _settle_paused(state, clock)  # (in memory only: nothing is saved here)
        event = _due_event(state, clock, at)
        if event is None:
            continue
        claimed = SlaEvent(incident=clock.incident_id, target=clock.target, kind=event[0], point=event[1],
                           cycle=clock.cycle, due_at=clock.due_at)
        if not _said_before(claimed):
            due.append((clock.incident_id, clock.target, *event))
    return due


def _overdue_before_pause(state: Any, clock: SlaClock) -> dt.datetime | None:
    """The due time of an open, unbreached, paused clock whose target ran out before the pause
    (no check came in between), or ``None``: the rule :func:`_schedule` keeps since a3b71e3,
    asked of a clock as stored."""
    if clock.paused_at is None or clock.breached_at or clock.met_at or clock.stopped_at:
        return None
    probe = SlaClock(**clock.__data__)  # a copy: the stored one is not changed here
    _schedule(state, probe)
    return probe.due_at


def _settle_paused(state: Any, clock: SlaClock) -> None:
    """A paused clock handed to the check without a due time (migration 0034 hands over those
    an older version paused after their target ran out, never marking the breach) gets the due
    time the rule gives it, so the check announces that breach now; one only paused stays
    without (and is rescheduled to nothing)."""
    if clock.paused_at is not None and clock.due_at is None:
        clock.due_at = _overdue_before_pause(state, clock)


def _due_event(state: Any, clock: SlaClock, at: dt.datetime) -> tuple[str, int] | None:
    """The event a running clock has due at ``at``: the breach, or the latest warning point; a
    paused clock has only the breach of a target that ran out before the pause."""
    if clock.met_at or clock.stopped_at or clock.breached_at:
        return None
    if clock.paused_at:
        overdue = clock.due_at is not None and clock.due_at <= min(clock.paused_at, at)
        return ("breach", BREACH) if overdue else None
    seconds = clock.target_seconds
    used = elapsed(state, clock, at)
    per_mille = int(used.total_seconds() * 1000 // seconds) if seconds else BREACH
    if per_mille >= BREACH:
        return "breach", BREACH
    fired = _fired(clock)
    reached = [p for p in _points(clock) if p <= per_mille and p > max(fired, default=0)]
    # Earlier points are stale once a later one is reached: only the latest fires.
    return ("warning", reached[-1]) if reached else None


def _process(state: Any, clock_id: int, at: dt.datetime) -> int:
    with write_transaction():
        # Lock order as in the domain: the incident row first, then its clock.
        incident_id = SlaClock.select(SlaClock.incident).where(SlaClock.id == clock_id).scalar()
        if incident_id is None:
            return 0
        owner_team = for_update(Incident.select(Incident.owner_team)
                                .where(Incident.id == incident_id)).scalar()
        clock = for_update(SlaClock.select().where(SlaClock.id == clock_id)).get_or_none()
        if clock is None or clock.next_event_at is None or clock.next_event_at > at:
            return 0  # another worker got here first
        _settle_paused(state, clock)
        event = _due_event(state, clock, at)
        if event is None:
            _save(state, clock, owner_team)  # nothing due after all (paused, met, or moved): reschedule
            return 0
        kind, point = event
        try:
            with write_transaction():
                event_row = SlaEvent.create(incident=clock.incident_id, target=clock.target, kind=kind,
                                            point=point, cycle=clock.cycle, at=at, due_at=clock.due_at)
        except peewee.IntegrityError:
            return 0  # fired already (another worker, or an earlier run)
        if kind == "breach":
            clock.breached_at = clock.due_at or at
        _save(state, clock, owner_team)  # the breach is the owning team's of this moment
        if kind == "breach":
            from helpdesk import reports  # (it reads the clocks through this module)

            reports.refresh(state, clock.incident_id)  # the fact keeps the team it counts under
        if _said_before(event_row):
            return 0  # said already for this very due time, before re-targets brought it back
        TimelineEntry.create(
            incident=clock.incident_id, actor=None, kind="sla", at=at, field=clock.target,
            # The due time is data (ISO, naive UTC as stored), so pages show it in the reader's
            # zone; entries written before kept it in their text.
            old_value=clock.due_at.isoformat() if clock.due_at else None, new_value=kind,
            body=(f"{clock.target.capitalize()} target breached" if kind == "breach" else
                  f"{clock.target.capitalize()} target {point / 10:g}% used"))
        if kind == "breach" and clock.paused_at is not None:
            # A breach found on a paused clock: its escalation levels were scheduled while it
            # stood paused and not yet breached (a database from before the rule; see
            # _settle_paused), so they are looked at again, in this pass.
            escalation_schedule(state, Incident(id=clock.incident_id))
        if kind == "breach":
            events.emit(state, "incident_sla_breached", clock.incident_id, None, target=clock.target,
                        due_at=clock.due_at.isoformat() if clock.due_at else None)
        else:
            events.emit(state, "incident_sla_warning", clock.incident_id, None, target=clock.target,
                        point=point / 1000, due_at=clock.due_at.isoformat() if clock.due_at else None)
    return 1
