"""Canned replies (macros): a reply with placeholders, public or an internal note, plus
actions (set status, priority, assignment, or a plugin's) sent as one change.

Who sees what: an agent sees and applies their own macros and those of their teams; a
personal macro is edited only by its agent, a team macro by a lead of that team or an
admin. A macro anyone else asks for does not exist for them (404).

Placeholders are a fixed ``{name}`` substitution (no expressions, no attribute access):
unknown ones are refused when a macro is saved and left as typed if one slips through, so
applying never fails on the text. ``{{`` and ``}}`` write literal braces.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import peewee

from helpdesk.clock import now
from helpdesk.context import Context
from helpdesk.db import Statement, write_transaction
from helpdesk.errors import DomainError, NotFound, PermissionDenied
from helpdesk.models import (
    PENDING_REASONS,
    PRIORITIES,
    RESOLUTION_CODES,
    Agent,
    Incident,
    Macro,
    Membership,
    Team,
)
from helpdesk.people import is_member
from helpdesk.records import MacroAction, StepParam

PLACEHOLDERS: dict[str, str] = {
    "requester_name": "the requester's name",
    "reference": "the incident's reference (INC-42)",
    "title": "the incident's title",
    "my_name": "your name",
    "owner_name": "the owning agent's name (or team)",
}
MAX_NAME = 100
MAX_BODY = 20000
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


class MacroInvalid(DomainError):
    """A macro that cannot be saved; ``errors`` maps each form field to what is wrong."""

    status = 422

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("The macro was not saved: " + " ".join(errors.values()))
        self.errors = errors


# -- placeholders -------------------------------------------------------------------------


def placeholder_errors(body: str) -> list[str]:
    """What is wrong with the placeholders of a reply text (empty: nothing)."""
    unknown = [m.group(1) for m in _TOKEN.finditer(body or "")
               if m.group(1) is not None and m.group(1).strip() not in PLACEHOLDERS]
    if not unknown:
        lone = next((c for c in _TOKEN.sub("", body or "") if c in "{}"), None)
        if lone:  # "Hi {requester_name" would be sent as typed
            return [f"A lone {lone} in the text: close the placeholder, or write {lone * 2} for a brace."]
        return []
    known = ", ".join("{" + name + "}" for name in PLACEHOLDERS)
    return [f"Unknown placeholder {{{unknown[0]}}}: use {known} (write {{{{ and }}}} for braces)."]


def placeholder_values(incident: Incident, actor: Agent) -> dict[str, str]:
    requester = incident.requester
    owner = incident.owner_agent or incident.owner_team
    return {
        "requester_name": requester.name if requester else "",
        "reference": incident.reference,
        "title": incident.title,
        "my_name": actor.display_name,
        "owner_name": getattr(owner, "display_name", None) or getattr(owner, "name", "") or "",
    }


def expand(body: str, incident: Incident, actor: Agent) -> str:
    """The reply text for this incident: known placeholders filled in, anything else as typed."""
    values = placeholder_values(incident, actor)

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in {"{{", "}}"}:
            return token[0]
        name = (match.group(1) or "").strip()
        return values[name] if name in values else token

    return _TOKEN.sub(one, body or "")


# -- who sees and edits what --------------------------------------------------------------


def team_ids(agent: Agent) -> list[int]:
    return [m.team_id for m in Membership.select(Membership.team).where(Membership.agent == agent.id)]


def visible(agent: Agent) -> Any:
    """The macros an agent may see and apply: their own, then their teams' (one query, with
    the team's name)."""
    return _visible(agent.id)


def _visible(agent_id: Any) -> Any:
    mine = Membership.select(Membership.team).where(Membership.agent == agent_id)
    return (Macro.select(Macro, Team).join(Team, peewee.JOIN.LEFT_OUTER, on=(Macro.team == Team.id))
            .where((Macro.agent == agent_id) | Macro.team.in_(mine))
            .order_by(Macro.team.is_null(False), Macro.name, Macro.id))


_VISIBLE = Statement(_visible, models=(Macro, Team))


def visible_list(agent: Agent) -> list[Macro]:
    """:func:`visible` as a list, from a statement compiled once (the reply box on every
    incident page)."""
    found = []
    for macro, team in _VISIBLE.rows(agent.id):
        macro.__rel__["team"] = team
        found.append(macro)
    return found


def get_visible(agent: Agent, macro_id: int) -> Macro:
    macro = visible(agent).where(Macro.id == macro_id).first()
    if macro is None:
        raise NotFound("There is no such macro.")
    return macro


def lead_teams(agent: Agent) -> list[Team]:
    """Teams whose macros the agent manages: all for an admin, their own teams for a lead."""
    if agent.is_admin:
        return list(Team.select().order_by(Team.name))
    if agent.role != "lead":
        return []
    return list(Team.select().where(Team.id.in_(team_ids(agent))).order_by(Team.name))


def can_edit(agent: Agent, macro: Macro) -> bool:
    if macro.agent_id is not None:
        return macro.agent_id == agent.id
    return agent.is_admin or (agent.role == "lead" and is_member(agent, macro.team_id))


def editable(agent: Agent, macro_id: int) -> Macro:
    """A macro the agent may change; one they may see but not change is refused (403)."""
    macro = Macro.get_or_none(Macro.id == macro_id)
    personal_of_another = macro is not None and macro.agent_id is not None and macro.agent_id != agent.id
    foreign_team = (macro is not None and macro.team_id is not None and not agent.is_admin
                    and not is_member(agent, macro.team_id))
    if macro is None or personal_of_another or foreign_team:
        raise NotFound("There is no such macro.")  # someone else's is not even there
    if not can_edit(agent, macro):
        raise PermissionDenied("Only a lead of the team or an admin can change a team macro.")
    return macro


# -- actions ------------------------------------------------------------------------------


def actions_of(macro: Macro) -> list[dict[str, Any]]:
    try:
        value = json.loads(macro.actions or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _label(value: str) -> str:
    return value.replace("_", " ").capitalize()


def check_param(ctx: Context, param: StepParam, raw: str, plugin: str = "") -> Any:
    """One action parameter as typed on the form, checked; ``ValueError`` says what is wrong
    (``plugin``: the action's, named when its own check fails)."""
    value = (raw or "").strip()
    if param.kind == "choice" and value not in param.choices:
        raise ValueError(f"choose one of {', '.join(_label(c) for c in param.choices)}")
    if param.kind in {"int", "priority"}:
        # ASCII digits, at most 9: "²" passes isdigit() but not int(), and 30 digits overflow a column
        if not (value.isascii() and value.isdigit() and len(value) <= 9):
            raise ValueError("a whole number (up to 9 digits)" if param.kind == "int" else "choose P1 to P4")
        number = int(value)
        if param.kind == "priority" and number not in PRIORITIES:
            raise ValueError("choose P1 to P4")
        value = number
    if param.kind == "team" and not Team.select().where(Team.name == value).exists():
        raise ValueError(f"there is no team named {value!r}")
    if param.kind == "agent" and value != "me" and not Agent.select().where(
            (Agent.username == value) & (Agent.active == True)).exists():  # noqa: E712
        raise ValueError(f"there is no active agent with user name {value!r}")
    if param.kind == "text" and len(value) > 2000:
        raise ValueError("at most 2000 characters")
    if param.check is not None:
        from helpdesk.plugins import run_check

        run_check(plugin or param.name, f"StepParam({param.name!r}).check", param.check, ctx, value)
    return value


def check_actions(ctx: Context, chosen: Mapping[str, Mapping[str, str]]) -> tuple[list[dict[str, Any]],
                                                                                   dict[str, str]]:
    """The actions ticked on the form (name -> typed params), checked against their records.

    Returns the actions to store and the errors per form field (``action-<name>-<param>``).
    """
    from helpdesk.plugins import run_check

    registry = ctx.registry.macro_actions
    stored: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    for name, typed in chosen.items():
        kind = registry.get(name)
        if kind is None:
            errors[f"action-{name}"] = f"There is no macro action named {name!r}."
            continue
        params: dict[str, Any] = {}
        plugin = ctx.registry.owners.get(("helpdesk_macro_actions", name), name)
        for param in kind.params:
            raw = (typed.get(param.name) or "").strip()
            field = f"action-{name}-{param.name}"
            if not raw:
                if param.required:
                    errors[field] = f"{kind.label}: {_label(param.name)} is required."
                elif param.default is not None:
                    params[param.name] = param.default
                continue
            try:
                params[param.name] = check_param(ctx, param, raw, plugin)
            except ValueError as error:
                errors[field] = f"{kind.label}: {_label(param.name)}: {error}."
        if kind.check is not None and not any(key.startswith(f"action-{name}-") for key in errors):
            try:
                run_check(plugin, f"MacroAction({name!r}).check", kind.check, ctx, params)
            except ValueError as error:
                errors[f"action-{name}"] = f"{kind.label}: {error}"
        stored.append({"action": name, "params": params})
    return stored, errors


def save(ctx: Context, actor: Agent, macro: Macro | None, *, name: str, body: str, public: bool,
         team: Team | None, actions: Mapping[str, Mapping[str, str]]) -> Macro:
    """Create (``macro`` None) or change a macro; :class:`MacroInvalid` names each bad field."""
    errors: dict[str, str] = {}
    name = " ".join((name or "").split())
    body = (body or "").strip()
    if not name:
        errors["name"] = "Give the macro a name."
    elif len(name) > MAX_NAME:
        errors["name"] = f"The name is limited to {MAX_NAME} characters."
    if len(body) > MAX_BODY:
        errors["body"] = f"The reply is limited to {MAX_BODY} characters."
    else:
        for problem in placeholder_errors(body):
            errors["body"] = problem
    if team is not None and team.id not in {t.id for t in lead_teams(actor)}:
        errors["team"] = "Only a lead of that team or an admin can share a macro with it."
    stored, action_errors = check_actions(ctx, actions)
    errors.update(action_errors)
    if not body and not stored and "body" not in errors:
        errors["body"] = "Write the reply, or choose at least one action."
    if errors:
        raise MacroInvalid(errors)
    with write_transaction():
        if macro is None:
            macro = Macro(created_by=actor)
        macro.name, macro.body, macro.public = name, body, public
        macro.team = team
        macro.agent = None if team is not None else (macro.agent or actor)
        macro.actions = json.dumps(stored)
        macro.updated_at = now()
        macro.save()
    return macro


def delete(actor: Agent, macro_id: int) -> None:
    with write_transaction():
        editable(actor, macro_id).delete_instance()


# -- applying -----------------------------------------------------------------------------


def describe(ctx: Context, macro: Macro) -> list[str]:
    """What the macro does besides replying, in words, for the picker and the list."""
    lines = []
    for item in actions_of(macro):
        kind = ctx.registry.macro_actions.get(item.get("action"))
        params = item.get("params") or {}
        detail = ", ".join(f"{_label(k)}: {'P' + str(v) if k == 'priority' else _label(str(v))}"
                           for k, v in params.items() if k not in {"note", "reason"} and v not in ("", None))
        label = kind.label if kind else f"{item.get('action')} (not installed)"
        lines.append(f"{label}" + (f" ({detail})" if detail else ""))
    return lines


def apply(ctx: Context, incident_id: int, actor: Agent, macro_id: int, body: str | None, *,
          public: bool | None, expected_version: int | None,
          files: Sequence[tuple[str, bytes]] = (), seen: int | None = None) -> Incident:
    """Send the reply (as edited by the agent; the macro's own text when ``body`` is None) with
    the agent's ``files`` and run the macro's actions, as one change: one transaction, one
    version check, one version bump. A refused action or file refuses the whole macro with
    the domain's message. ``seen`` (the newest timeline entry the agent's page showed) holds
    back a public reply the conversation has moved past, as a plain reply is
    (:func:`helpdesk.incidents.details.reply_conflict`)."""
    from helpdesk import incidents

    macro = get_visible(actor, macro_id)
    try:
        with incidents.one_change(incident_id, expected_version) as incident:
            text = expand(macro.body, incident, actor) if body is None else body
            if files and not text.strip():
                raise DomainError("Files go with a message: write one, or choose a macro with a reply.")
            if text.strip():
                incidents.add_comment(ctx, incident.id, actor, text,
                                      public=macro.public if public is None else public, files=files,
                                      seen=seen)
            for item in actions_of(macro):
                kind = ctx.registry.macro_actions.get(item.get("action"))
                if kind is None:
                    raise DomainError(f"The macro {macro.name!r} uses the action {item.get('action')!r}, "
                                      "which is not installed; ask an admin, or edit the macro.")
                try:
                    kind.run(ctx, incidents.get(incident.id), actor, dict(item.get("params") or {}))
                except DomainError:
                    raise
                except Exception as error:  # noqa: BLE001 - a plugin's bug: said once rolled back
                    raise _ActionFailed(kind, error) from error
    except _ActionFailed as failed:
        # Recorded after the rollback (inside the transaction the record would go with it); the
        # agent is refused like any other refusal, so the reply they typed stays in the box.
        from helpdesk.plugins import record_failure

        kind, error = failed.kind, failed.error
        plugin = ctx.registry.owners.get(("helpdesk_macro_actions", kind.name), kind.name)
        record_failure(plugin, f"MacroAction({kind.name!r}).run", incident, error)
        raise DomainError(f"The macro's action {kind.label!r} failed ({type(error).__name__}: "
                          f"{str(error)[:200]}), so nothing was sent or changed. Send the reply "
                          "without the macro, or ask an admin (the Plugins page has the details)."
                          ) from None
    return incidents.get(incident_id)


class _ActionFailed(Exception):
    """A macro action raised something other than a refusal: carries it out of the transaction."""

    def __init__(self, kind: Any, error: Exception) -> None:
        super().__init__(str(error))
        self.kind, self.error = kind, error


# -- the built-in actions (registered by helpdesk.builtin) --------------------------------

_TARGETS = ("in_progress", "pending", "resolved", "cancelled", "closed")
#: The fields each target status needs (the macro form shows only these; the rest are ignored).
STATUS_NEEDS: dict[str, tuple[str, ...]] = {"in_progress": (), "pending": ("pending_reason",),
                                            "resolved": ("resolution_code", "note"),
                                            "cancelled": ("note",), "closed": ()}


def _check_status(ctx: Context, params: Mapping[str, Any]) -> None:
    status = params.get("status")
    if status == "pending" and not params.get("pending_reason"):
        raise ValueError("moving to pending needs a pending reason.")
    if status in {"resolved", "cancelled"} and not params.get("note"):
        raise ValueError("resolving needs a resolution note." if status == "resolved"
                         else "cancelling needs a reason (the note).")


def _run_status(ctx: Context, incident: Incident, actor: Agent, params: Mapping[str, Any]) -> str:
    from helpdesk import incidents

    status = params["status"]
    if incident.status == status and status != "pending":
        return "already"
    needed = {name: params.get(name) for name in STATUS_NEEDS.get(status, ())}
    incidents.change_status(ctx, incident.id, actor, status, note=needed.get("note") or "",
                            pending_reason=needed.get("pending_reason"),
                            resolution_code=needed.get("resolution_code"))
    return "done"


def _run_priority(ctx: Context, incident: Incident, actor: Agent, params: Mapping[str, Any]) -> str:
    from helpdesk import incidents

    incidents.override_priority(ctx, incident.id, actor, int(params["priority"]),
                                params.get("reason") or "Set by a macro")
    return "done"


def _check_assign(ctx: Context, params: Mapping[str, Any]) -> None:
    if not params.get("team") and not params.get("agent"):
        raise ValueError("choose a team, an agent, or both.")


def _run_assign(ctx: Context, incident: Incident, actor: Agent, params: Mapping[str, Any]) -> str:
    from helpdesk import incidents
    from helpdesk.incidents.intake import home_team

    agent = None
    if params.get("agent") == "me":
        agent = actor
    elif params.get("agent"):
        agent = Agent.get_or_none(Agent.username == params["agent"])
        if agent is None:
            raise DomainError(f"The macro assigns to {params['agent']!r}, who no longer exists.")
    team = Team.get_or_none(Team.name == params["team"]) if params.get("team") else None
    if params.get("team") and team is None:
        raise DomainError(f"The macro assigns to the team {params['team']!r}, which no longer exists.")
    if team is None:
        current = incident.assigned_team
        team = current if current is not None and is_member(agent, current) else home_team(
            agent, current or incident.owner_team)
    incidents.assign(ctx, incident.id, actor, team, agent)
    return "done"


BUILTIN_ACTIONS: tuple[MacroAction, ...] = (
    MacroAction(
        "status", "Set status", _run_status,
        params=(StepParam("status", "choice", required=True, choices=_TARGETS),
                StepParam("pending_reason", "choice", choices=tuple(PENDING_REASONS),
                          help="when moving to pending"),
                StepParam("resolution_code", "choice", choices=tuple(RESOLUTION_CODES),
                          help="when resolving (default: fixed)"),
                StepParam("note", "text", help="resolution note, or why it is cancelled")),
        check=_check_status,
        description="Move the incident along its lifecycle (refused when the move is not allowed)."),
    MacroAction(
        "priority", "Set priority", _run_priority,
        params=(StepParam("priority", "priority", required=True),
                StepParam("reason", "text", help="recorded with the override")),
        description="Override the priority (recorded with the reason)."),
    MacroAction(
        "assign", "Assign", _run_assign,
        params=(StepParam("team", "team", help="blank: keep the team (or the agent's own)"),
                StepParam("agent", "agent", help="a user name, or me")),
        check=_check_assign,
        description="Set the assigned team and agent (\"me\": whoever sends the macro)."),
)
