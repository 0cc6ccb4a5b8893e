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

from helpdesk.context import Context

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


def emit(ctx: Context, name: str, incident_id: int, actor: Any, as_stored: Any = None, **extra: Any) -> None:
    """Record event ``name`` in the current transaction: its notifications into the outbox,
    and one row per plugin implementing its hook, fired after the commit (at least once).
    ``as_stored``: the incident as the database holds it now, when the caller read it already."""
    if getattr(_local, "suppressed", False):
        return
    payload = {
        key: (value.id if isinstance(value, peewee.Model) else value)
        for key, value in {"actor": actor, **extra}.items()
    }
    from helpdesk import event_outbox
    from helpdesk.notify import outbox

    outbox.record_event(ctx, name, incident_id, payload, as_stored)  # in this transaction
    event_outbox.record(ctx, name, incident_id, payload)
