"""The example plugin's own tests, written with the helpdesk test kit."""

import pytest

from helpdesk import incidents

helpdesk_example_chat = pytest.importorskip(
    "helpdesk_example_chat", reason="pip install ./tests/example_plugin (make test does)")


@pytest.fixture
def helpdesk_plugins():
    return [helpdesk_example_chat]


@pytest.fixture
def helpdesk_settings(http_receiver):
    return {"plugins": {"example_chat": {"url": f"{http_receiver.url}/hook", "room": "#ops",
                                         "allow_private": ["127.0.0.1"]}}}


def test_assignment_is_announced_in_the_chat_room(helpdesk_ctx, helpdesk_app, personas,
                                                  incident_factory, http_receiver):
    incident = incident_factory(title="VPN down")
    with helpdesk_app.app_context():
        incidents.assign(helpdesk_ctx, incident.id, personas.owner, personas.database_team, None)
    (request,) = http_receiver.requests
    assert request.path == "/hook"
    assert request.json() == {"text": f"{incident.reference} assigned to Database\nVPN down",
                              "channel": "#ops"}


def test_incident_page_shows_the_room(login, personas, incident_factory):
    incident = incident_factory()
    page = login(personas.owner).get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert f"Assignments of {incident.reference} are announced in #ops." in page
