"""The requester on the incident page's Edit details: found by searching (as on the New
incident page), so every contact can be chosen however many there are, and the page does
not list them all on every view."""

from __future__ import annotations

import re

from helpdesk.models import Contact, Incident


def many_contacts(count: int) -> None:
    Contact.insert_many([{"name": f"Aaron {n:04d}", "email": f"aaron{n}@example.org"}
                         for n in range(count)]).execute()


def details_form(incident: Incident, **changes: str) -> dict[str, str]:
    return {"version": str(incident.version), "title": incident.title, "description": "",
            "type": incident.type, "impact": incident.impact, "urgency": incident.urgency,
            "category": "", "service": "", "requester": str(incident.requester_id or ""), **changes}


def test_a_contact_after_hundreds_of_others_can_be_found_and_chosen(personas, login, contact_factory,
                                                                     incident_factory):
    many_contacts(700)
    zoe = contact_factory(name="Zoë Zimmermann", email="zoe@example.org")
    incident = incident_factory(title="VPN drops")
    client = login(personas.owner)

    page = client.get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert "Aaron 0000" not in page, "the page no longer lists every contact"
    assert 'id="d-requester-none"' in page and "checked" in page.split('id="d-requester-none"')[1][:40]

    # without scripts: the search box's own form reloads the page with the matches, details open
    found = client.get(f"/incidents/{incident.id}?requester_query=zimmer").get_data(as_text=True)
    assert re.search(r"<details open>\s*<summary>Edit details", found)
    assert f'id="d-requester-{zoe.id}"' in found and "1 match for “zimmer”" in found
    # with scripts: only the matches, with the incident page's ids and no duplicate hint
    live = client.get("/incidents/new/requesters", query_string={"requester_query": "ZOE@", "prefix": "d-"})
    html = live.get_data(as_text=True)
    assert f'id="d-requester-{zoe.id}"' in html and "duplicate-hint" not in html

    response = client.post(f"/incidents/{incident.id}/details",
                           data=details_form(incident, requester=str(zoe.id)))
    assert response.status_code == 303
    assert Incident.get_by_id(incident.id).requester_id == zoe.id


def test_saving_other_details_keeps_the_requester(personas, login, contact_factory, incident_factory):
    ada = contact_factory(name="Ada Lovelace", email="ada@example.org")
    incident = incident_factory(title="Printer", requester=ada)
    client = login(personas.owner)
    page = client.get(f"/incidents/{incident.id}").get_data(as_text=True)
    chosen = re.search(rf'<input type="radio" id="d-requester-{ada.id}"[^>]*>', page).group(0)
    assert "checked" in chosen, "the current requester is the chosen one when the form opens"
    assert client.post(f"/incidents/{incident.id}/details",
                       data=details_form(incident, title="Printer jams")).status_code == 303
    fresh = Incident.get_by_id(incident.id)
    assert (fresh.title, fresh.requester_id) == ("Printer jams", ada.id)


def test_the_requester_box_of_another_page_is_refused(personas, login):
    client = login(personas.owner)
    answer = client.get("/incidents/new/requesters", query_string={"requester_query": "a", "prefix": '"><b>'})
    assert answer.status_code == 400


def test_the_search_escapes_what_was_typed_and_found(personas, login, contact_factory, incident_factory):
    contact_factory(name="<b>Bob</b>", email="bob@example.org")
    incident = incident_factory()
    page = login(personas.owner).get(f"/incidents/{incident.id}",
                                      query_string={"requester_query": "<b>"}).get_data(as_text=True)
    assert "&lt;b&gt;Bob&lt;/b&gt;" in page and "<b>Bob" not in page
    assert 'value="&lt;b&gt;"' in page


def test_the_match_count_says_what_the_search_found_and_when_to_type_more(personas, login, contact_factory,
                                                                         incident_factory):
    ada = contact_factory(name="Ada Lovelace", email="ada@example.org")
    for n in range(12):
        contact_factory(name=f"Smith {n:02d}", email=f"smith{n}@example.org")
    contact_factory(name="Ångström Lab", email="lab@example.org")
    incident = incident_factory(requester=ada)
    client = login(personas.owner)

    def box(query: str) -> str:
        page = client.get(f"/incidents/{incident.id}", query_string={"requester_query": query})
        return re.search(r'<div id="d-requester-matches".*?</fieldset>', page.get_data(as_text=True),
                         re.S).group(0)

    many = box("smith")
    assert "the first 10 matches for “smith”; type more to narrow" in many
    assert many.count('name="requester" value="') == 12  # none, Ada (the chosen one) and 10
    assert "1 match for “ångström”" in box("ångström")  # the case of letters beyond A-Z too
    assert "No contact matches “nobody”." in box("nobody") and "Ada Lovelace" in box("nobody")


def test_without_scripts_the_search_keeps_what_was_typed_and_saves_nothing(
        personas, login, contact_factory, incident_factory):
    from helpdesk.models import Category, TimelineEntry

    ada = contact_factory(name="Ada Lovelace", email="ada@example.org")
    zoe = contact_factory(name="Zoë Zimmermann", email="zoe@example.org")
    network = Category.create(name="Network")
    incident = incident_factory(title="VPN drops", requester=ada)
    entries = TimelineEntry.select().where(TimelineEntry.incident == incident.id).count()
    client = login(personas.owner)
    typed = details_form(incident, title="VPN drops every hour", description="Since <b>Monday</b>.",
                         impact="high", category=str(network.id), requester="",
                         requester_query="zimmer", find_requester="1")
    answer = client.post(f"/incidents/{incident.id}/details", data=typed)
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    form = re.search(r'<form method="post" action="/incidents/\d+/details".*?</form>', page, re.S).group(0)
    assert 'value="VPN drops every hour"' in form
    assert ">Since &lt;b&gt;Monday&lt;/b&gt;.</textarea>" in form
    assert re.search(r'<select id="d-impact".*?<option value="high" selected>', form, re.S)
    assert f'<option value="{network.id}" selected>Network</option>' in form
    assert f'name="version" value="{incident.version}"' in form
    assert f'id="d-requester-{zoe.id}"' in form and "1 match for “zimmer”" in form
    assert 'value="zimmer"' in form
    none = re.search(r'<input type="radio" id="d-requester-none"[^>]*>', form).group(0)
    assert "checked" in none, "the requester as chosen in the form (none), not as saved (Ada)"
    # nothing was saved by the search
    fresh = Incident.get_by_id(incident.id)
    assert (fresh.title, fresh.impact, fresh.category_id, fresh.requester_id, fresh.version) == (
        "VPN drops", incident.impact, None, ada.id, incident.version)
    assert TimelineEntry.select().where(TimelineEntry.incident == incident.id).count() == entries
    # choosing from the matches and saving keeps the typed edits
    saved = dict(typed, requester=str(zoe.id))
    del saved["find_requester"]
    assert client.post(f"/incidents/{incident.id}/details", data=saved).status_code == 303
    fresh = Incident.get_by_id(incident.id)
    assert (fresh.title, fresh.impact, fresh.category_id, fresh.requester_id) == (
        "VPN drops every hour", "high", network.id, zoe.id)


def test_a_search_does_not_move_the_form_past_someone_elses_change(personas, login, ctx, incident_factory):
    """The form comes back with the version the agent loaded: saving after a search still
    notices a change made meanwhile (409) instead of overwriting it (SECURITY-CASES G12)."""
    from helpdesk import incidents as domain

    incident = incident_factory(title="VPN drops")
    client = login(personas.owner)
    domain.update_details(ctx, incident.id, personas.colleague, incident.version, title="VPN down")
    typed = details_form(incident, title="VPN drops hourly", requester_query="x", find_requester="1")
    page = client.post(f"/incidents/{incident.id}/details", data=typed).get_data(as_text=True)
    assert f'name="version" value="{incident.version}"' in page
    del typed["find_requester"]
    assert client.post(f"/incidents/{incident.id}/details", data=typed).status_code == 409
    assert Incident.get_by_id(incident.id).title == "VPN down"
