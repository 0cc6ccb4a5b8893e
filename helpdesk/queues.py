"""Agent queues: which incidents each queue holds, filters, sorting and keyset pages.

A page of any size costs the same few queries, and the same time at any number of
incidents: the page's ids are read in order from an index that leads with the queue's
own condition, then the owner and assignee pairs, requester and clocks are joined in for
those rows only, never loaded row by row.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import operator
import re
from dataclasses import dataclass, field
from typing import Any

import peewee

from helpdesk.db import database, is_sqlite
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
    "due": ("sla_due_at", False),
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
# The active pool in literals, exactly as the partial queue indexes state it (a planner
# only picks a partial index when the query repeats its condition; see models.queue_indexes).
ACTIVE = Incident.status.in_([peewee.SQL(repr(status)) for status in ACTIVE_STATUSES])


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
    """Incidents with both pairs, the requester and both SLA clocks joined in (one query)."""
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


def team_ids(agent: Agent) -> list[int]:
    return [row.team_id for row in Membership.select(Membership.team).where(Membership.agent == agent.id)
            .order_by(Membership.team)]


def branches(queue: str, agent: Agent, teams: list[int], filters: Filters
             ) -> list[tuple[str, peewee.Expression]]:
    """A queue as a union of index ranges: (queue index key, condition) pairs, each an
    equality (or a partial index's own condition) that one queue index serves in sort order,
    so no branch reads rows past the page. A queue over several teams is one branch per team
    and side (owner, assignee). Keys are those of ``models.QUEUE_INDEX_KEYS``."""
    at_risk = Incident.sla_due_at.is_null(False)
    found = {
        "assigned": [("assignee", Incident.assigned_agent == agent.id)],
        "owned": [("owner", Incident.owner_agent == agent.id)],
        "at_risk": [("risk_owner", (Incident.owner_agent == agent.id) & at_risk)]
        + [("risk_owner_team", (Incident.owner_team == team) & at_risk) for team in teams],
        "breached": [("breached", Incident.sla_breached)],
        # A literal, not a parameter: SQLite uses a partial index only when it can prove its WHERE.
        "escalated": [("escalated", Incident.escalation_level > peewee.SQL("0"))],
        "teams": [("assigned_team", Incident.assigned_team == team) for team in teams]
        + [("owner_team", Incident.owner_team == team) for team in teams],
        "unassigned": [("unassigned", Incident.assigned_agent.is_null())],
        "unowned": [("unowned", Incident.owner_agent.is_null())],
        "open": [("open", peewee.SQL("1 = 1"))],
    }
    if queue not in found:
        raise DomainError(f"There is no queue {queue!r}.")
    if queue == "open" and filters.team is not None:  # the team filter is the only condition
        return [("assigned_team", Incident.assigned_team == filters.team),
                ("owner_team", Incident.owner_team == filters.team)]
    return found[queue]


def queue_condition(queue: str, agent: Agent) -> peewee.Expression:
    """The whole queue as one condition on incidents (status not included), e.g. for a
    bounded count; pages use :func:`branches`, which an index serves one by one."""
    parts = [condition for _key, condition in branches(queue, agent, team_ids(agent), Filters())]
    return functools.reduce(operator.or_, parts) if parts else peewee.SQL("1 = 0")


def _filter_condition(filters: Filters) -> peewee.Expression:
    condition = ACTIVE
    if filters.status:  # only active statuses are served by the queue indexes
        condition = Incident.status.in_(filters.status)
        if set(filters.status) <= set(ACTIVE_STATUSES):
            condition = ACTIVE & condition
    if filters.priority:
        condition &= Incident.priority.in_(filters.priority)
    if filters.type:
        condition &= Incident.type.in_(filters.type)
    if filters.team is not None:
        condition &= (Incident.assigned_team == filters.team) | (Incident.owner_team == filters.team)
    if filters.text:
        reference = _small_int(filters.text.upper().removeprefix("INC-"))
        match = peewee.fn.LOWER(Incident.title).contains(filters.text.lower())
        if reference is not None:
            match = match | (Incident.id == reference)
        condition &= match
    return condition


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


# sort -> the suffix of the queue index that serves it (newest and oldest share one)
INDEX_SORTS = {"updated": "updated", "newest": "created", "oldest": "created", "priority": "priority",
               "due": "due"}


def id_queries(queue: str, agent: Agent, filters: Filters, size: int, after: str | None = None,
               teams: list[int] | None = None) -> list[tuple[str, peewee.ModelSelect]]:
    """One query per branch: (id, sort key) of at most ``size`` + 1 rows, on the incident
    table alone, in index order; each with the name of the queue index meant to serve it."""
    column_name, descending = SORTS[filters.sort]
    if filters.sort == "due" and queue != "at_risk":
        raise DomainError("Sorting by SLA due time is offered in the At risk queue.")
    column = getattr(Incident, column_name)
    condition = _filter_condition(filters)
    if after:
        value, row_id = decode_cursor(after, column_name)
        key = peewee.Tuple(column, Incident.id)
        bound = peewee.Tuple(peewee.Value(value, converter=column.db_value), row_id)
        condition &= (key < bound) if descending else (key > bound)
    order = (column.desc(), Incident.id.desc()) if descending else (column, Incident.id)
    teams = team_ids(agent) if teams is None else teams
    return [(f"incident_q_{key}_{INDEX_SORTS[filters.sort]}",
             Incident.select(Incident.id, column.alias("sort_key")).where(branch & condition)
             .order_by(*order).limit(size + 1))
            for key, branch in branches(queue, agent, teams, filters)]


def branch_statements(queue: str, agent: Agent, filters: Filters, size: int, after: str | None = None
                      ) -> list[tuple[str, list[Any]]]:
    """The SQL of each branch. SQLite is told which index to read (``INDEXED BY``): its
    planner, without statistics or with sampled ones, may otherwise take the status index
    and sort the whole active pool. PostgreSQL's statistics (autovacuum) pick it unaided."""
    forced = is_sqlite() and (not filters.status or set(filters.status) <= set(ACTIVE_STATUSES))
    statements = []
    for index, query in id_queries(queue, agent, filters, size, after):
        sql, params = database.obj.get_sql_context().sql(query).query()
        if forced:
            source = 'FROM "incident" AS "t1"'
            assert sql.count(source) == 1, sql
            sql = sql.replace(source, f'{source} INDEXED BY "{index}"')
        statements.append((sql, params))
    return statements


def ids_statement(queue: str, agent: Agent, filters: Filters, size: int, after: str | None = None
                  ) -> tuple[str, list[Any]] | None:
    """The SQL that finds a page's (id, sort key) rows, or None when the queue is empty by
    definition (an agent in no team). Several branches merge in a UNION whose sort reads at
    most ``size`` + 1 rows per branch."""
    statements = branch_statements(queue, agent, filters, size, after)
    if len(statements) <= 1:
        return statements[0] if statements else None
    parts, params = [], []
    for n, (sql, values) in enumerate(statements):
        parts.append(f"SELECT * FROM ({sql}) AS b{n}")  # noqa: S608 - peewee's SQL, values bound
        params.extend(values)
    direction = "DESC" if SORTS[filters.sort][1] else "ASC"
    return (" UNION ".join(parts) + f" ORDER BY sort_key {direction}, id {direction} "
            f"LIMIT {int(size) + 1}"), params


def page_ids(queue: str, agent: Agent, filters: Filters, size: int, after: str | None = None
             ) -> tuple[list[int], str | None]:
    """The ids of one page in order, and the cursor of the next page (None on the last)."""
    statement = ids_statement(queue, agent, filters, size, after)
    if statement is None:
        return [], None
    converter = getattr(Incident, SORTS[filters.sort][0]).python_value
    rows = [(row_id, converter(key)) for row_id, key in database.execute_sql(*statement)]
    next_cursor = None
    if len(rows) > size:
        rows = rows[:size]
        next_cursor = encode_cursor(*reversed(rows[-1]))
    return [row_id for row_id, _key in rows], next_cursor


def page(
    queue: str, agent: Agent, filters: Filters, size: int, after: str | None = None
) -> Page:
    """One page of a queue, ordered by the chosen sort, then id (a stable keyset).

    The page's ids come first from the incident table alone (index ranges read in order);
    the pairs, requester and clocks are joined only for those rows.
    """
    ids, next_cursor = page_ids(queue, agent, filters, size, after)
    if not ids:
        return Page([], next_cursor)
    found = {row.id: row for row in base_query().where(Incident.id.in_(ids))}
    return Page([found[row_id] for row_id in ids if row_id in found], next_cursor)
