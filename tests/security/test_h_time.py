"""H. Time: business-hours targets across a weekend and a holiday (H1), a 24/7 target across
spring-forward (H2), and a historical incident measured with the offset of its own day (H5).
Stored times are naive UTC, as the database keeps them.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from helpdesk import business_time as bt
from helpdesk.records import BusinessCalendar

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
WEEKDAYS = {d: (dt.time(9), dt.time(18)) for d in range(5)}


def utc(moment: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """A local wall-clock time as stored: naive UTC."""
    return moment.replace(tzinfo=zone).astimezone(dt.UTC).replace(tzinfo=None)


def local(stored: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    return stored.replace(tzinfo=dt.UTC).astimezone(zone).replace(tzinfo=None)


@pytest.mark.parametrize("holidays, due_local", [
    ((), dt.datetime(2026, 3, 9, 12, 30)),                      # Monday 12:30
    ((dt.date(2026, 3, 9),), dt.datetime(2026, 3, 10, 12, 30)),  # Monday a holiday: Tuesday
])
def test_h1_four_business_hours_from_friday_evening(holidays: tuple, due_local: dt.datetime) -> None:
    berlin = BusinessCalendar("berlin", "Berlin office", "Europe/Berlin", WEEKDAYS, frozenset(holidays))
    logged = utc(dt.datetime(2026, 3, 6, 17, 30), BERLIN)  # Friday 17:30
    due = bt.add(berlin, logged, dt.timedelta(hours=4))
    assert local(due, BERLIN) == due_local
    # "1 h before due" is 3 business hours in: the morning of the due day, never midnight
    warning = bt.add(berlin, logged, dt.timedelta(hours=3))
    assert local(warning, BERLIN) == due_local - dt.timedelta(hours=1)


def test_h2_around_the_clock_across_spring_forward_counts_real_hours() -> None:
    logged = utc(dt.datetime(2026, 3, 8, 1, 30), NEW_YORK)  # 01:30 EST, clocks jump at 02:00
    due = bt.add(None, logged, dt.timedelta(hours=2))
    assert due == dt.datetime(2026, 3, 8, 8, 30)  # stored 08:30Z
    assert local(due, NEW_YORK) == dt.datetime(2026, 3, 8, 4, 30)  # 04:30 EDT, not 05:30


def test_h5_a_winter_incident_measured_in_summer_uses_the_winter_offset() -> None:
    london = BusinessCalendar("london", "London office", "Europe/London",
                              {d: (dt.time(9), dt.time(17)) for d in range(5)})
    start = dt.datetime(2026, 1, 12, 9, 0)   # Monday 09:00 GMT = 09:00Z
    end = dt.datetime(2026, 1, 12, 17, 0)    # 17:00 GMT
    assert bt.between(london, start, end) == dt.timedelta(hours=8)
    summer = dt.datetime(2026, 7, 13, 8, 0)  # Monday 09:00 BST = 08:00Z
    assert bt.between(london, summer, summer + dt.timedelta(hours=8)) == dt.timedelta(hours=8)
    assert bt.between(london, start - dt.timedelta(hours=1), start) == dt.timedelta(0), \
        "08:00Z in January is before opening, whatever the offset in July"
