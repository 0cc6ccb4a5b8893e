"""Durations and shares in words, with no web dependency, so the domain can word its own
texts the way the pages do ("3 hours 20 minutes", "50 %", "8 business hours")."""

from __future__ import annotations

import datetime as dt
import re

# Control characters that no person types: C0 but tab, line feed and carriage return, and DEL.
# Forms drop them, mail headers turn them into spaces, spreadsheets (whose XML refuses them)
# leave them out.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Bidi embeddings, overrides and isolates: in a one-line text (a title, a mail subject) they
# make it read differently from what it holds ("gpj.exe" shown as "exe.jpg"); the Unicode
# bidi algorithm lays out right-to-left words without them.
BIDI_OVERRIDES = re.compile("[\u202a-\u202e\u2066-\u2069]")


def _count(number: int, unit: str) -> str:
    return f"{number} {unit}" if number == 1 else f"{number} {unit}s"


def format_duration(delta: dt.timedelta) -> str:
    """A duration in words, to the minute and at most two units: "45 minutes",
    "3 hours 20 minutes", "2 days 4 hours", "under a minute" (negative counts as zero).

    Words, not "3h 20m": the issue found the short form unreadable for people outside the desk.
    """
    minutes = max(0, int(delta.total_seconds() // 60))
    days, minutes = divmod(minutes, 60 * 24)
    hours, minutes = divmod(minutes, 60)
    if days:
        return _count(days, "day") + (f" {_count(hours, 'hour')}" if hours else "")
    if hours:
        return _count(hours, "hour") + (f" {_count(minutes, 'minute')}" if minutes else "")
    return _count(minutes, "minute") if minutes else "under a minute"  # not "0 minutes left"


def format_percent(fraction: float | None) -> str:
    """A share as people write it: 0.5 -> "50 %", 0.875 -> "87.5 %" (no trailing ".0")."""
    if fraction is None:
        return "—"
    return f"{round(fraction * 100, 1):g} %"


def target_span(seconds: int | float | None, calendar: str | None = None) -> str:
    """An SLA target's length in words: "8 business hours", "4 hours, around the clock".

    Time counted in a calendar is said in hours (a business day is not 24 hours): the bundled
    ``business`` calendar reads "business hours"; any other calendar is named.
    """
    if seconds is None:
        return "none"
    if not calendar:
        return f"{format_duration(dt.timedelta(seconds=seconds))}, around the clock"
    if calendar != "business":
        hours, minutes = divmod(max(0, int(seconds) // 60), 60)
        words = " ".join(([_count(hours, "hour")] if hours else [])
                         + ([_count(minutes, "minute")] if minutes or not hours else []))
        return f"{words} in the {calendar} calendar"
    return format_work(dt.timedelta(seconds=seconds), calendar)


def format_work(delta: dt.timedelta, calendar: str | None = None) -> str:
    """Time on an SLA clock in words: wall time as :func:`format_duration`, time counted in a
    calendar in hours ("100 business hours", "3 working hours 20 minutes"), since 24 of them
    are three working days, not one."""
    if not calendar:
        return format_duration(delta)
    hours, minutes = divmod(max(0, int(delta.total_seconds() // 60)), 60)
    kind = "business" if calendar == "business" else "working"
    if not minutes and not hours:  # a breach overnight is not "under a minute over"
        return f"under a {kind} minute"
    if not hours:
        return f"{minutes} {kind} minute{'s' if minutes != 1 else ''}"
    text = f"{hours} {kind} hour{'s' if hours != 1 else ''}"
    return text + (f" {_count(minutes, 'minute')}" if minutes else "")


def format_size(count: int) -> str:
    """A file's size as people read it: "512 KB", "10.2 MB" (one decimal: a file just over
    a 10 MB limit must not read "10 MB")."""
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.1f} MB"
    return f"{max(1, -(-count // 1024))} KB" if count else "0 KB"
