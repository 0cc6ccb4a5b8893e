"""Functional escalation modes: "open" (any agent reassigns) and "refer and request".

While an incident is assigned to a team in refer mode, that team's own agents cannot move it
to another team (or unassign the team) themselves: they hand it back to the owning team with a
request, optionally naming the team they suggest, and the owner accepts (the suggested team,
or the owning team's queue, gets it) or rejects (with a reason; it stays). The rule lives here
and :mod:`helpdesk.incidents.responsibility` applies it to every reassignment, so the incident
page, bulk queue actions, macros and the API obey it alike. Escalation steps run by the system
(no actor) are not bound by it.

Who is bound: members of the assigned refer-mode team who are not on the owner's side (the
owner agent, members of the owning team — a team's own incidents are not referred). Team
leads and admins may override (the reassignment's timeline entry says so).

Who decides a request: the owner agent while one is active; when nobody (active) owns the
incident, any member of the owning team; the owning team's leads and admins always (stand-ins
when the owner is away). The owner — or, when nobody owns it, the owning team's leads — is
notified (kind ``hand_back``); the agent who asked hears of the decision (``hand_back_decided``).
"""

from __future__ import annotations

from helpdesk import events
from helpdesk.clock import now
from helpdesk.context import Context
from helpdesk.db import Statement, for_update, write_transaction
from helpdesk.errors import DomainError, NotFound, PermissionDenied
from helpdesk.incidents.changes import Pair, entry, get
from helpdesk.models import Agent, HandBack, Incident, Team
from helpdesk.people import is_member

MAX_REQUEST = 2000


def pending(incident_id: int) -> HandBack | None:
    """The incident's hand-back request awaiting a decision, if any."""
    for (request,) in _PENDING.rows(incident_id):
        return request
    return None


_PENDING = Statement(lambda incident_id: HandBack.select().where(
    (HandBack.incident == incident_id) & (HandBack.state == "pending")).order_by(HandBack.id.desc()).limit(1),
    models=(HandBack,))


def _owner_side(incident: Incident, actor: Agent) -> bool:
    return incident.owner_agent_id == actor.id or is_member(actor, incident.owner_team_id)


def bound_by_refer(incident: Incident, actor: Agent | None) -> bool:
    """Whether ``actor`` works in the incident's assigned team under refer-and-request (before
    the lead/admin override): then they hand it back instead of reassigning it elsewhere."""
    team = incident.assigned_team
    if actor is None or team is None or team.escalation_mode != "refer":
        return False
    if incident.owner_team_id == team.id or not is_member(actor, team):
        return False
    return not _owner_side(incident, actor)


def check_reassignment(incident: Incident, actor: Agent | None, team: Team | None) -> str:
    """Refuse a move of the incident away from a refer-mode team by one of its own agents;
    returns a note for the timeline when a lead or admin overrides the rule ("" otherwise)."""
    new_team_id = team.id if team is not None else None
    if new_team_id == incident.assigned_team_id or not bound_by_refer(incident, actor):
        return ""
    specialist = incident.assigned_team
    if actor.is_lead:
        who = "an admin" if actor.is_admin else "a team lead"
        return f"Reassigned directly by {who}, overriding {specialist.name}'s refer-and-request mode."
    raise PermissionDenied(
        f"{specialist.name} works in refer-and-request mode: its agents cannot reassign "
        f"{incident.reference} to another team themselves. Hand it back to {incident.owner_team.name} "
        "with a request (the owner accepts or rejects it), or ask a team lead.")


def check_ownership_change(incident: Incident, actor: Agent | None) -> None:
    """Refuse a specialist bound by refer mode taking or transferring the ownership of an
    incident nobody owns: once on the owner's side they were no longer bound, so the two
    steps moved the incident anywhere (leads and admins may, as they may reassign it)."""
    if actor is None or actor.is_lead or not bound_by_refer(incident, actor):
        return
    specialist = incident.assigned_team
    raise PermissionDenied(
        f"{specialist.name} works in refer-and-request mode: its agents cannot take or transfer "
        f"the ownership of {incident.reference}, which stays with {incident.owner_team.name}. Hand it "
        "back with a request, or ask a team lead.")


def lapse(incident: Incident, new_team_id: int | None) -> str:
    """When the incident leaves the team that asked, its pending request lapses; returns a line
    for the reassignment's timeline entry ("" when there was none)."""
    request = pending(incident.id)
    if request is None or request.team_id == new_team_id:
        return ""
    HandBack.update(state="lapsed", decided_at=now()).where(HandBack.id == request.id).execute()
    return "The pending hand-back request lapsed."


def can_hand_back(incident: Incident, actor: Agent) -> bool:
    """Members of the assigned team, while it works in refer mode and the incident is open."""
    team = incident.assigned_team
    return (incident.is_active and team is not None and team.escalation_mode == "refer"
            and incident.owner_team_id != team.id and is_member(actor, team))


def can_decide(incident: Incident, actor: Agent) -> bool:
    """The owner agent (while active); any member of the owning team when nobody active owns it;
    the owning team's leads and admins always."""
    if actor.is_admin or incident.owner_agent_id == actor.id:
        return True
    in_owning_team = is_member(actor, incident.owner_team_id)
    if actor.role == "lead" and in_owning_team:
        return True
    unowned = incident.owner_agent_id is None or not incident.owner_agent.active
    return unowned and in_owning_team


def _locked(incident_id: int) -> Incident:
    for_update(Incident.select(Incident.id).where(Incident.id == incident_id)).execute()
    return get(incident_id)


def hand_back(ctx: Context, incident_id: int, actor: Agent, request: str,
              suggested_team: Team | None = None) -> HandBack:
    """Hand the incident back to its owner with a request (required), optionally suggesting the
    team it should go to; one timeline entry, and the owner is told."""
    request = (request or "").strip()
    if not request:
        raise DomainError("Say what you request of the owner (a text is required).")
    if len(request) > MAX_REQUEST:
        raise DomainError(f"The request is limited to {MAX_REQUEST} characters.")
    with write_transaction():
        incident = _locked(incident_id)
        if not incident.is_active:
            raise DomainError(f"{incident.reference} is no longer open; there is nothing to hand back.")
        if not can_hand_back(incident, actor):
            raise PermissionDenied(
                f"Only agents of the assigned team can hand {incident.reference} back, and only while "
                "that team works in refer-and-request mode.")
        waiting = pending(incident.id)
        if waiting is not None:
            raise DomainError(f"{incident.reference} already has a hand-back request awaiting the owner "
                              f"(from {waiting.requested_by or 'someone'}).")
        if suggested_team is not None:
            if not suggested_team.active:
                raise DomainError(f"The team {suggested_team.name} is inactive; suggest another.")
            if suggested_team.id == incident.assigned_team_id:
                raise DomainError(f"{incident.reference} is with {suggested_team.name} already; "
                                  "suggest another team or none.")
        record = HandBack.create(incident=incident.id, team=incident.assigned_team_id, requested_by=actor,
                                 requested_at=now(), request=request, suggested_team=suggested_team)
        suggestion = f"\n\nSuggested team: {suggested_team.name}." if suggested_team else ""
        entry(incident.id, actor, "change", field="hand_back", old_value=None, new_value="requested",
              body=f"Handed back to {incident.owner_team.name} by {incident.assigned_team.name}: "
                   f"{request}{suggestion}")
        events.emit(ctx, "incident_hand_back", incident.id, actor, hand_back=record.id,
                    request=request, team=incident.assigned_team.name,
                    suggested_team=suggested_team.name if suggested_team else None)
    return record


def _deciding(incident_id: int, actor: Agent) -> tuple[Incident, HandBack]:
    incident = _locked(incident_id)
    request = pending(incident.id)
    if request is None:
        raise NotFound(f"{incident.reference} has no hand-back request awaiting a decision.")
    if not can_decide(incident, actor):
        raise PermissionDenied(f"Only the owner ({incident.owner_agent or incident.owner_team.name}), "
                               f"a lead of {incident.owner_team.name} or an admin can decide a hand-back.")
    if not incident.is_active:
        raise DomainError(f"{incident.reference} is no longer open; reopen it first.")
    return incident, request


def accept(ctx: Context, incident_id: int, actor: Agent, team: Team | None = None,
           expected_version: int | None = None) -> Incident:
    """Accept the pending request: the incident goes to ``team`` — by default the suggested
    team, else the owning team's queue — with no agent; never back to the team that asked
    (that is a rejection, which needs a reason). One timeline entry (the reassignment, saying
    whose request it answers). ``expected_version``: refused if the incident moved since."""
    from helpdesk.incidents.responsibility import reassign_checked

    with write_transaction():
        incident, request = _deciding(incident_id, actor)
        target = team or request.suggested_team or incident.owner_team
        if target.id == request.team_id:
            raise DomainError(f"{target.name} asked to hand {incident.reference} back; accept it to "
                              "another team, or reject the request with a reason.")
        HandBack.update(state="accepted", decided_by=actor, decided_at=now(),
                        decision=f"assigned to {target.name}").where(HandBack.id == request.id).execute()
        note = (f"Accepted the hand-back from {request.team.name} ({request.requested_by or 'someone'}): "
                f"{request.request}")
        after = reassign_checked(ctx, incident, actor, target, None, note, expected_version)
        events.emit(ctx, "incident_hand_back_decided", incident.id, actor, hand_back=request.id,
                    requested_by=request.requested_by_id, decision="accepted",
                    assignee=str(Pair(target, None)))
        return after


def reject(ctx: Context, incident_id: int, actor: Agent, reason: str) -> HandBack:
    """Reject the pending request with a reason: the incident stays with the team that asked."""
    reason = " ".join((reason or "").split())
    if not reason:
        raise DomainError("Give a reason for rejecting the hand-back.")
    with write_transaction():
        incident, request = _deciding(incident_id, actor)
        HandBack.update(state="rejected", decided_by=actor, decided_at=now(), decision=reason[:2000]) \
            .where(HandBack.id == request.id).execute()
        entry(incident.id, actor, "change", field="hand_back", old_value="requested", new_value="rejected",
              body=f"Rejected the hand-back from {request.team.name}; it stays with them: {reason}")
        events.emit(ctx, "incident_hand_back_decided", incident.id, actor, hand_back=request.id,
                    requested_by=request.requested_by_id, decision="rejected", reason=reason)
        return HandBack.get_by_id(request.id)
