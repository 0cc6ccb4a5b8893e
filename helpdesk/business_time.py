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
_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_DAY = _EPOCH.toordinal()
_MICRO = dt.timedelta(microseconds=1)
_DAY = 86_400_000_000  # microseconds


class CalendarError(ValueError):
    """The calendar cannot produce working time (no working hours at all)."""


def _micros(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // _MICRO


def _instant(day: dt.date, moment: dt.time, zone: ZoneInfo) -> dt.datetime:
    local = dt.datetime.combine(day, moment, tzinfo=zone)
    return local.astimezone(dt.UTC).replace(tzinfo=None)


def windows(calendar: BusinessCalendar, start: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """Working windows (UTC) in time order that end after ``start``, clipped to begin at it."""
    if not calendar.hours:
        raise CalendarError(f"calendar {calendar.name!r} has no working hours")
    sums = _sums_for(calendar)
    # From the UTC day less three, as position() does: a local day is at most a day off
    # it, and a window opened the day before may still be open (also across a zone's
    # 24-hour jump over the date line).
    day = start.date() - dt.timedelta(days=3)
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
        self.base: int | None = None  # a day's ordinal
        self.sums = [0]  # sums[i]: days base .. base + i - 1
        self.shift = 0  # sums[i] - shift: counted from the first base, which never moves
        self.windows: dict[dt.date, tuple[dt.datetime, dt.datetime] | None] = {}
        self.spans: dict[int, tuple[int, int] | None] = {}
        self.lock = threading.Lock()
        self.last: tuple[dt.datetime, int] | None = None  # see position()

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

    def span(self, day: int) -> tuple[int, int] | None:
        """The window opening on the local day of ordinal ``day`` as microseconds since
        :data:`_EPOCH`: the integers :meth:`position` adds up."""
        try:
            return self.spans[day]
        except KeyError:
            if len(self.spans) > 5000:
                self.spans.clear()
            window = self.window(dt.date.fromordinal(day))
            found = self.spans[day] = None if window is None else (_micros(window[0]), _micros(window[1]))
            return found

    def before(self, day: int) -> int:
        """Working microseconds of the windows opening before the local day of ordinal
        ``day``, counted from a fixed day of this calendar's: only differences between two
        answers mean anything."""
        with self.lock:
            if self.base is None:
                self.base = day
            if day < self.base:  # grow backwards by at least a year, then rebuild the sums
                start = min(day, self.base - 366)
                prefix = [0]
                for done in range(start, self.base):
                    prefix.append(prefix[-1] + self._length(done))
                self.sums = prefix + [prefix[-1] + value for value in self.sums[1:]]
                self.shift += prefix[-1]
                self.base = start
            while len(self.sums) <= day - self.base:
                self.sums.append(self.sums[-1] + self._length(self.base + len(self.sums) - 1))
            return self.sums[day - self.base] - self.shift

    def _length(self, day: int) -> int:
        found = self.span(day)
        return 0 if found is None else found[1] - found[0]

    def position(self, moment: dt.datetime, remember: bool = False) -> int:
        """Working microseconds before ``moment`` (naive UTC), on the scale of :meth:`before`.

        All in integers, from the moment's UTC day, which is at most a day off its local one:
        windows opening four or more days before it have closed by then (each closes within
        a day after it opens, DST included) and come from the sums; the five days around it
        are clipped at it; later days open after it. The last instant asked with
        ``remember`` is kept: a page measures every row up to one "now".
        """
        last = self.last
        if last is not None and last[0] == moment:
            return last[1]
        at = _micros(moment)
        day = at // _DAY + _EPOCH_DAY
        total = self.before(day - 3)
        for near in range(day - 3, day + 2):
            found = self.spans.get(near) or self.span(near)
            if found is not None and found[0] < at:
                total += min(found[1], at) - found[0]
        if remember:
            self.last = (moment, total)
        return total


_day_sums: OrderedDict[int, _DaySums] = OrderedDict()
_day_sums_lock = threading.Lock()


def _sums_for(calendar: BusinessCalendar) -> _DaySums:
    """The running sums of one calendar (records are frozen, so a calendar never changes);
    those of the last 64 calendars built are kept (a site has a handful)."""
    found = _day_sums.get(id(calendar))  # read without the lock: a queue page asks per row
    if found is not None and found.calendar is calendar:
        return found
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

    The difference of the two instants' positions on the calendar's running sum of working
    time: a few dictionary reads each, whether the span is an hour or years long.
    """
    if end <= start:
        return dt.timedelta(0)
    if calendar is None:
        return end - start
    if not calendar.hours:
        raise CalendarError(f"calendar {calendar.name!r} has no working hours")
    sums = _sums_for(calendar)
    return dt.timedelta(microseconds=sums.position(end, remember=True) - sums.position(start))


def is_working(calendar: BusinessCalendar | None, moment: dt.datetime) -> bool:
    """Whether ``moment`` lies inside a working window (window ends count as inside)."""
    if calendar is None:
        return True
    for begin, end in windows(calendar, moment - dt.timedelta(microseconds=1)):
        return begin <= moment <= end
    return False  # pragma: no cover
