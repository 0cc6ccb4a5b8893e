"""Example plugin: announce assignments in a chat room (the README's plugin guide).

It uses only the public face (``helpdesk`` and ``helpdesk.records``): a channel
type that posts through the guarded ``helpdesk.post``, an event hook that puts
a message in the outbox with ``helpdesk.enqueue``, and a panel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpdesk import Context, enqueue, hookimpl, post
from helpdesk.records import ChannelType, Message, Panel, PluginAssets


def send(ctx: Context, message: Message) -> None:
    settings = ctx.plugin_settings("example_chat")
    post(settings.require("url"), json={"text": f"{message.subject}\n{message.text}",
                                        "channel": message.recipient},
         headers={"Idempotency-Key": message.idempotency_key}, timeout=5,
         allow_private=settings.list("allow_private"))


@hookimpl
def helpdesk_channel_types() -> list[ChannelType]:
    return [ChannelType("example_chat", "Example chat", send)]


@hookimpl
def incident_assigned(ctx: Context, incident: Any, event_key: str) -> None:
    settings = ctx.plugin_settings("example_chat")
    if "url" not in settings:
        return  # not configured: stay quiet
    team = incident.assigned_team.name if incident.assigned_team else "nobody"
    enqueue(ctx, "example_chat", settings.get("room", "#helpdesk"),
            f"{incident.reference} assigned to {team}", incident.title, incident=incident,
            event="incident_assigned",
            idempotency_key=f"example_chat:{event_key}")  # an event may come twice: sent once


@hookimpl
def helpdesk_assets() -> PluginAssets:
    return PluginAssets("example_chat", templates=Path(__file__).with_name("templates"))


@hookimpl
def helpdesk_incident_panels(ctx: Context, incident: Any, agent: Any) -> list[Panel]:
    settings = ctx.plugin_settings("example_chat")
    if "url" not in settings:
        return []
    return [Panel("Chat", "example_chat/panel.html", {"room": settings.get("room", "#helpdesk")})]
