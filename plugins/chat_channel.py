"""The chat channel: Slack-compatible incoming webhooks (Mattermost and Rocket.Chat accept the
same). Each agent sets their webhook URL on their profile page (the channel's per-agent
field), checked when saved as when sent.

    [plugins.chat]
    timeout = 10
    allow_private = ["chat.internal"]   # a self-hosted chat server on the private network
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from helpdesk import PRIORITIES, Context, hookimpl, post
from helpdesk.records import ChannelField, ChannelType, Message, SettingsTable


def escape(text: str) -> str:
    """Slack's escaping: &, < and > as entities, so ``<!channel>`` or ``<url|label>`` in a
    title stay text instead of pinging everyone or disguising a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def text_for(message: Message) -> str:
    data = message.data
    reference = escape(str(data.get("incident", "incident")))
    link = f"<{data['url']}|{reference}>" if data.get("url") else reference
    priority = PRIORITIES.get(data.get("priority"), "")
    sla = ""
    if data.get("target"):
        sla = f" · SLA {data['target']} " + ("breached" if message.event == "incident_sla_breached"
                                             else f"{round(float(data.get('point') or 0) * 100)}% used")
    return f"*{link}* {escape(message.subject)}\n{priority}{sla}".strip()


def send(ctx: Context, message: Message) -> None:
    settings = ctx.plugin_settings("chat")
    post(message.recipient, json={"text": text_for(message)},
         headers={"Idempotency-Key": message.idempotency_key},
         timeout=float(settings.get("timeout", 10)), allow_private=settings.list("allow_private"))


def address_for(ctx: Context, agent: Any, values: Mapping[str, str]) -> str | None:
    return values.get("url") or None


@hookimpl
def helpdesk_channel_types() -> list[ChannelType]:
    return [ChannelType(
        "chat", "Chat (Slack-compatible webhook)", send, "Messages to agents' chat",
        agent_fields=(ChannelField("url", "Chat webhook URL (Slack, Mattermost, Rocket.Chat)", "url",
                                   help="https://chat.example.com/hooks/…"),),
        address_for=address_for, enabled_by_default=True)]


@hookimpl
def helpdesk_settings_tables() -> list[SettingsTable]:
    """The keys of [plugins.chat] this plugin reads: any other is reported as a misspelling."""
    return [SettingsTable("chat", ("allow_private", "timeout"))]
