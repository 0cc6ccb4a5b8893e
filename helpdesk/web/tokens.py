"""API token pages: agents manage their personal tokens, admins service tokens (and may revoke
any). A new token's secret is shown once, in the answer to the form that made it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.datastructures import MultiDict

from helpdesk.api import tokens
from helpdesk.clock import now
from helpdesk.errors import DomainError
from helpdesk.models import Agent, ApiToken
from helpdesk.security import ADMIN, AGENT, access
from helpdesk.web.forms import parse_id

bp = Blueprint("tokens", __name__)
EXPIRY_DAYS = {"30": 30, "90": 90, "365": 365, "": None}


def _expiry() -> dt.datetime | None:
    raw = request.form.get("expires_days", "90")
    if raw not in EXPIRY_DAYS:
        raise DomainError("Choose an expiry from the list.")
    days = EXPIRY_DAYS[raw]
    return now() + dt.timedelta(days=days) if days else None


def _rate() -> int:
    raw = (request.form.get("rate_limit") or str(tokens.DEFAULT_RATE)).strip()
    value = parse_id(raw)
    if value is None:
        raise DomainError(f"The rate limit is 1 to {tokens.MAX_RATE} requests a minute.")
    return value


def _refilled(issued: tokens.Issued | None) -> Any:
    """What the form shows: what was typed when it was refused, empty after a success."""
    return MultiDict() if issued else request.form


def _rows(query: Any) -> list[tuple[ApiToken, str]]:
    at = now()
    return [(t, tokens.state(t, at)) for t in query.order_by(ApiToken.id.desc())]


@bp.route("/profile/tokens", methods=["GET", "POST"])
@access(AGENT)
def personal() -> Any:
    issued, error, status = None, None, 200
    if request.method == "POST":
        try:
            issued = tokens.create(current_user, request.form.get("name", ""),
                                   request.form.getlist("scopes"), expires_at=_expiry(),
                                   rate_limit=_rate())
        except DomainError as refused:
            error, status = str(refused), refused.status
        else:
            status = 201
    mine = ApiToken.select(ApiToken, Agent).join(Agent, on=(ApiToken.agent == Agent.id)).where(
        (ApiToken.agent == current_user.id) & (ApiToken.kind == "personal"))
    scopes = {k: v for k, v in tokens.SCOPES.items() if k != "alerts"
              and (k not in {"admin", "metrics"} or current_user.is_admin)}
    return render_template("tokens.html", rows=_rows(mine), issued=issued, error=error,
                           scopes=scopes, form=_refilled(issued)), status


@bp.post("/profile/tokens/revoke")
@access(AGENT)
def revoke_personal() -> Any:
    try:
        token = tokens.revoke(parse_id(request.form.get("token_id")) or 0, current_user)
    except DomainError as refused:
        flash(str(refused))
    else:
        flash(f"Token {token.name} revoked.")
    return redirect(url_for("tokens.personal"), code=303)


@bp.route("/admin/tokens", methods=["GET", "POST"])
@access(ADMIN)
def service() -> Any:
    issued, error, status = None, None, 200
    if request.method == "POST":
        try:
            agent_id = parse_id(request.form.get("agent_id"))
            agent = Agent.get_or_none(Agent.id == agent_id) if agent_id else None
            if agent is None:
                raise DomainError("Choose the agent the token acts as.")
            issued = tokens.create(agent, request.form.get("name", ""), request.form.getlist("scopes"),
                                   kind="service", created_by=current_user, expires_at=_expiry(),
                                   rate_limit=_rate(),
                                   resolve_alerts=request.form.get("resolve_alerts") == "on")
        except DomainError as refused:
            error, status = str(refused), refused.status
        else:
            status = 201
    everyone = ApiToken.select(ApiToken, Agent).join(Agent, on=(ApiToken.agent == Agent.id))
    return render_template("admin/tokens.html", rows=_rows(everyone), issued=issued, error=error,
                           scopes=tokens.SCOPES, form=_refilled(issued),
                           agents=list(Agent.select().where(Agent.active == True)  # noqa: E712
                                       .order_by(Agent.display_name))), status


@bp.post("/admin/tokens/revoke")
@access(ADMIN)
def revoke_any() -> Any:
    try:
        token = tokens.revoke(parse_id(request.form.get("token_id")) or 0, current_user)
    except DomainError as refused:
        flash(str(refused))
    else:
        flash(f"Token {token.name} revoked.")
    return redirect(url_for("tokens.service"), code=303)


@bp.get("/api/docs")
@access(AGENT)
def docs() -> Any:
    """The API reference, rendered on the server from the same OpenAPI document (no script,
    nothing fetched from elsewhere)."""
    from flask import current_app

    from helpdesk.api.openapi import document
    from helpdesk.web import context

    doc = document(context().base_url, current_app.extensions["helpdesk.api_endpoints"])
    operations = [(path, method.upper(), op) for path, ops in doc["paths"].items()
                  for method, op in ops.items()]
    return render_template("api_docs.html", doc=doc, operations=operations)
