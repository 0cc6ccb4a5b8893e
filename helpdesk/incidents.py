"""Every state change of an incident, and nothing else.

Each function checks the rules, writes the change together with its timeline
entries in one transaction, and queues the plugin event to fire after commit.
Views, the CLI and intake call these functions; they never write incidents
themselves. Changes are conditional on the version read (optimistic locking),
so two concurrent edits can never silently overwrite each other.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import peewee

from helpdesk import events, sla
from helpdesk.clock import now
from helpdesk.db import for_update, write_transaction
from helpdesk.errors import DomainError, NotFound, PermissionDenied, StaleVersion
from helpdesk.models import (
    LEVELS,
    PENDING_REASONS,
    PRIORITIES,
    RESOLUTION_CODES,
    SOURCES,
    STATUSES,
    TYPES,
    Agent,
    Category,
    Contact,
    Incident,
    Service,
    Team,
    TimelineEntry,
)
from helpdesk.people import is_member

# Legal status transitions. "assigned" is entered only by assigning a team
# (see :func:`assign`); pending → pending changes the pending reason; and
# resolved → in progress is a reopen (see :func:`reopen`).
TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"in_progress", "pending", "resolved", "cancelled"}),
    "assigned": frozenset({"in_progress", "pending", "resolved", "cancelled"}),
    "in_progress": frozenset({"pending", "resolved", "cancelled"}),
    "pending": frozenset({"in_progress", "resolved", "cancelled"}),
    "resolved": frozenset({"closed", "in_progress"}),
    "closed": frozenset(),
    "cancelled": frozenset(),
}
MAX_TITLE = 200


@dataclass(frozen=True)
class Pair:
    """A team + agent pair (owner or assignee), shown as "Team / Agent"."""

    team: Team | None
    agent: Agent | None

    def __str__(self) -> str:
        return f"{self.team.name if self.team else '—'} / {self.agent if self.agent else '—'}"


def get(incident_id: int) -> Incident:
    incident = Incident.get_or_none(Incident.id == incident_id)
    if incident is None:
        raise NotFound(f"There is no incident INC-{incident_id}.")
    return incident


def owner(incident: Incident) -> Pair:
    return Pair(incident.owner_team, incident.owner_agent)


def assignee(incident: Incident) -> Pair:
    return Pair(incident.assigned_team, incident.assigned_agent)


def derive_priority(pm: Any, impact: str, urgency: str) -> int:
    priority = pm.hook.helpdesk_priority(impact=impact, urgency=urgency)
    if priority not in PRIORITIES:
        raise DomainError(f"The priority rule returned {priority!r}, which is not 1–4.")
    return priority


def _choice(value: str | None, choices: dict, what: str) -> str:
    if value not in choices:
        raise DomainError(f"Unknown {what} {value!r}; choose one of: {', '.join(choices)}.")
    return value


def _title(value: str | None) -> str:
    title = " ".join((value or "").split())
    if not title:
        raise DomainError("A title is required.")
    if len(title) > MAX_TITLE:
        raise DomainError(f"The title is limited to {MAX_TITLE} characters.")
    return title


def _check_assignee(team: Team | None, agent: Agent | None) -> None:
    if agent is not None and team is None:
        raise DomainError("Choose the assigned team as well as the agent.")
    if agent is not None and not agent.active:
        raise DomainError(f"{agent} is deactivated and cannot be assigned.")
    if agent is not None and not is_member(agent, team):
        raise DomainError(f"{agent} is not a member of {team.name}; choose an agent of that team.")


def _check_owner(team: Team | None, agent: Agent | None) -> None:
    if team is None:
        raise DomainError("An incident always has an owning team.")
    if agent is not None and not agent.active:
        raise DomainError(f"{agent} is deactivated and cannot own incidents.")
    if agent is not None and not is_member(agent, team):
        raise DomainError(f"{agent} is not a member of {team.name}; choose an agent of that team.")


def _entry(incident_id: int, actor: Agent | None, kind: str, **values: Any) -> TimelineEntry:
    return TimelineEntry.create(incident=incident_id, actor=actor, kind=kind, at=now(), **values)


def _display(field: str, value: Any) -> str | None:
    if value is None:
        return None
    labels = {
        "status": STATUSES,
        "impact": LEVELS,
        "urgency": LEVELS,
        "type": TYPES,
        "priority": PRIORITIES,
        "pending_reason": PENDING_REASONS,
        "resolution_code": RESOLUTION_CODES,
    }.get(field)
    if labels is not None:
        return labels.get(value, str(value))
    if isinstance(value, Incident):
        return value.reference
    return str(value)


def _apply(
    incident: Incident,
    actor: Agent | None,
    changes: dict[str, Any],
    expected_version: int | None,
    *,
    extra_where: Any = None,
    record: dict[str, tuple[Any, Any]] | None = None,
    body: str = "",
) -> Incident:
    """Write ``changes`` if the incident is still at the version read.

    One timeline entry per changed field (old → new) is written in the same
    transaction. ``record`` replaces per-field entries with named ones (e.g.
    the owner pair as one entry). Returns the fresh incident.
    """
    if expected_version is not None and expected_version != incident.version:
        raise StaleVersion(
            f"{incident.reference} was changed by someone else since you opened it "
            "(your change was not saved). Here is the current state.",
            incident,
        )
    changed = {
        name: value
        for name, value in changes.items()
        if _raw(incident, name) != (value.id if isinstance(value, peewee.Model) else value)
    }
    if not changed:
        return incident
    stamp = now()
    query = Incident.update(version=Incident.version + 1, updated_at=stamp, **changed).where(
        (Incident.id == incident.id) & (Incident.version == incident.version)
    )
    if extra_where is not None:
        query = query.where(extra_where)
    if query.execute() != 1:
        fresh = get(incident.id)
        raise StaleVersion(
            f"{incident.reference} was changed by someone else at the same moment "
            "(your change was not saved). Here is the current state.",
            fresh,
        )
    if record is None:
        record = {name: (getattr(incident, name), value) for name, value in changed.items()}
    for name, (old, new) in record.items():
        _entry(
            incident.id,
            actor,
            "change",
            field=name,
            old_value=_display(name, old),
            new_value=_display(name, new),
            body=body,
        )
    return get(incident.id)


def _raw(incident: Incident, name: str) -> Any:
    field = Incident._meta.fields[name]
    if isinstance(field, peewee.ForeignKeyField):
        return getattr(incident, field.object_id_name)
    return getattr(incident, name)


# -- logging a new incident --------------------------------------------------


def log_incident(
    pm: Any,
    *,
    title: str,
    actor: Agent | None,
    service_desk: Team,
    description: str = "",
    type: str = "incident",
    impact: str = "medium",
    urgency: str = "medium",
    category: Category | None = None,
    service: Service | None = None,
    requester: Contact | None = None,
    source: str | None = None,
    assigned_team: Team | None = None,
    assigned_agent: Agent | None = None,
    owner_team: Team | None = None,
    owner_agent: Agent | None = None,
    keep_ownership: bool = True,
) -> Incident:
    """Log a new incident.

    Ownership: logged by an agent, it is owned by that agent and their team
    (the service desk if they belong to it) unless they choose another owner
    or ``keep_ownership`` is false; arriving any other way (``actor`` None),
    the service desk owns it with no owning agent until someone takes it.
    """
    source = source or ("agent" if actor else "api")
    incident = Incident(
        title=_title(title),
        description=(description or "").strip(),
        type=_choice(type, TYPES, "type"),
        impact=_choice(impact, LEVELS, "impact"),
        urgency=_choice(urgency, LEVELS, "urgency"),
        category=category,
        service=service,
        requester=requester,
        source=_choice(source, SOURCES, "source"),
        created_by=actor,
    )
    incident.priority = derive_priority(pm, incident.impact, incident.urgency)

    if owner_team is None and owner_agent is None:
        if actor is not None and keep_ownership:
            owner_team, owner_agent = _home_team(actor, service_desk), actor
        else:
            owner_team = service_desk
    elif owner_team is None:
        owner_team = _home_team(owner_agent, service_desk)
    _check_owner(owner_team, owner_agent)

    if assigned_team is None and assigned_agent is None:
        assigned_team = pm.hook.helpdesk_route_incident(incident=incident)
    _check_assignee(assigned_team, assigned_agent)

    incident.owner_team, incident.owner_agent = owner_team, owner_agent
    incident.assigned_team, incident.assigned_agent = assigned_team, assigned_agent
    incident.status = "assigned" if assigned_team is not None else "new"
    stamp = now()
    incident.created_at = incident.updated_at = stamp
    with write_transaction():
        incident.save(force_insert=True)
        _entry(
            incident.id,
            actor,
            "created",
            body=f"Logged via {SOURCES[incident.source]}; owner {owner(incident)}"
            + (f"; assigned to {assignee(incident)}" if assigned_team else ""),
        )
        sla.on_created(incident)
        events.emit("incident_created", incident.id, actor)
        if assigned_team is not None:
            events.emit("incident_assigned", incident.id, actor, previous_team=None,
                        previous_agent=None)
    return incident


def _home_team(agent: Agent, service_desk: Team) -> Team:
    """The team an agent's incidents belong to: the service desk if they are in it."""
    if is_member(agent, service_desk):
        return service_desk
    membership = agent.memberships.order_by("id").first()
    if membership is None:
        raise DomainError(f"{agent} belongs to no team, so cannot own incidents.")
    return membership.team


# -- ownership -----------------------------------------------------------------


def take_ownership(incident_id: int, actor: Agent, expected_version: int | None = None) -> Incident:
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
        team = incident.owner_team
        if not is_member(actor, team):
            team = _home_team(actor, team)
        previous = owner(incident)
        try:
            fresh = _apply(
                incident,
                actor,
                {"owner_team": team, "owner_agent": actor},
                expected_version,
                extra_where=Incident.owner_agent.is_null(),
                record={"owner": (previous, Pair(team, actor))},
                body="Took ownership",
            )
        except StaleVersion as lost:
            if lost.incident.owner_agent_id not in (None, actor.id):
                lost.args = (
                    f"{incident.reference} was just taken by {lost.incident.owner_agent}.",
                )
            raise
        sla.on_response(fresh, public_reply=False)
        events.emit("incident_owner_changed", incident.id, actor, previous_team=previous.team,
                    previous_agent=previous.agent, reason="taken")
    return fresh


def can_transfer(incident: Incident, actor: Agent) -> bool:
    """The owner, a lead of the owning team, or an admin may transfer ownership."""
    if actor.is_admin or incident.owner_agent_id is None or incident.owner_agent_id == actor.id:
        return True
    return actor.role == "lead" and is_member(actor, incident.owner_team_id)


def transfer_ownership(
    incident_id: int,
    actor: Agent,
    team: Team,
    agent: Agent | None,
    reason: str,
    expected_version: int | None = None,
) -> Incident:
    reason = (reason or "").strip()
    with write_transaction():
        incident = get(incident_id)
        if not can_transfer(incident, actor):
            raise PermissionDenied(
                f"Only the owner ({incident.owner_agent}), a lead of {incident.owner_team} "
                "or an admin can transfer ownership."
            )
        if incident.status in {"closed", "cancelled"}:
            raise DomainError(f"{incident.reference} is {incident.status}; its owner stays on record.")
        if incident.owner_agent_id is not None and not reason:
            raise DomainError("Give a reason for transferring ownership.")
        _check_owner(team, agent)
        previous = owner(incident)
        fresh = _apply(
            incident,
            actor,
            {"owner_team": team, "owner_agent": agent},
            expected_version,
            record={"owner": (previous, Pair(team, agent))},
            body=reason,
        )
        if fresh is not incident:
            sla.on_response(fresh, public_reply=False)
            events.emit("incident_owner_changed", incident.id, actor,
                        previous_team=previous.team, previous_agent=previous.agent,
                        reason=reason)
    return fresh


# -- assignment ---------------------------------------------------------------


def assign(
    incident_id: int,
    actor: Agent | None,
    team: Team | None,
    agent: Agent | None,
    expected_version: int | None = None,
    note: str = "",
) -> Incident:
    """Set the assigned team and agent (independent of the owner).

    Assigning a new incident moves it to "assigned"; removing the team of an
    assigned one moves it back to "new".
    """
    with write_transaction():
        incident = get(incident_id)
        if not incident.is_active:
            raise DomainError(
                f"{incident.reference} is {STATUSES[incident.status].lower()}; "
                "reopen it before reassigning."
            )
        _check_assignee(team, agent)
        previous = assignee(incident)
        changes: dict[str, Any] = {"assigned_team": team, "assigned_agent": agent}
        record: dict[str, tuple[Any, Any]] = {"assignee": (previous, Pair(team, agent))}
        status = incident.status
        if team is not None and status == "new":
            status = "assigned"
        elif team is None and status == "assigned":
            status = "new"
        if status != incident.status:
            changes["status"] = status
            record["status"] = (incident.status, status)
        fresh = _apply(incident, actor, changes, expected_version, record=record, body=note)
        if fresh is not incident:
            if actor is not None:
                sla.on_response(fresh, public_reply=False)
            if status != incident.status:
                sla.on_status(fresh, incident.status, status)
            sla.on_retarget(fresh)  # the assigned team may count in another calendar
            events.emit("incident_assigned", incident.id, actor, previous_team=previous.team,
                        previous_agent=previous.agent)
            if status != incident.status:
                events.emit("incident_status_changed", incident.id, actor,
                            old_status=incident.status, new_status=status)
    return fresh


# -- lifecycle ----------------------------------------------------------------


def allowed_transitions(incident: Incident) -> frozenset[str]:
    return TRANSITIONS[incident.status]


def change_status(
    incident_id: int,
    actor: Agent | None,
    status: str,
    expected_version: int | None = None,
    *,
    note: str = "",
    pending_reason: str | None = None,
    resolution_code: str | None = None,
) -> Incident:
    """Move the incident along its lifecycle; an illegal transition is refused."""
    _choice(status, STATUSES, "status")
    note = (note or "").strip()
    with write_transaction():
        incident = get(incident_id)
        old = incident.status
        if status == old and status != "pending":
            raise DomainError(f"{incident.reference} is already {STATUSES[old].lower()}.")
        if status not in TRANSITIONS[old] and not (status == old == "pending"):
            raise DomainError(
                f"{incident.reference} cannot go from {STATUSES[old].lower()} to "
                f"{STATUSES[status].lower()}."
                + (" Assign a team to make it assigned." if status == "assigned" else "")
            )
        if status == "assigned" and incident.assigned_team_id is None:
            raise DomainError("Assign a team to make the incident assigned.")
        changes: dict[str, Any] = {"status": status, "pending_reason": None}
        stamp = now()
        if status == "pending":
            changes["pending_reason"] = _choice(pending_reason, PENDING_REASONS, "pending reason")
        if status == "resolved":
            if not note:
                raise DomainError("Resolving needs a resolution note: what restored the service?")
            changes.update(
                resolution_code=_choice(resolution_code or "fixed", RESOLUTION_CODES,
                                        "resolution code"),
                resolution_note=note,
                resolved_at=stamp,
            )
        if status == "cancelled" and not note:
            raise DomainError("Give a reason for cancelling.")
        if status == "closed":
            changes["closed_at"] = stamp
        if old == "resolved" and status == "in_progress":
            return _reopen(incident, actor, expected_version, note)
        record = {"status": (old, status)} if status != old else {}
        if changes["pending_reason"] != incident.pending_reason:
            record["pending_reason"] = (incident.pending_reason, changes["pending_reason"])
        if status == "resolved":
            record["resolution_code"] = (incident.resolution_code, changes["resolution_code"])
        fresh = _apply(incident, actor, changes, expected_version, record=record, body=note)
        if status == old:
            return fresh  # only the pending reason changed
        sla.on_status(fresh, old, status)
        if actor is not None:
            sla.on_response(fresh, public_reply=False)
        events.emit("incident_status_changed", incident.id, actor, old_status=old,
                    new_status=status)
        specific = {"resolved": "incident_resolved", "closed": "incident_closed"}.get(status)
        if specific:
            events.emit(specific, incident.id, actor)
    return fresh


def reopen(incident_id: int, actor: Agent | None, expected_version: int | None = None,
           note: str = "") -> Incident:
    with write_transaction():
        incident = get(incident_id)
        if incident.status != "resolved":
            raise DomainError(
                f"Only a resolved incident can be reopened; {incident.reference} is "
                f"{STATUSES[incident.status].lower()}."
            )
        return _reopen(incident, actor, expected_version, note)


def _reopen(incident: Incident, actor: Agent | None, expected_version: int | None,
            note: str) -> Incident:
    """Back to work: in progress with its agent, else assigned to its team, else new."""
    if not (note or "").strip():
        raise DomainError("Say why the incident is reopened.")
    if incident.assigned_agent_id is not None:
        status = "in_progress"
    elif incident.assigned_team_id is not None:
        status = "assigned"
    else:
        status = "new"
    fresh = _apply(
        incident,
        actor,
        {"status": status, "resolved_at": None, "resolution_code": None, "resolution_note": None},
        expected_version,
        record={"status": (incident.status, status)},
        body=note.strip(),
    )
    sla.on_status(fresh, incident.status, status)
    events.emit("incident_status_changed", incident.id, actor, old_status=incident.status,
                new_status=status)
    events.emit("incident_reopened", incident.id, actor)
    return fresh


# -- priority and details --------------------------------------------------------


def override_priority(
    incident_id: int,
    actor: Agent,
    priority: int | None,
    reason: str,
    expected_version: int | None = None,
    pm: Any = None,
) -> Incident:
    """Set the priority by hand (recorded with a reason); ``None`` returns to the derived one."""
    reason = (reason or "").strip()
    with write_transaction():
        incident = get(incident_id)
        if priority is None:
            if pm is None:
                raise DomainError("Cannot derive the priority without the plugin manager.")
            value, overridden = derive_priority(pm, incident.impact, incident.urgency), False
        else:
            if priority not in PRIORITIES:
                raise DomainError("Choose a priority from P1 to P4.")
            if not reason:
                raise DomainError("Give a reason for overriding the priority.")
            value, overridden = priority, True
        fresh = _apply(
            incident,
            actor,
            {"priority": value, "priority_overridden": overridden},
            expected_version,
            record={"priority": (incident.priority, value)},
            body=reason if overridden else "Priority derived from impact and urgency again",
        )
        if fresh.priority != incident.priority:
            sla.on_retarget(fresh)
        return fresh


def update_details(
    pm: Any,
    incident_id: int,
    actor: Agent,
    expected_version: int | None = None,
    **values: Any,
) -> Incident:
    """Edit title, description, type, impact, urgency, category, service or requester."""
    allowed = {"title", "description", "type", "impact", "urgency", "category", "service",
               "requester"}
    unknown = set(values) - allowed
    if unknown:
        raise DomainError(f"These fields cannot be edited here: {', '.join(sorted(unknown))}.")
    if "title" in values:
        values["title"] = _title(values["title"])
    if "description" in values:
        values["description"] = (values["description"] or "").strip()
    if "type" in values:
        _choice(values["type"], TYPES, "type")
    for level in ("impact", "urgency"):
        if level in values:
            _choice(values[level], LEVELS, level)
    with write_transaction():
        incident = get(incident_id)
        if incident.status in {"closed", "cancelled"}:
            raise DomainError(f"{incident.reference} is {incident.status}; it can no longer change.")
        if not incident.priority_overridden and ({"impact", "urgency"} & set(values)):
            values["priority"] = derive_priority(
                pm, values.get("impact", incident.impact), values.get("urgency", incident.urgency)
            )
        fresh = _apply(incident, actor, values, expected_version)
        if fresh is not incident:
            sla.on_retarget(fresh)  # the policy may key on any field; unchanged targets are kept
        return fresh


# -- conversation and links -------------------------------------------------------


def add_comment(incident_id: int, actor: Agent, body: str, *, public: bool) -> TimelineEntry:
    """Add a public reply to the customer or an internal note.

    Comments never conflict with edits: they append to the timeline and do not
    bump the version, so an agent typing a reply does not block an owner change.
    """
    body = (body or "").strip()
    if not body:
        raise DomainError("Write something before sending." if public else "The note is empty.")
    with write_transaction():
        incident = get(incident_id)
        if incident.status in {"closed", "cancelled"} and public:
            raise DomainError(f"{incident.reference} is {incident.status}; reply on a new incident.")
        entry = _entry(incident.id, actor, "reply" if public else "note", body=body)
        Incident.update(updated_at=entry.at).where(Incident.id == incident.id).execute()
        sla.on_response(incident, public_reply=public)
        events.emit("incident_commented", incident.id, actor, entry=entry.id, public=public,
                    body=body, actor_name=actor.display_name)
    return entry


def link(
    incident_id: int,
    actor: Agent,
    kind: str,
    other_id: int | None,
    expected_version: int | None = None,
) -> Incident:
    """Link to a parent incident, or mark as a duplicate (which also cancels it)."""
    if kind not in {"parent", "duplicate_of"}:
        raise DomainError("A link is either a parent or a duplicate-of link.")
    with write_transaction():
        if other_id is not None and other_id != incident_id:
            # Two links at once must not build a cycle: lock both rows, in id order.
            list(for_update(Incident.select(Incident.id).where(
                Incident.id.in_([incident_id, other_id])).order_by(Incident.id)))
        incident = get(incident_id)
        other = get(other_id) if other_id is not None else None
        if other is not None and other.id == incident.id:
            raise DomainError("An incident cannot be linked to itself.")
        if kind == "parent" and other is not None:
            ancestor: Incident | None = other
            seen: set[int] = set()
            while ancestor is not None and ancestor.id not in seen:
                if ancestor.id == incident.id:
                    raise DomainError(f"{other.reference} is already below {incident.reference}.")
                seen.add(ancestor.id)
                ancestor = ancestor.parent
        if kind == "duplicate_of":
            if other is None:
                raise DomainError("Name the incident this one duplicates.")
            if other.duplicate_of_id is not None:
                raise DomainError(f"{other.reference} is itself a duplicate; link to the original.")
            if not incident.is_active:
                raise DomainError(f"{incident.reference} is no longer active.")
            changes = {"duplicate_of": other, "status": "cancelled"}
            record = {"duplicate_of": (None, other), "status": (incident.status, "cancelled")}
            fresh = _apply(incident, actor, changes, expected_version, record=record,
                           body=f"Duplicate of {other.reference}")
            sla.on_status(fresh, incident.status, "cancelled")
            events.emit("incident_status_changed", incident.id, actor,
                        old_status=incident.status, new_status="cancelled")
            return fresh
        return _apply(incident, actor, {"parent": other}, expected_version)


def close_resolved(days: int, batch: int = 200) -> list[int]:
    """Close incidents resolved more than ``days`` ago (the customer did not reopen them)."""
    cutoff = now() - dt.timedelta(days=days)
    closed = []
    # Read the batch first: each close commits and runs its after-commit work, which may
    # close this thread's connection (immediate tasks) under a half-read cursor.
    due = list(Incident.select(Incident.id, Incident.version)
               .where((Incident.status == "resolved") & (Incident.resolved_at <= cutoff))
               .order_by(Incident.id).limit(batch))
    for row in due:
        try:
            change_status(row.id, None, "closed", row.version,
                          note=f"Closed automatically {days} days after resolution.")
        except DomainError:  # reopened or changed meanwhile: leave it
            continue
        closed.append(row.id)
    return closed
