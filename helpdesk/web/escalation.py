"""Escalation on the incident page (acknowledge, snooze, escalate by hand) and the policy pages
(edit as TOML, import, export, the simulator). Admins manage every policy; a team lead sees
them all but changes only their own teams' (see :mod:`helpdesk.escalation.policies`).

Every change goes through :mod:`helpdesk.escalation`; these views only parse forms.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from helpdesk.clock import now
from helpdesk.db import Statement
from helpdesk.errors import DomainError
from helpdesk.escalation import engine, policies
from helpdesk.escalation.api import watchers
from helpdesk.escalation.simulate import simulate
from helpdesk.models import (
    PRIORITIES,
    TYPES,
    Agent,
    EscalationPolicy,
    EscalationRun,
    EscalationState,
    Incident,
    Organisation,
    Service,
    Team,
)
from helpdesk.security import AGENT, LEAD, access
from helpdesk.web import context, escalation_form
from helpdesk.web.forms import parse_id

bp = Blueprint("escalation", __name__)
SNOOZES = {0: "No snooze", 30: "30 minutes", 60: "1 hour", 120: "2 hours", 240: "4 hours",
           480: "8 hours", 1440: "1 day"}


@bp.app_template_global()
def step_titles(names: Any) -> str:
    """The titles of registered steps (a name stays as it is when its plugin is gone)."""
    registered = context().registry.escalation_steps
    return ", ".join(registered[n].title if n in registered else n for n in names)


# The incident page's panel reads these on every view: compiled once.
_STATE = Statement(lambda incident_id: EscalationState.select()
                   .where(EscalationState.incident == incident_id), models=(EscalationState,))
_PROBLEMS = Statement(lambda incident_id: EscalationRun.select().where(
    (EscalationRun.incident == incident_id) & EscalationRun.state.in_(["retrying", "failed"]))
    .order_by(EscalationRun.id), models=(EscalationRun,))


@bp.app_template_global()
def escalation_view(incident: Incident) -> dict[str, Any]:
    """What the incident page shows: the level, the policy and version that escalated it, an
    acknowledgement or snooze, the next level and when, failed steps, watchers."""
    state = next((found for (found,) in _STATE.rows(incident.id)), None)
    policy = None
    if state is not None and state.policy_id is not None and state.level > 0:
        policy = EscalationPolicy.get_or_none(EscalationPolicy.id == state.policy_id)
    policy = policy or engine.applicable(incident)
    upcoming = None
    if policy is not None and incident.is_active:
        upcoming = engine.next_level(context(), incident, state or EscalationState(incident=incident.id),
                                     policies.definition_of(policy), engine.clocks_of(incident.id))
    problems = [run for (run,) in _PROBLEMS.rows(incident.id)]
    return {"state": state, "policy": policy, "upcoming": upcoming, "problems": problems,
            "watchers": watchers(incident.id), "snoozes": SNOOZES,
            "snoozed": state is not None and state.snoozed_until is not None and state.snoozed_until > now(),
            "can_acknowledge": engine.can_acknowledge(incident, current_user)}


def _respond(incident_id: int, change: Any, done: str) -> Any:
    from helpdesk.web.incidents import _respond as respond

    return respond(incident_id, change, done)


@bp.post("/incidents/<int:incident_id>/escalate")
@access(AGENT)
def escalate(incident_id: int) -> Any:
    return _respond(incident_id, lambda: engine.escalate(context(), incident_id, current_user,
                                                         request.form.get("reason", "")),
                    "Escalated to the next level.")


@bp.post("/incidents/<int:incident_id>/acknowledge")
@access(AGENT)
def acknowledge(incident_id: int) -> Any:
    raw = request.form.get("snooze", "0")
    if raw not in {str(m) for m in SNOOZES}:
        abort(422, "Choose a snooze from the list.")
    minutes = int(raw)
    return _respond(incident_id, lambda: engine.acknowledge(
        context(), incident_id, current_user, request.form.get("reason", ""),
        dt.timedelta(minutes=minutes) if minutes else None), "Escalation acknowledged.")


# -- policies ------------------------------------------------------------------------------------------


def _steps() -> list[Any]:
    return sorted(context().registry.escalation_steps.values(), key=lambda s: s.name)


@bp.get("/escalation")
@access(LEAD)
def policy_list() -> Any:
    rows = list(EscalationPolicy.select().order_by(EscalationPolicy.position, EscalationPolicy.name))
    problems = list(EscalationRun.select().where(EscalationRun.state.in_(["retrying", "failed"]))
                    .order_by(EscalationRun.id.desc()).limit(100))
    changeable = policies.changeable(current_user, rows)
    return render_template("escalation/policies.html", policies=rows, problems=problems, steps=_steps(),
                           definition_of=policies.definition_of, describe=policies.describe_trigger,
                           changeable=changeable)


NEW_POLICY = """name = "standard"
title = "Standard escalation"
enabled = true
position = 0

[conditions]
priority = [1, 2]

[[levels]]
title = "Owner reviews"
trigger = "fraction"
target = "resolution"
fraction = 0.75
[[levels.steps]]
step = "notify_owner"
"""


def _new_policy(actor: Any) -> str:
    """The New policy draft: a team lead's names the teams they lead (a policy without a team
    condition is organisation-wide, which only admins save)."""
    teams = [] if actor.is_admin else policies.led_teams(actor)
    if not teams:
        return NEW_POLICY
    return NEW_POLICY.replace("priority = [1, 2]\n",
                              f"priority = [1, 2]\nteam = {policies.toml_value(teams)}\n")


TRIGGER_LABELS = {"fraction": "A share of the SLA target used", "before_due": "Minutes before the due time",
                  "breach": "At the breach", "after_breach": "Minutes after the breach",
                  "manual": "Only by hand (Escalate now)"}


def _param_options(param: Any) -> list[tuple[str, str]] | None:
    """The choices a step parameter's field offers, or None for a text field."""
    if param.kind == "choice":
        return [(c, c) for c in param.choices]
    if param.kind == "team":
        return [(t.name, t.name) for t in Team.select().order_by(Team.name)]
    if param.kind in {"agent", "agents"}:
        return [(a.username, f"{a.display_name} ({a.username})")
                for a in Agent.select().where(Agent.active == True).order_by(Agent.display_name)]  # noqa: E712
    if param.kind == "priority":
        return [(str(k), v) for k, v in PRIORITIES.items()]
    if param.kind == "bool":
        return [("true", "Yes"), ("false", "No")]
    if param.kind == "channel":
        return [(name, name) for name in sorted(context().registry.channel_types)]
    return None


def _editor(policy: EscalationPolicy | None, draft: dict[str, Any], text: str, *, error: str | None = None,
            field: str | None = None, toml_open: bool = False, focus: str | None = None) -> str:
    catalogue = [
        ("priority", "Priority", [(str(k), v) for k, v in PRIORITIES.items()]),
        ("type", "Type", list(TYPES.items())),
        ("team", "Team (owning or assigned)", [(t.name, t.name) for t in Team.select().order_by(Team.name)]),
        ("service", "Service", [(s.name, s.name) for s in Service.select().order_by(Service.name)]),
        ("organisation", "Requester's organisation",
         [(o.name, o.name) for o in Organisation.select().order_by(Organisation.name)]),
    ]
    steps = _steps()
    return render_template("escalation/edit.html", policy=policy, draft=draft, text=text, error=error,
                           error_id=escalation_form.field_id(field) if field else None,
                           error_label=escalation_form.field_label(field) if field else None,
                           toml_open=toml_open, focus=focus, steps=steps,
                           steps_by_name={s.name: s for s in steps}, triggers=policies.TRIGGERS,
                           trigger_labels=TRIGGER_LABELS, catalogue=catalogue, param_options=_param_options)


def _refused(refused: DomainError) -> tuple[str, str | None]:
    """A refusal's message without its field prefix, and the field (None: not one field)."""
    if isinstance(refused, policies.PolicyError):
        return str(refused).removeprefix(f"{refused.field}: "), refused.field
    return str(refused), None


@bp.route("/escalation/edit", methods=["GET", "POST"])
@access(LEAD)
def edit() -> Any:
    """One page for a new policy and an edit: a structured form (levels, triggers, steps with
    their parameters), or the policy as TOML; both are checked by the same code on save."""
    name = request.args.get("name", "")
    policy = EscalationPolicy.get_or_none(EscalationPolicy.name == name) if name else None
    if name and policy is None:
        abort(404)
    if policy is not None and request.method == "GET":  # another team's policy (or an
        policies.check_may_edit(current_user, policy)  # organisation-wide one): 403 naming the
    # rule; a POST is refused by the save itself (403 too), keeping what was typed.
    draft_text = _new_policy(current_user)
    text = policies.to_toml(policy) if policy else draft_text
    stored = escalation_form.from_policy(policies.as_dict(policy) if policy
                                         else policies.from_toml(draft_text))
    if request.method == "GET":
        return _editor(policy, stored, text)
    version = request.form.get("version") or None
    expected = parse_id(version)
    if "level_count" not in request.form:  # the TOML form
        text = request.form.get("toml", "")
        try:
            raw = policies.from_toml(text)
            if policy is not None and raw.get("name") != policy.name:
                raise policies.PolicyError("name", "a policy's name cannot change; import it as a new one")
            saved = policies.save(context(), raw, current_user, expected_version=expected,
                                  new=policy is None)
        except DomainError as refused:
            return _editor(policy, stored, text, error=str(refused), toml_open=True), refused.status
        flash(f"Policy {saved.name} saved (version {saved.version}).")
        return redirect(url_for("escalation.policy_list"), code=303)
    draft = escalation_form.from_form(context(), request.form)
    action = request.form.get("action") or "save"
    handled, focus = escalation_form.apply_action(draft, action)
    if handled:
        return _editor(policy, draft, text, focus=focus)
    raw = escalation_form.to_raw(context(), draft)
    try:
        if policy is not None and raw.get("name") != policy.name:
            raise policies.PolicyError("name", "a policy's name cannot change; import it as a new one")
        if action == "simulate":
            checked = policies.validate(context(), raw)
            draft_toml = policies.dict_to_toml(policies.flatten(checked))
            return _simulator_page({"draft": draft_toml, "horizon": "72"}, [], None, 200)
        saved = policies.save(context(), raw, current_user, expected_version=expected,
                              new=policy is None)
    except DomainError as refused:
        message, field = _refused(refused)
        return _editor(policy, draft, text, error=message, field=field), refused.status
    flash(f"Policy {saved.name} saved (version {saved.version}).")
    return redirect(url_for("escalation.policy_list"), code=303)


@bp.post("/escalation/import")
@access(LEAD)
def import_policy() -> Any:
    upload = request.files.get("file")
    text = upload.read(200_000).decode("utf-8", "replace") if upload else request.form.get("toml", "")
    try:
        saved = policies.save(context(), policies.from_toml(text), current_user)
    except DomainError as refused:
        draft = escalation_form.from_policy(policies.from_toml(NEW_POLICY))
        return _editor(None, draft, text, error=str(refused), toml_open=True), refused.status
    flash(f"Policy {saved.name} imported (version {saved.version}).")
    return redirect(url_for("escalation.policy_list"), code=303)


@bp.get("/escalation/<name>.toml")
@access(LEAD)
def export(name: str) -> Any:
    policy = EscalationPolicy.get_or_none(EscalationPolicy.name == name)
    if policy is None:
        abort(404)
    return Response(policies.to_toml(policy), mimetype="text/plain",
                    headers={"Content-Disposition": f'attachment; filename="{policy.name}.toml"'})


@bp.post("/escalation/delete")
@access(LEAD)
def delete() -> Any:
    name = request.form.get("name", "")
    policies.delete(name, current_user)  # 404 for no such policy, 403 naming the rule
    flash(f"Policy {name} deleted; levels it ran stay on the incidents' timelines.")
    return redirect(url_for("escalation.policy_list"), code=303)


# -- the simulator ---------------------------------------------------------------------------------------


def _local(text: str) -> dt.datetime | None:
    """A local date and time from a form (the agent's zone, else the instance's) as naive UTC."""
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise DomainError("Give the time as YYYY-MM-DD HH:MM.") from None
    if moment.tzinfo is None:
        zone = ZoneInfo(current_user.time_zone or context().settings.time_zone)
        moment = moment.replace(tzinfo=zone)
    if not 1970 <= moment.year <= 9000:  # year 1 or 9999 overflowed on the way to UTC (a 500)
        raise DomainError("Give a time between the years 1970 and 9000.")
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


@bp.route("/escalation/simulate", methods=["GET", "POST"])
@access(LEAD)
def simulator() -> Any:
    form = request.form if request.method == "POST" else request.args
    results, error, status = [], None, 200
    if request.method == "POST":
        try:
            hours = parse_id(form.get("horizon") or "72")
            if hours is None or hours > 24 * 366:  # (a huge number overflowed the timedelta)
                raise DomainError("The horizon is from a minute to 90 days.")
            horizon = dt.timedelta(hours=hours)
            reference = (form.get("incident") or "").strip()
            kwargs: dict[str, Any] = {"horizon": horizon}
            if reference:
                incident_id = Incident.parse_reference(reference)
                if incident_id is None:
                    raise DomainError("Give an incident reference such as INC-42, or leave it empty.")
                kwargs["incident_id"] = incident_id
            else:
                priority = form.get("priority") or ""
                kwargs["hypothetical"] = {
                    "logged_at": _local(form.get("logged_at", "")) or now(),
                    "type": form.get("type") or "incident", "team": form.get("team") or None,
                    "service": form.get("service") or None,
                    "priority": parse_id(priority),
                    "impact": form.get("impact") or "medium", "urgency": form.get("urgency") or "medium"}
            results.append(("Live policies", simulate(context(), **kwargs)))
            draft = (form.get("draft") or "").strip()
            if draft:
                results.append(("With the draft policy", simulate(context(), **kwargs,
                                                                   draft=policies.from_toml(draft))))
        except (DomainError, ValueError) as refused:
            error, status = str(refused), 422
    return _simulator_page(form, results, error, status)


def _simulator_page(form: Any, results: list[Any], error: str | None, status: int) -> tuple[str, int]:
    return render_template("escalation/simulate.html", form=form, results=results, error=error,
                           priorities=PRIORITIES, types=TYPES, teams=list(Team.select().order_by(Team.name)),
                           services=list(Service.select().order_by(Service.name))), status
