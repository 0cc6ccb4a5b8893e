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
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import peewee

from helpdesk.db import Statement, database, hydrate, is_sqlite, planned_once
from helpdesk.errors import DomainError
from helpdesk.models import (
    ACTIVE_STATUSES,
    DUE_LAST,
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
        text = " ".join((args.get("q") or "").split())[:SEARCH_TEXT_LENGTH]
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


_TEAM_IDS = Statement(lambda agent_id: Membership.select(Membership.team)
                      .where(Membership.agent == agent_id).order_by(Membership.team))


def team_ids(agent: Agent) -> list[int]:
    """The ids of the agent's teams, in order (one query, compiled once)."""
    return [team_id for (team_id,) in _TEAM_IDS.execute(agent.id)]


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
        if filters.text.isascii():
            # LIKE (SQLite) and ILIKE (PostgreSQL) ignore the case of ASCII letters by
            # themselves; SQLite's LOWER() is a Python function here (see db._lower), which
            # costs about five times as much for each row the filter reads.
            match = Incident.title.contains(filters.text)
        else:
            match = peewee.fn.LOWER(Incident.title).contains(filters.text.lower())
        if reference is not None:
            match = match | (Incident.id == reference)
        condition &= match
    return condition


def encode_cursor(value: Any, row_id: int, sort: str) -> str:
    """The next page's key, with the sort it belongs to: a key read under another sort (a
    client that changed ``sort`` but kept ``after``) would start a page at an arbitrary row."""
    if isinstance(value, dt.datetime):
        value = value.isoformat()
    raw = json.dumps([value, row_id, sort]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _is_int64(value: Any) -> bool:
    """A whole number the database can compare (a huge one overflows SQLite's INTEGER)."""
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


def decode_cursor(cursor: str, column: str, sort: str) -> tuple[Any, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value, row_id, sorted_by = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if sorted_by != sort:
            raise ValueError  # another sort's key: it would start the page at an arbitrary row
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


def sort_expression(queue: str, sort: str) -> Any:
    """What a queue's sort orders by: a column, or for the due sort outside At risk (whose
    rows all have a due time) the breach of a breached row, else the due time, with the rows
    that have neither last, written as the expression of the queue's due index (see
    ``models.DUE_SORT_SQL``)."""
    if sort == "due" and queue != "at_risk":
        return peewee.fn.COALESCE(Incident.sla_due_at, Incident.sla_overdue_since,
                                  peewee.SQL(f"'{DUE_LAST}'"))
    return getattr(Incident, SORTS[sort][0])


def id_queries(queue: str, agent: Agent, filters: Filters, size: int, after: str | None = None,
               teams: list[int] | None = None) -> list[tuple[str, peewee.ModelSelect]]:
    """One query per branch: (id, sort key) of at most ``size`` + 1 rows, on the incident
    table alone, in index order; each with the name of the queue index meant to serve it."""
    column_name, descending = SORTS[filters.sort]
    column = sort_expression(queue, filters.sort)
    condition = _filter_condition(filters)
    if after:
        value, row_id = decode_cursor(after, column_name, filters.sort)
        key = peewee.Tuple(column, Incident.id)
        converter = getattr(Incident, column_name).db_value
        bound = peewee.Tuple(peewee.Value(value, converter=converter), row_id)
        if filters.sort == "due" and queue != "at_risk":
            # The same keyset spelled so PostgreSQL estimates it right: a row comparison is
            # judged by its first column alone, so past the last due time (the rows without
            # one share a single key) it would expect no rows and sort a bitmap scan rather
            # than read the due index in order. Both databases read the index range a >= v.
            start = peewee.Value(value, converter=converter)
            condition &= (column >= start) & ((column > start) | (Incident.id > row_id))
        else:
            condition &= (key < bound) if descending else (key > bound)
    order = (column.desc(), Incident.id.desc()) if descending else (column, Incident.id)
    teams = team_ids(agent) if teams is None else teams
    return [(f"incident_q_{key}_{INDEX_SORTS[filters.sort]}",
             Incident.select(Incident.id, column.alias("sort_key")).where(branch & condition)
             .order_by(*order).limit(size + 1))
            for key, branch in branches(queue, agent, teams, filters)]


def branch_statements(queue: str, agent: Agent, filters: Filters, size: int, after: str | None = None,
                      teams: list[int] | None = None) -> list[tuple[str, list[Any]]]:
    """The SQL of each branch. SQLite is told which index to read (``INDEXED BY``): its
    planner, without statistics or with sampled ones, may otherwise take the status index
    and sort the whole active pool. PostgreSQL's statistics (autovacuum) pick it unaided."""
    forced = is_sqlite() and (not filters.status or set(filters.status) <= set(ACTIVE_STATUSES))
    statements = []
    for index, query in id_queries(queue, agent, filters, size, after, teams):
        sql, params = database.obj.get_sql_context().sql(query).query()
        if forced:
            source = 'FROM "incident" AS "t1"'
            assert sql.count(source) == 1, sql
            sql = sql.replace(source, f'{source} INDEXED BY "{index}"')
        statements.append((sql, params))
    return statements


class _Kept:
    """The last ``size`` statements built, by key, behind a lock (web servers run threads)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.found: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        with self.lock:
            if key in self.found:
                self.found.move_to_end(key)
                return self.found[key]
        built = build()
        with self.lock:
            self.found[key] = built
            if len(self.found) > self.size:
                self.found.popitem(last=False)
        return built


#: First pages' statements kept (see :func:`ids_statement`).
FIRST_PAGES_KEPT = 256
_first_pages = _Kept(FIRST_PAGES_KEPT)


def ids_statement(queue: str, agent: Agent, filters: Filters, size: int, after: str | None = None,
                  teams: list[int] | None = None) -> tuple[str, list[Any]] | None:
    """The SQL that finds a page's (id, sort key) rows, or None when the queue is empty by
    definition (an agent in no team). Several branches merge in a UNION whose sort reads at
    most ``size`` + 1 rows per branch.

    A first page's statement depends only on the queue, the agent and their teams, the
    filters and the size, so the last :data:`FIRST_PAGES_KEPT` are kept: peewee took
    ~0.15 ms a branch to build them, and At risk or My teams has three or four branches.
    Kept statements are :func:`~helpdesk.db.planned_once` (PostgreSQL plans them once)."""
    teams = team_ids(agent) if teams is None else teams
    if after is not None or filters.text:
        return _ids_statement(queue, agent, filters, size, after, teams)
    key = (type(database.obj), queue, agent.id, tuple(teams), tuple(filters.status),
           tuple(filters.priority), tuple(filters.type), filters.team, filters.sort, size)

    def build() -> tuple[str, list[Any]] | None:
        statement = _ids_statement(queue, agent, filters, size, None, teams)
        return None if statement is None else planned_once(*statement)
    return _first_pages.get(key, build)


def _ids_statement(queue: str, agent: Agent, filters: Filters, size: int, after: str | None,
                   teams: list[int]) -> tuple[str, list[Any]] | None:
    statements = branch_statements(queue, agent, filters, size, after, teams)
    if len(statements) <= 1:
        return statements[0] if statements else None
    parts, params = [], []
    for n, (sql, values) in enumerate(statements):
        parts.append(f"SELECT * FROM ({sql}) AS b{n}")  # noqa: S608 - peewee's SQL, values bound
        params.extend(values)
    direction = "DESC" if SORTS[filters.sort][1] else "ASC"
    return (" UNION ".join(parts) + f" ORDER BY sort_key {direction}, id {direction} "
            f"LIMIT {int(size) + 1}"), params


def page_ids(queue: str, agent: Agent, filters: Filters, size: int, after: str | None = None,
             teams: list[int] | None = None) -> tuple[list[int], str | None]:
    """The ids of one page in order, and the cursor of the next page (None on the last)."""
    statement = ids_statement(queue, agent, filters, size, after, teams)
    if statement is None:
        return [], None
    converter = getattr(Incident, SORTS[filters.sort][0]).python_value
    rows = [(row_id, converter(key)) for row_id, key in database.execute_sql(*statement)]
    next_cursor = None
    if len(rows) > size:
        rows = rows[:size]
        row_id, key = rows[-1]
        next_cursor = encode_cursor(key, row_id, filters.sort)
    return [row_id for row_id, _key in rows], next_cursor


def page(
    queue: str, agent: Agent, filters: Filters, size: int, after: str | None = None,
    teams: list[int] | None = None,
) -> Page:
    """One page of a queue, ordered by the chosen sort, then id (a stable keyset).

    The page's ids come first from the incident table alone (index ranges read in order);
    the pairs, requester and clocks are joined only for those rows. ``teams`` (the agent's
    team ids) saves a query when the caller has them already.
    """
    ids, next_cursor = page_ids(queue, agent, filters, size, after, teams)
    if not ids:
        return Page([], next_cursor)
    found = {row.id: row for row in rows_by_id(ids)}
    return Page([found[row_id] for row_id in ids if row_id in found], next_cursor)


# The joined models of :func:`base_query` as (alias, model, attribute on the incident, is a
# foreign key of the incident): the same graph, read by :func:`rows_by_id` without peewee's
# general row walker, which costs more than the query itself for a page of eight-model rows.
_JOINED = (
    (OwnerTeam, Team, "owner_team", True),
    (OwnerAgent, Agent, "owner_agent", True),
    (AssignedTeam, Team, "assigned_team", True),
    (AssignedAgent, Agent, "assigned_agent", True),
    (Contact, Contact, "requester", True),
    (ResponseClock, SlaClock, "response_clock", False),
    (ResolutionClock, SlaClock, "resolution_clock", False),
)
_statements: dict[tuple[type, int], tuple[str, list[Any]]] = {}


def _rows_statement(count: int) -> tuple[str, list[Any]]:
    """The joined query for ``count`` ids as SQL, built once per database kind and count
    (a page has one of a few sizes): the leading parameters, the ids come last."""
    key = (type(database.obj), count)
    if key not in _statements:
        marks = [-(n + 1) for n in range(count)]
        sql, params = base_query().where(Incident.id.in_(marks)).sql()
        assert list(params[-count:]) == marks, sql
        _statements[key] = (sql, list(params[:-count]))
    return _statements[key]


def rows_by_id(ids: list[int]) -> list[Incident]:
    """The incidents of ``ids`` (any order) with both pairs, the requester and both SLA
    clocks attached exactly as :func:`base_query` attaches them (an absent pair member or
    requester is ``None``, as is an absent clock), in one query whose SQL is cached."""
    if not ids:
        return []
    sql, leading = _rows_statement(len(ids))
    found = []
    for row in database.execute_sql(sql, leading + list(ids)):
        incident, *joined = hydrate(row, Incident, *(model for _alias, model, _attr, _fk in _JOINED))
        for (_alias, _model, attr, is_fk), value in zip(_JOINED, joined, strict=True):
            if is_fk:
                incident.__rel__[attr] = value
            else:
                incident.__dict__[attr] = value
        found.append(incident)
    return found


# -- counts in the navigation -------------------------------------------------------------------

#: Counts stop here: the navigation says "999+" rather than counting a whole pool.
COUNT_LIMIT = 1000


_count_statements = _Kept(256)


def count_statement(agent: Agent, teams: list[int] | None = None) -> tuple[str, list[Any]]:
    """One statement counting every queue of ``agent``, each to at most :data:`COUNT_LIMIT`:
    per branch, at most that many ids read from the queue's own partial index (SQLite is
    told which), merged without duplicates. The cost is bounded whatever the pool.

    It depends only on the agent and their teams, so the last 256 are kept (peewee took
    ~3 ms to build its twenty-odd branches) and :func:`~helpdesk.db.planned_once`."""
    teams = team_ids(agent) if teams is None else teams
    return _count_statements.get((type(database.obj), agent.id, tuple(teams), COUNT_LIMIT),
                                 lambda: planned_once(*_count_statement(agent, teams)))


def _count_statement(agent: Agent, teams: list[int]) -> tuple[str, list[Any]]:
    columns, params = [], []
    for queue in QUEUES:
        parts = []
        for key, branch in branches(queue, agent, teams, Filters()):
            query = Incident.select(Incident.id).where(branch & ACTIVE).limit(COUNT_LIMIT)
            sql, values = database.obj.get_sql_context().sql(query).query()
            if is_sqlite():
                source = 'FROM "incident" AS "t1"'
                sql = sql.replace(source, f'{source} INDEXED BY "incident_q_{key}_updated"')
            parts.append(f"SELECT id FROM ({sql}) AS b{len(parts)}")  # noqa: S608 - values bound
            params.extend(values)
        if parts:
            columns.append(f"(SELECT count(*) FROM ({' UNION '.join(parts)}) AS u)")  # noqa: S608
        else:
            columns.append("0")
    return "SELECT " + ", ".join(columns), params


def counts(agent: Agent) -> dict[str, int]:
    """Each queue's active incidents for ``agent`` (one query), capped at :data:`COUNT_LIMIT`."""
    row = database.execute_sql(*count_statement(agent)).fetchone()
    return {queue: min(int(value), COUNT_LIMIT) for queue, value in zip(QUEUES, row, strict=True)}


def count_label(value: int) -> str:
    """``"999+"`` at the cap, else the number."""
    return f"{COUNT_LIMIT - 1}+" if value >= COUNT_LIMIT else str(value)


# -- columns and saved views --------------------------------------------------------------------

#: Columns an agent may hide (the reference and title always show), in page order.
COLUMNS = {
    "priority": "Priority",
    "status": "Status",
    "due": "Due",
    "owner": "Owner",
    "assignee": "Assignee",
    "updated": "Updated",
}
FILTER_KEYS = ("status", "priority", "type", "team", "q", "sort")
VIEW_NAME_LENGTH = 60
VIEW_QUERY_LENGTH = 2000
SEARCH_TEXT_LENGTH = 200  # a queue's search text is cut here


def parse_columns(values: list[str]) -> list[str]:
    """Chosen column names in page order; an unknown one is a clear error, none means all."""
    for value in values:
        if value not in COLUMNS:
            raise DomainError(f"Unknown column {value!r}.")
    chosen = [name for name in COLUMNS if name in values]
    return chosen or list(COLUMNS)


def view_filters(query: str) -> dict[str, list[str]]:
    """A saved view's filters from a query string (``status=new&sort=due``), checked as the
    queue page checks them; an unknown filter name is refused, not dropped."""
    from urllib.parse import parse_qs

    from werkzeug.datastructures import MultiDict

    if len(query or "") > VIEW_QUERY_LENGTH:  # opening the view redirects to a URL built from it
        raise DomainError(f"A view's filters have at most {VIEW_QUERY_LENGTH} characters.")
    parsed = parse_qs(query or "", keep_blank_values=False, max_num_fields=50)
    if any(len(" ".join(text.split())) > SEARCH_TEXT_LENGTH for text in parsed.get("q", [])):
        raise DomainError(f"A view's search text has at most {SEARCH_TEXT_LENGTH} characters.")
    for key in parsed:
        if key not in FILTER_KEYS:
            raise DomainError(f"Unknown filter {key!r}; filters are: {', '.join(FILTER_KEYS)}.")
    Filters.parse(MultiDict([(k, v) for k, values in parsed.items() for v in values]))
    return parsed


def visible_views(agent: Agent) -> list[Any]:
    """The agent's own views and those shared with the agent's teams, by name."""
    from helpdesk.models import SavedView

    teams = team_ids(agent)
    shared = SavedView.team.in_(teams) if teams else peewee.SQL("1 = 0")
    return list(SavedView.select().where((SavedView.owner == agent.id) | shared)
                .order_by(SavedView.name, SavedView.id))


def get_view(agent: Agent, view_id: int | None) -> Any:
    """A view the agent may use; one of another team (or none) is not found."""
    from helpdesk.errors import NotFound
    from helpdesk.models import SavedView

    view = SavedView.get_or_none(SavedView.id == view_id) if view_id is not None else None
    if view is None or not (view.owner_id == agent.id
                            or (view.team_id is not None and view.team_id in team_ids(agent))):
        raise NotFound("There is no such saved view.")
    return view


def can_edit_view(agent: Agent, view: Any) -> bool:
    """Its creator, or a lead who is a member of the team it is shared with."""
    if view.owner_id == agent.id:
        return True
    return bool(agent.is_lead and view.team_id is not None and view.team_id in team_ids(agent))


def save_view(agent: Agent, *, name: str, queue: str, query: str, columns: list[str],
              team: int | None, view: Any = None) -> Any:
    """Create (or, given ``view``, change) a saved view after checking every input: the name
    (1–60 characters, unique per owner), the queue, the filters, the columns and that the
    team shared with is one of the agent's teams."""
    from helpdesk.errors import PermissionDenied
    from helpdesk.models import SavedView

    name = " ".join((name or "").split())
    if not name:
        raise DomainError("Give the view a name.")
    if len(name) > VIEW_NAME_LENGTH:
        raise DomainError(f"A view name has at most {VIEW_NAME_LENGTH} characters.")
    if queue not in QUEUES:
        raise DomainError(f"There is no queue {queue!r}.")
    filters = view_filters(query)
    shown = parse_columns(columns)
    if view is not None and not can_edit_view(agent, view):
        raise PermissionDenied("Only its creator or a lead of its team can change this view.")
    if team is not None and team not in team_ids(agent) and not (view is not None and team == view.team_id):
        raise DomainError("Share a view only with one of your teams.")
    owner = view.owner_id if view is not None else agent.id
    clash = SavedView.select().where((SavedView.owner == owner) & (SavedView.name == name))
    if view is not None:
        clash = clash.where(SavedView.id != view.id)
    if clash.exists():
        raise DomainError(f"There is already a view named {name!r}.")
    values = {"name": name, "queue": queue, "filters": json.dumps(filters, sort_keys=True),
              "columns": ",".join(shown), "team": team}
    with database.atomic():
        if view is None:
            return SavedView.create(owner=agent.id, **values)
        SavedView.update(**values).where(SavedView.id == view.id).execute()
    return SavedView.get_by_id(view.id)


def delete_view(agent: Agent, view: Any) -> None:
    """Remove a view: its creator, or a lead of the team it is shared with."""
    from helpdesk.errors import PermissionDenied

    if not can_edit_view(agent, view):
        raise PermissionDenied("Only its creator or a lead of its team can delete this view.")
    view.delete_instance()


def view_args(view: Any) -> list[tuple[str, str]]:
    """A saved view's filters as query arguments."""
    stored = json.loads(view.filters or "{}")
    return [(key, value) for key in FILTER_KEYS for value in stored.get(key, [])]
