"""An escalation level timed by an SLA clock follows the clock when the admin widens the
calendar's hours: the level runs at the new moment, once (SECURITY-CASES H7)."""

from __future__ import annotations

from helpdesk import site_settings

from .conftest import LOGGED, three_levels, utc


def test_wider_hours_bring_the_owner_review_forward_and_it_runs_once(desk):
    desk.policy(three_levels())
    incident = desk.log_p2()  # Friday 16:30; with 09:00-17:00 the 75 % review is Monday 14:30
    desk.check(LOGGED)  # the worker has seen the calendar
    desk.call(LOGGED, site_settings.save,
              {"business_hours.hours": {d: "09:00-21:00" for d in ("mon", "tue", "wed", "thu", "fri")}},
              desk.p.lead)
    desk.check(utc(3, 6, 16, 31))  # re-timed: 4 h 30 on Friday, 1 h 30 on Monday → 75 % at 10:30
    assert desk.check(utc(3, 9, 10, 29)) == 0
    assert desk.check(utc(3, 9, 10, 30)) == 1
    assert desk.check(utc(3, 9, 10, 31)) == 1, "never twice"
    assert [(level, at) for level, _version, at, _state in desk.runs(incident)] == [(1, utc(3, 9, 10, 30))]
