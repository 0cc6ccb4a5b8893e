"""Example third-party channel: page agents through an HTTP paging gateway.

Each agent enters their pager number on the profile page (a per-agent field);
the rules then reach owners and assignees through it like any other channel.
Written against the public face only (``helpdesk`` and ``helpdesk.records``).

    [plugins.example_pager]
    gateway = "https://pager.example.com/send"
    allow_private = []
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from helpdesk import Context, hookimpl, post
from helpdesk.records import ChannelField, ChannelType, Message


def check_number(ctx: Context, value: str) -> None:
    if not re.fullmatch(r"\+?[0-9 ]{4,20}", value):
        raise ValueError("a pager number is 4 to 20 digits, optionally with a leading +")


def send(ctx: Context, message: Message) -> None:
    settings = ctx.plugin_settings("example_pager")
    post(settings.require("gateway"), json={"to": message.recipient, "text": message.subject},
         headers={"Idempotency-Key": message.idempotency_key}, timeout=5,
         allow_private=settings.list("allow_private"))


def address_for(ctx: Context, agent: Any, values: Mapping[str, str]) -> str | None:
    return values.get("number") or None


@hookimpl
def helpdesk_channel_types(ctx: Context) -> list[ChannelType]:
    if "gateway" not in ctx.plugin_settings("example_pager"):
        return []
    return [ChannelType("example_pager", "Pager", send, "Short pages through the paging gateway",
                        agent_fields=(ChannelField("number", "Pager number", check=check_number),),
                        address_for=address_for, enabled_by_default=False)]
