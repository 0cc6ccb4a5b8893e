"""Requesters for a new incident: finding a contact, adding a new one with the incident, and
the requester's open incidents (the "is it one of these?" hint against duplicates).

A new contact and its incident are written in one transaction, so a refused incident leaves
no contact behind; an e-mail address already on file (case-insensitive) reuses that contact.
"""

from __future__ import annotations

import re
from typing import Any

from peewee import fn

from helpdesk.context import Context
from helpdesk.db import write_transaction
from helpdesk.models import ACTIVE_STATUSES, Contact, Incident

EMAIL = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\".]+")
MAX_MATCHES = 10


class ContactInvalid(ValueError):
    """The new contact cannot be created; ``errors`` maps each form field to what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(" ".join(errors.values()))
        self.errors = errors


def search(query: str, limit: int = MAX_MATCHES) -> list[Contact]:
    """Contacts whose name or e-mail contains the query (case-insensitive), names first."""
    query = " ".join((query or "").split())[:100]
    if not query:
        return []
    if query.isascii():  # LIKE/ILIKE ignore ASCII case themselves, and cost less than LOWER()
        match = Contact.name.contains(query) | Contact.email.contains(query)
    else:  # "ångström" finds "Ångström" on SQLite too (its LIKE folds only A-Z)
        folded = query.lower()
        match = fn.LOWER(Contact.name).contains(folded) | fn.LOWER(Contact.email).contains(folded)
    return list(Contact.select().where(match).order_by(Contact.name, Contact.id).limit(limit))


def open_incidents(contact_id: int, limit: int = MAX_MATCHES) -> list[Incident]:
    """The requester's open incidents, newest first."""
    return list(Incident.select().where((Incident.requester == contact_id)
                                        & Incident.status.in_(ACTIVE_STATUSES))
                .order_by(Incident.id.desc()).limit(limit))


def check_new(name: str, email: str) -> tuple[str, str | None]:
    """A new contact's name and e-mail as typed, checked (:class:`ContactInvalid` otherwise)."""
    name = " ".join((name or "").split())
    address = (email or "").strip().lower() or None
    errors = {}
    if address is not None and (len(address) > 254 or not EMAIL.fullmatch(address)):
        errors["new_contact_email"] = f"{address!r} is not an e-mail address (name@example.com)."
    if not name and (address is None or _existing(address) is None):
        errors["new_contact_name"] = "Give the new contact's name."
    if len(name) > 200:
        errors["new_contact_name"] = "The name is limited to 200 characters."
    if errors:
        raise ContactInvalid(errors)
    return name, address


def _existing(address: str) -> Contact | None:
    return Contact.get_or_none(Contact.email == address) or Contact.select().where(
        fn.LOWER(Contact.email) == address).order_by(Contact.id).first()


def log_for_new_contact(ctx: Context, *, name: str, email: str, **incident: Any) -> Incident:
    """Log an incident for a contact given by name and e-mail: the one on file with that
    address, else a new one, created in the same transaction as the incident."""
    from helpdesk.incidents import log_incident

    name, address = check_new(name, email)
    with write_transaction():
        contact = _existing(address) if address else None
        if contact is None:
            contact = Contact.create(name=name, email=address)
        return log_incident(ctx, requester=contact, **incident)
