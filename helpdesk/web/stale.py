"""What an agent typed into an edit that lost a race (HTTP 409), kept for them.

The incident page answers a stale edit with the fresh state; this module adds the refused
attempt beside it — each field as the agent entered it (names, not ids), and a form that
posts the same values again against the fresh version — so nothing typed is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import request

from helpdesk.models import (
    LEVELS,
    PENDING_REASONS,
    PRIORITIES,
    RESOLUTION_CODES,
    STATUSES,
    TYPES,
    Agent,
    Category,
    Contact,
    Service,
    Team,
)

# form field -> (label, what its value names: a model, a dict of choices, or None for text)
FIELDS: dict[str, tuple[str, Any]] = {
    "title": ("Title", None),
    "description": ("Description", None),
    "type": ("Type", TYPES),
    "impact": ("Impact", LEVELS),
    "urgency": ("Urgency", LEVELS),
    "category": ("Category", Category),
    "service": ("Affected service", Service),
    "requester": ("Requester", Contact),
    "owner_team": ("Owning team", Team),
    "owner_agent": ("Owning agent", Agent),
    "assigned_team": ("Assigned team", Team),
    "assigned_agent": ("Assigned agent", Agent),
    "status": ("Status", STATUSES),
    "pending_reason": ("Pending reason", PENDING_REASONS),
    "resolution_code": ("Resolution code", RESOLUTION_CODES),
    "priority": ("Priority", {**{str(k): v for k, v in PRIORITIES.items()},
                              "derived": "Derive from impact × urgency"}),
    "reason": ("Reason", None),
    "note": ("Note", None),
    "kind": ("Link type", {"parent": "Child of", "duplicate_of": "Duplicate of"}),
    "other": ("Other incident", None),
}


@dataclass
class Attempt:
    """The refused change: where it was posted and each field (label, shown value, raw)."""

    action: str
    fields: list[tuple[str, str, str, str]] = field(default_factory=list)  # name, label, shown, raw


def _shown(raw: str, names: Any) -> str:
    if not raw:
        return "—"
    if names is None:
        return raw
    if isinstance(names, dict):
        return str(names.get(raw, raw))
    record = names.get_or_none(names.id == int(raw)) if raw.isascii() and raw.isdigit() and len(raw) < 19 \
        else None
    return str(record) if record is not None else raw


def attempt() -> Attempt:
    """The current request's form as a refused attempt (only the known incident fields)."""
    found = Attempt(action=request.path)
    for name, (label, names) in FIELDS.items():
        if name in request.form:
            raw = request.form.get(name, "")[:20000]
            found.fields.append((name, label, _shown(raw.strip(), names), raw))
    return found
