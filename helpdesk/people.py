"""Agents, teams and memberships: the state changes behind the admin pages and the CLI."""

from __future__ import annotations

import re

import peewee
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from helpdesk import sessions
from helpdesk.db import write_transaction
from helpdesk.errors import DomainError
from helpdesk.models import ROLES, Agent, Membership, Team

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MIN_PASSWORD = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(agent: Agent, password: str) -> bool:
    """Verify a password; rehash transparently when the parameters were upgraded."""
    try:
        _hasher.verify(agent.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    if _hasher.check_needs_rehash(agent.password_hash):
        Agent.update(password_hash=hash_password(password)).where(Agent.id == agent.id).execute()
    return True


def verify_hash(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches an argon2 hash (any owner's: agents, portal customers);
    with nothing stored, spend the same time and say no."""
    if not stored:
        return spend_password_time(password)
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


_DUMMY_HASH: str | None = None


def spend_password_time(password: str) -> bool:
    """Verify against a throw-away hash, so an unknown user name takes as long as a known one;
    always False."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = _hasher.hash("not a real password")
    try:
        _hasher.verify(_DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        pass
    return False


def validate_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise DomainError(f"The password must be at least {MIN_PASSWORD} characters long.")


def create_agent(
    username: str,
    display_name: str,
    password: str,
    *,
    email: str = "",
    role: str = "agent",
    teams: list[Team] | tuple[Team, ...] = (),
    check_strength: bool = True,
) -> Agent:
    username = username.strip().lower()
    if not USERNAME.match(username):
        raise DomainError(
            "A user name is 1–64 characters: lower-case letters, digits, '.', '_' or '-'."
        )
    if role not in ROLES:
        raise DomainError(f"Unknown role {role!r}; choose one of {', '.join(ROLES)}.")
    if not display_name.strip():
        raise DomainError("A display name is required.")
    if check_strength:
        validate_password(password)
    with write_transaction():
        if Agent.select().where(Agent.username == username).exists():
            raise DomainError(f"The user name {username!r} is already taken.")
        agent = Agent.create(
            username=username,
            display_name=display_name.strip(),
            email=email.strip(),
            password_hash=hash_password(password),
            role=role,
        )
        for team in teams:
            Membership.create(team=team, agent=agent)
    return agent


def update_agent(
    agent: Agent,
    *,
    display_name: str,
    email: str,
    role: str,
    active: bool,
    teams: list[Team],
    actor: Agent | None = None,
) -> Agent:
    if role not in ROLES:
        raise DomainError(f"Unknown role {role!r}.")
    if not display_name.strip():
        raise DomainError("A display name is required.")
    if actor is not None and actor.id == agent.id and (role != "admin" or not active):
        raise DomainError("You cannot remove your own admin role or deactivate yourself.")
    with write_transaction():
        Agent.update(
            display_name=display_name.strip(), email=email.strip(), role=role, active=active
        ).where(Agent.id == agent.id).execute()
        if not active or role != agent.role:  # deactivated or role changed: log in again (C4)
            sessions.end_all(agent.id)
        Membership.delete().where(Membership.agent == agent).execute()
        for team in teams:
            Membership.create(team=team, agent=agent)
    return Agent.get_by_id(agent.id)


def set_password(agent: Agent, password: str) -> None:
    validate_password(password)
    Agent.update(password_hash=hash_password(password)).where(Agent.id == agent.id).execute()
    sessions.end_all(agent.id)  # a new password ends every session (C4)


def create_team(name: str, description: str = "") -> Team:
    name = name.strip()
    if not name:
        raise DomainError("A team needs a name.")
    try:
        with write_transaction():
            return Team.create(name=name, description=description.strip())
    except peewee.IntegrityError:
        raise DomainError(f"A team named {name!r} already exists.") from None


def ensure_team(name: str) -> Team:
    team = Team.get_or_none(Team.name == name)
    return team or create_team(name)


def team_ids_of(agent: Agent) -> list[int]:
    return [m.team_id for m in Membership.select(Membership.team).where(Membership.agent == agent)]


def is_member(agent: Agent | int, team: Team | int) -> bool:
    return (
        Membership.select()
        .where((Membership.agent == agent) & (Membership.team == team))
        .exists()
    )
