"""The seed scenario through three levels, acknowledge + snooze, manual escalation and a policy
edit mid-flight, as the owner, the lead and the second line would notice them."""

from __future__ import annotations

import datetime as dt

import pytest

from helpdesk.errors import DomainError, PermissionDenied
from helpdesk.escalation import engine

from .conftest import AT75, AT90, DUE, LOGGED, three_levels, utc

SECOND = dt.timedelta(seconds=1)


def test_a_p2_logged_friday_afternoon_escalates_three_times_on_monday(desk):
    p = desk.p
    desk.policy(three_levels())
    incident = desk.log_p2()
    # Nothing over the weekend, nor a second before 75 %.
    for quiet in (LOGGED + dt.timedelta(hours=1), utc(3, 7, 12), utc(3, 8, 23), AT75 - SECOND):
        assert desk.check(quiet) == 0, quiet
    assert desk.fresh(incident).escalation_level == 0

    assert desk.check(AT75) == 1
    assert desk.runs(incident) == [(1, 1, AT75, "done")]
    assert desk.fresh(incident).escalation_level == 1
    to_owner = desk.deliveries(incident, p.owner)
    assert len(to_owner) == 1 and "level 1" in to_owner[0].subject and to_owner[0].created_at == AT75
    assert desk.deliveries(incident, p.lead) == []

    assert desk.check(AT90 - SECOND) == 1
    assert desk.check(AT90) == 2
    lead_mail = desk.deliveries(incident, p.lead)
    assert len(lead_mail) == 1 and "Please step in." in lead_mail[0].text
    assert len(desk.deliveries(incident, p.owner)) == 1  # the owner is not told twice
    assert desk.fresh(incident).assigned_team_id == p.database_team.id

    assert desk.check(DUE - SECOND) == 2
    assert desk.check(DUE) == 3
    after = desk.fresh(incident)
    assert (after.assigned_team_id, after.assigned_agent_id) == (p.network.id, None)
    assert after.escalation_level == 3
    for again in (DUE, DUE + dt.timedelta(minutes=5), DUE + dt.timedelta(days=2)):
        assert desk.check(again) == 3
    assert desk.runs(incident) == [(1, 1, AT75, "done"), (2, 1, AT90, "done"), (3, 1, DUE, "done")]
    levels = [(e.field, e.new_value, e.at) for e in desk.escalation_entries(incident) if e.field == "level"]
    assert levels == [("level", "1", AT75), ("level", "2", AT90), ("level", "3", DUE)]
    steps = [e.body for e in desk.escalation_entries(incident) if e.field == "steps"]
    assert steps[-1] == "Level 3: reassigned to Network"


def test_a_policy_only_applies_to_the_incidents_its_conditions_name(desk):
    desk.policy(three_levels(conditions={"priority": [1]}))
    incident = desk.log_p2()
    assert desk.check(DUE + dt.timedelta(hours=1)) == 0
    assert desk.fresh(incident).escalation_level == 0


def test_the_worker_down_over_two_levels_runs_only_the_latest_once(desk):
    desk.policy(three_levels())
    incident = desk.log_p2()
    assert desk.check(AT90 + dt.timedelta(minutes=5)) == 1  # back after 75 % and 90 % passed
    assert [(level, state) for level, _, _, state in desk.runs(incident)] == [(2, "done")]
    assert desk.deliveries(incident, desk.p.owner) == []
    assert len(desk.deliveries(incident, desk.p.lead)) == 1
    assert "skipped level 1" in desk.escalation_entries(incident)[0].body


def test_acknowledge_and_snooze_hold_automatic_levels_then_the_latest_runs(desk):
    p = desk.p
    desk.policy(three_levels())
    incident = desk.log_p2()
    desk.check(AT75)
    with pytest.raises(PermissionDenied):
        desk.call(AT75, engine.acknowledge, incident.id, p.assignee, "on it")
    with pytest.raises(DomainError, match="reason"):
        desk.call(AT75, engine.acknowledge, incident.id, p.owner, "  ")
    state = desk.call(AT75 + dt.timedelta(minutes=5), engine.acknowledge, incident.id, p.owner,
                      "Calling the vendor", snooze=dt.timedelta(hours=3))
    assert state.acknowledged_level == 1
    assert state.snoozed_until == AT75 + dt.timedelta(hours=3, minutes=5)
    entry = desk.escalation_entries(incident)[-1]
    assert entry.field == "acknowledged" and entry.actor_id == p.owner.id
    assert "Calling the vendor" in entry.body and "snoozed until" in entry.body
    # 90 % and the breach pass while snoozed: nothing runs.
    assert desk.check(AT90) == 1
    assert desk.check(DUE) == 1
    # The snooze ends at 17:35: only the latest reached level (3) runs, once.
    assert desk.check(AT75 + dt.timedelta(hours=3, minutes=5)) == 2
    assert [r[0] for r in desk.runs(incident)] == [1, 3]
    assert desk.deliveries(incident, p.lead) == []
    assert desk.fresh(incident).assigned_team_id == p.network.id


def test_manual_escalation_runs_the_next_level_now_and_automatic_ones_go_on_from_there(desk):
    p = desk.p
    desk.policy(three_levels())
    incident = desk.log_p2()
    with pytest.raises(DomainError, match="reason"):
        desk.escalate(utc(3, 9, 10), incident, p.colleague, "")
    fired = desk.escalate(utc(3, 9, 10), incident, p.colleague, "Customer's CEO called")
    assert (fired.level, fired.manual) == (1, True)
    run_entry = desk.escalation_entries(incident)[0]
    assert run_entry.actor_id == p.colleague.id and "Customer's CEO called" in run_entry.body
    assert len(desk.deliveries(incident, p.owner)) == 1
    # Level 1's moment (75 %) passes without a second run; level 2 comes at 90 % as planned.
    assert desk.check(AT75) == 1
    assert desk.check(AT90) == 2
    desk.escalate(utc(3, 9, 16), incident, p.owner, "Database team stuck")
    assert desk.fresh(incident).assigned_team_id == p.network.id
    with pytest.raises(DomainError, match="last level"):
        desk.escalate(utc(3, 9, 16, 5), incident, p.owner, "again")
    assert desk.check(DUE) == 3


def test_a_policy_edit_mid_flight_never_reruns_a_level_and_applies_from_the_next(desk):
    p = desk.p
    desk.policy(three_levels())
    incident = desk.log_p2()
    desk.check(AT75)
    # The edit moves the lead's level to 80 % and tells the Database lead before the breach's
    # reassignment (steps run in order).
    edited = three_levels()
    edited["levels"][1]["fraction"] = 0.8
    edited["levels"][2]["steps"].insert(0, {"step": "notify_assigned_team_leads"})
    desk.clock.set(AT75 + dt.timedelta(minutes=1))
    assert desk.policy(edited, p.admin).version == 2
    at80 = utc(3, 9, 14, 54)  # 6 h 24 min of working time
    assert desk.check(at80 - SECOND) == 1
    assert desk.check(at80) == 2
    assert desk.check(DUE) == 3
    assert desk.runs(incident) == [(1, 1, AT75, "done"), (2, 2, at80, "done"), (3, 2, DUE, "done")]
    assert len(desk.deliveries(incident, p.owner)) == 1
    assert len(desk.deliveries(incident, p.db_lead)) == 1


def test_incidents_logged_before_any_policy_or_state_existed_are_picked_up_when_one_is_saved(desk):
    from helpdesk.models import EscalationState

    incident = desk.log_p2()
    EscalationState.delete().execute()  # as after the upgrade that brought escalation
    desk.clock.set(LOGGED + dt.timedelta(hours=1))
    desk.policy(three_levels())
    assert desk.check(AT75) == 1
    assert desk.runs(incident) == [(1, 1, AT75, "done")]


def test_plugins_hear_of_each_level_once_automatic_or_by_hand(desk, register_plugin):
    from helpdesk import hookimpl

    heard = []

    class Listener:
        @hookimpl
        def incident_escalated(self, incident, actor, level, policy, version, manual):
            heard.append((incident.id, actor.id if actor else None, level, policy, version, manual))

    register_plugin(Listener())
    desk.policy(three_levels())
    incident = desk.log_p2()
    desk.check(AT75)
    desk.check(AT75)
    desk.escalate(AT75 + dt.timedelta(minutes=1), incident, desk.p.owner, "Customer waiting")
    desk.check(DUE)
    assert heard == [(incident.id, None, 1, "standard", 1, False),
                     (incident.id, desk.p.owner.id, 2, "standard", 1, True),
                     (incident.id, None, 3, "standard", 1, False)]


def test_time_pending_moves_the_next_level_later_and_resolving_stops_it(desk):
    from helpdesk import incidents

    p = desk.p
    desk.policy(three_levels())
    incident = desk.log_p2()
    desk.call(utc(3, 9, 10), incidents.change_status, incident.id, p.owner, "pending",
              pending_reason="customer")
    assert "Next: level 1 (Owner reviews), once its SLA clock runs." in desk.login_page(incident)
    assert desk.check(AT75) == 0
    desk.call(utc(3, 9, 12), incidents.change_status, incident.id, p.owner, "in_progress")
    # Two business hours pending: 75 % comes at 16:30 instead of 14:30.
    assert desk.check(utc(3, 9, 16, 29)) == 0
    assert desk.check(utc(3, 9, 16, 30)) == 1
    desk.call(utc(3, 9, 16, 40), incidents.change_status, incident.id, p.owner, "resolved",
              resolution_code="fixed", note="Index rebuilt")
    assert desk.check(utc(3, 10, 17)) == 1  # nothing more once service is restored
