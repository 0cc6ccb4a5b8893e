"""The structured policy editor's form: a policy as the fields an admin fills in, and back.

A *draft* is the form as typed (strings, lists of strings, kept as they are when a save is
refused, so nothing typed is lost); :func:`to_raw` turns it into the dict that
:func:`helpdesk.escalation.policies.validate` checks, exactly as a TOML import is checked.
Field names are flat (``l2_s1_p_team`` is level 2, step 1, parameter ``team``) so the form
works as a plain HTML post; the add / remove / move buttons are submit buttons whose
``action`` :func:`apply_action` performs on the draft before the page is rendered again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from helpdesk.escalation import policies
from helpdesk.web.forms import parse_id

MAX_STEPS = 12
LIST_KINDS = {"agents"}
NUMBER = re.compile(r"^-?[0-9]{1,9}$")
DECIMAL = re.compile(r"^[0-9]{1,4}(\.[0-9]{1,6})?$")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def blank_level() -> dict[str, Any]:
    return {"title": "", "trigger": "breach", "target": "resolution", "fraction": "", "minutes": "",
            "conditions": {}, "steps": [blank_step()]}


def blank_step(name: str = "notify_owner") -> dict[str, Any]:
    return {"step": name, "params": {}}


def from_policy(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A draft from a policy as :func:`policies.as_dict` (or a TOML file) gives it."""
    levels = []
    for level in raw.get("levels") or []:
        fraction = level.get("fraction")
        steps = []
        for step in level.get("steps") or []:
            params = {k: v for k, v in step.items() if k not in {"step", "params"}}
            params.update(step.get("params") or {})
            steps.append({"step": _text(step.get("step")),
                          "params": {k: ([_text(x) for x in v] if isinstance(v, list) else _text(v))
                                     for k, v in params.items()}})
        levels.append({
            "title": _text(level.get("title")), "trigger": _text(level.get("trigger") or "breach"),
            "target": _text(level.get("target") or "resolution"),
            "fraction": _text(round(fraction * 100, 4)) if isinstance(fraction, int | float) else "",
            "minutes": _text(level.get("minutes")),
            "conditions": _conditions_text(level.get("conditions")), "steps": steps})
    return {"name": _text(raw.get("name")), "title": _text(raw.get("title")),
            "enabled": raw.get("enabled", True) is not False, "position": _text(raw.get("position", 0)),
            "conditions": _conditions_text(raw.get("conditions")), "levels": levels}


def _conditions_text(raw: Any) -> dict[str, list[str]]:
    if not isinstance(raw, Mapping):
        return {}
    return {k: [_text(v) for v in (values if isinstance(values, list) else [values])]
            for k, values in raw.items()}


def _conditions_form(form: Any, prefix: str) -> dict[str, list[str]]:
    found = {}
    for key in policies.CONDITIONS:
        values = [v for v in form.getlist(f"{prefix}cond_{key}") if v]
        if values:
            found[key] = values
    return found


def _count(form: Any, name: str, limit: int) -> int:
    raw = form.get(name, "")
    number = parse_id(raw)  # ASCII digits only: "²" passes isdigit() but not int()
    return min(number, limit) if number is not None else 0


def from_form(ctx: Any, form: Any) -> dict[str, Any]:
    """A draft from the posted form (any value kept as typed)."""
    levels = []
    for i in range(1, _count(form, "level_count", policies.MAX_LEVELS) + 1):
        p = f"l{i}_"
        steps = []
        for j in range(1, _count(form, f"{p}step_count", MAX_STEPS) + 1):
            q = f"{p}s{j}_"
            name = form.get(f"{q}step", "")
            kind = ctx.registry.escalation_steps.get(name)
            params: dict[str, Any] = {}
            for param in (kind.params if kind else ()):
                field = f"{q}p_{param.name}"
                if param.kind in LIST_KINDS:
                    params[param.name] = [v for v in form.getlist(field) if v]
                else:
                    params[param.name] = form.get(field, "")
            steps.append({"step": name, "params": params})
        levels.append({key: form.get(p + key, "") for key in ("title", "trigger", "target", "fraction",
                                                             "minutes")}
                      | {"conditions": _conditions_form(form, p), "steps": steps})
    return {"name": form.get("name", "").strip(), "title": form.get("title", ""),
            "enabled": form.get("enabled") == "on", "position": form.get("position", "0"),
            "conditions": _conditions_form(form, ""), "levels": levels}


def _typed(kind: str, value: Any) -> Any:
    """A parameter's form text as the type its kind takes; text that is not one is passed on
    as it is, so the policy check refuses it with its own message."""
    if isinstance(value, list):
        return value or None
    value = value.strip() if kind != "text" else value
    if value == "":
        return None
    if kind in {"int", "priority"} and NUMBER.match(value):
        return int(value)
    if kind == "bool" and value in {"true", "false"}:
        return value == "true"
    return value


def to_raw(ctx: Any, draft: Mapping[str, Any]) -> dict[str, Any]:
    """The draft as the dict a TOML file parses to (what ``policies.validate`` checks)."""
    def conditions(raw: Mapping[str, list[str]]) -> dict[str, list[Any]]:
        return {k: [parse_id(v) if k == "priority" and parse_id(v) is not None else v for v in values]
                for k, values in raw.items() if values}

    levels = []
    for level in draft["levels"]:
        out: dict[str, Any] = {"title": level["title"].strip(), "trigger": level["trigger"]}
        if level["trigger"] != "manual":
            out["target"] = level["target"]
        if level["trigger"] == "fraction":
            text = level["fraction"].strip().rstrip("%").strip()
            out["fraction"] = round(float(text) / 100, 6) if DECIMAL.match(text) else (text or None)
        if level["trigger"] in {"after_breach", "before_due"}:
            text = level["minutes"].strip()
            out["minutes"] = int(text) if NUMBER.match(text) else (text or None)
        if level["conditions"]:
            out["conditions"] = conditions(level["conditions"])
        steps = []
        for step in level["steps"]:
            kind = ctx.registry.escalation_steps.get(step["step"])
            kinds = {p.name: p.kind for p in (kind.params if kind else ())}
            typed = {name: _typed(kinds.get(name, "text"), value) for name, value in step["params"].items()}
            steps.append({"step": step["step"], **{k: v for k, v in typed.items() if v is not None}})
        out["steps"] = steps
        levels.append({k: v for k, v in out.items() if v is not None})
    position = draft["position"].strip()
    raw: dict[str, Any] = {"name": draft["name"], "title": draft["title"].strip() or draft["name"],
                           "enabled": draft["enabled"],
                           "position": int(position) if NUMBER.match(position) else position or 0,
                           "levels": levels}
    if draft["conditions"]:
        raw["conditions"] = conditions(draft["conditions"])
    return raw


# -- add, remove, move ------------------------------------------------------------------------------


ACTION = re.compile(r"^(add_level|remove_level|up_level|down_level|add_step|remove_step|up_step|down_step"
                    r"|refresh)(?::([0-9]{1,2}))?(?::([0-9]{1,2}))?$")


def _swap(items: list[Any], index: int, other: int) -> None:
    if 0 <= index < len(items) and 0 <= other < len(items):
        items[index], items[other] = items[other], items[index]


def apply_action(draft: dict[str, Any], action: str) -> tuple[bool, str | None]:
    """Perform an editing button (``add_level``, ``remove_step:2:1`` …) on the draft; returns
    whether the action was one, and the id of the field to put the focus on afterwards."""
    match = ACTION.match(action)
    if match is None:
        return False, None
    verb, first, second = match.group(1), match.group(2), match.group(3)
    levels = draft["levels"]
    i = int(first) - 1 if first else -1
    j = int(second) - 1 if second else -1
    if verb == "add_level" and len(levels) < policies.MAX_LEVELS:
        levels.append(blank_level())
        return True, f"l{len(levels)}-trigger"
    if not 0 <= i < len(levels):
        return True, None
    steps = levels[i]["steps"]
    if verb == "remove_level":
        del levels[i]
    elif verb == "up_level":
        _swap(levels, i, i - 1)
    elif verb == "down_level":
        _swap(levels, i, i + 1)
    elif verb == "add_step" and len(steps) < MAX_STEPS:
        steps.append(blank_step())
        return True, f"l{i + 1}-s{len(steps)}-step"
    elif verb == "remove_step" and 0 <= j < len(steps):
        del steps[j]
    elif verb == "up_step":
        _swap(steps, j, j - 1)
    elif verb == "down_step":
        _swap(steps, j, j + 1)
    return True, None


# -- errors next to their field ---------------------------------------------------------------------


FIELD = re.compile(r"^levels\[(\d+)\](?:\.steps\[(\d+)\])?(?:\.(.+))?$")


def field_id(field: str) -> str:
    """The form element a policy error's field names (``levels[2].steps[1].team`` ->
    ``l2-s1-p-team``), so the message is shown next to it."""
    match = FIELD.match(field)
    if match is None:
        if field.startswith("conditions."):
            return "cond-" + field.split(".", 1)[1]
        return {"levels": "levels", "toml": "policy-toml"}.get(field, f"f-{field}")
    level, step, rest = match.groups()
    if step is not None:
        rest = rest or "step"
        return f"l{level}-s{step}-" + ("step" if rest == "step" else f"p-{rest}")
    if rest is None or rest == "steps":
        return f"l{level}-steps"
    if rest.startswith("conditions."):
        return f"l{level}-cond-" + rest.split(".", 1)[1]
    return f"l{level}-{rest}"


def field_label(field: str) -> str:
    """An error's field for people: ``levels[2].steps[1].team`` -> 'Level 2, step 1, parameter
    "team"'."""
    match = FIELD.match(field)
    if match is None:
        if field.startswith("conditions."):
            return f'Condition "{field.split(".", 1)[1]}"'
        return {"levels": "Levels", "toml": "TOML"}.get(field, f'"{field}"')
    level, step, rest = match.groups()
    parts = [f"Level {level}"]
    if step is not None:
        parts.append(f"step {step}")
        if rest and rest != "step":
            parts.append(f'parameter "{rest}"')
    elif rest and rest.startswith("conditions."):
        parts.append(f'condition "{rest.split(".", 1)[1]}"')
    elif rest and rest != "steps":
        parts.append(f'"{rest}"')
    return ", ".join(parts)
