"""Worker heartbeats: what a dead worker held is taken back without waiting for its lease.

Every worker process (``helpdesk worker``, and ``helpdesk serve`` with its
in-process worker) writes a heartbeat row every few seconds. A holder is
*gone* when it ran on this machine and its process no longer exists, or
when its heartbeat is older than three beats. When a worker starts, and at
every outbox sweep, the deliveries and plugin events a gone holder had
claimed go back to pending (due now) and its leases are freed: recovery takes
seconds instead of the full ``lease_seconds``. A holder with no heartbeat row
(a one-off CLI command) keeps its claims until they expire. Each beat also
queues an outbox sweep, so work a queue outage left in the outbox moves again
within a beat of the queue's return; while 100 or more entries wait, a sweep
would only wait behind them, so the beat takes back a dead worker's claims
itself instead.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from typing import Any

import peewee

from helpdesk.clock import now
from helpdesk.db import database, write_transaction
from helpdesk.leases import holder_id
from helpdesk.models import Delivery, DeliveryAttempt, EventDelivery, IdempotentRequest, Lease, WorkerBeat

logger = logging.getLogger(__name__)


def beat_seconds(lease_seconds: int) -> float:
    """How often a worker says it is alive: often enough that three missed beats fit in a lease."""
    return max(0.5, min(10.0, lease_seconds / 4))


def beat(holder: str, at: dt.datetime | None = None) -> None:
    at = at or now()
    with write_transaction():
        if WorkerBeat.update(seen_at=at).where(WorkerBeat.holder == holder).execute() == 0:
            WorkerBeat.insert(holder=holder, started_at=at, seen_at=at).on_conflict_ignore().execute()


def _process_gone(holder: str) -> bool:
    """True when the holder ran on this machine and its process has ended."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or holder == holder_id():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, under another user
        return False
    return False


def gone_holders(lease_seconds: int, at: dt.datetime | None = None) -> list[str]:
    """Holders of claims or leases whose worker is known to be dead."""
    at = at or now()
    holders = {row.claimed_by for row in Delivery.select(Delivery.claimed_by).where(
        (Delivery.state == "sending") & Delivery.claimed_by.is_null(False)).distinct()}
    holders |= {row.claimed_by for row in EventDelivery.select(EventDelivery.claimed_by).where(
        (EventDelivery.state == "running") & EventDelivery.claimed_by.is_null(False)).distinct()}
    holders |= {row.holder for row in Lease.select(Lease.holder)}
    holders.discard(holder_id())
    if not holders:
        return []
    stale_before = at - dt.timedelta(seconds=3 * beat_seconds(lease_seconds))
    beats = {row.holder: row.seen_at for row in WorkerBeat.select().where(WorkerBeat.holder.in_(holders))}
    return sorted(holder for holder in holders
                  if _process_gone(holder) or (holder in beats and beats[holder] < stale_before))


HUNG_LEASES = 10  # a claim this many leases past its end is taken back even from a live worker


def lapsed(claimed_until: Any, holder: Any, lease_seconds: int, at: dt.datetime) -> Any:
    """The condition for a claim to take back: lapsed, and its holder not seen alive lately,
    so a live worker's slow work (a plugin hook running past ``lease_seconds``) is not started
    again beside it; or lapsed by :data:`HUNG_LEASES` leases, so work hung in a live worker is
    tried again all the same (at least once, never lost)."""
    alive = WorkerBeat.select(WorkerBeat.holder).where(
        WorkerBeat.seen_at >= at - dt.timedelta(seconds=3 * beat_seconds(lease_seconds)))
    hung = at - dt.timedelta(seconds=HUNG_LEASES * lease_seconds)
    return (claimed_until < at) & (holder.is_null() | holder.not_in(alive) | (claimed_until < hung))


def reclaim(holders: list[str], at: dt.datetime | None = None) -> int:
    """Put what ``holders`` claimed back to pending (due now) and free their leases."""
    if not holders:
        return 0
    at = at or now()
    reason = "the worker handling it stopped (no heartbeat); queued again"
    with write_transaction():
        deliveries = [row.id for row in Delivery.select(Delivery.id).where(
            (Delivery.state == "sending") & Delivery.claimed_by.in_(holders))]
        if deliveries:
            Delivery.update(state="pending", claimed_until=None, claimed_by=None, next_attempt_at=at) \
                .where(Delivery.id.in_(deliveries) & (Delivery.state == "sending")).execute()
            DeliveryAttempt.insert_many([{"delivery": delivery_id, "at": at, "ok": False, "error": reason}
                                         for delivery_id in deliveries]).execute()
        events = EventDelivery.update(state="pending", claimed_until=None, claimed_by=None,
                                      next_attempt_at=at, last_error=reason) \
            .where((EventDelivery.state == "running") & EventDelivery.claimed_by.in_(holders)).execute()
        Lease.delete().where(Lease.holder.in_(holders)).execute()
        WorkerBeat.delete().where(WorkerBeat.holder.in_(holders)).execute()
    if deliveries or events:
        logger.warning("took back %d deliveries and %d plugin events from stopped worker(s) %s",
                       len(deliveries), events, ", ".join(holders))
    return len(deliveries) + events


def reclaim_from_gone(lease_seconds: int) -> int:
    return reclaim(gone_holders(lease_seconds))


def forget_old_requests(days: int = 1) -> int:
    """Idempotency keys older than a day: nobody repeats a form that old (the sweep clears them)."""
    return IdempotentRequest.delete().where(
        IdempotentRequest.created_at < now() - dt.timedelta(days=days)).execute()


class Heartbeat:
    """This process's heartbeat thread; on start it first takes back what dead workers held."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="helpdesk-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        try:
            with self.app.app_context(), database.connection_context():
                lease_seconds = self.app.extensions["helpdesk"].settings.lease_seconds
                beat(holder_id())
                taken = reclaim_from_gone(lease_seconds)
            if taken:
                self._queue_sweep()  # now rather than at the next beat
        except (peewee.OperationalError, peewee.InterfaceError) as error:
            # A worker started while the database is busy or away (SQLite locked by a burst of
            # writes, PostgreSQL restarting) keeps running: the next beat, and the sweep it
            # queues, take back what dead workers held once the database answers.
            logger.warning("first heartbeat failed (database busy or away); trying again each beat: %r",
                           error)
        self.thread.start()
        return self

    def _run(self) -> None:
        interval = beat_seconds(self.app.extensions["helpdesk"].settings.lease_seconds)
        while not self.stop_event.wait(interval):
            try:
                with self.app.app_context(), database.connection_context():
                    beat(holder_id())
            except Exception:  # the database may be away for a moment; the next beat may work
                logger.exception("worker heartbeat failed")
            # A sweep per beat, not only Huey's once a minute: what a queue outage or a dead
            # worker left behind moves again within seconds (the lease keeps passes apart).
            self._queue_sweep()

    def _queue_sweep(self) -> None:
        try:
            tasks = self.app.extensions["helpdesk"].tasks
            if tasks.room_to_sweep():
                tasks.sweep_outbox()
            else:  # a sweep would wait behind the backlog: take back a dead worker's claims now
                with self.app.app_context(), database.connection_context():
                    reclaim_from_gone(self.app.extensions["helpdesk"].settings.lease_seconds)
        except Exception as error:  # the queue is away (a worker started while Redis stalls must
            # keep running, not die of it); say what failed, never hide a bug
            logger.warning("could not queue the outbox sweep or take back a dead worker's claims "
                           "(is the queue or the database away?): %r", error)

    def stop(self) -> None:
        """On a clean stop: no more beats, and no row left to look stale."""
        self.stop_event.set()
        self.thread.join(timeout=5)
        try:
            with self.app.app_context(), database.connection_context():
                WorkerBeat.delete().where(WorkerBeat.holder == holder_id()).execute()
        except Exception:
            logger.exception("could not remove this worker's heartbeat")
