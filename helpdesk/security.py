"""Who may use which route, login rate limits, security headers, safe redirects.

Every view declares its audience with :func:`access`. A ``before_request``
hook enforces the declaration, so a route that declares nothing is refused
(fail closed) and a test walks the URL map to catch it early.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Flask, Response, abort, request
from flask_login import current_user
from peewee import fn

from helpdesk.clock import now
from helpdesk.db import database, is_sqlite, write_transaction
from helpdesk.models import LoginAttempt

PUBLIC, AGENT, LEAD, ADMIN = "public", "agent", "lead", "admin"
TOKEN = "token"  # noqa: S105 - an access level: the JSON API's bearer tokens (helpdesk.api)
#: The customer portal: a signed-in customer (a contact), checked by the portal's own gate;
#: an agent's session never counts as a customer, nor a customer's as an agent.
CUSTOMER = "customer"
LEVELS = (PUBLIC, AGENT, LEAD, ADMIN, TOKEN, CUSTOMER)
F = TypeVar("F", bound=Callable[..., Any])
security_log = logging.getLogger("helpdesk.security")
LOGIN_LOCK = 0x6C6F67696E  # the advisory lock id that serialises login claims on PostgreSQL

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def access(level: str) -> Callable[[F], F]:
    """Declare who may call a view: public, any agent, team leads, admins, or customers."""
    if level not in LEVELS:
        raise ValueError(f"unknown access level {level!r}")

    def mark(view: F) -> F:
        view.access_level = level  # type: ignore[attr-defined]
        return view

    return mark


def current_agent() -> Any:
    """The agent signed in to the request being served, or ``None`` (anonymous, a portal
    customer, or no request at all): what a plugin page acts as (plugin API 1.7)."""
    from flask import has_request_context

    from helpdesk.models import Agent

    if not has_request_context():
        return None
    user = current_user._get_current_object()
    return user if isinstance(user, Agent) and user.is_authenticated else None


def allowed(level: str, user: Any) -> bool:
    if level == PUBLIC:
        return True
    if level == CUSTOMER or not user.is_authenticated:
        return False
    if level == ADMIN:
        return user.is_admin
    if level == LEAD:
        return user.is_lead
    return True


def enforce_access(app: Flask, login_manager: Any) -> None:
    @app.before_request
    def check_declared_access() -> Any:
        if request.endpoint is None:
            return None  # 404 or 405: nothing to protect
        view = app.view_functions[request.endpoint]
        level = getattr(view, "access_level", None)
        if level is None:
            app.logger.error("route %s declares no access level: refused", request.endpoint)
            abort(403)
        if level == TOKEN:  # only the API's own check admits these; without it, nobody
            check_token = app.extensions.get("helpdesk.api_auth")
            return check_token(view) if check_token else abort(403)
        if level == CUSTOMER:  # the portal's gate: None lets a signed-in customer through
            gate = app.extensions.get("helpdesk.customer_gate")
            return gate() if gate is not None else abort(404)
        if level != PUBLIC and not current_user.is_authenticated:
            return login_manager.unauthorized()
        if not allowed(level, current_user):
            log_refusal("access refused", user=current_user.username, path=request.path)
            abort(403)
        return None


def printable(value: object, limit: int = 200) -> str:
    """User text made safe for one log line: control characters and line breaks escaped
    (a user name of "x\\n2026-01-01 INFO admin login ok" cannot forge a second line)."""
    text = str(value)[:limit]
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def log_refusal(what: str, **details: object) -> None:
    """A security event (failed login, refused access) on the ``helpdesk.security`` log."""
    security_log.warning("%s %s", what, " ".join(f"{k}={printable(v)!s}" for k, v in details.items()))


def add_security_headers(response: Response, secure: bool) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def safe_next(target: str | None, default: str) -> str:
    """Only a local path may be a redirect target (no scheme, host, or '//' trick)."""
    if not target or "\\" in target or any(ord(c) < 32 for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target


def login_limits(username: str, address: str | None, per_pair: int, per_account: int) -> dict[str, int]:
    """The counters one login attempt spends, each with its limit per window.

    * user name + address: ``login_max_failures`` (someone guessing from one place);
    * address: four times that (one place spraying many user names);
    * user name from every address: ``login_account_max_failures`` (a distributed guess).

    So a stranger who knows a user name only locks themselves out, not its owner; only a
    guess spread over many addresses reaches the account-wide limit.
    """
    user = username.strip().lower()[:100]
    addr = (address or "-")[:100]
    return {f"pair:{user}|{addr}": per_pair, f"addr:{addr}": per_pair * 4, f"user:{user}": per_account}


def _serialise_login_claims() -> None:
    """Make count-then-record one step: SQLite's BEGIN IMMEDIATE already serialises writers;
    PostgreSQL takes a transaction-scoped advisory lock (released at commit)."""
    if not is_sqlite():
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (LOGIN_LOCK,))


def claim_login_attempt(limits: dict[str, int], window_seconds: int) -> list[int] | None:
    """Spend one attempt on every counter before the password is verified; ``None`` (and
    nothing spent) when any counter is at its limit. Atomic: of N parallel attempts, at
    most the limit get a claim, so at most the limit reach a password check. Returns the
    claim ids, which a successful login gives back."""
    stamp = now()
    since = stamp - dt.timedelta(seconds=window_seconds)
    with write_transaction():
        _serialise_login_claims()
        LoginAttempt.delete().where(LoginAttempt.at <= since).execute()
        counts = dict(LoginAttempt.select(LoginAttempt.key, fn.COUNT(LoginAttempt.id))
                      .where(LoginAttempt.key.in_(list(limits)) & (LoginAttempt.at > since))
                      .group_by(LoginAttempt.key).tuples())
        if any(counts.get(key, 0) >= limit for key, limit in limits.items()):
            return None
        return [LoginAttempt.create(key=key, at=stamp).id for key in limits]


def login_succeeded(limits: dict[str, int], claims: list[int]) -> None:
    """A right password: this attempt does not count, and the user name's earlier failures
    are forgiven (the address's are not: it may have guessed at other names)."""
    keys = [key for key in limits if not key.startswith("addr:")]
    LoginAttempt.delete().where(LoginAttempt.key.in_(keys) | LoginAttempt.id.in_(claims)).execute()
