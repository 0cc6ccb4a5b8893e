"""The New incident page: live priority preview, requester search with a new contact inline,
the agent list of the chosen team, and the requester's open incidents as a duplicate hint.

Each live part is an htmx GET answering a fragment of the same templates the full page uses,
so without JavaScript the form still works: "Search" re-renders the page with the matches and
everything typed, and the server checks every choice again when the incident is logged. The
views are mounted on the incidents blueprint (endpoints ``incidents.new`` …) by :func:`install`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from helpdesk import incidents as domain
from helpdesk import requesters
from helpdesk.errors import DomainError
from helpdesk.models import (
    LEVELS,
    PRIORITIES,
    TYPES,
    Agent,
    Category,
    Contact,
    Membership,
    Service,
    Team,
)
from helpdesk.rendering import render_page
from helpdesk.security import AGENT, access
from helpdesk.web import context
from helpdesk.web.forms import choices, parse_id


class NewIncidentForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired("A title is required."),
                                             Length(max=domain.MAX_TITLE)])
    description = TextAreaField("Description (Markdown)")
    # Choices are checked by the domain (one place for the rules); these only carry input.
    type = StringField("Type", default="incident")
    impact = StringField("Impact", default="medium")
    urgency = StringField("Urgency", default="medium")
    category = StringField("Category")
    service = StringField("Affected service")
    requester = StringField("Requester")
    requester_query = StringField("Find a contact")
    new_contact_name = StringField("New contact's name")
    new_contact_email = StringField("New contact's e-mail")
    assigned_team = StringField("Assigned team")
    assigned_agent = StringField("Assigned agent")
    keep_ownership = BooleanField("I own this incident", default=True)


def _lookup(form: NewIncidentForm, name: str, model: Any) -> Any:
    raw = getattr(form, name).data
    if not raw:
        return None
    record_id = parse_id(raw)
    record = model.get_or_none(model.id == record_id) if record_id is not None else None
    if record is None:
        getattr(form, name).errors = [f"Choose an existing {getattr(form, name).label.text.lower()}."]
    return record


def preview(impact: str | None, urgency: str | None) -> str:
    """The priority an incident with this impact and urgency gets, through the domain's rule."""
    if impact not in LEVELS or urgency not in LEVELS:
        return "Choose impact and urgency."
    return PRIORITIES[domain.derive_priority(context(), impact, urgency)]


def team_members(team_id: int | None) -> list[Agent]:
    if team_id is None:
        return []
    return list(Agent.select().join(Membership).where((Membership.team == team_id)
                                                     & (Agent.active == True))  # noqa: E712
                .order_by(Agent.display_name))


def _chosen(raw: Any) -> Contact | None:
    record_id = parse_id(raw)
    return Contact.get_or_none(Contact.id == record_id) if record_id is not None else None


class Matches(list):
    """The contacts to offer: those ``found`` for the query (``more``: there are more than
    shown, type more to narrow), and the chosen one whatever was typed."""

    found: int = 0
    more: bool = False


def requester_matches(query: str, chosen: Contact | None) -> Matches:
    """Contacts matching ``query`` (name or address), the chosen one always among them."""
    found = requesters.search(query, requesters.MAX_MATCHES + 1)
    matches = Matches(found[:requesters.MAX_MATCHES])
    matches.found, matches.more = len(matches), len(found) > requesters.MAX_MATCHES
    if chosen is not None and chosen.id not in {c.id for c in matches}:
        matches.insert(0, chosen)  # the chosen requester stays on the list whatever is typed
    return matches


def _page(form: NewIncidentForm, error: str | None, status: int) -> Any:
    chosen = _chosen(form.requester.data)
    team_id = parse_id(form.assigned_team.data)
    listing = choices()
    return render_page(
        "incident_new.html", {"incident_form"}, form=form, error=error, types=TYPES, levels=LEVELS,
        priority_preview=preview(form.impact.data, form.urgency.data),
        matches=requester_matches(form.requester_query.data or "", chosen),
        query=form.requester_query.data or "",
        chosen=chosen, open_incidents=requesters.open_incidents(chosen.id) if chosen else [],
        team_agents=team_members(team_id) if team_id else None, **listing,
    ), status


def new() -> Any:
    # A GET may prefill the form (e.g. /incidents/new?requester=5 from a contact's page).
    form = NewIncidentForm(request.args) if request.method == "GET" and request.args else NewIncidentForm()
    error = None
    searching = request.method == "POST" and "find_requester" in request.form
    if searching:
        form.validate()  # only to fill the fields back in; nothing is logged while searching
        form.title.errors = []
        return _page(form, None, 200)
    if form.validate_on_submit():
        related = {name: _lookup(form, name, model) for name, model in (
            ("category", Category), ("service", Service), ("requester", Contact),
            ("assigned_team", Team), ("assigned_agent", Agent))}
        new_contact = bool((form.new_contact_name.data or "").strip()
                           or (form.new_contact_email.data or "").strip())
        if new_contact and related["requester"] is not None:
            form.new_contact_name.errors = ["Choose an existing requester or a new contact, not both."]
        if not any(getattr(form, name).errors for name in [*related, "new_contact_name"]):
            values = dict(
                actor=current_user, title=form.title.data, description=form.description.data,
                type=form.type.data, impact=form.impact.data, urgency=form.urgency.data,
                keep_ownership=form.keep_ownership.data, **related)
            try:
                if new_contact:
                    values.pop("requester")
                    incident = requesters.log_for_new_contact(
                        context(), name=form.new_contact_name.data or "",
                        email=form.new_contact_email.data or "", **values)
                else:
                    incident = domain.log_incident(context(), **values)
            except requesters.ContactInvalid as invalid:
                for field, message in invalid.errors.items():
                    getattr(form, field).errors = [message]
            except DomainError as refused:
                error = str(refused)
            else:
                flash(f"{incident.reference} logged.")
                return redirect(url_for("incidents.show", incident_id=incident.id), code=303)
    status = 422 if request.method == "POST" else 200
    return _page(form, error, status)


def priority_preview() -> Any:
    return preview(request.args.get("impact"), request.args.get("urgency"))


#: Where the requester search is on a page: the New incident page (with the hint of the chosen
#: requester's open incidents), or the incident page's Edit details form (``d-``, no hint).
REQUESTER_BOXES = {"": True, "d-": False}


def find_requester() -> Any:
    chosen = _chosen(request.args.get("requester"))
    query = request.args.get("requester_query", "")
    prefix = request.args.get("prefix", "")
    if prefix not in REQUESTER_BOXES:
        abort(400, "Unknown requester box.")
    return render_template("intake/requester_matches.html", matches=requester_matches(query, chosen),
                           chosen=chosen, query=query, prefix=prefix, hint=REQUESTER_BOXES[prefix])


def requester_incidents() -> Any:
    chosen = _chosen(request.args.get("requester"))
    return render_template("intake/duplicate_hint.html", chosen=chosen,
                           open_incidents=requesters.open_incidents(chosen.id) if chosen else [])


def team_agents() -> Any:
    team_id = parse_id(request.args.get("assigned_team"))
    listing = choices()
    return render_template("intake/assigned_agent.html",
                           team_agents=team_members(team_id) if team_id else None,
                           current=request.args.get("assigned_agent", ""), errors=[], **listing)


def install(bp: Blueprint) -> None:
    """Mount the New incident page and its live parts on the incidents blueprint."""
    bp.add_url_rule("/new", "new", access(AGENT)(new), methods=["GET", "POST"])
    bp.add_url_rule("/new/priority", "priority_preview", access(AGENT)(priority_preview))
    bp.add_url_rule("/new/requesters", "find_requester", access(AGENT)(find_requester))
    bp.add_url_rule("/new/open-incidents", "requester_incidents", access(AGENT)(requester_incidents))
    bp.add_url_rule("/new/agents", "team_agents", access(AGENT)(team_agents))
