"""An "at the breach" level and a clock that stands paused: a target that ran out before the
pause was breached, and its level runs while the incident waits; a clock paused with time left
has no breach yet, and nothing runs until it runs again."""

from __future__ import annotations

import datetime as dt

from helpdesk import incidents, schema
from helpdesk.db import database
from helpdesk.models import SlaClock, SlaEvent

from .conftest import DUE, three_levels, utc

MINUTE = dt.timedelta(minutes=1)


def second_line_only() -> dict:
    policy = three_levels()
    policy["levels"] = policy["levels"][2:]  # the "at the breach" level alone
    return policy


def test_a_target_that_ran_out_before_a_pause_runs_its_breach_level_while_pending(desk):
    # The worker was down over the due time (Monday 16:30); at 16:40 the owner sets the
    # incident pending on the customer. The breach happened: the second line must take it
    # now, not whenever the customer answers.
    p = desk.p
    desk.policy(second_line_only())
    incident = desk.log_p2()
    desk.call(DUE + 10 * MINUTE, incidents.change_status, incident.id, p.owner, "pending",
              pending_reason="customer")
    assert desk.check(DUE + 11 * MINUTE) == 1
    assert [(level, at) for level, _v, at, _s in desk.runs(incident)] == [(1, DUE + 11 * MINUTE)]
    after = desk.fresh(incident)
    assert (after.assigned_team_id, after.status) == (p.network.id, "pending")
    assert desk.check(DUE + 20 * MINUTE) == 1  # once
    # Back from pending, it does not run again.
    desk.call(utc(3, 10, 10), incidents.change_status, incident.id, p.owner, "in_progress")
    assert desk.check(utc(3, 10, 10, 1)) == 1


def test_a_clock_paused_with_time_left_has_no_breach_and_runs_no_breach_level(desk):
    p = desk.p
    desk.policy(second_line_only())
    incident = desk.log_p2()
    # Pending from Monday 10:00 (1 h 30 min of 8 business hours used) to Tuesday 10:00.
    desk.call(utc(3, 9, 10), incidents.change_status, incident.id, p.owner, "pending",
              pending_reason="customer")
    for quiet in (DUE, DUE + dt.timedelta(hours=2), utc(3, 10, 9, 59)):
        assert desk.check(quiet) == 0, quiet
    assert "once its SLA clock runs" in desk.login_page(incident)
    desk.call(utc(3, 10, 10), incidents.change_status, incident.id, p.owner, "in_progress")
    # 6 h 30 min left from Tuesday 10:00: due Tuesday 16:30.
    assert desk.check(utc(3, 10, 16, 29)) == 0
    assert desk.check(utc(3, 10, 16, 30)) == 1
    assert desk.fresh(incident).assigned_team_id == p.network.id


def test_a_paused_breach_left_by_an_older_version_runs_its_level_after_the_upgrade(desk):
    # An older version paused the clock after its target ran out without marking anything:
    # no due time, no next event, and the escalation state looking at nothing.
    p = desk.p
    desk.policy(second_line_only())
    incident = desk.log_p2()
    desk.call(DUE + 10 * MINUTE, incidents.change_status, incident.id, p.owner, "pending",
              pending_reason="customer")
    with desk.app.app_context():
        SlaClock.update(due_at=None, next_event_at=None).where(SlaClock.incident == incident.id).execute()
        from helpdesk.models import EscalationState

        EscalationState.update(next_at=None).where(EscalationState.incident == incident.id).execute()
    assert desk.check(DUE + 11 * MINUTE) == 0  # nothing looks at it before the upgrade
    with desk.app.app_context():
        database.execute_sql("DELETE FROM schema_migration WHERE name = '0034_sla_paused_overdue'")
        assert schema.upgrade(database) == ["0034_sla_paused_overdue"]
    assert desk.check(DUE + 12 * MINUTE) == 1
    announced = SlaEvent.select().where(SlaEvent.incident == incident.id)
    assert sorted((e.target, e.kind) for e in announced) == [("resolution", "breach"), ("response", "breach")]
    assert desk.fresh(incident).assigned_team_id == p.network.id
    assert desk.check(DUE + 13 * MINUTE) == 1
