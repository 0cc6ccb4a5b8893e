"""Built-in defaults, registered as a plugin marked ``trylast`` so any plugin wins."""

from __future__ import annotations

from typing import Any

from helpdesk import hookimpl

# ITIL priority matrix: rows impact, columns urgency.
PRIORITY_MATRIX = {
    ("high", "high"): 1,
    ("high", "medium"): 2,
    ("high", "low"): 3,
    ("medium", "high"): 2,
    ("medium", "medium"): 3,
    ("medium", "low"): 4,
    ("low", "high"): 3,
    ("low", "medium"): 4,
    ("low", "low"): 4,
}


@hookimpl(trylast=True)
def helpdesk_priority(impact: str, urgency: str) -> int:
    return PRIORITY_MATRIX[(impact, urgency)]


@hookimpl(trylast=True)
def helpdesk_route_incident(incident: Any) -> None:
    return None


@hookimpl(trylast=True)
def helpdesk_sla_policy(incident: Any) -> str:
    return "priority"
