"""The bundled escalation steps: hierarchical (tell the owner, the owning team's leads, the
assigned team's leads), functional (reassign to another team), and the rest (raise the priority,
add watchers, post to a channel, declare a major incident).

Like any third-party step they use only the public face: each is an
``EscalationStep`` whose ``run(ctx, incident, level, params)`` writes through
the domain functions and the outbox, so its effects commit together with the
level's claim (and vanish in a simulation).
"""

from __future__ import annotations

from typing import Any

import helpdesk
from helpdesk import hookimpl
from helpdesk.records import EscalationLevel, EscalationStep, StepParam, StepResult

MESSAGE = StepParam("message", "text", help="A line added to the notification.")


def _text(ctx: Any, incident: Any, level: EscalationLevel, message: str | None) -> tuple[str, str]:
    subject = f"{incident.reference} escalated (level {level.number}): {incident.title}"
    lines = [f"{incident.reference} {incident.title}",
             f"Priority {helpdesk.PRIORITIES.get(incident.priority, incident.priority)}, "
             f"status {helpdesk.STATUSES.get(incident.status, incident.status)}.",
             f"Escalation level {level.number} ({level.title}) of policy {level.policy}"
             + (f", by hand: {level.reason}" if level.manual else "") + "."]
    if message:
        lines.append(message)
    lines.append(ctx.incident_url(incident.id))
    return subject, "\n".join(lines)


def _tell(ctx: Any, incident: Any, level: EscalationLevel, agents: list[Any], message: str | None,
          who: str, tag: str) -> StepResult:
    if not agents:
        return StepResult(f"nobody to tell ({who} has no active agent)")
    subject, text = _text(ctx, incident, level, message)
    helpdesk.notify_agents(ctx, incident, agents, subject, text, key=f"{level.key}:{tag}")
    return StepResult(f"told {who}: " + ", ".join(str(agent) for agent in agents))


def notify_owner(ctx: Any, incident: Any, level: EscalationLevel, params: dict[str, Any]) -> StepResult:
    owner = incident.owner_agent
    if owner is not None and owner.active:
        return _tell(ctx, incident, level, [owner], params.get("message"), "the owner", "owner")
    leads = helpdesk.team_leads(incident.owner_team_id)
    return _tell(ctx, incident, level, leads, params.get("message"),
                 f"the leads of {incident.owner_team} (no active owner)", "owner")


def notify_owner_team_leads(ctx: Any, incident: Any, level: EscalationLevel,
                            params: dict[str, Any]) -> StepResult:
    return _tell(ctx, incident, level, helpdesk.team_leads(incident.owner_team_id), params.get("message"),
                 f"the leads of {incident.owner_team}", "owner-leads")


def notify_assigned_team_leads(ctx: Any, incident: Any, level: EscalationLevel,
                               params: dict[str, Any]) -> StepResult:
    if incident.assigned_team_id is None:
        return StepResult("no assigned team to tell")
    return _tell(ctx, incident, level, helpdesk.team_leads(incident.assigned_team_id), params.get("message"),
                 f"the leads of {incident.assigned_team}", "assigned-leads")


def reassign(ctx: Any, incident: Any, level: EscalationLevel, params: dict[str, Any]) -> StepResult:
    """To the team, or (``agent = "on_call"``) to its on-call agent; with nobody on call, to the
    team alone, and the result says why (never a silent fallback)."""
    team = helpdesk.Team.get_or_none(helpdesk.Team.name == params["team"])
    if team is None:
        raise helpdesk.StepError(f"there is no team named {params['team']!r} any more")
    agent, fallback = None, ""
    if params.get("agent") == "on_call":
        on_call = helpdesk.on_call(team)
        agent = on_call.agent
        if agent is None:
            fallback = f"; {on_call.note}, so assigned to the team only"
    if incident.assigned_team_id == team.id and (agent is None or incident.assigned_agent_id == agent.id):
        return StepResult(f"already assigned to {team}" + (f" / {agent}" if agent else "") + fallback)
    note = f"Escalation level {level.number}: {level.title}"
    if agent is not None:
        note += f" (on call for {team})"
    note += fallback
    helpdesk.incidents.assign(ctx, incident.id, None, team, agent, note=note)
    return StepResult(f"reassigned to {team}" + (f" / {agent} (on call)" if agent else fallback))


def raise_priority(ctx: Any, incident: Any, level: EscalationLevel, params: dict[str, Any]) -> StepResult:
    wanted = params.get("to") or max(1, incident.priority - (params.get("by") or 1))
    if incident.priority <= wanted:
        return StepResult(f"priority already {helpdesk.PRIORITIES[incident.priority]}")
    helpdesk.incidents.override_priority(ctx, incident.id, None, wanted,
                                         f"Escalation level {level.number}: {level.title}")
    return StepResult(f"priority raised to {helpdesk.PRIORITIES[wanted]}")


def add_watchers(ctx: Any, incident: Any, level: EscalationLevel, params: dict[str, Any]) -> StepResult:
    agents = list(helpdesk.Agent.select().where(helpdesk.Agent.username.in_(params["agents"])))
    added = helpdesk.add_watchers(ctx, incident.id, agents)
    return StepResult("watching now: " + (", ".join(str(a) for a in added) or "nobody new"))


def post_to_channel(ctx: Any, incident: Any, level: EscalationLevel, params: dict[str, Any]) -> StepResult:
    subject, text = _text(ctx, incident, level, params.get("message"))
    helpdesk.enqueue(ctx, params["channel"], params["recipient"], subject, text, incident=incident,
                     event="incident_escalated", kind="escalation",
                     idempotency_key=f"{level.key}:post:{params['channel']}")
    return StepResult(f"posted to {params['channel']}")


def declare_major(ctx: Any, incident: Any, level: EscalationLevel, params: dict[str, Any]) -> StepResult:
    reason = params.get("reason") or f"Escalation level {level.number}: {level.title}"
    if not helpdesk.declare_major(ctx, incident.id, reason):
        return StepResult("already a major incident")
    admins = list(helpdesk.Agent.select().where((helpdesk.Agent.role == "admin")
                                                & (helpdesk.Agent.active == True)))  # noqa: E712
    subject, text = _text(ctx, incident, level, f"Declared a MAJOR INCIDENT: {reason}")
    helpdesk.notify_agents(ctx, incident, admins, subject, text, key=f"{level.key}:major")
    return StepResult("declared a major incident; admins told")


@hookimpl
def helpdesk_escalation_steps(ctx: Any) -> list[EscalationStep]:
    return [
        EscalationStep("notify_owner", "Notify the owner", notify_owner, params=(MESSAGE,),
                       description="The owning agent; the owning team's leads when nobody active owns it."),
        EscalationStep("notify_owner_team_leads", "Notify the owning team's leads", notify_owner_team_leads,
                       params=(MESSAGE,), description="Hierarchical escalation up the owning team."),
        EscalationStep("notify_assigned_team_leads", "Notify the assigned team's leads",
                       notify_assigned_team_leads, params=(MESSAGE,)),
        EscalationStep("reassign", "Reassign to a team", reassign,
                       params=(StepParam("team", "team", required=True),
                               StepParam("agent", "choice", choices=("on_call",),
                                         help="\"on_call\": also assign the team's on-call agent (the "
                                              "team alone when nobody usable is on call).")),
                       description="Functional escalation: the incident goes to a team with more skill, "
                                   "or its on-call agent."),
        EscalationStep("raise_priority", "Raise the priority", raise_priority,
                       params=(StepParam("to", "priority", help="The priority to raise to (1-4)."),
                               StepParam("by", "int", default=1, help="Steps to raise by (if no 'to').")),
                       description="Recorded as an override with the level as its reason; the SLA "
                                   "targets follow."),
        EscalationStep("add_watchers", "Add watchers", add_watchers,
                       params=(StepParam("agents", "agents", required=True),)),
        EscalationStep("post_to_channel", "Post to a channel", post_to_channel,
                       params=(StepParam("channel", "channel", required=True),
                               StepParam("recipient", "text", required=True,
                                         help="The address on that channel (URL, e-mail …)."),
                               MESSAGE)),
        EscalationStep("declare_major", "Declare a major incident", declare_major,
                       params=(StepParam("reason", "text"),),
                       description="Flags the incident (a banner on its page) and tells every admin."),
    ]
