"""Business-time arithmetic: properties over random calendars, DST days, night shifts."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpdesk import business_time as bt
from helpdesk.records import BusinessCalendar

T = dt.time
OFFICE = {d: (T(9), T(17)) for d in range(5)}


def calendar(zone: str = "Europe/London", hours: dict | None = None, holidays=()) -> BusinessCalendar:
    return BusinessCalendar("test", "Test", zone, OFFICE if hours is None else hours, frozenset(holidays))


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args)


# The far ends of the offsets (UTC-12, UTC+14), half-hour ones and a half-hour DST shift:
# an instant's local day is up to a day off its UTC day.
zones = st.sampled_from(["Europe/London", "America/New_York", "Asia/Kolkata", "UTC", "Australia/Sydney",
                         "Etc/GMT+12", "Pacific/Kiritimati", "Australia/Lord_Howe", "America/St_Johns"])
times = st.builds(T, st.integers(0, 23), st.sampled_from([0, 0, 15, 30, 45, 59]))
windows = st.tuples(times, times)  # closing at or before opening runs into the next day (24 h if equal)


@st.composite
def calendars(draw: st.DrawFn) -> BusinessCalendar:
    days = draw(st.sets(st.integers(0, 6), min_size=1))
    opens, closes = draw(windows)
    holidays = draw(st.sets(st.dates(dt.date(2026, 1, 1), dt.date(2026, 12, 31)), max_size=10))
    return calendar(draw(zones), {d: (opens, closes) for d in days}, holidays)


instants = st.datetimes(dt.datetime(2026, 1, 1), dt.datetime(2026, 12, 1))
durations = st.timedeltas(dt.timedelta(0), dt.timedelta(days=20))


@settings(max_examples=300, deadline=None)
@given(calendars(), instants, durations)
def test_adding_then_measuring_gives_the_same_duration(cal, start, duration):
    due = bt.add(cal, start, duration)
    assert bt.between(cal, start, due) == duration


@settings(max_examples=300, deadline=None)
@given(calendars(), instants, durations.filter(lambda d: d > dt.timedelta(0)))
def test_a_due_time_is_inside_working_hours_and_never_on_a_holiday(cal, start, duration):
    due = bt.add(cal, start, duration)
    assert bt.is_working(cal, due)
    # The window the due time falls in did not open on a holiday.
    zone = __import__("zoneinfo").ZoneInfo(cal.time_zone)
    local = due.replace(tzinfo=dt.UTC).astimezone(zone)
    opened_on = [local.date() - dt.timedelta(days=1), local.date()]
    assert any(d not in cal.holidays and d.weekday() in cal.hours for d in opened_on)


@settings(max_examples=300, deadline=None)
@given(calendars(), instants, instants, durations)
def test_due_time_is_monotonic_in_the_start(cal, first, second, duration):
    early, late = sorted((first, second))
    assert bt.add(cal, early, duration) <= bt.add(cal, late, duration)


@settings(max_examples=200, deadline=None)
@given(calendars(), instants, instants, instants)
def test_measuring_is_additive(cal, a, b, c):
    a, b, c = sorted((a, b, c))
    assert bt.between(cal, a, b) + bt.between(cal, b, c) == bt.between(cal, a, c)


def test_friday_afternoon_work_continues_on_monday():
    london = calendar()
    # Friday 2026-03-06 16:30 GMT + 8 business hours -> Monday 15:30 + ... = Tuesday? 0.5h Fri, 7.5h Mon.
    assert bt.add(london, utc(2026, 3, 6, 16, 30), dt.timedelta(hours=8)) == utc(2026, 3, 9, 16, 30)


def test_holidays_are_skipped():
    london = calendar(holidays={dt.date(2026, 12, 25), dt.date(2026, 12, 28)})
    # Thursday 24 Dec 16:00 + 2h: 1h on the 24th, Friday 25th and Monday 28th are holidays.
    assert bt.add(london, utc(2026, 12, 24, 16), dt.timedelta(hours=2)) == utc(2026, 12, 29, 10)


@pytest.mark.parametrize(("zone", "day", "expected"), [
    # A night shift 22:00-06:00 over the change: real hours inside the window count once.
    ("Europe/London", dt.date(2026, 3, 28), dt.timedelta(hours=7)),   # spring forward
    ("Europe/London", dt.date(2026, 10, 24), dt.timedelta(hours=9)),  # fall back
    ("America/New_York", dt.date(2026, 3, 7), dt.timedelta(hours=7)),
    ("America/New_York", dt.date(2026, 10, 31), dt.timedelta(hours=9)),
    ("Asia/Kolkata", dt.date(2026, 3, 28), dt.timedelta(hours=8)),    # no DST
])
def test_a_night_shift_across_a_dst_change_counts_real_time(zone, day, expected):
    night = calendar(zone, {d: (T(22), T(6)) for d in range(7)})
    start = dt.datetime.combine(day, T(12))
    assert bt.between(night, start, start + dt.timedelta(days=1)) == expected


@pytest.mark.parametrize(("zone", "monday"), [("Europe/London", dt.date(2026, 3, 30)),
                                              ("America/New_York", dt.date(2026, 3, 9)),
                                              ("Europe/London", dt.date(2026, 10, 26)),
                                              ("America/New_York", dt.date(2026, 11, 2))])
def test_office_hours_follow_local_time_across_dst(zone, monday):
    cal = calendar(zone)
    sunday_noon = dt.datetime.combine(monday - dt.timedelta(days=1), T(12))
    due = bt.add(cal, sunday_noon, dt.timedelta(hours=1))
    local = due.replace(tzinfo=dt.UTC).astimezone(__import__("zoneinfo").ZoneInfo(zone))
    assert (local.date(), local.time()) == (monday, T(10))


def test_a_calendar_without_hours_is_refused():
    with pytest.raises(bt.CalendarError):
        bt.add(calendar(hours={}), utc(2026, 1, 1), dt.timedelta(hours=1))


def test_around_the_clock_is_plain_arithmetic():
    assert bt.add(None, utc(2026, 1, 1), dt.timedelta(hours=4)) == utc(2026, 1, 1, 4)
    assert bt.between(None, utc(2026, 1, 1), utc(2026, 1, 2)) == dt.timedelta(days=1)


long_spans = st.datetimes(dt.datetime(2024, 1, 1), dt.datetime(2027, 12, 31))


@settings(max_examples=300, deadline=None)
@given(calendars(), long_spans, long_spans)
def test_long_spans_measure_what_the_windows_add_up_to(cal, first, second):
    # Spans of weeks or years are counted from per-day sums, not window by window: the
    # answer must be the plain sum over every working window (DST, holidays, night shifts).
    start, end = sorted((first, second))
    assert bt.between(cal, start, end) == walked(cal, start, end)


def walked(cal: BusinessCalendar, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
    total = dt.timedelta(0)
    for begin, close in bt.windows(cal, start) if end > start else ():
        if begin >= end:
            break
        total += min(close, end) - begin
    return total


def test_one_calendar_answers_every_span_alike_as_its_sums_grow_both_ways():
    # A process keeps one set of sums per calendar: spans asked in any order (later years
    # first, then earlier ones that grow the sums backwards) and a shared "now" asked again
    # must still measure what the windows add up to.
    import random

    rng = random.Random(15)
    night = calendar("Europe/London", {d: (T(22), T(6)) for d in range(6)},
                     holidays={dt.date(2026, 12, 25), dt.date(2021, 1, 1)})
    moment = utc(2026, 11, 30, 23, 30)
    spans = [(utc(2026, 1, 1), moment), (utc(2019, 3, 31), utc(2019, 4, 2)), (utc(2026, 10, 25), moment)]
    for _ in range(150):
        start = utc(2018, 1, 1) + dt.timedelta(minutes=rng.randrange(60 * 24 * 365 * 10))
        later = start + dt.timedelta(hours=rng.randrange(1, 24 * 40))
        spans.append((start, moment if rng.random() < 0.5 else later))
    for start, end in spans + spans[:3]:
        assert bt.between(night, start, end) == walked(night, start, end), (start, end)
