"""Form helpers shared by the agent pages."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import peewee
from flask import abort, current_app, g, request

from helpdesk.db import Statement
from helpdesk.models import Agent, Category, Membership, Service, Team

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


# Every team with its active agents, one row per pair (a team nobody active is in: one row
# without an agent). Only what the boxes show (ids and names): whole rows cost more than
# the query, and one query is one round trip to PostgreSQL, not two.
_TEAMS_AND_MEMBERS = Statement(lambda: Team.select(Team.id, Team.name, Agent.id, Agent.display_name)
                               .join(Membership, peewee.JOIN.LEFT_OUTER)
                               .join(Agent, peewee.JOIN.LEFT_OUTER,
                                     on=(Membership.agent == Agent.id) & (Agent.active == True))  # noqa: E712
                               .order_by(Team.name, Team.id, Agent.display_name, Agent.id))
_CATEGORIES = Statement(lambda: Category.select().where(Category.active == True)  # noqa: E712
                        .order_by(Category.name), models=(Category,))
_SERVICES = Statement(lambda: Service.select().where(Service.active == True)  # noqa: E712
                      .order_by(Service.name), models=(Service,))


#: Where an app keeps its last teams-with-members list: (directory revision, teams, members).
KEPT_DIRECTORY = "helpdesk.directory"


def teams_and_members() -> dict[str, Any]:
    """Teams by name, and each team's active agents by name, for select boxes.

    Every queue page's bulk bar and every incident page lists them, and they seldom change:
    each app keeps the last list read and reads it again (one query) only when the directory
    revision the session's own query read (``SessionFacts.directory_revision``; triggers in
    the database move it on any change, from any process) differs from the one it was read
    at. A POST reads it afresh: its own change came after the session was read."""
    revision = g.get("directory_revision")
    if revision is None:
        return _read_teams_and_members()
    kept = current_app.extensions.get(KEPT_DIRECTORY)
    if kept is None or kept[0] != revision:
        found = _read_teams_and_members()
        kept = (revision, found["teams"], found["members"])
        current_app.extensions[KEPT_DIRECTORY] = kept
    # copies: a page may add to its lists, never to the kept ones
    return {"teams": list(kept[1]), "members": {team: list(people) for team, people in kept[2].items()}}


def _read_teams_and_members() -> dict[str, Any]:
    teams: list[Choice] = []
    members: dict[int, list[Person]] = {}
    for team_id, team_name, agent_id, agent_name in _TEAMS_AND_MEMBERS.execute():
        if team_id not in members:
            teams.append(Choice(team_id, team_name))
            members[team_id] = []
        if agent_id is not None:
            members[team_id].append(Person(agent_id, agent_name))
    return {"teams": teams, "members": members}


def choices() -> dict[str, Any]:
    """Teams with their active agents (grouped), and the catalogue, for select boxes. Contacts
    are searched instead (a select of them all would not scale, and one of the first few
    hundred left the rest unreachable)."""
    return {
        **teams_and_members(),
        "categories": [category for (category,) in _CATEGORIES.rows()],
        "services": [service for (service,) in _SERVICES.rows()],
    }
