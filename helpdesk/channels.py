"""Sending through the registered channel types.

:func:`deliver` sends one message now, in the calling process; the outbox
(retries, dead letters) is built on top of it.
"""

from __future__ import annotations

from flask import current_app

from helpdesk.records import DeliveryError, Message


def deliver(channel: str, message: Message) -> None:
    """Send ``message`` through channel type ``channel``; raises :class:`DeliveryError`."""
    registry = current_app.extensions["helpdesk"].registry
    transport = registry.channel_types.get(channel)
    if transport is None:
        raise DeliveryError(f"no channel type named {channel!r} is registered", permanent=True)
    transport.send(message)
