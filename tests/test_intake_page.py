"""The New incident page: priority preview, requester search, a new contact inline (created
with the incident or not at all), the chosen team's agents, and the duplicate hint."""

from __future__ import annotations

from helpdesk.models import Contact, Incident


def new_incident(**extra):
    return {"title": "Printer on fire", "type": "incident", "impact": "medium", "urgency": "medium",
            "keep_ownership": "y", **extra}


def test_the_priority_preview_uses_the_domain_rule(personas, login):
    john = login(personas.owner)
    def preview(query):
        return john.get(f"/incidents/new/priority?{query}").get_data(as_text=True)

    assert preview("impact=high&urgency=high") == "P1 Critical"
    assert preview("impact=low&urgency=medium") == "P4 Low"
    assert "Choose impact" in preview("impact=huge&urgency=low")
    page = john.get("/incidents/new").get_data(as_text=True)
    assert 'aria-live="polite">P3 Medium</output>' in page


def test_the_requester_search_finds_by_name_or_email_and_escapes(personas, login, contact_factory):
    contact_factory(name="Ada Lovelace", email="ada@example.com")
    contact_factory(name="<b>Bob</b>", email="bob_1@example.com")
    contact_factory(name="Carol", email="carol@example.com")
    john = login(personas.owner)
    by_name = john.get("/incidents/new/requesters?requester_query=lovel").get_data(as_text=True)
    assert "Ada Lovelace" in by_name and "Carol" not in by_name
    by_mail = john.get("/incidents/new/requesters?requester_query=BOB_").get_data(as_text=True)
    assert "&lt;b&gt;Bob&lt;/b&gt;" in by_mail and "<b>Bob" not in by_mail
    # "_" is not a wildcard: it matches only itself
    assert "Carol" not in john.get("/incidents/new/requesters?requester_query=carol_").get_data(as_text=True)


def test_the_search_works_without_javascript_and_keeps_what_was_typed(personas, login, contact_factory):
    ada = contact_factory(name="Ada Lovelace", email="ada@example.com")
    page = login(personas.owner).post("/incidents/new", new_incident(
        title="Half typed", requester_query="ada", find_requester="1"))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f'id="requester-{ada.id}"' in html and 'value="Half typed"' in html
    assert Incident.select().count() == 0


def test_the_duplicate_hint_lists_the_requesters_open_incidents(personas, login, contact_factory,
                                                                incident_factory, ctx, app):
    ada = contact_factory(name="Ada Lovelace")
    still_open = incident_factory(title="VPN drops", requester=ada)
    done = incident_factory(title="Old one", requester=ada)
    from helpdesk import incidents

    with app.app_context():
        incidents.change_status(ctx, done.id, personas.owner, "cancelled", note="withdrawn")
    hint = login(personas.owner).get(f"/incidents/new/open-incidents?requester={ada.id}")
    hint = hint.get_data(as_text=True)
    assert "Is it one of these?" in hint and still_open.reference in hint and "Old one" not in hint
    assert f'href="/incidents/{still_open.id}"' in hint


def test_the_agent_list_follows_the_chosen_team(personas, login):
    john = login(personas.owner)
    db = john.get(f"/incidents/new/agents?assigned_team={personas.database_team.id}").get_data(as_text=True)
    assert "Priya Raman" in db and "Mateo Silva" in db and "Kofi Mensah" not in db and "John Carter" not in db
    every = john.get("/incidents/new/agents").get_data(as_text=True)
    assert "Kofi Mensah" in every and "Priya Raman" in every


def test_a_new_contact_is_created_with_the_incident(personas, login):
    answer = login(personas.owner).post("/incidents/new", new_incident(
        new_contact_name="Grace Hopper", new_contact_email="Grace@Example.com"))
    assert answer.status_code == 303
    grace = Contact.get(Contact.email == "grace@example.com")
    assert grace.name == "Grace Hopper"
    assert Incident.get().requester_id == grace.id


def test_a_new_contact_with_a_known_email_reuses_that_contact(personas, login, contact_factory):
    ada = contact_factory(name="Ada Lovelace", email="ada@example.com")
    answer = login(personas.owner).post("/incidents/new", new_incident(
        new_contact_name="Ada L.", new_contact_email="ADA@example.com"))
    assert answer.status_code == 303
    assert Contact.select().where(Contact.email == "ada@example.com").count() == 1
    assert Incident.get().requester_id == ada.id


def test_an_invalid_email_is_a_field_error_and_nothing_is_written(personas, login):
    answer = login(personas.owner).post("/incidents/new", new_incident(
        new_contact_name="Grace Hopper", new_contact_email="grace at example"))
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert 'id="new_contact_email-error"' in html and "is not an e-mail address" in html
    assert 'value="Grace Hopper"' in html, "what was typed stays"
    assert Contact.select().count() == 0 and Incident.select().count() == 0


def test_a_refused_incident_leaves_no_new_contact_behind(personas, login):
    answer = login(personas.owner).post("/incidents/new", new_incident(
        new_contact_name="Grace Hopper", new_contact_email="grace@example.com",
        assigned_team=str(personas.network.id), assigned_agent=str(personas.assignee.id)))
    assert answer.status_code == 422
    assert "not a member of Network" in answer.get_data(as_text=True)
    assert Contact.select().count() == 0 and Incident.select().count() == 0


def test_a_chosen_requester_and_a_new_contact_at_once_is_refused(personas, login, contact_factory):
    ada = contact_factory(name="Ada Lovelace", email="ada@example.com")
    answer = login(personas.owner).post("/incidents/new", new_incident(
        requester=str(ada.id), new_contact_name="Grace Hopper"))
    assert answer.status_code == 422 and "not both" in answer.get_data(as_text=True)
    assert Incident.select().count() == 0 and Contact.select().count() == 1


def test_a_new_contact_needs_the_csrf_token(personas, login):
    answer = login(personas.owner).http.post("/incidents/new", data=new_incident(
        new_contact_name="Grace Hopper", new_contact_email="grace@example.com"))
    assert answer.status_code == 400
    assert Contact.select().count() == 0 and Incident.select().count() == 0


def test_search_text_is_taken_literally(personas, login, contact_factory):
    contact_factory(name="Ada Lovelace", email="ada@example.com")
    john = login(personas.owner)
    for query in ("%", "_", "\\", '"unbalanced', "a%e", "x" * 100_000):
        answer = john.get("/incidents/new/requesters", query_string={"requester_query": query})
        assert answer.status_code == 200, query
        assert "Ada Lovelace" not in answer.get_data(as_text=True), query


def test_a_link_may_prefill_the_requester_and_shows_the_duplicate_hint(personas, login, contact_factory,
                                                                       incident_factory):
    ada = contact_factory(name="Ada Lovelace")
    earlier = incident_factory(title="VPN drops", requester=ada)
    page = login(personas.owner).get(f"/incidents/new?requester={ada.id}&impact=high").get_data(as_text=True)
    assert f'id="requester-{ada.id}" name="requester" value="{ada.id}" checked' in page
    assert "Is it one of these?" in page and earlier.reference in page
    assert 'aria-live="polite">P2 High</output>' in page


def test_control_characters_typed_or_pasted_are_dropped_on_every_database(personas, login):
    # SQLite kept a NUL and showed it in pages, mail and exports; PostgreSQL refused it (422).
    agent = login(personas.owner)
    answer = agent.post("/incidents/new", new_incident(title="Printer\x00 on\x07 fire\x1b[31m",
                                                       description="Smoke\x00 first.\n\tThen flames."))
    assert answer.status_code == 303
    incident = Incident.get()
    assert incident.title == "Printer on fire[31m"
    assert incident.description == "Smoke first.\n\tThen flames."  # line breaks and tabs stay
    assert agent.get("/queues/open?q=Printer%00").status_code == 200
    from werkzeug.test import EnvironBuilder

    from helpdesk.app import HelpdeskRequest

    repeated = HelpdeskRequest(EnvironBuilder(query_string="status=new&status=x%00y").get_environ())
    assert repeated.args.getlist("status") == ["new", "xy"]  # every value of a repeated field
