"""How long incidents have waited: an Age column in the queues and a panel on the incident
page with the time since the customer last heard from us."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from peewee import fn

from helpdesk import TimelineEntry, format_duration, hookimpl, now
from helpdesk.records import Panel, PluginAssets, QueueColumn


def humanize(delta: dt.timedelta) -> str:
    """In words ("3 hours 20 minutes"), as durations read everywhere else on the pages."""
    return format_duration(delta)


@hookimpl
def helpdesk_assets() -> PluginAssets:
    return PluginAssets("age", templates=Path(__file__).with_name("templates"))


@hookimpl
def helpdesk_queue_columns() -> list[QueueColumn]:
    return [QueueColumn("age", "Age", lambda incident: humanize(now() - incident.created_at))]


@hookimpl
def helpdesk_incident_panels(incident: Any, agent: Any) -> list[Panel]:
    # One aggregate query: the page is opened far more often than replies are written.
    replies, last = (TimelineEntry
                     .select(fn.COUNT(TimelineEntry.id), fn.MAX(TimelineEntry.at))
                     .where((TimelineEntry.incident == incident.id) & (TimelineEntry.kind == "reply"))
                     .scalar(as_tuple=True))
    since = TimelineEntry.at.python_value(last) if last else incident.created_at
    return [Panel("Customer contact", "age/panel.html", {
        "replies": replies,
        "waiting": humanize(now() - since),
        "open_for": humanize(now() - incident.created_at),
    })]
