"""Canned replies (macros): managing them (mine, and my teams' for leads), filling the reply
box with one, and sending a reply with a macro's actions as one change.

Every change goes through :mod:`helpdesk.macros`. Sending answers three ways: the macro
script (``static/macros.js``) asks for JSON, htmx gets a redirect or the refusal in the reply
box (``#macro-result``), and a plain form post gets a redirect or a page that keeps what the
agent typed.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, flash, jsonify, make_response, redirect, request, url_for
from flask_login import current_user
from markupsafe import escape
from peewee import fn

from helpdesk import macros
from helpdesk.errors import DomainError, StaleVersion
from helpdesk.models import PRIORITIES, Agent, Macro, Team, TimelineEntry
from helpdesk.rendering import render_page
from helpdesk.security import AGENT, access
from helpdesk.web import context
from helpdesk.web.forms import parse_id
from helpdesk.web.incidents import uploaded_files

bp = Blueprint("macros", __name__)


@bp.app_template_global()
def reply_macros() -> list[tuple[Macro, list[str]]]:
    """The macros the signed-in agent may apply, with what each does, for the reply box."""
    if not current_user.is_authenticated:
        return []
    ctx = context()
    return [(macro, macros.describe(ctx, macro)) for macro in macros.visible_list(current_user)]


def _actions() -> list[Any]:
    registry = context().registry.macro_actions
    builtin = [name for name in ("status", "priority", "assign") if name in registry]
    return [registry[name] for name in builtin + sorted(set(registry) - set(builtin))]


def _options(param: Any) -> list[tuple[str, str]] | None:
    """The choices a parameter's select offers, or None for a text field."""
    if param.kind == "choice":
        return [(c, c.replace("_", " ").capitalize()) for c in param.choices]
    if param.kind == "priority":
        return [(str(p), label) for p, label in PRIORITIES.items()]  # the label names it: "P1 Critical"
    if param.kind == "team":
        return [(t.name, t.name) for t in Team.select().order_by(Team.name)]
    if param.kind == "agent":
        agents = Agent.select().where(Agent.active == True).order_by(Agent.display_name)  # noqa: E712
        return [("me", "Me (whoever sends it)")] + [(a.username, f"{a.display_name} ({a.username})")
                                                    for a in agents]
    return None


def _typed_actions() -> dict[str, dict[str, str]]:
    chosen = {}
    for kind in _actions():
        if request.form.get(f"action-{kind.name}"):
            chosen[kind.name] = {p.name: request.form.get(f"action-{kind.name}-{p.name}", "")
                                 for p in kind.params}
    return chosen


def _form(macro: Macro | None, *, errors: dict[str, str] | None = None, status: int = 200) -> Any:
    if macro is not None and not request.form:
        stored = {item["action"]: item.get("params") or {} for item in macros.actions_of(macro)}
        values = {"name": macro.name, "body": macro.body, "public": macro.public,
                  "team": str(macro.team_id or ""),
                  "actions": {name: {k: str(v) for k, v in params.items()}
                              for name, params in stored.items()}}
    elif request.form:
        values = {"name": request.form.get("name", ""), "body": request.form.get("body", ""),
                  "public": request.form.get("visibility") == "public",
                  "team": request.form.get("team", ""), "actions": _typed_actions()}
    else:
        values = {"name": "", "body": "", "public": False, "team": request.args.get("team", ""),
                  "actions": {}}
    html = render_page("macros/edit.html", {"macro_form"}, macro=macro, values=values,
                       errors=errors or {}, actions=_actions(), options=_options,
                       teams=macros.lead_teams(current_user), placeholders=macros.PLACEHOLDERS,
                       status_needs=macros.STATUS_NEEDS)
    return html, status


@bp.get("/macros/")
@access(AGENT)
def index() -> Any:
    ctx = context()
    mine = [(m, macros.describe(ctx, m), True) for m in macros.visible(current_user) if m.agent_id]
    teams = macros.lead_teams(current_user)
    shared = [(m, macros.describe(ctx, m), macros.can_edit(current_user, m))
              for m in macros.visible(current_user) if m.team_id]
    if current_user.is_admin:  # admins manage every team's macros, member or not
        seen = {m.id for m, _, _ in shared}
        shared += [(m, macros.describe(ctx, m), True) for m in Macro.select().where(
            Macro.team.is_null(False)).order_by(Macro.name) if m.id not in seen]
    return render_page("macros/index.html", set(), mine=mine, shared=shared, lead_teams=teams)


@bp.route("/macros/new", methods=["GET", "POST"])
@access(AGENT)
def create() -> Any:
    return _save(None)


@bp.route("/macros/<int:macro_id>", methods=["GET", "POST"])
@access(AGENT)
def edit(macro_id: int) -> Any:
    return _save(macros.editable(current_user, macro_id))


def _save(macro: Macro | None) -> Any:
    if request.method == "GET":
        return _form(macro)
    team = None
    raw_team = request.form.get("team", "")
    if raw_team:
        team = Team.get_or_none(Team.id == parse_id(raw_team)) if parse_id(raw_team) else None
        if team is None:
            return _form(macro, errors={"team": "Choose a team from the list."}, status=422)
    try:
        saved = macros.save(context(), current_user, macro, name=request.form.get("name", ""),
                            body=request.form.get("body", ""),
                            public=request.form.get("visibility") == "public", team=team,
                            actions=_typed_actions())
    except macros.MacroInvalid as invalid:
        return _form(macro, errors=invalid.errors, status=422)
    flash(f"Macro “{saved.name}” saved.")
    return redirect(url_for("macros.index"), code=303)


@bp.post("/macros/<int:macro_id>/delete")
@access(AGENT)
def remove(macro_id: int) -> Any:
    name = macros.editable(current_user, macro_id).name
    macros.delete(current_user, macro_id)
    flash(f"Macro “{name}” deleted.")
    return redirect(url_for("macros.index"), code=303)


@bp.get("/incidents/<int:incident_id>/macros/<int:macro_id>")
@access(AGENT)
def text(incident_id: int, macro_id: int) -> Any:
    """The macro's reply for this incident (placeholders filled), for the reply box."""
    from helpdesk import incidents

    incident = incidents.get(incident_id)
    macro = macros.get_visible(current_user, macro_id)
    return jsonify(body=macros.expand(macro.body, incident, current_user), public=macro.public,
                   does=macros.describe(context(), macro), name=macro.name)


def _wants_json() -> bool:
    return request.headers.get("Accept", "").startswith("application/json")


@bp.post("/incidents/<int:incident_id>/macro")
@access(AGENT)
def apply(incident_id: int) -> Any:
    """Send the reply and the chosen macro's actions as one change."""

    macro_id = parse_id(request.form.get("macro"))
    typed = request.form.get("body") or ""
    raw_version = request.form.get("macro_version") or request.form.get("version") or ""
    version = parse_id(raw_version)
    try:
        if macro_id is None:
            raise DomainError("Choose a macro to send with.")
        incident = macros.apply(
            context(), incident_id, current_user, macro_id, typed if typed.strip() else None,
            public=(request.form.get("visibility") == "public") if typed.strip() else None,
            expected_version=version, files=uploaded_files(), seen=parse_id(request.form.get("seen")))
    except DomainError as refused:
        if refused.status == 404:
            raise
        if isinstance(refused, StaleVersion):  # say what changed; a second send is on the fresh state
            return _refused(incident_id, macro_id, typed, f"{refused} Check the incident, then send "
                            "again: it will be applied to the version you now see.", 409,
                            version=refused.incident.version, seen=_newest_entry(incident_id))
        return _refused(incident_id, macro_id, typed, str(refused), refused.status)
    done = f"Sent with the macro; {incident.reference} is now version {incident.version}."
    page = url_for("incidents.show", incident_id=incident_id)
    if _wants_json():
        flash(done)
        return jsonify(ok=True, url=page, version=incident.version)
    flash(done)
    if request.headers.get("HX-Request"):
        response = make_response("", 204)
        response.headers["HX-Redirect"] = page
        return response
    return redirect(page, code=303)


def _newest_entry(incident_id: int) -> int | None:
    return (TimelineEntry.select(fn.MAX(TimelineEntry.id))
            .where(TimelineEntry.incident == incident_id).scalar())


def _refused(incident_id: int, macro_id: int | None, typed: str, message: str, status: int,
             version: int | None = None, seen: int | None = None) -> Any:
    """Nothing was written: say why, and keep what the agent typed (``version`` and ``seen``:
    the incident's current version and newest entry, after a race, for the page's next send:
    the agent has been told what moved)."""
    from helpdesk import incidents

    if _wants_json():
        fresh = {key: value for key, value in (("version", version), ("seen", seen)) if value is not None}
        return jsonify(ok=False, error=message, **fresh), status
    if request.headers.get("HX-Request"):
        response: Response = make_response(f'<p class="error">{escape(message)}</p>', status)
        response.headers["HX-Retarget"] = "#macro-result"
        response.headers["HX-Reswap"] = "innerHTML"
        return response
    incident = incidents.get(incident_id)
    macro = macros.visible(current_user).where(Macro.id == macro_id).first() if macro_id else None
    if macro_id is not None and macro is None:
        abort(404)
    # With nothing typed the macro's own text goes, as the macro says (a reply or a note):
    # the page shows that, not the radio the agent never needed to touch.
    public = macro.public if macro is not None and not typed.strip() else (
        request.form.get("visibility") == "public")
    html = render_page("macros/refused.html", set(), incident=incident, error=message, typed=typed,
                       macro_id=macro_id, public=public)
    return html, status

