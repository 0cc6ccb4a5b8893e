"""Write every incident event as one JSON line to a file, for audit tools and log shippers.

Settings: ``[plugins.activity_log] path = "/var/log/helpdesk/activity.jsonl"``
(default: ``activity.jsonl`` in the instance folder). ``helpdesk activity``
prints the latest lines.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from pathlib import Path
from typing import Any

import click

from helpdesk import Context, hookimpl, now
from helpdesk.records import SettingsTable

_lock = threading.Lock()


def log_path(ctx: Context) -> Path:
    configured = ctx.plugin_settings("activity_log").get("path")
    return Path(configured) if configured else ctx.instance_path / "activity.jsonl"


def _write(ctx: Context, event: str, incident: Any, actor: Any, event_key: str, **details: Any) -> None:
    line = {
        "at": now().isoformat() + "Z",
        "event": event,
        # The same for a repeat of one event (delivery is at least once): readers drop repeats by it.
        "event_key": event_key,
        "incident": incident.reference,
        "actor": actor.username if actor is not None else None,
        **{key: (str(value) if value is not None else None) for key, value in details.items()},
    }
    path = log_path(ctx)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock, path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")


@hookimpl
def incident_created(ctx: Context, incident: Any, actor: Any, event_key: str) -> None:
    _write(ctx, "created", incident, actor, event_key, title=incident.title)


@hookimpl
def incident_assigned(ctx: Context, incident: Any, actor: Any, previous_team: Any,
                      previous_agent: Any, event_key: str) -> None:
    _write(ctx, "assigned", incident, actor, event_key, team=incident.assigned_team,
           agent=incident.assigned_agent, previous_team=previous_team, previous_agent=previous_agent)


@hookimpl
def incident_owner_changed(ctx: Context, incident: Any, actor: Any, previous_team: Any,
                           previous_agent: Any, reason: str, event_key: str) -> None:
    _write(ctx, "owner_changed", incident, actor, event_key, team=incident.owner_team,
           agent=incident.owner_agent, previous_team=previous_team, previous_agent=previous_agent,
           reason=reason)


@hookimpl
def incident_status_changed(ctx: Context, incident: Any, actor: Any, old_status: str,
                            new_status: str, event_key: str) -> None:
    _write(ctx, "status_changed", incident, actor, event_key, old=old_status, new=new_status)


@hookimpl
def incident_commented(ctx: Context, incident: Any, actor: Any, entry: Any, public: bool,
                       event_key: str) -> None:
    _write(ctx, "replied" if public else "noted", incident, actor, event_key)


@hookimpl
def helpdesk_cli_commands(ctx: Context) -> list[click.Command]:
    @click.command("activity")
    @click.option("--lines", "-n", default=20, show_default=True, help="How many lines.")
    def activity(lines: int) -> None:
        """Print the latest incident events from the activity log."""
        path = log_path(ctx)
        if not path.exists():
            click.echo(f"No activity logged yet ({path}).")
            return
        with path.open(encoding="utf-8") as handle:
            for line in deque(handle, maxlen=lines):
                click.echo(line.rstrip("\n"))

    return [activity]


@hookimpl
def helpdesk_settings_tables() -> list[SettingsTable]:
    """The keys of [plugins.activity_log] this plugin reads: any other is reported as a misspelling."""
    return [SettingsTable("activity_log", ("path",))]
