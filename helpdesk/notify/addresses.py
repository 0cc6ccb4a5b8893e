"""How each agent is reached on each channel: their on/off choice and the values of the
channel's per-agent fields (:class:`helpdesk.records.ChannelField`), stored generically.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from helpdesk.context import Context
from helpdesk.db import write_transaction
from helpdesk.errors import DomainError
from helpdesk.models import Agent, AgentChannel
from helpdesk.records import ChannelType, DeliveryError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentSetting:
    """One agent's choice for one channel type."""

    enabled: bool
    values: Mapping[str, str]


def agent_channel_types(ctx: Context) -> list[ChannelType]:
    """The registered channel types that can address agents, in registration order."""
    return [channel for channel in ctx.registry.channel_types.values() if channel.address_for is not None]


def settings_for(agent_ids: Iterable[int]) -> dict[tuple[int, str], AgentSetting]:
    """Stored settings by (agent id, channel name); absent means the channel's default."""
    ids = list(agent_ids)
    if not ids:
        return {}
    found = {}
    for row in AgentChannel.select().where(AgentChannel.agent.in_(ids)):
        try:
            values = json.loads(row.values or "{}")
        except ValueError:
            values = {}
        found[(row.agent_id, row.channel)] = AgentSetting(bool(row.enabled), values)
    return found


def setting(settings: Mapping[tuple[int, str], AgentSetting], agent_id: int,
            channel: ChannelType) -> AgentSetting:
    return settings.get((agent_id, channel.name), AgentSetting(channel.enabled_by_default, {}))


def check_value(ctx: Context, channel: ChannelType, field_name: str, value: str) -> str:
    """A per-agent field value as it will be stored, or :class:`DomainError` saying what is wrong.

    URL fields go through the same guard as sending (http(s), no credentials, no
    private, loopback or link-local address unless the plugin's ``allow_private``
    lists it), so a bad address is refused when it is saved, not only when sent.
    """
    field = next(f for f in channel.agent_fields if f.name == field_name)
    value = (value or "").strip()
    if not value:
        return ""
    label = f"{channel.title}: {field.label}"
    if len(value) > field.max_length:
        raise DomainError(f"{label} is limited to {field.max_length} characters.")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise DomainError(f"{label} must be one line of printable text.")
    if field.kind == "url":
        from helpdesk.outbound import resolve

        try:
            # The plugin's own settings table (a channel may be named otherwise than its plugin),
            # else one named after the channel (a plugin registered under another name).
            owner = ctx.registry.owners.get(("helpdesk_channel_types", channel.name), channel.name)
            allowed = (ctx.plugin_settings(owner).list("allow_private")
                       or ctx.plugin_settings(channel.name).list("allow_private"))
            resolve(value, allowed)
        except DeliveryError as error:
            if error.permanent:  # a name that does not resolve today may tomorrow: kept
                raise DomainError(f"{label}: {error}") from None
    elif field.kind == "email" and ("@" not in value or " " in value):
        raise DomainError(f"{label} must be an e-mail address.")
    if field.check is not None:
        from helpdesk.plugins import run_check

        try:
            owner = ctx.registry.owners.get(("helpdesk_channel_types", channel.name), channel.name)
            run_check(owner, f"ChannelField({field.name!r}).check", field.check, ctx, value)
        except ValueError as error:
            raise DomainError(f"{label}: {error}") from None
    return value


def save(ctx: Context, agent: Agent, choices: Mapping[str, tuple[bool, Mapping[str, str]]]) -> None:
    """Store an agent's channel choices: channel name -> (enabled, field values).

    Every value is checked first; nothing is stored if one is refused.
    """
    store(agent, choices, checked(ctx, agent, choices))


def checked(ctx: Context, agent: Agent, choices: Mapping[str, tuple[bool, Mapping[str, str]]]
            ) -> list[dict[str, Any]]:
    """The rows :func:`store` writes for ``choices``, every value checked (:class:`DomainError`
    for the first refused). Called before a caller's transaction, a plugin's failing check is
    kept on the Plugins page rather than rolled back with the refused change."""
    channels = ctx.registry.channel_types
    rows = []
    for name, (enabled, values) in choices.items():
        channel = channels.get(name)
        if channel is None or channel.address_for is None:
            raise DomainError(f"There is no channel {name!r} to choose.")
        known = {f.name for f in channel.agent_fields}
        values_checked = {key: check_value(ctx, channel, key, value)
                          for key, value in values.items() if key in known}
        rows.append({"agent": agent.id, "channel": name, "enabled": bool(enabled),
                     "values": json.dumps({k: v for k, v in values_checked.items() if v}, sort_keys=True)})
    return rows


def store(agent: Agent, choices: Mapping[str, Any], rows: list[dict[str, Any]]) -> None:
    """Replace the agent's choices of the channels in ``choices`` with ``rows`` (from :func:`checked`)."""
    with write_transaction():
        AgentChannel.delete().where((AgentChannel.agent == agent.id)
                                    & (AgentChannel.channel.in_(list(choices)))).execute()
        if rows:
            AgentChannel.insert_many(rows).execute()


def address(ctx: Context, channel: ChannelType, agent: Agent,
            settings: Mapping[tuple[int, str], AgentSetting]) -> str | None:
    """The agent's address on ``channel`` if they are reachable and have it switched on.

    A channel's ``address_for`` that raises is logged and treated as "not
    reachable": a broken plugin must not block the change being notified.
    """
    chosen = setting(settings, agent.id, channel)
    if not chosen.enabled or channel.address_for is None:
        return None
    try:
        found = channel.address_for(ctx, agent, chosen.values)
    except Exception as error:
        from helpdesk.plugins import record_failure

        logger.exception("channel %r failed to address agent %s", channel.name, agent.id)
        record_failure(ctx.registry.owners.get(("helpdesk_channel_types", channel.name), channel.name),
                       "address_for", None, error)
        return None
    return str(found) if found else None
