"""Notification: who is told (:mod:`.rules`), what the message says (:mod:`.message`),
how each person is reached on each channel (:mod:`.addresses`), and the outbox that makes
sure they are told (:mod:`.outbox`).

The core never names a channel: channel types are registered records that say
how they address agents, contacts or everyone (see
:class:`helpdesk.records.ChannelType`), and in-app notices are a built-in
channel like any other.
"""

from helpdesk.notify.outbox import enqueue

__all__ = ["enqueue"]
