"""The API's incident operations. Every change calls the same domain function the pages call
(:mod:`helpdesk.incidents`); nothing here writes an incident."""

from __future__ import annotations

from typing import Any

import peewee
from flask import Response, request, url_for

from helpdesk import incidents as domain
from helpdesk import macros, queues, sla
from helpdesk.api.common import (
    ID,
    OPTIONAL_ID,
    PAGE_PARAMS,
    PAIR,
    REF,
    SHORT,
    STAMP,
    TEXT,
    after_id,
    agent_of_token,
    limit,
    listing,
    page,
    param,
    ref,
    stamp,
)
from helpdesk.api.http import ApiError, body, endpoint, expected_version, json_response
from helpdesk.clock import now
from helpdesk.errors import DomainError, StaleVersion
from helpdesk.incidents import handback
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
    HandBack,
    Incident,
    Service,
    SlaClock,
    Team,
    TimelineEntry,
)
from helpdesk.web import context

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
    "contact": {**REF, "description": "The customer who wrote a 'customer' entry (e-mail or portal)"},
    "field": {"type": ["string", "null"]}, "old_value": {"type": ["string", "null"]},
    "new_value": {"type": ["string", "null"]}, "body": {"type": "string"}}}


INCIDENT_PARAMS = [
    param("queue", "Which queue, as on the pages (default: open)", {"type": "string",
                                                                    "enum": list(queues.QUEUES)}),
    param("status", "Statuses (default: the active ones)", {"type": "string",
                                                             "enum": list(STATUSES)}, many=True),
    param("priority", "Priorities", {"type": "integer", "enum": list(PRIORITIES)}, many=True),
    param("type", "Types", {"type": "string", "enum": list(TYPES)}, many=True),
    param("team", "Assigned or owning team id", ID),
    param("q", "Text in the title, or a reference", {"type": "string", "maxLength": 200}),
    param("sort", "Order", {"type": "string", "enum": list(queues.SORTS)}),
    *PAGE_PARAMS,
]
ONE = {200: ("The incident (ETag: its version)", INCIDENT)}
CHANGED = {200: ("The changed incident (ETag: its new version)", INCIDENT),
           412: ("Stale or weak If-Match: the current incident is in 'current'", None),
           428: ("If-Match missing, or '*' (a change must name the version it was based on)", None)}


# -- representations ----------------------------------------------------------------------------


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
    try:
        version = expected_version()
    except ApiError as refused:
        if refused.status != 412:
            raise
        incident = domain.get(incident_id)  # a weak ETag: refused, with the current state to read
        refused.headers["ETag"] = f'"{incident.version}"'
        refused.extra["current"] = incident_json(incident)
        raise
    incident = domain.get(incident_id)
    if version is not None and version != incident.version:
        raise StaleVersion(f"{incident.reference} was changed since you read it (your ETag is "
                           f'"{version}", it is now "{incident.version}"); nothing was saved.', incident)
    return version


# -- incidents -----------------------------------------------------------------------------------


@endpoint("GET", "/incidents", scope="read", summary="List incidents of a queue, filtered and sorted "
          "(keyset pages: follow next_cursor)", query=INCIDENT_PARAMS,
          responses={200: ("A page of incidents", listing(INCIDENT))})
def list_incidents() -> Response:
    queue = request.args.get("queue") or "open"
    if queue not in queues.QUEUES:
        raise ApiError(400, "Bad request", f"There is no queue {queue!r}.", field="queue")
    size = limit()
    try:
        filters = queues.Filters.parse(request.args)
        found = queues.page(queue, agent_of_token(), filters, size,
                            after=request.args.get("after") or None)
    except DomainError as error:
        raise ApiError(400, "Bad request", str(error), field=_query_field(str(error))) from None
    for model, name in ((Category, "category"), (Service, "service")):
        _attach(found.rows, model, name)
    return json_response({"items": [incident_json(row) for row in found.rows],
                          "next_cursor": found.next_cursor})


def _attach(rows: list[Incident], model: Any, name: str) -> None:
    """Load the catalogue entries a page refers to in one query (the queue query leaves them)."""
    ids = {getattr(row, f"{name}_id") for row in rows} - {None}
    found = {record.id: record for record in model.select().where(model.id.in_(ids))} if ids else {}
    for row in rows:
        if getattr(row, f"{name}_id") is not None:
            setattr(row, name, found[getattr(row, f"{name}_id")])


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
    other_id = data.get("other_id")
    if other_id is not None and not Incident.select().where(Incident.id == other_id).exists():
        # The incident named in the body, not the one in the path: a 404 would say the latter.
        raise ApiError(422, "Unprocessable content", f"There is no incident INC-{other_id} to link to.",
                       field="other_id")
    return answer(domain.link(context(), incident_id, agent_of_token(), data["kind"],
                              data.get("other_id"), version))


@endpoint("POST", "/incidents/<int:incident_id>/comments", scope="write",
          summary="A public reply to the requester (on a New incident it also sets it in progress) "
          "or an internal note (comments never conflict with edits, so no If-Match)", body=COMMENT,
          responses={201: ("The timeline entry", ENTRY)})
def comment(incident_id: int) -> Response:
    data = body(COMMENT)
    domain.get(incident_id)
    note = domain.add_comment(context(), incident_id, agent_of_token(), data["body"],
                              public=data.get("visibility", "internal") == "public")
    note.actor = agent_of_token()
    return json_response(entry_json(note), 201)


def entry_json(entry: TimelineEntry) -> dict[str, Any]:
    contact = entry.contact if entry.contact_id is not None else None
    return {"id": entry.id, "at": stamp(entry.at), "kind": entry.kind, "actor": ref(entry.actor),
            "contact": ref(contact), "field": entry.field, "old_value": entry.old_value,
            "new_value": entry.new_value, "body": entry.body}


@endpoint("GET", "/incidents/<int:incident_id>/timeline", scope="read",
          summary="The incident's timeline, oldest first (keyset pages by entry id)",
          query=PAGE_PARAMS, responses={200: ("Timeline entries", listing(ENTRY))})
def timeline(incident_id: int) -> Response:
    domain.get(incident_id)
    size, after = limit(), after_id()
    rows = list(
        TimelineEntry.select(TimelineEntry, Agent, Contact)
        .join(Agent, peewee.JOIN.LEFT_OUTER, on=(TimelineEntry.actor == Agent.id), attr="actor")
        .switch(TimelineEntry)
        .join(Contact, peewee.JOIN.LEFT_OUTER, on=(TimelineEntry.contact == Contact.id), attr="contact")
        .where((TimelineEntry.incident == incident_id) & (TimelineEntry.id > after))
        .order_by(TimelineEntry.id).limit(size + 1))
    return page([entry_json(e) for e in rows[:size]], rows, size)


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


# -- refer and request: hand-backs ------------------------------------------------------------------

HAND_BACK = {"type": "object", "properties": {
    "id": {"type": "integer"}, "incident_id": {"type": "integer"},
    "state": {"type": "string", "enum": ["pending", "accepted", "rejected", "lapsed"]},
    "team": REF, "request": {"type": "string"}, "suggested_team": REF,
    "requested_by": REF, "requested_at": STAMP, "decided_by": REF, "decided_at": STAMP,
    "decision": {"type": "string"}}}
NEW_HAND_BACK = {"type": "object", "required": ["request"], "properties": {
    "request": {"type": "string", "minLength": 1, "maxLength": handback.MAX_REQUEST},
    "suggested_team_id": OPTIONAL_ID}}
ACCEPT_HAND_BACK = {"type": "object", "properties": {"team_id": OPTIONAL_ID}}
REJECT_HAND_BACK = {"type": "object", "required": ["reason"], "properties": {
    "reason": {"type": "string", "minLength": 1, "maxLength": 2000}}}


def hand_back_json(record: HandBack) -> dict[str, Any]:
    return {"id": record.id, "incident_id": record.incident_id, "state": record.state,
            "team": ref(record.team), "request": record.request, "suggested_team": ref(record.suggested_team),
            "requested_by": ref(record.requested_by), "requested_at": stamp(record.requested_at),
            "decided_by": ref(record.decided_by), "decided_at": stamp(record.decided_at),
            "decision": record.decision}


@endpoint("GET", "/incidents/<int:incident_id>/hand-back", scope="read",
          summary="The hand-back request awaiting the owner's decision (404 when there is none)",
          responses={200: ("The pending hand-back", HAND_BACK)})
def pending_hand_back(incident_id: int) -> Response:
    waiting = handback.pending(incident_id) if domain.get(incident_id).is_active else None
    if waiting is None:  # as on the page: a closed incident has nothing awaiting a decision
        raise ApiError(404, "Not found", "No hand-back request awaits a decision on this incident.")
    return json_response(hand_back_json(waiting))


@endpoint("POST", "/incidents/<int:incident_id>/hand-back", scope="write",
          summary="Hand the incident back to its owner with a request (an agent of the assigned team, "
          "while that team works in refer-and-request mode)", body=NEW_HAND_BACK,
          responses={201: ("The hand-back, pending", HAND_BACK)})
def hand_back(incident_id: int) -> Response:
    data = body(NEW_HAND_BACK)
    domain.get(incident_id)
    made = handback.hand_back(context(), incident_id, agent_of_token(), data["request"],
                              record(Team, data.get("suggested_team_id"), "suggested_team"))
    return json_response(hand_back_json(HandBack.get_by_id(made.id)), 201,
                         location=url_for("api.pending_hand_back", incident_id=incident_id))


@endpoint("POST", "/incidents/<int:incident_id>/hand-back/accept", scope="write", if_match=True,
          summary="Accept the pending hand-back (the owner, a lead of the owning team or an admin): "
          "the incident goes to team_id, else the suggested team, else the owning team (never "
          "back to the team that asked)", body=ACCEPT_HAND_BACK, responses=CHANGED)
def accept_hand_back(incident_id: int) -> Response:
    data = body(ACCEPT_HAND_BACK)
    version = precondition(incident_id)
    return answer(handback.accept(context(), incident_id, agent_of_token(),
                                  record(Team, data.get("team_id"), "team"), version))


@endpoint("POST", "/incidents/<int:incident_id>/hand-back/reject", scope="write",
          summary="Reject the pending hand-back with a reason: the incident stays with the team "
          "that asked", body=REJECT_HAND_BACK, responses={200: ("The rejected hand-back", HAND_BACK)})
def reject_hand_back(incident_id: int) -> Response:
    data = body(REJECT_HAND_BACK)
    domain.get(incident_id)
    decided = handback.reject(context(), incident_id, agent_of_token(), data["reason"])
    return json_response(hand_back_json(decided))


# -- macros -------------------------------------------------------------------------------------------

MACRO = {"type": "object", "properties": {
    "id": {"type": "integer"}, "name": {"type": "string"}, "body": {"type": "string"},
    "public": {"type": "boolean"}, "team": REF, "personal": {"type": "boolean"},
    "does": {"type": "array", "items": {"type": "string"}}}}
APPLY_MACRO = {"type": "object", "required": ["macro_id"], "properties": {
    "macro_id": ID, "body": {"type": ["string", "null"], "maxLength": macros.MAX_BODY},
    "visibility": {"type": ["string", "null"], "enum": ["public", "internal", None]}}}


@endpoint("GET", "/macros", scope="read",
          summary="The macros the token's agent may use: their own and their teams' shared ones",
          responses={200: ("Macros", listing(MACRO))})
def list_macros() -> Response:
    agent = agent_of_token()
    items = [{"id": m.id, "name": m.name, "body": m.body, "public": m.public,
              "team": ref(m.team) if m.team_id else None, "personal": m.agent_id is not None,
              "does": macros.describe(context(), m)} for m in macros.visible_list(agent)]
    return json_response({"items": items, "next_cursor": None})


@endpoint("POST", "/incidents/<int:incident_id>/macro", scope="write", if_match=True,
          summary="Reply with a macro and run its actions as one change. body: the reply as edited, "
          "else the macro's text with its placeholders filled, sent as the macro says (public "
          "reply or internal note); visibility applies only to an edited body (default: the "
          "macro's)", body=APPLY_MACRO, responses=CHANGED)
def apply_macro(incident_id: int) -> Response:
    data = body(APPLY_MACRO)
    version = precondition(incident_id)
    text, visibility = data.get("body"), data.get("visibility")
    edited = text is not None and bool(text.strip())
    # As on the page: the macro's own text goes out as the macro says, never made public here.
    public = visibility == "public" if edited and visibility is not None else None
    return answer(macros.apply(context(), incident_id, agent_of_token(), data["macro_id"],
                               text if edited else None, public=public, expected_version=version))
