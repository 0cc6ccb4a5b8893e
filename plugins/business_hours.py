"""Business-hours calendars: working hours per weekday, a time zone, holidays.

Registers the calendar ``business`` (Monday–Friday 09:00–17:00 in the
instance's time zone, no holidays) unless configured otherwise::

    [plugins.business_hours]
    time_zone = "Europe/London"
    hours = { mon = "09:00-17:30", tue = "09:00-17:30", wed = "09:00-17:30",
              thu = "09:00-17:30", fri = "09:00-16:00" }
    holidays = ["2026-12-25", "2026-12-28"]
    country = "GB"                 # public holidays too, from the `holidays` package
    subdivision = "ENG"            # (pip install 'helpdesk[holidays]')

    [plugins.business_hours.calendars.night_desk]
    hours = { mon = "22:00-06:00", tue = "22:00-06:00" }

Every table under ``calendars`` adds another named calendar (it inherits the
time zone and holidays unless it sets its own); a policy names the calendar
it counts in. A window whose end is not after its start runs past midnight.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from helpdesk import ConfigError, Context, hookimpl
from helpdesk.records import BusinessCalendar, SettingsTable

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_HOURS = {day: "09:00-17:00" for day in DAYS[:5]}
VARIABLE = "HELPDESK_PLUGINS__BUSINESS_HOURS"


def _window(text: str, where: str) -> tuple[dt.time, dt.time]:
    try:
        opens, closes = (dt.time.fromisoformat(part.strip()) for part in text.split("-"))
    except ValueError:
        raise ConfigError(f"{where}: expected HH:MM-HH:MM, got {text!r}") from None
    return opens, closes


def calendar_from(name: str, values: dict[str, Any], defaults: dict[str, Any]) -> BusinessCalendar:
    """Build one calendar from settings, with a clear error naming the bad value: the main
    calendar's plain keys by their variable, the rest by where they sit in the instance file
    (a nested key has no variable of its own)."""
    table = "[plugins.business_hours]" if name == "business" else f"[plugins.business_hours.calendars.{name}]"

    def where(key: str) -> str:
        return f"{VARIABLE}__{key.upper()}" if name == "business" and "." not in key else f"{table} {key}"

    zone = values.get("time_zone", defaults["time_zone"])
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(f"{where('time_zone')}: unknown time zone {zone!r}") from None
    hours_in = values.get("hours", defaults["hours"])
    if not isinstance(hours_in, dict):
        raise ConfigError(f"{where('hours')}: must be a table such as {{ mon = \"09:00-17:00\" }}")
    hours = {}
    for day, text in hours_in.items():
        if day.lower()[:3] not in DAYS:
            raise ConfigError(f"{where('hours')}: unknown weekday {day!r}")
        hours[DAYS.index(day.lower()[:3])] = _window(str(text), where(f"hours.{day}"))
    holidays_in = values.get("holidays", defaults["holidays"])
    if isinstance(holidays_in, str):
        holidays_in = [h for h in holidays_in.split(",") if h.strip()]
    try:
        holidays = frozenset(h if isinstance(h, dt.date) else dt.date.fromisoformat(str(h).strip())
                             for h in holidays_in)
    except ValueError as error:
        raise ConfigError(f"{where('holidays')}: {error}") from None
    country = values.get("country", defaults.get("country"))
    known = defaults.get("holiday_years")
    if country:
        known = (dt.date.today().year - 1, dt.date.today().year + 3)
        holidays |= _public_holidays(str(country), values.get("subdivision", defaults.get("subdivision")),
                                     where("country"), known)
    return BusinessCalendar(name, name.replace("_", " ").capitalize(), zone, hours, holidays,
                            holiday_years=known)


def _public_holidays(country: str, subdivision: str | None, where: str,
                     years: tuple[int, int]) -> frozenset[dt.date]:
    """A country's public holidays in ``years`` (first, last: last year to three years ahead)."""
    try:
        import holidays as holiday_data
    except ImportError:
        raise ConfigError(f"{where}: install the holidays package "
                          "(pip install 'helpdesk[holidays]') or remove the setting") from None
    try:
        found = holiday_data.country_holidays(country, subdiv=subdivision,
                                              years=range(years[0], years[1] + 1))
    except NotImplementedError:
        raise ConfigError(f"{where}: no public holidays known for {country!r}") from None
    return frozenset(found.keys())


@hookimpl
def helpdesk_business_calendars(ctx: Context) -> list[BusinessCalendar]:
    settings = dict(ctx.plugin_settings("business_hours"))
    defaults = {
        "time_zone": ctx.settings.time_zone,
        "hours": DEFAULT_HOURS,
        "holidays": [],
        "country": None,
    }
    main = calendar_from("business", settings, defaults)
    inherited = {"time_zone": main.time_zone, "hours": DEFAULT_HOURS, "holidays": sorted(main.holidays),
                 "country": None, "holiday_years": main.holiday_years}
    extra = settings.get("calendars") or {}
    return [main] + [calendar_from(name, values, inherited) for name, values in extra.items()]


@hookimpl
def helpdesk_settings_tables() -> list[SettingsTable]:
    """The keys of [plugins.business_hours] this plugin reads: any other is reported as a misspelling."""
    return [SettingsTable("business_hours", ("calendars", "country", "holidays", "hours",
                                             "subdivision", "time_zone"))]
