"""Changing an incident's requester in a real browser: the Edit details search finds a contact
as you type, Enter in the search box searches (it does not save the form), and the chosen
contact is saved with the other details."""

from __future__ import annotations

import pytest
from browser_kit import log_in, require_chromium

from helpdesk.models import Contact, Incident

require_chromium()

pytestmark = pytest.mark.browser


def test_the_agent_finds_and_sets_another_requester(server, personas, page, contact_factory, log_incident):
    Contact.insert_many([{"name": f"Aaron {n:04d}", "email": f"aaron{n}@example.org"}
                         for n in range(600)]).execute()
    ada = contact_factory(name="Ada Lovelace", email="ada@example.org")
    zoe = contact_factory(name="Zoë Zimmermann", email="zoe@example.org")
    incident = log_incident(title="VPN drops", requester=ada)
    log_in(page, server, personas.owner.username)
    page.goto(f"{server}/incidents/{incident.id}")
    page.get_by_text("Edit details").click()
    assert page.get_by_label("Ada Lovelace <ada@example.org>").is_checked()

    search = page.get_by_label("Find a contact by name or e-mail")
    search.fill("zimm")  # the matches come as one types
    page.get_by_label("Zoë Zimmermann <zoe@example.org>").wait_for()
    assert page.get_by_label("Ada Lovelace <ada@example.org>").is_checked(), "still the chosen one"
    page.get_by_label("Title").fill("VPN drops every hour")
    search.press("Enter")  # searches again; saves nothing
    page.wait_for_timeout(300)
    assert Incident.get_by_id(incident.id).title == "VPN drops"
    assert page.get_by_label("Title").input_value() == "VPN drops every hour", "typed edits stay"

    page.get_by_label("Zoë Zimmermann <zoe@example.org>").check()
    page.get_by_role("button", name="Save details").click()
    page.get_by_text("Details saved.").wait_for()
    fresh = Incident.get_by_id(incident.id)
    assert (fresh.requester_id, fresh.title) == (zoe.id, "VPN drops every hour")
    assert "Zoë Zimmermann" in page.locator("#incident-body").inner_text()


def test_the_search_button_keeps_typed_edits_and_enter_in_the_title_still_saves(
        server, personas, page, contact_factory, log_incident):
    zoe = contact_factory(name="Zoë Zimmermann", email="zoe@example.org")
    incident = log_incident(title="VPN drops")
    log_in(page, server, personas.owner.username)
    page.goto(f"{server}/incidents/{incident.id}")
    page.get_by_text("Edit details").click()
    page.get_by_label("Title").fill("VPN drops at noon")
    page.get_by_label("Find a contact by name or e-mail").fill("zimm")
    page.locator("form[data-details]").get_by_role("button", name="Search").click()  # nothing saved
    page.get_by_label("Zoë Zimmermann <zoe@example.org>").wait_for()
    page.wait_for_timeout(300)
    assert Incident.get_by_id(incident.id).title == "VPN drops"
    assert page.get_by_label("Title").input_value() == "VPN drops at noon", "typed edits stay"
    page.get_by_label("Zoë Zimmermann <zoe@example.org>").check()
    page.get_by_label("Title").press("Enter")  # the form's first button is Search; Enter saves
    page.get_by_text("Details saved.").wait_for()
    fresh = Incident.get_by_id(incident.id)
    assert (fresh.requester_id, fresh.title) == (zoe.id, "VPN drops at noon")
