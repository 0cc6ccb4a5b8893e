"""A channel that broadcasts (every incident event to its addresses: a team room, a feed)
gets a message a person can read, not only a payload for machines."""

from __future__ import annotations

from typing import Any

import pytest

from helpdesk import hookimpl, incidents
from helpdesk.records import ChannelType, Message


class TeamRoom:
    """A third-party channel posting every event to one room."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    @hookimpl
    def helpdesk_channel_types(self) -> list[ChannelType]:
        return [ChannelType("room", "Team room", send=lambda ctx, message: self.sent.append(message),
                            broadcast=lambda ctx: ["ops-room"])]


@pytest.fixture
def room() -> TeamRoom:
    return TeamRoom()


@pytest.fixture
def helpdesk_plugins(room: TeamRoom) -> list[Any]:
    return [room]


@pytest.fixture
def helpdesk_settings() -> dict[str, Any]:
    return {"default_sla_policy": "none"}


def test_a_broadcast_says_what_happened_to_which_incident(ctx, helpdesk_app, personas, incident_factory,
                                                          room):
    incident = incident_factory(title="Orders database slow")
    with helpdesk_app.app_context():
        incidents.assign(ctx, incident.id, personas.owner, personas.database_team, None)
    events = {message.event: message for message in room.sent}
    assert list(events) == ["incident_created", "incident_assigned", "incident_status_changed"]
    created, assigned = events["incident_created"], events["incident_assigned"]
    assert created.recipient == "ops-room"
    assert created.subject == f"{incident.reference} created: Orders database slow"
    assert assigned.subject == f"{incident.reference} assigned: Orders database slow"
    assert f"{incident.reference}: Orders database slow (assigned)" in assigned.text
    assert "Assignee: Database / —" in assigned.text
    assert f"{ctx.base_url}/incidents/{incident.id}" in assigned.text
    assert events["incident_status_changed"].subject.startswith(f"{incident.reference} status changed: ")
