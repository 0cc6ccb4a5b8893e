"""An escalation level timed by an SLA clock follows the clock when the admin widens the
calendar's hours: the level runs at the new moment, once (SECURITY-CASES H7). A calendar
counts as changed only when its definition changed, not when a new year begins."""

from __future__ import annotations

import datetime as dt

from helpdesk import incidents, site_settings
from helpdesk.models import SlaCalendar, SlaClock, TimelineEntry

from .conftest import LOGGED, three_levels, utc


def test_wider_hours_bring_the_owner_review_forward_and_it_runs_once(desk):
    desk.policy(three_levels())
    incident = desk.log_p2()  # Friday 16:30; with 09:00-17:00 the 75 % review is Monday 14:30
    desk.check(LOGGED)  # the worker has seen the calendar
    desk.call(LOGGED, site_settings.save,
              {"business_hours.hours": {d: "09:00-21:00" for d in ("mon", "tue", "wed", "thu", "fri")}},
              desk.p.admin)
    desk.check(utc(3, 6, 16, 31))  # re-timed: 4 h 30 on Friday, 1 h 30 on Monday → 75 % at 10:30
    assert desk.check(utc(3, 9, 10, 29)) == 0
    assert desk.check(utc(3, 9, 10, 30)) == 1
    assert desk.check(utc(3, 9, 10, 31)) == 1, "never twice"
    assert [(level, at) for level, _version, at, _state in desk.runs(incident)] == [(1, utc(3, 9, 10, 30))]


def test_a_new_year_alone_does_not_count_as_a_calendar_change(desk, caplog):
    def clock(target: str = "response") -> SlaClock:
        return SlaClock.get((SlaClock.incident == incident.id) & (SlaClock.target == target))

    def recomputed() -> list[str]:
        return [e.field for e in TimelineEntry.select().where((TimelineEntry.incident == incident.id)
                                                                & (TimelineEntry.new_value == "retimed"))]

    def said_changed() -> bool:
        return any("changed" in r.getMessage() for r in caplog.records if r.name == "helpdesk.sla")

    christmas = ["2026-12-25", "2026-12-28", "2027-12-27", "2027-12-28"]
    desk.call(dt.datetime(2027, 12, 1), site_settings.save, {"business_hours.holidays": christmas},
              desk.p.admin)
    # A P4 logged Friday 31 December 2027 16:00 (London = UTC in winter): 1 h on Friday, 7 h from
    # Monday 3 January 09:00 -> response due Monday 16:00.
    incident = desk.call(dt.datetime(2027, 12, 31, 16), incidents.log_incident, title="Badge reader",
                         actor=desk.p.owner, service_desk=desk.p.service_desk, impact="low", urgency="low")
    desk.check(dt.datetime(2027, 12, 31, 16, 1))  # the worker sees the calendar in 2027
    assert clock().due_at == dt.datetime(2028, 1, 3, 16)
    # New year: the years compared move (2026 leaves them); the calendar is the same.
    desk.check(dt.datetime(2028, 1, 1, 0, 1))
    assert not said_changed() and recomputed() == []
    assert SlaCalendar.get_by_id("business").seen_at == dt.datetime(2028, 1, 1, 0, 1)  # seen anew
    desk.check(dt.datetime(2028, 1, 1, 0, 2))
    assert not said_changed()
    # An admin makes Monday 3 January a holiday: that is a change, and the due time moves a day.
    desk.call(dt.datetime(2028, 1, 1, 10), site_settings.save,
              {"business_hours.holidays": [*christmas, "2028-01-03"]}, desk.p.admin)
    desk.check(dt.datetime(2028, 1, 1, 10, 1))
    assert said_changed() and sorted(recomputed()) == ["resolution", "response"]
    assert clock().due_at == dt.datetime(2028, 1, 4, 16)


def test_a_calendar_seen_before_the_upgrade_is_judged_by_its_old_fingerprint(desk, caplog):
    from helpdesk import sla
    from helpdesk.db import write_transaction

    def said_changed() -> bool:
        return any("changed" in r.getMessage() for r in caplog.records if r.name == "helpdesk.sla")

    desk.call(dt.datetime(2027, 12, 1), site_settings.save, {"business_hours.holidays": ["2026-12-25"]},
              desk.p.admin)
    calendar = desk.ctx.registry.business_calendars["business"]
    with write_transaction():  # as a check before migration 0031 left it, in 2027
        SlaCalendar.create(name="business", fingerprint=sla.calendar_fingerprint(calendar, 2027),
                           seen_at=dt.datetime(2027, 6, 1))
    desk.check(dt.datetime(2028, 1, 1, 0, 1))
    assert not said_changed()
    assert SlaCalendar.get_by_id("business").definition is not None  # recorded in the new form
    with write_transaction():  # a fingerprint of other hours: a change made while upgrading
        SlaCalendar.update(fingerprint="0" * 64, definition=None).execute()
    desk.check(dt.datetime(2028, 1, 1, 0, 2))
    assert said_changed()


def test_processes_started_in_different_years_agree_on_a_country_calendar():
    """A country's holidays are loaded for a few years around a process's start. In 2028, one
    process started in 2026 (holidays 2025-2029) and one started in 2028 (2027-2031) must not
    take each other's sighting for a change (each check would re-time every open clock)."""
    from helpdesk import sla
    from helpdesk.records import BusinessCalendar

    def country(started: int) -> BusinessCalendar:
        years = (started - 1, started + 3)
        holidays = frozenset(dt.date(year, month, day) for year in range(years[0], years[1] + 1)
                             for month, day in ((1, 1), (12, 25)))
        return BusinessCalendar("business", "Business", "Europe/London", {0: (dt.time(9), dt.time(17))},
                                holidays, holiday_years=years)

    old, new = (sla.calendar_definition(country(started), 2028) for started in (2026, 2028))
    assert not sla.calendar_changed(old, new) and not sla.calendar_changed(new, old)
    # A list of holidays typed in is known whole: one added for a later year is a change.
    typed = BusinessCalendar("business", "Business", "Europe/London", {0: (dt.time(9), dt.time(17))},
                             frozenset({dt.date(2028, 12, 25)}))
    more = BusinessCalendar("business", "Business", "Europe/London", {0: (dt.time(9), dt.time(17))},
                            frozenset({dt.date(2028, 12, 25), dt.date(2029, 1, 2)}))
    assert sla.calendar_changed(sla.calendar_definition(typed, 2028), sla.calendar_definition(more, 2028))
