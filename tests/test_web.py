"""The web layer as an agent's browser sees it: access rules, CSRF, full pages and
HTMX fragments, stale edits, queues and their pages, safe rendering, login and headers.

Each test talks HTTP to a fresh app (SQLite by default, PostgreSQL with
HELPDESK_TEST_DATABASE_URL). Settings a test needs changed are given by
parametrizing ``settings_overrides``, which the ``app`` fixture below passes to
``make_app`` exactly as an instance file or environment variable would.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask

from helpdesk import clock, sla
from helpdesk import incidents as domain
from helpdesk.models import Agent, Contact, Incident, Team, TimelineEntry
from helpdesk.queues import QUEUES
from helpdesk.security import CUSTOMER, LEAD, LEVELS, PUBLIC, TOKEN
from helpdesk.testing import PASSWORD, AgentClient

HTMX = {"HX-Request": "true"}
DEFAULT_PAGE = "/"  # where a login without a usable next= lands (the queue chooser)


# -- fixtures ---------------------------------------------------------------------


@pytest.fixture
def helpdesk_plugins() -> list[Any]:
    """The bundled SLA plugins, so the At risk and Breached queues have clocks to show."""
    from helpdesk_plugins import business_hours, sla_priority

    return [business_hours, sla_priority]


@pytest.fixture
def frozen_clock() -> Iterator[list[dt.datetime]]:
    """The app's clock stands still at ``frozen_clock[0]``; assign to move it."""
    current = [dt.datetime(2024, 3, 1, 9, 0, 0, 250000)]
    clock.set_source(lambda: current[0])
    yield current
    clock.set_source(None)


def overrides(**values: Any) -> Any:
    return pytest.mark.parametrize("settings_overrides", [values], ids=[
        ",".join(f"{k}={v}" for k, v in values.items())])


# -- helpers --------------------------------------------------------------------------


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


@dataclass(eq=False)
class Element:
    tag: str
    attrs: dict[str, str | None]
    ancestors: tuple[Element, ...]
    text: list[str] = field(default_factory=list)

    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def inside(self, other: Element) -> bool:
        return other in self.ancestors

    @property
    def content(self) -> str:
        return "".join(self.text)


class Page(HTMLParser):
    """Every element of an HTML document, with its ancestors and text."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(source)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs), tuple(self._open))
        self.elements.append(element)
        if tag not in VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, dict(attrs), tuple(self._open)))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index].tag == tag:
                del self._open[index:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text.append(data)

    def find(self, tag: str | None = None, **attrs: str) -> list[Element]:
        return [e for e in self.elements if (tag is None or e.tag == tag)
                and all(e.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def one(self, tag: str | None = None, **attrs: str) -> Element:
        found = self.find(tag, **attrs)
        assert len(found) == 1, f"expected one <{tag} {attrs}>, found {len(found)}"
        return found[0]


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def listed(response: Any) -> list[int]:
    """Incident ids in a queue's table, top to bottom."""
    return [int(i) for i in re.findall(r'<a href="/incidents/(\d+)"[^>]*>INC-\d+</a>', text(response))]


def next_link(response: Any) -> str | None:
    match = re.search(r'<a href="([^"]+)" rel="next">Next page</a>', text(response))
    return html.unescape(match.group(1)) if match else None


def version_in_forms(response: Any) -> set[int]:
    return {int(v) for v in re.findall(r'name="version" value="(\d+)"', text(response))}


def fresh(incident: Incident) -> Incident:
    return Incident.get_by_id(incident.id)


def snapshot(incident: Incident) -> tuple[Any, ...]:
    row = fresh(incident)
    entries = TimelineEntry.select().where(TimelineEntry.incident == incident.id).count()
    return (row.version, row.status, row.owner_team_id, row.owner_agent_id, row.assigned_team_id,
            row.assigned_agent_id, row.title, entries)


def login_redirect(response: Any) -> dict[str, list[str]]:
    """The query of a redirect to the login page (fails if it goes anywhere else)."""
    assert response.status_code == 302, text(response)
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    return parse_qs(location.query)


def sample_url(app: Flask, rule: Any, values: dict[str, Any]) -> str:
    missing = set(rule.arguments) - values.keys()
    assert not missing, f"{rule.rule}: the test has no sample value for {missing}; add one"
    adapter = app.url_map.bind("localhost")
    return adapter.build(rule.endpoint, {k: values[k] for k in rule.arguments})


def rules(app: Flask, method: str, *, prefix: str = "") -> list[Any]:
    return [r for r in app.url_map.iter_rules()
            if method in r.methods and r.rule.startswith(prefix)]


def level_of(app: Flask, rule: Any) -> str | None:
    return getattr(app.view_functions[rule.endpoint], "access_level", None)


# -- 1. every route declares who may use it, and undeclared routes are refused ---------


def test_every_route_declares_a_known_access_level(app):
    undeclared = {r.rule: level_of(app, r) for r in app.url_map.iter_rules()
                  if level_of(app, r) not in LEVELS}
    assert undeclared == {}
    # the walk really saw the pages (not an empty map)
    endpoints = {r.endpoint for r in app.url_map.iter_rules()}
    assert {"auth.login", "queues.show", "incidents.show", "admin.agents"} <= endpoints


def test_a_route_without_access_declaration_is_refused_even_to_an_admin(app, personas, caplog):
    def forgotten() -> str:
        return "secret data"

    app.add_url_rule("/forgotten", "forgotten", forgotten)  # before the first request
    with caplog.at_level(logging.ERROR):
        admin = AgentClient(app, personas.admin)
        response = admin.get("/forgotten")
    assert response.status_code == 403
    assert "secret data" not in text(response)
    assert "declares no access level" in caplog.text
    anonymous = AgentClient(app, None).get("/forgotten")
    assert anonymous.status_code == 403
    assert "secret data" not in text(anonymous)


# -- 2. anonymous visitors go to the login page ----------------------------------------


@pytest.fixture
def url_values(personas, log_incident) -> dict[str, Any]:
    incident = log_incident()
    return {"incident_id": incident.id, "agent_id": personas.owner.id, "name": "open",
            "kind": "categories", "filename": "helpdesk.css", "delivery_id": 1, "event_id": 1,
            "mail_id": 1, "attachment_id": 1, "macro_id": 1, "team_id": personas.network.id,
            "contact_id": Contact.create(name="Sample Contact").id, "view_id": 1, "fmt": "csv"}


def test_anonymous_get_of_any_non_public_page_redirects_to_login_and_back(app, url_values):
    client = app.test_client()
    checked = []
    for rule in rules(app, "GET"):
        if level_of(app, rule) in (PUBLIC, TOKEN, CUSTOMER):  # API: 401 (test_api); portal: own sign-in
            continue
        url = sample_url(app, rule, url_values)
        query = login_redirect(client.get(url))
        assert query["next"] == [url], rule.rule
        checked.append(rule.rule)
    assert "/incidents/<int:incident_id>" in checked and "/admin/agents" in checked


def test_anonymous_post_to_any_non_public_action_redirects_to_login(app, url_values, personas):
    client = AgentClient(app, None)  # a real CSRF token, but no login
    incident = Incident.get_by_id(url_values["incident_id"])
    before = snapshot(incident)
    teams = Team.select().count()
    for rule in rules(app, "POST"):
        if level_of(app, rule) in (PUBLIC, TOKEN, CUSTOMER):  # API: 401 (test_api); portal: own sign-in
            continue
        url = sample_url(app, rule, url_values)
        login_redirect(client.post(url, {"name": "Intruders", "assigned_team": personas.network.id,
                                         "title": "Hacked", "version": incident.version}))
    assert snapshot(incident) == before
    assert Team.select().count() == teams


@pytest.mark.parametrize("came_from,expected_next", [
    ({}, None),
    ({"Referer": "http://localhost/incidents/{id}?tab=1"}, "/incidents/{id}?tab=1"),
    ({"Referer": "https://evil.com/incidents/{id}"}, None),
], ids=["no-referrer", "same-site-page", "foreign-page"])
def test_logging_in_after_an_anonymous_post_lands_on_a_working_page(app, personas, log_incident,
                                                                    came_from, expected_next):
    """A form sent after the session ended leads to login, and logging in leads back to the
    page the form was on (never to the form's POST-only action, which would answer 405)."""
    incident = log_incident()
    client = AgentClient(app, None)
    headers = {k: v.format(id=incident.id) for k, v in came_from.items()}
    query = login_redirect(client.post(f"/incidents/{incident.id}/assignee",
                                       {"assigned_team": personas.database_team.id},
                                       headers=headers))
    next_url = query.get("next", [None])[0]
    assert next_url == (expected_next.format(id=incident.id) if expected_next else None)
    answer = try_login(client, personas.owner.username, PASSWORD, **({"next": next_url}
                                                                     if next_url else {}))
    assert answer.status_code == 302
    landing = client.get(answer.headers["Location"], follow_redirects=True)
    assert landing.status_code == 200, text(landing)
    if expected_next:
        assert f"INC-{incident.id}" in text(landing)
    assert fresh(incident).assigned_team_id is None  # the anonymous change was not applied


def test_htmx_form_sent_without_session_returns_to_its_page_after_login(app, personas,
                                                                       log_incident):
    incident = log_incident()
    response = AgentClient(app, None).post(
        f"/incidents/{incident.id}/assignee", {"assigned_team": personas.database_team.id},
        headers={**HTMX, "HX-Target": "incident-body",
                 "HX-Current-URL": f"http://localhost/incidents/{incident.id}"})
    assert response.status_code == 401
    # Not sent straight to the login page (helpdesk.js goes there only if nothing typed would
    # be lost): told where to log in, and come back to.
    assert "HX-Redirect" not in response.headers
    target = urlsplit(response.headers["X-Helpdesk-Login"])
    assert target.path == "/login"
    assert parse_qs(target.query)["next"] == [f"/incidents/{incident.id}"]
    assert fresh(incident).assigned_team_id is None


def test_a_reply_sent_without_javascript_after_the_session_ended_is_shown_back(app, personas,
                                                                               log_incident):
    incident = log_incident()
    response = AgentClient(app, None).post(
        f"/incidents/{incident.id}/comments", {"body": "The fuser was replaced <b>today</b>.",
                                               "visibility": "public"},
        headers={"Referer": f"http://localhost/incidents/{incident.id}"})
    page = text(response)
    assert response.status_code == 401 and "not sent" in page
    assert "The fuser was replaced &lt;b&gt;today&lt;/b&gt;." in page  # to copy, escaped
    assert f'name="next" value="/incidents/{incident.id}"' in page  # logging in leads back
    assert TimelineEntry.select().where(TimelineEntry.kind == "reply").count() == 0


def test_a_background_fragment_after_the_session_ended_returns_to_its_page(app):
    """The queue counts poll every minute: when the session has ended, logging in must lead
    back to the page the agent was on, not to the bare counts fragment."""
    response = app.test_client().get(
        "/queue-nav?current=open", headers={**HTMX, "HX-Current-URL": "http://localhost/queues/open?sort=age"})
    assert response.status_code == 401
    target = urlsplit(response.headers["X-Helpdesk-Login"])
    assert target.path == "/login"
    assert parse_qs(target.query)["next"] == ["/queues/open?sort=age"]
    elsewhere = app.test_client().get(
        "/queue-nav?current=open", headers={**HTMX, "HX-Current-URL": "http://evil.example/queues/open"})
    assert "evil.example" not in elsewhere.headers["X-Helpdesk-Login"]


def test_htmx_request_without_session_gets_a_redirect_header_not_the_login_form(app):
    client = app.test_client()
    response = client.get("/queues/open?status=new",
                          headers={**HTMX, "HX-Target": "queue-list"})
    assert response.status_code == 401
    target = urlsplit(response.headers["X-Helpdesk-Login"])
    assert target.path == "/login"
    assert parse_qs(target.query)["next"] == ["/queues/open?status=new"]
    body = text(response)
    assert "<form" not in body and "password" not in body.lower()
    assert "Location" not in response.headers  # no 302 for htmx to follow into the fragment


# -- 3. roles -------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "lead", "db_lead"])
def test_non_admins_are_refused_every_admin_page(app, personas, url_values, who):
    client = AgentClient(app, getattr(personas, who))
    admin_gets = rules(app, "GET", prefix="/admin")
    assert len(admin_gets) >= 5
    for rule in admin_gets:
        if who != "owner" and level_of(app, rule) == LEAD:
            continue  # the SLA settings: team leads configure them too (test_site_settings)
        response = client.get(sample_url(app, rule, url_values))
        assert response.status_code == 403, rule.rule
        assert "You do not have permission" in text(response)
    teams, agents = Team.select().count(), Agent.select().count()
    for rule in rules(app, "POST", prefix="/admin"):
        if who != "owner" and level_of(app, rule) == LEAD:
            continue
        response = client.post(sample_url(app, rule, url_values), {
            "name": "Shadow IT", "username": "mallory", "display_name": "Mallory",
            "password": "long-enough-password", "role": "admin"})
        assert response.status_code == 403, rule.rule
    assert (Team.select().count(), Agent.select().count()) == (teams, agents)


def test_admin_can_open_every_admin_page(app, personas, url_values):
    client = AgentClient(app, personas.admin)
    for rule in rules(app, "GET", prefix="/admin"):
        response = client.get(sample_url(app, rule, url_values), follow_redirects=True)
        assert response.status_code == 200, rule.rule
        assert "<h1>" in text(response)


def test_lead_of_the_owning_team_transfers_ownership(app, personas, log_incident):
    incident = log_incident()  # owned by John (Service Desk)
    response = AgentClient(app, personas.lead).post(f"/incidents/{incident.id}/owner", {
        "owner_team": personas.service_desk.id, "owner_agent": personas.colleague.id,
        "reason": "John is on leave", "version": incident.version})
    assert response.status_code == 303
    assert urlsplit(response.headers["Location"]).path == f"/incidents/{incident.id}"
    after = fresh(incident)
    assert (after.owner_team_id, after.owner_agent_id) == (personas.service_desk.id,
                                                           personas.colleague.id)


def test_a_refused_transfer_or_assignment_keeps_the_choice_beside_its_error(app, personas, log_incident):
    """The team and agent chosen (and the reason typed) come back as chosen, with the error in
    that panel: reset to the current pair, a second Save would quietly change nothing."""
    incident = log_incident()  # owned by John: a transfer needs a reason
    before = snapshot(incident)
    client = AgentClient(app, personas.owner)
    answer = client.post(f"/incidents/{incident.id}/owner", {
        "owner_team": personas.service_desk.id, "owner_agent": personas.colleague.id,
        "reason": "  ", "version": incident.version})
    assert answer.status_code == 422
    page = text(answer)
    owner = page[page.index('id="owner-heading"'):page.index('id="status-heading"')]
    assert 'id="owner-error"' in owner and "Give a reason for transferring ownership." in owner
    assert "<details open>" in owner
    assert re.search(rf'<option value="{personas.colleague.id}"[^>]* selected', owner)
    answer = client.post(f"/incidents/{incident.id}/assignee", {
        "assigned_team": personas.database_team.id, "assigned_agent": personas.colleague.id,
        "version": incident.version})  # Mary is not in Database
    assert answer.status_code == 422
    page = text(answer)
    assignee = page[page.index('id="assignee-heading"'):page.index('id="owner-heading"')]
    assert 'id="assignee-error"' in assignee and "not a member of Database" in assignee
    assert re.search(rf'<option value="{personas.database_team.id}"[^>]* selected', assignee)
    assert snapshot(incident) == before  # nothing was changed
    # Whatever a crafted form holds, the refusal is an answer, not a crash.
    odd = client.post(f"/incidents/{incident.id}/owner", {
        "owner_team": "", "owner_agent": "²", "reason": "x", "version": incident.version})
    assert odd.status_code == 422 and "Choose the owning team." in text(odd)


@pytest.mark.parametrize("who", ["colleague", "other", "db_lead"])
def test_others_cannot_transfer_ownership(app, personas, log_incident, who):
    incident = log_incident()
    before = snapshot(incident)
    thief = getattr(personas, who)
    team = personas.service_desk if who == "colleague" else thief.memberships[0].team
    response = AgentClient(app, thief).post(f"/incidents/{incident.id}/owner", {
        "owner_team": team.id, "owner_agent": thief.id, "reason": "mine now",
        "version": incident.version})
    assert response.status_code == 403
    assert "Only the owner" in text(response)
    assert snapshot(incident) == before
    # the page does not offer them the transfer form either
    page = text(AgentClient(app, thief).get(f"/incidents/{incident.id}"))
    assert "Transfer ownership" not in page


# -- 4. CSRF -------------------------------------------------------------------------------


def test_post_without_csrf_token_is_refused_and_changes_nothing(app, personas, log_incident):
    incident = log_incident()
    before = snapshot(incident)
    client = AgentClient(app, personas.owner)
    response = client.http.post(f"/incidents/{incident.id}/assignee",
                                data={"assigned_team": personas.database_team.id})
    assert response.status_code == 400
    assert "form expired or came from another site" in text(response)
    assert snapshot(incident) == before


def test_csrf_token_of_another_session_is_refused(app, personas, log_incident):
    incident = log_incident()
    before = snapshot(incident)
    foreign_token = AgentClient(app, personas.colleague).csrf_token()
    client = AgentClient(app, personas.owner)
    assert foreign_token != client.csrf_token()
    response = client.http.post(f"/incidents/{incident.id}/assignee",
                                data={"assigned_team": personas.database_team.id,
                                      "csrf_token": foreign_token})
    assert response.status_code == 400
    assert snapshot(incident) == before


def test_csrf_token_in_header_alone_is_accepted(app, personas, log_incident):
    """htmx sends the token as X-CSRFToken (helpdesk.js), not as a form field."""
    incident = log_incident()
    client = AgentClient(app, personas.owner)
    response = client.http.post(f"/incidents/{incident.id}/assignee",
                                data={"assigned_team": personas.database_team.id},
                                headers={"X-CSRFToken": client.csrf_token()})
    assert response.status_code == 303
    assert fresh(incident).assigned_team_id == personas.database_team.id


# -- 5. full page or fragment ------------------------------------------------------------------


def test_queue_page_is_full_by_default_and_only_the_list_when_the_list_asks(app, personas,
                                                                               log_incident):
    incident = log_incident(title="Mail server down")
    client = AgentClient(app, personas.owner)

    full = client.get("/queues/open")
    assert full.status_code == 200
    assert "<html" in text(full) and 'id="queue-list"' in text(full)
    assert 'role="search"' in text(full)  # the filter form is part of the page

    part = client.get("/queues/open", headers={**HTMX, "HX-Target": "queue-list"})
    assert part.status_code == 200
    body = text(part).strip()
    assert "<html" not in body and "<head" not in body and 'role="search"' not in body
    assert body.startswith('<section id="queue-list"')
    # After the list, only out-of-band updates of what follows it (exports, the way back).
    after = body.rsplit("</section>", 1)[1]
    assert re.sub(r'<(p|input)[^>]*hx-swap-oob="true"[^>]*>(.*?</p>)?', "", after, flags=re.S).strip() == ""
    assert listed(part) == [incident.id]
    assert "Mail server down" in body

    for response in (full, part):
        assert "HX-Request" in response.headers["Vary"]


@pytest.mark.parametrize("headers", [
    {"HX-Boosted": "true", "HX-Target": "queue-list"},
    {"HX-History-Restore-Request": "true", "HX-Target": "queue-list"},
    {"HX-Target": "main"},
    {},
], ids=["boosted", "history-restore", "unknown-target", "no-target"])
def test_other_htmx_requests_get_the_full_page(app, personas, headers):
    response = AgentClient(app, personas.owner).get("/queues/open", headers={**HTMX, **headers})
    assert response.status_code == 200
    assert "<html" in text(response) and 'role="search"' in text(response)
    assert "HX-Request" in response.headers["Vary"]


def test_inline_assignment_from_htmx_returns_the_fresh_incident_body(app, personas, log_incident):
    incident = log_incident()
    client = AgentClient(app, personas.owner)
    headers = {**HTMX, "HX-Target": "incident-body"}
    response = client.post(f"/incidents/{incident.id}/assignee", {
        "assigned_team": personas.database_team.id, "assigned_agent": personas.assignee.id,
        "version": incident.version}, headers=headers)
    assert response.status_code == 200
    body = text(response).strip()
    assert "<html" not in body
    assert body.startswith('<article id="incident-body"') and body.endswith("</article>")
    assert "Database / Priya Raman" in body
    assert "HX-Request" in response.headers["Vary"]
    # the swapped-in forms carry the new version, so the next inline edit is not stale
    assert version_in_forms(response) == {fresh(incident).version}
    second = client.post(f"/incidents/{incident.id}/priority", {
        "priority": "1", "reason": "whole shop floor", "version": version_in_forms(response).pop()},
        headers=headers)
    assert second.status_code == 200
    assert fresh(incident).priority == 1


def test_inline_assignment_without_htmx_redirects_to_the_full_page(app, personas, log_incident):
    incident = log_incident()
    client = AgentClient(app, personas.owner)
    response = client.post(f"/incidents/{incident.id}/assignee", {
        "assigned_team": personas.database_team.id, "version": incident.version})
    assert response.status_code == 303
    page = client.get(response.headers["Location"])
    assert "<html" in text(page)
    assert "Assigned to Database / no agent." in text(page)  # the flash says what changed
    assert "Database / <em>no agent</em>" in text(page)


# -- 6. stale edits ------------------------------------------------------------------------------


@pytest.mark.parametrize("htmx", [False, True], ids=["form", "htmx"])
def test_stale_assignment_is_refused_and_shows_the_current_state(app, personas, log_incident, htmx):
    incident = log_incident()
    opened_version = incident.version
    # Sara assigns it to Database while John still has the old page open
    sara = AgentClient(app, personas.colleague)
    assert sara.post(f"/incidents/{incident.id}/assignee", {
        "assigned_team": personas.database_team.id, "assigned_agent": personas.assignee.id,
        "version": opened_version}).status_code == 303
    before = snapshot(incident)

    john = AgentClient(app, personas.owner)
    headers = {**HTMX, "HX-Target": "incident-body"} if htmx else {}
    response = john.post(f"/incidents/{incident.id}/assignee", {
        "assigned_team": personas.network.id, "assigned_agent": personas.other.id,
        "version": opened_version}, headers=headers)
    assert response.status_code == 409
    body = text(response)
    assert "changed by someone else" in body and "was not saved" in body
    assert "Database / Priya Raman" in body and "Network / Kofi Mensah" not in body
    assert ("<html" in body) is not htmx
    assert snapshot(incident) == before
    # the refusal carries the current version, so sending again works
    assert version_in_forms(response) == {before[0]}
    retry = john.post(f"/incidents/{incident.id}/assignee", {
        "assigned_team": personas.network.id, "assigned_agent": personas.other.id,
        "version": before[0]})
    assert retry.status_code == 303
    assert fresh(incident).assigned_agent_id == personas.other.id


# -- 7. a queue page costs the same number of queries for 5 or 50 rows -------------------------


def _queue_recipes(personas: Any) -> dict[str, tuple[Any, dict[str, Any]]]:
    """For each queue, incidents that John (Service Desk) sees in it, with every relation set
    the queue allows (so a lazily loaded owner, assignee or requester would cost a query)."""
    db, priya = personas.database_team, personas.assignee
    return {
        "assigned": (personas.owner, {"assigned_team": personas.service_desk,
                                      "assigned_agent": personas.owner}),
        "owned": (personas.owner, {"assigned_team": db, "assigned_agent": priya}),
        "teams": (personas.colleague, {"assigned_team": db, "assigned_agent": priya}),
        "unassigned": (personas.colleague, {"assigned_team": db}),
        "unowned": (None, {"assigned_team": db, "assigned_agent": priya}),
        "open": (personas.other, {"assigned_team": db, "assigned_agent": priya}),
        "at_risk": (personas.owner, {"assigned_team": db, "assigned_agent": priya}),
        "breached": (personas.other, {"assigned_team": db, "assigned_agent": priya}),
        "escalated": (personas.other, {"assigned_team": db, "assigned_agent": priya}),
    }


@overrides(page_size=100)
@pytest.mark.parametrize("queue", list(QUEUES))
def test_queue_page_query_count_does_not_grow_with_rows(app, personas, log_incident, count_queries,
                                                        queue):
    requester = Contact.create(name="Ada Lovelace", email="ada@example.com")
    actor, values = _queue_recipes(personas)[queue]
    client = AgentClient(app, personas.owner)

    def add(n: int) -> None:
        for i in range(n):
            log_incident(title=f"{queue} incident {i}", actor=actor, requester=requester, **values)
        if queue == "breached":  # let every target pass its due time
            with app.app_context():
                sla.check(app.extensions["helpdesk"], clock.now() + dt.timedelta(days=60))
        if queue == "escalated":  # as the escalation engine leaves them (tests/escalation run it)
            Incident.update(escalation_level=1).execute()

    def measure() -> tuple[int, list[int]]:
        count_queries.queries.clear()
        response = client.get(f"/queues/{queue}")
        assert response.status_code == 200
        assert "Ada Lovelace" in text(response)
        return len(count_queries.queries), listed(response)

    add(5)
    client.get(f"/queues/{queue}")  # warm up anything done once per client
    small, rows_small = measure()
    add(45)
    large, rows_large = measure()
    assert len(rows_small) == 5 and len(rows_large) == 50
    assert large == small, "\n".join(count_queries.queries)


def test_a_queue_page_reads_the_bell_the_teams_and_the_settings_revision_with_the_session(
        app, personas, log_incident, count_queries):
    """Three facts every signed-in page needs come with the session's query (a round trip each
    on PostgreSQL otherwise), and they are current: a change shows on the next page."""
    from helpdesk.models import Membership, Notice

    network = log_incident(title="Core switch fan failing", actor=personas.colleague,
                           assigned_team=personas.network)
    client = AgentClient(app, personas.owner)
    client.get("/queues/teams")  # warm up anything done once per client
    Notice.create(agent=personas.owner.id, text="INC-1 something happened")
    Membership.create(agent=personas.owner.id, team=personas.network.id)
    count_queries.queries.clear()
    page = text(client.get("/queues/teams"))
    standalone = [q for q in count_queries.queries
                  if re.search(r'FROM "(notice|config_change|membership)" AS "t1"', q)]
    assert not standalone, standalone
    assert "1 unread" in page, "the bell counts the notice that came since the last page"
    assert network.title in page, "the team joined since the last page is in My teams"

    client.post("/notices/read", data={"csrf_token": client.csrf_token()})
    assert "unread" not in text(client.get("/queues/teams"))


# -- 8. queue contents, filters and keyset pages ----------------------------------------------


def test_each_queue_holds_the_right_incidents(app, personas, log_incident):
    p = personas
    mine_assigned = log_incident(title="mine assigned", actor=p.owner, assigned_team=p.service_desk,
                                 assigned_agent=p.owner)
    mine_db = log_incident(title="mine at db", actor=p.owner, assigned_team=p.database_team)
    sara_db = log_incident(title="sara's with priya", actor=p.colleague,
                           assigned_team=p.database_team, assigned_agent=p.assignee)
    pool = log_incident(title="unowned pool", actor=None)
    network = log_incident(title="network only", actor=p.other, assigned_team=p.network,
                           assigned_agent=p.other)
    resolved = log_incident(title="already resolved", actor=p.owner)
    Incident.update(status="resolved").where(Incident.id == resolved.id).execute()

    expected = {
        "assigned": {mine_assigned},
        "owned": {mine_assigned, mine_db},
        "teams": {mine_assigned, mine_db, sara_db, pool},
        "unassigned": {mine_db, pool},
        "unowned": {pool},
        "open": {mine_assigned, mine_db, sara_db, pool, network},
    }
    client = AgentClient(app, p.owner)
    for queue, incidents in expected.items():
        assert set(listed(client.get(f"/queues/{queue}"))) == {i.id for i in incidents}, queue
    resolved_view = client.get("/queues/open?status=resolved")
    assert listed(resolved_view) == [resolved.id]


def test_start_page_depends_on_the_agents_team(app, personas):
    assert AgentClient(app, personas.owner).get("/").headers["Location"] == "/queues/owned"
    assert AgentClient(app, personas.assignee).get("/").headers["Location"] == "/queues/assigned"


MATRIX = {("high", "high"): 1, ("high", "medium"): 2, ("medium", "medium"): 3, ("low", "low"): 4}


@pytest.fixture
def thirteen(ctx, app, personas, log_incident, frozen_clock) -> list[dict[str, Any]]:
    """13 incidents logged three to a minute (equal times), with mixed priorities;
    two of them (with equal times as well) are changed later."""
    start = frozen_clock[0]
    levels = list(MATRIX)
    made = []
    for i in range(13):
        frozen_clock[0] = start + dt.timedelta(minutes=i // 3)
        impact, urgency = levels[i % 4]
        incident = log_incident(title=f"Ticket {i:02}", impact=impact, urgency=urgency)
        made.append({"id": incident.id, "created": frozen_clock[0], "updated": frozen_clock[0],
                     "priority": MATRIX[(impact, urgency)], "title": incident.title})
    frozen_clock[0] = start + dt.timedelta(hours=1)
    for row in (made[4], made[9]):
        domain.assign(ctx, row["id"], personas.owner, personas.database_team, None)
        row["updated"] = frozen_clock[0]
    return made


EXPECTED_ORDER = {
    "updated": lambda r: (-r["updated"].timestamp(), -r["id"]),
    "newest": lambda r: (-r["created"].timestamp(), -r["id"]),
    "oldest": lambda r: (r["created"], r["id"]),
    "priority": lambda r: (r["priority"], r["id"]),
}


def walk(client: AgentClient, url: str) -> tuple[list[int], list[str]]:
    seen: list[int] = []
    urls: list[str] = []
    while url:
        urls.append(url)
        response = client.get(url)
        assert response.status_code == 200, text(response)
        seen.extend(listed(response))
        url = next_link(response)
        assert len(urls) < 20, "the Next links never end"
    return seen, urls


@overrides(page_size=5)
@pytest.mark.parametrize("sort", list(EXPECTED_ORDER))
def test_next_links_visit_every_incident_once_in_sort_order(app, personas, thirteen, sort):
    client = AgentClient(app, personas.owner)
    seen, urls = walk(client, f"/queues/open?sort={sort}")
    expected = [r["id"] for r in sorted(thirteen, key=EXPECTED_ORDER[sort])]
    assert seen == expected
    assert len(urls) == 3  # 5 + 5 + 3
    assert all(parse_qs(urlsplit(u).query)["sort"] == [sort] for u in urls[1:])
    second = text(client.get(urls[1]))
    assert "First page" in second


@overrides(page_size=5)
def test_next_links_keep_the_filters(app, personas, log_incident):
    printers, network_printers = [], []
    for i in range(24):
        kind = "Printer" if i % 2 else "Laptop"
        at_network = i % 3 == 0
        incident = log_incident(title=f"{kind} problem {i}",
                                assigned_team=personas.network if at_network else None)
        if kind == "Printer":
            printers.append(incident.id)
            if at_network:
                network_printers.append(incident.id)
    client = AgentClient(app, personas.owner)
    seen, urls = walk(client, "/queues/open?q=printer&sort=oldest")
    assert seen == printers and len(urls) == 3  # 12 printers: 5 + 5 + 2
    seen, urls = walk(client, f"/queues/open?q=PRINTER&team={personas.network.id}&sort=newest")
    assert seen == network_printers[::-1] and len(urls) == 1  # 4 printers at Network


@overrides(page_size=5)
def test_a_full_last_page_has_no_next_link(app, personas, log_incident):
    for i in range(10):
        log_incident(title=f"Ticket {i}")
    seen, urls = walk(AgentClient(app, personas.owner), "/queues/open")
    assert len(seen) == 10 and len(set(seen)) == 10
    assert len(urls) == 2


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize("sort,after", [
    ("updated", "not-a-cursor!!"),
    ("updated", base64.urlsafe_b64encode(b"hello").decode()),
    ("updated", _cursor([1, 2])),
    ("updated", _cursor(["2024-03-01T09:00:00", "x"])),
    ("updated", _cursor(None)),
    ("updated", _cursor([])),
    ("updated", _cursor(["2024-03-01T09:00:00", 1, 2])),
    ("priority", _cursor(["high", 3])),
    ("priority", _cursor([2, 10**30])),
    ("oldest", _cursor(["2024-03-01T09:00:00", 10**30])),
])
def test_a_broken_page_link_is_a_clear_400(app, personas, log_incident, sort, after):
    log_incident()
    response = AgentClient(app, personas.owner).get(f"/queues/open?sort={sort}&after={after}")
    assert response.status_code == 400
    assert "This page link is broken; start again from the first page." in text(response)


@pytest.mark.parametrize("query,message", [
    ("status=bogus", "Unknown status filter &#39;bogus&#39;."),
    ("priority=9", "The priority filter takes 1 to 4."),
    ("priority=high", "The priority filter takes 1 to 4."),
    ("type=outage", "Unknown type filter &#39;outage&#39;."),
    ("team=database", "The team filter takes a team id."),
    ("sort=random", "Unknown sort &#39;random&#39;."),
])
def test_unknown_filters_are_a_clear_400(app, personas, query, message):
    response = AgentClient(app, personas.owner).get(f"/queues/open?{query}")
    assert response.status_code == 400
    assert message in text(response)


def test_unknown_queue_is_404(app, personas):
    assert AgentClient(app, personas.owner).get("/queues/everything").status_code == 404


# -- 9. safe rendering ------------------------------------------------------------------------------


HOSTILE = "\n\n".join([
    "**Bold** claim",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(2)>",
    '<a hx-get="/logout" hx-trigger="load">x</a>',
    '<div hx-post="/incidents/1/take" hx-trigger="load">y</div>',
    "[click me](javascript:alert(3))",
    "[runbook](https://example.com/runbook)",
])


def assert_inert(page: Page) -> None:
    """No script of the page's own making, no event handler, and no htmx attribute inside an
    hx-disable container or pointing at logout."""
    for element in page.elements:
        attrs = element.attrs
        assert not [n for n in attrs if n.startswith("on")], (element.tag, attrs)
        for name, value in attrs.items():
            if value and (name in {"href", "src", "action"} or name.startswith("hx-")):
                assert not value.strip().lower().startswith("javascript:"), attrs
            if name.startswith("hx-") and name != "hx-disable":
                assert value != "/logout", attrs
                assert not any("hx-disable" in a.attrs for a in element.ancestors), attrs
        if element.tag == "script":
            assert (attrs.get("src") or "").startswith("/static/"), attrs
            assert not element.content.strip()
        assert element.tag not in {"img", "iframe", "object", "embed"}, attrs


def test_hostile_description_title_and_comment_render_inert(app, personas, log_incident):
    incident = log_incident(title='<script>alert("t")</script> VPN', description=HOSTILE)
    client = AgentClient(app, personas.owner)
    assert client.post(f"/incidents/{incident.id}/comments",
                       {"body": HOSTILE, "visibility": "note"}).status_code == 303

    response = client.get(f"/incidents/{incident.id}")
    assert response.status_code == 200
    page = Page(text(response))
    assert_inert(page)

    description = [e for e in page.elements if "description" in e.classes()]
    assert len(description) == 1 and "hx-disable" in description[0].attrs
    inside = [e for e in page.elements if e.inside(description[0])]
    assert [e.content for e in inside if e.tag == "strong"] == ["Bold"]  # Markdown still works
    links = [e for e in inside if e.tag == "a"]
    assert [e.attrs.get("href") for e in links if e.attrs.get("href")] == [
        "https://example.com/runbook"]
    assert "noopener" in links[-1].attrs["rel"]
    assert 'alert("t")' in page.one("h1", id="incident-title").content  # shown as text

    note = [e for e in page.elements if "markdown" in e.classes() and "Bold" in e.content
            and e is not description[0]]
    assert note and all("hx-disable" in e.attrs for e in note)

    assert_inert(Page(text(client.get("/queues/open"))))


# -- 10. login -----------------------------------------------------------------------------------


def try_login(client: AgentClient, username: str, password: str, **extra: str) -> Any:
    return client.post("/login", {"username": username, "password": password, **extra})


def is_logged_in(client: AgentClient) -> bool:
    return client.get("/queues/open").status_code == 200


def test_wrong_password_is_401_with_a_message(app, personas):
    client = AgentClient(app, None)
    response = try_login(client, "john", "wrong password!")
    assert response.status_code == 401
    assert "Unknown user name or wrong password." in text(response)
    assert 'value="john"' in text(response)  # the user name stays filled in
    assert not is_logged_in(client)
    unknown = try_login(client, "nobody", PASSWORD)
    assert unknown.status_code == 401
    assert "Unknown user name or wrong password." in text(unknown)


@pytest.mark.parametrize("settings_overrides,limit", [({}, 5), ({"login_max_failures": 2}, 2)],
                         ids=["default", "two"])
def test_too_many_failures_lock_the_user_name_for_the_window(app, personas, frozen_clock, limit):
    client = AgentClient(app, None)
    for _ in range(limit):
        assert try_login(client, "john", "guess guess guess").status_code == 401
    blocked = try_login(client, "john", PASSWORD)
    assert blocked.status_code == 429
    assert "Too many failed attempts" in text(blocked)
    assert not is_logged_in(client)
    # another user on the same address is not locked out
    assert try_login(AgentClient(app, None), "sara", PASSWORD).status_code == 302
    # once the window has passed, the right password works again
    frozen_clock[0] += dt.timedelta(seconds=app.extensions["helpdesk"].settings
                                    .login_window_seconds + 1)
    assert try_login(client, "john", PASSWORD).status_code == 302
    assert is_logged_in(client)


def test_one_failure_short_of_the_limit_still_logs_in_and_resets_the_count(app, personas):
    short = app.extensions["helpdesk"].settings.login_max_failures - 1
    client = AgentClient(app, None)
    for _ in range(short):
        assert try_login(client, "john", "guess guess guess").status_code == 401
    assert try_login(client, "john", PASSWORD).status_code == 302
    other = AgentClient(app, None)
    for _ in range(short):
        assert try_login(other, "john", "guess guess guess").status_code == 401
    assert try_login(other, "john", PASSWORD).status_code == 302


@pytest.mark.parametrize("target", [
    "//evil.com", "https://evil.com", "/\\evil.com", "\\\\evil.com", "http:/evil.com",
    "javascript:alert(1)", "/\t/evil.com", "evil.com", "",
])
def test_login_next_only_accepts_local_paths(app, personas, target):
    client = AgentClient(app, None)
    form = text(client.get("/login", query_string={"next": target}))
    assert 'name="next" value="/"' in form
    response = try_login(client, "john", PASSWORD, next=target)
    assert response.status_code == 302
    assert response.headers["Location"] == DEFAULT_PAGE


def test_login_next_to_a_local_page_is_honoured(app, personas):
    client = AgentClient(app, None)
    query = login_redirect(client.get("/queues/open?x=1"))
    assert query["next"] == ["/queues/open?x=1"]
    form = text(client.get("/login", query_string={"next": "/queues/open?x=1"}))
    assert 'name="next" value="/queues/open?x=1"' in form
    response = try_login(client, "john", PASSWORD, next="/queues/open?x=1")
    assert response.status_code == 302
    assert response.headers["Location"] == "/queues/open?x=1"


# -- 11. security headers -----------------------------------------------------------------------


def csp_directives(response: Any) -> dict[str, list[str]]:
    policy = response.headers["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in policy.split(";")
                                               if part.strip())}


@pytest.mark.parametrize("url,status", [("/login", 200), ("/nowhere", 404)])
def test_html_pages_carry_security_headers(app, url, status):
    response = app.test_client().get(url)
    assert response.status_code == status
    assert response.mimetype == "text/html"
    csp = csp_directives(response)
    scripts = csp.get("script-src", csp.get("default-src"))
    assert scripts == ["'self'"]
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
    assert "'unsafe-eval'" not in response.headers["Content-Security-Policy"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    # the page works under that policy: every script is a file, no inline handlers or styles
    page = Page(text(response))
    assert all(e.attrs.get("src") for e in page.find("script"))
    assert not [e for e in page.elements if "style" in e.attrs or e.tag == "style"]


def test_logged_in_pages_are_not_cached(app, personas):
    response = AgentClient(app, personas.owner).get("/queues/open")
    assert "no-store" in response.headers["Cache-Control"]


def session_cookie(response: Any) -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert cookies, response.headers
    return cookies[-1]


def test_session_cookie_is_httponly_and_samesite_lax(app, personas):
    client = AgentClient(app, None)
    response = try_login(client, "john", PASSWORD)
    assert response.status_code == 302
    cookie = session_cookie(response)
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # served over plain http (base_url is http://)


@overrides(base_url="https://helpdesk.example.com")
def test_https_deployment_marks_the_cookie_secure_and_sends_hsts(app, personas):
    client = AgentClient(app, None)
    response = try_login(client, "john", PASSWORD)
    cookie = session_cookie(response)
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "max-age=" in response.headers["Strict-Transport-Security"]


# -- 12. new incident form ------------------------------------------------------------------------


def test_new_incident_without_title_is_422_with_the_error_at_the_title(app, personas):
    client = AgentClient(app, personas.owner)
    response = client.post("/incidents/new", {"title": "  ", "description": "Nothing prints",
                                              "assigned_team": personas.database_team.id,
                                              "keep_ownership": "y"})
    assert response.status_code == 422
    page = Page(text(response))
    title = page.one("input", id="title")
    assert title.attrs.get("aria-invalid") == "true"
    error = page.one(id=title.attrs["aria-describedby"])
    assert error.content.strip() == "A title is required."
    assert re.search(r'<input id="title"[^>]*>\s*<p class="field-error" id="title-error"',
                     text(response))
    assert "Nothing prints" in page.one("textarea", id="description").content  # input kept
    assert Incident.select().count() == 0


def test_new_incident_with_assigned_team_opens_the_owned_incident(app, personas):
    client = AgentClient(app, personas.owner)
    response = client.post("/incidents/new", {
        "title": "VPN down for the Leeds office", "description": "Since 9am",
        "type": "incident", "impact": "high", "urgency": "high",
        "assigned_team": personas.database_team.id, "assigned_agent": "", "keep_ownership": "y"})
    assert response.status_code == 303
    created = Incident.get()
    assert urlsplit(response.headers["Location"]).path == f"/incidents/{created.id}"
    assert created.title == "VPN down for the Leeds office"
    assert (created.owner_team_id, created.owner_agent_id) == (personas.service_desk.id,
                                                               personas.owner.id)
    assert (created.assigned_team_id, created.assigned_agent_id) == (personas.database_team.id, None)
    assert created.status == "assigned" and created.priority == 1
    page = text(client.get(response.headers["Location"]))
    assert f"INC-{created.id} logged." in page
    assert "Service Desk / John Carter" in page and "Database / <em>no agent</em>" in page


def test_creates_whose_redirects_are_not_followed_leave_only_the_newest_messages(app, personas):
    """A script posting the form without reading the pages must not grow the session cookie
    with every "logged" message until browsers refuse it."""
    client = AgentClient(app, personas.owner)
    for number in range(12):
        response = client.post("/incidents/new", {"title": f"Printer {number} jammed", "impact": "low",
                                                  "urgency": "low", "type": "incident"})
        assert response.status_code == 303
    created = [incident.reference for incident in Incident.select().order_by(Incident.id)]
    assert len(created) == 12
    where = response.headers["Location"]
    page = text(client.get(where))
    assert [reference for reference in created if f"{reference} logged." in page] == created[-5:]
    assert not any(f"{reference} logged." in text(client.get(where)) for reference in created)


def test_new_incident_left_to_the_pool_is_unowned(app, personas):
    client = AgentClient(app, personas.owner)
    response = client.post("/incidents/new", {"title": "Broken chair", "impact": "low",
                                              "urgency": "low"})  # checkbox unticked
    assert response.status_code == 303
    created = Incident.get()
    assert (created.owner_team_id, created.owner_agent_id) == (personas.service_desk.id, None)


def test_new_incident_with_unknown_team_is_422_and_creates_nothing(app, personas):
    response = AgentClient(app, personas.owner).post("/incidents/new", {
        "title": "Printer", "assigned_team": "99999", "keep_ownership": "y"})
    assert response.status_code == 422
    assert "Choose an existing assigned team." in text(response)
    assert Incident.select().count() == 0


# -- 13. request size ------------------------------------------------------------------------------


def test_request_over_the_default_size_limit_is_413(app, personas):
    limit = app.extensions["helpdesk"].settings.max_request_bytes
    response = AgentClient(app, personas.owner).post("/incidents/new", {
        "title": "Huge", "description": "x" * (limit + 1), "keep_ownership": "y"})
    assert response.status_code == 413
    assert "The request is too large." in text(response)
    assert Incident.select().count() == 0


@overrides(max_request_bytes=8192)
def test_configured_size_limit_is_the_one_applied(app, personas):
    client = AgentClient(app, personas.owner)
    too_big = client.post("/incidents/new", {"title": "Big", "description": "x" * 10_000})
    assert too_big.status_code == 413
    fits = client.post("/incidents/new", {"title": "Fits", "description": "x" * 6_000})
    assert fits.status_code == 303
    assert [i.title for i in Incident.select()] == ["Fits"]


@overrides(max_request_bytes=8192)
def test_the_served_app_refuses_a_too_large_body_in_its_own_kind(app, personas, server):
    # Over HTTP the server refuses before the app reads the body: the API still answers
    # problem details (what its clients parse), a browser a page, and nothing is saved.
    import urllib.error
    import urllib.request

    from helpdesk.api import tokens

    with app.app_context():
        secret = tokens.create(personas.owner, "big", ["read", "write"]).secret
    answers = {}
    for path, body, kind in (
            ("/api/v1/incidents", json.dumps({"title": "Big", "description": "x" * 10_000}),
             "application/json"),
            ("/incidents/new", "title=Big&description=" + "x" * 10_000, "application/x-www-form-urlencoded")):
        request = urllib.request.Request(f"{server}{path}", data=body.encode(), method="POST", headers={
            "Content-Type": kind, "Authorization": f"Bearer {secret}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        answers[path] = refused.value
    api = answers["/api/v1/incidents"]
    assert api.code == 413 and api.headers["Content-Type"] == "application/problem+json"
    assert json.loads(api.read()) == {"type": "about:blank", "title": "Request too large", "status": 413,
                                      "detail": "The request body is over 8192 bytes."}
    page = answers["/incidents/new"]
    assert page.code == 413 and page.headers["Content-Type"].startswith("text/html")
    assert "The request is too large" in page.read().decode()
    assert Incident.select().count() == 0


def test_assign_boxes_list_every_team_and_only_its_active_agents(app, personas):
    # One query feeds the team and agent boxes: a team nobody is in is still a choice, an
    # agent shows under each of their teams, and a deactivated agent under none.
    from helpdesk import people

    people.create_team("Facilities")
    Agent.update(active=False).where(Agent.id == personas.other.id).execute()
    people.create_agent("lena", "Lena Ortiz", PASSWORD, teams=[personas.database_team, personas.network])
    page = AgentClient(app, personas.owner).get("/queues/open").get_data(as_text=True)
    team_box = re.search(r'<select id="bulk-team".*?</select>', page, re.S).group(0)
    agent_box = re.search(r'<select id="bulk-agent".*?</select>', page, re.S).group(0)
    teams = re.findall(r'<option value="\d+"[^>]*>([^<]+)</option>', team_box)
    assert teams == sorted(teams) and {"Database", "Facilities", "Network"} <= set(teams)
    groups = dict(re.findall(r'<optgroup label="([^"]+)" data-team="\d+">(.*?)</optgroup>', agent_box, re.S))
    names = {team: re.findall(r">([^<]+)</option>", body) for team, body in groups.items()}
    assert names["Database"] == ["Lena Ortiz", "Mateo Silva", "Priya Raman"]  # by name
    assert names["Network"] == ["Lena Ortiz"]  # Kofi is deactivated
    assert "Facilities" not in names  # nobody to choose there
