"""Admin pages: agents, teams and memberships, contacts and organisations, the catalogue."""

from __future__ import annotations

from typing import Any

import peewee
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from helpdesk import people
from helpdesk.db import write_transaction
from helpdesk.errors import DomainError
from helpdesk.models import ROLES, Agent, Category, Contact, Incident, Membership, Organisation, Service, Team
from helpdesk.security import ADMIN, access
from helpdesk.web.forms import parse_id

bp = Blueprint("admin", __name__, url_prefix="/admin")

CATALOGUES = {
    "categories": (Category, "Categories"),
    "services": (Service, "Services"),
    "organisations": (Organisation, "Organisations"),
}


def _form_teams() -> list[Team]:
    ids = [i for i in (parse_id(v) for v in request.form.getlist("teams")) if i is not None]
    return list(Team.select().where(Team.id.in_(ids))) if ids else []


@bp.get("/")
@access(ADMIN)
def index() -> Any:
    return redirect(url_for("admin.agents"))


@bp.route("/agents", methods=["GET", "POST"])
@access(ADMIN)
def agents() -> Any:
    error, status = None, 200
    if request.method == "POST":
        try:
            agent = people.create_agent(
                request.form.get("username", ""),
                request.form.get("display_name", ""),
                request.form.get("password", ""),
                email=request.form.get("email", ""),
                role=request.form.get("role", "agent"),
                teams=_form_teams(),
            )
        except DomainError as refused:
            error, status = str(refused), 422
        else:
            flash(f"Agent {agent.username} created.")
            return redirect(url_for("admin.agents"), code=303)
    memberships: dict[int, list[str]] = {}
    for m in Membership.select(Membership, Team).join(Team).order_by(Team.name):
        memberships.setdefault(m.agent_id, []).append(m.team.name)
    return render_template(
        "admin/agents.html",
        agents=list(Agent.select().order_by(Agent.username)),
        memberships=memberships,
        teams=list(Team.select().order_by(Team.name)),
        roles=ROLES,
        error=error,
        form=request.form,
    ), status


@bp.route("/agents/<int:agent_id>", methods=["GET", "POST"])
@access(ADMIN)
def agent(agent_id: int) -> Any:
    record = Agent.get_or_none(Agent.id == agent_id) or abort(404)
    error, status = None, 200
    if request.method == "POST":
        try:
            if request.form.get("password"):
                people.validate_password(request.form["password"])  # before anything is saved
            people.update_agent(
                record,
                display_name=request.form.get("display_name", ""),
                email=request.form.get("email", ""),
                role=request.form.get("role", ""),
                active=request.form.get("active") == "on",
                teams=_form_teams(),
                actor=current_user,
            )
            if request.form.get("password"):
                people.set_password(record, request.form["password"])
        except DomainError as refused:
            error, status = str(refused), 422
        else:
            flash(f"Agent {record.username} saved.")
            return redirect(url_for("admin.agent", agent_id=agent_id), code=303)
    return render_template(
        "admin/agent.html",
        agent=record,
        member_of=set(people.team_ids_of(record)),
        teams=list(Team.select().order_by(Team.name)),
        roles=ROLES,
        error=error,
    ), status


@bp.route("/teams", methods=["GET", "POST"])
@access(ADMIN)
def teams() -> Any:
    error, status = None, 200
    if request.method == "POST":
        try:
            team = people.create_team(request.form.get("name", ""),
                                      request.form.get("description", ""))
        except DomainError as refused:
            error, status = str(refused), 422
        else:
            flash(f"Team {team.name} created.")
            return redirect(url_for("admin.teams"), code=303)
    members: dict[int, list[Agent]] = {}
    for m in Membership.select(Membership, Agent).join(Agent).order_by(Agent.display_name):
        members.setdefault(m.team_id, []).append(m.agent)
    return render_template(
        "admin/teams.html",
        teams=list(Team.select().order_by(Team.name)),
        members=members,
        error=error,
    ), status


@bp.route("/contacts", methods=["GET", "POST"])
@access(ADMIN)
def contacts() -> Any:
    error, status = None, 200
    if request.method == "POST":
        name = (request.form.get("name") or "").strip()
        email = (request.form.get("email") or "").strip().lower() or None
        org_name = (request.form.get("organisation") or "").strip()
        try:
            if not name:
                raise DomainError("A contact needs a name.")
            if email and ("@" not in email or any(c in email for c in "\r\n <>,")):
                raise DomainError(f"{email!r} is not an email address.")
            with write_transaction():
                organisation = None
                if org_name:
                    organisation, _ = Organisation.get_or_create(name=org_name)
                Contact.create(name=name, email=email, organisation=organisation,
                               phone=(request.form.get("phone") or "").strip())
        except peewee.IntegrityError:
            error, status = f"A contact with the email {email} already exists.", 422
        except DomainError as refused:
            error, status = str(refused), 422
        else:
            flash(f"Contact {name} created.")
            return redirect(url_for("admin.contacts"), code=303)
    rows = (
        Contact.select(Contact, Organisation)
        .join(Organisation, peewee.JOIN.LEFT_OUTER)
        .order_by(Contact.name)
    )
    return render_template("admin/contacts.html", contacts=list(rows), error=error,
                           form=request.form), status


@bp.route("/catalogue/<kind>", methods=["GET", "POST"])
@access(ADMIN)
def catalogue(kind: str) -> Any:
    if kind not in CATALOGUES:
        abort(404)
    model, title = CATALOGUES[kind]
    has_active = "active" in model._meta.fields
    error, status = None, 200
    if request.method == "POST":
        name = (request.form.get("name") or "").strip()
        try:
            toggle = request.form.get("toggle", "")
            if not toggle and not name:
                raise DomainError("A name is required.")
            with write_transaction():
                if parse_id(toggle) is not None and has_active:
                    item = model.get_or_none(model.id == parse_id(toggle)) or abort(404)
                    model.update(active=not item.active).where(model.id == item.id).execute()
                else:
                    model.create(name=name)
        except peewee.IntegrityError:
            error, status = f"{name!r} already exists.", 422
        except DomainError as refused:
            error, status = str(refused), 422
        else:
            flash("Saved.")
            return redirect(url_for("admin.catalogue", kind=kind), code=303)
    return render_template(
        "admin/catalogue.html",
        kind=kind,
        title=title,
        items=list(model.select().order_by(model.name)),
        has_active=has_active,
        error=error,
    ), status


@bp.get("/plugins")
@access(ADMIN)
def plugins() -> Any:
    """Every loaded plugin, where it came from, what it implements, and recent failures."""
    from flask import current_app

    from helpdesk import event_outbox
    from helpdesk.models import EventDelivery, PluginFailure

    state = current_app.extensions["helpdesk"]
    failures = list(PluginFailure.select().order_by(PluginFailure.id.desc()).limit(50))
    # Events still owed to a plugin: dead ones first, then those waiting for a retry or running.
    owed = list(EventDelivery.select().where(
        (EventDelivery.state == "dead") | ((EventDelivery.state != "done") & (EventDelivery.attempts > 0)))
        .order_by((EventDelivery.state == "dead").desc(), EventDelivery.id.desc()).limit(100))
    return render_template("admin/plugins.html", plugins=list(state.plugins.values()),
                           failures=failures, owed=owed, event_counts=event_outbox.counts())


@bp.post("/plugins/events/<int:event_id>/retry")
@access(ADMIN)
def retry_event(event_id: int) -> Any:
    """Queue a dead plugin event again (after the plugin was fixed or re-enabled)."""
    from flask import current_app

    from helpdesk import event_outbox

    if event_outbox.retry(event_id):
        current_app.extensions["helpdesk"].tasks.fire_event(event_id)
        flash("Event queued again.")
    else:
        flash("Only a dead event can be retried.")
    return redirect(url_for("admin.plugins"), code=303)


@bp.get("/sla")
@access(ADMIN)
def sla_overview() -> Any:
    """Policies, calendars, and which policy applies to a sample incident."""
    from flask import current_app

    from helpdesk import incidents
    from helpdesk.errors import NotFound

    state = current_app.extensions["helpdesk"]
    sample, applied, error = None, None, None
    raw = (request.args.get("incident") or "").strip()
    if raw:
        try:
            incident_id = Incident.parse_reference(raw)
            if incident_id is None:
                raise NotFound("Give an incident reference such as INC-42.")
            sample = incidents.get(incident_id)
            name = state.pm.hook.helpdesk_sla_policy(incident=sample, ctx=state)
            policy = state.registry.sla_policies.get(name)
            applied = (name, policy, policy.targets(state, sample) if policy else None)
        except DomainError as refused:
            error = str(refused)
    return render_template(
        "admin/sla.html",
        policies=[(p, state.registry.owners[("helpdesk_sla_policies", n)])
                  for n, p in state.registry.sla_policies.items()],
        calendars=[(c, state.registry.owners[("helpdesk_business_calendars", n)])
                   for n, c in state.registry.business_calendars.items()],
        weekdays=["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
        sample=sample, applied=applied, error=error, query=request.args.get("incident", ""),
    )


DELIVERY_STATES = ("pending", "sending", "sent", "dead")


@bp.get("/deliveries")
@access(ADMIN)
def deliveries() -> Any:
    """The outbox: filter by state and channel; each delivery's attempts; retry dead ones."""
    from flask import current_app

    from helpdesk.models import Delivery, DeliveryAttempt

    state_filter = request.args.get("state") or ""
    channel_filter = request.args.get("channel") or ""
    if state_filter and state_filter not in DELIVERY_STATES:
        abort(400, f"Unknown delivery state {state_filter!r}.")
    query = Delivery.select().order_by(Delivery.id.desc())
    if state_filter:
        query = query.where(Delivery.state == state_filter)
    if channel_filter:
        query = query.where(Delivery.channel == channel_filter)
    rows = list(query.limit(100))
    attempts: dict[int, list[Any]] = {}
    if rows:
        for attempt in DeliveryAttempt.select().where(
                DeliveryAttempt.delivery.in_([r.id for r in rows])).order_by(DeliveryAttempt.id):
            attempts.setdefault(attempt.delivery_id, []).append(attempt)
    channels = sorted(current_app.extensions["helpdesk"].registry.channel_types)
    return render_template("admin/deliveries.html", deliveries=rows, attempts=attempts,
                           states=DELIVERY_STATES, channels=channels, state_filter=state_filter,
                           channel_filter=channel_filter)


@bp.post("/deliveries/<int:delivery_id>/retry")
@access(ADMIN)
def retry_delivery(delivery_id: int) -> Any:
    from helpdesk.notify import outbox
    from helpdesk.web import context

    if outbox.retry(delivery_id):
        context().tasks.deliver(delivery_id)
        flash("Delivery queued again.")
    else:
        flash("Only a dead delivery can be retried.")
    return redirect(url_for("admin.deliveries", state=request.args.get("state") or None), code=303)


@bp.post("/channels/<name>/test")
@access(ADMIN)
def test_channel(name: str) -> Any:
    """Send a test message through a channel type now, and say what happened."""
    from helpdesk.notify.outbox import send_now
    from helpdesk.records import DeliveryError, Message
    from helpdesk.web import context

    recipient = (request.form.get("recipient") or "").strip()
    if not recipient:
        flash("Give a recipient for the test message.")
    else:
        try:
            send_now(context(), name, Message(recipient=recipient, subject="Helpdesk test message",
                                  text="If you can read this, the channel works.",
                                  idempotency_key=f"test-{name}"))
        except DeliveryError as error:
            flash(f"{name}: {'permanent' if error.permanent else 'temporary'} failure: {error}")
        else:
            flash(f"{name}: test message sent to {recipient}.")
    return redirect(url_for("admin.deliveries"), code=303)


@bp.route("/notifications", methods=["GET", "POST"])
@access(ADMIN)
def notification_rules() -> Any:
    """Who is told what: switch the default rules on or off."""
    from helpdesk.models import NotificationRule
    from helpdesk.notify.rules import RULE_LABELS, RULES

    if request.method == "POST":
        with write_transaction():
            NotificationRule.delete().execute()
            NotificationRule.insert_many([
                {"audience": audience, "kind": kind,
                 "enabled": request.form.get(f"rule-{audience}-{kind}") == "on"}
                for audience, kinds in RULES.items() for kind in kinds]).execute()
        flash("Notification rules saved.")
        return redirect(url_for("admin.notification_rules"), code=303)
    current = {(r.audience, r.kind): r.enabled for r in NotificationRule.select()}
    return render_template("admin/notifications.html", rules=RULES, labels=RULE_LABELS, current=current)
