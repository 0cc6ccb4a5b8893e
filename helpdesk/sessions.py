"""Server-side sessions: what makes a session revocable and expiring.

The signed cookie carries a random token; this table keeps its SHA-256 with the agent,
when it began and when it was last used. A request is logged in only while its row exists,
is younger than ``session_lifetime_seconds`` and was used within ``session_idle_seconds``.
Deleting rows is how a session ends: logout (this one), "log out other sessions" (all but
this one), a new password, deactivation or a change of role (all of them).

Customers' portal sessions work the same way in their own table (:class:`CustomerSession`):
signing out ends this one, a new password ends the others.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import peewee

from helpdesk.clock import now
from helpdesk.db import Statement, hydrate, is_sqlite, write_transaction
from helpdesk.models import (
    Agent,
    AgentSession,
    ConfigChange,
    Contact,
    CustomerSession,
    DirectoryRevision,
    Membership,
    Notice,
)

TOUCH_EVERY = dt.timedelta(seconds=60)  # last use is written at most once a minute per session


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _expired(stamp: dt.datetime, created_at: dt.datetime, last_seen_at: dt.datetime,
             idle_seconds: int, lifetime_seconds: int) -> bool:
    return (stamp - created_at > dt.timedelta(seconds=lifetime_seconds)
            or stamp - last_seen_at > dt.timedelta(seconds=idle_seconds))


def start(agent: Agent, address: str | None = None, idle_seconds: int | None = None,
          lifetime_seconds: int | None = None) -> str:
    """Begin a session for ``agent``; return the token for the cookie (never stored).
    Given the limits, sessions that expired unseen (a closed browser) are deleted too."""
    token = secrets.token_urlsafe(32)
    stamp = now()
    with write_transaction():
        if idle_seconds is not None and lifetime_seconds is not None:
            AgentSession.delete().where(
                (AgentSession.last_seen_at < stamp - dt.timedelta(seconds=idle_seconds))
                | (AgentSession.created_at < stamp - dt.timedelta(seconds=lifetime_seconds))).execute()
        AgentSession.create(token_hash=_hash(token), agent=agent.id, created_at=stamp,
                            last_seen_at=stamp, address=(address or "")[:100])
    return token


@dataclass(frozen=True)
class SessionFacts:
    """What nearly every signed-in page asks besides the agent, read by the session's own
    query as scalar subqueries: one round trip instead of four (PostgreSQL pays each), and
    the revision that says whether this process's teams-with-members list is still true."""

    settings_revision: int  # as ``site_settings.revision()``
    unread: int  # the agent's unread notices (the bell)
    team_ids: tuple[int, ...]  # the agent's teams, in order (as ``queues.team_ids``)
    directory_revision: int = 0  # moves when teams, memberships or agents' names change (0036)


def _agent_session(token_hash: Any, agent_id: Any) -> peewee.Query:
    team = Membership.team if is_sqlite() else Membership.team.cast("text")
    teams = peewee.fn.GROUP_CONCAT(team) if is_sqlite() else peewee.fn.string_agg(team, ",")
    unread = (Notice.agent == agent_id) & Notice.read_at.is_null()
    return (AgentSession.select(
        AgentSession, Agent,
        ConfigChange.select(peewee.fn.MAX(ConfigChange.id)),
        Notice.select(peewee.fn.COUNT(Notice.id)).where(unread),
        Membership.select(teams).where(Membership.agent == agent_id),
        DirectoryRevision.select(DirectoryRevision.revision).where(DirectoryRevision.id == 1))
        .join(Agent).where(AgentSession.token_hash == token_hash).limit(1))


# Every signed-in request runs this: compiled once (see ``db.Statement``).
_AGENT_SESSION = Statement(_agent_session)


def agent_of(token: object, agent_id: int, idle_seconds: int, lifetime_seconds: int,
             touch: bool = True) -> Agent | None:
    """The agent whose live session ``token`` is (one query), or None; an expired session
    is deleted when seen. The agent carries the page's :class:`SessionFacts` as
    ``session_facts``, read in the same query. ``touch=False`` (a page's background refresh)
    leaves the session's idle clock alone: an open tab nobody uses still times out."""
    if not isinstance(token, str) or not token or len(token) > 200:
        return None
    found = _AGENT_SESSION.execute(_hash(token), agent_id).fetchone()
    if found is None:
        return None
    row, agent = hydrate(found, AgentSession, Agent)
    if row.agent_id != agent_id:
        return None
    revision, unread, teams, directory = found[-4:]
    team_ids = tuple(sorted(int(team) for team in str(teams or "").split(",") if team))
    agent.session_facts = SessionFacts(int(revision or 0), int(unread or 0), team_ids, int(directory or 0))
    stamp = now()
    if _expired(stamp, row.created_at, row.last_seen_at, idle_seconds, lifetime_seconds):
        AgentSession.delete().where(AgentSession.id == row.id).execute()
        return None
    if touch and stamp - row.last_seen_at >= TOUCH_EVERY:
        AgentSession.update(last_seen_at=stamp).where(AgentSession.id == row.id).execute()
    return agent


def end(token: object) -> None:
    """End one session (logout)."""
    if isinstance(token, str) and token:
        AgentSession.delete().where(AgentSession.token_hash == _hash(token)).execute()


def end_all(agent_id: int, keep: object = None) -> int:
    """End every session of an agent, but ``keep`` (a token) if given; return how many ended."""
    query = AgentSession.delete().where(AgentSession.agent == agent_id)
    if isinstance(keep, str) and keep:
        query = query.where(AgentSession.token_hash != _hash(keep))
    return query.execute()


def live(agent_id: int) -> list[AgentSession]:
    """An agent's sessions, newest use first (for the profile page)."""
    return list(AgentSession.select().where(AgentSession.agent == agent_id)
                .order_by(AgentSession.last_seen_at.desc()))


def is_current(row: AgentSession, token: object) -> bool:
    return isinstance(token, str) and row.token_hash == _hash(token)


# -- customers (the portal) -------------------------------------------------------------------


def start_customer(contact: Contact, idle_seconds: int, lifetime_seconds: int) -> str:
    """Begin a portal session for ``contact``; return the token for the cookie. The
    contact's sessions that expired unseen are deleted on the way."""
    token = secrets.token_urlsafe(32)
    stamp = now()
    with write_transaction():
        CustomerSession.delete().where(
            (CustomerSession.contact == contact.id)
            & ((CustomerSession.last_seen_at < stamp - dt.timedelta(seconds=idle_seconds))
               | (CustomerSession.created_at < stamp - dt.timedelta(seconds=lifetime_seconds)))
        ).execute()
        CustomerSession.create(token_hash=_hash(token), contact=contact.id, created_at=stamp,
                               last_seen_at=stamp)
    return token


def customer_of(token: object, idle_seconds: int, lifetime_seconds: int) -> Contact | None:
    """The contact whose live portal session ``token`` is (one query), or None."""
    if not isinstance(token, str) or not token or len(token) > 200:
        return None
    row = (CustomerSession.select(CustomerSession, Contact).join(Contact)
           .where(CustomerSession.token_hash == _hash(token)).first())
    if row is None:
        return None
    stamp = now()
    if _expired(stamp, row.created_at, row.last_seen_at, idle_seconds, lifetime_seconds):
        CustomerSession.delete().where(CustomerSession.id == row.id).execute()
        return None
    if stamp - row.last_seen_at >= TOUCH_EVERY:
        CustomerSession.update(last_seen_at=stamp).where(CustomerSession.id == row.id).execute()
    return row.contact


def end_customer(token: object) -> None:
    """Sign out: this portal session ends, so a copy of its cookie is worthless."""
    if isinstance(token, str) and token:
        CustomerSession.delete().where(CustomerSession.token_hash == _hash(token)).execute()


def end_customer_sessions(contact_id: int, keep: object = None) -> int:
    """End a contact's portal sessions but ``keep`` (a token); return how many ended."""
    query = CustomerSession.delete().where(CustomerSession.contact == contact_id)
    if isinstance(keep, str) and keep:
        query = query.where(CustomerSession.token_hash != _hash(keep))
    return query.execute()
