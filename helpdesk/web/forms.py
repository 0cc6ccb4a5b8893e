"""Form helpers shared by the agent pages."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from flask import abort, request

from helpdesk.db import Statement
from helpdesk.models import Agent, Category, Contact, Membership, Service, Team

_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only, and small enough for a 64-bit column


def parse_id(raw: Any) -> int | None:
    """An id typed or posted by a user, or ``None`` when it cannot be one."""
    text = str(raw or "").strip()
    return int(text) if _ID.fullmatch(text) else None


def optional_id(name: str, model: Any) -> Any:
    """The record a form field names by id, ``None`` when blank; 422 when it does not exist."""
    raw = (request.form.get(name) or "").strip()
    if not raw:
        return None
    record_id = parse_id(raw)
    record = model.get_or_none(model.id == record_id) if record_id is not None else None
    if record is None:
        abort(422, f"The chosen {name.replace('_', ' ')} does not exist.")
    return record


def expected_version() -> int | None:
    raw = request.form.get("version")
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        abort(400)


class Choice(NamedTuple):
    """A team or contact in a select box: all a form shows of it."""

    id: int
    name: str


class Person(NamedTuple):
    """An agent in a select box."""

    id: int
    display_name: str


#: Requesters offered in the incident page's select (the New incident page searches instead).
CONTACT_CHOICES = 500

_TEAMS = Statement(lambda: Team.select(Team.id, Team.name).order_by(Team.name))
# Only what the boxes show (id and name): whole agent rows cost more than the query.
_MEMBERS = Statement(lambda: Membership.select(Membership.team, Agent.id, Agent.display_name).join(Agent)
                     .where(Agent.active == True).order_by(Agent.display_name))  # noqa: E712
_CONTACTS = Statement(lambda limit: Contact.select(Contact.id, Contact.name).order_by(Contact.name)
                      .limit(limit))

_CATEGORIES = Statement(lambda: Category.select().where(Category.active == True)  # noqa: E712
                        .order_by(Category.name), models=(Category,))
_SERVICES = Statement(lambda: Service.select().where(Service.active == True)  # noqa: E712
                      .order_by(Service.name), models=(Service,))


def teams_and_members() -> dict[str, Any]:
    """Teams, and each team's active agents, for select boxes (two queries, compiled once)."""
    teams = [Choice(*row) for row in _TEAMS.execute()]
    members: dict[int, list[Person]] = {team.id: [] for team in teams}
    for team_id, agent_id, name in _MEMBERS.execute():
        members.setdefault(team_id, []).append(Person(agent_id, name))
    return {"teams": teams, "members": members}


def choices() -> dict[str, Any]:
    """Teams with their active agents (grouped), and the catalogue, for select boxes."""
    contacts = _CONTACTS.execute(CONTACT_CHOICES).fetchall()  # (id, name) pairs: rendering.options
    return {
        **teams_and_members(),
        "categories": [category for (category,) in _CATEGORIES.rows()],
        "services": [service for (service,) in _SERVICES.rows()],
        "contacts": contacts,
        "contact_ids": {contact_id for contact_id, _name in contacts},
    }
