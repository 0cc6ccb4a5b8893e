"""What an agent typed into an edit that lost a race (HTTP 409), kept for them.

The incident page answers a stale edit with the fresh state; this module adds the refused
attempt beside it — each field as the agent entered it (names, not ids) — and a form that
applies it to the fresh version in one click. That form never undoes what the other agent
did: a field someone else changed after the page the agent edited (the timeline entries
newer than the last one that page showed) keeps its fresh value and is shown as a
conflict, with the agent's value beside it to re-enter by hand if theirs should win.
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
    TimelineEntry,
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


# timeline entry field -> the form fields it covers (the pairs are recorded as one entry)
RECORDED_AS = {"owner": ("owner_team", "owner_agent"), "assignee": ("assigned_team", "assigned_agent")}
# status entries (by label) that an assignment or a take may have written with the assignee folded in
MOVES_ASSIGNEE = {STATUSES[name] for name in ("new", "assigned", "in_progress")}
# form field -> the incident attribute holding its current raw value
CURRENT = {"category": "category_id", "service": "service_id", "requester": "requester_id",
           "owner_team": "owner_team_id", "owner_agent": "owner_agent_id",
           "assigned_team": "assigned_team_id", "assigned_agent": "assigned_agent_id"}
INCIDENT_FIELDS = {"title", "description", "type", "impact", "urgency", "status", "pending_reason",
                   "resolution_code", "priority", *CURRENT}


@dataclass
class Field:
    name: str
    label: str
    shown: str  # what the agent entered, readable
    submit: str  # what the one-click form sends: theirs, or the fresh value on a conflict
    conflict: bool = False
    now: str = ""  # the fresh value, readable, on a conflict


@dataclass
class Attempt:
    """The refused change: where it was posted and each field."""

    action: str
    fields: list[Field] = field(default_factory=list)


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


def changed_since(incident: Any, seen: str | None) -> set[str] | None:
    """Form fields changed after the last timeline entry the agent's page showed (``seen``,
    sent by every incident form); None when unknown (then every difference is a conflict)."""
    if not seen or not seen.isascii() or not seen.isdigit() or len(seen) > 18:
        return None
    names: set[str] = set()
    for entry in TimelineEntry.select(TimelineEntry.field, TimelineEntry.new_value).where(
            (TimelineEntry.incident == incident.id) & (TimelineEntry.kind == "change")
            & (TimelineEntry.id > int(seen))):
        names.update(RECORDED_AS.get(entry.field, (entry.field,)))
        if entry.field == "status":
            # One action is one entry: a status entry also stands for the pending reason or
            # resolution code it set, and (entering new, assigned or in progress: an assignment
            # or a take) for the assignee it may have changed.
            names.update(("pending_reason", "resolution_code"))
            if entry.new_value in MOVES_ASSIGNEE:
                names.update(RECORDED_AS["assignee"])
    return names


def _current(incident: Any, name: str) -> str:
    value = getattr(incident, CURRENT.get(name, name))
    return "" if value is None else str(value)


def attempt(incident: Any) -> Attempt:
    """The current request's form as a refused attempt against the fresh ``incident``."""
    others = changed_since(incident, request.form.get("seen"))
    found = Attempt(action=request.path)
    for name, (label, names) in FIELDS.items():
        if name not in request.form:
            continue
        raw = request.form.get(name, "")[:20000]
        item = Field(name, label, _shown(raw.strip(), names), raw)
        if (name in INCIDENT_FIELDS and (others is None or name in others)
                and raw.strip() != _current(incident, name)):
            item.conflict, item.submit = True, _current(incident, name)
            item.now = _shown(item.submit, names)
        found.fields.append(item)
    return found
