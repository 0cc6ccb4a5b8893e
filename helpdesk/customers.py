"""Customers in the conversation: who they are (contacts found by address) and what their
messages do to an incident, whether they arrive by e-mail or through the portal.

A customer's message is a ``customer`` timeline entry with the contact as its
author: public (the customer sees it in the portal), never counted as the
desk's response, and announced to the owner and the assignee. Written to an
active incident it is simply added; to a resolved one it reopens it (the
grace period before auto-close is the time a customer has to say "not
fixed"); to one pending on the customer it resumes work; to a closed or
cancelled one it becomes a new incident that names the old one, so nothing
the customer wrote is lost. Further messages to that closed incident join its
follow-up while the follow-up is open (one follow-up, not one per message).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import peewee
from peewee import fn

from helpdesk import events
from helpdesk.clock import now
from helpdesk.context import Context
from helpdesk.db import for_update, write_transaction
from helpdesk.errors import DomainError, StaleVersion, TryAgain
from helpdesk.incidents import log_incident
from helpdesk.incidents.changes import entry, get
from helpdesk.incidents.lifecycle import _reopen, change_status
from helpdesk.models import Contact, Incident, Rating, TimelineEntry

MAX_MESSAGE = 200_000


def normalise_address(address: str) -> str:
    return (address or "").strip().lower()


def find_contact(address: str) -> Contact | None:
    address = normalise_address(address)
    if not address:
        return None
    # Exact, case-insensitive: never LIKE, where "_" or "%" in an address would match others.
    return Contact.get_or_none(Contact.email == address) or Contact.select().where(
        fn.LOWER(Contact.email) == address).order_by(Contact.id).first()


def find_or_create_contact(address: str, name: str = "") -> Contact:
    """The contact with this e-mail address (case-insensitive), created on first contact."""
    found = find_contact(address)
    if found is not None:
        return found
    address = normalise_address(address)
    with write_transaction():
        return Contact.create(name=(name or address)[:200], email=address)


def is_participant(incident: Incident, contact: Contact) -> bool:
    """Whether this contact may speak on the incident: its requester, or someone whose
    messages it already holds."""
    if incident.requester_id == contact.id:
        return True
    return TimelineEntry.select().where((TimelineEntry.incident == incident.id)
                                        & (TimelineEntry.contact == contact.id)).exists()


@dataclass
class Posted:
    """What a customer's message became: ``replied``, ``reopened`` or ``followed_up``."""

    outcome: str
    incident: Incident
    entry: TimelineEntry | None


def post_message(ctx: Context, incident_id: int, contact: Contact, body: str, *,
                 via: str = "email", seen: bool = False,
                 logged: Callable[[Incident], None] | None = None) -> Posted:
    """Add a customer's message to an incident they take part in (see the module docstring).

    Runs in the caller's transaction when there is one. An agent closing the
    incident at the same moment is resolved by the version check: the message
    is then placed again on the fresh state (a follow-up incident if it closed).
    ``logged(follow_up)`` runs when the message opens a follow-up, before its
    acknowledgement is written (see :func:`helpdesk.incidents.log_incident`).
    """
    body = (body or "").strip()[:MAX_MESSAGE]
    if not body:
        raise DomainError("Write something before sending.")
    for _ in range(3):
        try:
            with write_transaction():
                incident = for_update(Incident.select().where(Incident.id == incident_id)).first()
                if incident is None:
                    get(incident_id)  # raises NotFound
                # ``seen``: the portal checked that this signed-in customer may see the incident
                # (their own, or their organisation's shared one); mail must be a participant.
                if not seen and not is_participant(incident, contact):
                    raise DomainError(f"{contact.email} is not part of {incident.reference}.")
                return _place(ctx, incident, contact, body, via, logged)
        except StaleVersion:
            continue
    raise TryAgain("The incident kept changing while your message was added; try again.")


def _place(ctx: Context, incident: Incident, contact: Contact, body: str, via: str,
           logged: Callable[[Incident], None] | None = None) -> Posted:
    if incident.status in {"closed", "cancelled"}:
        current = _open_follow_up(incident, contact)
        if current is not None:
            return _place(ctx, current, contact, body, via)
        follow = log_incident(
            ctx, title=_follow_up_title(incident), actor=None, requester=contact, source=via,
            description=f"Follow-up to {incident.reference} ({incident.status}), from {contact.name}:"
                        f"\n\n{body}", follow_up_of=incident.id, logged=logged)
        return Posted("followed_up", follow, None)
    note = entry(incident.id, None, "customer", body=body, contact=contact.id)
    Incident.update(updated_at=note.at).where(Incident.id == incident.id).execute()
    if incident.status == "resolved":
        reopened = _reopen(ctx, incident, None, incident.version,
                           f"Reopened: {contact.name} replied after the resolution.")
        _announce(ctx, reopened, note, contact)
        return Posted("reopened", reopened, note)
    if incident.status == "pending" and incident.pending_reason == "customer":
        # The desk was waiting for this answer: back to work (SLA clocks resume).
        incident = change_status(ctx, incident.id, None, "in_progress", incident.version,
                                 note=f"{contact.name} answered.")
    _announce(ctx, incident, note, contact)
    return Posted("replied", incident, note)


def _open_follow_up(incident: Incident, contact: Contact) -> Incident | None:
    """The latest follow-up of a closed incident that is still open and that this contact
    takes part in, locked for the change (None: a new follow-up is opened)."""
    found = (Incident.select(Incident.id)
             .where((Incident.follow_up_of == incident.id)
                    & Incident.status.not_in(("closed", "cancelled")))
             .order_by(Incident.id.desc()).first())
    if found is None:
        return None
    current = for_update(Incident.select().where(Incident.id == found.id)).first()
    if current is None or current.status in {"closed", "cancelled"} or not is_participant(current, contact):
        return None
    return current


def _follow_up_title(incident: Incident) -> str:
    title = f"Follow-up to {incident.reference}: {incident.title}"
    return title[:200]


def _announce(ctx: Context, incident: Incident, note: TimelineEntry, contact: Contact) -> None:
    events.emit(ctx, "incident_commented", incident.id, None, entry=note.id, public=True,
                body=note.body, actor_name=contact.name, customer=True)


def recent_acknowledgements(contact: Contact, hours: int = 1) -> int:
    """Acknowledgements mailed to this contact's address lately (the loop brake counts them):
    deliveries of new incidents to that very address, so the same event's webhook or chat
    broadcasts (no agent either) are not taken for mail to the sender."""
    import datetime as dt

    from helpdesk.models import Delivery

    since = now() - dt.timedelta(hours=hours)
    return (Delivery.select().where(
        (Delivery.recipient == contact.email) & (Delivery.event == "incident_created")
        & (Delivery.agent.is_null()) & (Delivery.created_at >= since)).count())


# -- the portal's accounts: passwords, shared organisations, ratings ---------------------------


def visible_in_portal(contact: Contact) -> peewee.Expression:
    """The incidents a customer sees in the portal: the ones they requested, and their
    organisation's when an admin shares them (``Organisation.share_incidents``)."""
    own = Incident.requester == contact.id
    organisation = contact.organisation if contact.organisation_id else None
    if organisation is None or not organisation.share_incidents:
        return own
    colleagues = Contact.select(Contact.id).where(Contact.organisation == organisation.id)
    return own | Incident.requester.in_(colleagues)


def set_portal_password(contact: Contact, password: str, current: str = "") -> None:
    """Choose or change the portal password; changing one needs the current one (a session
    left open must not be enough to take the account over)."""
    from helpdesk.people import hash_password, validate_password, verify_hash

    if contact.password_hash and not verify_hash(contact.password_hash, current or ""):
        raise DomainError("The current password is not right.")
    validate_password(password or "")
    Contact.update(password_hash=hash_password(password)).where(Contact.id == contact.id).execute()
    contact.password_hash = None  # never keep the hash on an object a template might see


def address_changed(contact_id: int) -> None:
    """A contact's e-mail address was corrected: whoever had the portal through the old address
    (a mistyped one may be a stranger's mailbox) loses it. Their sessions end, unused sign-in
    links stop working and the password goes, so the next sign-in is by a link to the new
    address (where a password may be chosen again). In the caller's transaction."""
    from helpdesk.models import CustomerSession, PortalToken

    Contact.update(password_hash=None).where(Contact.id == contact_id).execute()
    CustomerSession.delete().where(CustomerSession.contact == contact_id).execute()
    PortalToken.update(used_at=now()).where((PortalToken.contact == contact_id)
                                            & PortalToken.used_at.is_null()).execute()


def portal_sign_in(ctx: Context, address: str, password: str, client: str | None) -> Contact | None:
    """The contact an address and password sign in, or ``None`` for every failure alike
    (unknown address, no password chosen, wrong password, failing address), each costing one
    password check. Rate-limited like agents' logins, counted apart from them; raises
    :class:`RateLimited` when over the limit."""
    from helpdesk.people import verify_hash
    from helpdesk.security import claim_login_attempt, login_limits, login_succeeded

    address = (address or "").strip().lower()[:254]
    settings = ctx.settings
    limits = {f"portal-{key}": limit for key, limit in login_limits(
        address, client, settings.login_max_failures, settings.login_account_max_failures).items()}
    claims = claim_login_attempt(limits, settings.login_window_seconds)
    if claims is None:
        raise RateLimited("Too many attempts; wait a few minutes, or ask for a sign-in link.")
    contact = find_contact(address) if "@" in address else None
    stored = contact.password_hash if contact is not None else None
    if not verify_hash(stored, password or "") or contact is None:  # a failing mailbox needs no mail here
        return None
    login_succeeded(limits, claims)
    return contact


class RateLimited(DomainError):
    """Too many sign-in attempts for this address or from this client."""


RATINGS = {5: "Very good", 4: "Good", 3: "All right", 2: "Poor", 1: "Very poor"}
MAX_COMMENT = 2000


def rate(ctx: Context, incident_id: int, contact: Contact, score: Any, comment: str = "") -> Rating:
    """The requester rates a resolved (or closed) incident, 1 to 5 with optional words; a
    second rating replaces the first. Each is noted on the timeline for the desk."""
    try:
        score = int(score)
    except (TypeError, ValueError):
        score = 0
    if score not in RATINGS:
        raise DomainError("Choose how satisfied you are, from 1 to 5.")
    comment = (comment or "").strip()[:MAX_COMMENT]
    with write_transaction():
        incident = get(incident_id)
        if incident.requester_id != contact.id:
            raise DomainError(f"Only the requester rates {incident.reference}.")
        if incident.status not in {"resolved", "closed"}:
            raise DomainError("You can rate an incident once it is resolved.")
        stamp = now()
        rating, created = Rating.get_or_create(incident=incident.id, defaults={
            "contact": contact.id, "score": score, "comment": comment, "created_at": stamp,
            "updated_at": stamp})
        if not created:
            Rating.update(score=score, comment=comment, contact=contact.id, updated_at=stamp).where(
                Rating.id == rating.id).execute()
            rating.score, rating.comment = score, comment
        entry(incident.id, None, "rating", contact=contact.id,
              body=f"{contact.name} rated the resolution {score}/5 ({RATINGS[score]})"
                   + (f": {comment}" if comment else "."))
    return rating
