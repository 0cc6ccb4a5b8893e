"""The incident page, its inline edits, and the new-incident form.

Every change goes through :mod:`helpdesk.incidents`. Without JavaScript a
change posts, then redirects back to the page; from HTMX it returns the
incident body, re-rendered from the same template block, with any message.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from flask import Blueprint, flash, redirect, request, url_for
from flask_login import current_user

from helpdesk import incidents as domain
from helpdesk import queues
from helpdesk.db import Statement
from helpdesk.errors import DomainError, StaleVersion
from helpdesk.incidents import handback
from helpdesk.models import (
    LEVELS,
    PENDING_REASONS,
    RESOLUTION_CODES,
    STATUSES,
    TYPES,
    Agent,
    Category,
    Contact,
    Incident,
    Service,
    SlaEvent,
    Team,
)
from helpdesk.rendering import render_page
from helpdesk.security import AGENT, access, safe_next
from helpdesk.web import context
from helpdesk.web.attachments import files_by_entry
from helpdesk.web.forms import choices, expected_version, optional_id, parse_id
from helpdesk.web.mail import mails_by_entry
from helpdesk.web.stale import attempt as stale_attempt
from helpdesk.web.timeline import timeline_with_authors

bp = Blueprint("incidents", __name__, url_prefix="/incidents")
BODY = "incident_body"


def _with_people(incident_id: int) -> Any:
    """The incident with both pairs, the requester and its SLA clocks joined in (one cached
    statement): the page reads them all, and each lazy load was a query of its own."""
    found = queues.rows_by_id([incident_id])
    return found[0] if found else domain.get(incident_id)  # domain.get: the 404's wording


TIMELINE_FILTERS = {"all": "All", "public": "Public", "internal": "Internal", "system": "System"}


def _render(incident_id: int, *, error: str | None = None, status: int = 200,
            incident: Any = None, attempt: Any = None, announce: str = "",
            focus: str = "", reply: dict[str, Any] | None = None,
            typed: dict[str, Any] | None = None, refused: str = "") -> tuple[str, int]:
    """The incident page (or its body for HTMX); ``announce`` is read out politely and
    ``focus`` names the element that changed, where console.js puts the focus; ``reply`` is
    what the agent typed in the reply box when it was refused (shown again); ``typed``, what
    the Edit details form held when its requester search was sent (filled in again, unsaved);
    ``refused``, the side-panel form (``status``, ``priority``, ``assignee``, ``owner``) whose
    post was refused: it shows the error beside it, filled in again with what was sent."""
    from helpdesk import sla
    incident = incident or _with_people(incident_id)
    found = choices()
    mine = [team for team in found["teams"]
            if any(agent.id == current_user.id for agent in found["members"].get(team.id, []))]
    show = request.args.get("show", "all")
    requester_query = request.args.get("requester_query") if request.method == "GET" else None
    chosen = incident.requester
    if typed is not None:
        requester_query, chosen = typed["requester_query"], typed["requester"]
    clocks = _sla(incident)
    # A specialist bound by refer mode is offered no ownership change (the domain refuses it).
    bound = not current_user.is_lead and handback.bound_by_refer(incident, current_user)
    html = render_page(
        "incident.html",
        {BODY},
        incident=incident,
        timeline=timeline_with_authors(incident.id),
        files_by_entry=files_by_entry(incident.id),
        mail_ids=mails_by_entry(incident.id),
        show=show if show in TIMELINE_FILTERS else "all",
        timeline_filters=TIMELINE_FILTERS,
        error=error,
        attempt=attempt,
        reply=reply or {},
        announce=announce,
        focus=focus,
        can_transfer=(domain.can_transfer(incident, current_user) and not bound
                      and incident.status not in {"closed", "cancelled"}),
        can_own=not bound,
        can_take=(incident.is_active and incident.assigned_agent_id in (None, current_user.id)
                  and not (incident.assigned_agent_id == current_user.id
                           and incident.status == "in_progress")),
        my_teams=[team for team in mine if team.id != incident.assigned_team_id],
        transitions=domain.allowed_transitions(incident),
        next_status=domain.NEXT_STATUS.get(incident.status),
        canned_resolutions=domain.CANNED_RESOLUTIONS,
        levels=LEVELS,
        derived_priority=(domain.derive_priority(context(), incident.impact, incident.urgency)
                          if incident.priority_overridden else incident.priority),
        types=TYPES,
        pending_reasons=PENDING_REASONS,
        resolution_codes=RESOLUTION_CODES,
        sla_clocks=clocks,
        sla_unavailable=None if clocks else sla.unavailable_policy(context(), incident),
        sla_by_choice=not clocks and sla.without_sla_by_choice(context(), incident),
        sla_pickers=[] if clocks else sla.policy_pickers(context()),
        parse_time=dt.datetime.fromisoformat,
        requester_query=requester_query,
        requester_chosen=chosen,
        requester_choices=(_intake.requester_matches(requester_query, chosen) if requester_query
                           else [chosen] if chosen else []),
        typed=typed,
        refused=refused,
        posted=request.form if refused else {},
        chosen_pair=_chosen_pair(refused),
        **found,
    )
    return html, status


_SLA_EVENTS = Statement(lambda incident_id: SlaEvent.select().where(SlaEvent.incident == incident_id)
                        .order_by(SlaEvent.id), models=(SlaEvent,))


def _sla(incident: Any) -> list[tuple[Any, Any, list[Any], list[Any]]]:
    """Each SLA clock of the incident with where it stands, the events fired (sent), and those
    the check claimed but did not send (already announced for the same due time)."""
    from helpdesk import sla
    from helpdesk.clock import now
    from helpdesk.models import SlaClock

    state = context()
    fired: dict[str, list[Any]] = {}
    unsent: dict[str, list[Any]] = {}
    for event, sent in sla.announced(event for (event,) in _SLA_EVENTS.rows(incident.id)):
        (fired if sent else unsent).setdefault(event.target, []).append(event)
    if "resolution_clock" in incident.__dict__:  # joined in by _with_people
        clocks = [c for c in (incident.response_clock, incident.resolution_clock) if c is not None]
    else:
        clocks = list(SlaClock.select().where(SlaClock.incident == incident.id)
                      .order_by(SlaClock.target.desc()))
    return [(clock, sla.status(state, clock, now()), fired.get(clock.target, []),
             unsent.get(clock.target, [])) for clock in clocks]


def _respond(incident_id: int, change: Callable[[], Any], done: str | Callable[[Any], str],
             focus: str | Callable[[Any], str] = "", back: str | None = None,
             reply: dict[str, Any] | None = None) -> Any:
    """Run a domain change and answer with the fresh incident (or why it failed).

    ``done`` (text, or made from what the change returned) is announced, ``focus`` names
    the element that changed: from HTMX both travel in the fresh body; without JavaScript
    the message is flashed and the redirect's fragment scrolls to what changed (or, with
    ``back``, a local path such as the queue the action came from, goes back there).
    """
    from helpdesk.rendering import htmx

    to_body = bool(htmx and htmx.target == BODY.replace("_", "-"))
    try:
        result = change()
    except StaleVersion as stale:
        if back and not to_body:  # from another page (a queue's row): back there, told why
            return _refused_back(back, incident_id, _lost_race(stale))
        if reply is not None:  # a reply: its box shows the text again, beside why it waited
            return _render(incident_id, error=str(stale), status=409, focus="reply-body", reply=reply)
        return _render(incident_id, error=str(stale), status=409, incident=stale.incident,
                       attempt=stale_attempt(stale.incident), focus="incident-title", reply=reply)
    except DomainError as error:
        if error.status == 404:
            raise
        if back and not to_body:
            return _refused_back(back, incident_id, f"{error} Nothing was changed.")
        panel = _REFILLED.get(request.endpoint or "", "")
        if panel == "status" and request.form.get("canned"):
            panel = ""  # the quick Resolve: its own small form, the error stays at the top
        return _render(incident_id, error=str(error), status=error.status, refused=panel,
                       focus=f"{panel}-error" if panel else "reply-body" if reply else "incident-title",
                       reply=reply)
    if result is None:  # a change that returns nothing: describe the incident as it is now
        result = domain.get(incident_id)
    message = done(result) if callable(done) else done
    target = focus(result) if callable(focus) else focus
    if to_body:
        return _render(incident_id, announce=message, focus=target)
    flash(message)
    anchor = f"#{target}" if target else ""
    here = url_for("incidents.show", incident_id=incident_id) + anchor
    return redirect(safe_next(back, here) if back else here, code=303)


#: Side-panel forms that a refusal fills in again (endpoint → panel): the agent's choices are
#: not lost to a missing reason or note.
_REFILLED = {"incidents.status": "status", "incidents.priority": "priority",
             "incidents.assign": "assignee", "incidents.transfer": "owner"}


def _chosen_pair(refused: str) -> dict[str, Any] | None:
    """The team and agent a refused assignment or transfer chose, as the page's selects take
    them (``{"id": …}`` or None), so they come back as chosen rather than as they were."""
    prefix = {"assignee": "assigned", "owner": "owner"}.get(refused)
    if prefix is None:
        return None

    def picked(name: str) -> dict[str, int] | None:
        found = parse_id(request.form.get(f"{prefix}_{name}"))
        return {"id": found} if found is not None else None

    return {"team": picked("team"), "agent": picked("agent")}


def _lost_race(stale: StaleVersion) -> str:
    """What a Take from a queue row that lost to a newer change says (the row shows the rest)."""
    fresh = stale.incident
    if fresh.assigned_agent_id not in (None, current_user.id):
        return f"{fresh.reference} was taken by {fresh.assigned_agent} before you; nothing was changed."
    return (f"{fresh.reference} was changed by someone else since this page was loaded, so it was "
            "not taken; its row shows it as it is now.")


def _refused_back(back: str, incident_id: int, message: str) -> Any:
    """A refused action from another page (``next``: a queue) returns there with the reason,
    rather than leaving the agent on the incident page under the action's POST address."""
    flash(message, "error")
    here = url_for("incidents.show", incident_id=incident_id)
    return redirect(safe_next(back, here), code=303)


def _assigned(incident: Any) -> str:
    if incident.assigned_team is None:
        return "Unassigned."
    who = incident.assigned_agent.display_name if incident.assigned_agent else "no agent"
    return f"Assigned to {incident.assigned_team.name} / {who}."


@bp.get("/<int:incident_id>")
@access(AGENT)
def show(incident_id: int) -> Any:
    return _render(incident_id)


@bp.post("/<int:incident_id>/take")
@access(AGENT)
def take(incident_id: int) -> Any:
    return _respond(
        incident_id,
        lambda: domain.take_ownership(context(), incident_id, current_user, expected_version()),
        "You own this incident now.", "owner-heading",
    )


@bp.post("/<int:incident_id>/take-work")
@access(AGENT)
def take_work(incident_id: int) -> Any:
    """Take: assign the incident to me and start work on it (race-safe in the domain).

    ``claim_only=1`` is what the t key sends: it only claims (see ``take_work`` in the
    domain), so a stray key never resumes a pending incident or touches one already mine.
    """
    claim_only = request.form.get("claim_only") == "1"
    seen = expected_version()
    # Only to word the answer: a claim of an incident already mine changes nothing.
    mine = claim_only and domain.get(incident_id).assigned_agent_id == current_user.id

    def took(incident: Any) -> str:
        if mine and incident.assigned_agent_id == current_user.id:
            return f"{incident.reference} is already yours; nothing changed."
        if incident.status == "pending":
            return f"Took it: a{_assigned(incident)[1:-1]}; still pending."
        return f"Took it: a{_assigned(incident)[1:-1]} and in progress."

    return _respond(
        incident_id,
        lambda: domain.take_work(context(), incident_id, current_user, seen, claim_only=claim_only),
        took, "assignee-heading", back=request.form.get("next"),
    )


@bp.post("/<int:incident_id>/owner")
@access(AGENT)
def transfer(incident_id: int) -> Any:
    def change() -> None:
        team = optional_id("owner_team", Team)
        if team is None:
            raise DomainError("Choose the owning team.")
        domain.transfer_ownership(
            context(), incident_id, current_user, team, optional_id("owner_agent", Agent),
            request.form.get("reason", ""), expected_version(),
        )

    return _respond(incident_id, change, lambda incident: (
        f"Owner now {incident.owner_team.name} / "
        f"{incident.owner_agent.display_name if incident.owner_agent else 'no agent'}."), "owner-heading")


@bp.post("/<int:incident_id>/assignee")
@access(AGENT)
def assign(incident_id: int) -> Any:
    return _respond(
        incident_id,
        lambda: domain.assign(
            context(), incident_id, current_user, optional_id("assigned_team", Team),
            optional_id("assigned_agent", Agent), expected_version(),
            note=request.form.get("note", ""),
        ),
        _assigned, "assignee-heading",
    )


@bp.post("/<int:incident_id>/status")
@access(AGENT)
def status(incident_id: int) -> Any:
    """Move the status; ``canned`` (the Resolve quick action) names a canned resolution whose
    code is used and whose text is the note unless the agent wrote another."""
    note = request.form.get("note", "")
    code = request.form.get("resolution_code") or None
    canned = domain.CANNED_RESOLUTIONS.get(request.form.get("canned", ""))
    if canned is not None:
        # A note still holding one of the canned texts was not typed: it follows the choice
        # (without JavaScript the box keeps the first text when another is chosen).
        texts = {text.strip() for _, text in domain.CANNED_RESOLUTIONS.values()}
        code = canned[0]
        if not note.strip() or note.strip() in texts:
            note = canned[1]
    return _respond(
        incident_id,
        lambda: domain.change_status(
            context(), incident_id, current_user, request.form.get("status", ""), expected_version(),
            note=note,
            pending_reason=request.form.get("pending_reason") or None,
            resolution_code=code,
        ),
        lambda incident: f"Status now {STATUSES[incident.status].lower()}.", "status-heading",
    )


@bp.post("/<int:incident_id>/priority")
@access(AGENT)
def priority(incident_id: int) -> Any:
    def change() -> None:
        raw = request.form.get("priority", "")
        if raw == "derived":
            value = None
        elif parse_id(raw) is not None:
            value = parse_id(raw)
        else:
            raise DomainError("Choose a priority from P1 to P4, or derive it again.")
        domain.override_priority(context(), incident_id, current_user, value,
                                 request.form.get("reason", ""), expected_version())

    return _respond(incident_id, change, lambda incident: f"Priority now P{incident.priority}.",
                    "priority-heading")


def _typed_details(incident: Any) -> dict[str, Any]:
    """The Edit details form as sent, to fill it in again: the version stays the one the
    agent loaded (a save after the search still notices someone else's change), and an
    unknown requester id keeps the incident's own."""
    form = request.form
    typed: dict[str, Any] = {name: form.get(name, "") for name in (
        "version", "title", "description", "type", "impact", "urgency", "category", "service")}
    typed["requester_query"] = form.get("requester_query", "")[:200]
    requester_id = parse_id(form.get("requester"))
    if not form.get("requester"):
        typed["requester"] = None
    else:
        found = Contact.get_or_none(Contact.id == requester_id) if requester_id is not None else None
        typed["requester"] = found or incident.requester
    return typed


@bp.post("/<int:incident_id>/details")
@access(AGENT)
def details(incident_id: int) -> Any:
    """Save the details; with ``find_requester`` (the requester box's Search button, without
    JavaScript), only show the matches, with everything typed in the form kept and unsaved."""
    if "find_requester" in request.form:
        incident = _with_people(incident_id)
        return _render(incident_id, incident=incident, typed=_typed_details(incident),
                       focus="d-requester-query")

    def change() -> None:
        domain.update_details(
            context(), incident_id, current_user, expected_version(),
            title=request.form.get("title", ""),
            description=request.form.get("description", ""),
            type=request.form.get("type", ""),
            impact=request.form.get("impact", ""),
            urgency=request.form.get("urgency", ""),
            category=optional_id("category", Category),
            service=optional_id("service", Service),
            requester=optional_id("requester", Contact),
        )

    return _respond(incident_id, change, "Details saved.", "details-heading")


@bp.post("/<int:incident_id>/comments")
@access(AGENT)
def comment(incident_id: int) -> Any:
    """A reply or a note, with the files chosen in the reply box (``files``, multipart). A
    refused file refuses the whole post: nothing is written and the box keeps what was typed.
    The form sends the version and newest entry its page showed (``version``, ``seen``): a
    reply from a page the conversation has moved past is refused the same way (409)."""
    public = request.form.get("visibility") == "public"
    files = uploaded_files()
    noun = "Reply sent to the customer" if public else "Internal note added"
    seen = parse_id(request.form.get("seen"))
    return _respond(
        incident_id,
        lambda: domain.add_comment(context(), incident_id, current_user, request.form.get("body", ""),
                                   public=public, files=files, expected_version=expected_version(),
                                   seen=seen),
        f"{noun} with {len(files)} file{'s' if len(files) != 1 else ''}." if files else f"{noun}.",
        lambda note: f"entry-{note.id}",
        reply={"body": request.form.get("body", ""), "public": public, "files": len(files)},
    )


def uploaded_files() -> list[tuple[str, bytes]]:
    """The files of the reply box (``files``): (name as sent, bytes); empty choices skipped."""
    return [(upload.filename or "", upload.read()) for upload in request.files.getlist("files")
            if upload and upload.filename]


@bp.post("/<int:incident_id>/links")
@access(AGENT)
def link(incident_id: int) -> Any:
    def change() -> None:
        raw = (request.form.get("other") or "").strip()
        other = Incident.parse_reference(raw)
        if raw and other is None:
            raise DomainError("Name the other incident by its reference, e.g. INC-42.")
        if other is not None and not Incident.select().where(Incident.id == other).exists():
            # Said on this incident's page (422), not as a 404 of the page itself.
            raise DomainError(f"There is no incident {Incident(id=other).reference}.")
        domain.link(context(), incident_id, current_user, request.form.get("kind", ""),
                    other, expected_version())

    return _respond(incident_id, change, "Link saved.", "details-heading")


# -- new incident: the page and its live parts live in helpdesk/web/intake.py ----------------

from helpdesk.web import intake as _intake  # noqa: E402 - needs bp, defined above

_intake.install(bp)
