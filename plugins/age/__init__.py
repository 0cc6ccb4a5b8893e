"""How long incidents have waited: an Age column in the queues and a panel on the incident
page with the time since the customer last heard from us (a public reply, or the
resolution, whose note the requester is sent)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from helpdesk import STATUSES, TimelineEntry, format_duration, hookimpl, now
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
                                           & (TimelineEntry.kind == "reply")).count()
    # A resolution is news to the customer too (its note is mailed to the requester), even
    # when the incident was reopened since: the latest of either is when they last heard.
    # Without a requester nobody was sent the resolution.
    told = TimelineEntry.kind == "reply"
    if incident.requester_id is not None:
        told |= ((TimelineEntry.kind == "change") & (TimelineEntry.field == "status")
                 & (TimelineEntry.new_value == STATUSES["resolved"]))
    heard = TimelineEntry.select(TimelineEntry.at).where(
        (TimelineEntry.incident == incident.id) & told).order_by(TimelineEntry.id.desc()).first()
    since = heard.at if heard else incident.created_at
    return [Panel("Customer contact", "age/panel.html", {
        "replies": replies,
        "heard": heard is not None,
        "waiting": humanize(now() - since),
        "open_for": humanize(now() - incident.created_at),
    })]
