"""Agent queues: which incidents each queue holds, filters, sorting and keyset pages.

A page of any size costs one query: the owner and assignee pairs are joined
in, never loaded row by row.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any

import peewee

from helpdesk.errors import DomainError
from helpdesk.models import (
    ACTIVE_STATUSES,
    PRIORITIES,
    STATUSES,
    TYPES,
    Agent,
    Contact,
    Incident,
    Membership,
    SlaClock,
    Team,
)

QUEUES = {
    "assigned": "Assigned to me",
    "owned": "Owned by me",
    "at_risk": "At risk",
    "teams": "My teams",
    "unassigned": "Unassigned",
    "unowned": "Unowned",
    "breached": "Breached",
    "escalated": "Escalated",
    "open": "All open",
}
# name -> (column, descending)
SORTS = {
    "due": ("due_at", False),
    "updated": ("updated_at", True),
    "newest": ("created_at", True),
    "oldest": ("created_at", False),
    "priority": ("priority", False),
}
SORT_LABELS = {
    "due": "Nearest SLA breach",
    "updated": "Recently updated",
    "newest": "Newest first",
    "oldest": "Oldest first",
    "priority": "Priority (P1 first)",
}

OwnerTeam = Team.alias("owner_team")
OwnerAgent = Agent.alias("owner_agent")
AssignedTeam = Team.alias("assigned_team")
AssignedAgent = Agent.alias("assigned_agent")
ResponseClock = SlaClock.alias("response_clock")
ResolutionClock = SlaClock.alias("resolution_clock")
# The nearest running SLA due time: the response target while it is open, else resolution.
DUE = peewee.fn.COALESCE(
    peewee.Case(None, [((ResponseClock.met_at.is_null()) & (ResponseClock.stopped_at.is_null()),
                        ResponseClock.due_at)], None),
    ResolutionClock.due_at,
)
# A breach stays on the record when the target is met late ...
BREACHED = ResponseClock.breached_at.is_null(False) | ResolutionClock.breached_at.is_null(False)
# ... but only an unmet breach takes an incident out of "at risk" (it is past that).
BREACHED_NOW = (
    (ResponseClock.breached_at.is_null(False) & ResponseClock.met_at.is_null())
    | (ResolutionClock.breached_at.is_null(False) & ResolutionClock.met_at.is_null())
)


def _small_int(text: str | None) -> int | None:
    """ASCII digits that fit a 64-bit column, else None (no '²', no 10**30)."""
    return int(text) if text and re.fullmatch(r"[0-9]{1,18}", text) else None


@dataclass
class Filters:
    status: list[str] = field(default_factory=list)
    priority: list[int] = field(default_factory=list)
    type: list[str] = field(default_factory=list)
    team: int | None = None
    text: str = ""
    sort: str = "updated"

    @classmethod
    def parse(cls, args: Any) -> Filters:
        """Read filters from query arguments; unknown values are a clear error."""
        statuses = [s for s in args.getlist("status") if s]
        for status in statuses:
            if status not in STATUSES:
                raise DomainError(f"Unknown status filter {status!r}.")
        priorities = [_small_int(p) for p in args.getlist("priority") if p]
        if any(p not in PRIORITIES for p in priorities):
            raise DomainError("The priority filter takes 1 to 4.")
        types = [t for t in args.getlist("type") if t]
        for kind in types:
            if kind not in TYPES:
                raise DomainError(f"Unknown type filter {kind!r}.")
        team_arg = args.get("team") or None
        team = _small_int(team_arg) if team_arg else None
        if team_arg and team is None:
            raise DomainError("The team filter takes a team id.")
        sort = args.get("sort") or "updated"
        if sort not in SORTS:
            raise DomainError(f"Unknown sort {sort!r}.")
        text = " ".join((args.get("q") or "").split())[:200]
        return cls(statuses, priorities, types, team, text, sort)


@dataclass
class Page:
    rows: list[Incident]
    next_cursor: str | None


def base_query() -> peewee.ModelSelect:
    """Incidents with both pairs and the requester joined in (one query per page)."""
    return (
        Incident.select(Incident, OwnerTeam, OwnerAgent, AssignedTeam, AssignedAgent, Contact,
                        ResponseClock, ResolutionClock)
        .join_from(Incident, OwnerTeam, on=(Incident.owner_team == OwnerTeam.id),
                   attr="owner_team")
        .join_from(Incident, OwnerAgent, peewee.JOIN.LEFT_OUTER,
                   on=(Incident.owner_agent == OwnerAgent.id), attr="owner_agent")
        .join_from(Incident, AssignedTeam, peewee.JOIN.LEFT_OUTER,
                   on=(Incident.assigned_team == AssignedTeam.id), attr="assigned_team")
        .join_from(Incident, AssignedAgent, peewee.JOIN.LEFT_OUTER,
                   on=(Incident.assigned_agent == AssignedAgent.id), attr="assigned_agent")
        .join_from(Incident, Contact, peewee.JOIN.LEFT_OUTER,
                   on=(Incident.requester == Contact.id), attr="requester")
        .join_from(Incident, ResponseClock, peewee.JOIN.LEFT_OUTER,
                   on=((ResponseClock.incident == Incident.id) & (ResponseClock.target == "response")),
                   attr="response_clock")
        .join_from(Incident, ResolutionClock, peewee.JOIN.LEFT_OUTER,
                   on=((ResolutionClock.incident == Incident.id) & (ResolutionClock.target == "resolution")),
                   attr="resolution_clock")
    )


def queue_condition(queue: str, agent: Agent) -> peewee.Expression:
    my_teams = Membership.select(Membership.team).where(Membership.agent == agent.id)
    mine = (Incident.owner_agent == agent.id) | (Incident.owner_team.in_(my_teams))
    conditions = {
        "assigned": Incident.assigned_agent == agent.id,
        "owned": Incident.owner_agent == agent.id,
        "at_risk": mine & DUE.is_null(False) & ~BREACHED_NOW,
        "breached": BREACHED,
        "escalated": Incident.escalation_level > 0,
        "teams": (Incident.assigned_team.in_(my_teams)) | (Incident.owner_team.in_(my_teams)),
        "unassigned": Incident.assigned_agent.is_null(),
        "unowned": Incident.owner_agent.is_null(),
        "open": peewee.SQL("1 = 1"),
    }
    if queue not in conditions:
        raise DomainError(f"There is no queue {queue!r}.")
    return conditions[queue]


def _filtered(queue: str, agent: Agent, filters: Filters) -> peewee.ModelSelect:
    query = base_query().where(queue_condition(queue, agent))
    query = query.where(Incident.status.in_(filters.status or ACTIVE_STATUSES))
    if filters.priority:
        query = query.where(Incident.priority.in_(filters.priority))
    if filters.type:
        query = query.where(Incident.type.in_(filters.type))
    if filters.team is not None:
        query = query.where(
            (Incident.assigned_team == filters.team) | (Incident.owner_team == filters.team)
        )
    if filters.text:
        reference = _small_int(filters.text.upper().removeprefix("INC-"))
        match = peewee.fn.LOWER(Incident.title).contains(filters.text.lower())
        if reference is not None:
            match = match | (Incident.id == reference)
        query = query.where(match)
    return query


def encode_cursor(value: Any, row_id: int) -> str:
    if isinstance(value, dt.datetime):
        value = value.isoformat()
    raw = json.dumps([value, row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _is_int64(value: Any) -> bool:
    """A whole number the database can compare (a huge one overflows SQLite's INTEGER)."""
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


def decode_cursor(cursor: str, column: str) -> tuple[Any, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if column.endswith("_at"):
            value = dt.datetime.fromisoformat(value)
        elif not _is_int64(value):
            raise ValueError
        if not _is_int64(row_id):
            raise ValueError
    except (ValueError, TypeError, json.JSONDecodeError):
        raise DomainError("This page link is broken; start again from the first page.") from None
    return value, row_id


def sort_value(incident: Incident, sort: str) -> Any:
    if sort != "due":
        return getattr(incident, SORTS[sort][0])
    response = incident.response_clock
    if response is not None and response.met_at is None and response.stopped_at is None:
        return response.due_at
    return incident.resolution_clock.due_at if incident.resolution_clock else None


def page(
    queue: str, agent: Agent, filters: Filters, size: int, after: str | None = None
) -> Page:
    """One page of a queue, ordered by the chosen sort, then id (a stable keyset)."""
    column_name, descending = SORTS[filters.sort]
    column = DUE if filters.sort == "due" else getattr(Incident, column_name)
    if filters.sort == "due" and queue != "at_risk":
        raise DomainError("Sorting by SLA due time is offered in the At risk queue.")
    query = _filtered(queue, agent, filters)
    if after:
        value, row_id = decode_cursor(after, column_name)
        if descending:
            query = query.where((column < value) | ((column == value) & (Incident.id < row_id)))
        else:
            query = query.where((column > value) | ((column == value) & (Incident.id > row_id)))
    order = (column.desc(), Incident.id.desc()) if descending else (column, Incident.id)
    rows = list(query.order_by(*order).limit(size + 1))
    next_cursor = None
    if len(rows) > size:
        rows = rows[:size]
        last = rows[-1]
        next_cursor = encode_cursor(sort_value(last, filters.sort), last.id)
    return Page(rows, next_cursor)
