"""SLA behaviour as owners and assignees see it: due times in business hours, warnings and
breaches that fire once, pauses, re-targets, reopening, the response target, the background
check under concurrency and crashes, auto-close, and the SLA queues and panel.

Every expected instant is worked out by hand from the ``business`` calendar (Monday to Friday
09:00-17:00 Europe/London) and the ``priority`` policy (P1 15m/4h around the clock, P2 30m/8
business hours, P3 4bh/3 business days, P4 1bd/10bd; warnings at 50/75/90 %). Stored times are
naive UTC: London is UTC+0 until Sunday 29 March 2026 and UTC+1 from then on. 2026-03-02 is a
Monday.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import threading
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

import helpdesk.db
import helpdesk.schema
from helpdesk import events, hookimpl, incidents, sla
from helpdesk.models import Agent, Delivery, Incident, Notice, SlaClock, SlaEvent, TimelineEntry
from helpdesk.testing import PG_URL_VARIABLE, FrozenClock, Personas
from helpdesk_plugins import business_hours, sla_priority

PG_URL = os.environ.get(PG_URL_VARIABLE)
ROOT = Path(__file__).resolve().parent.parent
H = dt.timedelta(hours=1)
SECOND = dt.timedelta(seconds=1)


def utc(month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    """An instant of 2026 as stored: naive UTC."""
    return dt.datetime(2026, month, day, hour, minute, second)


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def helpdesk_plugins() -> list[Any]:
    return [business_hours, sla_priority]


@pytest.fixture
def holidays() -> list[str]:
    """Holidays of the business calendar; parametrize this name to add some."""
    return []


@pytest.fixture
def extra_settings() -> dict[str, Any]:
    """More settings for the app; parametrize this name to change them."""
    return {}


@pytest.fixture
def helpdesk_settings(holidays: list[str], extra_settings: dict[str, Any]) -> dict[str, Any]:
    return {"time_zone": "Europe/London",
            "plugins": {"business_hours": {"holidays": holidays}},
            **extra_settings}


class Recorder:
    """A plugin that records the SLA event hooks it receives."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str, str, float | None]] = []
        self._lock = threading.Lock()

    @hookimpl
    def incident_sla_warning(self, incident: Any, actor: Any, target: str, point: float,
                             due_at: str) -> None:
        with self._lock:
            self.calls.append((incident.id, target, "warning", point))

    @hookimpl
    def incident_sla_breached(self, incident: Any, actor: Any, target: str, due_at: str) -> None:
        with self._lock:
            self.calls.append((incident.id, target, "breach", None))


class Desk:
    """The domain and the SLA check driven at chosen instants, always inside the app."""

    def __init__(self, app: Flask, personas: Personas, clock: FrozenClock) -> None:
        self.app = app
        self.state = app.extensions["helpdesk"]
        self.p = personas
        self.clock = clock

    def log(self, when: dt.datetime, impact: str, urgency: str, **values: Any) -> Incident:
        self.clock.set(when)
        values.setdefault("title", "Orders database slow")
        values.setdefault("actor", self.p.owner)
        with self.app.app_context():
            return incidents.log_incident(self.state, service_desk=self.p.service_desk,
                                          impact=impact, urgency=urgency, **values)

    def do(self, when: dt.datetime, change: Any, *args: Any, **kwargs: Any) -> Any:
        self.clock.set(when)
        with self.app.app_context():
            return change(self.state, *args, **kwargs)

    def reply(self, when: dt.datetime, incident: Incident, actor: Agent | None = None) -> None:
        self.do(when, incidents.add_comment, incident.id, actor or self.p.owner,
                "We are looking into it.", public=True)

    def status(self, when: dt.datetime, incident: Incident, status: str, actor: Agent | None = None,
               **kwargs: Any) -> Incident:
        return self.do(when, incidents.change_status, incident.id, actor or self.p.owner, status,
                       **kwargs)

    def check(self, when: dt.datetime) -> int:
        self.clock.set(when)
        with self.app.app_context():
            return sla.check(self.state, when)

    def clock_of(self, incident: Incident, target: str = "resolution") -> SlaClock:
        return SlaClock.get((SlaClock.incident == incident.id) & (SlaClock.target == target))

    def standing(self, incident: Incident, target: str = "resolution",
                 when: dt.datetime | None = None) -> sla.Status:
        with self.app.app_context():
            return sla.status(self.state, self.clock_of(incident, target), when or self.clock.now)

    def events(self, incident: Incident | None = None) -> list[tuple[str, str, int, int]]:
        query = SlaEvent.select().order_by(SlaEvent.id)
        if incident is not None:
            query = query.where(SlaEvent.incident == incident.id)
        return [(e.target, e.kind, e.point, e.cycle) for e in query]

    def sla_entries(self, incident: Incident | None = None) -> list[TimelineEntry]:
        query = TimelineEntry.select().where(TimelineEntry.kind == "sla").order_by(TimelineEntry.id)
        if incident is not None:
            query = query.where(TimelineEntry.incident == incident.id)
        return list(query)

    def notices(self, agent: Agent | None = None, incident: Incident | None = None) -> list[Notice]:
        """In-app notices about SLA targets (not those about assignments and the like)."""
        query = Notice.select().order_by(Notice.id)
        if agent is not None:
            query = query.where(Notice.agent == agent.id)
        if incident is not None:
            query = query.where(Notice.incident == incident.id)
        return [n for n in query if re.search(r"\b(response|resolution) target\b", n.text)]


@pytest.fixture
def desk(helpdesk_app: Flask, personas: Personas, frozen_clock: FrozenClock) -> Desk:
    return Desk(helpdesk_app, personas, frozen_clock)


def resolution_events(desk: Desk, incident: Incident) -> list[tuple[str, int, int]]:
    return [(kind, point, cycle) for target, kind, point, cycle in desk.events(incident)
            if target == "resolution"]


# -- 1. the seed scenario ----------------------------------------------------------------------

# A P2 logged at 16:30 London on a Friday: half an hour on Friday, then 7.5 business hours on
# Monday. 50 % = 4 h, 75 % = 6 h, 90 % = 7.2 h (7 h 12 min) of the 8 business hours.
SEED = {  # created, 50 %, 75 %, 90 %, due (all UTC)
    "seed-winter": (utc(3, 6, 16, 30), utc(3, 9, 12, 30), utc(3, 9, 14, 30), utc(3, 9, 15, 42),
                    utc(3, 9, 16, 30)),
    # London moves to BST on Sunday 29 March: Monday's 09:00-17:00 is 08:00-16:00 UTC.
    "across-dst": (utc(3, 27, 16, 30), utc(3, 30, 11, 30), utc(3, 30, 13, 30), utc(3, 30, 14, 42),
                   utc(3, 30, 15, 30)),
}


@pytest.mark.parametrize("with_agent", [True, False], ids=["assignee-agent", "team-only"])
@pytest.mark.parametrize("times", list(SEED.values()), ids=list(SEED))
def test_seed_scenario_warns_owner_and_assignee_then_breaches_once(desk, times, with_agent):
    created, w50, w75, w90, due = times
    p = desk.p
    incident = desk.log(created, impact="high", urgency="medium")
    assert incident.priority == 2
    agent = p.assignee if with_agent else None
    fresh = desk.do(created, incidents.assign, incident.id, p.owner, p.database_team, agent)
    assert (fresh.owner_agent_id, fresh.owner_team_id) == (p.owner.id, p.service_desk.id)
    assert (fresh.assigned_team_id, fresh.assigned_agent_id) == (p.database_team.id,
                                                                  agent.id if agent else None)
    desk.reply(created + dt.timedelta(minutes=10), incident)  # meets the 30-minute response target

    assert desk.clock_of(incident).due_at == due
    assert desk.clock_of(incident, "response").met_at == created + dt.timedelta(minutes=10)

    # Nothing over the weekend, nor a second before the 50 % instant.
    for quiet in (created + dt.timedelta(minutes=15), created + dt.timedelta(days=1),
                  created + dt.timedelta(days=2), w50 - SECOND):
        assert desk.check(quiet) == 0, quiet
    assert desk.events() == []

    assert desk.check(w50) == 1
    assert desk.events() == [("resolution", "warning", 500, 1)]
    assert desk.check(w75 - SECOND) == 0
    assert not [n for n in desk.notices() if "75%" in n.text]

    assert desk.check(w75) == 1
    recipients = [p.owner, p.assignee] if with_agent else [p.owner]
    for agent_ in recipients:
        notices = [n for n in desk.notices(agent_, incident) if "resolution target 75% used" in n.text]
        assert len(notices) == 1, agent_
        assert notices[0].created_at == w75 < due
        assert notices[0].read_at is None
        assert incident.reference in notices[0].text
    notified = {n.agent_id for n in desk.notices()}
    assert notified == {a.id for a in recipients}  # not the whole team, not the leads
    entry = desk.sla_entries(incident)[-1]
    assert (entry.kind, entry.field, entry.new_value, entry.at) == ("sla", "resolution", "warning", w75)
    # The due time is data (ISO, UTC) that pages show in the reader's zone, not text in the body.
    assert "75%" in entry.body and "(due" not in entry.body
    assert dt.datetime.fromisoformat(entry.old_value) == due

    assert desk.check(w90) == 1
    assert desk.check(due - SECOND) == 0
    assert desk.clock_of(incident).breached_at is None
    assert desk.check(due) == 1
    for again in (due, due, due + dt.timedelta(minutes=1), due + dt.timedelta(days=3)):
        assert desk.check(again) == 0

    assert desk.events() == [("resolution", "warning", 500, 1), ("resolution", "warning", 750, 1),
                             ("resolution", "warning", 900, 1), ("resolution", "breach", 1000, 1)]
    clock = desk.clock_of(incident)
    assert clock.breached_at == due
    assert clock.next_event_at is None
    breaches = [e for e in desk.sla_entries(incident) if e.new_value == "breach"]
    assert len(breaches) == 1 and breaches[0].at == due
    assert len(desk.sla_entries(incident)) == 4
    for agent_ in recipients:
        assert len([n for n in desk.notices(agent_) if "breached" in n.text]) == 1
    assert desk.standing(incident, when=due + H).state == "breached"


# -- 2. pause and resume ------------------------------------------------------------------------


@pytest.mark.parametrize("holidays", [["2026-03-09"]])
def test_pending_pauses_across_weekend_and_holiday_and_resumes_where_it_stood(desk):
    # P2 logged Wednesday 13:00: 4 h on Wednesday + 4 h on Thursday -> first due Thursday 13:00.
    incident = desk.log(utc(3, 4, 13), impact="high", urgency="medium")
    desk.reply(utc(3, 4, 13, 5), incident)
    assert desk.clock_of(incident).due_at == utc(3, 5, 13)
    assert desk.check(utc(3, 4, 17)) == 1  # 4 h used: 50 %

    # Pending from Thursday 10:00: 4 h Wednesday + 1 h Thursday used.
    desk.status(utc(3, 5, 10), incident, "pending", pending_reason="customer")
    paused = desk.standing(incident, when=utc(3, 5, 10))
    assert (paused.state, paused.elapsed, paused.due_at) == ("paused", 5 * H, None)

    # While paused nothing fires, not even after the first due time, and no time accrues.
    for quiet in (utc(3, 5, 13), utc(3, 5, 16), utc(3, 6, 12), utc(3, 7, 12), utc(3, 9, 12)):
        assert desk.check(quiet) == 0, quiet
        assert desk.standing(incident, when=quiet).elapsed == 5 * H
    # Changing only the pending reason keeps the clock paused.
    desk.status(utc(3, 9, 12), incident, "pending", pending_reason="third_party")
    assert desk.clock_of(incident).paused_at == utc(3, 5, 10)

    # Back to work Tuesday 11:00. Paused business time: Thursday 10-17 (7 h) + Friday (8 h)
    # + weekend (0) + Monday holiday (0) + Tuesday 09-11 (2 h) = 17 h.
    desk.status(utc(3, 10, 11), incident, "in_progress")
    resumed = desk.standing(incident, when=utc(3, 10, 11))
    assert resumed.elapsed == 5 * H
    assert resumed.paused == 17 * H
    # The old due (Thursday 13:00) plus 17 business hours: Thursday 13-17 (4), Friday (8),
    # Monday is the holiday, Tuesday 09-14 (5) -> Tuesday 14:00 = resume + the 3 h left.
    assert desk.clock_of(incident).due_at == utc(3, 10, 14)
    assert resumed.state == "warning"  # 62.5 % used

    assert desk.check(utc(3, 10, 11, 59, 59)) == 0
    assert desk.check(utc(3, 10, 12)) == 1  # 6 h used: 75 %
    assert desk.check(utc(3, 10, 13, 12)) == 1  # 7.2 h: 90 %
    assert desk.check(utc(3, 10, 13, 59, 59)) == 0
    assert desk.check(utc(3, 10, 14)) == 1
    assert resolution_events(desk, incident) == [("warning", 500, 1), ("warning", 750, 1),
                                                 ("warning", 900, 1), ("breach", 1000, 1)]
    assert desk.clock_of(incident).breached_at == utc(3, 10, 14)


@pytest.mark.parametrize(("holidays", "due"), [([], utc(3, 9, 11)), (["2026-03-09"], utc(3, 10, 11))],
                         ids=["no-holiday", "monday-holiday"])
def test_time_left_after_a_pause_runs_over_the_weekend_and_holiday(desk, due):
    # P2 logged Thursday 09:00; pending 13:00 (4 h used) until Friday 15:00. The 4 h left:
    # Friday 15-17 (2 h), then Monday 09-11 - or Tuesday 09-11 when Monday is a holiday.
    incident = desk.log(utc(3, 5, 9), impact="high", urgency="medium")
    desk.reply(utc(3, 5, 9, 5), incident)
    desk.status(utc(3, 5, 13), incident, "pending", pending_reason="customer")
    desk.status(utc(3, 6, 15), incident, "in_progress")
    standing = desk.standing(incident, when=utc(3, 6, 15))
    assert (standing.elapsed, standing.paused) == (4 * H, 10 * H)
    assert desk.clock_of(incident).due_at == due
    desk.check(due - SECOND)
    assert desk.clock_of(incident).breached_at is None
    assert desk.check(due) == 1
    assert resolution_events(desk, incident)[-1] == ("breach", 1000, 1)


# -- 3. priority changes --------------------------------------------------------------------------


def test_raising_priority_retargets_from_the_same_start_keeping_the_pause(desk):
    p = desk.p
    # P3 logged Monday 09:00 (3 business days: due Wednesday 17:00), pending Monday 11:00 to
    # Tuesday 11:00 (8 business hours paused) -> due Thursday 17:00.
    incident = desk.log(utc(3, 2, 9), impact="medium", urgency="medium")
    assert incident.priority == 3
    desk.reply(utc(3, 2, 9, 5), incident)
    assert desk.clock_of(incident).due_at == utc(3, 4, 17)
    desk.status(utc(3, 2, 11), incident, "pending", pending_reason="customer")
    desk.status(utc(3, 3, 11), incident, "in_progress")
    assert desk.clock_of(incident).due_at == utc(3, 5, 17)
    assert desk.check(utc(3, 3, 14)) == 0  # 5 h of 24: no warning yet

    # Escalated to P2 at Tuesday 14:00 with 5 h used: 8 h from Monday 09:00 plus the 8 h
    # paused -> Tuesday 17:00; 62.5 % used, so the 50 % warning of the new target is due.
    fresh = desk.do(utc(3, 3, 14), incidents.override_priority, incident.id, p.owner, 2,
                    "Customer escalated: orders failing")
    assert (fresh.priority, fresh.priority_overridden) == (2, True)
    clock = desk.clock_of(incident)
    assert (clock.cycle, clock.target_seconds, clock.due_at) == (2, 8 * 3600, utc(3, 3, 17))
    standing = desk.standing(incident, when=utc(3, 3, 14))
    assert (standing.elapsed, standing.paused) == (5 * H, 8 * H)

    assert desk.check(utc(3, 3, 14)) == 1
    assert desk.check(utc(3, 3, 14, 59, 59)) == 0
    assert desk.check(utc(3, 3, 15)) == 1  # 6 h: 75 %
    assert desk.check(utc(3, 3, 16, 12)) == 1  # 7.2 h: 90 %
    assert desk.check(utc(3, 3, 17)) == 1
    assert resolution_events(desk, incident) == [("warning", 500, 2), ("warning", 750, 2),
                                                 ("warning", 900, 2), ("breach", 1000, 2)]
    assert desk.clock_of(incident).breached_at == utc(3, 3, 17)

    # Back to P3 on Wednesday 09:00 (a mistake): due Thursday 17:00 again, a new cycle, so the
    # 50 % point (12 h used: Wednesday 13:00) warns again for the new target.
    desk.do(utc(3, 4, 9), incidents.override_priority, incident.id, p.lead, 3, "Not that urgent")
    clock = desk.clock_of(incident)
    assert (clock.cycle, clock.due_at, clock.breached_at) == (3, utc(3, 5, 17), None)
    assert desk.check(utc(3, 4, 12, 59, 59)) == 0
    assert desk.check(utc(3, 4, 13)) == 1
    assert resolution_events(desk, incident)[-1] == ("warning", 500, 3)


@pytest.mark.parametrize("how", ["override", "details"])
def test_new_target_already_passed_breaches_once_at_the_next_check(desk, how):
    p = desk.p
    incident = desk.log(utc(3, 2, 9), impact="medium", urgency="medium")
    desk.reply(utc(3, 2, 9, 5), incident)
    desk.status(utc(3, 2, 11), incident, "pending", pending_reason="customer")
    desk.status(utc(3, 3, 11), incident, "in_progress")
    # Half way through the 24 h: 2 h Monday + 6 h Tuesday + 4 h Wednesday = Wednesday 13:00.
    assert desk.check(utc(3, 4, 13)) == 1
    assert resolution_events(desk, incident) == [("warning", 500, 1)]

    if how == "override":
        fresh = desk.do(utc(3, 4, 13), incidents.override_priority, incident.id, p.owner, 2,
                        "Whole warehouse affected")
    else:  # impact raised: medium/medium (P3) -> high/medium (P2), derived
        fresh = desk.do(utc(3, 4, 13), incidents.update_details, incident.id,
                        p.owner, impact="high")
    assert fresh.priority == 2
    clock = desk.clock_of(incident)
    # 8 h + 8 h paused from Monday 09:00: Tuesday 17:00, already behind us.
    assert (clock.cycle, clock.due_at, clock.breached_at) == (2, utc(3, 3, 17), None)

    assert desk.check(utc(3, 4, 13, 1)) == 1
    for again in (utc(3, 4, 13, 1), utc(3, 4, 14), utc(3, 5, 9)):
        assert desk.check(again) == 0
    # Only the breach of the new cycle: its passed warnings are stale.
    assert resolution_events(desk, incident) == [("warning", 500, 1), ("breach", 1000, 2)]
    assert desk.clock_of(incident).breached_at == utc(3, 3, 17)
    assert len([e for e in desk.sla_entries(incident) if e.new_value == "breach"]) == 1
    assert desk.standing(incident, when=utc(3, 4, 14)).state == "breached"


# -- 4. resolve and reopen --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["change_status", "reopen"])
def test_reopen_resumes_the_resolution_clock_without_the_time_resolved(desk, how):
    p = desk.p
    incident = desk.log(utc(3, 2, 9), impact="high", urgency="medium", assigned_team=p.database_team,
                        assigned_agent=p.assignee)
    desk.reply(utc(3, 2, 9, 5), incident, p.assignee)
    assert desk.check(utc(3, 2, 13)) == 1  # 4 h of 8: 50 %
    desk.status(utc(3, 2, 13), incident, "resolved", p.assignee, note="Rebuilt the index")
    clock = desk.clock_of(incident)
    assert clock.met_at == utc(3, 2, 13)
    assert desk.standing(incident, when=utc(3, 2, 17)).state == "met"
    for later in (utc(3, 2, 17), utc(3, 3, 12), utc(3, 30, 12)):
        assert desk.check(later) == 0
    assert resolution_events(desk, incident) == [("warning", 500, 1)]

    # The customer comes back on Wednesday 10:00. Resolved for Monday 13-17, Tuesday and
    # Wednesday 09-10 (13 business hours): none of it counts, so 4 h are left -> 14:00.
    note = "Still slow after the fix"
    if how == "change_status":
        fresh = desk.status(utc(3, 4, 10), incident, "in_progress", p.assignee, note=note)
    else:
        fresh = desk.do(utc(3, 4, 10), incidents.reopen, incident.id, p.assignee, note=note)
    assert fresh.status == "in_progress" and fresh.resolved_at is None
    clock = desk.clock_of(incident)
    assert clock.met_at is None
    assert clock.due_at == utc(3, 4, 14)
    standing = desk.standing(incident, when=utc(3, 4, 10))
    assert (standing.state, standing.elapsed, standing.paused) == ("warning", 4 * H, 13 * H)

    assert desk.check(utc(3, 4, 11, 59)) == 0
    assert desk.check(utc(3, 4, 12)) == 1  # 6 h: 75 %
    assert desk.check(utc(3, 4, 14)) == 1
    assert resolution_events(desk, incident) == [("warning", 500, 1), ("warning", 750, 1),
                                                 ("breach", 1000, 1)]
    # The response target stays met by the first reply.
    assert desk.clock_of(incident, "response").met_at == utc(3, 2, 9, 5)


# -- 5. the response target -----------------------------------------------------------------------


def test_response_is_met_by_the_first_public_reply_not_a_note_or_status(desk):
    p = desk.p
    incident = desk.log(utc(3, 2, 9), impact="high", urgency="medium", assigned_team=p.database_team,
                        assigned_agent=p.assignee)
    desk.do(utc(3, 2, 9, 5), incidents.add_comment, incident.id, p.assignee, "Checking locks",
            public=False)
    desk.status(utc(3, 2, 9, 6), incident, "in_progress", p.assignee)
    assert desk.clock_of(incident, "response").met_at is None
    assert desk.check(utc(3, 2, 9, 15)) == 1  # 15 of 30 minutes: the response is at risk
    assert desk.events(incident) == [("response", "warning", 500, 1)]

    desk.reply(utc(3, 2, 9, 20), incident, p.assignee)
    desk.reply(utc(3, 2, 9, 25), incident, p.owner)
    assert desk.clock_of(incident, "response").met_at == utc(3, 2, 9, 20)
    assert desk.check(utc(3, 2, 10)) == 0
    assert desk.standing(incident, "response", utc(3, 2, 10)).state == "met"
    assert [e for e in desk.events(incident) if e[0] == "response"] == [("response", "warning", 500, 1)]


@pytest.mark.parametrize("extra_settings", [{"sla_response_met_by": "action"}])
def test_response_met_by_an_agent_action_when_configured(desk):
    p = desk.p
    incident = desk.log(utc(3, 2, 9), impact="high", urgency="medium", assigned_team=p.database_team)
    assert desk.clock_of(incident, "response").met_at is None
    desk.status(utc(3, 2, 9, 7), incident, "in_progress", p.assignee)
    assert desk.clock_of(incident, "response").met_at == utc(3, 2, 9, 7)
    assert desk.check(utc(3, 2, 10)) == 0
    assert desk.events(incident) == []


# -- 6. the check fires each event once, however it is run ---------------------------------------


def _many_p2(desk: Desk, count: int) -> list[Incident]:
    p = desk.p
    return [desk.log(utc(3, 2, 9), impact="high", urgency="medium", title=f"Orders {i}",
                     assigned_team=p.database_team, assigned_agent=p.assignee) for i in range(count)]


def _assert_each_once(desk: Desk, rows: list[Incident], expected: set[tuple[str, str, int]],
                      notices_expected: bool = True) -> None:
    for incident in rows:
        got = [(target, kind, point) for target, kind, point, _ in desk.events(incident)]
        assert sorted(got) == sorted(expected), incident.reference
        entries = [(e.field, e.new_value) for e in desk.sla_entries(incident)]
        assert sorted(entries) == sorted((t, k) for t, k, _ in expected)
        for agent in (desk.p.owner, desk.p.assignee):
            rows_for_agent = Delivery.select().where(
                (Delivery.incident == incident.id) & (Delivery.agent == agent.id)
                & Delivery.event.in_(["incident_sla_warning", "incident_sla_breached"]))
            assert rows_for_agent.count() == len(expected), "one outbox row per event and person"
            if notices_expected:
                assert len(desk.notices(agent, incident)) == len(expected)


def test_two_checks_at_once_in_threads_fire_each_event_once(desk, register_plugin):
    recorder = register_plugin(Recorder())
    rows = _many_p2(desk, 20)
    app, state = desk.app, desk.state

    def race(moment: dt.datetime) -> list[int]:
        desk.clock.set(moment)
        barrier = threading.Barrier(2, timeout=30)
        fired: list[int] = []
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                with app.app_context(), helpdesk.db.database.connection_context():
                    barrier.wait()
                    fired.append(sla.check(state, moment))
            except BaseException as error:  # reported below, in the test's thread
                errors.append(error)

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        assert len(fired) == 2
        return fired

    # Monday 15:00: every response (30 min) is breached, every resolution is 75 % used.
    assert sum(race(utc(3, 2, 15))) == 40
    _assert_each_once(desk, rows, {("response", "breach", 1000), ("resolution", "warning", 750)})
    # Monday 17:00: every resolution is breached.
    assert sum(race(utc(3, 2, 17))) == 20
    expected = {("response", "breach", 1000), ("resolution", "warning", 750),
                ("resolution", "breach", 1000)}
    _assert_each_once(desk, rows, expected)
    assert len(recorder.calls) == 60
    assert len(set(recorder.calls)) == 60


@pytest.mark.skipif(not PG_URL, reason="two processes racing need PostgreSQL; SQLite runs one "
                    "writer at a time (BEGIN IMMEDIATE) and the test database is a per-test file")
def test_two_check_processes_at_once_fire_each_event_once(desk, tmp_path):
    rows = _many_p2(desk, 20)
    others = {ep.name for ep in entry_points(group="helpdesk")} - {"business_hours", "sla_priority"}
    env = {
        **os.environ,
        "HELPDESK_DATABASE_URL": PG_URL,
        "HELPDESK_SECRET_KEY": "s" * 40,
        "HELPDESK_INSTANCE": str(tmp_path / "cli"),
        "HELPDESK_QUEUE_URL": "memory",
        "HELPDESK_TIME_ZONE": "Europe/London",
        "HELPDESK_DISABLED_PLUGINS": ",".join(sorted(others)),
    }
    command = [sys.executable, "-m", "helpdesk.cli", "sla", "check", "--at", "2026-03-02T15:00"]
    processes = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    fired = 0
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        fired += int(re.search(r"(\d+) SLA event\(s\) fired", out).group(1))
    assert fired == 40
    # The processes deliver at the real time, long after March: the warnings' moment has passed,
    # so they are recorded as expired rather than sent late; the outbox rows are counted instead.
    _assert_each_once(desk, rows, {("response", "breach", 1000), ("resolution", "warning", 750)},
                      notices_expected=False)


def test_a_crash_after_the_claim_rolls_back_and_the_rerun_fires_once(desk, register_plugin, monkeypatch):
    recorder = register_plugin(Recorder())
    rows = _many_p2(desk, 3)
    for incident in rows:
        desk.reply(utc(3, 2, 9, 5), incident)  # only the resolution clocks run
    real_emit = events.emit
    sla_emits = []

    def crashing_emit(ctx: Any, name: str, *args: Any, **kwargs: Any) -> None:
        # Inside the check's transaction, after the claim row, the clock, the timeline entry
        # and the queued plugin event were written, the worker dies.
        real_emit(ctx, name, *args, **kwargs)
        if name.startswith("incident_sla_"):
            sla_emits.append(name)
            if len(sla_emits) == 2:
                raise RuntimeError("worker died")

    monkeypatch.setattr(events, "emit", crashing_emit)
    with pytest.raises(RuntimeError, match="worker died"):
        desk.check(utc(3, 2, 13))
    first, second, third = rows
    assert resolution_events(desk, first) == [("warning", 500, 1)]
    for incident in (second, third):  # the claim went with the failed transaction
        assert desk.events(incident) == []
        assert desk.sla_entries(incident) == []
        assert desk.notices(incident=incident) == []
        assert desk.clock_of(incident).next_event_at == utc(3, 2, 13)
    assert recorder.calls == [(first.id, "resolution", "warning", 0.5)]

    assert desk.check(utc(3, 2, 13)) == 2
    assert desk.check(utc(3, 2, 13)) == 0
    for incident in rows:
        assert resolution_events(desk, incident) == [("warning", 500, 1)]
        assert len(desk.sla_entries(incident)) == 1
        assert len(desk.notices(desk.p.owner, incident)) == 1
        assert len(desk.notices(desk.p.assignee, incident)) == 1
    assert sorted(recorder.calls) == sorted((i.id, "resolution", "warning", 0.5) for i in rows)


# -- 7. stale warnings ------------------------------------------------------------------------------


def test_first_check_after_the_breach_records_only_the_breach(desk):
    p = desk.p
    incident = desk.log(utc(3, 2, 9), impact="high", urgency="medium", assigned_team=p.database_team,
                        assigned_agent=p.assignee)
    assert desk.check(utc(3, 2, 17, 30)) == 2
    assert sorted(desk.events(incident)) == [("resolution", "breach", 1000, 1),
                                             ("response", "breach", 1000, 1)]
    assert [e.new_value for e in desk.sla_entries(incident)] == ["breach", "breach"]
    assert all("breached" in n.text for n in desk.notices())
    assert desk.check(utc(3, 2, 17, 31)) == 0


def test_first_check_between_warnings_records_only_the_latest(desk):
    incident = desk.log(utc(3, 2, 9), impact="high", urgency="medium")
    desk.reply(utc(3, 2, 9, 5), incident)
    # 6.5 h of 8 used at 15:30: past 50 % and 75 %, short of 90 % (16:12).
    assert desk.check(utc(3, 2, 15, 30)) == 1
    assert resolution_events(desk, incident) == [("warning", 750, 1)]
    assert desk.check(utc(3, 2, 16, 11)) == 0
    assert desk.check(utc(3, 2, 16, 12)) == 1
    assert resolution_events(desk, incident) == [("warning", 750, 1), ("warning", 900, 1)]


# -- 8. the check reads only what is due --------------------------------------------------------


def test_check_query_count_does_not_grow_with_clocks_not_due(desk, count_queries):
    def add_quiet(when: dt.datetime, count: int) -> None:
        for i in range(count):  # P4: response 1 business day, 50 % four hours away
            desk.log(when, impact="low", urgency="low", title=f"Printer {i}")

    def measure(due_at: dt.datetime) -> int:
        count_queries.queries.clear()
        assert desk.check(due_at) == 1
        return len(count_queries.queries)

    first = desk.log(utc(3, 2, 9), impact="high", urgency="medium")
    add_quiet(utc(3, 2, 9), 5)
    assert desk.check(utc(3, 2, 9)) == 0  # the worker's first pass records the calendars it saw
    small = measure(utc(3, 2, 9, 15))  # the P2's response at 50 %
    desk.reply(utc(3, 2, 9, 15), first)

    desk.log(utc(3, 2, 9, 15), impact="high", urgency="medium")
    add_quiet(utc(3, 2, 9, 15), 45)
    large = measure(utc(3, 2, 9, 30))
    assert SlaClock.select().count() == 2 * 52
    assert large == small, "\n".join(count_queries.queries)


# -- 9. auto-close ---------------------------------------------------------------------------------


def test_close_resolved_closes_only_incidents_resolved_long_enough_ago(desk):
    old, older, recent, reopened = (
        desk.log(utc(3, 2, 9), impact="medium", urgency="medium", title=title)
        for title in ("old", "older", "recent", "reopened"))
    desk.status(utc(3, 2, 9, 30), older, "resolved", note="Fixed")
    desk.status(utc(3, 2, 10), old, "resolved", note="Fixed")
    desk.status(utc(3, 2, 10), reopened, "resolved", note="Fixed")
    desk.status(utc(3, 3, 10), reopened, "in_progress", note="Not fixed after all")
    desk.status(utc(3, 5, 10), recent, "resolved", note="Fixed")

    # Saturday 10:01: "old" was resolved 5 days and a minute ago, "recent" 2 days ago.
    closed = desk.do(utc(3, 7, 10, 1), incidents.close_resolved, 5)
    assert closed == [old.id, older.id]
    statuses = {i.id: i.status for i in Incident.select()}
    # Reopened with no assignee it went back to "new"; either way it stays open.
    assert statuses == {old.id: "closed", older.id: "closed", recent.id: "resolved",
                        reopened.id: "new"}
    assert Incident.get_by_id(old.id).closed_at == utc(3, 7, 10, 1)
    change = TimelineEntry.select().where((TimelineEntry.incident == old.id)
                                          & (TimelineEntry.field == "status")).order_by(
        TimelineEntry.id.desc()).first()
    assert (change.new_value, change.actor_id) == ("Closed", None)
    assert "5 days" in change.body
    # Closing keeps the resolution target met (it does not become "stopped").
    assert desk.standing(old, when=utc(3, 7, 11)).state == "met"
    assert desk.do(utc(3, 7, 10, 2), incidents.close_resolved, 5) == []
    # Two days later the recent one goes too.
    assert desk.do(utc(3, 10, 10, 1), incidents.close_resolved, 5) == [recent.id]


# -- 10. queues and the SLA panel ------------------------------------------------------------------


def _listed(response: Any) -> list[int]:
    return [int(i) for i in re.findall(r'<a href="/incidents/(\d+)"[^>]*>INC-\d+</a>',
                                       response.get_data(as_text=True))]


def _sla_panel(response: Any) -> str:
    page = response.get_data(as_text=True)
    start = page.index('<h2 id="sla-heading">SLA</h2>')
    return page[start:page.index("</section>", start)]


def test_at_risk_and_breached_queues_and_the_sla_panel(desk, login):
    p = desk.p
    db = {"assigned_team": p.database_team, "assigned_agent": p.assignee}
    # Friday's P2 was due at 09:30 (response) and 17:00 (resolution): breached by Monday.
    late = desk.log(utc(2, 27, 9), impact="high", urgency="medium", title="late", **db)
    assert desk.check(utc(3, 2, 9)) == 2
    # Nearest due on Monday: the response while it is open, otherwise the resolution.
    p4 = desk.log(utc(3, 2, 9), impact="low", urgency="low", title="p4", **db)  # response 17:00
    p1 = desk.log(utc(3, 2, 9), impact="high", urgency="high", title="p1", **db)
    desk.reply(utc(3, 2, 9), p1)  # response met; resolution 4 h around the clock: 13:00
    p3 = desk.log(utc(3, 2, 9, 30), impact="medium", urgency="medium", title="p3", **db)  # 13:30
    p2 = desk.log(utc(3, 2, 9, 40), impact="high", urgency="medium", title="p2", **db)  # 10:10
    theirs = desk.log(utc(3, 2, 9, 40), impact="high", urgency="medium", title="theirs",
                      actor=p.other)  # owned by the Network team
    desk.clock.set(utc(3, 2, 9, 45))

    owner = login(p.owner)
    at_risk = owner.get("/queues/at_risk")
    assert at_risk.status_code == 200
    assert _listed(at_risk) == [p2.id, p1.id, p3.id, p4.id]
    assert late.id not in _listed(at_risk) and theirs.id not in _listed(at_risk)

    breached = owner.get("/queues/breached")
    assert breached.status_code == 200
    assert _listed(breached) == [late.id]

    panel = _sla_panel(owner.get(f"/incidents/{p2.id}"))
    assert "2026-03-02 10:10" in panel  # response due (London = UTC in March)
    assert "2026-03-03 09:40" in panel  # resolution: 7 h 20 min Monday + 40 min Tuesday
    late_panel = _sla_panel(owner.get(f"/incidents/{late.id}"))
    assert "Breached" in late_panel and "2026-02-27 17:00" in late_panel



def test_a_response_met_after_its_breach_stays_on_the_breached_record(ctx, helpdesk_app, personas, login,
                                                                       incident_factory, frozen_clock):
    frozen_clock.set(dt.datetime(2026, 3, 9, 9, 0))  # Monday
    incident = incident_factory(title="Answered late", impact="high", urgency="medium")  # P2: 30 min
    state = helpdesk_app.extensions["helpdesk"]
    with helpdesk_app.app_context():
        sla.check(state, frozen_clock.advance(minutes=45))
        incidents.add_comment(ctx, incident.id, personas.owner, "Sorry for the wait", public=True)
    owner = login(personas.owner)
    assert f">{incident.reference}<" in owner.get("/queues/breached").get_data(as_text=True)
    page = owner.get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert "Response: Met late" in page
    # The resolution target still runs and is what puts the incident at risk.
    assert f">{incident.reference}<" in owner.get("/queues/at_risk").get_data(as_text=True)


def test_clocks_can_be_rederived_from_the_timeline_and_tampering_is_found(ctx, helpdesk_app, personas,
                                                                          incident_factory, frozen_clock):
    frozen_clock.set(dt.datetime(2026, 3, 5, 10, 0))  # Thursday
    incident = incident_factory(title="Audited", impact="medium", urgency="medium")  # P3
    state = helpdesk_app.extensions["helpdesk"]
    with helpdesk_app.app_context():
        incidents.assign(ctx, incident.id, personas.owner, personas.database_team, personas.assignee)
        frozen_clock.advance(hours=1)
        incidents.change_status(ctx, incident.id, personas.assignee, "in_progress")
        incidents.change_status(ctx, incident.id, personas.assignee, "pending", pending_reason="customer")
        frozen_clock.advance(days=1, hours=3)  # Friday 14:00, over the end of the day
        incidents.change_status(ctx, incident.id, personas.assignee, "in_progress")
        frozen_clock.advance(hours=2)
        incidents.add_comment(ctx, incident.id, personas.assignee, "Fixed, please check", public=True)
        incidents.change_status(ctx, incident.id, personas.assignee, "resolved", note="Index rebuilt")
        frozen_clock.advance(days=3)
        incidents.reopen(ctx, incident.id, personas.owner, note="Still slow")
        stored = {c.target: c for c in SlaClock.select().where(SlaClock.incident == incident.id)}
        assert stored["resolution"].paused_seconds > 0 and stored["response"].met_at is not None
        assert sla.audit(state, incident) == []
        SlaClock.update(paused_seconds=SlaClock.paused_seconds + 3600).where(
            (SlaClock.incident == incident.id) & (SlaClock.target == "resolution")).execute()
        (problem,) = sla.audit(state, incident)
    assert "resolution paused_seconds" in problem


def test_a_retarget_into_another_calendar_measures_the_pause_again(ctx, helpdesk_app, personas,
                                                                   incident_factory, frozen_clock):
    frozen_clock.set(dt.datetime(2026, 3, 9, 10, 0))  # Monday, P3 in business hours
    incident = incident_factory(title="Pending a day")
    state = helpdesk_app.extensions["helpdesk"]
    with helpdesk_app.app_context():
        incidents.change_status(ctx, incident.id, personas.owner, "pending", pending_reason="customer")
        frozen_clock.set(dt.datetime(2026, 3, 10, 10, 0))  # Tuesday 10:00
        incidents.change_status(ctx, incident.id, personas.owner, "in_progress")
        incidents.override_priority(ctx, incident.id, personas.owner, 1, "CEO affected")  # around the clock
        clock = SlaClock.get((SlaClock.incident == incident.id) & (SlaClock.target == "resolution"))
        assert clock.calendar is None and clock.paused_seconds == 24 * 3600
        assert sla.elapsed(state, clock, frozen_clock.now) == dt.timedelta(0)
        assert clock.due_at == dt.datetime(2026, 3, 10, 14, 0)  # 4 h from now, nothing lost
        assert sla.audit(state, Incident.get_by_id(incident.id)) == []


class _FlakyPolicy:
    """A policy whose targets fail while ``broken`` (its settings service was down, say)."""

    __name__ = "flaky_policy"
    broken = True

    def targets(self, ctx: Any, incident: Any) -> Any:
        from helpdesk.records import SlaTargets

        if _FlakyPolicy.broken:
            raise ConnectionError("tier service unreachable")
        return SlaTargets(response=dt.timedelta(hours=1), resolution=dt.timedelta(hours=8))

    @hookimpl
    def helpdesk_sla_policies(self) -> list[Any]:
        from helpdesk.records import SlaPolicy

        return [SlaPolicy("flaky", "Flaky", self.targets)]

    @hookimpl
    def helpdesk_sla_policy(self, incident: Any) -> str:
        return "flaky"


@pytest.mark.parametrize("helpdesk_plugins", [[business_hours, sla_priority, _FlakyPolicy()]])
def test_an_incident_logged_while_its_policy_failed_gets_its_clocks_at_the_next_change(desk):
    _FlakyPolicy.broken = True
    try:
        incident = desk.log(utc(3, 2, 9), impact="medium", urgency="medium")
        assert SlaClock.select().where(SlaClock.incident == incident.id).count() == 0
        _FlakyPolicy.broken = False
        desk.status(utc(3, 2, 9, 10), incident, "pending", pending_reason="customer")
        desk.status(utc(3, 2, 9, 40), incident, "in_progress")
        desk.do(utc(3, 2, 9, 45), incidents.override_priority, incident.id, desk.p.owner, 2, "Worse")
        response = desk.clock_of(incident, "response")  # from the start, with the pause kept
        assert (response.started_at, response.paused_seconds) == (utc(3, 2, 9), 30 * 60)
        assert response.due_at == utc(3, 2, 10, 30)  # 1 h around the clock + 30 min pending
        assert desk.check(utc(3, 2, 10, 31)) >= 1
        assert desk.standing(incident, "response").state == "breached"
    finally:
        _FlakyPolicy.broken = True


class _MisspeltCalendarPolicy:
    __name__ = "misspelt_calendar"

    @hookimpl
    def helpdesk_sla_policies(self) -> list[Any]:
        from helpdesk.records import SlaPolicy, SlaTargets

        return [SlaPolicy("office", "Office", lambda ctx, incident: SlaTargets(
            response=dt.timedelta(hours=1), resolution=dt.timedelta(hours=8), calendar="buisness"))]

    @hookimpl
    def helpdesk_sla_policy(self, incident: Any) -> str:
        return "office"


@pytest.mark.parametrize("helpdesk_plugins", [[business_hours, sla_priority, _MisspeltCalendarPolicy()]])
def test_a_policy_naming_a_calendar_nobody_registered_is_shown_to_admins(desk):
    from helpdesk.models import PluginFailure

    incident = desk.log(utc(3, 2, 9), impact="medium", urgency="medium")
    assert desk.clock_of(incident, "response").due_at == utc(3, 2, 10)  # around the clock, as said
    failure = PluginFailure.get()
    assert failure.plugin == "misspelt_calendar" and "'buisness' is not registered" in failure.error


class _NonsensePolicy:
    """A policy whose targets are of the right record but make no sense as durations."""

    __name__ = "nonsense_policy"
    targets: Any = None

    @hookimpl
    def helpdesk_sla_policies(self) -> list[Any]:
        from helpdesk.records import SlaPolicy

        return [SlaPolicy("nonsense", "Nonsense", lambda ctx, incident: _NonsensePolicy.targets)]

    @hookimpl
    def helpdesk_sla_policy(self, incident: Any) -> str:
        return "nonsense"


@pytest.mark.parametrize("helpdesk_plugins", [[business_hours, sla_priority, _NonsensePolicy()]])
@pytest.mark.parametrize(("response", "resolution", "calendar", "said"), [
    (dt.timedelta(minutes=-5), dt.timedelta(hours=8), None, "negative"),
    (dt.timedelta(days=10**8), None, None, "longer than"),
    (15, 60, None, "not a timedelta"),
    ("15m", None, None, "not a timedelta"),
    (dt.timedelta(hours=1), dt.timedelta(hours=8), 42, "calendar"),
], ids=["negative", "huge", "minutes-as-int", "string", "calendar-not-a-name"])
def test_an_incident_is_logged_without_an_sla_when_its_policy_gives_nonsense_targets(
        desk, login, response, resolution, calendar, said):
    from helpdesk.models import PluginFailure
    from helpdesk.records import SlaTargets

    _NonsensePolicy.targets = SlaTargets(response, resolution, calendar)
    incident = desk.log(utc(3, 2, 9), impact="medium", urgency="medium")
    assert Incident.get_by_id(incident.id).title == "Orders database slow"
    assert SlaClock.select().where(SlaClock.incident == incident.id).count() == 0
    failure = PluginFailure.get()
    assert failure.plugin == "nonsense_policy" and said in failure.error
    desk.reply(utc(3, 2, 9, 5), incident)  # later changes go through too
    assert desk.check(utc(3, 9, 9)) == 0
    page = login(desk.p.owner).get(f"/incidents/{incident.id}", follow_redirects=True)
    assert page.status_code == 200


class _SlowPolicy:
    """A policy that asks a contracts service over a slow link for every incident."""

    __name__ = "slow_contracts"

    @hookimpl
    def helpdesk_sla_policies(self) -> list[Any]:
        import time

        from helpdesk.records import SlaPolicy, SlaTargets

        def targets(ctx: Any, incident: Any) -> Any:
            time.sleep(0.6)
            return SlaTargets(dt.timedelta(hours=1), dt.timedelta(hours=8))

        return [SlaPolicy("contract", "Contract", targets)]

    @hookimpl
    def helpdesk_sla_policy(self, incident: Any) -> str:
        return "contract"


@pytest.mark.parametrize("helpdesk_plugins", [[business_hours, sla_priority, _SlowPolicy()]])
def test_a_policy_that_keeps_agents_waiting_is_named_on_the_plugins_page(desk):
    from helpdesk.models import PluginFailure

    incident = desk.log(utc(3, 2, 9), impact="medium", urgency="medium")
    assert desk.clock_of(incident, "response").policy == "contract"
    (failure,) = PluginFailure.select()
    assert (failure.plugin, failure.hook) == ("slow_contracts", "SlaPolicy('contract').targets")
    assert failure.error.startswith("SlowHook") and "logging or changing an incident" in failure.error


# -- 9. numbers that do not depend on when the check happened to run ---------------------------


def test_a_target_met_after_its_due_time_is_met_late_whether_or_not_a_check_ran(desk):
    p = desk.p
    # P2: the response is due within 30 minutes (09:30). No check runs before the replies.
    late = desk.log(utc(3, 2, 9), impact="high", urgency="medium")
    in_time = desk.log(utc(3, 2, 9), impact="high", urgency="medium")
    desk.reply(utc(3, 2, 9, 45), late)
    desk.reply(utc(3, 2, 9, 20), in_time)
    assert desk.standing(late, "response").state == "late"
    assert desk.clock_of(late, "response").breached_at == utc(3, 2, 9, 30)
    assert desk.standing(in_time, "response").state == "met"
    assert desk.clock_of(in_time, "response").breached_at is None
    # Met during a pause that began after the due time: late too, breached when it ran out.
    paused = desk.log(utc(3, 2, 9), impact="high", urgency="medium")
    desk.status(utc(3, 2, 9, 40), paused, "pending", pending_reason="customer")
    desk.reply(utc(3, 2, 10), paused, p.owner)
    assert desk.standing(paused, "response").state == "late"
    assert desk.clock_of(paused, "response").breached_at == utc(3, 2, 9, 30)
    # Nothing was sent after the fact: the target is met.
    assert desk.check(utc(3, 2, 10, 1)) == 0
    assert [e for e in desk.sla_entries() if e.new_value == "breach"] == []


def test_a_priority_changed_while_resolved_applies_when_the_incident_is_reopened(desk):
    p = desk.p
    # P3 on Monday 09:00 (3 business days), resolved at 10:00, raised to P1 (4 h around the
    # clock) at 11:00 while resolved, reopened at 12:00: 1 h worked + 2 h resolved (not counted)
    # -> due 15:00 on P1's target, not on P3's.
    incident = desk.log(utc(3, 2, 9), impact="medium", urgency="medium")
    desk.reply(utc(3, 2, 9, 5), incident)
    desk.status(utc(3, 2, 10), incident, "resolved", note="Restarted the service")
    desk.do(utc(3, 2, 11), incidents.override_priority, incident.id, p.owner, 1, "Whole site down")
    desk.status(utc(3, 2, 12), incident, "in_progress", note="Down again")
    clock = desk.clock_of(incident)
    assert (clock.target_seconds, clock.calendar, clock.due_at) == (4 * 3600, None, utc(3, 2, 15))
    assert desk.clock_of(incident, "response").met_at == utc(3, 2, 9, 5)  # judged as it was
    assert desk.check(utc(3, 2, 15)) == 1
    assert resolution_events(desk, incident)[-1][:2] == ("breach", 1000)


def test_a_priority_flip_back_to_the_same_due_time_does_not_repeat_the_breach(desk, register_plugin):
    recorder = register_plugin(Recorder())
    # P3: response 4 business hours from Monday 09:00 -> due 13:00, breached at the 13:05 check.
    incident = desk.log(utc(3, 2, 9), impact="medium", urgency="medium")
    assert desk.check(utc(3, 2, 13, 5)) == 1
    desk.do(utc(3, 2, 13, 10), incidents.override_priority, incident.id, desk.p.owner, 4, "Minor")
    assert desk.standing(incident, "response").state != "breached"  # P4: 8 business hours
    desk.do(utc(3, 2, 13, 15), incidents.override_priority, incident.id, desk.p.owner, 3, "No, back")
    assert desk.check(utc(3, 2, 13, 16)) == 0  # the same breach, for the same due time
    clock = desk.clock_of(incident, "response")
    assert (clock.due_at, clock.breached_at) == (utc(3, 2, 13), utc(3, 2, 13))
    assert desk.standing(incident, "response").state == "breached"
    breaches = [e for e in desk.sla_entries(incident) if e.new_value == "breach"]
    assert len(breaches) == 1
    sent = [call for call in recorder.calls if call[2] == "breach"]
    assert sent == [(incident.id, "response", "breach", None)]
    # A flip to a stricter target that is overdue too is no news either: the response target
    # stayed breached all along (an escalation's raise of priority re-targets exactly then).
    # Only the 8-hour resolution target, 54 % used, gives its 50 % warning.
    desk.do(utc(3, 2, 13, 20), incidents.override_priority, incident.id, desk.p.owner, 2, "Worse")
    assert desk.check(utc(3, 2, 13, 21)) == 1
    assert [(e.field, e.old_value) for e in desk.sla_entries(incident) if e.new_value == "breach"] == [
        ("response", "2026-03-02T13:00:00")]
    assert desk.standing(incident, "response").state == "breached"
    assert desk.clock_of(incident, "response").due_at == utc(3, 2, 9, 30)  # the new target's


def test_the_sla_panel_does_not_list_a_repeat_breach_as_fired(desk, login):
    # P3 breached at 13:00 (the 13:05 check tells it); P4 and back to P3: the 13:16 check claims
    # the same breach for the same due time again and sends nothing. The panel lists one breach
    # fired, and the repeat as not sent.
    incident = desk.log(utc(3, 2, 9), impact="medium", urgency="medium")
    assert desk.check(utc(3, 2, 13, 5)) == 1
    desk.do(utc(3, 2, 13, 10), incidents.override_priority, incident.id, desk.p.owner, 4, "Minor")
    desk.do(utc(3, 2, 13, 15), incidents.override_priority, incident.id, desk.p.owner, 3, "No, back")
    with desk.app.app_context():  # `sla check --dry-run` foresees what the check sends
        assert sla.preview(desk.state, utc(3, 2, 13, 16)) == []
    assert desk.check(utc(3, 2, 13, 16)) == 0
    assert [e[:2] for e in desk.events(incident) if e[0] == "response"] == [("response", "breach")] * 2
    panel = _sla_panel(login(desk.p.owner).get(f"/incidents/{incident.id}"))
    row = re.search(r'<th scope="row">Response .*?</tr>', panel, re.S).group(0)
    last_cell = r"<td>([^<]*)(<br><small[^>]*>(.*?)</small>)?</td>\s*</tr>"
    fired, _, unsent = re.search(last_cell, row, re.S).groups()
    assert fired == "breach (2026-03-02 13:05 GMT)"
    assert unsent == "Not sent, already announced for the same due time: breach (2026-03-02 13:16 GMT)"


def test_a_breach_is_announced_once_while_it_lasts_whatever_re_targets_it(desk, register_plugin):
    recorder = register_plugin(Recorder())
    # P3 breached at 13:00; raised to P2 and then P1 while overdue: one announcement. Lowered to
    # P4 (due 17:00: no longer breached), it breaches again at 17:00: that is news.
    incident = desk.log(utc(3, 2, 9), impact="medium", urgency="medium")
    assert desk.check(utc(3, 2, 13, 5)) == 1
    desk.do(utc(3, 2, 13, 10), incidents.override_priority, incident.id, desk.p.owner, 2, "Worse")
    desk.do(utc(3, 2, 13, 12), incidents.override_priority, incident.id, desk.p.owner, 1, "Much worse")
    desk.check(utc(3, 2, 13, 15))
    assert [call for call in recorder.calls if call[1:3] == ("response", "breach")] == [
        (incident.id, "response", "breach", None)]
    desk.do(utc(3, 2, 13, 20), incidents.override_priority, incident.id, desk.p.owner, 4, "Minor after all")
    assert desk.standing(incident, "response").state != "breached"
    desk.check(utc(3, 2, 17, 1))
    assert len([call for call in recorder.calls if call[1:3] == ("response", "breach")]) == 2


def test_a_kept_breach_is_not_announced_again_after_resolving_and_reopening(desk, register_plugin):
    recorder = register_plugin(Recorder())
    # P2: resolution due 17:00 (8 business hours); breached at 17:05; raised to P1 while
    # overdue (kept); resolved, reopened: the resolution breach was told once, and stays told.
    incident = desk.log(utc(3, 2, 9), impact="high", urgency="medium")
    desk.reply(utc(3, 2, 9, 5), incident)
    desk.check(utc(3, 2, 17, 5))
    desk.do(utc(3, 2, 17, 10), incidents.override_priority, incident.id, desk.p.owner, 1, "Worse")
    desk.status(utc(3, 2, 17, 20), incident, "resolved", note="Fixed")
    desk.status(utc(3, 2, 17, 30), incident, "in_progress", note="Down again")
    desk.check(utc(3, 2, 17, 35))
    assert [call for call in recorder.calls if call[1:3] == ("resolution", "breach")] == [
        (incident.id, "resolution", "breach", None)]


def test_a_pause_taken_after_the_target_ran_out_does_not_move_the_due_time(desk):
    # P2: response due 09:30. Breached at 09:31; pending (customer) 10:00-11:00; the due time
    # stays 09:30 (a pause after the target was used up gives it no more time).
    incident = desk.log(utc(3, 2, 9), impact="high", urgency="medium")
    assert desk.check(utc(3, 2, 9, 31)) >= 1
    desk.status(utc(3, 2, 10), incident, "pending", pending_reason="customer")
    desk.status(utc(3, 2, 11), incident, "in_progress")
    clock = desk.clock_of(incident, "response")
    assert (clock.due_at, clock.breached_at) == (utc(3, 2, 9, 30), utc(3, 2, 9, 30))
    assert clock.paused_seconds == 3600  # the hour pending still does not count as worked
    # A pause before the target ran out moves it: P4 (8 h) logged 10:00, pending 11:00-12:00,
    # raised to P2 (30 min) at 13:00: the 30 minutes ran out at 10:30, before the pause.
    later = desk.log(utc(3, 3, 10), impact="low", urgency="low")
    desk.status(utc(3, 3, 11), later, "pending", pending_reason="customer")
    desk.status(utc(3, 3, 12), later, "in_progress")
    desk.do(utc(3, 3, 13), incidents.override_priority, later.id, desk.p.owner, 2, "Worse")
    assert desk.clock_of(later, "response").due_at == utc(3, 3, 10, 30)
    # ... and a pause that came before the due time does move it.
    third = desk.log(utc(3, 4, 9), impact="high", urgency="medium")  # P2: due 09:30
    desk.status(utc(3, 4, 9, 10), third, "pending", pending_reason="customer")
    desk.status(utc(3, 4, 9, 40), third, "in_progress")
    assert desk.clock_of(third, "response").due_at == utc(3, 4, 10)


def test_a_target_that_ran_out_before_a_pause_no_check_saw_is_still_breached_and_announced(
        desk, login):
    # P1: resolution due 13:00 (4 h around the clock). The worker was down, or its minute had
    # not come: no check ran before the incident went pending at 14:00. The clock was shown
    # "Paused" with no due time, never announced, and missing from the Breached queue, while
    # the report counted it breached.
    p = desk.p
    incident = desk.log(utc(3, 2, 9), impact="high", urgency="high")
    desk.reply(utc(3, 2, 9, 10), incident)
    desk.status(utc(3, 2, 14), incident, "pending", pending_reason="customer")
    clock = desk.clock_of(incident)
    assert clock.due_at == utc(3, 2, 13)  # ran out before the pause: the due time stands
    assert desk.standing(incident, when=utc(3, 2, 14, 1)).state == "breached"
    assert desk.check(utc(3, 2, 14, 1)) == 1  # the next check announces it, once
    assert desk.check(utc(3, 2, 14, 2)) == 0
    assert resolution_events(desk, incident) == [("breach", 1000, 1)]
    assert desk.clock_of(incident).breached_at == utc(3, 2, 13)
    assert [n.agent_id for n in desk.notices(incident=incident)] == [p.owner.id]
    owner = login(p.owner)
    assert _listed(owner.get("/queues/breached")) == [incident.id]
    panel = _sla_panel(owner.get(f"/incidents/{incident.id}"))
    assert "Resolution: Breached" in panel and "2026-03-02 13:00" in panel
    # Back from pending, the due time does not move (the pause came after it).
    desk.status(utc(3, 2, 16), incident, "in_progress")
    assert desk.clock_of(incident).due_at == utc(3, 2, 13)
    assert desk.check(utc(3, 2, 16, 1)) == 0
    # A pause taken with time left is still just paused: nothing due, nothing fired.
    waiting = desk.log(utc(3, 3, 9), impact="high", urgency="high")
    desk.reply(utc(3, 3, 9, 5), waiting)
    desk.status(utc(3, 3, 10), waiting, "pending", pending_reason="customer")
    assert desk.clock_of(waiting).due_at is None
    assert desk.standing(waiting, when=utc(3, 3, 20)).state == "paused"
    assert desk.check(utc(3, 3, 20)) == 0


def test_a_breach_overnight_says_no_business_time_passed_not_that_it_just_ran_out(desk, login):
    # P2 logged Monday 09:00: resolution due 17:00. Read on Tuesday at 07:30, before the day's
    # hours, the Breached queue said "under a minute over", as if it had only just breached.
    incident = desk.log(utc(3, 2, 9), impact="high", urgency="medium")
    desk.reply(utc(3, 2, 9, 5), incident)
    desk.check(utc(3, 2, 17, 1))
    desk.clock.set(utc(3, 3, 7, 30))
    row = login(desk.p.owner).get("/queues/breached").get_data(as_text=True)
    assert '<time datetime="2026-03-02T17:00:00Z">' in row
    assert "under a business minute over" in row and "under a minute over" not in row


def test_a_paused_breach_left_by_an_older_version_is_reported_then_announced_after_the_upgrade(
        desk, login, tmp_path):
    # Before the rule above, the same story left the clock paused with no due time and nothing
    # scheduled: "Paused" for good, never announced. A database upgraded from then must not keep
    # it so, and `helpdesk sla audit` must say so meanwhile.
    p = desk.p
    incident = desk.log(utc(3, 2, 9), impact="high", urgency="high")
    desk.reply(utc(3, 2, 9, 10), incident)
    desk.status(utc(3, 2, 14), incident, "pending", pending_reason="customer")
    waiting = desk.log(utc(3, 2, 15), impact="high", urgency="high")  # paused with time left
    desk.reply(utc(3, 2, 15, 5), waiting)
    desk.status(utc(3, 2, 16), waiting, "pending", pending_reason="customer")
    with desk.app.app_context():  # as the older version wrote it
        SlaClock.update(due_at=None, next_event_at=None).where(
            (SlaClock.incident == incident.id) & (SlaClock.target == "resolution")).execute()
    assert desk.standing(incident, when=utc(3, 2, 16, 1)).state == "paused"
    assert desk.check(utc(3, 2, 16, 1)) == 0
    with desk.app.app_context():
        found = sla.audit(desk.state, Incident.get_by_id(incident.id))
        assert sla.audit(desk.state, Incident.get_by_id(waiting.id)) == []
    assert found == [f"{incident.reference} resolution breached_at: stored None, timeline says "
                     "2026-03-02 13:00:00 (the target ran out before the pause: breached, never announced)"]
    others = {ep.name for ep in entry_points(group="helpdesk")} - {"business_hours", "sla_priority"}
    env = {**os.environ, "HELPDESK_DATABASE_URL": desk.state.settings.database_url,
           "HELPDESK_SECRET_KEY": "s" * 40, "HELPDESK_INSTANCE": str(tmp_path / "cli"),
           "HELPDESK_QUEUE_URL": "memory", "HELPDESK_TIME_ZONE": "Europe/London",
           "HELPDESK_DISABLED_PLUGINS": ",".join(sorted(others))}
    audited = subprocess.run([sys.executable, "-m", "helpdesk.cli", "sla", "audit"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert audited.returncode == 1, audited.stderr
    assert found[0] in audited.stdout.splitlines()

    with desk.app.app_context():  # the upgrade hands the paused clocks to the check, once
        helpdesk.db.database.execute_sql(
            "DELETE FROM schema_migration WHERE name = '0034_sla_paused_overdue'")
        assert helpdesk.schema.upgrade(helpdesk.db.database) == ["0034_sla_paused_overdue"]
        assert sla.audit(desk.state, Incident.get_by_id(incident.id)) == []
        assert sla.preview(desk.state, utc(3, 2, 16, 2)) == [(incident.id, "resolution", "breach", 1000)]
    assert desk.check(utc(3, 2, 16, 2)) == 1
    assert desk.check(utc(3, 2, 16, 3)) == 0
    assert resolution_events(desk, incident) == [("breach", 1000, 1)]
    assert desk.clock_of(incident).breached_at == desk.clock_of(incident).due_at == utc(3, 2, 13)
    assert [n.agent_id for n in desk.notices(incident=incident)] == [p.owner.id]
    owner = login(p.owner)
    assert _listed(owner.get("/queues/breached")) == [incident.id]
    panel = _sla_panel(owner.get(f"/incidents/{incident.id}"))
    assert "Resolution: Breached" in panel and "2026-03-02 13:00" in panel
    # The clock paused with time left is just paused again: nothing due, nothing fired.
    assert desk.clock_of(waiting).due_at is None and desk.clock_of(waiting).next_event_at is None
    assert desk.events(waiting) == []
    assert desk.standing(waiting, when=utc(3, 2, 20)).state == "paused"


def test_a_calendar_change_moves_the_report_facts_with_the_due_times(desk):
    from helpdesk import site_settings
    from helpdesk.models import IncidentFact

    # P3 on Monday 09:00: resolution due Wednesday 17:00 (3 business days).
    incident = desk.log(utc(3, 2, 9), impact="medium", urgency="medium")
    desk.reply(utc(3, 2, 9, 5), incident)
    desk.check(utc(3, 2, 9, 10))  # the worker has seen the calendar
    assert IncidentFact.get_by_id(incident.id).resolution_breach_at == utc(3, 4, 17)
    longer_days = {day: "09:00-21:00" for day in ("mon", "tue", "wed", "thu", "fri")}
    desk.do(utc(3, 2, 10), site_settings.save, {"business_hours.hours": longer_days}, desk.p.admin)
    desk.check(utc(3, 2, 10, 1))  # re-timed: 12 h a day -> due Tuesday 21:00
    assert desk.clock_of(incident).due_at == utc(3, 3, 21)
    fact = IncidentFact.get_by_id(incident.id)
    assert (fact.resolution_breach_at, fact.next_breach_at) == (utc(3, 3, 21), utc(3, 3, 21))


def test_a_met_target_keeps_the_business_time_it_was_met_in_after_the_hours_change(desk, login):
    from helpdesk import reports, site_settings
    from helpdesk.models import IncidentFact

    # P3 logged Monday 09:00, answered 13:30: 4 h 30 of the 4 business hours -> met late.
    incident = desk.log(utc(3, 2, 9), impact="medium", urgency="medium")
    desk.check(utc(3, 2, 9, 1))  # the worker has seen the calendar
    desk.reply(utc(3, 2, 13, 30), incident)
    # The hours become 10:00-18:00: counted in them, 10:00-13:30 would be 3 h 30 and on time.
    later_days = {day: "10:00-18:00" for day in ("mon", "tue", "wed", "thu", "fri")}
    desk.do(utc(3, 2, 14), site_settings.save, {"business_hours.hours": later_days}, desk.p.admin)
    desk.check(utc(3, 2, 14, 1))
    desk.do(utc(3, 2, 14, 30), incidents.add_comment, incident.id, desk.p.owner, "Noted", public=False)

    panel = _sla_panel(login(desk.p.owner).get(f"/incidents/{incident.id}"))
    row = re.search(r'<th scope="row">Response .*?</tr>', panel, re.S).group(0)
    assert "Met late" in row and "<td>4 business hours 30 minutes</td>" in row
    live = IncidentFact.get_by_id(incident.id)
    assert (live.response_outcome, live.response_business_seconds) == ("late", 4 * 3600 + 1800)
    with desk.app.app_context():
        reports.rebuild(desk.state)
    rebuilt = IncidentFact.get_by_id(incident.id)
    assert (rebuilt.response_outcome, rebuilt.response_business_seconds) == ("late", 4 * 3600 + 1800)
    lead = reports.Scope(True, desk.p.lead.id)
    period = reports.Filters(dt.date(2026, 3, 1), dt.date(2026, 3, 31))
    [row_counts] = reports.compliance(period, lead, utc(3, 2, 15))
    assert row_counts.counts["response"] == {"met": 0, "late": 1, "breached": 0}
    assert reports.durations(period, lead)["response_business"].mean == 4 * 3600 + 1800


def test_a_target_met_part_of_a_second_late_is_late_on_the_page_and_in_every_report(desk, login):
    from helpdesk import reports
    from helpdesk.models import IncidentFact

    # P3 logged Monday 09:00: the response is due at 13:00; answered 13:00:00.4.
    incident = desk.log(utc(3, 2, 9), impact="medium", urgency="medium")
    desk.reply(utc(3, 2, 13) + dt.timedelta(milliseconds=400), incident)
    panel = _sla_panel(login(desk.p.owner).get(f"/incidents/{incident.id}"))
    assert "Met late" in re.search(r'<th scope="row">Response .*?</tr>', panel, re.S).group(0)
    assert IncidentFact.get_by_id(incident.id).response_outcome == "late"
    with desk.app.app_context():
        reports.rebuild(desk.state)
    assert IncidentFact.get_by_id(incident.id).response_outcome == "late"


def test_a_resolution_met_late_then_reopened_announces_its_breach_once(desk):
    # P2: 8 business hours from Monday 09:00 -> due 17:00. Resolved at 17:30 with no check
    # run in between (a cron-only install), reopened on Tuesday: the breach is announced then.
    incident = desk.log(utc(3, 2, 9), impact="high", urgency="medium")
    desk.reply(utc(3, 2, 9, 5), incident)
    desk.status(utc(3, 2, 17, 30), incident, "resolved", note="Rebooted")
    assert desk.standing(incident).state == "late"
    desk.status(utc(3, 3, 9), incident, "in_progress", note="Back again")
    assert desk.check(utc(3, 3, 9, 1)) == 1
    assert desk.check(utc(3, 3, 9, 2)) == 0
    assert [e.new_value for e in desk.sla_entries(incident)] == ["breach"]
    assert desk.standing(incident).state == "breached"
