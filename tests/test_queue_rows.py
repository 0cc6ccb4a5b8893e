"""A queue page's rows, read without peewee's row walker, are the objects peewee builds:
the same values, the same pairs, requester and clocks (None where there is none), nothing
marked changed — so templates, plugin columns, the API and exports see no difference."""

from __future__ import annotations

import datetime as dt
from typing import Any

from helpdesk import queues
from helpdesk.models import Incident, SlaClock

JOINED = ("owner_team", "owner_agent", "assigned_team", "assigned_agent", "requester",
          "response_clock", "resolution_clock")


def state(incident: Incident) -> list[Any]:
    found: list[Any] = [incident.__data__, incident._dirty, sorted(incident.__rel__)]
    for name in JOINED:
        joined = getattr(incident, name)
        found.append(None if joined is None else (type(joined).__name__, joined.__data__, joined._dirty))
    return found


def test_page_rows_match_what_peewee_builds(app, personas, log_incident, contact_factory):
    with app.app_context():
        log_incident(title="Unowned, no requester", description="")
        log_incident(title="With requester", description="", requester=contact_factory(name="Ann"))
        ids = [row.id for row in Incident.select(Incident.id)]
        Incident.update(owner_agent=personas.owner.id).where(Incident.id == ids[-1]).execute()
        start = dt.datetime(2026, 6, 1, 9)
        SlaClock.create(incident=ids[-1], target="resolution", policy="default", target_seconds=3600,
                        started_at=start, due_at=start + dt.timedelta(hours=1))
        expected = {row.id: state(row) for row in queues.base_query().where(Incident.id.in_(ids))}
        found = {row.id: state(row) for row in queues.rows_by_id(list(reversed(ids)))}
    assert found == expected
    assert any(s[3 + JOINED.index("requester")] is None for s in found.values())  # an absent one
    assert any(s[3 + JOINED.index("requester")] is not None for s in found.values())  # and one there
    assert any(s[3 + JOINED.index("resolution_clock")] is not None for s in found.values())
