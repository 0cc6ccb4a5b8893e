"""Logging an incident takes what it has just written (the incident as stored, its new SLA
clocks) instead of reading it back, and skips the history a new incident cannot have yet. What
it records must be exactly what the general paths, which read everything back, would record."""

from __future__ import annotations

from typing import Any

import pytest

from helpdesk import incidents, reports, search
from helpdesk.db import database, is_sqlite, write_transaction
from helpdesk.escalation import engine
from helpdesk.models import EscalationState, IncidentFact, ReportDay

from .conftest import LOGGED, Desk, three_levels


def _recorded(incident_id: int) -> dict[str, Any]:
    """What a create leaves beside the incident: escalation schedule, fact, day counts, search text."""
    state = EscalationState.get(EscalationState.incident == incident_id)
    if is_sqlite():
        document = database.execute_sql("SELECT title, public, internal FROM search_document WHERE rowid = ?",
                                         (incident_id,)).fetchall()
    else:
        document = database.execute_sql("SELECT vector::text FROM search_document WHERE incident_id = %s",
                                        (incident_id,)).fetchall()
    return {
        "escalation": (state.level, state.next_at, state.snoozed_until),
        "fact": IncidentFact.get(IncidentFact.incident_id == incident_id).__data__,
        "days": sorted(tuple(sorted(row.items())) for row in ReportDay.select().dicts()),
        "search": document,
    }


@pytest.mark.parametrize("impact, escalates", [("high", True), ("low", False)])
def test_a_new_incident_is_recorded_as_reading_it_back_would_record_it(desk: Desk, impact: str,
                                                                       escalates: bool) -> None:
    desk.policy(three_levels())  # applies to P1 and P2 only
    incident = desk.call(LOGGED, incidents.log_incident, service_desk=desk.p.service_desk,
                         actor=desk.p.owner, title="Orders database slow", impact=impact, urgency="medium",
                         description="Checkout times out for every customer",
                         assigned_team=desk.p.database_team)
    with desk.app.app_context():
        database.connect(reuse_if_open=True)
        logged = _recorded(incident.id)
        assert (logged["escalation"][1] is not None) is escalates  # the policy's first level is scheduled
        assert logged["fact"]["response_outcome"] is not None and logged["search"]
        # The general paths, as any later change of the incident runs them.
        with write_transaction():
            engine.schedule(desk.ctx, incident)
            search.refresh(incident.id)
            reports.refresh(desk.ctx, incident.id)
        assert _recorded(incident.id) == logged
