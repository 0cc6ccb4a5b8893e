"""Log in and out. Failed logins are rate-limited per user name and per address."""

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
from flask_login import current_user, login_user, logout_user

from helpdesk.models import Agent
from helpdesk.people import check_password, spend_password_time
from helpdesk.security import (
    AGENT,
    PUBLIC,
    access,
    clear_login_failures,
    login_blocked,
    login_keys,
    record_login_failure,
    safe_next,
)

bp = Blueprint("auth", __name__)


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
    keys = login_keys(username, request.remote_addr)
    if login_blocked(keys, settings.login_max_failures, settings.login_window_seconds):
        return render_template(
            "login.html", next=target, username=username,
            error="Too many failed attempts. Wait a few minutes before trying again.",
        ), 429
    agent = Agent.get_or_none(Agent.username == username) if username else None
    if agent is None:
        spend_password_time(password)  # no timing difference reveals which user names exist
    if agent is None or not agent.active or not check_password(agent, password):
        record_login_failure(keys, settings.login_window_seconds)
        return render_template(
            "login.html", next=target, username=username,
            error="Unknown user name or wrong password.",
        ), 401
    clear_login_failures(username)
    login_user(agent)
    return redirect(target)


@bp.post("/logout")
@access(AGENT)
def logout() -> Response:
    logout_user()
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
            with write_transaction():
                addresses.save(ctx, current_user, choices)  # checks every value first
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
                login_user(Agent.get_by_id(current_user.id))
            flash("Profile saved.")
            return redirect(url_for("auth.profile"), code=303)
    chosen = {(p.kind, p.channel): p.enabled for p in NotificationPreference.select().where(
        NotificationPreference.agent == current_user.id)}
    stored = addresses.settings_for([current_user.id])
    settings = {channel.name: addresses.setting(stored, current_user.id, channel) for channel in channels}
    if request.method == "POST":  # a refused form shows what was typed, not what is stored
        settings = {name: addresses.AgentSetting(enabled, values)
                    for name, (enabled, values) in choices.items()}
    return render_template("profile.html", zones=zones, error=error, kinds=KINDS,
                           channels=channels, settings=settings, chosen=chosen), status
