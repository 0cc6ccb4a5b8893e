"""Background work on Huey: one queue per app, configured from the same settings.

The default queue is a SQLite file beside the database (zero set-up); Redis
serves installations with several worker machines. Tests run tasks
immediately, in the calling thread.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote

from flask import Flask
from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey, crontab

from helpdesk.config import Settings
from helpdesk.context import Context, Tasks
from helpdesk.db import database

logger = logging.getLogger(__name__)


def create_huey(settings: Settings) -> Huey:
    url = settings.queue_url
    if settings.testing or url == "memory":
        return MemoryHuey("helpdesk", immediate=True, results=False)
    if url.startswith("sqlite:///"):
        return SqliteHuey("helpdesk", filename=unquote(url[len("sqlite:///") :]), results=False)
    return RedisHuey("helpdesk", url=url, results=False)


def register_tasks(app: Flask, huey: Huey, ctx: Context) -> Tasks:
    """Declare the app's tasks on its queue; tasks take ids and load fresh state.

    Each runs inside the app's context (plugins may still use
    ``helpdesk.plugin_settings``) and hands ``ctx`` to the domain.
    """

    @huey.task(name="fire_event", retries=0)
    def fire_event(name: str, incident_id: int, payload: dict[str, Any]) -> None:
        from helpdesk.models import Agent, Incident, Team, TimelineEntry
        from helpdesk.plugins import call_event

        loaders = {
            "actor": Agent,
            "previous_agent": Agent,
            "previous_team": Team,
            "entry": TimelineEntry,
        }
        with app.app_context(), database.connection_context():
            incident = Incident.get_or_none(Incident.id == incident_id)
            if incident is None:
                logger.warning("event %s: INC-%s no longer exists", name, incident_id)
                return
            kwargs = {
                key: (loaders[key].get_or_none(loaders[key].id == value)
                      if key in loaders and value is not None else value)
                for key, value in payload.items()
            }
            call_event(ctx.pm, name, incident=incident, ctx=ctx, **kwargs)

    @huey.periodic_task(crontab(minute="*"), name="sla_check")
    @huey.lock_task("sla-check")
    def sla_check() -> None:
        """Every minute, under a lock so passes never overlap."""
        from helpdesk import sla

        with app.app_context(), database.connection_context():
            fired = sla.check(ctx)
            if fired:
                logger.info("SLA check fired %d event(s)", fired)

    @huey.periodic_task(crontab(minute="*/5"), name="auto_close")
    @huey.lock_task("auto-close")
    def auto_close() -> None:
        from helpdesk import incidents

        with app.app_context(), database.connection_context():
            days = ctx.settings.auto_close_days
            if days:
                incidents.close_resolved(ctx, days)

    @huey.task(name="deliver", retries=0)
    def deliver(delivery_id: int) -> None:
        """Send one outbox row (claimed first, so a duplicate task does nothing)."""
        from helpdesk.notify import outbox

        with app.app_context(), database.connection_context():
            outbox.deliver(ctx, delivery_id)

    @huey.periodic_task(crontab(minute="*"), name="sweep_outbox")
    @huey.lock_task("sweep-outbox")
    def sweep_outbox() -> None:
        from helpdesk.notify import outbox

        with app.app_context(), database.connection_context():
            outbox.sweep(ctx)

    from helpdesk.mail import imap

    imap.register(app, huey, ctx)  # polls the configured IMAP mailboxes
    return Tasks(fire_event=fire_event, deliver=deliver, sla_check=sla_check, auto_close=auto_close,
                 sweep_outbox=sweep_outbox)
