"""Plugin events: written to the event outbox with the change, fired by the background worker.

Events carry ids only; the worker loads fresh objects before calling the
hooks, so a plugin always sees committed state. Delivery is at least once
(:mod:`helpdesk.event_outbox`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import peewee
from flask import current_app, has_app_context

logger = logging.getLogger(__name__)
_local = threading.local()


@contextmanager
def suppressed() -> Iterator[None]:
    """Fire no events in this block (demo data, imports)."""
    _local.suppressed = True
    try:
        yield
    finally:
        _local.suppressed = False


def emit(name: str, incident_id: int, actor: Any, **extra: Any) -> None:
    """Record event ``name`` in the current transaction; its hooks fire after the commit."""
    if getattr(_local, "suppressed", False):
        return
    payload = {
        key: (value.id if isinstance(value, peewee.Model) else value)
        for key, value in {"actor": actor, **extra}.items()
    }
    if not has_app_context():
        logger.debug("event %s for INC-%s not queued: no app context", name, incident_id)
        return
    state = current_app.extensions["helpdesk"]
    from helpdesk import event_outbox, notifications

    notifications.record(state, name, incident_id, payload)  # in this transaction: the outbox
    event_outbox.record(state, name, incident_id, payload)
