"""Plugin events at least once: the event outbox.

:func:`record` runs inside the transaction of the change (called by
:func:`helpdesk.events.emit`) and writes one row per plugin that implements
the event's hook, so an event exists exactly when its change does, and a
plugin that fails is retried, and dead-lettered, alone. After the commit a
``fire_event`` task per row calls that plugin's hook; the task claims its row
with a conditional UPDATE, so a duplicate task does nothing. A hook that
raises is retried with exponential backoff and jitter (at most
15 minutes apart: the notification outbox's :func:`~helpdesk.notify.outbox.backoff`) for
``delivery_retry_hours``, as notifications are,
and at least :data:`MAX_ATTEMPTS` times; then the row is *dead* until an admin
retries it (admin Plugins page). A receiver down for two hours (G3) must not
turn its events into dead letters. :func:`sweep` re-queues rows whose retry time came, rows a
queue outage never delivered to a worker, and rows a dead worker left
claimed.

Delivery is at least once: a hook may run again for the same event (a worker
killed after the hook ran but before the row was marked done). Every copy of
one event carries the same ``event_key``, handed to the hook, so a handler
that must not act twice records the keys it has seen.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from typing import Any

from helpdesk.clock import now
from helpdesk.context import SWEEP_GRACE_SECONDS
from helpdesk.db import after_commit, write_transaction
from helpdesk.models import Agent, EventDelivery, Incident, Team, TimelineEntry
from helpdesk.workers import lapsed

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 8  # the fewest attempts before a row may be dead, however old it is
# Payload keys that name a row; the worker loads the row fresh before calling the hook.
LOADERS: dict[str, Any] = {
    "actor": Agent,
    "previous_agent": Agent,
    "previous_team": Team,
    "entry": TimelineEntry,
}


def _implementations(state: Any, event: str) -> list[Any]:
    caller = getattr(state.pm.hook, event, None)
    if caller is None:
        return []
    return [impl for impl in reversed(caller.get_hookimpls())
            if not (getattr(impl, "hookwrapper", False) or getattr(impl, "wrapper", False))]


def record(state: Any, event: str, incident_id: int, payload: dict[str, Any]) -> list[int]:
    """Write one outbox row per implementing plugin (in the caller's transaction);
    queue their delivery for after the commit."""
    plugins = [impl.plugin_name for impl in _implementations(state, event)]
    if not plugins:
        return []
    key = uuid.uuid4().hex
    stamp = now()
    data = json.dumps(payload)
    created = [EventDelivery.create(event=event, incident=incident_id, plugin=plugin, payload=data,
                                    event_key=key, next_attempt_at=stamp, created_at=stamp).id
               for plugin in plugins]
    tasks = state.tasks
    after_commit(lambda: tasks.queue_outbox_rows(tasks.fire_event, created, "plugin events"))
    return created


def backoff(attempts: int) -> dt.timedelta:
    """The notification outbox's waits (30 s doubling, jittered, never over 15 minutes)."""
    from helpdesk.notify.outbox import backoff as notification_backoff

    return notification_backoff(attempts)


def claim(event_id: int, holder: str, lease_seconds: int, at: dt.datetime) -> bool:
    """Take a pending row whose time has come; exactly one worker can win it."""
    return EventDelivery.update(
        state="running", claimed_until=at + dt.timedelta(seconds=lease_seconds), claimed_by=holder,
        attempts=EventDelivery.attempts + 1,
    ).where((EventDelivery.id == event_id) & (EventDelivery.state == "pending")
            & (EventDelivery.next_attempt_at <= at)).execute() == 1


def _arguments(row: EventDelivery, incident: Incident) -> dict[str, Any]:
    payload = json.loads(row.payload or "{}")
    arguments = {
        key: (LOADERS[key].get_or_none(LOADERS[key].id == value)
              if key in LOADERS and value is not None else value)
        for key, value in payload.items()
    }
    return {**arguments, "incident": incident, "event_key": row.event_key}


def deliver(state: Any, event_id: int) -> str | None:
    """Claim one row and call its plugin's hook; return the row's new state
    (None when another worker has it or it is not due)."""
    from helpdesk.leases import holder_id
    from helpdesk.plugins import record_failure

    if not claim(event_id, holder_id(), state.settings.lease_seconds, now()):
        return None
    row = EventDelivery.get_by_id(event_id)
    impl = next((i for i in _implementations(state, row.event) if i.plugin_name == row.plugin), None)
    if impl is None:
        # Another worker may have it (a rolling upgrade, a plugin installed on the web servers
        # first): retried with backoff, dead only after the retry window, like a raising hook.
        return _failed(state, row, f"the plugin {row.plugin!r} is not enabled in this worker",
                       permanent=False)
    incident = Incident.get_or_none(Incident.id == row.incident_id) if row.incident_id else None
    if incident is None:
        logger.warning("event %s: INC-%s no longer exists", row.event, row.incident_id)
        return _finish(row, "done", "the incident no longer exists")
    arguments = {**_arguments(row, incident), "ctx": state}
    try:
        impl.function(**{name: arguments.get(name) for name in impl.argnames})
    except Exception as error:
        logger.exception("plugin %r failed in hook %s (attempt %d)", row.plugin, row.event, row.attempts)
        record_failure(row.plugin, row.event, incident, error)
        return _failed(state, row, f"{type(error).__name__}: {error}", permanent=False)
    return _finish(row, "done", "")


def _finish(row: EventDelivery, state: str, note: str) -> str:
    with write_transaction():
        EventDelivery.update(state=state, claimed_until=None, done_at=now(), last_error=note) \
            .where((EventDelivery.id == row.id) & (EventDelivery.state == "running")).execute()
    return state


def _failed(state: Any, row: EventDelivery, error: str, permanent: bool) -> str:
    window = dt.timedelta(hours=state.settings.delivery_retry_hours)
    dead = permanent or (row.attempts >= MAX_ATTEMPTS and now() - row.created_at >= window)
    state = "dead" if dead else "pending"
    with write_transaction():
        EventDelivery.update(state=state, claimed_until=None, last_error=error[:2000],
                             next_attempt_at=None if dead else now() + backoff(row.attempts)) \
            .where((EventDelivery.id == row.id) & (EventDelivery.state == "running")).execute()
    return state


def release_claims(condition: Any, reason: str, at: dt.datetime) -> int:
    """Put rows back to pending, due at ``at`` (their worker stopped before finishing)."""
    with write_transaction():
        return EventDelivery.update(state="pending", claimed_until=None, claimed_by=None,
                                    next_attempt_at=at, last_error=reason) \
            .where((EventDelivery.state == "running") & condition).execute()


def sweep(state: Any, limit: int = 1000) -> int:
    """Re-queue what is due: rows whose retry time came, rows never handed to a worker,
    and rows a dead worker left claimed past their lease (queued only while the queue is
    short, as in :func:`helpdesk.notify.outbox.sweep`)."""
    at = now()
    lease = state.settings.lease_seconds
    release_claims(lapsed(EventDelivery.claimed_until, EventDelivery.claimed_by, lease, at),
                   "the worker running it stopped, or hung, before finishing (lease expired); queued again",
                   at)
    fresh_before = at - dt.timedelta(seconds=SWEEP_GRACE_SECONDS)
    due = [row.id for row in EventDelivery.select(EventDelivery.id).where(
        (EventDelivery.state == "pending") & (EventDelivery.next_attempt_at <= at)
        & ((EventDelivery.attempts > 0) | (EventDelivery.next_attempt_at <= fresh_before)))
        .order_by(EventDelivery.id).limit(limit)]
    if not due or state.tasks is None or not state.tasks.room_to_sweep():
        return 0  # the entries waiting in the queue run first; a later sweep queues what is left
    for event_id in due:
        state.tasks.fire_event(event_id)
    return len(due)


def retry(event_id: int) -> bool:
    """An admin's retry of a dead row: back to pending, due now, attempts reset."""
    return EventDelivery.update(state="pending", attempts=0, next_attempt_at=now()) \
        .where((EventDelivery.id == event_id) & (EventDelivery.state == "dead")).execute() == 1


def counts() -> dict[str, int]:
    """Rows per state, for the admin page."""
    from peewee import fn

    return {row.state: row.n for row in EventDelivery.select(
        EventDelivery.state, fn.COUNT(EventDelivery.id).alias("n")).group_by(EventDelivery.state)}
