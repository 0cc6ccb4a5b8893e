"""The default SLA policy ``priority``: response and resolution targets by priority.

Defaults: P1 15 minutes / 4 hours around the clock; P2 30 minutes / 8
business hours; P3 4 business hours / 3 business days; P4 1 business day /
10 business days (a business day is 8 business hours of the ``business``
calendar). Configure with durations such as ``15m``, ``8h``, ``3d`` (days of
24 working hours) or ``3bd`` (business days of 8 hours)::

    [plugins.sla_priority]
    response = { p1 = "15m", p2 = "30m", p3 = "4h", p4 = "1bd" }
    resolution = { p1 = "4h", p2 = "8h", p3 = "3bd", p4 = "10bd" }
    around_the_clock = [1]          # priorities counted in real time
    calendar = "business"           # the calendar for the others ...
    calendar_by_team = { Network = "night_desk" }   # ... unless the assigned team
    calendar_by_service = { Payroll = "uk_office" } # or the affected service names one
    warnings = [0.5, 0.75, 0.9]     # fractions of the target that warn
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

from helpdesk import ConfigError, Context, hookimpl
from helpdesk.records import SettingsTable, SlaPolicy, SlaTargets

DEFAULT_RESPONSE = {"p1": "15m", "p2": "30m", "p3": "4h", "p4": "1bd"}
DEFAULT_RESOLUTION = {"p1": "4h", "p2": "8h", "p3": "3bd", "p4": "10bd"}
BUSINESS_DAY_HOURS = 8
_UNITS = {"m": 60, "h": 3600, "d": 86400, "bd": BUSINESS_DAY_HOURS * 3600}
VARIABLE = "HELPDESK_PLUGINS__SLA_PRIORITY"
logger = logging.getLogger(__name__)


LONGEST = dt.timedelta(days=366)  # of working time: a due date the calendars can still reach


def duration(text: str, where: str) -> dt.timedelta:
    match = re.fullmatch(r"\s*([0-9]{1,9}(?:\.[0-9]{1,6})?)\s*(m|h|d|bd)\s*", str(text))
    if not match:
        raise ConfigError(f"{where}: expected a duration such as 15m, 8h or 3bd, got {text!r}")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds > LONGEST.total_seconds():
        raise ConfigError(f"{where}: {text.strip()} is longer than a target can be (at most 366d, or 1098bd)")
    return dt.timedelta(seconds=seconds)


def _table(settings: Any, key: str, default: dict[str, str]) -> dict[int, dt.timedelta]:
    given = settings.get(key) or {}
    if not isinstance(given, dict):
        raise ConfigError(f"{VARIABLE}__{key.upper()}: expected a table such as "
                          '{ p1 = "15m", p2 = "30m" }, got ' f"{given!r:.60}")
    values = {**default, **{str(k).lower(): v for k, v in given.items()}}
    table = {}
    for priority in (1, 2, 3, 4):
        table[priority] = duration(values[f"p{priority}"], f"{VARIABLE}__{key.upper()}: p{priority}")
    return table


def build_policy(ctx: Context) -> SlaPolicy:
    settings = ctx.plugin_settings("sla_priority")
    response = _table(settings, "response", DEFAULT_RESPONSE)
    resolution = _table(settings, "resolution", DEFAULT_RESOLUTION)
    try:
        around = {int(p) for p in settings.list("around_the_clock", [1])}
    except ValueError:
        raise ConfigError(f"{VARIABLE}__AROUND_THE_CLOCK: expected priorities such as 1,2") from None
    calendar = settings.get("calendar", "business")
    try:
        warnings = tuple(sorted(float(w) for w in settings.list("warnings", [0.5, 0.75, 0.9])))
    except (TypeError, ValueError):
        raise ConfigError(f"{VARIABLE}__WARNINGS: expected fractions such as [0.5, 0.75]") from None
    if any(not 0 < w < 1 for w in warnings):
        raise ConfigError(f"{VARIABLE}__WARNINGS: each warning is a fraction between 0 and 1")

    by_team = dict(settings.get("calendar_by_team") or {})
    by_service = dict(settings.get("calendar_by_service") or {})

    def targets(ctx: Context, incident: Any) -> SlaTargets:
        if incident.priority in around:
            chosen = None
        elif incident.service_id and incident.service.name in by_service:
            chosen = by_service[incident.service.name]
        elif incident.assigned_team_id and incident.assigned_team.name in by_team:
            chosen = by_team[incident.assigned_team.name]
        else:
            chosen = calendar
        return SlaTargets(response[incident.priority], resolution[incident.priority], chosen)

    return SlaPolicy("priority", "Targets by priority", targets, warnings,
                     "Response and resolution targets per priority; P1 around the clock.")


@hookimpl
def helpdesk_sla_policies(ctx: Context) -> list[SlaPolicy]:
    return [build_policy(ctx)]


@hookimpl
def helpdesk_check_settings(ctx: Context, registry: Any) -> None:
    """Every calendar the settings name must be registered (else targets would silently run
    around the clock)."""
    settings = ctx.plugin_settings("sla_priority")
    named = {("CALENDAR", settings["calendar"])} if "calendar" in settings else set()
    if not named and "business" not in registry.business_calendars:
        logger.warning("sla_priority: no 'business' calendar (business_hours disabled?): "
                       "every target counts around the clock")
    for key in ("calendar_by_team", "calendar_by_service"):
        named |= {(key.upper(), name) for name in dict(settings.get(key) or {}).values()}
    for key, name in sorted(named):
        if name not in registry.business_calendars:
            known = ", ".join(sorted(registry.business_calendars)) or "none (is business_hours disabled?)"
            raise ConfigError(f"{VARIABLE}__{key}: no business calendar named {name!r}; known: {known}")


@hookimpl
def helpdesk_settings_tables() -> list[SettingsTable]:
    """The keys of [plugins.sla_priority] this plugin reads: any other is reported as a misspelling."""
    return [SettingsTable("sla_priority", ("around_the_clock", "calendar", "calendar_by_service",
                                           "calendar_by_team", "resolution", "response", "warnings"))]
