"""Who may use which route, login rate limits, security headers, safe redirects.

Every view declares its audience with :func:`access`. A ``before_request``
hook enforces the declaration, so a route that declares nothing is refused
(fail closed) and a test walks the URL map to catch it early.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Flask, Response, abort, request
from flask_login import current_user

from helpdesk.clock import now
from helpdesk.models import LoginAttempt

PUBLIC, AGENT, LEAD, ADMIN = "public", "agent", "lead", "admin"
#: The customer portal: a signed-in customer (a contact), checked by the portal's own gate;
#: an agent's session never counts as a customer, nor a customer's as an agent.
CUSTOMER = "customer"
LEVELS = (PUBLIC, AGENT, LEAD, ADMIN, CUSTOMER)
F = TypeVar("F", bound=Callable[..., Any])

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
        if level == CUSTOMER:  # the portal's gate: None lets a signed-in customer through
            gate = app.extensions.get("helpdesk.customer_gate")
            return gate() if gate is not None else abort(404)
        if level != PUBLIC and not current_user.is_authenticated:
            return login_manager.unauthorized()
        if not allowed(level, current_user):
            abort(403)
        return None


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


def login_keys(username: str, address: str | None) -> list[str]:
    return [f"user:{username.strip().lower()[:100]}", f"addr:{(address or '-')[:100]}"]


def login_blocked(keys: list[str], max_failures: int, window_seconds: int) -> bool:
    since = now() - dt.timedelta(seconds=window_seconds)
    for key in keys:
        limit = max_failures if key.startswith("user:") else max_failures * 4
        count = LoginAttempt.select().where(
            (LoginAttempt.key == key) & (LoginAttempt.at > since)
        ).count()
        if count >= limit:
            return True
    return False


def record_login_failure(keys: list[str], window_seconds: int) -> None:
    stamp = now()
    LoginAttempt.delete().where(LoginAttempt.at < stamp - dt.timedelta(seconds=window_seconds)).execute()
    LoginAttempt.insert_many([{"key": key, "at": stamp} for key in keys]).execute()


def clear_login_failures(username: str) -> None:
    LoginAttempt.delete().where(LoginAttempt.key == f"user:{username.strip().lower()}").execute()
