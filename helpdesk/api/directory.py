"""The directory over the API (teams, agents, contacts, the catalogue) and, for admins, the
notification deliveries. Read only."""

from __future__ import annotations

from typing import Any

import peewee
from flask import Response, request

from helpdesk.api.common import (
    PAGE_PARAMS,
    REF,
    STAMP,
    after_id,
    agent_of_token,
    limit,
    listing,
    page,
    param,
    ref,
    stamp,
)
from helpdesk.api.http import ApiError, endpoint, json_response
from helpdesk.models import Agent, Category, Contact, Delivery, Membership, Service, Team

NAMED = {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                                          "active": {"type": "boolean"}}}
TEAM = {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                                         "members": {"type": "array", "items": REF},
                                         "escalation_mode": {"type": "string", "enum": ["open", "refer"]},
                                         "on_call": {"anyOf": [REF, {"type": "null"}]}}}
AGENT = {"type": "object", "properties": {
    "id": {"type": "integer"}, "username": {"type": "string"}, "name": {"type": "string"},
    "role": {"type": "string"}, "active": {"type": "boolean"},
    "teams": {"type": "array", "items": REF}}}
CONTACT = {"type": "object", "properties": {
    "id": {"type": "integer"}, "name": {"type": "string"}, "email": {"type": ["string", "null"]},
    "phone": {"type": "string"}, "organisation": REF}}


@endpoint("GET", "/teams", scope="read",
          summary="Teams, their active members, escalation mode (open | refer) and on-call agent",
          responses={200: ("Teams", listing(TEAM))})
def teams() -> Response:
    from helpdesk.people import on_call

    members: dict[int, list[dict[str, Any]]] = {}
    for m in (Membership.select(Membership, Agent).join(Agent).where(Agent.active == True)  # noqa: E712
              .order_by(Agent.display_name)):
        members.setdefault(m.team_id, []).append(ref(m.agent))
    items = []
    for t in Team.select().order_by(Team.name):
        agent = on_call(t).agent
        items.append({"id": t.id, "name": t.name, "members": members.get(t.id, []),
                      "escalation_mode": t.escalation_mode, "on_call": ref(agent) if agent else None})
    return json_response({"items": items, "next_cursor": None})


@endpoint("GET", "/agents", scope="read", summary="Agents (no e-mail addresses or credentials)",
          query=PAGE_PARAMS, responses={200: ("Agents", listing(AGENT))})
def agents() -> Response:
    size, after = limit(), after_id()
    rows = list(Agent.select().where(Agent.id > after).order_by(Agent.id).limit(size + 1))
    teams_of: dict[int, list[dict[str, Any]]] = {}
    ids = [a.id for a in rows[:size]]
    if ids:
        for m in Membership.select(Membership, Team).join(Team).where(Membership.agent.in_(ids)):
            teams_of.setdefault(m.agent_id, []).append(ref(m.team))
    return page([{"id": a.id, "username": a.username, "name": a.display_name, "role": a.role,
                   "active": a.active, "teams": teams_of.get(a.id, [])} for a in rows[:size]],
                 rows, size)


@endpoint("GET", "/contacts", scope="read", summary="Contacts (requesters)", query=[
    *PAGE_PARAMS, param("q", "Text in the name or e-mail", {"type": "string", "maxLength": 200})],
    responses={200: ("Contacts", listing(CONTACT))})
def contacts() -> Response:
    size, after = limit(), after_id()
    query = Contact.select().where(Contact.id > after)
    text = " ".join((request.args.get("q") or "").split())[:200].lower()
    if text:
        query = query.where(peewee.fn.LOWER(Contact.name).contains(text)
                            | peewee.fn.LOWER(Contact.email).contains(text))
    rows = list(query.order_by(Contact.id).limit(size + 1))
    return page([{"id": c.id, "name": c.name, "email": c.email, "phone": c.phone,
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
          query=[*PAGE_PARAMS, param("state", "Delivery state", {
              "type": "string", "enum": ["pending", "sending", "sent", "dead"]})],
          responses={200: ("Deliveries, newest first", listing(DELIVERY))})
def deliveries() -> Response:
    if not agent_of_token().is_admin:  # the role may have been taken away since
        raise ApiError(404, "Not found", "There is nothing at this address.")
    size, after = limit(), after_id()
    query = Delivery.select()
    if after:
        query = query.where(Delivery.id < after)
    state = request.args.get("state")
    if state:
        if state not in {"pending", "sending", "sent", "dead"}:
            raise ApiError(400, "Bad request", f"Unknown delivery state {state!r}.", field="state")
        query = query.where(Delivery.state == state)
    rows = list(query.order_by(Delivery.id.desc()).limit(size + 1))
    return page([{"id": d.id, "channel": d.channel, "event": d.event, "incident": d.incident_id,
                   "state": d.state, "attempts": d.attempts, "last_error": d.last_error,
                   "created_at": stamp(d.created_at), "sent_at": stamp(d.sent_at)}
                  for d in rows[:size]], rows, size)
