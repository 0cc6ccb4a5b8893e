"""Admin pages: agents, teams and memberships, contacts and organisations, the catalogue,
SLA calendars and targets (leads too), mail and channel settings, the configuration audit."""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee
from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user

from helpdesk import customers, people
from helpdesk.db import write_transaction
from helpdesk.errors import DomainError
from helpdesk.models import (
    ACTIVE_STATUSES,
    ROLES,
    Agent,
    Category,
    Contact,
    Incident,
    Membership,
    Organisation,
    Service,
    Team,
)
from helpdesk.security import ADMIN, LEAD, PUBLIC, access
from helpdesk.web.forms import parse_id

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_app_request
def fresh_settings() -> None:
    """Before any page that may use settings: one query compares the settings revision, and
    what another process saved is loaded (see helpdesk.site_settings)."""
    from flask import current_app

    from helpdesk import site_settings

    if request.endpoint is None:
        return
    view = current_app.view_functions.get(request.endpoint)
    if getattr(view, "access_level", PUBLIC) == PUBLIC:
        return  # /healthz, static files, the login page: no database needed
    # The revision the session's query read, when the agent was loaded first (one query less).
    site_settings.refresh(current_app.extensions["helpdesk"], current=g.pop("settings_revision", None))

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


def _released_text(ids: list[int]) -> str:
    """What saving an agent gave back to their teams, for the confirmation."""
    if not ids:
        return ""
    shown = ", ".join(f"INC-{incident_id}" for incident_id in ids[:10])
    more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
    return (f" {len(ids)} incident{'s' if len(ids) != 1 else ''} they can no longer answer for "
            f"went back to their teams' Unowned or Unassigned queues: {shown}{more}.")


@bp.route("/agents/<int:agent_id>", methods=["GET", "POST"])
@access(ADMIN)
def agent(agent_id: int) -> Any:
    from helpdesk.web import context

    record = Agent.get_or_none(Agent.id == agent_id) or abort(404)
    error, status = None, 200
    if request.method == "POST":
        try:
            if request.form.get("password"):
                people.validate_password(request.form["password"])  # before anything is saved
            released = people.update_agent(
                record,
                display_name=request.form.get("display_name", ""),
                email=request.form.get("email", ""),
                role=request.form.get("role", ""),
                active=request.form.get("active") == "on",
                teams=_form_teams(),
                actor=current_user,
                ctx=context(),
            )
            if request.form.get("password"):
                people.set_password(record, request.form["password"])
        except DomainError as refused:
            error, status = str(refused), 422
        else:
            flash(f"Agent {record.username} saved.{_released_text(released)}")
            return redirect(url_for("admin.agent", agent_id=agent_id), code=303)
    # A refused save shows what was typed (but the password), not the stored values.
    shown = {"display_name": record.display_name, "email": record.email or "",
             "role": record.role, "active": record.active}
    member_of = set(people.team_ids_of(record))
    if error:
        shown = {"display_name": request.form.get("display_name", ""),
                 "email": request.form.get("email", ""), "role": request.form.get("role", ""),
                 "active": request.form.get("active") == "on"}
        member_of = {team.id for team in _form_teams()}
    active = Incident.status.in_(list(ACTIVE_STATUSES))
    unclosed = Incident.status.not_in(["closed", "cancelled"])
    holds = {"owned": Incident.select().where((Incident.owner_agent == record.id) & unclosed).count(),
             "assigned": Incident.select().where((Incident.assigned_agent == record.id) & active).count()}
    return render_template(
        "admin/agent.html",
        agent=record,
        holds=holds,
        shown=shown,
        member_of=member_of,
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
        form=request.form if error else {},
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
            share = request.form.get("share", "")
            if not toggle and not share and not name:
                raise DomainError("A name is required.")
            with write_transaction():
                if parse_id(share) is not None and model is Organisation:
                    # Its contacts see each other's incidents in the portal (or no longer do).
                    item = model.get_or_none(model.id == parse_id(share)) or abort(404)
                    model.update(share_incidents=not item.share_incidents).where(
                        model.id == item.id).execute()
                elif parse_id(toggle) is not None and has_active:
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
    # The latest of each kind of failure (plugin, hook, error), newest first: one plugin failing
    # over and over does not push the others off the page.
    latest = (PluginFailure.select(peewee.fn.MAX(PluginFailure.id))
              .group_by(PluginFailure.plugin, PluginFailure.hook, PluginFailure.error))
    failures = list(PluginFailure.select().where(PluginFailure.id.in_(latest))
                    .order_by(PluginFailure.id.desc()).limit(50))
    # Events still owed to a plugin: dead ones first, then those waiting for a retry or running.
    owed = list(EventDelivery.select().where(
        (EventDelivery.state == "dead") | ((EventDelivery.state != "done") & (EventDelivery.attempts > 0)))
        .order_by((EventDelivery.state == "dead").desc(), EventDelivery.id.desc()).limit(100))
    return render_template("admin/plugins.html", plugins=list(state.plugins.values()),
                           unclaimed_settings=state.unclaimed_settings,
                           plugin_problems=state.plugin_problems, failures=failures, owed=owed,
                           event_counts=event_outbox.counts())


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


#: Test messages one person may send per rate-limit window (``login_window_seconds``).
SEND_TESTS_PER_WINDOW = 10


@bp.post("/channels/<name>/test")
@access(ADMIN)
def test_channel(name: str) -> Any:
    """Send a test message through a channel type now, and say what happened."""
    from helpdesk.notify.outbox import send_now, send_test_key
    from helpdesk.records import DeliveryError, Message
    from helpdesk.security import claim_login_attempt
    from helpdesk.web import context

    recipient = (request.form.get("recipient") or "").strip()
    settings = context().settings
    if not recipient:
        flash("Give a recipient for the test message.")
    elif claim_login_attempt({f"send-test:{current_user.id}": SEND_TESTS_PER_WINDOW},
                             settings.login_window_seconds) is None:
        # A test send is a request to any address the channel allows: bounded per person (F5).
        flash(f"At most {SEND_TESTS_PER_WINDOW} test messages per "
              f"{settings.login_window_seconds // 60} minutes; try again later.")
    else:
        try:
            send_now(context(), name, Message(recipient=recipient, subject="Helpdesk test message",
                                  text="If you can read this, the channel works.",
                                  idempotency_key=send_test_key(name)))
        except DeliveryError as error:
            flash(f"{name}: {'permanent' if error.permanent else 'temporary'} failure: {error}")
        else:
            flash(f"{name}: test message sent to {recipient}.")
    if request.form.get("back") == "channels":
        return redirect(url_for("admin.channels") + f"#channel-{name}", code=303)
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


# -- teams and contacts, edited ---------------------------------------------------------------


@bp.route("/teams/<int:team_id>", methods=["GET", "POST"])
@access(ADMIN)
def team(team_id: int) -> Any:
    """Rename, describe, (de)activate a team, choose its members (leads are members with the
    Team lead role) and its escalation mode; its on-call agent (a form posting to the team's
    on-call page)."""
    from helpdesk.web import context

    record = Team.get_or_none(Team.id == team_id) or abort(404)
    errors: dict[str, str] = {}
    status = 200
    agents = list(Agent.select().order_by(Agent.display_name))
    if request.method == "POST":
        chosen = {parse_id(v) for v in request.form.getlist("members")}
        try:
            changed = people.update_team(
                record, name=request.form.get("name", ""), description=request.form.get("description", ""),
                active=request.form.get("active") == "on",
                members=[a for a in agents if a.id in chosen],
                service_desk=context().settings.service_desk_team, actor=current_user, ctx=context(),
                escalation_mode=request.form.get("escalation_mode", record.escalation_mode))
        except people.FieldErrors as refused:
            errors, status = refused.errors, 422
        else:
            flash(f"Team {request.form.get('name', '').strip()} saved." if changed else "Nothing changed.")
            return redirect(url_for("admin.team", team_id=team_id), code=303)
    from helpdesk import site_settings

    members = set(people.team_member_ids(record)) if request.method == "GET" else {
        parse_id(v) for v in request.form.getlist("members")}
    from helpdesk.models import ESCALATION_MODES, TeamOnCall
    from helpdesk.web.handback import on_call_members

    return render_template("admin/team.html", team=record, agents=agents, members=members, roles=ROLES,
                           errors=errors, form=request.form if request.method == "POST" else None,
                           modes=ESCALATION_MODES, on_call=people.on_call(record),
                           on_call_row=TeamOnCall.get_or_none(TeamOnCall.team == record),
                           on_call_members=on_call_members(record),
                           history=site_settings.changes((f"team:{team_id}.",), 20)), status


CONTACT_FIELDS = ("name", "email", "phone", "organisation")


@bp.route("/contacts/<int:contact_id>", methods=["GET", "POST"])
@access(ADMIN)
def contact(contact_id: int) -> Any:
    """Correct a contact's name, e-mail, phone and organisation (audited)."""
    from helpdesk import site_settings

    record = (Contact.select(Contact, Organisation).join(Organisation, peewee.JOIN.LEFT_OUTER)
              .where(Contact.id == contact_id).get_or_none()) or abort(404)
    errors: dict[str, str] = {}
    status = 200
    old = {"name": record.name, "email": record.email or "", "phone": record.phone or "",
           "organisation": record.organisation.name if record.organisation else ""}
    if request.method == "POST":
        new = {key: (request.form.get(key) or "").strip() for key in CONTACT_FIELDS}
        new["email"] = new["email"].lower()
        if not new["name"]:
            errors["name"] = "A contact needs a name."
        elif len(new["name"]) > 200:
            errors["name"] = "At most 200 characters."
        if new["email"] and (new["email"].count("@") != 1 or any(c in new["email"] for c in "\r\n <>,;")
                             or len(new["email"]) > 254):
            errors["email"] = f"{new['email']!r} is not an e-mail address."
        elif new["email"] and Contact.select().where((Contact.email == new["email"])
                                                     & (Contact.id != record.id)).exists():
            errors["email"] = "Another contact has this e-mail address."
        if len(new["phone"]) > 50:
            errors["phone"] = "At most 50 characters."
        if len(new["organisation"]) > 200:
            errors["organisation"] = "At most 200 characters."
        changed = {k: (old[k], new[k]) for k in CONTACT_FIELDS if old[k] != new[k]}
        if errors:
            status = 422
        elif not changed:
            flash("Nothing changed.")
            return redirect(url_for("admin.contact", contact_id=contact_id), code=303)
        else:
            try:
                with write_transaction():
                    organisation = None
                    if new["organisation"]:
                        organisation, _ = Organisation.get_or_create(name=new["organisation"])
                    Contact.update(name=new["name"], email=new["email"] or None, phone=new["phone"],
                                   organisation=organisation).where(Contact.id == record.id).execute()
                    if "email" in changed:
                        customers.address_changed(record.id)
                    for key, (before, after) in changed.items():
                        site_settings.record(f"contact:{record.id}.{key}", before, after, current_user)
            except peewee.IntegrityError:
                errors, status = {"email": "Another contact has this e-mail address."}, 422
            else:
                flash(f"Contact {new['name']} saved.")
                return redirect(url_for("admin.contact", contact_id=contact_id), code=303)
    values = {k: request.form.get(k, "") for k in CONTACT_FIELDS} if request.method == "POST" else old
    return render_template("admin/contact.html", contact=record, values=values, errors=errors,
                           history=site_settings.changes((f"contact:{contact_id}.",), 20)), status


# -- SLA: business hours, holidays, targets (admins change them; team leads view them) -----------


def _sla_view(errors: dict[str, str] | None = None, form: Any = None, status: int = 200) -> Any:
    """The SLA page: what applies (read-only), and the forms for the built-in calendar and policy."""
    from flask import current_app

    from helpdesk import incidents, site_settings, sla
    from helpdesk.errors import NotFound

    state = current_app.extensions["helpdesk"]
    sample, applied, error, sample_by_choice = None, None, None, False
    raw = (request.args.get("incident") or "").strip()
    if raw:
        try:
            incident_id = Incident.parse_reference(raw)
            if incident_id is None:
                raise NotFound("Give an incident reference such as INC-42.")
            sample = incidents.get(incident_id)
            found = sla.policy_targets(state, sample)
            name = found[0].name if found else sla.unavailable_policy(state, sample)
            applied = (name, found[0] if found else None, found[1] if found else None)
            sample_by_choice = not found and sla.without_sla_by_choice(state, sample)
        except DomainError as refused:
            error = str(refused)
    business = state.registry.business_calendars.get("business")
    owners = state.registry.owners  # the forms edit what the bundled plugins read
    editable_calendar = owners.get(("helpdesk_business_calendars", "business"), "").endswith("business_hours")
    editable_targets = owners.get(("helpdesk_sla_policies", "priority"), "").endswith("sla_priority")
    response = {**SLA_DEFAULTS["response"], **(site_settings.effective(state, "sla_priority.response") or {})}
    resolution = {**SLA_DEFAULTS["resolution"],
                  **(site_settings.effective(state, "sla_priority.resolution") or {})}
    return render_template(
        "admin/sla.html",
        policies=[(p, state.registry.owners[("helpdesk_sla_policies", n)])
                  for n, p in state.registry.sla_policies.items()],
        calendars=[(c, state.registry.owners[("helpdesk_business_calendars", n)])
                   for n, c in state.registry.business_calendars.items()],
        weekdays=["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
        days=site_settings.DAYS,
        sample=sample, applied=applied, error=error, query=request.args.get("incident", ""),
        missing_default=sla.missing_default_policy(state),
        without_sla=sla.runs_without_sla(state), pickers=sla.policy_pickers(state),
        sample_by_choice=sample_by_choice,
        business=business if editable_calendar else None,
        holidays=sorted(str(h) for h in site_settings.holiday_list(state)),
        targets=(response, resolution) if editable_targets else None,
        locked={name: site_settings.locked_by(state, name) for name in site_settings.SLA_KEYS},
        errors=errors or {}, form=form,
        history=site_settings.changes(("business_hours.", "sla_priority."), 20),
        can_change=current_user.is_admin,
    ), status


SLA_DEFAULTS = {"response": {"p1": "15m", "p2": "30m", "p3": "4h", "p4": "1bd"},
                "resolution": {"p1": "4h", "p2": "8h", "p3": "3bd", "p4": "10bd"}}


@bp.get("/sla")
@access(LEAD)
def sla_overview() -> Any:
    """Policies, calendars, which policy applies to a sample incident, and (for admins) the
    forms to change the business calendar and the targets by priority."""
    return _sla_view()


def _save_settings(changes: dict[str, Any], errors: dict[str, str]) -> dict[str, str]:
    """Save after the form's own checks; the plugins' refusals come back as field errors."""
    from helpdesk import site_settings
    from helpdesk.web import context

    if errors:
        return errors
    try:
        changed = site_settings.save(context(), changes, current_user)
    except site_settings.Invalid as refused:
        return refused.errors
    flash("Saved: " + ", ".join(changed) + "." if changed else "Nothing changed.")
    return {}


@bp.post("/sla/calendar")
@access(LEAD)
def sla_calendar() -> Any:
    """Working hours per weekday, the calendar's time zone and its holidays (the ``business``
    calendar of the business_hours plugin). Changes apply to new computations at once.
    Admins only: a lead is refused (403) naming the rule, before the form is read."""
    from helpdesk import site_settings
    from helpdesk.web import context

    site_settings.check_may_change(current_user)
    state = context()
    errors: dict[str, str] = {}
    changes: dict[str, Any] = {}
    form = request.form
    if "time_zone" in form:
        try:
            changes["business_hours.time_zone"] = site_settings.parse_zone(form["time_zone"].strip())
        except ValueError as error:
            errors["business_hours.time_zone"] = f"Expected {error}."
    if any(f"open-{day}" in form for day in site_settings.DAYS):
        hours = {}
        for day in site_settings.DAYS:
            if form.get(f"works-{day}") != "on":
                continue
            try:
                hours[day] = site_settings.parse_window(form.get(f"open-{day}", ""),
                                                        form.get(f"close-{day}", ""))
            except ValueError as error:
                errors[f"hours-{day}"] = f"Expected {error}."
        if not hours and not errors:
            errors["business_hours.hours"] = "At least one working day is needed."
        changes["business_hours.hours"] = hours
    if "holidays-present" in form:
        holidays = {str(h) for h in site_settings.holiday_list(state)} - set(form.getlist("remove_holiday"))
        added = (form.get("add_holiday") or "").strip()
        if added:
            try:
                holidays.add(dt.date.fromisoformat(added).isoformat())
            except ValueError:
                errors["business_hours.holidays"] = "Expected a date such as 2026-12-25."
        changes["business_hours.holidays"] = sorted(holidays)
    errors = _save_settings(changes, errors)
    if errors:
        return _sla_view(errors, form, 422)
    return redirect(url_for("admin.sla_overview"), code=303)


@bp.post("/sla/targets")
@access(LEAD)
def sla_targets() -> Any:
    """Response and resolution targets per priority (the built-in ``priority`` policy). New
    incidents get them; a running clock is re-targeted only when its incident's priority
    or policy changes. Admins only, as the calendar."""
    from helpdesk import site_settings

    site_settings.check_may_change(current_user)
    errors: dict[str, str] = {}
    changes: dict[str, Any] = {}
    for target in ("response", "resolution"):
        name = f"sla_priority.{target}"
        if not any(f"{target}-{p}" in request.form for p in site_settings.PRIORITY_KEYS):
            continue
        table = {}
        for p in site_settings.PRIORITY_KEYS:
            try:
                table[p] = site_settings.parse_duration(request.form.get(f"{target}-{p}", ""))
            except ValueError as error:
                errors[f"{target}-{p}"] = f"Expected {error}."
        changes[name] = table
    errors = _save_settings(changes, errors)
    if errors:
        return _sla_view(errors, request.form, 422)
    return redirect(url_for("admin.sla_overview"), code=303)


# -- mail and channel settings (admins only: secrets, and where messages go) --------------------


def _channels_view(errors: dict[str, str] | None = None, form: Any = None, status: int = 200) -> Any:
    from helpdesk import site_settings
    from helpdesk.web import context

    state = context()
    sections = []
    for channel, fields in site_settings.CHANNEL_FIELDS.items():
        rows = []
        for spec in fields:
            value = site_settings.effective(state, spec.name)
            if spec.secret:
                shown = ""
            elif isinstance(value, list | tuple):
                shown = "\n".join(str(v) for v in value)
            else:
                shown = "" if value is None else str(value)
            rows.append({"field": spec, "value": shown, "locked": site_settings.locked_by(state, spec.name),
                         "is_set": value is not None and value != ""})
        urls = state.plugin_settings("webhook").list("urls") if channel == "webhook" else [""]
        sections.append({"name": channel, "title": site_settings.CHANNEL_TITLES[channel], "rows": rows,
                         "registered": channel in state.registry.channel_types,
                         "recipient": current_user.email if channel == "email" else (urls or [""])[0]})
    return render_template("admin/channels.html", sections=sections, errors=errors or {}, form=form,
                           history=site_settings.changes(tuple(f"{c}." for c in site_settings.CHANNEL_FIELDS),
                                                         30)), status


@bp.get("/channels")
@access(ADMIN)  # where every message goes (a lead could read customers' sign-in links otherwise)
def channels() -> Any:
    """Mail and channel settings; secrets are never shown; a test button per channel."""
    return _channels_view()


@bp.post("/channels/<name>")
@access(ADMIN)
def save_channel(name: str) -> Any:
    """Save one channel's settings, checked as at start-up. An empty secret keeps the stored
    one; "forget" removes it. An empty field goes back to the default."""
    from helpdesk import site_settings

    fields = site_settings.CHANNEL_FIELDS.get(name) or abort(404)
    errors: dict[str, str] = {}
    changes: dict[str, Any] = {}
    for spec in fields:
        if spec.name not in request.form and f"{spec.name}.forget" not in request.form:
            continue  # not sent: a locked (disabled) field, left as it is
        text = (request.form.get(spec.name) or "").strip()
        if spec.secret:
            if request.form.get(f"{spec.name}.forget") == "on":
                changes[spec.name] = None
            elif text:
                changes[spec.name] = text
            continue  # empty: keep the stored secret
        if not text:
            changes[spec.name] = None
            continue
        if spec.choices and text not in spec.choices:
            errors[spec.name] = f"Choose one of {', '.join(spec.choices)}."
            continue
        try:
            changes[spec.name] = spec.parse(text) if spec.parse else text
        except ValueError as error:
            errors[spec.name] = f"Expected {error}."
    errors = _save_settings(changes, errors)
    if errors:
        return _channels_view(errors, request.form, 422)
    return redirect(url_for("admin.channels") + f"#channel-{name}", code=303)


@bp.get("/changes")
@access(ADMIN)
def config_changes() -> Any:
    """The configuration audit trail: who changed which setting, team or contact, when."""
    from helpdesk import site_settings

    return render_template("admin/changes.html", history=site_settings.changes(limit=200))
