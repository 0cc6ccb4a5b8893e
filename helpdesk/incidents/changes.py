"""How every incident change is written: checked against the version read, recorded field by
field on the timeline in the same transaction, and followed up (SLA clocks, plugin events and
notifications) by one function derived from what was recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import peewee

from helpdesk import events, reports, search, sla
from helpdesk.clock import now
from helpdesk.context import Context
from helpdesk.db import for_update, write_transaction
from helpdesk.errors import DomainError, NotFound, StaleVersion
from helpdesk.escalation import engine as escalation
from helpdesk.models import (
    LEVELS,
    PENDING_REASONS,
    PRIORITIES,
    RESOLUTION_CODES,
    STATUSES,
    TYPES,
    Agent,
    Incident,
    Team,
    TimelineEntry,
)
from helpdesk.people import is_member
from helpdesk.words import BIDI_OVERRIDES

MAX_TITLE = 200
MAX_REASON = 2000  # a reason is a sentence or two on the timeline, not a document


def reason_text(value: str | None, what: str) -> str:
    """A reason as recorded: trimmed, and refused when it is far longer than a reason."""
    cleaned = (value or "").strip()
    if len(cleaned) > MAX_REASON:
        raise DomainError(f"The reason for {what} is limited to {MAX_REASON} characters.")
    return cleaned
#: Changes that count as an agent acting on the incident (may meet the response target).
ACTION_FIELDS = frozenset({"owner", "assignee", "status"})
#: Changes after which the SLA policy may set other targets.
RETARGET_FIELDS = frozenset({"assignee", "priority", "title", "description", "type", "impact",
                             "urgency", "category", "service", "requester"})


@dataclass(frozen=True)
class Pair:
    """A team + agent pair (owner or assignee), shown as "Team / Agent"."""

    team: Team | None
    agent: Agent | None

    def __str__(self) -> str:
        return f"{self.team.name if self.team else '—'} / {self.agent if self.agent else '—'}"


@dataclass
class Change:
    """What one domain call changed: the fresh incident and each recorded (old, new) value."""

    before: Incident
    after: Incident
    recorded: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.recorded)


_together = threading.local()


@contextmanager
def one_change(incident_id: int, expected_version: int | None) -> Iterator[Incident]:
    """Several domain changes to one incident made as one (a macro's reply and its actions).

    One transaction; the version read is checked once, up front, with the row locked; the
    domain functions called inside (with ``expected_version=None``) each record their own
    timeline entries and follow-ups, but the version goes up by one in all, so anyone who
    read the incident before sees one change, and a refusal anywhere writes nothing.
    """
    with write_transaction():
        incident = for_update(Incident.select().where(Incident.id == incident_id)).first()
        if incident is None:
            raise NotFound(f"There is no incident INC-{incident_id}.")
        if expected_version is not None and expected_version != incident.version:
            raise StaleVersion(
                f"{incident.reference} was changed by someone else since you opened it "
                "(your change was not saved). Here is the current state.",
                incident,
            )
        outer = getattr(_together, "state", None)
        _together.state = {"incident": incident.id, "bumped": False}
        try:
            yield incident
        finally:
            _together.state = outer


def get(incident_id: int) -> Incident:
    incident = Incident.get_or_none(Incident.id == incident_id)
    if incident is None:
        raise NotFound(f"There is no incident INC-{incident_id}.")
    return incident


def owner(incident: Incident) -> Pair:
    return Pair(incident.owner_team, incident.owner_agent)


def assignee(incident: Incident) -> Pair:
    return Pair(incident.assigned_team, incident.assigned_agent)


def choice(value: str | None, choices: dict, what: str) -> str:
    if value is None or value == "":
        raise DomainError(f"Choose a {what}: one of {', '.join(choices)}.")
    if value not in choices:
        raise DomainError(f"Unknown {what} {value!r}; choose one of: {', '.join(choices)}.")
    return value


def title(value: str | None) -> str:
    cleaned = " ".join(BIDI_OVERRIDES.sub("", value or "").split())
    if not cleaned:
        raise DomainError("A title is required.")
    if len(cleaned) > MAX_TITLE:
        raise DomainError(f"The title is limited to {MAX_TITLE} characters.")
    return cleaned


def check_assignee(team: Team | None, agent: Agent | None) -> None:
    if agent is not None and team is None:
        raise DomainError("Choose the assigned team as well as the agent.")
    if agent is not None and not agent.active:
        raise DomainError(f"{agent} is deactivated and cannot be assigned.")
    if agent is not None and not is_member(agent, team):
        raise DomainError(f"{agent} is not a member of {team.name}; choose an agent of that team.")


def check_owner(team: Team | None, agent: Agent | None, member: bool = False) -> None:
    """Refuse an owner the rules do not allow (``member``: the agent is known to be in the
    team, as when the team was found as theirs)."""
    if team is None:
        raise DomainError("An incident always has an owning team.")
    if agent is not None and not agent.active:
        raise DomainError(f"{agent} is deactivated and cannot own incidents.")
    if agent is not None and not member and not is_member(agent, team):
        raise DomainError(f"{agent} is not a member of {team.name}; choose an agent of that team.")


def entry(incident_id: int, actor: Agent | None, kind: str, **values: Any) -> TimelineEntry:
    return TimelineEntry.create(incident=incident_id, actor=actor, kind=kind, at=now(), **values)


def _display(name: str, value: Any) -> str | None:
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
    }.get(name)
    if labels is not None:
        return labels.get(value, str(value))
    if isinstance(value, Incident):
        return value.reference
    return str(value)


def _raw(incident: Incident, name: str) -> Any:
    column = Incident._meta.fields[name]
    if isinstance(column, peewee.ForeignKeyField):
        return getattr(incident, column.object_id_name)
    return getattr(incident, name)


def apply(
    incident: Incident,
    actor: Agent | None,
    changes: dict[str, Any],
    expected_version: int | None,
    *,
    extra_where: Any = None,
    record: dict[str, tuple[Any, Any]] | None = None,
    body: str = "",
    one_entry: bool = False,
) -> Change:
    """Write ``changes`` if the incident is still at the version read.

    One timeline entry per changed field (old → new) is written in the same
    transaction. ``record`` replaces per-field entries with named ones (e.g.
    the owner pair as one entry). ``one_entry``: the action is one entry on the
    timeline — the status change when there is one (SLA replay and reports read
    status entries), else the first recorded item — with ``body`` (which the caller
    words to say the rest); every recorded item still drives the follow-ups.
    Nothing changed: an empty :class:`Change`.
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
        return Change(incident, incident)
    together = getattr(_together, "state", None)
    if together is not None and together["incident"] != incident.id:
        together = None
    bump = 0 if together is not None and together["bumped"] else 1
    query = Incident.update(version=Incident.version + bump, updated_at=now(), **changed).where(
        (Incident.id == incident.id) & (Incident.version == incident.version)
    )
    if extra_where is not None:
        query = query.where(extra_where)
    if query.execute() != 1:
        raise StaleVersion(
            f"{incident.reference} was changed by someone else at the same moment "
            "(your change was not saved). Here is the current state.",
            get(incident.id),
        )
    if together is not None:
        together["bumped"] = True
    if search.TEXT_FIELDS & changed.keys():
        search.refresh(incident.id)
    if record is None:
        record = {name: (getattr(incident, name), value) for name, value in changed.items()}
    written = record
    if one_entry and len(record) > 1:
        primary = "status" if "status" in record else next(iter(record))
        written = {primary: record[primary]}
    for name, (old, new) in written.items():
        entry(incident.id, actor, "change", field=name, old_value=_display(name, old),
              new_value=_display(name, new), body=body)
    return Change(incident, get(incident.id), dict(record))


def follow_up(ctx: Context, change: Change, actor: Agent | None, *, reason: str = "") -> Incident:
    """The consequences of a recorded change, derived in this one place from what changed.

    SLA clocks move with the status, an agent's action may meet the response
    target (the same rule the SLA audit replays), new targets are asked for
    when anything a policy may key on changed; then the plugin events, in a
    fixed order: owner, assignee, status, then the specific status events.
    """
    if not change.changed:
        return change.after
    after, recorded = change.after, change.recorded
    status = recorded.get("status")
    if status is not None:
        sla.on_status(ctx, after, status[0], status[1])
    if actor is not None and ACTION_FIELDS & recorded.keys():
        sla.on_response(ctx, after, public_reply=False)
    # A reopened incident's resolution clock runs again: on the targets of the incident as it is
    # now (a priority changed while it was resolved left that clock alone, as it was met).
    reopened = status is not None and status[0] == "resolved" and status[1] not in {"closed", "cancelled"}
    if RETARGET_FIELDS & recorded.keys() or reopened:
        sla.on_retarget(ctx, after)
    reports.refresh(ctx, after.id)
    if "owner" in recorded:
        previous = recorded["owner"][0]
        events.emit(ctx, "incident_owner_changed", after.id, actor, previous_team=previous.team,
                    previous_agent=previous.agent, reason=reason)
    if "assignee" in recorded:
        previous = recorded["assignee"][0]
        events.emit(ctx, "incident_assigned", after.id, actor, previous_team=previous.team,
                    previous_agent=previous.agent)
    if status is not None:
        old, new = status
        events.emit(ctx, "incident_status_changed", after.id, actor, old_status=old, new_status=new)
        if old == "resolved" and new not in {"closed", "cancelled"}:
            events.emit(ctx, "incident_reopened", after.id, actor)
        specific = {"resolved": "incident_resolved", "closed": "incident_closed"}.get(new)
        if specific:
            events.emit(ctx, specific, after.id, actor)
    escalation.schedule(ctx, after)  # its next level may now come sooner, later, or never
    return after
