"""``helpdesk mail-in``: one message from an MTA pipe, answered in codes the MTA understands.

0 (EX_OK): the message is taken — placed on an incident, quarantined for an
admin, or dropped as a loop or bounce, and recorded in every case.
75 (EX_TEMPFAIL): the database or the instance folder is unavailable; the MTA
keeps the message and retries, and the Message-ID makes the retry land once.
78 (EX_CONFIG): the instance's settings are wrong. 74 (EX_IOERR): stdin
could not be read.
"""

from __future__ import annotations

import logging
import sys
from typing import IO

import peewee

EX_OK, EX_IOERR, EX_TEMPFAIL, EX_CONFIG = 0, 74, 75, 78
logger = logging.getLogger(__name__)


def run(instance_path: str | None, stream: IO[bytes]) -> int:
    from helpdesk.config import ConfigError
    from helpdesk.plugins import PluginError

    try:
        raw = stream.read()
    except OSError as error:
        print(f"helpdesk mail-in: cannot read the message: {error}", file=sys.stderr)
        return EX_IOERR
    try:
        from helpdesk.app import create_app

        app = create_app({"instance_path": instance_path} if instance_path else None)
    except (ConfigError, PluginError) as error:
        print(f"helpdesk mail-in: {error}", file=sys.stderr)
        return EX_CONFIG
    return take(app, raw)


def take(app: object, raw: bytes) -> int:
    """Receive ``raw`` in ``app``; the exit code for the MTA."""
    from helpdesk.db import database
    from helpdesk.mail.receive import receive

    ctx = app.extensions["helpdesk"]  # type: ignore[attr-defined]
    try:
        with app.app_context(), database.connection_context():  # type: ignore[attr-defined]
            result = receive(ctx, raw)
    except (peewee.OperationalError, peewee.InterfaceError, peewee.DatabaseError) as error:
        print(f"helpdesk mail-in: database unavailable, try again later: {error}", file=sys.stderr)
        return EX_TEMPFAIL
    except OSError as error:
        print(f"helpdesk mail-in: cannot keep the message, try again later: {error}", file=sys.stderr)
        return EX_TEMPFAIL
    except Exception as error:  # noqa: BLE001 - never lose a message: the MTA keeps it and retries
        logger.exception("mail-in failed")
        print(f"helpdesk mail-in: failed, try again later: {type(error).__name__}: {error}",
              file=sys.stderr)
        return EX_TEMPFAIL
    reference = f" INC-{result.mail.incident_id}" if result.mail.incident_id else ""
    print(f"{result.outcome}{reference}: {result.reason or 'ok'}")
    return EX_OK
