"""Who answers for an incident (the owner pair) and who works on it (the assignee pair),
changed independently of each other."""

from __future__ import annotations

from typing import Any

from helpdesk.context import Context
from helpdesk.db import for_update, write_transaction
from helpdesk.errors import DomainError, PermissionDenied, StaleVersion
from helpdesk.incidents import handback
from helpdesk.incidents.changes import (
    Pair,
    apply,
    assignee,
    check_assignee,
    check_owner,
    follow_up,
    get,
    owner,
    reason_text,
)
from helpdesk.incidents.intake import home_team
from helpdesk.models import ACTIVE_STATUSES, STATUSES, Agent, Incident, Team
from helpdesk.people import is_member, team_ids_of


def take_ownership(ctx: Context, incident_id: int, actor: Agent,
                   expected_version: int | None = None) -> Incident:
    """Any agent may take an unowned incident; exactly one of two racing agents wins."""
    with write_transaction():
        incident = get(incident_id)
        if incident.status in {"closed", "cancelled"}:
            raise DomainError(f"{incident.reference} is {incident.status}; its owner stays on record.")
        if incident.owner_agent_id is not None:
            if incident.owner_agent_id == actor.id:
                return incident
            raise DomainError(
                f"{incident.reference} is already owned by {incident.owner_agent}; "
                "ask them, a team lead or an admin to transfer it."
            )
        handback.check_ownership_change(incident, actor)
        team = incident.owner_team
        if not is_member(actor, team):
            team = home_team(actor, team)
        previous = owner(incident)
        try:
            change = apply(incident, actor, {"owner_team": team, "owner_agent": actor}, expected_version,
                           extra_where=Incident.owner_agent.is_null(),
                           record={"owner": (previous, Pair(team, actor))}, body="Took ownership")
        except StaleVersion as lost:
            if lost.incident.owner_agent_id == actor.id:
                return lost.incident  # the same agent's other request won: taking it again is a no-op
            if lost.incident.owner_agent_id not in (None, actor.id):
                lost.args = (f"{incident.reference} was just taken by {lost.incident.owner_agent}.",)
            raise
        return follow_up(ctx, change, actor, reason="taken")


def take_work(ctx: Context, incident_id: int, actor: Agent,
              expected_version: int | None = None, *, claim_only: bool = False) -> Incident:
    """"Take": assign the incident to me and start work on it, in one change.

    The assigned team stays when I am in it, otherwise it becomes my home team. Only an
    incident with no assigned agent (or already mine) can be taken, so of two agents
    taking at once exactly one wins; the other is told who did. A pending incident is
    taken back into progress, since taking it means working on it now.

    ``claim_only`` is the keyboard's take (a key pressed by mistake must not move what the
    agent did not mean to move): an incident already mine is left exactly as it is, and a
    pending one stays pending, waiting as before; only the assignee pair becomes mine.
    """
    with write_transaction():
        incident = get(incident_id)
        if not incident.is_active:
            raise DomainError(f"{incident.reference} is {STATUSES[incident.status].lower()}; "
                              "reopen it before taking it.")
        if claim_only and incident.assigned_agent_id == actor.id:
            return incident  # already mine: nothing to claim, nothing else moves
        if incident.assigned_agent_id not in (None, actor.id):
            if expected_version is not None and expected_version != incident.version:
                raise StaleVersion(f"{incident.reference} was taken by {incident.assigned_agent} since you "
                                   "opened it (your change was not saved). Here is the current state.",
                                   incident)
            raise DomainError(f"{incident.reference} is assigned to {incident.assigned_agent}; "
                              "ask them, or reassign it.")
        team = incident.assigned_team
        if team is None or not is_member(actor, team):
            team = home_team(actor, team or incident.owner_team)
        changes: dict[str, Any] = {"assigned_team": team, "assigned_agent": actor}
        record: dict[str, tuple[Any, Any]] = {}
        if (incident.assigned_team_id, incident.assigned_agent_id) != (team.id, actor.id):
            record["assignee"] = (assignee(incident), Pair(team, actor))
        if incident.status != "in_progress" and not (claim_only and incident.status == "pending"):
            changes.update(status="in_progress", pending_reason=None)
            record["status"] = (incident.status, "in_progress")
            if incident.pending_reason is not None:
                record["pending_reason"] = (incident.pending_reason, None)
        if not record:
            return incident  # mine and in progress already: taking it again changes nothing
        done = [f"assigned to {Pair(team, actor)}"] if "assignee" in record else []
        if "status" in record:
            done.append("in progress")
        lapsed = handback.lapse(incident, team.id) if team.id != incident.assigned_team_id else ""
        try:
            change = apply(incident, actor, changes, expected_version,
                           extra_where=(Incident.assigned_agent.is_null()
                                        | (Incident.assigned_agent == actor.id)),
                           record=record, one_entry=True,
                           body=" ".join(filter(None, [f"Took it: {' and '.join(done)}.", lapsed])))
        except StaleVersion as lost:
            if lost.incident.assigned_agent_id == actor.id and (claim_only
                                                                or lost.incident.status == "in_progress"):
                return lost.incident  # my own other request won: taking it again is a no-op
            if lost.incident.assigned_agent_id not in (None, actor.id):
                lost.args = (f"{incident.reference} was just taken by {lost.incident.assigned_agent}.",)
            raise
        return follow_up(ctx, change, actor, reason="taken")


def can_transfer(incident: Incident, actor: Agent) -> bool:
    """The owner, a lead of the owning team, or an admin may transfer ownership of an incident
    that is still open or resolved (a closed or cancelled one is history)."""
    if incident.status in {"closed", "cancelled"}:
        return False
    if actor.is_admin or incident.owner_agent_id is None or incident.owner_agent_id == actor.id:
        return True
    return actor.role == "lead" and is_member(actor, incident.owner_team_id)


def transfer_ownership(ctx: Context, incident_id: int, actor: Agent, team: Team, agent: Agent | None,
                       reason: str, expected_version: int | None = None) -> Incident:
    reason = reason_text(reason, "transferring ownership")
    with write_transaction():
        incident = get(incident_id)
        if incident.status in {"closed", "cancelled"}:
            raise DomainError(f"{incident.reference} is {incident.status}; its owner stays on record.")
        if not can_transfer(incident, actor):
            raise PermissionDenied(
                f"Only the owner ({incident.owner_agent}), a lead of {incident.owner_team} "
                "or an admin can transfer ownership."
            )
        handback.check_ownership_change(incident, actor)
        if incident.owner_agent_id is not None and not reason:
            raise DomainError("Give a reason for transferring ownership.")
        check_owner(team, agent)
        previous = owner(incident)
        change = apply(incident, actor, {"owner_team": team, "owner_agent": agent}, expected_version,
                       record={"owner": (previous, Pair(team, agent))}, body=reason)
        return follow_up(ctx, change, actor, reason=reason)


def assign(ctx: Context, incident_id: int, actor: Agent | None, team: Team | None, agent: Agent | None,
           expected_version: int | None = None, note: str = "") -> Incident:
    """Set the assigned team and agent (independent of the owner).

    Assigning a new incident moves it to "assigned"; removing the team of an
    assigned one moves it back to "new". A team in refer-and-request mode keeps
    its incidents until the owner takes them back (:mod:`.handback`).
    """
    with write_transaction():
        incident = get(incident_id)
        override = handback.check_reassignment(incident, actor, team)
        return reassign_checked(ctx, incident, actor, team, agent, note, expected_version, override)


def reassign_checked(ctx: Context, incident: Incident, actor: Agent | None, team: Team | None,
                     agent: Agent | None, note: str = "", expected_version: int | None = None,
                     *extra: str) -> Incident:
    """:func:`assign` once the refer rule was applied (or does not apply: an accepted hand-back);
    inside the caller's transaction."""
    if not incident.is_active:
        raise DomainError(
            f"{incident.reference} is {STATUSES[incident.status].lower()}; "
            "reopen it before reassigning."
        )
    check_assignee(team, agent)
    if team is not None and not team.active and team.id != incident.assigned_team_id:
        raise DomainError(f"The team {team.name} is inactive and takes no new work; choose another.")
    changes: dict[str, Any] = {"assigned_team": team, "assigned_agent": agent}
    record: dict[str, tuple[Any, Any]] = {"assignee": (assignee(incident), Pair(team, agent))}
    status = incident.status
    if team is not None and status == "new":
        status = "assigned"
    elif team is None and status == "assigned":
        status = "new"
    lines = [note.strip(), *extra]
    if status != incident.status:
        changes["status"] = status
        record["status"] = (incident.status, status)
        # One entry for the action: the status entry says where the incident went.
        lines.insert(0, f"Assigned to {Pair(team, agent)}." if team else "Unassigned.")
    if incident.assigned_team_id != (team.id if team is not None else None):
        lines.append(handback.lapse(incident, team.id if team is not None else None))
    note = "\n\n".join(part for part in lines if part)
    change = apply(incident, actor, changes, expected_version, record=record, body=note,
                   one_entry=True)
    return follow_up(ctx, change, actor)


def release_agent(ctx: Context, agent: Agent, actor: Agent | None = None) -> list[int]:
    """Give back every incident an agent may no longer answer for: owned or worked on while
    they are deactivated, or under a team they are no longer in. The pair keeps its team and
    loses its agent, so the incident shows in that team's Unowned or Unassigned queue; left
    alone it would sit with someone who cannot log in or act for that team, unreviewed and
    never announced to anyone. Resolved incidents lose their owner too (the owner reviews
    them until they close and takes them back when the customer reopens them).

    Written as the system's change (``actor`` is named in the entry, not as its author: no
    agent acted on the incident, so no SLA response is met). Inside the caller's transaction;
    returns the incidents' ids."""
    agent = Agent.get_by_id(agent.id)
    teams = team_ids_of(agent) if agent.active else []
    owned = (Incident.owner_agent == agent.id) & Incident.status.not_in(["closed", "cancelled"])
    worked = (Incident.assigned_agent == agent.id) & Incident.status.in_(list(ACTIVE_STATUSES))
    if teams:
        owned &= Incident.owner_team.not_in(teams)
        worked &= Incident.assigned_team.not_in(teams)
    with write_transaction():
        ids = [row.id for row in for_update(Incident.select(Incident.id).where(owned | worked)
                                            .order_by(Incident.id))]
        by = f" (by {actor})" if actor is not None else ""
        for incident_id in ids:
            incident = get(incident_id)
            changes: dict[str, Any] = {}
            record: dict[str, tuple[Any, Any]] = {}
            if incident.owner_agent_id == agent.id and incident.owner_team_id not in teams \
                    and incident.status not in {"closed", "cancelled"}:
                changes["owner_agent"] = None
                record["owner"] = (owner(incident), Pair(incident.owner_team, None))
            if incident.assigned_agent_id == agent.id and incident.assigned_team_id not in teams \
                    and incident.is_active:
                changes["assigned_agent"] = None
                record["assignee"] = (assignee(incident), Pair(incident.assigned_team, None))
            if not changes:
                continue
            left = " and ".join(dict.fromkeys(new.team.name for _old, new in record.values()))
            why = f"{agent} was deactivated{by}" if not agent.active else f"{agent} left {left}{by}"
            back = " and ".join(
                f"{'ownership' if name == 'owner' else 'the work'} back to {new.team.name}"
                for name, (_old, new) in record.items())
            # one entry for the one action (the body says both when both went back)
            change = apply(incident, None, changes, None, record=record, one_entry=True,
                           body=f"{why}: {back}, for someone there to take.")
            follow_up(ctx, change, None, reason=why)
    return ids
