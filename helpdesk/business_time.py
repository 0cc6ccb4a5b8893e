"""Business-time arithmetic over a :class:`~helpdesk.records.BusinessCalendar`.

All instants are naive UTC (as stored). Working windows are defined in the
calendar's local wall time and turned into real instants with ``zoneinfo``, so
durations are real elapsed time inside working hours: across a DST change each
real instant counts once (a fall-back night shift is an hour longer, a
spring-forward one an hour shorter), and a window whose closing time is not
after its opening time runs past midnight into the next day. Holidays are
local dates; a window that opens on a holiday does not open. ``None`` as the
calendar means around the clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

from helpdesk.records import BusinessCalendar

_HORIZON_DAYS = 366 * 3  # a calendar closed this long fails instead of looping forever


class CalendarError(ValueError):
    """The calendar cannot produce working time (no working hours at all)."""


def _instant(day: dt.date, moment: dt.time, zone: ZoneInfo) -> dt.datetime:
    local = dt.datetime.combine(day, moment, tzinfo=zone)
    return local.astimezone(dt.UTC).replace(tzinfo=None)


def windows(calendar: BusinessCalendar, start: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """Working windows (UTC) in time order that end after ``start``, clipped to begin at it."""
    if not calendar.hours:
        raise CalendarError(f"calendar {calendar.name!r} has no working hours")
    zone = ZoneInfo(calendar.time_zone)
    day = start.replace(tzinfo=dt.UTC).astimezone(zone).date() - dt.timedelta(days=1)
    idle_days = 0
    while idle_days < _HORIZON_DAYS:
        idle_days += 1
        hours = calendar.hours.get(day.weekday())
        if hours is not None and day not in calendar.holidays:
            opens, closes = hours
            begin = _instant(day, opens, zone)
            end_day = day + dt.timedelta(days=1) if closes <= opens else day
            end = _instant(end_day, closes, zone)
            if end > start and end > begin:
                idle_days = 0
                yield max(begin, start), end
        day += dt.timedelta(days=1)
    raise CalendarError(f"calendar {calendar.name!r} has no working time in {_HORIZON_DAYS} days")


def add(calendar: BusinessCalendar | None, start: dt.datetime, duration: dt.timedelta) -> dt.datetime:
    """The instant when ``duration`` of working time has passed after ``start``."""
    if duration < dt.timedelta(0):
        raise ValueError("duration must not be negative")
    if calendar is None:
        return start + duration
    remaining = duration
    for begin, end in windows(calendar, start):
        if remaining <= end - begin:
            return begin + remaining
        remaining -= end - begin
    raise CalendarError("unreachable")  # pragma: no cover - windows() raises first


def between(calendar: BusinessCalendar | None, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
    """Working time from ``start`` to ``end`` (zero when ``end`` is not after ``start``)."""
    if end <= start:
        return dt.timedelta(0)
    if calendar is None:
        return end - start
    total = dt.timedelta(0)
    for begin, close in windows(calendar, start):
        if begin >= end:
            break
        total += min(close, end) - begin
    return total


def is_working(calendar: BusinessCalendar | None, moment: dt.datetime) -> bool:
    """Whether ``moment`` lies inside a working window (window ends count as inside)."""
    if calendar is None:
        return True
    for begin, end in windows(calendar, moment - dt.timedelta(microseconds=1)):
        return begin <= moment <= end
    return False  # pragma: no cover
