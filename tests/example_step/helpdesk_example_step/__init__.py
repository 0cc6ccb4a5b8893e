"""Example third-party escalation step: page the on-call agent of a team.

The rota lives in the plugin's settings (user names by team, one per week,
taking turns); a policy names the team and how to reach the agent:

    [plugins.example_step.rota]
    Database = ["priya", "mateo"]

    [[levels.steps]]
    step = "page_on_call"
    team = "Database"
    urgent = true
"""

from __future__ import annotations

from typing import Any

import helpdesk
from helpdesk import Context, hookimpl
from helpdesk.records import EscalationLevel, EscalationStep, StepParam, StepResult


def check_team(ctx: Context, team: str) -> None:
    if not ctx.plugin_settings("example_step").get("rota", {}).get(team):
        raise ValueError(f"the on-call rota has nobody for {team}")


def on_call(ctx: Context, team: str) -> Any:
    names = ctx.plugin_settings("example_step").get("rota", {}).get(team) or []
    if not names:
        raise helpdesk.StepError(f"the on-call rota has nobody for {team}")
    week = helpdesk.now().isocalendar().week
    return helpdesk.Agent.get_or_none(helpdesk.Agent.username == names[week % len(names)])


def page_on_call(ctx: Context, incident: Any, level: EscalationLevel, params: dict[str, Any]) -> StepResult:
    agent = on_call(ctx, params["team"])
    if agent is None or not agent.active:
        raise helpdesk.StepError(f"the on-call agent of {params['team']} cannot be reached")
    urgency = "URGENT " if params["urgent"] else ""
    subject = f"{urgency}{incident.reference} needs you (on call for {params['team']})"
    text = f"{incident.title}\n{ctx.incident_url(incident.id)}"
    helpdesk.notify_agents(ctx, incident, [agent], subject, text, key=f"{level.key}:on-call")
    helpdesk.add_watchers(ctx, incident.id, [agent])
    return StepResult(f"paged {agent} (on call for {params['team']})")


@hookimpl
def helpdesk_escalation_steps(ctx: Context) -> list[EscalationStep]:
    return [EscalationStep(
        "page_on_call", "Page the on-call agent", page_on_call,
        description="Pages this week's on-call agent of a team and makes them a watcher.",
        params=(StepParam("team", "team", required=True, check=check_team),
                StepParam("urgent", "bool", default=False)))]
