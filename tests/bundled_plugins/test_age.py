"""The bundled age plugin: a queue column and an incident panel from its own template."""

import re

import pytest

from helpdesk import customers, incidents
from helpdesk_plugins import age


@pytest.fixture
def helpdesk_plugins():
    return [age]


def test_queue_shows_how_old_each_incident_is(login, personas, incident_factory, frozen_clock):
    incident_factory(title="Old one")
    frozen_clock.advance(days=2, hours=3)
    page = login(personas.owner).get("/queues/owned").get_data(as_text=True)
    assert '<th scope="col">Age</th>' in page
    assert re.search(r'<td data-column="age"[^>]*>2 days 3 hours</td>', page)


def test_panel_counts_public_replies_and_time_since_the_last(ctx, helpdesk_app, login, personas,
                                                            incident_factory, frozen_clock):
    incident = incident_factory()
    frozen_clock.advance(hours=1)
    with helpdesk_app.app_context():
        incidents.add_comment(ctx, incident.id, personas.owner, "On it", public=True)
        incidents.add_comment(ctx, incident.id, personas.owner, "internal", public=False)
    frozen_clock.advance(minutes=25)
    with helpdesk_app.app_context():
        incidents.add_comment(ctx, incident.id, personas.owner, "Found the cause", public=True)
        incidents.add_comment(ctx, incident.id, personas.owner, "internal again", public=False)
    frozen_clock.advance(minutes=10)
    page = login(personas.owner).get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert "Customer contact" in page
    assert "<dt>Public replies</dt><dd>2</dd>" in page
    assert "<dd>10 minutes ago</dd>" in page, "since the latest public reply"
    assert "<dt>Open for</dt><dd>1 hour 35 minutes</dd>" in page


def test_a_resolution_counts_as_hearing_from_us_even_after_a_reopen(ctx, helpdesk_app, login, personas,
                                                                     incident_factory, frozen_clock):
    with helpdesk_app.app_context():
        ada = customers.find_or_create_contact("ada@example.org", "Ada")
    incident = incident_factory(requester=ada)
    frozen_clock.advance(hours=1)
    with helpdesk_app.app_context():
        incidents.add_comment(ctx, incident.id, personas.owner, "On it", public=True)
    frozen_clock.advance(hours=2)
    with helpdesk_app.app_context():
        incidents.change_status(ctx, incident.id, personas.owner, "resolved", note="Restarted the VPN")
    frozen_clock.advance(minutes=30)
    with helpdesk_app.app_context():
        incidents.reopen(ctx, incident.id, personas.owner, note="Customer says it is down again")
    frozen_clock.advance(minutes=15)
    page = login(personas.owner).get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert "<dt>Public replies</dt><dd>1</dd>" in page
    assert "<dd>45 minutes ago</dd>" in page, "the resolution mail was the last the customer heard"


def test_panel_of_an_incident_nobody_has_answered(helpdesk_app, login, personas, incident_factory,
                                                 frozen_clock):
    incident = incident_factory()
    frozen_clock.advance(hours=2)
    page = login(personas.owner).get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert "<dt>Public replies</dt><dd>0</dd>" in page
    assert "<dd>never (2 hours since logging)</dd>" in page


def test_the_instance_folder_can_override_a_plugin_template(helpdesk_app, login, personas,
                                                            incident_factory):
    override = helpdesk_app.instance_path + "/templates/age/panel.html"
    import os

    os.makedirs(os.path.dirname(override), exist_ok=True)
    with open(override, "w") as handle:
        handle.write("<p>Our own contact panel: {{ replies }} replies</p>")
    incident = incident_factory()
    page = login(personas.owner).get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert "Our own contact panel: 0 replies" in page


@pytest.mark.parametrize(("minutes", "shown"), [(0, "under a minute"), (1, "1 minute"), (59, "59 minutes"),
                                                (60, "1 hour"), (200, "3 hours 20 minutes"),
                                                (60 * 24 + 1, "1 day"), (60 * 52, "2 days 4 hours")])
def test_humanize_says_durations_in_words(minutes, shown):
    import datetime as dt

    assert age.humanize(dt.timedelta(minutes=minutes)) == shown


def test_a_resolution_without_a_requester_told_nobody(ctx, helpdesk_app, login, personas,
                                                      incident_factory, frozen_clock):
    incident = incident_factory()  # logged by an agent for a service, no customer on it
    frozen_clock.advance(hours=1)
    with helpdesk_app.app_context():
        incidents.change_status(ctx, incident.id, personas.owner, "resolved", note="Restarted the VPN")
        incidents.reopen(ctx, incident.id, personas.owner, note="Down again")
    frozen_clock.advance(minutes=20)
    page = login(personas.owner).get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert "<dd>never (1 hour 20 minutes since logging)</dd>" in page
