"""A timeline read with each entry's author, for the agents' incident page and the portal."""

from __future__ import annotations

from typing import Any

import peewee

from helpdesk.db import Statement
from helpdesk.models import PUBLIC_KINDS, Agent, Contact, TimelineEntry


def _statement(public_only: bool) -> Statement:
    def build(incident_id: Any) -> peewee.Query:
        wanted = TimelineEntry.incident == incident_id
        if public_only:
            wanted &= TimelineEntry.kind.in_(PUBLIC_KINDS)
        return (TimelineEntry.select(TimelineEntry, Agent, Contact)
                .join_from(TimelineEntry, Agent, peewee.JOIN.LEFT_OUTER,
                           on=(TimelineEntry.actor == Agent.id))
                .join_from(TimelineEntry, Contact, peewee.JOIN.LEFT_OUTER,
                           on=(TimelineEntry.contact == Contact.id))
                .where(wanted).order_by(TimelineEntry.id))
    return Statement(build, models=(TimelineEntry, Agent, Contact))


_TIMELINES = {False: _statement(False), True: _statement(True)}


def timeline_with_authors(incident_id: int, *, public_only: bool = False) -> list[TimelineEntry]:
    """The incident's entries, oldest first, each with the agent or customer who wrote it
    (one query, compiled once; reading ``entry.actor`` per entry was a query each).
    ``public_only`` keeps what the portal shows the customer."""
    entries = []
    for entry, actor, contact in _TIMELINES[public_only].rows(incident_id):
        entry.__rel__.update(actor=actor, contact=contact)
        entries.append(entry)
    return entries
