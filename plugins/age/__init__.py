"""How long incidents have waited: an Age column in the queues and a panel on the incident
page with the time since the customer last heard from us."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from helpdesk import hookimpl
from helpdesk.clock import now
from helpdesk.records import Panel, PluginAssets, QueueColumn


def humanize(delta: dt.timedelta) -> str:
    """A short, exact-enough duration: 45m, 3h 20m, 2d 4h."""
    minutes = max(0, int(delta.total_seconds() // 60))
    days, minutes = divmod(minutes, 60 * 24)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"


@hookimpl
def helpdesk_assets() -> PluginAssets:
    return PluginAssets("age", templates=Path(__file__).with_name("templates"))


@hookimpl
def helpdesk_queue_columns() -> list[QueueColumn]:
    return [QueueColumn("age", "Age", lambda incident: humanize(now() - incident.created_at))]


@hookimpl
def helpdesk_incident_panels(incident: Any, agent: Any) -> list[Panel]:
    from helpdesk.models import TimelineEntry

    replies = (TimelineEntry.select()
               .where((TimelineEntry.incident == incident.id) & (TimelineEntry.kind == "reply"))
               .order_by(TimelineEntry.id.desc()))
    last = replies.first()
    since = last.at if last else incident.created_at
    return [Panel("Customer contact", "age/panel.html", {
        "replies": replies.count(),
        "waiting": humanize(now() - since),
        "open_for": humanize(now() - incident.created_at),
    })]
