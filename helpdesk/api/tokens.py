"""API tokens: created (the secret shown once), stored as a SHA-256 hash, checked, limited.

A secret is 32 random bytes behind a recognisable prefix (``hdp_`` for personal,
``hds_`` for service tokens), so a leaked one is easy to spot in logs and
repositories; at that entropy a plain SHA-256 is enough (no password stretching
needed) and lets a request be checked with one indexed lookup. A token acts as
its agent and never beyond them: a scope the agent's role does not allow is
refused at creation, and a deactivated agent's tokens stop working at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from helpdesk.clock import now
from helpdesk.db import write_transaction
from helpdesk.errors import DomainError, PermissionDenied
from helpdesk.models import Agent, ApiToken

PREFIXES = {"personal": "hdp_", "service": "hds_"}
SCOPES = {
    "read": "Read incidents, timelines, SLA status, people and the catalogue",
    "write": "Log and change incidents, reply and add notes",
    "admin": "Admin-only reads (notification deliveries)",
    "alerts": "Send monitoring alerts (service tokens)",
    "metrics": "Read operational metrics at /metrics (admins)",
}
MAX_NAME = 100
MAX_RATE = 10_000
DEFAULT_RATE = 120


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Issued:
    """A new token and its secret: the only moment the secret exists outside the caller."""

    token: ApiToken
    secret: str


def parse_scopes(values: list[str] | tuple[str, ...]) -> list[str]:
    chosen = sorted({v.strip() for v in values if v and v.strip()})
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown:
        raise DomainError(f"Unknown scope {unknown[0]!r}; choose from: {', '.join(SCOPES)}.")
    if not chosen:
        raise DomainError("Choose at least one scope.")
    return chosen


def create(
    agent: Agent,
    name: str,
    scopes: list[str] | tuple[str, ...],
    *,
    kind: str = "personal",
    created_by: Agent | None = None,
    expires_at: dt.datetime | None = None,
    rate_limit: int = DEFAULT_RATE,
    resolve_alerts: bool = False,
) -> Issued:
    """Issue a token acting as ``agent``; returns the secret, which is never stored."""
    if kind not in PREFIXES:
        raise DomainError("A token is either personal or a service token.")
    name = " ".join((name or "").split())
    if not name or len(name) > MAX_NAME:
        raise DomainError(f"Give the token a name (up to {MAX_NAME} characters) to recognise it by.")
    chosen = parse_scopes(scopes)
    if "admin" in chosen and not agent.is_admin:
        raise PermissionDenied(f"{agent} is not an admin, so a token acting as them cannot have "
                               "the admin scope.")
    if "metrics" in chosen and not agent.is_admin:
        raise PermissionDenied(f"{agent} is not an admin, so a token acting as them cannot read "
                               "the metrics.")
    if "alerts" in chosen and kind != "service":
        raise DomainError("Only service tokens may send monitoring alerts.")
    if not agent.active:
        raise DomainError(f"{agent} is deactivated; their tokens would not work.")
    if expires_at is not None and expires_at <= now():
        raise DomainError("The expiry date must be in the future.")
    if not isinstance(rate_limit, int) or not 1 <= rate_limit <= MAX_RATE:
        raise DomainError(f"The rate limit is 1 to {MAX_RATE} requests a minute.")
    secret = PREFIXES[kind] + secrets.token_urlsafe(32)
    with write_transaction():
        token = ApiToken.create(
            kind=kind, name=name, agent=agent, created_by=created_by or agent,
            secret_hash=digest(secret), hint=secret[:8], scopes=",".join(chosen),
            rate_limit=rate_limit, resolve_alerts=resolve_alerts, created_at=now(),
            expires_at=expires_at)
    return Issued(token, secret)


def revoke(token_id: int, actor: Agent) -> ApiToken:
    """Revoke a token: its owner may revoke a personal token, admins any token."""
    token = ApiToken.get_or_none(ApiToken.id == token_id)
    if token is None or not (actor.is_admin or (token.kind == "personal" and token.agent_id == actor.id)):
        raise DomainError("There is no such token.") from None
    if token.revoked_at is None:
        ApiToken.update(revoked_at=now()).where(
            (ApiToken.id == token.id) & ApiToken.revoked_at.is_null()).execute()
    return ApiToken.get_by_id(token.id)


#: Scopes only an admin's token may use: checked against the agent's role at every request,
#: since the role may have been taken away after the token was issued.
ADMIN_SCOPES = frozenset({"admin", "metrics"})


def scopes_of(token: ApiToken) -> frozenset[str]:
    """What the token may do now: its scopes, less the admin ones if its agent is no longer
    an admin (a token never does more than its agent may)."""
    given = frozenset(s for s in token.scopes.split(",") if s)
    return given if token.agent.is_admin else given - ADMIN_SCOPES


def state(token: ApiToken, at: dt.datetime | None = None) -> str:
    """active, revoked, expired, or inactive (its agent is deactivated)."""
    at = at or now()
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= at:
        return "expired"
    if not token.agent.active:
        return "inactive"
    return "active"


def authenticate(secret: str) -> ApiToken | None:
    """The usable token behind a secret, or ``None`` (unknown, revoked, expired, agent gone)."""
    if not secret or len(secret) > 200 or not secret.isascii():
        return None
    token = (ApiToken.select(ApiToken, Agent).join(Agent, on=(ApiToken.agent == Agent.id))
             .where(ApiToken.secret_hash == digest(secret)).first())
    if token is None or state(token) != "active":
        return None
    return token


def spend(token: ApiToken) -> int | None:
    """Count one request against the token's per-minute limit and stamp its last use.

    Conditional UPDATEs count within the current minute or start a new one, so
    concurrent requests (threads or processes) never overshoot the limit.
    Returns ``None`` when allowed, else the seconds until the next minute.
    """
    stamp = now()
    minute = stamp.replace(second=0, microsecond=0)
    for _attempt in range(3):
        counted = ApiToken.update(window_count=ApiToken.window_count + 1, last_used_at=stamp).where(
            (ApiToken.id == token.id) & (ApiToken.window_start == minute)
            & (ApiToken.window_count < ApiToken.rate_limit)).execute()
        if counted:
            return None
        started = ApiToken.update(window_start=minute, window_count=1, last_used_at=stamp).where(
            (ApiToken.id == token.id)
            & (ApiToken.window_start.is_null() | (ApiToken.window_start < minute))).execute()
        if started:
            return None
        # Neither: this minute's budget is spent, or a concurrent request just started the minute,
        # or the next one (a request that read the clock a moment before the minute turned, and
        # got here after one that read it after): it is counted in that later minute.
        current = ApiToken.select(ApiToken.window_start, ApiToken.window_count, ApiToken.rate_limit) \
            .where(ApiToken.id == token.id).get()
        if current.window_start is not None and current.window_start > minute:
            minute = current.window_start
        if current.window_start == minute and current.window_count >= current.rate_limit:
            break
    return max(1, 60 - stamp.second)
