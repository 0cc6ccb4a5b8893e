"""Form helpers shared by the agent pages."""

from __future__ import annotations

import re
from typing import Any

from flask import abort, request

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
