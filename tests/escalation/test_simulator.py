"""The simulator shows what will fire and when, from the check's own code on a held clock, and
leaves nothing behind; what it shows is what then happens."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from helpdesk.escalation import policies
from helpdesk.escalation.simulate import simulate
from helpdesk.models import (
    Delivery,
    EscalationPolicy,
    EscalationRun,
    EscalationState,
    Incident,
    SlaClock,
    SlaEvent,
    TimelineEntry,
)

from .conftest import AT75, AT90, DUE, LOGGED, three_levels, utc


def _levels(sim: Any) -> list[tuple[dt.datetime, str]]:
    return [(h.at, h.what) for h in sim.happenings if h.kind == "escalation"]


def test_the_next_p2_logged_friday_afternoon_shows_three_levels_on_monday_and_nothing_is_saved(desk):
    desk.policy(three_levels())
    hypothetical = {"logged_at": LOGGED, "impact": "high", "urgency": "medium", "team": "Database"}
    sim = desk.call(None, simulate, hypothetical=hypothetical, horizon=dt.timedelta(days=4))
    assert sim.start == LOGGED and sim.end == LOGGED + dt.timedelta(days=4)
    assert _levels(sim) == [(AT75, "level 1 of standard (v1)"), (AT90, "level 2 of standard (v1)"),
                            (DUE, "level 3 of standard (v1)")]
    resolution = [(h.at, h.kind, h.what) for h in sim.happenings if h.what.startswith("resolution")]
    assert resolution == [(utc(3, 9, 12, 30), "sla_warning", "resolution 50%"),
                          (AT75, "sla_warning", "resolution 75%"), (AT90, "sla_warning", "resolution 90%"),
                          (DUE, "sla_breach", "resolution breached")]
    # The response target (30 min) runs out on Friday at 17:00, before any level.
    assert ("sla_breach", "response breached") in [(h.kind, h.what) for h in sim.happenings
                                                   if h.at == utc(3, 6, 17)]
    details = [h.detail for h in sim.happenings if h.kind == "escalation"]
    assert details[0] == "Level 1: told the leads of Service Desk (no active owner): Admin, Amira Haddad"
    assert details[2] == "Level 3: reassigned to Network"
    for model in (Incident, Delivery, EscalationRun, SlaEvent, TimelineEntry, EscalationState, SlaClock):
        assert model.select().count() == 0, model.__name__


def test_a_draft_is_compared_with_the_live_policy_without_changing_it(desk):
    desk.policy(three_levels())
    draft = three_levels()
    draft["levels"][1]["fraction"] = 0.8
    hypothetical = {"logged_at": LOGGED, "priority": 2}
    live = desk.call(None, simulate, hypothetical=hypothetical, horizon=dt.timedelta(days=4))
    drafted = desk.call(None, simulate, hypothetical=hypothetical, horizon=dt.timedelta(days=4),
                        draft=draft)
    assert [at for at, _ in _levels(live)] == [AT75, AT90, DUE]
    assert _levels(drafted) == [(AT75, "level 1 of standard (v2)"),
                                (utc(3, 9, 14, 54), "level 2 of standard (v2)"),
                                (DUE, "level 3 of standard (v2)")]
    assert EscalationPolicy.get().version == 1


def test_an_existing_incident_is_simulated_from_where_it_stands(desk):
    desk.policy(three_levels())
    incident = desk.log_p2()
    desk.check(AT75)
    desk.clock.set(AT75 + dt.timedelta(minutes=10))
    sim = desk.call(None, simulate, incident_id=incident.id, horizon=dt.timedelta(days=1))
    assert _levels(sim) == [(AT90, "level 2 of standard (v1)"), (DUE, "level 3 of standard (v1)")]
    assert desk.runs(incident) == [(1, 1, AT75, "done")]
    assert desk.fresh(incident).assigned_team_id == desk.p.database_team.id


def test_a_breach_a_re_target_brought_back_to_its_announced_due_time_is_not_listed(desk):
    from helpdesk import incidents

    # P3 logged Monday 09:00: response due 13:00, breached and told at the 13:05 check. Lowered to
    # P4 and back to P3: the same breach for the same due time is claimed again but never sent.
    incident = desk.call(utc(3, 2, 9), incidents.log_incident, title="Printer", actor=desk.p.owner,
                         service_desk=desk.p.service_desk, impact="medium", urgency="medium")
    desk.check(utc(3, 2, 13, 5))
    desk.call(utc(3, 2, 13, 10), incidents.override_priority, incident.id, desk.p.owner, 4, "Minor")
    desk.call(utc(3, 2, 13, 15), incidents.override_priority, incident.id, desk.p.owner, 3, "No, back")
    sim = desk.call(None, simulate, incident_id=incident.id, horizon=dt.timedelta(days=1))
    # Only the resolution's 50 % (12 of 24 business hours: Monday's 8, then Tuesday 09:00-13:00).
    assert [(h.at, h.kind, h.what) for h in sim.happenings] == [
        (utc(3, 3, 13), "sla_warning", "resolution 50%")]
    for instant in sim.instants:
        desk.check(instant)
    told = [(e.at, e.field, e.new_value) for e in TimelineEntry.select().where(
        (TimelineEntry.incident == incident.id) & (TimelineEntry.kind == "sla")).order_by(TimelineEntry.id)]
    assert told == [(utc(3, 2, 13, 5), "response", "breach"), (utc(3, 3, 13), "resolution", "warning")]


# -- the property: the simulation is what happens -------------------------------------------------------

STEPS = [{"step": "notify_owner"}, {"step": "notify_owner_team_leads"}, {"step": "raise_priority"},
         {"step": "reassign", "team": "Network"}]


@st.composite
def level(draw: Any) -> dict[str, Any]:
    trigger = draw(st.sampled_from(["fraction", "breach", "after_breach", "before_due"]))
    chosen: dict[str, Any] = {"trigger": trigger, "target": draw(st.sampled_from(["response", "resolution"])),
                              "steps": draw(st.lists(st.sampled_from(STEPS), min_size=1, max_size=2))}
    if trigger == "fraction":
        chosen["fraction"] = draw(st.integers(5, 150)) / 100
    if trigger in {"after_breach", "before_due"}:
        chosen["minutes"] = draw(st.integers(1, 600))
    if draw(st.booleans()):
        chosen["conditions"] = {"priority": draw(st.lists(st.integers(1, 4), min_size=1, max_size=3,
                                                          unique=True))}
    return chosen


def _happened(incident_id: int) -> list[tuple[dt.datetime, str, str]]:
    """What fired for the incident, read from the timeline entries the check wrote for what it
    sent (not the events it claimed), as the simulator says it."""
    entries = TimelineEntry.select().where(
        (TimelineEntry.incident == incident_id) & (TimelineEntry.kind == "sla")
        & TimelineEntry.new_value.in_(["warning", "breach"]))
    events = [(e.at, f"sla_{e.new_value}", f"{e.field} breached" if e.new_value == "breach"
               else f"{e.field} {re.search(r'target (.+%) used', e.body).group(1)}") for e in entries]
    runs = [(r.at, "escalation", f"level {r.level} of {r.policy_name} (v{r.version})")
            for r in EscalationRun.select().where(EscalationRun.incident == incident_id)]
    return sorted(events + runs)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(levels=st.lists(level(), min_size=1, max_size=4),
       logged=st.integers(0, 14 * 24 * 60), severity=st.sampled_from([("high", "high"), ("high", "medium"),
                                                                      ("medium", "medium"), ("low", "low")]),
       reply_after=st.one_of(st.none(), st.integers(1, 600)))
# The seed scenario (a P2 logged Friday 16:30, answered after 10 minutes) is always among them.
@example(levels=three_levels()["levels"], logged=(4 * 24 + 16) * 60 + 30, severity=("high", "medium"),
         reply_after=10)
def test_the_simulator_timeline_is_what_fires_when_the_clock_moves_through_the_same_instants(
        desk, levels, logged, severity, reply_after):
    from helpdesk import incidents

    for policy in EscalationPolicy.select():
        policies.delete(policy.name)
    desk.policy({"name": "random", "levels": levels})
    logged_at = utc(3, 2, 0) + dt.timedelta(minutes=logged)
    incident = desk.call(logged_at, incidents.log_incident, title="Random", actor=desk.p.owner,
                         service_desk=desk.p.service_desk, impact=severity[0], urgency=severity[1],
                         assigned_team=desk.p.database_team)
    if reply_after is not None:
        desk.call(logged_at + dt.timedelta(minutes=reply_after), incidents.add_comment, incident.id,
                  desk.p.owner, "On it", public=True)
    start = desk.clock.now
    sim = desk.call(None, simulate, incident_id=incident.id, horizon=dt.timedelta(days=5))
    for instant in sim.instants:
        desk.check(instant)
    assert _happened(incident.id) == sorted((h.at, h.kind, h.what) for h in sim.happenings)
    assert all(start <= h.at <= start + dt.timedelta(days=5) for h in sim.happenings)
    # This incident is done with: the next example starts from a quiet desk.
    SlaClock.update(next_event_at=None).where(SlaClock.incident == incident.id).execute()
    EscalationState.update(next_at=None).where(EscalationState.incident == incident.id).execute()
