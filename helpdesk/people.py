"""Agents, teams and memberships: the state changes behind the admin pages and the CLI."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from email.utils import parseaddr

import peewee
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from helpdesk import sessions
from helpdesk.clock import now
from helpdesk.context import Context
from helpdesk.db import write_transaction
from helpdesk.errors import DomainError
from helpdesk.models import ESCALATION_MODES, ROLES, Agent, ConfigChange, Membership, Team, TeamOnCall
from helpdesk.models import is_member as is_member  # where the domain has always found it
from helpdesk.requesters import EMAIL

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
    if not password.strip():
        raise DomainError("The password must be more than spaces.")


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
    email = agent_email(email)
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


def agent_email(email: str) -> str:
    """An agent's e-mail address as kept: bare (``Lee <lee@example.com>`` gives the address),
    or empty. Inbound mail compares senders with it (mail from an agent's address is never a
    customer's) and notifications are sent to it, so anything else is refused."""
    text = email.strip()
    if not text:
        return ""
    address = parseaddr(text)[1].strip()
    if len(address) > 254 or not EMAIL.fullmatch(address):
        raise DomainError(f"{text!r} is not an e-mail address.")
    return address


def update_agent(
    agent: Agent,
    *,
    display_name: str,
    email: str,
    role: str,
    active: bool,
    teams: list[Team],
    actor: Agent | None = None,
    ctx: Context,
) -> list[int]:
    """Save an agent's details, role, activity and teams. Incidents they may no longer answer
    for (deactivated, or out of the team that owns or works on them) go back to their teams
    in the same transaction (:func:`helpdesk.incidents.responsibility.release_agent`): their
    ids are returned."""
    if role not in ROLES:
        raise DomainError(f"Unknown role {role!r}.")
    if not display_name.strip():
        raise DomainError("A display name is required.")
    if actor is not None and actor.id == agent.id and (role != "admin" or not active):
        raise DomainError("You cannot remove your own admin role or deactivate yourself.")
    email = agent_email(email)
    with write_transaction():
        Agent.update(
            display_name=display_name.strip(), email=email, role=role, active=active
        ).where(Agent.id == agent.id).execute()
        if not active or role != agent.role:  # deactivated or role changed: log in again (C4)
            sessions.end_all(agent.id)
        Membership.delete().where(Membership.agent == agent).execute()
        for team in teams:
            Membership.create(team=team, agent=agent)
        from helpdesk.incidents.responsibility import release_agent  # incidents build on people

        return release_agent(ctx, agent, actor)


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


def update_team(team: Team, *, name: str, description: str, active: bool, members: list[Agent],
                service_desk: str, ctx: Context, actor: Agent | None = None,
                escalation_mode: str | None = None) -> dict[str, tuple[str, str]]:
    """Rename, describe, (de)activate a team, set its members and its escalation mode (``None``:
    unchanged); audited. Returns what changed (field -> (old, new)). Raises
    :class:`FieldErrors` with a message per field. A member taken out gives back the team's
    incidents they owned or worked on, in the same transaction (as :func:`update_agent`)."""
    name = name.strip()
    mode = team.escalation_mode if escalation_mode is None else escalation_mode
    errors = {}
    if mode not in ESCALATION_MODES:
        errors["escalation_mode"] = f"Choose one of: {', '.join(ESCALATION_MODES)}."
    if not name:
        errors["name"] = "A team needs a name."
    elif len(name) > 100:
        errors["name"] = "At most 100 characters."
    elif Team.select().where((Team.name == name) & (Team.id != team.id)).exists():
        errors["name"] = f"A team named {name!r} already exists."
    elif team.name == service_desk and name != team.name:
        errors["name"] = ("This is the service-desk team the settings name (service_desk_team); "
                          "change the setting first.")
    if team.name == service_desk and not active:
        errors["active"] = "The service-desk team owns the pool and cannot be deactivated."
    if errors:
        raise FieldErrors(errors)
    old_members = sorted(a.username for a in Agent.select().join(Membership).where(Membership.team == team))
    new_members = sorted(a.username for a in members)
    changed = {}
    for field, old, new in (("name", team.name, name), ("description", team.description, description.strip()),
                            ("active", "yes" if team.active else "no", "yes" if active else "no"),
                            ("members", ", ".join(old_members), ", ".join(new_members)),
                            ("escalation_mode", team.escalation_mode, mode)):
        if old != new:
            changed[field] = (old, new)
    if not changed:
        return changed
    try:
        with write_transaction():
            Team.update(name=name, description=description.strip(), active=active, escalation_mode=mode) \
                .where(Team.id == team.id).execute()
            if "members" in changed:
                gone = list(Agent.select().join(Membership).where(
                    (Membership.team == team) & Agent.id.not_in([agent.id for agent in members])))
                Membership.delete().where(Membership.team == team).execute()
                for agent in members:
                    Membership.create(team=team, agent=agent)
                from helpdesk.incidents.responsibility import release_agent

                for agent in gone:
                    release_agent(ctx, agent, actor)
            for field, (old, new) in changed.items():
                # The configuration audit trail (helpdesk.site_settings reads it).
                ConfigChange.create(key=f"team:{team.id}.{field}", old_value=old, new_value=new, actor=actor)
    except peewee.IntegrityError:
        raise FieldErrors({"name": f"A team named {name!r} already exists."}) from None
    return changed


class FieldErrors(DomainError):
    """Refused values, with a message per form field (nothing was saved)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(" ".join(errors.values()))
        self.errors = errors


def team_member_ids(team: Team) -> list[int]:
    return [m.agent_id for m in Membership.select(Membership.agent).where(Membership.team == team)]


# -- on call -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OnCall:
    """A team's on-call agent as escalation sees it: ``agent`` when there is one to assign to
    now (set, active, still a member, not past ``until``), else ``None`` and ``note`` says why."""

    agent: Agent | None
    note: str = ""
    until: dt.datetime | None = None


def on_call(team: Team | int) -> OnCall:
    """Who is on call for ``team`` now (public face: escalation steps call it)."""
    row = TeamOnCall.get_or_none(TeamOnCall.team == team)
    name = row.team.name if row is not None else (team.name if isinstance(team, Team) else f"team {team}")
    if row is None:
        return OnCall(None, f"{name} has no on-call agent")
    agent = row.agent
    if row.until is not None and row.until <= now():
        return OnCall(None, f"{agent}'s on-call for {name} ended at {row.until:%Y-%m-%d %H:%M} UTC")
    if not agent.active:
        return OnCall(None, f"{name}'s on-call agent {agent} is deactivated")
    if not is_member(agent, row.team_id):
        return OnCall(None, f"{name}'s on-call agent {agent} is no longer a member")
    return OnCall(agent, until=row.until)


def can_set_on_call(actor: Agent, team: Team) -> bool:
    """Admins, and the team's own leads."""
    return actor.is_admin or (actor.role == "lead" and is_member(actor, team))


def set_on_call(team: Team, agent: Agent | None, *, actor: Agent, until: dt.datetime | None = None) -> bool:
    """Make ``agent`` (an active member) the team's on-call agent, optionally until a moment
    (naive UTC), or clear it (``None``); audited. Returns whether anything changed."""
    from helpdesk.errors import PermissionDenied

    if not can_set_on_call(actor, team):
        raise PermissionDenied(f"Only a lead of {team.name} or an admin can set its on-call agent.")
    if agent is not None:
        if not agent.active:
            raise FieldErrors({"on_call": f"{agent} is deactivated and cannot be on call."})
        if not is_member(agent, team):
            raise FieldErrors({"on_call": f"{agent} is not a member of {team.name}."})
        if until is not None and until <= now():
            raise FieldErrors({"until": "The end of the on-call must be in the future."})
    elif until is not None:
        raise FieldErrors({"until": "Choose the on-call agent as well."})
    current = TeamOnCall.get_or_none(TeamOnCall.team == team)

    def said(row_agent: Agent | None, row_until: dt.datetime | None) -> str:
        if row_agent is None:
            return ""
        return row_agent.username + (f" until {row_until:%Y-%m-%d %H:%M} UTC" if row_until else "")

    old = said(current.agent, current.until) if current else ""
    new = said(agent, until)
    if old == new:
        return False
    with write_transaction():
        TeamOnCall.delete().where(TeamOnCall.team == team).execute()
        if agent is not None:
            TeamOnCall.create(team=team, agent=agent, until=until, set_by=actor, set_at=now())
        ConfigChange.create(key=f"team:{team.id}.on_call", old_value=old, new_value=new, actor=actor)
    return True
