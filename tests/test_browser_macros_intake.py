"""Canned replies and the New incident page in a real browser (Chromium through the kit):
fill a reply from a macro, edit it, send it with its actions as one change; log an incident
choosing the requester by typing, watching the priority preview and the duplicate hint; and
one with a new contact typed in."""

from __future__ import annotations

import json
import re

import pytest
from browser_kit import log_in, require_chromium

from helpdesk.models import Contact, Incident, Macro, TimelineEntry

require_chromium()

pytestmark = pytest.mark.browser


def test_a_macro_fills_the_reply_and_sends_it_with_its_actions(server, personas, page, log_incident,
                                                              contact_factory):
    ada = contact_factory(name="Ada Lovelace", email="ada@example.com")
    incident = log_incident(title="VPN drops", requester=ada, assigned_team=personas.service_desk)
    Macro.create(name="Working on it", public=True, agent=personas.owner, created_by=personas.owner,
                 body="Hello {requester_name}, {my_name} is working on {reference}.",
                 actions=json.dumps([{"action": "status", "params": {"status": "in_progress"}},
                                     {"action": "priority", "params": {"priority": 2, "reason": "VIP"}}]))
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    log_in(page, server, personas.owner.username)
    page.goto(f"{server}/incidents/{incident.id}")
    page.get_by_label("Canned reply (macro)").select_option(label="Working on it")
    reply = page.locator("textarea[name=body]")
    expected = f"Hello Ada Lovelace, John Carter is working on {incident.reference}."
    page.wait_for_function("([el, text]) => el.value === text", arg=[reply.element_handle(), expected])
    assert "Set status (Status: In progress)" in page.locator("#macro-does").inner_text()
    assert page.locator('input[name="visibility"][value="public"]').is_checked()
    reply.press("End")
    reply.type(" Back within the hour.")
    page.get_by_role("button", name="Send with macro").click()
    page.get_by_text(f"{expected} Back within the hour.").wait_for()
    after = Incident.get_by_id(incident.id)
    assert (after.status, after.priority) == ("in_progress", 2)
    assert after.version == incident.version + 1
    kinds = [(e.kind, e.field) for e in TimelineEntry.select().where(TimelineEntry.incident == incident.id)
             .order_by(TimelineEntry.id)][1:]
    assert kinds == [("reply", None), ("change", "status"), ("change", "priority")]
    assert problems == []


def test_a_refused_macro_says_why_and_keeps_the_edited_reply(server, personas, page, log_incident):
    incident = log_incident(title="Printer jam")
    Macro.create(name="Close it", public=False, agent=personas.owner, created_by=personas.owner,
                 body="Closing {reference}.", actions=json.dumps([{"action": "status",
                                                                    "params": {"status": "closed"}}]))
    log_in(page, server, personas.owner.username)
    page.goto(f"{server}/incidents/{incident.id}")
    page.get_by_label("Canned reply (macro)").select_option(label="Close it")
    reply = page.locator("textarea[name=body]")
    page.wait_for_function("el => el.value.startsWith('Closing')", arg=reply.element_handle())
    reply.fill("My own careful words")
    page.get_by_role("button", name="Send with macro").click()
    alert = page.locator("#macro-result")
    alert.get_by_text("cannot go from new to closed").wait_for()
    assert reply.input_value() == "My own careful words"
    assert Incident.get_by_id(incident.id).version == incident.version
    assert TimelineEntry.select().where(TimelineEntry.incident == incident.id).count() == 1


def test_a_macro_refused_after_someone_else_changed_the_incident_sends_on_a_second_try(
        server, personas, page, log_incident, ctx, app):
    from helpdesk import incidents

    incident = log_incident(title="Printer jam")
    Macro.create(name="Urgent", public=False, agent=personas.owner, created_by=personas.owner,
                 body="Raising {reference}.", actions=json.dumps([{"action": "priority",
                                                                    "params": {"priority": 1}}]))
    log_in(page, server, personas.owner.username)
    page.goto(f"{server}/incidents/{incident.id}")
    with app.app_context():  # a colleague edits the incident while the page is open
        incidents.update_details(ctx, incident.id, personas.colleague, incident.version,
                                 title="Printer on fire")
    page.get_by_label("Canned reply (macro)").select_option(label="Urgent")
    reply = page.locator("textarea[name=body]")
    page.wait_for_function("el => el.value.startsWith('Raising')", arg=reply.element_handle())
    page.get_by_role("button", name="Send with macro").click()
    page.locator("#macro-result").get_by_text("send again").wait_for()
    assert Incident.get_by_id(incident.id).priority != 1
    page.get_by_role("button", name="Send with macro").click()
    page.get_by_text(f"{incident.reference} is now version").wait_for()  # the page after sending
    after = Incident.get_by_id(incident.id)
    assert (after.priority, after.title) == (1, "Printer on fire")


def test_new_incident_with_requester_search_priority_preview_and_duplicate_hint(
        server, personas, page, log_incident, contact_factory):
    ada = contact_factory(name="Ada Lovelace", email="ada@example.com")
    contact_factory(name="Bob Jones", email="bob@example.com")
    earlier = log_incident(title="VPN drops every minute", requester=ada)
    log_in(page, server, personas.owner.username)
    page.goto(f"{server}/incidents/new")
    page.get_by_label("Title").fill("VPN slow")
    preview = page.locator("#priority-preview")
    assert preview.inner_text() == "P3 Medium"
    page.get_by_label("Impact").select_option("high")
    page.wait_for_function("el => el.textContent === 'P2 High'", arg=preview.element_handle())
    page.get_by_label("Urgency").select_option("high")
    page.wait_for_function("el => el.textContent === 'P1 Critical'", arg=preview.element_handle())

    search = page.get_by_label("Find a contact by name or e-mail")
    search.type("lovel")
    match = page.get_by_label("Ada Lovelace <ada@example.com>")
    match.wait_for()
    assert page.get_by_label("Bob Jones <bob@example.com>").count() == 0
    # keyboard only: from the search field to the radio group, then the arrow chooses Ada
    page.get_by_label("No requester").focus()
    page.keyboard.press("ArrowDown")
    assert match.is_checked()
    hint = page.locator("#duplicate-hint")
    hint.get_by_text("Is it one of these?").wait_for()
    assert hint.get_by_role("link", name=earlier.reference).count() == 1

    page.get_by_label("Assigned team").select_option(label="Database")
    page.wait_for_function("() => !document.querySelector('#assigned_agent').textContent.includes('Kofi')")
    options = page.locator("#assigned_agent option").all_inner_texts()
    assert "Priya Raman" in options and "John Carter" not in options
    page.locator("#assigned_agent").select_option(label="Priya Raman")
    page.get_by_role("button", name="Log incident").click()
    page.wait_for_url(re.compile(r"/incidents/\d+$"))
    logged = Incident.select().order_by(Incident.id.desc()).get()
    assert (logged.title, logged.requester_id, logged.priority) == ("VPN slow", ada.id, 1)
    assert logged.assigned_agent_id == personas.assignee.id


def test_new_incident_with_a_new_contact_typed_in(server, personas, page):
    log_in(page, server, personas.owner.username)
    page.goto(f"{server}/incidents/new")
    page.get_by_label("Title").fill("Cannot log in")
    new_contact = page.get_by_role("group", name="Or a new contact")
    new_contact.get_by_label("Name").fill("Grace Hopper")
    new_contact.get_by_label("E-mail").fill("grace@example")
    page.get_by_role("button", name="Log incident").click()
    page.locator("#new_contact_email-error").wait_for()
    assert Contact.select().count() == 0
    new_contact.get_by_label("E-mail").fill("grace@example.com")
    page.get_by_role("button", name="Log incident").click()
    page.wait_for_url(re.compile(r"/incidents/\d+$"))
    grace = Contact.get(Contact.email == "grace@example.com")
    assert Incident.get(Incident.title == "Cannot log in").requester_id == grace.id


def test_creating_a_macro_shows_only_the_fields_the_status_needs(server, personas, page):
    log_in(page, server, personas.owner.username)
    page.goto(f"{server}/profile")
    page.get_by_role("link", name="Canned replies (macros)").click()
    page.get_by_role("link", name="New personal macro").click()
    page.get_by_label("Name", exact=True).fill("Waiting for you")
    page.get_by_label("Reply (Markdown)").fill("Dear {customer}, we wait for {reference}.")
    status = page.get_by_role("group", name="Set status")
    status.get_by_label("Set status").check()
    status.locator("select[data-shows]").select_option("pending")
    assert status.get_by_label(re.compile("Pending reason")).is_visible()
    assert not status.get_by_label(re.compile("^Note")).is_visible()
    status.locator("select[data-shows]").select_option("resolved")
    assert status.get_by_label(re.compile("^Note")).is_visible()
    assert not status.get_by_label(re.compile("Pending reason")).is_visible()
    status.locator("select[data-shows]").select_option("pending")
    status.get_by_label(re.compile("Pending reason")).select_option("customer")
    page.get_by_role("button", name="Save macro").click()
    page.locator("#body-error").get_by_text("Unknown placeholder {customer}").wait_for()
    page.get_by_label("Reply (Markdown)").fill("Dear {requester_name}, we wait for {reference}.")
    page.get_by_role("button", name="Save macro").click()
    page.get_by_role("cell", name="Waiting for you", exact=True).wait_for()
    macro = Macro.get(Macro.name == "Waiting for you")
    assert json.loads(macro.actions) == [{"action": "status", "params": {"status": "pending",
                                                                         "pending_reason": "customer"}}]


def test_the_macro_pages_and_the_new_incident_page_fit_a_phone(server, personas, page, contact_factory):
    """Their content, that is: the page header is the design system's (helper E's) to fit."""
    ada = contact_factory(name="Ada Lovelace-Byron, Countess of a rather long name",
                          email="ada.lovelace.byron.countess@example.com")
    macro = Macro.create(name="A macro with a rather long name to wrap", public=True, agent=personas.owner,
                         created_by=personas.owner, body="Hello {requester_name}",
                         actions=json.dumps([{"action": "status", "params": {"status": "in_progress"}}]))
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, server, personas.owner.username)
    for path in ("/macros/", "/macros/new", f"/macros/{macro.id}", "/incidents/new",
                 f"/incidents/new?requester_query=lovelace&requester={ada.id}"):
        page.goto(f"{server}{path}")
        if "requester=" in path:
            assert page.locator(f"#requester-{ada.id}").is_checked()
        wide = page.evaluate("""() => [...document.querySelectorAll('#main *')]
            .filter(e => e.getBoundingClientRect().right > 390)
            .map(e => e.tagName + '#' + e.id + ' ' + Math.round(e.getBoundingClientRect().right))""")
        assert wide == [], f"{path} overflows 390 px: {wide[:5]}"
