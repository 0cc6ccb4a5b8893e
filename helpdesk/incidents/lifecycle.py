"""The lifecycle: new → assigned → in progress ⇄ pending → resolved → closed, or cancelled;
reopening a resolved incident, and closing resolved ones after the grace period."""

from __future__ import annotations

import datetime as dt
from typing import Any

from helpdesk.clock import now
from helpdesk.context import Context
from helpdesk.db import write_transaction
from helpdesk.errors import DomainError
from helpdesk.incidents.changes import apply, choice, follow_up, get
from helpdesk.models import PENDING_REASONS, RESOLUTION_CODES, STATUSES, Agent, Incident

# Legal status transitions. "assigned" is entered only by assigning a team
# (see :func:`helpdesk.incidents.assign`); pending → pending changes the pending
# reason; and resolved → in progress is a reopen (see :func:`reopen`).
TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"in_progress", "pending", "resolved", "cancelled"}),
    "assigned": frozenset({"in_progress", "pending", "resolved", "cancelled"}),
    "in_progress": frozenset({"pending", "resolved", "cancelled"}),
    "pending": frozenset({"in_progress", "resolved", "cancelled"}),
    "resolved": frozenset({"closed", "in_progress"}),
    "closed": frozenset(),
    "cancelled": frozenset(),
}

#: Canned resolutions for the one-step "Resolve" quick action: key -> (resolution code, note
#: sent to the requester). Constants on purpose: a short list every agent shares; an agent
#: edits the note before sending when the case needs more words.
CANNED_RESOLUTIONS: dict[str, tuple[str, str]] = {
    "restored": ("fixed", "The service is working again. Please tell us if the problem comes back."),
    "password": ("fixed", "Your password was reset and you can log in again."),
    "workaround": ("workaround", "A workaround is in place; the permanent fix will follow."),
    "answered": ("information", "Your question is answered above; reply if anything is unclear."),
    "no_fault": ("no_fault", "We could not find a fault; reply if it happens again, with the time it did."),
}
#: The status an agent most likely moves to next, preselected in the status form.
NEXT_STATUS = {"new": "in_progress", "assigned": "in_progress", "in_progress": "resolved",
               "pending": "in_progress", "resolved": "closed"}


def allowed_transitions(incident: Incident) -> frozenset[str]:
    return TRANSITIONS[incident.status]


def change_status(
    ctx: Context,
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
    choice(status, STATUSES, "status")
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
        if old == "resolved" and status == "in_progress":
            return _reopen(ctx, incident, actor, expected_version, note)
        changes: dict[str, Any] = {"status": status, "pending_reason": None}
        stamp = now()
        if status == "pending":
            changes["pending_reason"] = choice(pending_reason, PENDING_REASONS, "pending reason")
        if status == "resolved":
            if not note:
                raise DomainError("Resolving needs a resolution note: what restored the service?")
            changes.update(
                resolution_code=choice(resolution_code or "fixed", RESOLUTION_CODES, "resolution code"),
                resolution_note=note,
                resolved_at=stamp,
            )
        if status == "cancelled" and not note:
            raise DomainError("Give a reason for cancelling.")
        if status == "closed":
            changes["closed_at"] = stamp
        record = {"status": (old, status)} if status != old else {}
        if changes["pending_reason"] != incident.pending_reason:
            record["pending_reason"] = (incident.pending_reason, changes["pending_reason"])
        if status == "resolved":
            record["resolution_code"] = (incident.resolution_code, changes["resolution_code"])
        # One action, one timeline entry: the reason or the code is said in the status entry.
        said = ""
        if status == "pending" and status != old:
            said = f"Pending reason: {PENDING_REASONS[changes['pending_reason']]}."
        elif status == "resolved":
            said = f"Resolution code: {RESOLUTION_CODES[changes['resolution_code']]}."
        body = "\n\n".join(part for part in (said, note) if part)
        change = apply(incident, actor, changes, expected_version, record=record, body=body,
                       one_entry=True)
        return follow_up(ctx, change, actor)


def reopen(ctx: Context, incident_id: int, actor: Agent | None, expected_version: int | None = None,
           note: str = "") -> Incident:
    with write_transaction():
        incident = get(incident_id)
        if incident.status != "resolved":
            raise DomainError(
                f"Only a resolved incident can be reopened; {incident.reference} is "
                f"{STATUSES[incident.status].lower()}."
            )
        return _reopen(ctx, incident, actor, expected_version, note)


def _reopen(ctx: Context, incident: Incident, actor: Agent | None, expected_version: int | None,
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
    change = apply(incident, actor,
                   {"status": status, "resolved_at": None, "resolution_code": None, "resolution_note": None},
                   expected_version, record={"status": (incident.status, status)}, body=note.strip())
    return follow_up(ctx, change, actor)


def close_resolved(ctx: Context, days: int, batch: int = 200) -> list[int]:
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
            change_status(ctx, row.id, None, "closed", row.version,
                          note=f"Closed automatically {days} days after resolution.")
        except DomainError:  # reopened or changed meanwhile: leave it
            continue
        closed.append(row.id)
    return closed
