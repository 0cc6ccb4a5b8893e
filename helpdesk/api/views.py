"""The API's operations on incidents and the directory. Every change calls the same domain
function the pages call (:mod:`helpdesk.incidents`); nothing here writes an incident."""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee
from flask import Response, request, url_for

from helpdesk import incidents as domain
from helpdesk import queues, sla
from helpdesk.api.http import (
    ApiError,
    body,
    current_token,
    endpoint,
    expected_version,
    json_response,
)
from helpdesk.clock import now
from helpdesk.errors import DomainError, StaleVersion
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
    Delivery,
    Incident,
    Membership,
    Service,
    SlaClock,
    Team,
    TimelineEntry,
)
from helpdesk.web import context

MAX_PAGE = 100
DEFAULT_PAGE = 25

# -- schemas (published in the OpenAPI document and used to check bodies) -------------------

ID = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
OPTIONAL_ID = {"type": ["integer", "null"], "minimum": 1, "maximum": 2**63 - 1}
TEXT = {"type": "string", "maxLength": 20000}
SHORT = {"type": "string", "maxLength": 2000}
REF = {"type": ["object", "null"], "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}}
PAIR = {"type": "object", "properties": {"team": REF, "agent": REF}}
STAMP = {"type": ["string", "null"], "format": "date-time"}
INCIDENT = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"}, "reference": {"type": "string"}, "url": {"type": "string"},
        "title": {"type": "string"}, "description": {"type": "string"},
        "type": {"type": "string", "enum": list(TYPES)},
        "status": {"type": "string", "enum": list(STATUSES)},
        "pending_reason": {"type": ["string", "null"]},
        "impact": {"type": "string", "enum": list(LEVELS)},
        "urgency": {"type": "string", "enum": list(LEVELS)},
        "priority": {"type": "integer", "enum": list(PRIORITIES)},
        "priority_overridden": {"type": "boolean"}, "source": {"type": "string"},
        "category": REF, "service": REF, "requester": REF, "owner": PAIR, "assignee": PAIR,
        "parent": {"type": ["integer", "null"]}, "duplicate_of": {"type": ["integer", "null"]},
        "resolution_code": {"type": ["string", "null"]}, "resolution_note": {"type": ["string", "null"]},
        "created_at": STAMP, "updated_at": STAMP, "resolved_at": STAMP, "closed_at": STAMP,
        "version": {"type": "integer"},
    },
}
NEW_INCIDENT = {
    "type": "object",
    "required": ["title"],
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": domain.MAX_TITLE},
        "description": TEXT,
        "type": {"type": "string", "enum": list(TYPES)},
        "impact": {"type": "string", "enum": list(LEVELS)},
        "urgency": {"type": "string", "enum": list(LEVELS)},
        "category_id": OPTIONAL_ID, "service_id": OPTIONAL_ID, "requester_id": OPTIONAL_ID,
        "assigned_team_id": OPTIONAL_ID, "assigned_agent_id": OPTIONAL_ID,
        "keep_ownership": {"type": "boolean"},
    },
}
DETAILS = {
    "type": "object",
    "properties": {name: NEW_INCIDENT["properties"][name] for name in (
        "title", "description", "type", "impact", "urgency", "category_id", "service_id",
        "requester_id")},
}
OWNER = {"type": "object", "required": ["team_id"], "properties": {
    "team_id": ID, "agent_id": OPTIONAL_ID, "reason": SHORT}}
ASSIGNEE = {"type": "object", "properties": {
    "team_id": OPTIONAL_ID, "agent_id": OPTIONAL_ID, "note": SHORT}}
STATUS = {"type": "object", "required": ["status"], "properties": {
    "status": {"type": "string", "enum": list(STATUSES)}, "note": TEXT,
    "pending_reason": {"type": ["string", "null"], "enum": [*PENDING_REASONS, None]},
    "resolution_code": {"type": ["string", "null"], "enum": [*RESOLUTION_CODES, None]}}}
PRIORITY = {"type": "object", "required": ["priority"], "properties": {
    "priority": {"type": ["integer", "null"], "enum": [*PRIORITIES, None]}, "reason": SHORT}}
COMMENT = {"type": "object", "required": ["body"], "properties": {
    "body": {"type": "string", "minLength": 1, "maxLength": 20000},
    "visibility": {"type": "string", "enum": ["public", "internal"]}}}
LINK = {"type": "object", "required": ["kind"], "properties": {
    "kind": {"type": "string", "enum": ["parent", "duplicate_of"]}, "other_id": OPTIONAL_ID}}
ENTRY = {"type": "object", "properties": {
    "id": {"type": "integer"}, "at": STAMP, "kind": {"type": "string"}, "actor": REF,
    "field": {"type": ["string", "null"]}, "old_value": {"type": ["string", "null"]},
    "new_value": {"type": ["string", "null"]}, "body": {"type": "string"}}}


def listing(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"items": {"type": "array", "items": item},
                                             "next_cursor": {"type": ["string", "null"]}}}


def _param(name: str, description: str, schema: dict[str, Any], many: bool = False) -> dict[str, Any]:
    if many:
        schema = {"type": "array", "items": schema}
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema, **({"style": "form", "explode": True} if many else {})}


PAGE_PARAMS = [
    _param("limit", f"Page size, 1 to {MAX_PAGE}", {"type": "integer", "minimum": 1,
                                                    "maximum": MAX_PAGE}),
    _param("after", "The next_cursor of the previous page", {"type": "string", "maxLength": 500}),
]
INCIDENT_PARAMS = [
    _param("queue", "Which queue, as on the pages (default: open)", {"type": "string",
                                                                    "enum": list(queues.QUEUES)}),
    _param("status", "Statuses (default: the active ones)", {"type": "string",
                                                             "enum": list(STATUSES)}, many=True),
    _param("priority", "Priorities", {"type": "integer", "enum": list(PRIORITIES)}, many=True),
    _param("type", "Types", {"type": "string", "enum": list(TYPES)}, many=True),
    _param("team", "Assigned or owning team id", ID),
    _param("q", "Text in the title, or a reference", {"type": "string", "maxLength": 200}),
    _param("sort", "Order", {"type": "string", "enum": list(queues.SORTS)}),
    *PAGE_PARAMS,
]
ONE = {200: ("The incident (ETag: its version)", INCIDENT)}
CHANGED = {200: ("The changed incident (ETag: its new version)", INCIDENT),
           412: ("Stale If-Match: the current incident is in 'current'", None),
           428: ("If-Match missing", None)}


# -- representations ----------------------------------------------------------------------------


def stamp(value: dt.datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


def ref(record: Any, name: str = "name") -> dict[str, Any] | None:
    if record is None:
        return None
    label = record.display_name if isinstance(record, Agent) else getattr(record, name)
    return {"id": record.id, "name": label}


def incident_json(incident: Incident) -> dict[str, Any]:
    """An incident as the API shows it: user text is data, never rendered HTML."""
    return {
        "id": incident.id, "reference": incident.reference,
        "url": context().incident_url(incident.id),
        "title": incident.title, "description": incident.description, "type": incident.type,
        "status": incident.status, "pending_reason": incident.pending_reason,
        "impact": incident.impact, "urgency": incident.urgency, "priority": incident.priority,
        "priority_overridden": incident.priority_overridden, "source": incident.source,
        "category": ref(incident.category), "service": ref(incident.service),
        "requester": ref(incident.requester),
        "owner": {"team": ref(incident.owner_team), "agent": ref(incident.owner_agent)},
        "assignee": {"team": ref(incident.assigned_team), "agent": ref(incident.assigned_agent)},
        "parent": incident.parent_id, "duplicate_of": incident.duplicate_of_id,
        "resolution_code": incident.resolution_code, "resolution_note": incident.resolution_note,
        "created_at": stamp(incident.created_at), "updated_at": stamp(incident.updated_at),
        "resolved_at": stamp(incident.resolved_at), "closed_at": stamp(incident.closed_at),
        "version": incident.version,
    }


def answer(incident: Incident, status: int = 200) -> Response:
    incident = domain.get(incident.id)  # fresh, with the version the change wrote
    location = url_for("api.get_incident", incident_id=incident.id) if status == 201 else None
    return json_response(incident_json(incident), status, etag=incident.version, location=location)


def record(model: Any, record_id: int | None, what: str) -> Any:
    """The record an ``*_id`` field names; 422 naming the field when there is none."""
    if record_id is None:
        return None
    found = model.get_or_none(model.id == record_id)
    if found is None:
        raise ApiError(422, "Unprocessable content", f"There is no {what.replace('_', ' ')} "
                       f"{record_id}.", field=f"{what}_id")
    return found


def precondition(incident_id: int) -> int | None:
    """The ``If-Match`` version, checked before anything else as HTTP orders it (a stale
    request is a 412 even when the change itself would also be refused); the domain checks
    it again, atomically, when it writes."""
    version = expected_version()
    incident = domain.get(incident_id)
    if version is not None and version != incident.version:
        raise StaleVersion(f"{incident.reference} was changed since you read it (your ETag is "
                           f'"{version}", it is now "{incident.version}"); nothing was saved.', incident)
    return version


def agent_of_token() -> Agent:
    return current_token().agent


# -- incidents -----------------------------------------------------------------------------------


@endpoint("GET", "/incidents", scope="read", summary="List incidents of a queue, filtered and sorted "
          "(keyset pages: follow next_cursor)", query=INCIDENT_PARAMS,
          responses={200: ("A page of incidents", listing(INCIDENT))})
def list_incidents() -> Response:
    queue = request.args.get("queue") or "open"
    if queue not in queues.QUEUES:
        raise ApiError(400, "Bad request", f"There is no queue {queue!r}.", field="queue")
    size = _limit()
    try:
        filters = queues.Filters.parse(request.args)
        page = queues.page(queue, agent_of_token(), filters, size, after=request.args.get("after") or None)
    except DomainError as error:
        raise ApiError(400, "Bad request", str(error), field=_query_field(str(error))) from None
    return json_response({"items": [incident_json(row) for row in page.rows],
                          "next_cursor": page.next_cursor})


def _limit() -> int:
    raw = request.args.get("limit")
    if raw is None:
        return DEFAULT_PAGE
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_PAGE):
        raise ApiError(400, "Bad request", f"limit takes 1 to {MAX_PAGE}.", field="limit")
    return int(raw)


def _query_field(message: str) -> str:
    for name in ("status", "priority", "type", "team", "sort"):
        if name in message.lower():
            return name
    return "after"


@endpoint("POST", "/incidents", scope="write", summary="Log an incident (send Idempotency-Key to "
          "retry safely)", body=NEW_INCIDENT,
          responses={201: ("The new incident (Location, ETag)", INCIDENT)})
def log_incident() -> Response:
    data = body(NEW_INCIDENT)
    incident = domain.log_incident(
        context(), actor=agent_of_token(), title=data["title"],
        description=data.get("description", ""), type=data.get("type", "incident"),
        impact=data.get("impact", "medium"), urgency=data.get("urgency", "medium"),
        category=record(Category, data.get("category_id"), "category"),
        service=record(Service, data.get("service_id"), "service"),
        requester=record(Contact, data.get("requester_id"), "requester"),
        assigned_team=record(Team, data.get("assigned_team_id"), "assigned_team"),
        assigned_agent=record(Agent, data.get("assigned_agent_id"), "assigned_agent"),
        keep_ownership=data.get("keep_ownership", True), source="api",
    )
    return answer(incident, 201)


@endpoint("GET", "/incidents/<int:incident_id>", scope="read", summary="One incident",
          responses=ONE)
def get_incident(incident_id: int) -> Response:
    return answer(domain.get(incident_id))


@endpoint("PATCH", "/incidents/<int:incident_id>", scope="write", if_match=True,
          summary="Change details: title, description, type, impact, urgency, category, service, "
          "requester", body=DETAILS, responses=CHANGED)
def change_details(incident_id: int) -> Response:
    data = body(DETAILS)
    version = precondition(incident_id)
    values: dict[str, Any] = {k: v for k, v in data.items() if not k.endswith("_id")}
    for name, model in (("category", Category), ("service", Service), ("requester", Contact)):
        if f"{name}_id" in data:
            values[name] = record(model, data[f"{name}_id"], name)
    return answer(domain.update_details(context(), incident_id, agent_of_token(), version, **values))


@endpoint("POST", "/incidents/<int:incident_id>/owner", scope="write", if_match=True,
          summary="Transfer ownership (owner, a lead of the owning team, or an admin)",
          body=OWNER, responses=CHANGED)
def change_owner(incident_id: int) -> Response:
    data = body(OWNER)
    version = precondition(incident_id)
    return answer(domain.transfer_ownership(
        context(), incident_id, agent_of_token(), record(Team, data["team_id"], "team"),
        record(Agent, data.get("agent_id"), "agent"), data.get("reason", ""), version))


@endpoint("POST", "/incidents/<int:incident_id>/take", scope="write", if_match=True,
          summary="Take ownership of an unowned incident", responses=CHANGED)
def take(incident_id: int) -> Response:
    version = precondition(incident_id)
    return answer(domain.take_ownership(context(), incident_id, agent_of_token(), version))


@endpoint("POST", "/incidents/<int:incident_id>/assignee", scope="write", if_match=True,
          summary="Change the assigned team and agent", body=ASSIGNEE, responses=CHANGED)
def change_assignee(incident_id: int) -> Response:
    data = body(ASSIGNEE)
    version = precondition(incident_id)
    return answer(domain.assign(
        context(), incident_id, agent_of_token(), record(Team, data.get("team_id"), "team"),
        record(Agent, data.get("agent_id"), "agent"), version, note=data.get("note", "")))


@endpoint("POST", "/incidents/<int:incident_id>/status", scope="write", if_match=True,
          summary="Move along the lifecycle (resolving needs a note)", body=STATUS,
          responses=CHANGED)
def change_status(incident_id: int) -> Response:
    data = body(STATUS)
    version = precondition(incident_id)
    return answer(domain.change_status(
        context(), incident_id, agent_of_token(), data["status"], version,
        note=data.get("note", ""), pending_reason=data.get("pending_reason"),
        resolution_code=data.get("resolution_code")))


@endpoint("POST", "/incidents/<int:incident_id>/priority", scope="write", if_match=True,
          summary="Override the priority (with a reason), or null to derive it again",
          body=PRIORITY, responses=CHANGED)
def change_priority(incident_id: int) -> Response:
    data = body(PRIORITY)
    version = precondition(incident_id)
    return answer(domain.override_priority(context(), incident_id, agent_of_token(),
                                           data["priority"], data.get("reason", ""), version))


@endpoint("POST", "/incidents/<int:incident_id>/links", scope="write", if_match=True,
          summary="Link to a parent, or mark as a duplicate (which cancels it)", body=LINK,
          responses=CHANGED)
def change_link(incident_id: int) -> Response:
    data = body(LINK)
    version = precondition(incident_id)
    return answer(domain.link(context(), incident_id, agent_of_token(), data["kind"],
                              data.get("other_id"), version))


@endpoint("POST", "/incidents/<int:incident_id>/comments", scope="write",
          summary="A public reply to the requester or an internal note (comments never conflict "
          "with edits, so no If-Match)", body=COMMENT,
          responses={201: ("The timeline entry", ENTRY)})
def comment(incident_id: int) -> Response:
    data = body(COMMENT)
    domain.get(incident_id)
    note = domain.add_comment(context(), incident_id, agent_of_token(), data["body"],
                              public=data.get("visibility", "internal") == "public")
    note.actor = agent_of_token()
    return json_response(entry_json(note), 201)


def entry_json(entry: TimelineEntry) -> dict[str, Any]:
    return {"id": entry.id, "at": stamp(entry.at), "kind": entry.kind, "actor": ref(entry.actor),
            "field": entry.field, "old_value": entry.old_value, "new_value": entry.new_value,
            "body": entry.body}


@endpoint("GET", "/incidents/<int:incident_id>/timeline", scope="read",
          summary="The incident's timeline, oldest first (keyset pages by entry id)",
          query=PAGE_PARAMS, responses={200: ("Timeline entries", listing(ENTRY))})
def timeline(incident_id: int) -> Response:
    domain.get(incident_id)
    size, after = _limit(), _after_id()
    rows = list(
        TimelineEntry.select(TimelineEntry, Agent)
        .join(Agent, peewee.JOIN.LEFT_OUTER, on=(TimelineEntry.actor == Agent.id), attr="actor")
        .where((TimelineEntry.incident == incident_id) & (TimelineEntry.id > after))
        .order_by(TimelineEntry.id).limit(size + 1))
    return _page([entry_json(e) for e in rows[:size]], rows, size)


def _after_id() -> int:
    raw = request.args.get("after")
    if raw is None or raw == "":
        return 0
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise ApiError(400, "Bad request", "after takes the next_cursor of the previous page.",
                       field="after")
    return int(raw)


def _page(items: list[dict[str, Any]], rows: list[Any], size: int) -> Response:
    cursor = str(rows[size - 1].id) if len(rows) > size else None
    return json_response({"items": items, "next_cursor": cursor})


SLA_CLOCK = {"type": "object", "properties": {
    "target": {"type": "string"}, "policy": {"type": "string"}, "state": {"type": "string"},
    "label": {"type": "string"}, "due_at": STAMP, "met_at": STAMP, "breached_at": STAMP,
    "elapsed_seconds": {"type": "integer"}, "paused_seconds": {"type": "integer"},
    "remaining_seconds": {"type": "integer"}, "used": {"type": "number"}}}


@endpoint("GET", "/incidents/<int:incident_id>/sla", scope="read",
          summary="Where the incident's SLA clocks stand",
          responses={200: ("The clocks", {"type": "object", "properties": {
              "clocks": {"type": "array", "items": SLA_CLOCK}}})})
def sla_status(incident_id: int) -> Response:
    domain.get(incident_id)
    at = now()
    clocks = []
    for clock in SlaClock.select().where(SlaClock.incident == incident_id).order_by(SlaClock.target.desc()):
        status = sla.status(context(), clock, at)
        clocks.append({
            "target": clock.target, "policy": clock.policy, "state": status.state,
            "label": status.label, "due_at": stamp(status.due_at), "met_at": stamp(clock.met_at),
            "breached_at": stamp(clock.breached_at),
            "elapsed_seconds": int(status.elapsed.total_seconds()),
            "paused_seconds": int(status.paused.total_seconds()),
            "remaining_seconds": int(status.remaining.total_seconds()), "used": round(status.used, 4)})
    return json_response({"clocks": clocks})


# -- the directory ---------------------------------------------------------------------------------

NAMED = {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                                          "active": {"type": "boolean"}}}
TEAM = {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                                         "members": {"type": "array", "items": REF}}}
AGENT = {"type": "object", "properties": {
    "id": {"type": "integer"}, "username": {"type": "string"}, "name": {"type": "string"},
    "role": {"type": "string"}, "active": {"type": "boolean"},
    "teams": {"type": "array", "items": REF}}}
CONTACT = {"type": "object", "properties": {
    "id": {"type": "integer"}, "name": {"type": "string"}, "email": {"type": ["string", "null"]},
    "phone": {"type": "string"}, "organisation": REF}}


@endpoint("GET", "/teams", scope="read", summary="Teams and their active members",
          responses={200: ("Teams", listing(TEAM))})
def teams() -> Response:
    members: dict[int, list[dict[str, Any]]] = {}
    for m in (Membership.select(Membership, Agent).join(Agent).where(Agent.active == True)  # noqa: E712
              .order_by(Agent.display_name)):
        members.setdefault(m.team_id, []).append(ref(m.agent))
    return json_response({"items": [{"id": t.id, "name": t.name, "members": members.get(t.id, [])}
                                    for t in Team.select().order_by(Team.name)], "next_cursor": None})


@endpoint("GET", "/agents", scope="read", summary="Agents (no e-mail addresses or credentials)",
          query=PAGE_PARAMS, responses={200: ("Agents", listing(AGENT))})
def agents() -> Response:
    size, after = _limit(), _after_id()
    rows = list(Agent.select().where(Agent.id > after).order_by(Agent.id).limit(size + 1))
    teams_of: dict[int, list[dict[str, Any]]] = {}
    ids = [a.id for a in rows[:size]]
    if ids:
        for m in Membership.select(Membership, Team).join(Team).where(Membership.agent.in_(ids)):
            teams_of.setdefault(m.agent_id, []).append(ref(m.team))
    return _page([{"id": a.id, "username": a.username, "name": a.display_name, "role": a.role,
                   "active": a.active, "teams": teams_of.get(a.id, [])} for a in rows[:size]],
                 rows, size)


@endpoint("GET", "/contacts", scope="read", summary="Contacts (requesters)", query=[
    *PAGE_PARAMS, _param("q", "Text in the name or e-mail", {"type": "string", "maxLength": 200})],
    responses={200: ("Contacts", listing(CONTACT))})
def contacts() -> Response:
    size, after = _limit(), _after_id()
    query = Contact.select().where(Contact.id > after)
    text = " ".join((request.args.get("q") or "").split())[:200].lower()
    if text:
        query = query.where(peewee.fn.LOWER(Contact.name).contains(text)
                            | peewee.fn.LOWER(Contact.email).contains(text))
    rows = list(query.order_by(Contact.id).limit(size + 1))
    return _page([{"id": c.id, "name": c.name, "email": c.email, "phone": c.phone,
                   "organisation": ref(c.organisation)} for c in rows[:size]], rows, size)


def _catalogue(model: Any) -> Response:
    return json_response({"items": [{"id": r.id, "name": r.name, "active": r.active}
                                    for r in model.select().order_by(model.name)], "next_cursor": None})


@endpoint("GET", "/categories", scope="read", summary="Categories",
          responses={200: ("Categories", listing(NAMED))})
def categories() -> Response:
    return _catalogue(Category)


@endpoint("GET", "/services", scope="read", summary="Services",
          responses={200: ("Services", listing(NAMED))})
def services() -> Response:
    return _catalogue(Service)


DELIVERY = {"type": "object", "properties": {
    "id": {"type": "integer"}, "channel": {"type": "string"}, "event": {"type": "string"},
    "incident": {"type": ["integer", "null"]}, "state": {"type": "string"},
    "attempts": {"type": "integer"}, "last_error": {"type": "string"}, "created_at": STAMP,
    "sent_at": STAMP}}


@endpoint("GET", "/deliveries", scope="admin", summary="Notification deliveries (admins)",
          query=[*PAGE_PARAMS, _param("state", "Delivery state", {
              "type": "string", "enum": ["pending", "sending", "sent", "dead"]})],
          responses={200: ("Deliveries, newest first", listing(DELIVERY))})
def deliveries() -> Response:
    if not agent_of_token().is_admin:  # the role may have been taken away since
        raise ApiError(404, "Not found", "There is nothing at this address.")
    size, after = _limit(), _after_id()
    query = Delivery.select()
    if after:
        query = query.where(Delivery.id < after)
    state = request.args.get("state")
    if state:
        if state not in {"pending", "sending", "sent", "dead"}:
            raise ApiError(400, "Bad request", f"Unknown delivery state {state!r}.", field="state")
        query = query.where(Delivery.state == state)
    rows = list(query.order_by(Delivery.id.desc()).limit(size + 1))
    return _page([{"id": d.id, "channel": d.channel, "event": d.event, "incident": d.incident_id,
                   "state": d.state, "attempts": d.attempts, "last_error": d.last_error,
                   "created_at": stamp(d.created_at), "sent_at": stamp(d.sent_at)}
                  for d in rows[:size]], rows, size)


# -- monitoring alerts ---------------------------------------------------------------------------

GENERIC_ALERT = {
    "type": "object", "required": ["fingerprint", "title"],
    "properties": {
        "fingerprint": {"type": "string", "minLength": 1, "maxLength": 200},
        "status": {"type": "string", "enum": ["firing", "resolved"]},
        "title": {"type": "string", "minLength": 1, "maxLength": 2000},
        "description": {"type": "string", "maxLength": 20000},
        "severity": {"type": "string", "maxLength": 50},
        "service": {"type": "string", "maxLength": 100, "description": "A service's name"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
ALERTMANAGER = {
    "type": "object", "required": ["alerts"],
    "description": "Prometheus Alertmanager's webhook payload (version 4)",
    "properties": {
        "version": {"type": "string"}, "status": {"type": "string"},
        "receiver": {"type": "string"}, "groupKey": {"type": "string"},
        "commonLabels": {"type": "object"},
        "alerts": {"type": "array", "maxItems": 100, "items": {"type": "object", "properties": {
            "status": {"type": "string", "enum": ["firing", "resolved"]},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            "fingerprint": {"type": "string"}, "startsAt": {"type": "string"},
            "endsAt": {"type": "string"}, "generatorURL": {"type": "string"}}}},
    },
}
ALERT_RESULTS = {"type": "object", "properties": {"results": {"type": "array", "items": {
    "type": "object", "properties": {
        "fingerprint": {"type": "string"},
        "outcome": {"type": "string", "enum": ["created", "repeated", "reopened", "resolved",
                                               "noted", "ignored"]},
        "incident": {"type": ["integer", "null"]}}}}}}


@endpoint("POST", "/alerts", scope="alerts", summary="Receive monitoring alerts (a generic alert "
          "or an Alertmanager webhook): one incident per firing fingerprint",
          body={"oneOf": [GENERIC_ALERT, ALERTMANAGER]},
          responses={202: ("What became of each alert", ALERT_RESULTS)})
def receive_alerts() -> Response:
    from helpdesk.api import alerts

    if not request.is_json:
        raise ApiError(415, "Unsupported media type", "Send the alert as application/json.")
    try:
        parsed = alerts.parse(request.get_json(silent=True))
    except alerts.BadAlert as bad:
        raise ApiError(422, "Unprocessable content", str(bad), field=bad.field) from None
    token = current_token()
    results = [alerts.receive(context(), token, alert) for alert in parsed]
    return json_response({"results": [{"fingerprint": r.fingerprint, "outcome": r.outcome,
                                       "incident": r.incident} for r in results]}, 202)
