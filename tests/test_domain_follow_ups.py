"""The follow-ups of each change, derived in one place: how the SLA clocks move, which plugin
events fire in which order, and which outbox rows are written — with the context passed
explicitly and the SLA plugins loaded, as installed."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from helpdesk import hookimpl, incidents
from helpdesk.models import Delivery, Incident, SlaClock


@pytest.fixture
def helpdesk_bundled_plugins():
    return ["sla_priority", "business_hours"]


class Events:
    """Records every event hook call, in order."""

    def __init__(self) -> None:
        self.fired: list[str] = []

    def _note(self, name: str) -> None:
        self.fired.append(name)

    @hookimpl
    def incident_assigned(self) -> None:
        self._note("assigned")

    @hookimpl
    def incident_owner_changed(self, reason: str) -> None:
        self._note(f"owner_changed:{reason}")

    @hookimpl
    def incident_status_changed(self, old_status: str, new_status: str) -> None:
        self._note(f"status:{old_status}>{new_status}")

    @hookimpl
    def incident_resolved(self) -> None:
        self._note("resolved")

    @hookimpl
    def incident_reopened(self) -> None:
        self._note("reopened")

    @hookimpl
    def incident_closed(self) -> None:
        self._note("closed")


@pytest.fixture
def world(ctx, helpdesk_app, personas, incident_factory, frozen_clock, register_plugin):
    """A P1 (around the clock) incident owned by John, worked by Priya, events recorded."""
    recorder = register_plugin(Events())
    incident = incident_factory(title="Payroll down", impact="high", urgency="high")
    with helpdesk_app.app_context():
        incidents.assign(ctx, incident.id, personas.owner, personas.database_team, personas.assignee)
        incidents.change_status(ctx, incident.id, personas.assignee, "in_progress")
    recorder.fired.clear()

    class World:
        def do(self, change: Any, *args: Any, **kwargs: Any) -> Incident:
            with helpdesk_app.app_context():
                return change(ctx, incident.id, *args, **kwargs)

        def clock(self, target: str) -> SlaClock:
            return SlaClock.get((SlaClock.incident == incident.id) & (SlaClock.target == target))

        def rows(self) -> list[tuple[str, str, str]]:
            """(agent's username or the recipient, channel, kind) of each outbox row so far."""
            return [(row.agent.username if row.agent else row.recipient, row.channel,
                     json.loads(row.data)["kind"]) for row in
                    Delivery.select().where(Delivery.incident == incident.id).order_by(Delivery.id)]

    world = World()
    world.incident, world.events, world.time = incident, recorder.fired, frozen_clock
    world.p = personas
    return world


def test_pending_pauses_the_resolution_clock_and_tells_nobody(world):
    before = world.rows()
    world.time.advance(minutes=10)
    world.do(incidents.change_status, world.p.assignee, "pending", pending_reason="customer")
    resolution = world.clock("resolution")
    assert resolution.paused_at == world.time.now and resolution.next_event_at is None
    response = world.clock("response")
    assert response.met_at is None and response.paused_at == world.time.now, "no reply yet: paused too"
    assert world.events == ["status:in_progress>pending"]
    assert world.rows() == before


def test_resuming_counts_the_pause_and_moves_the_due_time(world):
    due = world.clock("resolution").due_at
    world.do(incidents.change_status, world.p.assignee, "pending", pending_reason="customer")
    world.time.advance(minutes=30)
    world.do(incidents.change_status, world.p.assignee, "in_progress")
    resolution = world.clock("resolution")
    assert resolution.paused_at is None and resolution.paused_seconds == 1800
    assert resolution.due_at == due + dt.timedelta(minutes=30)
    assert world.events == ["status:in_progress>pending", "status:pending>in_progress"]


def test_resolving_meets_both_targets_and_tells_the_owner(world):
    world.time.advance(hours=1)
    world.do(incidents.change_status, world.p.assignee, "resolved", note="Restarted the service")
    assert world.clock("response").met_at is not None
    resolution = world.clock("resolution")
    assert resolution.met_at == world.time.now and resolution.next_event_at is None
    assert world.events == ["status:in_progress>resolved", "resolved"]
    assert ("john", "inapp", "resolved") in world.rows()
    assert not [row for row in world.rows() if row[0] == "priya" and row[2] == "resolved"], \
        "the one who resolved it is not told"


def test_reopening_resumes_the_resolution_clock_where_it_stood(world):
    world.do(incidents.change_status, world.p.assignee, "resolved", note="Restarted")
    world.time.advance(hours=2)
    world.do(incidents.reopen, world.p.owner, note="Down again")
    resolution = world.clock("resolution")
    assert resolution.met_at is None and resolution.paused_at is None
    assert resolution.paused_seconds == 7200, "the time while resolved does not count"
    assert resolution.next_event_at is not None
    assert world.events == ["status:in_progress>resolved", "resolved", "status:resolved>in_progress",
                            "reopened"]


def test_closing_keeps_met_targets_met(world):
    world.do(incidents.change_status, world.p.assignee, "resolved", note="Restarted")
    world.do(incidents.change_status, world.p.owner, "closed")
    assert world.clock("resolution").stopped_at is None and world.clock("resolution").met_at is not None
    assert world.events[-2:] == ["status:resolved>closed", "closed"]


def test_cancelling_stops_the_running_clocks(world):
    world.do(incidents.change_status, world.p.owner, "cancelled", note="Raised twice")
    resolution = world.clock("resolution")
    assert resolution.stopped_at == world.time.now and resolution.next_event_at is None
    assert world.events == ["status:in_progress>cancelled"]


def test_a_duplicate_link_cancels_counts_as_an_action_and_stops_the_clocks(world, incident_factory):
    original = incident_factory(title="Payroll down (first report)")
    world.do(incidents.link, world.p.owner, "duplicate_of", original.id)
    assert world.clock("resolution").stopped_at == world.time.now
    assert world.events == ["status:in_progress>cancelled"]


def test_reassigning_tells_the_new_assignee_and_the_owner_in_that_order_of_events(world):
    before = len(world.rows())
    world.do(incidents.assign, world.p.colleague, world.p.network, world.p.other)
    assert world.events == ["assigned"]
    assert world.rows()[before:] == [("kofi", "inapp", "assigned"), ("john", "inapp", "reassigned")]


def test_a_priority_override_retargets_and_fires_no_event(world):
    target = world.clock("resolution").target_seconds
    world.do(incidents.override_priority, world.p.lead, 3, "Only one user affected")
    assert world.clock("resolution").target_seconds > target
    assert world.clock("resolution").cycle == 2
    assert world.events == []


@pytest.mark.parametrize("helpdesk_settings", [{"sla_response_met_by": "action"}])
def test_taking_an_unowned_incident_meets_the_response_target_when_actions_count(ctx, helpdesk_app, personas,
                                                            incident_factory, register_plugin):
    recorder = register_plugin(Events())
    incident = incident_factory(impact="high", urgency="high", keep_ownership=False)
    response = SlaClock.get((SlaClock.incident == incident.id) & (SlaClock.target == "response"))
    assert response.met_at is None
    with helpdesk_app.app_context():
        incidents.take_ownership(ctx, incident.id, personas.colleague)
    assert SlaClock.get_by_id(response.id).met_at is not None
    assert recorder.fired == ["owner_changed:taken"]
