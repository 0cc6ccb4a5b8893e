"""A chat notification channel: posts a JSON message to a webhook URL.

Tells the chat room whenever an incident is assigned, and shows on the
incident page where notifications go.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from helpdesk import hookimpl, plugin_settings
from helpdesk.channels import deliver
from helpdesk.records import ChannelType, DeliveryError, Message, Panel, PluginAssets


def send(message: Message) -> None:
    """Post one message; 5xx and network errors are temporary, 4xx permanent."""
    body = json.dumps({"text": f"{message.subject}\n{message.text}",
                       "channel": message.recipient}).encode()
    request = urllib.request.Request(
        plugin_settings("example_chat").require("url"), data=body, method="POST",
        headers={"Content-Type": "application/json", "Idempotency-Key": message.idempotency_key},
    )
    try:
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310 - URL from admin config
            pass
    except urllib.error.HTTPError as error:
        raise DeliveryError(f"chat answered {error.code}", permanent=error.code < 500) from None
    except OSError as error:
        raise DeliveryError(f"chat unreachable: {error}") from None


@hookimpl
def helpdesk_channel_types() -> list[ChannelType]:
    return [ChannelType("example_chat", "Example chat", send)]


@hookimpl
def incident_assigned(incident: Any, actor: Any, previous_team: Any, previous_agent: Any) -> None:
    if "url" not in plugin_settings("example_chat"):
        return  # not configured: stay quiet
    team = incident.assigned_team.name if incident.assigned_team else "nobody"
    deliver("example_chat", Message(
        recipient=plugin_settings("example_chat").get("room", "#helpdesk"),
        subject=f"{incident.reference} assigned to {team}",
        text=incident.title,
        event="incident_assigned",
        incident_reference=incident.reference,
        idempotency_key=f"{incident.reference}-v{incident.version}",
    ))


@hookimpl
def helpdesk_assets() -> PluginAssets:
    return PluginAssets("example_chat", templates=Path(__file__).with_name("templates"))


@hookimpl
def helpdesk_incident_panels(incident: Any, agent: Any) -> list[Panel]:
    if "url" not in plugin_settings("example_chat"):
        return []
    room = plugin_settings("example_chat").get("room", "#helpdesk")
    return [Panel("Chat", "example_chat/panel.html", {"room": room})]
