"""How long incidents have waited: an Age column in the queues and a panel on the incident
page with the time since the customer last heard from us."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

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
    replies = TimelineEntry.select().where((TimelineEntry.incident == incident.id)
                                           & (TimelineEntry.kind == "reply"))
    count = replies.count()  # (before first(), which limits the query it is called on)
    last = replies.order_by(TimelineEntry.id.desc()).first() if count else None
    since = last.at if last else incident.created_at
    return [Panel("Customer contact", "age/panel.html", {
        "replies": count,
        "waiting": humanize(now() - since),
        "open_for": humanize(now() - incident.created_at),
    })]
