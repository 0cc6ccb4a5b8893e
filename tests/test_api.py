"""The JSON API as an integration sees it: tokens (hashed, scoped, expiring, revocable,
rate-limited), the incident operations over the same domain functions as the pages,
HTTP optimistic locking, idempotent POSTs, problem details, and the OpenAPI document.

Every test talks HTTP to a fresh app through the test client (SQLite file, or
PostgreSQL with HELPDESK_TEST_DATABASE_URL); concurrency tests use real threads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
from typing import Any

import pytest

from helpdesk.api import tokens
from helpdesk.api.http import ENDPOINTS
from helpdesk.models import Agent, ApiToken, Category, Incident, Service, TimelineEntry
from helpdesk.security import TOKEN
from helpdesk.testing import AgentClient

API = "/api/v1"


# -- helpers ------------------------------------------------------------------------------------


class Api:
    """A test client sending one token, JSON in and out."""

    def __init__(self, app: Any, secret: str | None) -> None:
        self.http = app.test_client()
        self.headers = {"Authorization": f"Bearer {secret}"} if secret else {}

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        extra = {k.replace("_", "-"): v for k, v in headers.items()}
        kwargs: dict[str, Any] = {"headers": {**self.headers, **extra}}
        if body is not None:
            kwargs["json"] = body
        return self.http.open(API + path, method=method, **kwargs)

    def get(self, path: str, **headers: str) -> Any:
        return self.call("GET", path, **headers)

    def post(self, path: str, body: Any = None, **headers: str) -> Any:
        return self.call("POST", path, {} if body is None else body, **headers)

    def patch(self, path: str, body: Any, **headers: str) -> Any:
        return self.call("PATCH", path, body, **headers)


@pytest.fixture
def issue(app):
    """``issue(agent, scopes, **options)``: a new token's secret."""

    def make(agent: Agent, scopes: list[str] = ["read", "write"], **options: Any) -> str:  # noqa: B006
        with app.app_context():
            return tokens.create(agent, options.pop("name", "test"), scopes, **options).secret

    return make


@pytest.fixture
def api(app, personas, issue) -> Api:
    """John (service desk) with a read+write token."""
    return Api(app, issue(personas.owner))


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    data = response.get_json()
    assert data["status"] == status and data["title"]
    return data


def etag(response: Any) -> str:
    return response.headers["ETag"]


def fresh(incident_id: int) -> Incident:
    return Incident.get_by_id(incident_id)


def entries(incident_id: int) -> int:
    return TimelineEntry.select().where(TimelineEntry.incident == incident_id).count()


# -- tokens ----------------------------------------------------------------------------------------


def test_a_token_is_stored_only_as_a_hash_and_recognisable_by_its_prefix(app, personas, issue):
    secret = issue(personas.owner, name="laptop")
    assert re.fullmatch(r"hdp_[A-Za-z0-9_-]{43}", secret)
    row = ApiToken.get(ApiToken.name == "laptop")
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    stored = json.dumps([str(v) for v in row.__data__.values()])
    assert secret not in stored and secret[8:] not in stored
    assert row.hint == secret[:8]


def test_profile_page_shows_a_new_token_once_and_it_works_on_the_api(app, personas):
    john = AgentClient(app, personas.owner)
    made = john.post("/profile/tokens", {"name": "my script", "scopes": ["read"], "expires_days": "30"})
    assert made.status_code == 201
    secret = re.search(r'value="(hdp_[^"]+)"', made.get_data(as_text=True)).group(1)
    listing = john.get("/profile/tokens").get_data(as_text=True)
    assert "my script" in listing and secret not in listing and secret[:8] in listing
    reader = Api(app, secret)
    assert reader.get("/incidents").status_code == 200
    assert ApiToken.get(ApiToken.name == "my script").last_used_at is not None
    # read only: a change is refused for lack of scope
    assert problem(reader.post("/incidents", {"title": "Printer"}), 403)["detail"].endswith(
        "'write' scope.")
    assert Incident.select().count() == 0


def test_agents_cannot_give_their_token_scopes_beyond_their_role(app, personas):
    john = AgentClient(app, personas.owner)
    for scopes in (["read", "admin"], ["alerts"]):
        refused = john.post("/profile/tokens", {"name": "sneaky", "scopes": scopes})
        assert refused.status_code in (403, 422)
    assert ApiToken.select().count() == 0


def test_an_agent_revokes_their_own_token_but_not_someone_elses(app, personas, issue):
    mine = issue(personas.owner, name="mine")
    theirs = issue(personas.colleague, name="theirs")
    john = AgentClient(app, personas.owner)
    for name in ("mine", "theirs"):
        john.post("/profile/tokens/revoke", {"token_id": ApiToken.get(ApiToken.name == name).id})
    assert problem(Api(app, mine).get("/incidents"), 401)
    assert Api(app, theirs).get("/incidents").status_code == 200


def test_revoked_expired_and_deactivated_tokens_stop_working(app, personas, issue, frozen_clock):
    revoked = issue(personas.owner, name="revoked")
    expiring = issue(personas.owner, name="expiring", expires_at=frozen_clock.now + dt.timedelta(days=1))
    deactivated = issue(personas.colleague, name="sara's")
    for secret in (revoked, expiring, deactivated):
        assert Api(app, secret).get("/incidents").status_code == 200
    admin = AgentClient(app, personas.admin)
    admin.post("/admin/tokens/revoke", {"token_id": ApiToken.get(ApiToken.name == "revoked").id})
    frozen_clock.advance(days=1)
    Agent.update(active=False).where(Agent.id == personas.colleague.id).execute()
    for secret in (revoked, expiring, deactivated):
        refused = problem(Api(app, secret).get("/incidents"), 401)
        assert "invalid_token" in Api(app, secret).get("/incidents").headers["WWW-Authenticate"]
        assert "unknown, revoked or expired" in refused["detail"]


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Basic am9objpwdw==", "Bearer hdp_guess",
                                    "Bearer %", "Bearer " + "x" * 5000])
def test_missing_or_bogus_credentials_are_401(app, personas, header):
    response = app.test_client().get(f"{API}/incidents", headers={"Authorization": header})
    problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_session_cookie_does_not_authenticate_the_api(app, personas):
    """No CSRF surface: a logged-in browser (cookie and CSRF token) cannot use the API."""
    john = AgentClient(app, personas.owner)
    assert john.get(f"{API}/incidents").status_code == 401
    sent = john.http.post(f"{API}/incidents", json={"title": "Forged"},
                          headers={"X-CSRFToken": john.csrf_token()})
    problem(sent, 401)
    form = john.post(f"{API}/incidents", {"title": "Forged"})
    assert form.status_code == 401
    assert Incident.select().count() == 0


def test_a_token_does_not_authenticate_pages(app, personas, issue, log_incident):
    incident = log_incident()
    bearer = {"Authorization": f"Bearer {issue(personas.admin, ['read', 'write', 'admin'])}"}
    client = app.test_client()
    for url in ("/queues/open", f"/incidents/{incident.id}", "/admin/agents", "/profile/tokens"):
        response = client.get(url, headers=bearer)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url
    client.post(f"/incidents/{incident.id}/assignee", headers=bearer,
                data={"assigned_team": personas.network.id})
    assert fresh(incident.id).assigned_team_id is None


def test_every_api_route_is_declared_token_or_public_and_checks_its_scope(app, personas, issue,
                                                                           log_incident):
    """The scope matrix: each operation answers 403 to a token without its scope and lets a
    token with it through (whatever the operation then says about the request)."""
    incident = log_incident()
    rules = [r for r in app.url_map.iter_rules() if r.rule.startswith(API)]
    assert len(rules) == len(ENDPOINTS) >= 20
    by_scope = {scope: Api(app, issue(personas.admin, [scope] if scope != "alerts" else ["alerts"],
                                      kind="service" if scope == "alerts" else "personal"))
                for scope in tokens.SCOPES}
    before = (Incident.select().count(), entries(incident.id), fresh(incident.id).version)
    checked = 0
    for rule in rules:
        view = app.view_functions[rule.endpoint]
        method = next(m for m in rule.methods if m not in {"HEAD", "OPTIONS"})
        path = rule.rule.removeprefix(API).replace("<int:incident_id>", str(incident.id))
        if view.access_level != TOKEN:
            assert rule.rule == f"{API}/openapi.json"
            continue
        for scope, client in by_scope.items():
            response = client.call(method, path, {} if method in {"POST", "PATCH"} else None)
            if scope == view.api_scope:
                assert response.status_code not in (401, 403), (rule.rule, scope)
            else:
                assert problem(response, 403)["detail"] == f"This token lacks the {view.api_scope!r} scope."
            checked += 1
    assert checked == (len(rules) - 1) * len(tokens.SCOPES)
    # empty bodies were refused: nothing changed
    assert (Incident.select().count(), entries(incident.id), fresh(incident.id).version) == before


def test_rate_limit_holds_under_concurrent_requests_and_says_when_to_retry(app, personas, issue,
                                                                          frozen_clock):
    secret = issue(personas.owner, rate_limit=5)
    statuses: list[tuple[int, str | None]] = []
    start = threading.Barrier(12)

    def one() -> None:
        client = Api(app, secret)
        start.wait()
        response = client.get("/teams")
        statuses.append((response.status_code, response.headers.get("Retry-After")))

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(s for s, _ in statuses) == [200] * 5 + [429] * 7
    for status, retry in statuses:
        if status == 429:
            assert retry is not None and 1 <= int(retry) <= 60
    # another token has its own budget
    assert Api(app, issue(personas.owner)).get("/teams").status_code == 200


def test_the_rate_limit_window_moves_on(app, personas, issue, frozen_clock):
    client = Api(app, issue(personas.owner, rate_limit=2))
    assert [client.get("/teams").status_code for _ in range(3)] == [200, 200, 429]
    frozen_clock.advance(minutes=1)
    assert client.get("/teams").status_code == 200


def test_a_request_from_just_before_the_minute_turned_counts_in_the_new_minute(app, personas, issue,
                                                                               frozen_clock):
    """Concurrent requests straddling a minute boundary: one that read the clock at :59.99 may
    reach the counter after one from :00.01 started the next minute. It was refused (429)
    with the budget untouched; it counts in the minute already started."""
    from helpdesk.api import tokens as api_tokens

    secret = issue(personas.owner, rate_limit=3)
    token = ApiToken.get(ApiToken.hint == secret[:8])
    later = frozen_clock.now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    ApiToken.update(window_start=later, window_count=1).where(ApiToken.id == token.id).execute()
    with app.app_context():
        assert api_tokens.spend(ApiToken.get_by_id(token.id)) is None
        assert api_tokens.spend(ApiToken.get_by_id(token.id)) is None
        assert api_tokens.spend(ApiToken.get_by_id(token.id)) is not None  # that minute's 3 are spent
    assert ApiToken.get_by_id(token.id).window_count == 3


def test_admin_makes_a_service_token_acting_as_a_chosen_agent(app, personas):
    admin = AgentClient(app, personas.admin)
    page = admin.post("/admin/tokens", {"name": "prometheus", "scopes": ["alerts"],
                                         "agent_id": personas.lead.id, "resolve_alerts": "on",
                                         "expires_days": ""})
    assert page.status_code == 201
    assert re.search(r'value="hds_[^"]+"', page.get_data(as_text=True))
    token = ApiToken.get(ApiToken.name == "prometheus")
    assert (token.kind, token.agent_id, token.created_by_id, token.resolve_alerts,
            token.expires_at) == ("service", personas.lead.id, personas.admin.id, True, None)
    listing = admin.get("/admin/tokens").get_data(as_text=True)
    assert "prometheus" in listing and "Amira Haddad" in listing


# -- incidents -------------------------------------------------------------------------------------


def test_log_an_incident_as_the_token_agent(app, personas, api):
    category = Category.create(name="Database")
    made = api.post("/incidents", {"title": "  Orders   DB slow ", "impact": "high", "urgency": "high",
                                   "category_id": category.id,
                                   "assigned_team_id": personas.database_team.id})
    assert made.status_code == 201
    data = made.get_json()
    assert made.headers["Location"] == f"{API}/incidents/{data['id']}"
    assert etag(made) == '"1"'
    assert (data["title"], data["priority"], data["source"], data["status"]) == (
        "Orders DB slow", 1, "api", "assigned")
    assert data["owner"]["agent"] == {"id": personas.owner.id, "name": "John Carter"}
    assert data["assignee"]["team"] == {"id": personas.database_team.id, "name": "Database"}
    created = TimelineEntry.get(TimelineEntry.incident == data["id"])
    assert created.actor_id == personas.owner.id and "Logged via API" in created.body
    assert api.get(f"/incidents/{data['id']}").get_json() == data


@pytest.mark.parametrize("extra", [{"created_at": "2020-01-01T00:00:00Z"}, {"author_id": 1},
                                   {"internal": True}, {"owner_agent_id": 1, "version": 7},
                                   {"status": "closed"}, {"priority": 1}])
def test_unknown_or_forbidden_fields_are_422_naming_them(app, personas, api, extra):
    data = problem(api.post("/incidents", {"title": "Printer", **extra}), 422)
    assert data["fields"] == sorted(extra)
    assert all(name in data["detail"] for name in extra)
    assert Incident.select().count() == 0


@pytest.mark.parametrize("body,field", [
    ({"title": "Printer \ud800 jammed"}, "title"),  # JSON can spell a lone surrogate
    ({"title": "Printer", "description": "nul \x00 here"}, "description"),
    ({"title": "Printer", "description": "ok", "impact": "\udfff"}, "impact"),
    ({"title": "Backup \x1b[31mfailed\x1b[0m"}, "title"),  # an escape sequence, as README says
    ({"title": "Printer", "description": "bell \x07 and form feed \x0c"}, "description"),
])
def test_text_no_database_can_keep_is_422_not_a_crash(app, api, body, field):
    data = problem(api.post("/incidents", body), 422)
    assert data["field"] == field and "not text" in data["detail"]
    assert Incident.select().count() == 0


def test_control_characters_are_422_on_every_operation_and_tabs_and_line_breaks_are_text(
        app, personas, api, log_incident):
    incident = log_incident()
    path = f"/incidents/{incident.id}"
    assert problem(api.patch(path, {"title": "Printer \x1b]0;owned\x07"}, If_Match='"1"'),
                   422)["field"] == "title"
    assert problem(api.post(f"{path}/comments", {"body": "log: \x1b[1mERROR\x1b[0m"}), 422)["field"] == "body"
    assert problem(api.post(f"{path}/status", {"status": "cancelled", "note": "dup\x7f"},
                            If_Match='"1"'), 422)["field"] == "note"
    assert (fresh(incident.id).version, TimelineEntry.select().where(
        TimelineEntry.incident == incident.id).count()) == (1, 1)
    kept = api.post("/incidents", {"title": "Printer", "description": "line 1\r\n\tline 2\n"})
    assert kept.status_code == 201 and kept.get_json()["description"] == "line 1\r\n\tline 2"


@pytest.mark.parametrize("body,field", [
    ({}, "title"),
    ({"title": ""}, "title"),
    ({"title": "x" * 201}, "title"),
    ({"title": 42}, "title"),
    ({"title": "ok", "impact": "huge"}, "impact"),
    ({"title": "ok", "type": "problem"}, "type"),
    ({"title": "ok", "category_id": 999}, "category_id"),
    ({"title": "ok", "assigned_team_id": "1"}, "assigned_team_id"),
    ({"title": "ok", "assigned_team_id": 2**70}, "assigned_team_id"),
    ({"title": "ok", "keep_ownership": "yes"}, "keep_ownership"),
])
def test_bad_values_are_422_naming_the_field(app, personas, api, body, field):
    assert problem(api.post("/incidents", body), 422)["field"] == field
    assert Incident.select().count() == 0


def test_a_body_that_is_not_a_json_object_is_refused(app, personas, api):
    assert problem(api.post("/incidents", ["title"]), 400)
    raw = api.http.post(f"{API}/incidents", data="title=x", headers={
        **api.headers, "Content-Type": "application/x-www-form-urlencoded"})
    assert problem(raw, 415)
    broken = api.http.post(f"{API}/incidents", data="{", headers={
        **api.headers, "Content-Type": "application/json"})
    assert problem(broken, 400)
    for deep in ("[" * 100_000 + "]" * 100_000, '{"title": ' + "[" * 5000 + "]" * 5000 + "}"):
        nested = api.http.post(f"{API}/incidents", data=deep, headers={  # was a 500 (RecursionError)
            **api.headers, "Content-Type": "application/json"})
        assert "nested too deeply" in problem(nested, 400)["detail"]
    assert Incident.select().count() == 0


def test_user_text_is_returned_as_data_not_html(app, personas, api):
    hostile = '<img src=x onerror=alert(1)>"\''
    made = api.post("/incidents", {"title": hostile, "description": "<script>x</script>"})
    assert made.mimetype == "application/json"
    assert made.get_json()["title"] == hostile
    assert made.get_json()["description"] == "<script>x</script>"
    assert "nosniff" == made.headers["X-Content-Type-Options"]


def test_changes_require_if_match_and_a_stale_one_gets_412_with_the_current_state(
        app, personas, api, log_incident):
    incident = log_incident()
    path = f"/incidents/{incident.id}/assignee"
    body = {"team_id": personas.database_team.id}
    missing = problem(api.post(path, body), 428)
    assert missing["field"] == "If-Match"
    assert problem(api.post(path, body, If_Match="one"), 400)["field"] == "If-Match"
    done = api.post(path, body, If_Match='"1"')
    assert done.status_code == 200 and etag(done) == '"2"'
    # someone else works from version 1 still: refused, told what it is now
    stale = problem(api.post(path, {"team_id": personas.network.id}, If_Match='"1"'), 412)
    assert stale["current"]["assignee"]["team"]["name"] == "Database"
    assert stale["current"]["version"] == 2
    assert api.post(path, {"team_id": personas.network.id}, If_Match='"1"').headers["ETag"] == '"2"'
    assert fresh(incident.id).assigned_team_id == personas.database_team.id
    assert api.get(f"/incidents/{incident.id}").headers["ETag"] == '"2"'


def test_if_match_must_name_the_version_read_neither_any_nor_a_weak_etag(
        app, personas, api, log_incident):
    """If-Match is the lost-update guard: '*' would let any change through and a weak ETag
    never matches under If-Match's strong comparison (RFC 9110), so neither saves anything."""
    incident = log_incident()
    path = f"/incidents/{incident.id}/assignee"
    body = {"team_id": personas.database_team.id}
    anything = problem(api.post(path, body, If_Match="*"), 428)
    assert anything["field"] == "If-Match" and "*" in anything["detail"]
    weak = api.post(path, body, If_Match='W/"1"')
    refused = problem(weak, 412)
    assert refused["field"] == "If-Match" and "weak" in refused["detail"]
    assert refused["current"]["version"] == 1 and weak.headers["ETag"] == '"1"'
    assert problem(api.patch(f"/incidents/{incident.id}", {"title": "Mine"}, If_Match="*"), 428)
    assert fresh(incident.id).assigned_team_id != personas.database_team.id
    assert fresh(incident.id).title != "Mine" and fresh(incident.id).version == 1
    assert api.post(path, body, If_Match='"1"').status_code == 200


def test_every_agent_action_through_the_api(app, personas, issue, log_incident):
    """Owner, assignee, status, priority, details, reply, note, links: each one call, each
    recorded on the timeline as the token's agent, exactly as from the pages."""
    john = Api(app, issue(personas.owner))
    priya = Api(app, issue(personas.assignee))
    incident = log_incident()
    parent = log_incident(title="Data centre power")
    at = f"/incidents/{incident.id}"

    def step(client: Api, method: str, path: str, body: dict[str, Any], version: int) -> dict[str, Any]:
        response = client.call(method, at + path, body, If_Match=f'"{version}"')
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    data = step(john, "POST", "/assignee", {"team_id": personas.database_team.id,
                                             "agent_id": personas.assignee.id, "note": "DB"}, 1)
    data = step(priya, "POST", "/status", {"status": "in_progress"}, data["version"])
    data = step(john, "POST", "/priority", {"priority": 1, "reason": "Sales stopped"}, data["version"])
    data = step(john, "PATCH", "", {"title": "Orders DB down", "urgency": "high"}, data["version"])
    data = step(john, "POST", "/links", {"kind": "parent", "other_id": parent.id}, data["version"])
    data = step(john, "POST", "/owner", {"team_id": personas.service_desk.id,
                                          "agent_id": personas.colleague.id, "reason": "Shift"},
                data["version"])
    data = step(priya, "POST", "/status", {"status": "resolved", "note": "Index rebuilt",
                                            "resolution_code": "fixed"}, data["version"])
    assert (data["status"], data["priority"], data["title"], data["parent"], data["urgency"]) == (
        "resolved", 1, "Orders DB down", parent.id, "high")
    assert data["owner"]["agent"]["name"] == "Sara Berg"
    note = john.post(at + "/comments", {"body": "Checked with the DBA", "visibility": "internal"})
    reply = john.post(at + "/comments", {"body": "Fixed, please retry"})
    assert (note.status_code, reply.status_code) == (201, 201)
    assert (note.get_json()["kind"], reply.get_json()["kind"]) == ("note", "note")
    public = john.post(at + "/comments", {"body": "Fixed", "visibility": "public"}).get_json()
    assert public["kind"] == "reply" and public["actor"]["name"] == "John Carter"
    timeline = john.get(at + "/timeline").get_json()["items"]
    actors = {(e["field"], e["actor"]["name"]) for e in timeline if e["kind"] == "change"}
    # Assigning the new incident is one entry: its status entry (new -> assigned) says the pair.
    assert {("status", "John Carter"), ("status", "Priya Raman"), ("priority", "John Carter"),
            ("title", "John Carter"), ("parent", "John Carter"), ("owner", "John Carter")} <= actors
    assert any(e["body"].startswith("Assigned to Database / Priya Raman.") for e in timeline
               if e["kind"] == "change" and e["field"] == "status")
    # Priya's token cannot do what Priya cannot: transfer ownership she does not hold
    refused = problem(priya.post(at + "/owner", {"team_id": personas.database_team.id, "reason": "x"},
                                 If_Match=f'"{data["version"]}"'), 403)
    assert "Only the owner" in refused["detail"]


def test_a_rule_the_domain_refuses_is_a_422_with_its_message(app, personas, api, log_incident):
    incident = log_incident()
    refused = problem(api.post(f"/incidents/{incident.id}/status", {"status": "resolved"},
                               If_Match='"1"'), 422)
    assert "resolution note" in refused["detail"]
    assert fresh(incident.id).status == "new"


def test_a_refusal_names_the_field_the_client_must_fill(app, personas, api, log_incident):
    incident = log_incident()
    pending = problem(api.post(f"/incidents/{incident.id}/status", {"status": "pending"},
                               If_Match='"1"'), 422)
    assert pending["field"] == "pending_reason" and "Choose a pending reason" in pending["detail"]
    unexplained = problem(api.post(f"/incidents/{incident.id}/priority", {"priority": 1, "reason": " "},
                                   If_Match='"1"'), 422)
    assert unexplained["field"] == "reason"


def test_a_refusal_names_the_field_as_this_operation_spells_it(app, personas, api, log_incident):
    """The domain speaks of "the team" or "a reason"; the client sent team_id, assigned_team_id
    or note, and a field the operation does not take is never named."""
    incident = log_incident(keep_ownership=False)
    path = f"/incidents/{incident.id}"
    cancelled = problem(api.post(f"{path}/status", {"status": "cancelled"}, If_Match='"1"'), 422)
    assert "reason" in cancelled["detail"] and cancelled["field"] == "note"
    agent_only = problem(api.post(f"{path}/assignee", {"agent_id": personas.assignee.id},
                                  If_Match='"1"'), 422)
    assert agent_only["field"] == "team_id"
    new = problem(api.post("/incidents", {"title": "Printer", "assigned_agent_id": personas.assignee.id}),
                  422)
    assert new["field"] == "assigned_team_id"
    resolved = api.post(f"{path}/status", {"status": "resolved", "note": "Fixed", "resolution_code": "fixed"},
                        If_Match='"1"').get_json()
    reopened = problem(api.post(f"{path}/status", {"status": "in_progress"},
                                If_Match=f'"{resolved["version"]}"'), 422)
    assert "Say why" in reopened["detail"] and reopened["field"] == "note"
    taken = log_incident(actor=personas.colleague)
    refused = problem(api.post(f"/incidents/{taken.id}/take", {}, If_Match='"1"'), 422)
    assert "already owned" in refused["detail"] and "field" not in refused


@pytest.mark.parametrize("body", [{"owner": "someone else"}, [1]])
def test_an_operation_without_a_body_refuses_fields_it_would_ignore(app, personas, api, log_incident, body):
    incident = log_incident(keep_ownership=False)  # the desk's, no owning agent yet
    refused = problem(api.post(f"/incidents/{incident.id}/take", body, If_Match='"1"'), 422)
    assert "takes no body" in refused["detail"]
    assert fresh(incident.id).owner_agent_id is None
    assert api.post(f"/incidents/{incident.id}/take", {}, If_Match='"1"').status_code == 200


def test_a_missing_incident_is_a_404_problem(app, personas, api):
    for method, path in (("GET", "/incidents/999"), ("GET", "/incidents/999/timeline"),
                         ("GET", "/incidents/999/sla"), ("POST", "/incidents/999/comments")):
        body = {"body": "hi"} if method == "POST" else None
        assert problem(api.call(method, path, body), 404)["detail"] == "There is no incident INC-999."
    assert problem(api.get("/incidents/99999999999999999999"), 404)
    assert problem(api.get("/nothing-here"), 404)
    wrong_method = problem(api.call("DELETE", "/incidents"), 405)
    assert wrong_method["title"] == "Method Not Allowed"


def test_idempotency_key_makes_a_retried_create_create_once(app, personas, api):
    body = {"title": "VPN down"}
    first = api.post("/incidents", body, Idempotency_Key="create-vpn-1")
    again = api.post("/incidents", body, Idempotency_Key="create-vpn-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    # a shared cache must keep the replay no more than the first answer
    assert again.headers["Cache-Control"] == first.headers["Cache-Control"] == "no-store"
    assert Incident.select().count() == 1
    changed = problem(api.post("/incidents", {"title": "Other"}, Idempotency_Key="create-vpn-1"), 422)
    assert changed["field"] == "Idempotency-Key"
    assert api.post("/incidents", body, Idempotency_Key="create-vpn-2").status_code == 201
    assert Incident.select().count() == 2


def test_keys_are_per_token_and_refused_requests_may_be_retried(app, personas, api, issue):
    sara = Api(app, issue(personas.colleague))
    assert problem(api.post("/incidents", {"title": ""}, Idempotency_Key="k"), 422)
    assert api.post("/incidents", {"title": ""}, Idempotency_Key="k").status_code == 422
    assert api.post("/incidents", {"title": "A"}, Idempotency_Key="k2").status_code == 201
    assert sara.post("/incidents", {"title": "A"}, Idempotency_Key="k2").status_code == 201
    assert Incident.select().count() == 2
    assert problem(api.post("/incidents", {"title": "A"}, Idempotency_Key="x" * 201), 400)


def test_concurrent_retries_with_one_key_create_one_incident(app, personas, issue):
    secret = issue(personas.owner, rate_limit=100)
    answers: list[Any] = []
    start = threading.Barrier(8)

    def one() -> None:
        client = Api(app, secret)
        start.wait()
        response = client.post("/incidents", {"title": "Storage array degraded"},
                               Idempotency_Key="same-key")
        answers.append((response.status_code, response.get_json().get("id")))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Incident.select().count() == 1
    assert {a for a in answers} == {(201, Incident.get().id)}
    assert TimelineEntry.select().count() == 1


# -- lists -----------------------------------------------------------------------------------------


def test_incident_list_pages_visit_every_match_once_with_queue_filters(app, personas, api, log_incident):
    made = [log_incident(title=f"Printer {n}", impact="high" if n % 2 else "low") for n in range(7)]
    log_incident(title="Elsewhere", actor=personas.assignee)
    seen, cursor = [], None
    while True:
        query = "?queue=owned&sort=oldest&limit=2&priority=2" + (f"&after={cursor}" if cursor else "")
        page = api.get("/incidents" + query).get_json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    expected = [i.id for i in made if fresh(i.id).priority == 2]
    assert seen == expected and len(expected) == 3
    searched = api.get("/incidents?q=printer 3").get_json()["items"]
    assert [i["title"] for i in searched] == ["Printer 3"]


def test_a_page_link_from_another_sort_is_a_400_not_a_page_from_an_arbitrary_row(
        app, personas, api, log_incident, frozen_clock):
    for n in range(4):
        log_incident(title=f"Printer {n}")
        frozen_clock.advance(minutes=1)
    cursor = api.get("/incidents?sort=newest&limit=2").get_json()["next_cursor"]
    assert len(api.get(f"/incidents?sort=newest&limit=2&after={cursor}").get_json()["items"]) == 2
    for sort in ("oldest", "updated", "due", "priority"):
        refused = problem(api.get(f"/incidents?sort={sort}&limit=2&after={cursor}"), 400)
        assert refused["field"] == "after" and "start again" in refused["detail"]


@pytest.mark.parametrize("query,field", [
    ("sort=subject;DROP TABLE incident", "sort"), ("sort=__class__", "sort"), ("status=open", "status"),
    ("priority=٣", "priority"), ("limit=0", "limit"), ("limit=-1", "limit"), ("limit=1e9", "limit"),
    ("limit=101", "limit"), ("after=bm9wZQ", "after"), ("queue=everything", "queue"),
    ("team=abc", "team"), ("order=asc", "order"), ("q=" + "x" * 201, "q"),
])
def test_bad_sort_filter_or_page_is_a_400_naming_it(app, personas, api, log_incident, query, field):
    log_incident()
    assert problem(api.get("/incidents?" + query), 400)["field"] == field


def test_timeline_sla_and_directory_reads(app, personas, api, log_incident, contact_factory):
    incident = log_incident()
    for n in range(3):
        api.post(f"/incidents/{incident.id}/comments", {"body": f"note {n}"})
    first = api.get(f"/incidents/{incident.id}/timeline?limit=2").get_json()
    rest = api.get(f"/incidents/{incident.id}/timeline?after={first['next_cursor']}").get_json()
    bodies = [e["body"] for e in first["items"] + rest["items"]]
    assert bodies[1:] == ["note 0", "note 1", "note 2"] and rest["next_cursor"] is None
    assert api.get(f"/incidents/{incident.id}/sla").get_json() == {"clocks": []}  # no SLA plugin here
    teams = {t["name"]: t for t in api.get("/teams").get_json()["items"]}
    assert {m["name"] for m in teams["Database"]["members"]} == {"Priya Raman", "Mateo Silva"}
    agents = api.get("/agents?limit=100").get_json()["items"]
    assert {"email", "password_hash"}.isdisjoint(agents[0]) and len(agents) == 7
    contact_factory(name="Ann Customer", organisation="Acme Ltd")
    found = api.get("/contacts?q=ann").get_json()["items"]
    assert [(c["name"], c["organisation"]["name"]) for c in found] == [("Ann Customer", "Acme Ltd")]
    Category.create(name="Hardware")
    assert [c["name"] for c in api.get("/categories").get_json()["items"]] == ["Hardware"]
    assert api.get("/services").get_json()["items"] == []


def test_the_timeline_names_the_customer_who_wrote_a_message(app, personas, api, log_incident,
                                                             contact_factory):
    """The page shows who wrote a customer's message; the API said only kind 'customer' with
    no actor, so a script copying the conversation elsewhere could not attribute it."""
    from helpdesk import customers

    ann = contact_factory(name="Ann Customer", email="ann@example.org")
    incident = log_incident(requester=ann)
    customers.post_message(app.extensions["helpdesk"], incident.id, ann, "Still broken", via="portal",
                           seen=True)
    api.post(f"/incidents/{incident.id}/comments", {"body": "Looking", "visibility": "public"})
    entries = {e["kind"]: e for e in api.get(f"/incidents/{incident.id}/timeline").get_json()["items"]}
    assert entries["customer"]["contact"] == {"id": ann.id, "name": "Ann Customer"}
    assert entries["customer"]["actor"] is None and entries["customer"]["body"] == "Still broken"
    assert entries["reply"]["contact"] is None and entries["reply"]["actor"]["id"] == personas.owner.id


def test_deliveries_need_the_admin_scope_and_a_current_admin(app, personas, issue):
    admin_token = issue(personas.admin, ["admin"])
    assert Api(app, admin_token).get("/deliveries").status_code == 200
    Agent.update(role="agent").where(Agent.id == personas.admin.id).execute()
    assert "is for admins" in problem(Api(app, admin_token).get("/deliveries"), 403)["detail"]


# -- the OpenAPI document ---------------------------------------------------------------------------


def _documented(app) -> dict[str, Any]:
    response = app.test_client().get(f"{API}/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_openapi_document_lists_every_api_route_and_nothing_else(app):
    doc = _documented(app)
    assert doc["openapi"] == "3.1.0"
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(API):
            path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
            routed |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == routed
    operation_ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            names = {p["name"] for p in op.get("parameters", [])}
            assert set(re.findall(r"{(\w+)}", path)) <= names, path
            if method in {"post", "patch"} and op["operationId"] not in {"take"}:
                assert "requestBody" in op, (path, method)
            if op["security"]:
                assert {"401", "403", "429"} <= set(op["responses"])


def _conforms(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """Differences between a value and a (documented subset of) JSON Schema."""
    kinds = schema.get("type")
    if kinds is None:
        return []
    kinds = kinds if isinstance(kinds, list) else [kinds]
    types = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float),
             "boolean": bool, "null": type(None)}
    if not any(isinstance(value, types[k]) and not (k in {"integer", "number"} and isinstance(value, bool))
               for k in kinds):
        return [f"{where}: {value!r} is not {kinds}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not in {schema['enum']}"]
    errors = []
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errors += [f"{where}.{k}: undocumented" for k in value if props and k not in props]
        for key, sub in props.items():
            if key in value:
                errors += _conforms(value[key], sub, f"{where}.{key}")
    if isinstance(value, list):
        for index, item in enumerate(value):
            errors += _conforms(item, schema.get("items", {}), f"{where}[{index}]")
    return errors


def test_responses_match_the_documented_schemas(app, personas, issue, log_incident, contact_factory):
    """Every read operation and the main changes answer what the document says they answer."""
    api = Api(app, issue(personas.admin, ["read", "write", "admin"]))
    incident = log_incident(description="<b>x</b>")
    contact_factory(organisation="Acme Ltd")
    api.post(f"/incidents/{incident.id}/comments", {"body": "hello"})
    doc = _documented(app)
    calls = [("get", "/incidents", None), ("get", "/incidents/{incident_id}", None),
             ("get", "/incidents/{incident_id}/timeline", None),
             ("get", "/incidents/{incident_id}/sla", None),
             ("get", "/teams", None), ("get", "/agents", None), ("get", "/contacts", None),
             ("get", "/categories", None), ("get", "/services", None), ("get", "/deliveries", None),
             ("post", "/incidents", {"title": "New"}),
             ("post", "/incidents/{incident_id}/comments", {"body": "more"}),
             ("post", "/incidents/{incident_id}/status", {"status": "in_progress"}),
             ("post", "/incidents/{incident_id}/status", {"status": "in_progress"})]  # 2nd: 412
    for method, path, body in calls:
        response = api.call(method.upper(), path.replace("{incident_id}", str(incident.id)), body,
                            If_Match='"1"')
        documented = doc["paths"][API + path][method]["responses"]
        assert str(response.status_code) in documented, (path, response.status_code)
        content = documented[str(response.status_code)].get("content", {})
        assert response.mimetype in content, (path, response.mimetype)
        schema = content[response.mimetype]["schema"]
        if "$ref" in schema:
            schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        assert _conforms(response.get_json(), schema) == [], path


def test_a_stored_answer_replays_for_a_day_then_the_key_is_free_again(app, personas, api,
                                                                       frozen_clock):
    assert api.post("/incidents", {"title": "A"}, Idempotency_Key="daily").status_code == 201
    frozen_clock.advance(hours=23)
    assert api.post("/incidents", {"title": "A"}, Idempotency_Key="daily").headers.get(
        "Idempotent-Replayed") == "true"
    frozen_clock.advance(hours=2)
    assert "Idempotent-Replayed" not in api.post("/incidents", {"title": "A"},
                                                 Idempotency_Key="daily").headers
    assert Incident.select().count() == 2


def test_the_timeline_cannot_be_edited_or_deleted_through_the_api(app, personas, api, log_incident):
    incident = log_incident()
    api.post(f"/incidents/{incident.id}/comments", {"body": "original"})
    before = [(e.id, e.body, e.actor_id, e.at) for e in TimelineEntry.select()]
    for method in ("PUT", "PATCH", "DELETE"):
        for path in (f"/incidents/{incident.id}/timeline", f"/incidents/{incident.id}/comments"):
            assert problem(api.call(method, path, {"body": "forged", "author_id": 99}), 405)
    assert problem(api.call("DELETE", f"/incidents/{incident.id}"), 405)
    assert [(e.id, e.body, e.actor_id, e.at) for e in TimelineEntry.select()] == before


def test_refused_tokens_are_logged_without_the_secret(app, personas, issue, caplog):
    reader = issue(personas.owner, ["read"], name="reader")
    with caplog.at_level("WARNING", logger="helpdesk.api.http"):
        Api(app, "hdp_not-a-real-token-at-all").get("/incidents")
        Api(app, reader).post("/incidents", {"title": "x"})
    assert "starting 'hdp_not-'" in caplog.text and "not-a-real-token-at-all" not in caplog.text
    assert "lacks scope 'write'" in caplog.text and reader not in caplog.text


def test_the_reference_page_lists_every_operation_from_the_document(app, personas):
    page = AgentClient(app, personas.owner).get("/api/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    doc = _documented(app)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert f'id="{op["operationId"]}"' in html and f"{method.upper()} {path}" in html
    assert "<script" not in html.split("</header>", 1)[-1].split("<footer", 1)[0]
    assert "created_at" not in html  # read-only fields are not offered as input
    assert app.test_client().get("/api/docs").status_code == 302  # agents only


def test_a_page_of_incidents_costs_the_same_queries_whatever_its_size(app, personas, api, log_incident,
                                                                      count_queries, frozen_clock):
    category, service = Category.create(name="Hardware"), Service.create(name="Mail")
    for n in range(12):
        log_incident(title=f"Printer {n}", category=category if n % 2 else None, service=service)
    api.get("/teams")  # the token's first request of the minute starts its rate window
    counts = []
    for size in (2, 12):
        count_queries.queries.clear()
        page = api.get(f"/incidents?limit={size}").get_json()
        assert len(page["items"]) == size
        assert {i["service"]["name"] for i in page["items"]} == {"Mail"}
        counts.append(len(count_queries.queries))
    assert counts[0] == counts[1]


@pytest.mark.parametrize("kind", ["parent", "duplicate_of"])
def test_linking_to_an_incident_that_does_not_exist_is_a_422_naming_other_id(app, personas, api,
                                                                             log_incident, kind):
    """The incident in the path exists: a 404 would tell the client it is that one that is gone."""
    incident = log_incident()
    refused = problem(api.post(f"/incidents/{incident.id}/links", {"kind": kind, "other_id": 999},
                               If_Match='"1"'), 422)
    assert refused["field"] == "other_id" and "INC-999" in refused["detail"]
    assert (fresh(incident.id).version, fresh(incident.id).status) == (1, "new")
