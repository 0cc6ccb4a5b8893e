"""Plugin events: queued when a change commits, fired by the background worker.

Events carry ids only; the worker loads fresh objects before calling the
hooks, so a plugin always sees committed state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import peewee

from helpdesk.context import Context
from helpdesk.db import after_commit

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


def emit(ctx: Context, name: str, incident_id: int, actor: Any, **extra: Any) -> None:
    """Record event ``name``: notifications into the outbox now, in the change's transaction,
    and the plugin hooks queued to fire after it commits."""
    if getattr(_local, "suppressed", False):
        return
    payload = {
        key: (value.id if isinstance(value, peewee.Model) else value)
        for key, value in {"actor": actor, **extra}.items()
    }
    from helpdesk.notify import outbox

    outbox.record_event(ctx, name, incident_id, payload)  # in this transaction
    tasks = ctx.tasks
    if tasks is not None:
        after_commit(lambda: tasks.fire_event(name, incident_id, payload))
