"""Escalation policies: their shape, the checks they pass before they are saved (each error
names its field), versions, and the TOML form admins review in git.

A policy (as a dict, and as TOML)::

    name = "standard"            # identity, also the file name of an export
    title = "Standard escalation"
    enabled = true
    position = 0                 # the first enabled policy that applies to an incident wins
    [conditions]                 # which incidents it applies to (absent: all)
    priority = [1, 2]

    [[levels]]
    title = "Owner reviews"
    trigger = "fraction"         # fraction | breach | after_breach | before_due | manual
    target = "resolution"        # the SLA target it watches: response | resolution
    fraction = 0.75              # for "fraction": 0.75 = 75 % of the target used
    # minutes = 30               # for "after_breach" / "before_due" (working time)
    [levels.conditions]          # optional, as above
    [[levels.steps]]
    step = "notify_owner"        # a registered EscalationStep; its parameters follow

Conditions: ``priority`` (1-4), ``type``, ``team`` (owning or assigned team's
name), ``service`` and ``organisation`` (the requester's), each a list; an
incident matches when every condition given contains its value.

Who may change a policy: its top-level ``team`` condition is what ties it to teams. An admin
changes any policy; a team lead changes (saves, deletes) only a policy whose ``team``
condition names teams they are all a member of, before and after the change. A policy
without a ``team`` condition applies to the whole organisation: only admins change it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tomllib
from collections.abc import Mapping
from typing import Any

from helpdesk.clock import now
from helpdesk.context import Context
from helpdesk.db import write_transaction
from helpdesk.errors import DomainError, NotFound, PermissionDenied
from helpdesk.models import (
    ACTIVE_STATUSES,
    PRIORITIES,
    TYPES,
    Agent,
    EscalationPolicy,
    EscalationPolicyVersion,
    EscalationState,
    Incident,
    Membership,
    Organisation,
    Service,
    Team,
)
from helpdesk.records import StepParam
from helpdesk.words import format_duration

TRIGGERS = {"fraction": "share of the target used", "breach": "at the breach",
            "after_breach": "minutes after the breach", "before_due": "minutes before the due time",
            "manual": "only by hand"}
CONDITIONS = ("priority", "type", "team", "service", "organisation")
MAX_LEVELS = 12
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class PolicyError(DomainError):
    """A policy was refused; ``field`` names where (e.g. ``levels[2].steps[1].team``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _names(field: str, value: Any) -> list[Any]:
    if isinstance(value, str | int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value:
        raise PolicyError(field, "give a list of values")
    return value


def _conditions(field: str, raw: Any) -> dict[str, list[Any]]:
    if raw in (None, {}):
        return {}
    if not isinstance(raw, Mapping):
        raise PolicyError(field, "give a table of conditions")
    checked: dict[str, list[Any]] = {}
    for key, value in raw.items():
        where = f"{field}.{key}"
        values = _names(where, value)
        if key == "priority":
            if any(not isinstance(v, int) or isinstance(v, bool) or v not in PRIORITIES for v in values):
                raise PolicyError(where, "priorities are numbers from 1 to 4")
        elif key == "type":
            unknown = [v for v in values if v not in TYPES]
            if unknown:
                raise PolicyError(where, f"unknown type {unknown[0]!r}; choose from {', '.join(TYPES)}")
        elif key in {"team", "service", "organisation"}:
            model = {"team": Team, "service": Service, "organisation": Organisation}[key]
            for v in values:
                if not isinstance(v, str) or model.get_or_none(model.name == v) is None:
                    raise PolicyError(where, f"there is no {key} named {v!r}")
        else:
            raise PolicyError(where, f"unknown condition; use {', '.join(CONDITIONS)}")
        checked[key] = values
    return checked


def check_param(ctx: Context, where: str, param: StepParam, value: Any, plugin: str = "") -> Any:
    """One step parameter as it will be stored, or :class:`PolicyError` naming it (``plugin``:
    the step's, named when its own check fails)."""
    kind = param.kind
    if kind == "int" and (not isinstance(value, int) or isinstance(value, bool)):
        raise PolicyError(where, "must be a whole number")
    if kind == "bool" and not isinstance(value, bool):
        raise PolicyError(where, "must be true or false")
    if kind in {"text", "choice", "team", "agent", "channel"} and not isinstance(value, str):
        raise PolicyError(where, "must be text")
    if kind == "text" and (len(value) > 2000 or any(ord(c) < 32 and c not in "\n\t" for c in value)):
        raise PolicyError(where, "must be printable text of at most 2000 characters")
    if kind == "choice" and value not in param.choices:
        raise PolicyError(where, f"choose one of {', '.join(param.choices)}")
    if kind == "priority" and (not isinstance(value, int) or isinstance(value, bool)
                               or value not in PRIORITIES):
        raise PolicyError(where, "priorities are numbers from 1 to 4")
    if kind == "team" and Team.get_or_none(Team.name == value) is None:
        raise PolicyError(where, f"there is no team named {value!r}")
    if kind == "agent" and Agent.get_or_none(Agent.username == value) is None:
        raise PolicyError(where, f"there is no agent with user name {value!r}")
    if kind == "agents":
        value = _names(where, value)
        for name in value:
            if not isinstance(name, str) or Agent.get_or_none(Agent.username == name) is None:
                raise PolicyError(where, f"there is no agent with user name {name!r}")
    if kind == "channel" and value not in ctx.registry.channel_types:
        raise PolicyError(where, f"there is no channel type named {value!r}; choose from "
                          f"{', '.join(ctx.registry.channel_types) or 'none'}")
    if param.check is not None:
        from helpdesk.plugins import run_check

        try:
            run_check(plugin or param.name, f"StepParam({param.name!r}).check", param.check, ctx, value)
        except ValueError as error:
            raise PolicyError(where, str(error)) from None
    return value


def _steps(ctx: Context, field: str, raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise PolicyError(field, "a level needs at least one step")
    steps = []
    for index, item in enumerate(raw, 1):
        where = f"{field}[{index}]"
        if not isinstance(item, Mapping):
            raise PolicyError(where, "give a table with 'step' and its parameters")
        name = item.get("step")
        kind = ctx.registry.escalation_steps.get(name) if isinstance(name, str) else None
        if kind is None:
            raise PolicyError(f"{where}.step", f"there is no escalation step named {name!r}; choose from "
                              f"{', '.join(sorted(ctx.registry.escalation_steps)) or 'none'}")
        given = {k: v for k, v in item.items() if k not in {"step", "params"}}
        given.update(item.get("params") or {})
        declared = {p.name: p for p in kind.params}
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise PolicyError(f"{where}.{unknown[0]}", f"{name} has no parameter {unknown[0]!r}"
                              + (f"; it takes {', '.join(declared)}" if declared else ""))
        params = {}
        for param in kind.params:
            if param.name not in given or given[param.name] in ("", None, []):
                if param.required:
                    raise PolicyError(f"{where}.{param.name}", "is required")
                if param.default is not None:
                    params[param.name] = param.default
                continue
            plugin = ctx.registry.owners.get(("helpdesk_escalation_steps", name), name)
            params[param.name] = check_param(ctx, f"{where}.{param.name}", param, given[param.name], plugin)
        steps.append({"step": name, "params": params})
    return steps


def _level(ctx: Context, field: str, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise PolicyError(field, "give a table")
    unknown = sorted(set(raw) - {"title", "trigger", "target", "fraction", "minutes", "conditions", "steps"})
    if unknown:
        raise PolicyError(f"{field}.{unknown[0]}", "unknown setting")
    title = str(raw.get("title") or "").strip()[:200]
    trigger = raw.get("trigger")
    if trigger not in TRIGGERS:
        raise PolicyError(f"{field}.trigger", f"choose one of {', '.join(TRIGGERS)}")
    level: dict[str, Any] = {"title": title, "trigger": trigger}
    if trigger != "manual":
        target = raw.get("target", "resolution")
        if target not in {"response", "resolution"}:
            raise PolicyError(f"{field}.target", "choose response or resolution")
        level["target"] = target
    if trigger == "fraction":
        fraction = raw.get("fraction")
        if not isinstance(fraction, int | float) or isinstance(fraction, bool) or not 0 < fraction <= 5:
            raise PolicyError(f"{field}.fraction", "a share of the target above 0 (0.75 = 75 %), at most 5")
        level["fraction"] = round(float(fraction), 3)
    if trigger in {"after_breach", "before_due"}:
        minutes = raw.get("minutes")
        if not isinstance(minutes, int) or isinstance(minutes, bool) or not 0 < minutes <= 60 * 24 * 90:
            raise PolicyError(f"{field}.minutes", "a whole number of minutes above 0")
        level["minutes"] = minutes
    level["conditions"] = _conditions(f"{field}.conditions", raw.get("conditions"))
    level["steps"] = _steps(ctx, f"{field}.steps", raw.get("steps"))
    level["title"] = title or describe_trigger(level)
    return level


def validate(ctx: Context, raw: Mapping[str, Any]) -> dict[str, Any]:
    """A policy as it will be stored, or :class:`PolicyError` naming the first bad field."""
    if not isinstance(raw, Mapping):
        raise PolicyError("policy", "give a table")
    unknown = sorted(set(raw) - {"name", "title", "enabled", "position", "conditions", "levels", "version"})
    if unknown:
        raise PolicyError(unknown[0], "unknown setting")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise PolicyError("name", "lower-case letters, digits, '-' and '_' (at most 64)")
    title = str(raw.get("title") or name).strip()[:200]
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise PolicyError("enabled", "must be true or false")
    position = raw.get("position", 0)
    if not isinstance(position, int) or isinstance(position, bool) or not -1_000_000 <= position <= 1_000_000:
        raise PolicyError("position", "must be a whole number from -1000000 to 1000000")
    levels = raw.get("levels")
    if not isinstance(levels, list) or not levels:
        raise PolicyError("levels", "a policy needs at least one level")
    if len(levels) > MAX_LEVELS:
        raise PolicyError("levels", f"at most {MAX_LEVELS} levels")
    return {"name": name, "title": title, "enabled": enabled, "position": position,
            "conditions": _conditions("conditions", raw.get("conditions")),
            "levels": [_level(ctx, f"levels[{i}]", level) for i, level in enumerate(levels, 1)]}


def describe_trigger(level: Mapping[str, Any]) -> str:
    trigger, target = level["trigger"], level.get("target", "")
    if trigger == "fraction":
        return f"{level['fraction'] * 100:g} % of the {target} target"
    if trigger == "breach":
        return f"{target.capitalize()} breach"
    if trigger == "after_breach":
        return f"{format_duration(dt.timedelta(minutes=level['minutes']))} after the {target} breach"
    if trigger == "before_due":
        return f"{format_duration(dt.timedelta(minutes=level['minutes']))} before the {target} due time"
    return "By hand"


def teams_of(definition: Mapping[str, Any]) -> list[str]:
    """The names of the teams a policy belongs to: its own ``team`` condition (empty: the
    policy applies to the whole organisation)."""
    return [str(t) for t in (definition.get("conditions") or {}).get("team") or []]


def led_teams(actor: Agent) -> list[str]:
    """The names of the teams whose policies a team lead changes (none for an agent)."""
    if actor.role != "lead":
        return []
    return [name for (name,) in Team.select(Team.name).join(Membership)
            .where(Membership.agent == actor.id).order_by(Team.name).tuples()]


def refusal(actor: Agent | None, name: str, teams: list[str],
            led: list[str] | None = None) -> str | None:
    """Why ``actor`` may not change the policy ``name`` belonging to ``teams`` (None: they may).
    No actor is the operator at the command line, who may. ``led``: the actor's
    :func:`led_teams`, when the caller has them already."""
    if actor is None or actor.is_admin:
        return None
    if not teams:
        return (f"Only an admin can change the escalation policy {name!r}: it has no team "
                "condition, so it applies to the whole organisation.")
    missing = sorted(set(teams) - set(led_teams(actor) if led is None else led))
    if missing:
        return (f"Only a lead of {', '.join(sorted(teams))} or an admin can change the escalation "
                f"policy {name!r}; you do not lead {', '.join(missing)}.")
    return None


def changeable(actor: Agent, rows: list[EscalationPolicy]) -> set[int]:
    """The ids of the policies the list offers ``actor`` to edit and delete (the actor's teams
    read once, not once a policy)."""
    led = led_teams(actor)
    return {policy.id for policy in rows
            if refusal(actor, policy.name, teams_of(definition_of(policy)), led) is None}


def _check_may_change(actor: Agent | None, name: str, teams: list[str]) -> None:
    reason = refusal(actor, name, teams)
    if reason is not None:
        raise PermissionDenied(reason)


def check_may_edit(actor: Agent | None, policy: EscalationPolicy) -> None:
    """Refuse (403, naming the rule) an actor who may not change the stored ``policy``."""
    _check_may_change(actor, policy.name, teams_of(definition_of(policy)))


def save(ctx: Context, raw: Mapping[str, Any], actor: Agent | None = None,
         expected_version: int | None = None, *, new: bool = False) -> EscalationPolicy:
    """Check and store a policy: a new one at version 1, an edit as the next version
    (``new``: only a new one; a policy of that name is refused, not replaced).

    Open incidents are looked at again by the next check (their next level may
    now come sooner); levels already run are never run again (see
    :mod:`helpdesk.escalation.engine`). Raises :class:`PermissionDenied` when ``actor`` may
    not change the policy as stored or as given (see the module's docstring).
    """
    checked = validate(ctx, raw)
    _check_may_change(actor, checked["name"], teams_of(checked))
    definition = json.dumps({"conditions": checked["conditions"], "levels": checked["levels"]},
                            sort_keys=True)
    with write_transaction():
        policy = EscalationPolicy.get_or_none(EscalationPolicy.name == checked["name"])
        if new and policy is not None:
            raise PolicyError("name", f"a policy named {policy.name!r} exists already; choose another "
                                      "name, or edit that policy from the list")
        if policy is not None:  # nor take over another team's (or the organisation's) policy
            check_may_edit(actor, policy)
        stamp = now()
        if policy is None:
            policy = EscalationPolicy.create(name=checked["name"], title=checked["title"],
                                             enabled=checked["enabled"], position=checked["position"],
                                             version=1, definition=definition, updated_at=stamp)
        else:
            if expected_version is not None and expected_version != policy.version:
                raise DomainError(f"The policy {policy.name!r} was saved by someone else meanwhile "
                                  f"(now version {policy.version}); reload it and edit again.")
            unchanged = (definition, checked["title"], checked["enabled"], checked["position"]) == (
                policy.definition, policy.title, policy.enabled, policy.position)
            if unchanged:
                return policy
            policy.version += 1
            policy.title, policy.enabled, policy.position = (checked["title"], checked["enabled"],
                                                             checked["position"])
            policy.definition, policy.updated_at = definition, stamp
            policy.save()
        EscalationPolicyVersion.create(policy=policy, version=policy.version, definition=definition,
                                       saved_at=stamp, saved_by=actor)
        revisit(stamp)
    return policy


def revisit(at: Any) -> None:
    """Ask the next check to look at every open incident again (policies changed); open incidents
    logged before escalation existed get their state row here."""
    import peewee

    active = Incident.select(Incident.id).where(Incident.status.in_(ACTIVE_STATUSES))
    missing = Incident.select(Incident.id, peewee.Value(at), peewee.Value(0), peewee.Value(0),
                              peewee.Value(0)).where(
        Incident.status.in_(ACTIVE_STATUSES)
        & ~Incident.id.in_(EscalationState.select(EscalationState.incident)))
    EscalationState.insert_from(missing, [EscalationState.incident, EscalationState.next_at,
                                          EscalationState.version, EscalationState.level,
                                          EscalationState.acknowledged_level]).execute()
    EscalationState.update(next_at=at).where(EscalationState.incident.in_(active)).execute()


def delete(name: str, actor: Agent | None = None) -> None:
    """Delete a policy (levels it ran stay on the timelines); :class:`PermissionDenied` when
    ``actor`` may not change it, :class:`NotFound` when there is none of that name."""
    with write_transaction():
        policy = EscalationPolicy.get_or_none(EscalationPolicy.name == name)
        if policy is None:
            raise NotFound(f"There is no escalation policy named {name!r}.")
        check_may_edit(actor, policy)
        EscalationPolicy.delete().where(EscalationPolicy.id == policy.id).execute()


def definition_of(policy: EscalationPolicy, version: int | None = None) -> dict[str, Any]:
    """The policy's conditions and levels as saved (its current version unless one is named)."""
    if version is None or version == policy.version:
        return json.loads(policy.definition)
    row = EscalationPolicyVersion.get_or_none((EscalationPolicyVersion.policy == policy.id)
                                              & (EscalationPolicyVersion.version == version))
    return json.loads(row.definition) if row is not None else json.loads(policy.definition)


def as_dict(policy: EscalationPolicy) -> dict[str, Any]:
    """The policy as a TOML file holds it (each step's parameters beside its name)."""
    return flatten({"name": policy.name, "title": policy.title, "enabled": policy.enabled,
                    "position": policy.position, **definition_of(policy)})


def flatten(checked: Mapping[str, Any]) -> dict[str, Any]:
    """A policy as :func:`validate` returns it, in the shape a TOML file holds it."""
    levels = []
    for level in checked["levels"]:
        flat = {k: v for k, v in level.items() if k not in {"steps", "conditions"}}
        if level.get("conditions"):
            flat["conditions"] = level["conditions"]
        flat["steps"] = [{"step": s["step"], **s["params"]} for s in level["steps"]]
        levels.append(flat)
    out: dict[str, Any] = {key: checked[key] for key in ("name", "title", "enabled", "position")}
    if checked.get("conditions"):
        out["conditions"] = checked["conditions"]
    out["levels"] = levels
    return out


# -- TOML ------------------------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """One value as TOML (a string, a number, a boolean, a list of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string


def to_toml(policy: EscalationPolicy) -> str:
    """The policy as TOML (what :func:`from_toml` reads back), for review in git."""
    return dict_to_toml(as_dict(policy), f"# Escalation policy {policy.name}, version {policy.version}")


def dict_to_toml(data: Mapping[str, Any], header: str = "") -> str:
    """A policy in the shape of :func:`flatten` as TOML (the editor's draft, an export)."""
    lines = [header] if header else []
    for key in ("name", "title", "enabled", "position"):
        lines.append(f"{key} = {toml_value(data[key])}")
    if data.get("conditions"):
        lines += ["", "[conditions]"] + [f"{k} = {toml_value(v)}" for k, v in data["conditions"].items()]
    for level in data["levels"]:
        lines += ["", "[[levels]]"]
        lines += [f"{k} = {toml_value(v)}" for k, v in level.items() if k not in {"steps", "conditions"}]
        if level.get("conditions"):
            lines += ["[levels.conditions]"]
            lines += [f"{k} = {toml_value(v)}" for k, v in level["conditions"].items()]
        for step in level["steps"]:
            lines += ["[[levels.steps]]"] + [f"{k} = {toml_value(v)}" for k, v in step.items()]
    return "\n".join(lines) + "\n"


def from_toml(text: str) -> dict[str, Any]:
    """Parse a policy's TOML; a syntax error is a :class:`PolicyError` with its line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError("toml", str(error)) from None
    except RecursionError:  # arrays nested a thousand deep: the parser's recursion, not a 500
        raise PolicyError("toml", "values are nested too deeply") from None
