"""Refer and request on the incident page (hand back, accept, reject) and a team's on-call
agent (its leads and admins set it). Every change goes through the domain
(:mod:`helpdesk.incidents.handback`, :mod:`helpdesk.people`); these views only parse forms."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from helpdesk import incidents as domain
from helpdesk import people
from helpdesk.errors import DomainError
from helpdesk.incidents import handback
from helpdesk.models import Agent, Incident, Membership, Team, TeamOnCall
from helpdesk.security import AGENT, LEAD, access
from helpdesk.web import context
from helpdesk.web.forms import optional_id, parse_id

bp = Blueprint("handback", __name__)


@bp.app_template_global()
def handback_view(incident: Incident) -> dict[str, Any]:
    """What the incident page shows: the pending request with Accept/Reject for those who may
    decide, or the hand-back form for the assigned team's agents under refer mode."""
    waiting = handback.pending(incident.id) if incident.is_active else None
    offer = waiting is None and handback.can_hand_back(incident, current_user)
    teams = [team for team in Team.select().where(Team.active == True).order_by(Team.name)  # noqa: E712
             if team.id != incident.assigned_team_id] if offer else []
    return {"pending": waiting, "offer": offer, "teams": teams,
            "can_decide": waiting is not None and handback.can_decide(incident, current_user)}


def _respond(incident_id: int, change: Any, done: str, focus: str = "assignee-heading") -> Any:
    from helpdesk.web.incidents import _respond as respond

    return respond(incident_id, change, done, focus)


@bp.post("/incidents/<int:incident_id>/hand-back")
@access(AGENT)
def hand_back(incident_id: int) -> Any:
    return _respond(incident_id, lambda: handback.hand_back(
        context(), incident_id, current_user, request.form.get("request", ""),
        optional_id("suggested_team", Team)), "Handed back to the owner with your request.",
        "handback-heading")


@bp.post("/incidents/<int:incident_id>/hand-back/accept")
@access(AGENT)
def accept(incident_id: int) -> Any:
    def change() -> Any:
        team = None
        if request.form.get("to") == "owner":
            team = domain.get(incident_id).owner_team
        return handback.accept(context(), incident_id, current_user, team)

    return _respond(incident_id, change, "Hand-back accepted.")


@bp.post("/incidents/<int:incident_id>/hand-back/reject")
@access(AGENT)
def reject(incident_id: int) -> Any:
    return _respond(incident_id, lambda: handback.reject(
        context(), incident_id, current_user, request.form.get("reason", "")),
        "Hand-back rejected; it stays with the specialist team.")


# -- on call ----------------------------------------------------------------------------------------


def _until(text: str) -> dt.datetime | None:
    """A local date and time from the form (the agent's zone, else the instance's) as naive UTC."""
    if not text.strip():
        return None
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise people.FieldErrors({"until": "Give the end as YYYY-MM-DD HH:MM."}) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(current_user.time_zone or context().settings.time_zone))
    if not 1970 <= moment.year <= 9000:  # year 1 or 9999 overflowed on the way to UTC (a 500)
        raise people.FieldErrors({"until": "Give an end between the years 1970 and 9000."})
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def on_call_members(team: Team) -> list[Agent]:
    return list(Agent.select().join(Membership).where((Membership.team == team) & (Agent.active == True))  # noqa: E712
                .order_by(Agent.display_name))


@bp.route("/teams/<int:team_id>/on-call", methods=["GET", "POST"])
@access(LEAD)
def on_call(team_id: int) -> Any:
    """A team's on-call agent: its leads and admins set or clear it (admins also on the admin
    team page, whose form posts here)."""
    team = Team.get_or_none(Team.id == team_id) or abort(404)
    if not people.can_set_on_call(current_user, team):
        abort(404)
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        chosen = parse_id(request.form.get("on_call"))
        agent = Agent.get_or_none(Agent.id == chosen) if chosen is not None else None
        if request.form.get("on_call") and agent is None:
            errors, status = {"on_call": "Choose a member of the team."}, 422
        else:
            try:
                changed = people.set_on_call(team, agent, actor=current_user,
                                             until=_until(request.form.get("until", "")))
            except people.FieldErrors as refused:
                errors, status = refused.errors, 422
            except DomainError as refused:
                errors, status = {"on_call": str(refused)}, refused.status
            else:
                flash((f"{agent} is on call for {team.name} now." if agent else
                       f"Nobody is on call for {team.name} now.") if changed else "Nothing changed.")
                back = request.form.get("back")
                if back == "admin" and current_user.is_admin:
                    return redirect(url_for("admin.team", team_id=team.id), code=303)
                return redirect(url_for("handback.on_call", team_id=team.id), code=303)
    return render_template("teams/on_call.html", team=team, members=on_call_members(team),
                           current=people.on_call(team), row=TeamOnCall.get_or_none(TeamOnCall.team == team),
                           errors=errors,
                           form=request.form if request.method == "POST" else None), status


@bp.get("/teams/on-call")
@access(LEAD)
def my_teams() -> Any:
    """The teams whose on-call agent I may set (a lead: my teams; an admin: all)."""
    teams = [team for team in Team.select().order_by(Team.name) if people.can_set_on_call(current_user, team)]
    return render_template("teams/on_call_list.html", teams=[(team, people.on_call(team)) for team in teams])
