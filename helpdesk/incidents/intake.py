"""Logging a new incident: its priority, owner, initial assignment (routing) and SLA clocks."""

from __future__ import annotations

from collections.abc import Callable

from helpdesk import events, reports, search, sla
from helpdesk.clock import now
from helpdesk.context import Context
from helpdesk.db import write_transaction
from helpdesk.errors import DomainError
from helpdesk.escalation import engine as escalation
from helpdesk.incidents.changes import assignee, check_assignee, check_owner, choice, entry, owner
from helpdesk.incidents.changes import title as clean_title
from helpdesk.models import (
    LEVELS,
    PRIORITIES,
    SOURCES,
    TYPES,
    Agent,
    Category,
    Contact,
    Incident,
    Service,
    Team,
    incident_as_stored,
)
from helpdesk.people import is_member


def derive_priority(ctx: Context, impact: str, urgency: str) -> int:
    """Impact × urgency through the ``helpdesk_priority`` decision (built-in: the ITIL matrix).
    A plugin that raises or answers something other than 1-4 is recorded for the Plugins page
    and the next decides, so it never stops an incident from being logged or changed."""
    from helpdesk.plugins import first_answer

    priority = first_answer(ctx.pm, "helpdesk_priority", int,
                            lambda answer: "" if answer in PRIORITIES else "not a priority 1-4",
                            impact=impact, urgency=urgency, ctx=ctx)
    if priority not in PRIORITIES:
        raise DomainError(f"The priority rule returned {priority!r}, which is not 1–4.")
    return priority


def home_team(agent: Agent, service_desk: Team) -> Team:
    """The team an agent's incidents belong to: the service desk if they are in it."""
    if is_member(agent, service_desk):
        return service_desk
    membership = agent.memberships.order_by("id").first()
    if membership is None:
        raise DomainError(f"{agent} belongs to no team, so cannot own incidents.")
    return membership.team


def log_incident(
    ctx: Context,
    *,
    title: str,  # noqa: A002 - the domain's word
    actor: Agent | None,
    service_desk: Team | None = None,
    description: str = "",
    type: str = "incident",  # noqa: A002 - the domain's word
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
    acknowledge: bool = True,
    logged: Callable[[Incident], None] | None = None,
    follow_up_of: int | None = None,
) -> Incident:
    """Log a new incident.

    Ownership: logged by an agent, it is owned by that agent and their team
    (the service desk if they belong to it) unless they choose another owner
    or ``keep_ownership`` is false; arriving any other way (``actor`` None),
    the service desk owns it with no owning agent until someone takes it.
    ``acknowledge=False`` sends the requester no acknowledgement (automatic mail: no loops).
    ``logged(incident)`` runs in the transaction once the incident exists, before its events are
    recorded: what the events' messages must already see (the mail it came from, say).
    ``follow_up_of``: the closed incident a customer wrote to again (see :mod:`helpdesk.customers`).
    """
    source = source or ("agent" if actor else "api")
    service_desk = service_desk or ctx.service_desk()
    incident = Incident(
        title=clean_title(title),
        description=(description or "").strip(),
        type=choice(type, TYPES, "type"),
        impact=choice(impact, LEVELS, "impact"),
        urgency=choice(urgency, LEVELS, "urgency"),
        category=category,
        service=service,
        requester=requester,
        source=choice(source, SOURCES, "source"),
        created_by=actor,
        follow_up_of=follow_up_of,
    )
    incident.priority = derive_priority(ctx, incident.impact, incident.urgency)

    chosen_team = owner_team is not None  # otherwise the owning agent's home team: a member
    if owner_team is None and owner_agent is None:
        if actor is not None and keep_ownership:
            owner_team, owner_agent = home_team(actor, service_desk), actor
        else:
            owner_team = service_desk
    elif owner_team is None:
        owner_team = home_team(owner_agent, service_desk)
    check_owner(owner_team, owner_agent, member=not chosen_team)

    if assigned_team is None and assigned_agent is None:
        # A routing plugin's bug (it raises, names a team rather than returning it) leaves the
        # incident to the next plugin, finally unassigned: it is logged either way.
        from helpdesk.plugins import first_answer

        assigned_team = first_answer(ctx.pm, "helpdesk_route_incident", Team,
                                     lambda team: "" if team.id is not None else "a team never saved",
                                     incident=incident, ctx=ctx)
    check_assignee(assigned_team, assigned_agent)

    incident.owner_team, incident.owner_agent = owner_team, owner_agent
    incident.assigned_team, incident.assigned_agent = assigned_team, assigned_agent
    incident.status = "assigned" if assigned_team is not None else "new"
    incident.created_at = incident.updated_at = now()
    with write_transaction():
        incident.save(force_insert=True)
        entry(incident.id, actor, "created",
              body=f"Logged via {SOURCES[incident.source]}; owner {owner(incident)}"
              + (f"; assigned to {assignee(incident)}" if assigned_team else ""))
        clocks = sla.on_created(ctx, incident)
        # Read back once, with the SLA summary the clocks' trigger wrote; the steps below
        # take it (and the clocks) instead of each reading the row and its empty history.
        stored = incident_as_stored(incident.id)
        if logged is not None:
            logged(stored)
        escalation.schedule(ctx, stored, new_clocks=clocks)
        search.refresh(incident.id, new=stored)
        reports.refresh(ctx, incident.id, new=stored, new_clocks=clocks)
        events.emit(ctx, "incident_created", incident.id, actor, as_stored=stored,
                    **({} if acknowledge else {"acknowledge": False}))
        if assigned_team is not None:
            events.emit(ctx, "incident_assigned", incident.id, actor, as_stored=stored,
                        previous_team=None, previous_agent=None)
    return incident

