"""Background work on Huey: one queue per app, configured from the same settings.

The default queue is a SQLite file beside the database (zero set-up); Redis
serves installations with several worker machines. Tests run tasks
immediately, in the calling thread. Periodic work runs under leases in the
database (:mod:`helpdesk.leases`), so a crash never leaves it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from flask import Flask
from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey, crontab
from huey.storage import SqliteStorage

from helpdesk.config import Settings
from helpdesk.context import Context, Tasks
from helpdesk.db import create_closed_file, database

logger = logging.getLogger(__name__)
# Redis that is away must cost a request a bounded wait, never a hang: redis-py before 6 waits
# without limit by default. A connect on loopback or a LAN takes milliseconds; reads are short
# commands, except the worker's blocking pop, which waits Huey's read_timeout (1 s) at most.
QUEUE_CONNECT_SECONDS = 2.0
QUEUE_SOCKET_SECONDS = 3.0


class QueueFileStorage(SqliteStorage):
    """Huey's SQLite queue without a sync to disk per task (``synchronous=NORMAL`` in WAL mode).

    Huey's default syncs each enqueue to disk (~0.3 ms, under the queue's exclusive lock, in
    every request that changes an incident; ~0.03 ms without). What makes background work
    durable is the outbox rows, committed in the database with the change; a queue entry
    only says "look now". In WAL mode a process crash loses nothing; a power cut may lose
    the last entries but never corrupts the file, and the worker's outbox sweep queues any
    row whose entry was lost.
    """

    def _create_connection(self) -> Any:
        connection = super()._create_connection()
        connection.execute("PRAGMA synchronous = NORMAL")
        return connection


def create_huey(settings: Settings) -> Huey:
    url = settings.queue_url
    if settings.testing or url == "memory":
        return MemoryHuey("helpdesk", immediate=True, results=False)
    if url.startswith("sqlite:///"):
        filename = unquote(url[len("sqlite:///") :])
        create_closed_file(Path(filename))  # Huey creates it at once, 0644 under the usual umask
        return SqliteHuey("helpdesk", storage_class=QueueFileStorage, filename=filename, results=False)
    from redis import ConnectionPool

    # Connections are re-made on the next command after Redis restarts; the worker's consumer
    # loop logs the failed pops and carries on, so neither web nor worker needs a restart.
    pool = ConnectionPool.from_url(url, socket_connect_timeout=QUEUE_CONNECT_SECONDS,
                                   socket_timeout=QUEUE_SOCKET_SECONDS, health_check_interval=30)
    return RedisHuey("helpdesk", connection_pool=pool, results=False)


def register_tasks(app: Flask, huey: Huey, ctx: Context) -> Tasks:
    """Declare the app's tasks on its queue; tasks take ids and load fresh state.

    Each runs inside the app's context (plugins may still use
    ``helpdesk.plugin_settings``) and hands ``ctx`` to the domain.
    """

    def exclusive(name: str, work: Callable[[], Any]) -> Any:
        """Run one pass of periodic work under its lease (a crash leaves nothing stuck)."""
        from helpdesk import leases

        with app.app_context(), database.connection_context():
            return leases.run_exclusive(name, ctx.settings.lease_seconds, work)

    # A task that raises met the database or queue away (hooks' and channels' own failures are
    # recorded and retried by the outboxes): run it again soon rather than at the next sweep.
    @huey.task(name="fire_event", retries=3, retry_delay=5)
    def fire_event(event_id: int) -> None:
        """Call one plugin's hook for one event-outbox row (claimed first; retried by the core)."""
        from helpdesk import event_outbox

        with app.app_context(), database.connection_context():
            event_outbox.deliver(ctx, event_id)

    @huey.periodic_task(crontab(minute="*"), name="sla_check")
    def sla_check() -> None:
        """Every minute, under a lease so passes never overlap."""
        from helpdesk import sla

        def work() -> None:
            fired = sla.check(ctx)
            if fired:
                logger.info("SLA check fired %d event(s)", fired)

        exclusive("sla_check", work)

    @huey.periodic_task(crontab(minute="*/5"), name="auto_close")
    def auto_close() -> None:
        from helpdesk import incidents

        days = ctx.settings.auto_close_days
        if days:
            exclusive("auto_close", lambda: incidents.close_resolved(ctx, days))

    @huey.task(name="deliver", retries=3, retry_delay=5)
    def deliver(delivery_id: int) -> None:
        """Send one outbox row (claimed first, so a duplicate task does nothing)."""
        from helpdesk.notify import outbox

        with app.app_context(), database.connection_context():
            outbox.deliver(ctx, delivery_id)

    @huey.periodic_task(crontab(minute="*"), name="sweep_outbox")
    def sweep_outbox() -> None:
        """Re-queue what is due in both outboxes: notifications, then plugin events."""
        from helpdesk import event_outbox, workers
        from helpdesk.notify import outbox

        def work() -> None:
            workers.reclaim_from_gone(ctx.settings.lease_seconds)  # without waiting for leases
            workers.forget_old_requests()
            failures = []
            for sweep in (outbox.sweep, event_outbox.sweep):  # a queue error in one skips not the other
                try:
                    sweep(ctx)
                except Exception as error:
                    failures.append(error)
            if failures:
                raise failures[0]

        exclusive("sweep_outbox", work)

    @huey.periodic_task(crontab(minute="7"), name="weekly_summary")
    def weekly_summary() -> None:
        """Hourly look: last week's summary to team leads, queued once per week (outbox keys)."""
        from helpdesk import summaries

        exclusive("weekly_summary", lambda: summaries.send_weekly(ctx))

    from helpdesk.mail import imap

    imap.register(app, huey, ctx)  # polls the configured IMAP mailboxes
    return Tasks(fire_event=fire_event, deliver=deliver, sla_check=sla_check, auto_close=auto_close,
                 sweep_outbox=sweep_outbox, backlog=lambda: int(huey.pending_count()))
