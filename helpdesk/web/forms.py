"""Form helpers shared by the agent pages."""

from __future__ import annotations

from typing import Any

from flask import abort, request

from helpdesk.models import Agent, Category, Contact, Membership, Service, Team


def optional_id(name: str, model: Any) -> Any:
    """The record a form field names by id, ``None`` when blank; 422 when it does not exist."""
    raw = (request.form.get(name) or "").strip()
    if not raw:
        return None
    try:
        record = model.get_or_none(model.id == int(raw))
    except ValueError:
        record = None
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


def choices() -> dict[str, Any]:
    """Teams with their active agents (grouped), and the catalogue, for select boxes."""
    teams = list(Team.select().order_by(Team.name))
    members: dict[int, list[Agent]] = {team.id: [] for team in teams}
    rows = (
        Membership.select(Membership, Agent)
        .join(Agent)
        .where(Agent.active == True)  # noqa: E712 - peewee expression
        .order_by(Agent.display_name)
    )
    for membership in rows:
        members.setdefault(membership.team_id, []).append(membership.agent)
    return {
        "teams": teams,
        "members": members,
        "categories": list(Category.select().where(Category.active == True).order_by(Category.name)),  # noqa: E712,E501
        "services": list(Service.select().where(Service.active == True).order_by(Service.name)),  # noqa: E712,E501
        "contacts": list(Contact.select().order_by(Contact.name).limit(500)),
    }
