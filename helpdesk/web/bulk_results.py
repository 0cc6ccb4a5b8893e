"""A bulk change's result, kept a short while for the page after it (Post/Redirect/Get).

The bulk bar posts, the rows change, and the browser is sent to the queue with a random key
in the address; that GET page reads the result back. Reloading it shows the same result and
changes nothing (the browser has no form to send again). The result is too large for the
cookie session (200 rows, each with its reason, and the bar's note), so it lives in a table;
only the agent who ran the change reads it, and only for :data:`KEEP_FOR`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from typing import Any

from helpdesk.clock import now
from helpdesk.db import write_transaction
from helpdesk.models import BulkResult

#: How long the page after a bulk change can show its result (reloads, the back button).
KEEP_FOR = dt.timedelta(hours=1)
_KEY = re.compile(r"[A-Za-z0-9_-]{16,32}")


def keep(agent_id: int, result: dict[str, Any]) -> str:
    """Store ``result`` (JSON-able) for the agent; return the key for the address. Results
    past :data:`KEEP_FOR` are deleted on the way, so the table stays small."""
    key = secrets.token_urlsafe(16)
    stamp = now()
    with write_transaction():
        BulkResult.delete().where(BulkResult.created_at < stamp - KEEP_FOR).execute()
        BulkResult.create(key=key, agent=agent_id, result=json.dumps(result), created_at=stamp)
    return key


def recall(agent_id: int, key: str | None) -> dict[str, Any] | None:
    """The result kept under ``key`` for this agent, or ``None`` (unknown, another agent's,
    or older than :data:`KEEP_FOR`: the queue is then shown without it)."""
    if not key or not _KEY.fullmatch(key):
        return None
    row = BulkResult.get_or_none((BulkResult.key == key) & (BulkResult.agent == agent_id)
                                 & (BulkResult.created_at >= now() - KEEP_FOR))
    return json.loads(row.result) if row is not None else None
