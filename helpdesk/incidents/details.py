"""What an incident is about: priority (derived or overridden), descriptive fields, the
conversation (replies and notes) and links to other incidents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from helpdesk import attachments, events, reports, search, sla
from helpdesk.context import Context
from helpdesk.db import for_update, write_transaction
from helpdesk.errors import DomainError, StaleVersion
from helpdesk.incidents.changes import apply, choice, entry, follow_up, get, reason_text
from helpdesk.incidents.changes import title as clean_title
from helpdesk.incidents.intake import derive_priority
from helpdesk.incidents.lifecycle import change_status
from helpdesk.models import LEVELS, PRIORITIES, STATUSES, TYPES, Agent, Incident, TimelineEntry

EDITABLE = frozenset({"title", "description", "type", "impact", "urgency", "category", "service",
                      "requester"})


def override_priority(ctx: Context, incident_id: int, actor: Agent, priority: int | None, reason: str,
                      expected_version: int | None = None) -> Incident:
    """Set the priority by hand (recorded with a reason); ``None`` returns to the derived one."""
    reason = reason_text(reason, "overriding the priority")
    with write_transaction():
        incident = get(incident_id)
        if priority is None:
            value, overridden = derive_priority(ctx, incident.impact, incident.urgency), False
        else:
            if priority not in PRIORITIES:
                raise DomainError("Choose a priority from P1 to P4.")
            if not reason:
                raise DomainError("Give a reason for overriding the priority.")
            value, overridden = priority, True
        change = apply(incident, actor, {"priority": value, "priority_overridden": overridden},
                       expected_version, record={"priority": (incident.priority, value)},
                       body=reason if overridden else "Priority derived from impact and urgency again")
        return follow_up(ctx, change, actor)


def update_details(ctx: Context, incident_id: int, actor: Agent, expected_version: int | None = None,
                   **values: Any) -> Incident:
    """Edit title, description, type, impact, urgency, category, service or requester."""
    unknown = set(values) - EDITABLE
    if unknown:
        raise DomainError(f"These fields cannot be edited here: {', '.join(sorted(unknown))}.")
    if "title" in values:
        values["title"] = clean_title(values["title"])
    if "description" in values:
        values["description"] = (values["description"] or "").strip()
    if "type" in values:
        choice(values["type"], TYPES, "type")
    for level in ("impact", "urgency"):
        if level in values:
            choice(values[level], LEVELS, level)
    with write_transaction():
        incident = get(incident_id)
        if incident.status in {"closed", "cancelled"}:
            raise DomainError(f"{incident.reference} is {incident.status}; it can no longer change.")
        if not incident.priority_overridden and ({"impact", "urgency"} & set(values)):
            values["priority"] = derive_priority(
                ctx, values.get("impact", incident.impact), values.get("urgency", incident.urgency))
        return follow_up(ctx, apply(incident, actor, values, expected_version), actor)


#: Status labels (as status entries record them) of an incident whose work ended.
ENDED = frozenset(STATUSES[name] for name in ("resolved", "closed", "cancelled"))


def reply_conflict(incident: Incident, actor: Agent, expected_version: int | None,
                   seen: int | None) -> str | None:
    """Why a public reply written on an older page should not go out unseen, or ``None``.

    ``seen`` is the newest timeline entry the agent's page showed, ``expected_version`` the
    incident's version there. What the customer would notice counts: the incident was
    resolved, closed or cancelled (or reopened) meanwhile, the customer wrote again, or
    another agent replied to them. A field edit, a reassignment or a note does not.
    """
    if seen is None:
        if expected_version is None or expected_version == incident.version:
            return None
        if incident.status in {"resolved", "closed", "cancelled"}:
            return f"{incident.reference} is {STATUSES[incident.status].lower()} now"
        return None
    for later in (TimelineEntry.select().where((TimelineEntry.incident == incident.id)
                                               & (TimelineEntry.id > seen)).order_by(TimelineEntry.id)):
        if (later.kind == "change" and later.field == "status"
                and ({later.old_value, later.new_value} & ENDED)):
            by = f" by {later.actor.display_name}" if later.actor_id else ""
            return (f"{incident.reference} went from {later.old_value} to {later.new_value}{by} "
                    "since your page was loaded")
        if later.kind == "customer":
            who = later.contact.name if later.contact_id else "The customer"
            return f"{who} wrote again since your page was loaded"
        if later.kind == "reply" and later.actor_id != actor.id:
            who = later.actor.display_name if later.actor_id else "Someone"
            return f"{who} replied to the customer since your page was loaded"
    return None


def add_comment(ctx: Context, incident_id: int, actor: Agent, body: str, *, public: bool,
                files: Sequence[tuple[str, bytes]] = (), expected_version: int | None = None,
                seen: int | None = None) -> TimelineEntry:
    """Add a public reply to the customer or an internal note, with the agent's ``files``
    (name, bytes) attached to it.

    Comments never conflict with edits: they append to the timeline and do not
    bump the version, so an agent typing a reply does not block an owner change.
    The one exception: a public reply to a **New** incident moves it in progress (the
    replying agent's status change, in the same transaction, with its timeline entry and
    follow-ups): once the desk answered the customer, the incident is being worked (ITIL).
    A note leaves the status alone, and so does a reply in any other status.
    A public reply written on an older page (``expected_version``, ``seen``: the version
    and newest timeline entry that page showed) is refused with :class:`StaleVersion` when
    the conversation moved meanwhile (:func:`reply_conflict`); sent again from the fresh
    page, it goes. Notes are never refused so: they stay with the desk.
    The files pass the same checks as a customer's (limits, ``helpdesk_attachment_verdict``,
    failing closed) before anything is written, and are recorded in the entry's transaction:
    a refused file leaves no entry, an entry never misses its files. A public reply's files
    go to the requester with its mail (read from storage when it is sent); a note's never leave
    the desk.
    """
    body = (body or "").strip()
    if not body:
        raise DomainError("Write something before sending." if public else "The note is empty.")
    files = list(files)
    if files:
        attachments.check(ctx, files)
    with write_transaction():
        incident = get(incident_id)
        if incident.status in {"closed", "cancelled"} and public:
            raise DomainError(f"{incident.reference} is {incident.status}; reply on a new incident.")
        moved = reply_conflict(incident, actor, expected_version, seen) if public else None
        if moved:
            raise StaleVersion(f"Your reply was not sent: {moved}. It is still here: read what "
                               "changed, then send it as it is, change it, or make it an internal "
                               "note.", incident)
        note = entry(incident.id, actor, "reply" if public else "note", body=body)
        for name, data in files:
            attachments.store(ctx, incident.id, note.id, name, data, agent=actor)
        Incident.update(updated_at=note.at).where(Incident.id == incident.id).execute()
        search.refresh(incident.id, unchanged=incident)  # (its words are the entries' and its own)
        met = sla.on_response(ctx, incident, public_reply=public)
        starts_work = public and incident.status == "new"
        if (met or not incident.is_active) and not starts_work:
            # An active incident's report fact changes with its clocks only (an ended one's
            # end day may follow its last change), so a later comment leaves it as it is.
            # (A reply that starts the work refreshes it with its status change.)
            reports.refresh(ctx, incident.id)
        events.emit(ctx, "incident_commented", incident.id, actor, entry=note.id, public=public,
                    body=body, actor_name=actor.display_name, attachments=len(files))
        if starts_work:
            _start_work(ctx, incident.id, actor)
    return note


def _start_work(ctx: Context, incident_id: int, actor: Agent) -> None:
    """An agent answered a New incident's customer: it is in progress now, by that agent's
    status change (timeline entry, SLA, events as for the status form). Read again first: the
    update of ``updated_at`` above holds the row, so a status another agent set meanwhile is
    seen here and left as it is."""
    status = Incident.select(Incident.status).where(Incident.id == incident_id).scalar()
    if status == "new":
        change_status(ctx, incident_id, actor, "in_progress")


def link(ctx: Context, incident_id: int, actor: Agent, kind: str, other_id: int | None,
         expected_version: int | None = None) -> Incident:
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
            copy = Incident.select(Incident.id).where(Incident.duplicate_of == incident.id).first()
            if copy is not None:  # a chain would leave its duplicates pointing at a cancelled copy
                raise DomainError(f"INC-{copy.id} is marked a duplicate of {incident.reference}, so it is "
                                  f"the original; mark {other.reference} a duplicate of it instead.")
            change = apply(incident, actor, {"duplicate_of": other, "status": "cancelled"},
                           expected_version,
                           record={"duplicate_of": (None, other), "status": (incident.status, "cancelled")},
                           body=f"Duplicate of {other.reference}", one_entry=True)
            return follow_up(ctx, change, actor)
        return follow_up(ctx, apply(incident, actor, {"parent": other}, expected_version), actor)
