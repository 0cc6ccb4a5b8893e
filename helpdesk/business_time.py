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
import threading
from collections import OrderedDict
from collections.abc import Iterator
from zoneinfo import ZoneInfo

from helpdesk.records import BusinessCalendar

_HORIZON_DAYS = 366 * 3  # a calendar closed this long fails instead of looping forever
_WALK_DAYS = 10  # spans shorter than this are walked window by window
_MARGIN_DAYS = 2  # days each side measured exactly (windows past midnight, DST shifts)


class CalendarError(ValueError):
    """The calendar cannot produce working time (no working hours at all)."""


def _instant(day: dt.date, moment: dt.time, zone: ZoneInfo) -> dt.datetime:
    local = dt.datetime.combine(day, moment, tzinfo=zone)
    return local.astimezone(dt.UTC).replace(tzinfo=None)


def windows(calendar: BusinessCalendar, start: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """Working windows (UTC) in time order that end after ``start``, clipped to begin at it."""
    if not calendar.hours:
        raise CalendarError(f"calendar {calendar.name!r} has no working hours")
    sums = _sums_for(calendar)
    day = start.replace(tzinfo=dt.UTC).astimezone(sums.zone).date() - dt.timedelta(days=1)
    idle_days = 0
    while idle_days < _HORIZON_DAYS:
        idle_days += 1
        window = sums.window(day)
        if window is not None and window[1] > start:
            idle_days = 0
            yield max(window[0], start), window[1]
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


def _window(calendar: BusinessCalendar, zone: ZoneInfo, day: dt.date
            ) -> tuple[dt.datetime, dt.datetime] | None:
    """The working window that opens on local ``day`` (UTC instants), if any."""
    hours = calendar.hours.get(day.weekday())
    if hours is None or day in calendar.holidays:
        return None
    opens, closes = hours
    begin = _instant(day, opens, zone)
    end = _instant(day + dt.timedelta(days=1) if closes <= opens else day, closes, zone)
    return (begin, end) if end > begin else None


class _DaySums:
    """Working microseconds of the windows opening on each local day, as running sums.

    Built once per calendar and process, only over the days asked about, so measuring a
    span costs the same whether the incident is a day or a year old.
    """

    def __init__(self, calendar: BusinessCalendar) -> None:
        self.calendar = calendar
        self.zone = ZoneInfo(calendar.time_zone)
        self.base: dt.date | None = None
        self.sums = [0]  # sums[i]: days base .. base + i - 1
        self.windows: dict[dt.date, tuple[dt.datetime, dt.datetime] | None] = {}
        self.lock = threading.Lock()

    def window(self, day: dt.date) -> tuple[dt.datetime, dt.datetime] | None:
        """:func:`_window` of ``day``, remembered: a queue page measures each row's clock
        over the same few days."""
        try:
            return self.windows[day]
        except KeyError:
            if len(self.windows) > 5000:
                self.windows.clear()
            found = self.windows[day] = _window(self.calendar, self.zone, day)
            return found

    def _length(self, day: dt.date) -> int:
        window = self.window(day)
        return 0 if window is None else (window[1] - window[0]) // dt.timedelta(microseconds=1)

    def total(self, first: dt.date, last: dt.date) -> int:
        """Working microseconds of the windows opening on ``first`` .. ``last`` (inclusive)."""
        with self.lock:
            if self.base is None:
                self.base = first
            if first < self.base:  # grow backwards by at least a year, then rebuild the sums
                start = min(first, self.base - dt.timedelta(days=366))
                prefix = [0]
                for n in range((self.base - start).days):
                    prefix.append(prefix[-1] + self._length(start + dt.timedelta(days=n)))
                self.sums = prefix + [prefix[-1] + value for value in self.sums[1:]]
                self.base = start
            while len(self.sums) <= (last - self.base).days + 1:
                day = self.base + dt.timedelta(days=len(self.sums) - 1)
                self.sums.append(self.sums[-1] + self._length(day))
            return self.sums[(last - self.base).days + 1] - self.sums[(first - self.base).days]


_day_sums: OrderedDict[int, _DaySums] = OrderedDict()
_day_sums_lock = threading.Lock()


def _sums_for(calendar: BusinessCalendar) -> _DaySums:
    """The running sums of one calendar (records are frozen, so a calendar never changes)."""
    with _day_sums_lock:
        found = _day_sums.get(id(calendar))
        if found is None or found.calendar is not calendar:
            found = _day_sums[id(calendar)] = _DaySums(calendar)
            if len(_day_sums) > 64:
                _day_sums.popitem(last=False)
        _day_sums.move_to_end(id(calendar))
        return found


def between(calendar: BusinessCalendar | None, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
    """Working time from ``start`` to ``end`` (zero when ``end`` is not after ``start``).

    Long spans count the windows opening on whole days in the middle from running sums,
    and only the few days at each end window by window.
    """
    if end <= start:
        return dt.timedelta(0)
    if calendar is None:
        return end - start
    if not calendar.hours:
        raise CalendarError(f"calendar {calendar.name!r} has no working hours")
    sums = _sums_for(calendar)
    zone = sums.zone
    first = start.replace(tzinfo=dt.UTC).astimezone(zone).date()
    last = end.replace(tzinfo=dt.UTC).astimezone(zone).date()
    if (last - first).days < _WALK_DAYS:
        return _walk_between(calendar, start, end)
    # Windows opening on the middle days lie wholly inside (start, end): each opens after
    # the start's local date and closes within a day after it opens.
    middle_first = first + dt.timedelta(days=_MARGIN_DAYS)
    middle_last = last - dt.timedelta(days=_MARGIN_DAYS + 1)
    total = dt.timedelta(microseconds=sums.total(middle_first, middle_last))
    edges = [first + dt.timedelta(days=n) for n in range(-1, _MARGIN_DAYS)]
    edges += [middle_last + dt.timedelta(days=n) for n in range(1, _MARGIN_DAYS + 2)]
    for day in edges:
        window = sums.window(day)
        if window is not None:
            begin, close = max(window[0], start), min(window[1], end)
            if close > begin:
                total += close - begin
    return total


def _walk_between(calendar: BusinessCalendar, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
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
