"""Log in and out, and the agent's own profile and sessions.

Failed logins are rate-limited per user name and address, per address and per user name
(see :func:`helpdesk.security.login_limits`); every login starts a new server-side session.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from helpdesk.models import Agent
from helpdesk.people import check_password, spend_password_time
from helpdesk.security import (
    AGENT,
    PUBLIC,
    access,
    claim_login_attempt,
    log_refusal,
    login_limits,
    login_succeeded,
    printable,
    safe_next,
)
from helpdesk.sessions import end_all, is_current, live
from helpdesk.web.sessions import current_token, end_session, start_session

bp = Blueprint("auth", __name__)


@bp.get("/session/csrf")
@access(AGENT)
def fresh_csrf() -> Any:
    """This session's CSRF token, for a page opened before its agent logged in again (in
    another tab, after the session had ended): with it, what was typed there can be sent."""
    from flask import jsonify
    from flask_wtf.csrf import generate_csrf

    response = jsonify(csrf_token=generate_csrf())
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/login", methods=["GET", "POST"])
@access(PUBLIC)
def login() -> Response | tuple[str, int] | str:
    target = safe_next(request.values.get("next"), url_for("queues.index"))
    if current_user.is_authenticated:
        return redirect(target)
    if request.method == "GET":
        return render_template("login.html", next=target)
    settings = current_app.extensions["helpdesk"].settings
    username = (request.form.get("username") or "").strip().lower()[:64]
    password = request.form.get("password") or ""
    limits = login_limits(printable(username), request.remote_addr, settings.login_max_failures,
                          settings.login_account_max_failures)
    claims = claim_login_attempt(limits, settings.login_window_seconds)
    if claims is None:
        log_refusal("login rate-limited", user=username, address=request.remote_addr)
        return render_template(
            "login.html", next=target, username=username,
            error="Too many failed attempts. Wait a few minutes before trying again.",
        ), 429, {"Retry-After": str(settings.login_window_seconds)}
    # A name with control characters cannot exist (and PostgreSQL refuses NUL): unknown.
    agent = Agent.get_or_none(Agent.username == username) if username.isprintable() and username else None
    # Unknown, deactivated and active accounts cost one password verification each, so
    # neither the answer nor its timing tells which user names exist or still work.
    right = check_password(agent, password) if agent is not None else spend_password_time(password)
    if agent is None or not agent.active or not right:
        log_refusal("login failed", user=username, address=request.remote_addr)
        return render_template(
            "login.html", next=target, username=username,
            error="Unknown user name or wrong password.",
        ), 401
    login_succeeded(limits, claims)
    start_session(agent)
    return redirect(target)


@bp.post("/logout")
@access(AGENT)
def logout() -> Response:
    end_session()
    flash("You are logged out.")
    return redirect(url_for("auth.login"))


@bp.route("/profile", methods=["GET", "POST"])
@access(AGENT)
def profile() -> Any:
    """An agent's own settings: time zone, password, and how they want to be notified.

    Every registered channel type that can address agents is offered, with its
    per-agent fields (a plugin's pager number as much as the chat URL).
    """
    from zoneinfo import available_timezones

    from helpdesk.db import write_transaction
    from helpdesk.errors import DomainError
    from helpdesk.models import NotificationPreference
    from helpdesk.notify import addresses
    from helpdesk.notify.rules import KINDS
    from helpdesk.people import set_password
    from helpdesk.web import context

    ctx = context()
    channels = addresses.agent_channel_types(ctx)
    zones = sorted(available_timezones())
    error, status = None, 200
    if request.method == "POST":
        zone = request.form.get("time_zone") or None
        current = request.form.get("current_password") or ""
        new = request.form.get("new_password") or ""
        choices = {channel.name: (request.form.get(f"channel-{channel.name}") == "on",
                                  {f.name: request.form.get(f"channel-{channel.name}-{f.name}", "")
                                   for f in channel.agent_fields})
                   for channel in channels}
        try:
            if zone is not None and zone not in zones:
                raise DomainError("Choose a time zone from the list.")
            if new and not check_password(current_user, current):
                raise DomainError("Your current password is wrong; the password was not changed.")
            rows = addresses.checked(ctx, current_user, choices)  # before writing anything
            with write_transaction():
                addresses.store(current_user, choices, rows)
                if new:
                    set_password(current_user, new)
                Agent.update(time_zone=zone).where(Agent.id == current_user.id).execute()
                NotificationPreference.delete().where(
                    NotificationPreference.agent == current_user.id).execute()
                NotificationPreference.insert_many([
                    {"agent": current_user.id, "kind": kind, "channel": channel.name,
                     "enabled": request.form.get(f"pref-{kind}-{channel.name}") == "on"}
                    for kind in KINDS for channel in channels]).execute()
        except DomainError as refused:
            error, status = str(refused), 422
        else:
            if new:  # the new password ended every session, this one included: start a fresh one
                start_session(Agent.get_by_id(current_user.id))
            flash("Profile saved.")
            return redirect(url_for("auth.profile"), code=303)
    rows, token = live(current_user.id), current_token()
    chosen = {(p.kind, p.channel): p.enabled for p in NotificationPreference.select().where(
        NotificationPreference.agent == current_user.id)}
    stored = addresses.settings_for([current_user.id])
    settings = {channel.name: addresses.setting(stored, current_user.id, channel) for channel in channels}
    if request.method == "POST":  # a refused form shows what was typed, not what is stored
        settings = {name: addresses.AgentSetting(enabled, values)
                    for name, (enabled, values) in choices.items()}
    return render_template("profile.html", zones=zones, error=error, kinds=KINDS,
                           channels=channels, settings=settings, chosen=chosen, sessions=rows,
                           this_session=next((r.id for r in rows if is_current(r, token)), None)), status


@bp.post("/profile/sessions/end-others")
@access(AGENT)
def end_other_sessions() -> Response:
    """"Log out other sessions": every browser but this one must log in again."""
    ended = end_all(current_user.id, keep=current_token())
    flash(f"Logged out {ended} other session{'s' if ended != 1 else ''}.")
    return redirect(url_for("auth.profile"), code=303)
