"""Canned replies (macros): who sees and changes which, placeholders, and sending a reply with
the macro's actions as one change (all or nothing, one version bump)."""

from __future__ import annotations

import json

import pytest

from helpdesk import hookimpl, incidents
from helpdesk.models import Incident, Macro, TimelineEntry
from helpdesk.records import MacroAction, StepParam


class Tagger:
    """A throw-away plugin registering one macro action."""

    __name__ = "tagger"

    @hookimpl
    def helpdesk_macro_actions(self):
        return [MacroAction("tag", "Tag it", _tag, params=(StepParam("label", "text", required=True,
                                                                     check=_no_spaces),))]


@pytest.fixture
def helpdesk_plugins(request):
    marker = request.node.get_closest_marker("plugins")
    return list(marker.args) if marker else []


LOGS = "Hello {requester_name}, about {reference}: please send the logs."


def make(agent, name="Ask for logs", body=LOGS, *, team=None, public=True, actions=()):
    return Macro.create(name=name, body=body, public=public, agent=None if team else agent, team=team,
                        created_by=agent, actions=json.dumps(list(actions)))


def form(name="Ask for logs", body="Hello {requester_name}", **extra):
    return {"name": name, "body": body, "visibility": "public", **extra}


def timeline(incident_id):
    entries = TimelineEntry.select().where(TimelineEntry.incident == incident_id)
    return list(entries.order_by(TimelineEntry.id))


# -- management pages and permissions ----------------------------------------------------


def test_an_agent_creates_a_personal_macro_and_finds_it_on_the_list(personas, login):
    john = login(personas.owner)
    saved = john.post("/macros/new", form(**{"action-status": "on", "action-status-status": "in_progress"}))
    assert saved.status_code == 303
    macro = Macro.get(Macro.name == "Ask for logs")
    assert macro.agent_id == personas.owner.id and macro.team_id is None and macro.public
    assert json.loads(macro.actions) == [{"action": "status", "params": {"status": "in_progress"}}]
    page = john.get("/macros/").get_data(as_text=True)
    assert "Ask for logs" in page and "Set status (Status: In progress)" in page
    assert 'href="/macros/"' in john.get("/profile").get_data(as_text=True), "reachable from the profile"


def test_unknown_placeholders_are_a_field_error_and_nothing_is_saved(personas, login):
    answer = login(personas.owner).post("/macros/new", form(body="Dear {customer}, {reference}"))
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert "Unknown placeholder {customer}" in page and 'id="body-error"' in page
    assert 'aria-invalid="true" aria-describedby="body-error"' in page or 'aria-invalid="true"' in page
    assert Macro.select().count() == 0
    unclosed = login(personas.owner).post("/macros/new", form(body="Hi {requester_name, see below"))
    assert unclosed.status_code == 422 and "A lone {" in unclosed.get_data(as_text=True)
    assert Macro.select().count() == 0
    editor = login(personas.owner).get("/macros/new").get_data(as_text=True)
    assert ">P1 Critical<" in editor and "P1 P1" not in editor


def test_a_status_action_asks_for_the_fields_its_status_needs(personas, login):
    answer = login(personas.owner).post("/macros/new", form(**{
        "action-status": "on", "action-status-status": "resolved", "action-priority": "on",
        "action-priority-priority": "9"}))
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert "resolving needs a resolution note" in page
    assert "Set priority: Priority: choose P1 to P4" in page
    assert Macro.select().count() == 0
    # a digit Python's int() cannot read says the same, not int()'s own message
    answer = login(personas.owner).post("/macros/new", form(**{
        "action-priority": "on", "action-priority-priority": "²"}))
    assert answer.status_code == 422
    assert "Set priority: Priority: choose P1 to P4" in answer.get_data(as_text=True)
    assert Macro.select().count() == 0


def test_other_agents_personal_macros_are_not_found(personas, login, incident_factory):
    mine = make(personas.owner)
    incident = incident_factory()
    sara = login(personas.colleague)
    assert sara.get(f"/macros/{mine.id}").status_code == 404
    assert sara.post(f"/macros/{mine.id}", form(name="Taken over")).status_code == 404
    assert sara.post(f"/macros/{mine.id}/delete").status_code == 404
    assert sara.get(f"/incidents/{incident.id}/macros/{mine.id}").status_code == 404
    sent = sara.post(f"/incidents/{incident.id}/macro", {"macro": mine.id, "body": "hi"})
    assert sent.status_code == 404
    assert "Ask for logs" not in sara.get("/macros/").get_data(as_text=True)
    assert login(personas.admin).get(f"/macros/{mine.id}").status_code == 404, "personal, even for admins"
    assert Macro.get_by_id(mine.id).name == "Ask for logs"
    assert [e.kind for e in timeline(incident.id)] == ["created"]


def test_team_macros_are_seen_by_members_and_changed_only_by_their_leads(personas, login):
    db_macro = make(personas.db_lead, "Restart the replica", team=personas.database_team)
    # a member of the team sees and may apply it, but not change it
    priya = login(personas.assignee)
    assert "Restart the replica" in priya.get("/macros/").get_data(as_text=True)
    assert priya.get(f"/macros/{db_macro.id}").status_code == 403
    # another team's agent does not even see it
    kofi = login(personas.other)
    assert kofi.get(f"/macros/{db_macro.id}").status_code == 404
    assert "Restart the replica" not in kofi.get("/macros/").get_data(as_text=True)
    # a lead of another team cannot share a macro with the Database team
    amira = login(personas.lead)
    refused = amira.post("/macros/new", form(name="Sneaky", team=str(personas.database_team.id)))
    assert refused.status_code == 422 and "Only a lead of that team" in refused.get_data(as_text=True)
    # the Database lead can edit it, an admin too
    renamed = form(name="Restart replica", team=str(personas.database_team.id))
    assert login(personas.db_lead).post(f"/macros/{db_macro.id}", renamed).status_code == 303
    assert login(personas.admin).get(f"/macros/{db_macro.id}").status_code == 200
    assert Macro.get_by_id(db_macro.id).name == "Restart replica"
    assert login(personas.db_lead).post(f"/macros/{db_macro.id}/delete").status_code == 303
    assert not Macro.select().where(Macro.id == db_macro.id).exists()


def test_saving_a_macro_needs_the_csrf_token(personas, login):
    john = login(personas.owner)
    forged = john.http.post("/macros/new", data=form())
    assert forged.status_code in {400, 403}
    assert Macro.select().count() == 0


# -- filling and sending ------------------------------------------------------------------


def test_the_fill_gives_the_text_for_this_incident_with_placeholders_filled(personas, login, incident_factory,
                                                                            contact_factory):
    requester = contact_factory(name="Ada <Lovelace>")
    incident = incident_factory(requester=requester)
    macro = make(personas.owner, body="Hi {requester_name}, {reference} ({title}) is with {my_name}; "
                                      "owner {owner_name}. {{literal}}")
    answer = login(personas.owner).get(f"/incidents/{incident.id}/macros/{macro.id}").get_json()
    assert answer["body"] == (f"Hi Ada <Lovelace>, {incident.reference} (Orders database slow) is with "
                              "John Carter; owner John Carter. {literal}")
    assert answer["public"] is True


def test_an_unknown_placeholder_that_slipped_in_is_left_as_typed():
    class Fake:
        reference, title, requester, owner_agent, owner_team = "INC-1", "T", None, None, None

    class Me:
        display_name = "Me"

    from helpdesk import macros

    typed = "{nope} {reference} {title.__class__}"
    assert macros.expand(typed, Fake(), Me()) == "{nope} INC-1 {title.__class__}"


def test_sending_writes_the_reply_and_the_actions_as_one_change(personas, login, incident_factory):
    incident = incident_factory(assigned_team=personas.service_desk)
    macro = make(personas.owner, actions=[
        {"action": "status", "params": {"status": "pending", "pending_reason": "customer"}},
        {"action": "priority", "params": {"priority": 1, "reason": "VIP"}},
        {"action": "assign", "params": {"agent": "me"}},
    ])
    sent = login(personas.owner).post(f"/incidents/{incident.id}/macro", {
        "macro": macro.id, "body": "Edited: please send the logs.", "visibility": "public",
        "macro_version": incident.version})
    assert sent.status_code == 303
    after = Incident.get_by_id(incident.id)
    assert (after.status, after.pending_reason, after.priority) == ("pending", "customer", 1)
    assert after.assigned_agent_id == personas.owner.id
    assert after.version == incident.version + 1, "one change: one version bump"
    entries = timeline(incident.id)
    # the reply, then one entry per action (the pending reason may be told with the status)
    assert [(e.kind, e.field) for e in entries[1:] if e.field != "pending_reason"] == [
        ("reply", None), ("change", "status"), ("change", "priority"), ("change", "assignee")]
    assert entries[1].body == "Edited: please send the logs."


def test_without_a_typed_reply_the_macro_text_and_visibility_are_used(personas, login, incident_factory):
    incident = incident_factory()
    macro = make(personas.owner, body="Internal: checked {reference}", public=False)
    login(personas.owner).post(f"/incidents/{incident.id}/macro", {"macro": macro.id, "body": "",
                                                                  "visibility": "public"})
    note = timeline(incident.id)[-1]
    assert (note.kind, note.body) == ("note", f"Internal: checked {incident.reference}")


def test_a_refused_action_refuses_the_whole_macro_and_keeps_the_text(personas, login, incident_factory):
    incident = incident_factory()
    closing = make(personas.owner, actions=[
        {"action": "priority", "params": {"priority": 2}},
        {"action": "status", "params": {"status": "closed"}},  # new -> closed is not allowed
    ])
    before = Incident.get_by_id(incident.id)
    answer = login(personas.owner).post(f"/incidents/{incident.id}/macro", {
        "macro": closing.id, "body": "My carefully typed words", "macro_version": before.version})
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert "cannot go from new to closed" in page
    assert "My carefully typed words" in page, "nothing the agent typed is lost"
    after = Incident.get_by_id(incident.id)
    assert (after.version, after.priority, after.status) == (before.version, before.priority, "new")
    assert [e.kind for e in timeline(incident.id)] == ["created"]
    as_json = login(personas.owner).post(f"/incidents/{incident.id}/macro", {
        "macro": closing.id, "body": "x"}, headers={"Accept": "application/json"})
    assert as_json.status_code == 422 and "cannot go from new to closed" in as_json.get_json()["error"]


def test_a_stale_version_refuses_the_macro(personas, login, incident_factory, ctx, app):
    incident = incident_factory()
    macro = make(personas.owner, actions=[{"action": "priority", "params": {"priority": 1}}])
    with app.app_context():
        incidents.update_details(ctx, incident.id, personas.colleague, incident.version, title="Changed")
    answer = login(personas.owner).post(f"/incidents/{incident.id}/macro", {
        "macro": macro.id, "body": "hello", "macro_version": incident.version})
    assert answer.status_code == 409
    assert Incident.get_by_id(incident.id).priority != 1
    assert [e.kind for e in timeline(incident.id)] == ["created", "change"]
    # The page's script asks for JSON: told the current version, its next send goes through.
    as_json = login(personas.owner).post(f"/incidents/{incident.id}/macro", {
        "macro": macro.id, "body": "hello", "macro_version": incident.version},
        headers={"Accept": "application/json"})
    assert as_json.status_code == 409 and "send again" in as_json.get_json()["error"]
    current = as_json.get_json()["version"]
    assert current == incident.version + 1
    again = login(personas.owner).post(f"/incidents/{incident.id}/macro", {
        "macro": macro.id, "body": "hello", "macro_version": current},
        headers={"Accept": "application/json"})
    assert again.status_code == 200 and Incident.get_by_id(incident.id).priority == 1


def test_sending_with_a_macro_needs_the_csrf_token(personas, login, incident_factory):
    incident = incident_factory()
    macro = make(personas.owner)
    forged = login(personas.owner).http.post(f"/incidents/{incident.id}/macro",
                                             data={"macro": macro.id, "body": "hi"})
    assert forged.status_code in {400, 403}
    assert [e.kind for e in timeline(incident.id)] == ["created"]


# -- a plugin's macro action ---------------------------------------------------------------

RAN: list[tuple[str, str]] = []


def _tag(ctx, incident, actor, params):
    RAN.append((incident.reference, params["label"]))
    incidents.add_comment(ctx, incident.id, actor, f"Tagged {params['label']}", public=False)


def _no_spaces(ctx, value):
    if " " in value:
        raise ValueError("no spaces in a tag")


@pytest.mark.plugins(Tagger())
def test_a_plugin_registers_a_macro_action_that_is_offered_checked_and_run(personas, login, incident_factory,
                                                                           ctx):
    assert "tag" in ctx.registry.macro_actions and "status" in ctx.registry.macro_actions
    john = login(personas.owner)
    assert "Tag it" in john.get("/macros/new").get_data(as_text=True)
    refused = john.post("/macros/new", form(**{"action-tag": "on", "action-tag-label": "two words"}))
    assert refused.status_code == 422 and "no spaces in a tag" in refused.get_data(as_text=True)
    saved = john.post("/macros/new", form(**{"action-tag": "on", "action-tag-label": "vip"}))
    assert saved.status_code == 303
    macro = Macro.get(Macro.name == "Ask for logs")
    incident = incident_factory()
    RAN.clear()
    john.post(f"/incidents/{incident.id}/macro", {"macro": macro.id, "body": "Hi", "visibility": "note"})
    assert RAN == [(incident.reference, "vip")]
    assert [e.body for e in timeline(incident.id)[1:]] == ["Hi", "Tagged vip"]


def _call_crm(ctx, incident, actor, params):
    incidents.add_comment(ctx, incident.id, actor, "Logged in the CRM", public=False)
    raise ConnectionError("CRM unreachable")


class BrokenCrm:
    """A plugin whose macro action fails with its own bug, not a DomainError."""

    __name__ = "broken_crm"

    @hookimpl
    def helpdesk_macro_actions(self):
        return [MacroAction("crm", "Log in the CRM", _call_crm)]


@pytest.mark.plugins(BrokenCrm())
def test_a_macro_action_that_fails_refuses_the_macro_keeps_the_reply_and_tells_the_admin(
        personas, login, incident_factory):
    incident = incident_factory()
    macro = make(personas.owner, actions=[{"action": "crm", "params": {}}])
    answer = login(personas.owner).post(f"/incidents/{incident.id}/macro",
                                        {"macro": macro.id, "body": "Your mailbox is back"})
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert "Log in the CRM" in page and "CRM unreachable" in page
    assert "Your mailbox is back" in page, "what the agent typed is still in the reply box"
    assert [e.kind for e in timeline(incident.id)] == ["created"], "nothing of the macro was written"
    plugins_page = login(personas.admin).get("/admin/plugins").get_data(as_text=True)
    assert "broken_crm" in plugins_page and "CRM unreachable" in plugins_page


def test_a_macro_whose_action_is_no_longer_installed_is_refused_whole(personas, login, incident_factory):
    incident = incident_factory()
    macro = make(personas.owner, actions=[{"action": "gone", "params": {}}])
    answer = login(personas.owner).post(f"/incidents/{incident.id}/macro", {"macro": macro.id, "body": "Hi"})
    assert answer.status_code == 422 and "not installed" in answer.get_data(as_text=True)
    assert [e.kind for e in timeline(incident.id)] == ["created"]


def test_the_picker_costs_the_same_queries_however_many_team_macros(personas, app, count_queries):
    from flask_login import login_user

    from helpdesk.web.macros import reply_macros

    def picker_queries() -> tuple[int, int]:
        with app.test_request_context("/"):
            login_user(personas.assignee)
            count_queries.queries.clear()
            found = reply_macros()
            return len(found), len(count_queries.queries)

    make(personas.db_lead, "One", team=personas.database_team)
    few = picker_queries()
    for number in range(5):
        make(personas.db_lead, f"More {number}", team=personas.database_team)
    make(personas.assignee, "Mine")
    many = picker_queries()
    assert (few[0], many[0]) == (1, 7)
    assert many[1] == few[1], "no query per macro (team names come with the list)"


def test_from_htmx_a_sent_macro_redirects_and_a_refusal_lands_in_the_reply_box(personas, login,
                                                                               incident_factory):
    incident = incident_factory()
    fine = make(personas.owner, actions=[{"action": "priority", "params": {"priority": 2}}])
    illegal = make(personas.owner, name="Close",
                   actions=[{"action": "status", "params": {"status": "closed"}}])
    john = login(personas.owner)
    htmx = {"HX-Request": "true", "HX-Target": "incident-body"}
    refused = john.post(f"/incidents/{incident.id}/macro", {"macro": illegal.id, "body": "<b>x</b>"},
                        headers=htmx)
    assert refused.status_code == 422
    assert refused.headers["HX-Retarget"] == "#macro-result"
    assert "cannot go from new to closed" in refused.get_data(as_text=True)
    sent = john.post(f"/incidents/{incident.id}/macro", {"macro": fine.id, "body": "Raised."}, headers=htmx)
    assert sent.status_code == 204 and sent.headers["HX-Redirect"] == f"/incidents/{incident.id}"
    assert Incident.get_by_id(incident.id).priority == 2


def test_macro_names_and_texts_are_escaped_everywhere_they_show(personas, login, incident_factory):
    hostile = '<img src=x onerror=alert(1)>"\''
    make(personas.owner, name=hostile, body=f"{hostile} {{reference}}",
         actions=[{"action": "assign", "params": {"team": hostile}}])
    john = login(personas.owner)
    for page in (john.get("/macros/"), john.get(f"/macros/{Macro.get().id}")):
        html = page.get_data(as_text=True)
        assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    incident = incident_factory()
    filled = john.get(f"/incidents/{incident.id}/macros/{Macro.get().id}")
    assert filled.mimetype == "application/json"  # set as the textarea's value, never as HTML
    assert filled.get_json()["body"] == f"{hostile} {incident.reference}"


def test_the_reply_tools_offer_my_macros_escaped_and_post_to_the_macro_route(personas, app, incident_factory):
    from flask import render_template
    from flask_login import login_user

    hostile = '<img src=x onerror=alert(1)>'
    make(personas.owner, name=hostile, actions=[{"action": "priority", "params": {"priority": 1}}])
    make(personas.colleague, name="Sara's own")
    incident = incident_factory()
    with app.test_request_context("/"):
        login_user(personas.owner)
        html = render_template("_reply_tools.html", incident=incident)
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "Sara's own" not in html
    assert f'formaction="/incidents/{incident.id}/macro"' in html
    assert f'name="macro_version" value="{incident.version}"' in html
    assert 'data-does="Set priority (Priority: P1)"' in html


# -- through the API ------------------------------------------------------------------------------


def api_client(app, agent):
    from helpdesk.api import tokens

    with app.app_context():
        secret = tokens.create(agent, "script", ["read", "write"]).secret
    client, headers = app.test_client(), {"Authorization": f"Bearer {secret}"}
    return lambda method, path, body=None, **extra: client.open(
        f"/api/v1{path}", method=method, json=body, headers={**headers, **extra})


def test_the_api_lists_the_macros_an_agent_may_use(app, personas):
    mine = make(personas.owner, name="Mine", actions=[{"action": "priority", "params": {"priority": 1}}])
    shared = make(personas.lead, name="Desk macro", team=personas.service_desk)
    make(personas.colleague, name="Sara's own")
    make(personas.assignee, name="Database only", team=personas.database_team)
    listed = api_client(app, personas.owner)("GET", "/macros").get_json()["items"]
    assert sorted((m["id"], m["name"], m["personal"]) for m in listed) == sorted(
        [(mine.id, "Mine", True), (shared.id, "Desk macro", False)])
    assert next(m for m in listed if m["id"] == mine.id)["does"] == ["Set priority (Priority: P1)"]


def test_the_api_sends_a_macro_as_one_change_under_if_match(app, personas, incident_factory):
    incident = incident_factory(assigned_team=personas.service_desk)
    macro = make(personas.owner, actions=[
        {"action": "status", "params": {"status": "pending", "pending_reason": "customer"}}])
    call = api_client(app, personas.owner)
    path = f"/incidents/{incident.id}/macro"
    assert call("POST", path, {"macro_id": macro.id}).status_code == 428, "If-Match is required"
    sent = call("POST", path, {"macro_id": macro.id}, **{"If-Match": f'"{incident.version}"'})
    assert sent.status_code == 200, sent.get_data(as_text=True)
    assert (sent.get_json()["status"], sent.get_json()["version"]) == ("pending", incident.version + 1)
    reply = timeline(incident.id)[1]
    assert reply.kind == "reply", "the macro's visibility"
    assert reply.body.endswith(f"about {incident.reference}: please send the logs."), "placeholders filled"
    stale = call("POST", path, {"macro_id": macro.id, "body": "again"},
                 **{"If-Match": f'"{incident.version}"'})
    assert stale.status_code == 412
    written = len(timeline(incident.id))
    for hidden in (make(personas.colleague, name="Sara's own"),
                   make(personas.assignee, name="Database only", team=personas.database_team)):
        refused = call("POST", path, {"macro_id": hidden.id}, **{"If-Match": f'"{incident.version + 1}"'})
        assert refused.status_code == 404 and refused.mimetype == "application/problem+json"
    assert Incident.get_by_id(incident.id).version == incident.version + 1
    assert len(timeline(incident.id)) == written, "nothing more was written"


def test_the_api_keeps_an_internal_macro_internal_unless_the_reply_is_edited(app, personas, incident_factory):
    """As on the page: a visibility sent with the macro's own text does not publish it."""
    incident = incident_factory()
    internal = make(personas.owner, body="Checked {reference}: disk at 95 %", public=False)
    call = api_client(app, personas.owner)
    path = f"/incidents/{incident.id}/macro"
    sent = call("POST", path, {"macro_id": internal.id, "visibility": "public"},
                **{"If-Match": f'"{incident.version}"'})
    assert sent.status_code == 200, sent.get_data(as_text=True)
    assert timeline(incident.id)[-1].kind == "note"
    sent = call("POST", path, {"macro_id": internal.id, "body": "We are on it.", "visibility": "public"},
                **{"If-Match": sent.headers["ETag"]})
    assert sent.status_code == 200
    reply, started = timeline(incident.id)[-2:]  # a reply to a New incident starts the work
    assert (reply.kind, reply.body) == ("reply", "We are on it.")
    assert (started.field, started.new_value) == ("status", "In progress")


def test_a_public_reply_with_a_macro_waits_when_the_customer_wrote_meanwhile(personas, login, ctx, app,
                                                                            log_incident, contact_factory):
    """The macro button sits in the reply box: it holds a reply back as Add does when the
    customer wrote after the page was loaded, and says what moved; sent again, it goes."""
    import re

    from helpdesk import customers

    ana = contact_factory(name="Ana Lima")
    incident = log_incident(title="VPN drops", requester=ana)
    macro = make(personas.owner, public=True, actions=[{"action": "priority", "params": {"priority": 2}}])
    agent = login(personas.owner)
    page = agent.get(f"/incidents/{incident.id}").get_data(as_text=True)
    seen = re.search(r'<input type="hidden" name="seen" value="(\d+)"', page).group(1)
    with app.app_context():
        customers.post_message(ctx, incident.id, ana, "It works again, never mind.", seen=True)
    form = {"macro": macro.id, "body": "Please restart your laptop.", "visibility": "public",
            "macro_version": incident.version, "seen": seen}
    held = agent.post(f"/incidents/{incident.id}/macro", form, headers={"Accept": "application/json"})
    assert held.status_code == 409 and "Ana Lima wrote again" in held.get_json()["error"]
    assert Incident.get_by_id(incident.id).priority != 2
    assert [e.kind for e in timeline(incident.id)] == ["created", "customer"]
    fresh = held.get_json()
    again = agent.post(f"/incidents/{incident.id}/macro", {**form, "seen": fresh["seen"],
                                                           "macro_version": fresh["version"]},
                       headers={"Accept": "application/json"})
    assert again.status_code == 200 and Incident.get_by_id(incident.id).priority == 2
    # The reply, the New incident going in progress with it, then the macro's priority.
    assert [(e.kind, e.field) for e in timeline(incident.id)][-3:] == [
        ("reply", None), ("change", "status"), ("change", "priority")]


def test_the_not_sent_page_shows_the_visibility_the_macro_would_use(personas, login, incident_factory, ctx,
                                                                    app):
    """Nothing typed: the macro's own text goes as the macro says (here a reply to the customer),
    so the page that offers to send it again must not show 'Internal note' chosen."""
    incident = incident_factory()
    macro = make(personas.owner, public=True)
    with app.app_context():
        incidents.update_details(ctx, incident.id, personas.colleague, incident.version, title="Changed")
    page = login(personas.owner).post(f"/incidents/{incident.id}/macro", {
        "macro": macro.id, "body": "", "visibility": "note", "macro_version": incident.version})
    assert page.status_code == 409
    html = page.get_data(as_text=True)
    assert 'id="vis-public" name="visibility" value="public" checked' in html
    assert 'value="note" checked' not in html
