"""Every route × role × method (A9, C1, C2): one table says what each cell must answer.

The table is the route inventory: a route added to the app (or by a plugin) without a row
here fails ``test_the_table_covers_every_route``. Cells:

* ``LOGIN`` — anonymous: redirected to the login page (nothing runs);
* ``403`` — logged in without the role; ``405`` — the method is not allowed (a GET on an
  action never changes anything);
* ``OK`` — the role may use it: any answer but a login redirect, 401, 403, 405 or 5xx
  (an empty form may well be a 400/422).

Installed plugins are loaded, and a throw-away plugin adds routes of each kind, including
one that declares no audience.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Blueprint, Flask

from helpdesk import hookimpl
from helpdesk.models import Agent, Delivery, Incident, Notice, TimelineEntry
from helpdesk.records import AdminPage
from helpdesk.security import access
from helpdesk.testing import AgentClient, Personas

LOGIN, OK = "login", "ok"
ROLES = ("anonymous", "agent", "lead", "admin")

# -- a plugin with routes of every kind -------------------------------------------------------

pages = Blueprint("matrix_plugin", __name__, url_prefix="/matrix")
admin_page = Blueprint("matrix_admin", __name__)


@pages.route("/agent", methods=["GET", "POST"])
@access("agent")
def plugin_agent_page() -> str:
    return "agent page"


@pages.post("/lead")
@access("lead")
def plugin_lead_action() -> str:
    return "lead action"


@pages.get("/public")
@access("public")
def plugin_public_page() -> str:
    return "public page"


@pages.get("/undeclared")
def plugin_undeclared() -> str:  # no @access: must never answer
    return "secret"


@admin_page.get("/")
@access("agent")  # an admin page is admin-only whatever the plugin declared
def plugin_admin_page() -> str:
    return "admin page"


class MatrixPlugin:
    @hookimpl
    def helpdesk_blueprints(self) -> list[Blueprint]:
        return [pages]

    @hookimpl
    def helpdesk_admin_pages(self) -> list[AdminPage]:
        return [AdminPage("matrix", "Matrix", admin_page)]


def cells(anonymous: Any, agent: Any, lead: Any, admin: Any) -> dict[str, Any]:
    return dict(zip(ROLES, (anonymous, agent, lead, admin), strict=True))


AGENT_ONLY = cells(LOGIN, OK, OK, OK)
LEAD_ONLY = cells(LOGIN, 403, OK, OK)
ADMIN_ONLY = cells(LOGIN, 403, 403, OK)
PUBLIC = cells(OK, OK, OK, OK)
NOT_ALLOWED = cells(405, 405, 405, 405)
TOKEN_ONLY = cells(401, 401, 401, 401)  # the API: a bearer token or nothing, whatever the session
CUSTOMER_ONLY = cells(302, 302, 302, 302)  # the portal: to its own sign-in; an agent is no customer

# (rule, method) -> expected answer per role. GET on every POST-only rule is 405.
EXPECTED: dict[tuple[str, str], dict[str, Any]] = {
    ("/", "GET"): AGENT_ONLY,
    ("/healthz", "GET"): PUBLIC,
    ("/readyz", "GET"): PUBLIC,
    ("/login", "GET"): PUBLIC,
    ("/login", "POST"): cells(401, OK, OK, OK),  # an empty form is a failed login
    ("/logout", "POST"): cells(LOGIN, LOGIN, LOGIN, LOGIN),  # logged out, back to the login page
    ("/profile", "GET"): AGENT_ONLY,
    ("/session/csrf", "GET"): AGENT_ONLY,  # a page opened before logging in again, elsewhere
    ("/profile", "POST"): AGENT_ONLY,
    ("/profile/sessions/end-others", "POST"): AGENT_ONLY,
    ("/queues/<name>", "GET"): AGENT_ONLY,
    ("/queue-nav", "GET"): AGENT_ONLY,
    ("/queue-density", "POST"): AGENT_ONLY,
    ("/queue-bulk", "POST"): AGENT_ONLY,
    ("/views", "POST"): AGENT_ONLY,
    ("/views/<int:view_id>", "POST"): AGENT_ONLY,
    ("/views/<int:view_id>/delete", "POST"): AGENT_ONLY,
    ("/notices/", "GET"): AGENT_ONLY,
    ("/notices/bell", "GET"): AGENT_ONLY,
    ("/notices/read", "POST"): AGENT_ONLY,
    ("/incidents/new", "GET"): AGENT_ONLY,
    ("/incidents/new", "POST"): AGENT_ONLY,
    **{(f"/incidents/new/{part}", "GET"): AGENT_ONLY
       for part in ("priority", "requesters", "open-incidents", "agents")},
    ("/incidents/<int:incident_id>/macros/<int:macro_id>", "GET"): AGENT_ONLY,  # 404: no such macro
    ("/incidents/<int:incident_id>/macro", "POST"): AGENT_ONLY,
    ("/macros/", "GET"): AGENT_ONLY,
    ("/macros/new", "GET"): AGENT_ONLY,
    ("/macros/new", "POST"): AGENT_ONLY,
    ("/macros/<int:macro_id>", "GET"): AGENT_ONLY,  # 404: no such macro
    ("/macros/<int:macro_id>", "POST"): AGENT_ONLY,
    ("/macros/<int:macro_id>/delete", "POST"): AGENT_ONLY,
    ("/incidents/<int:incident_id>", "GET"): AGENT_ONLY,
    **{(f"/incidents/<int:incident_id>/{action}", "POST"): AGENT_ONLY
       for action in ("assignee", "comments", "details", "links", "owner", "priority", "status", "take",
                      "take-work")},
    ("/admin/", "GET"): ADMIN_ONLY,
    ("/admin/agents", "GET"): ADMIN_ONLY,
    ("/admin/agents", "POST"): ADMIN_ONLY,
    ("/admin/agents/<int:agent_id>", "GET"): ADMIN_ONLY,
    ("/admin/agents/<int:agent_id>", "POST"): ADMIN_ONLY,
    ("/admin/catalogue/<kind>", "GET"): ADMIN_ONLY,
    ("/admin/catalogue/<kind>", "POST"): ADMIN_ONLY,
    ("/admin/channels/<name>/test", "POST"): ADMIN_ONLY,  # F5
    ("/admin/contacts", "GET"): ADMIN_ONLY,
    ("/admin/contacts", "POST"): ADMIN_ONLY,
    ("/admin/deliveries", "GET"): ADMIN_ONLY,
    ("/admin/deliveries/<int:delivery_id>/retry", "POST"): ADMIN_ONLY,
    ("/admin/notifications", "GET"): ADMIN_ONLY,
    ("/admin/notifications", "POST"): ADMIN_ONLY,
    ("/admin/plugins", "GET"): ADMIN_ONLY,
    ("/admin/plugins/events/<int:event_id>/retry", "POST"): ADMIN_ONLY,
    ("/admin/sla", "GET"): LEAD_ONLY,  # leads view business hours and targets; they apply to every
    ("/admin/sla/calendar", "POST"): ADMIN_ONLY,  # team, so only admins change them (403 naming
    ("/admin/sla/targets", "POST"): ADMIN_ONLY,  # the rule)
    # Where every message goes: admins only (whoever sets it reads customers' sign-in links).
    ("/admin/channels", "GET"): ADMIN_ONLY,
    ("/admin/channels/<name>", "POST"): ADMIN_ONLY,
    ("/admin/changes", "GET"): ADMIN_ONLY,
    ("/admin/teams/<int:team_id>", "GET"): ADMIN_ONLY,
    ("/admin/teams/<int:team_id>", "POST"): ADMIN_ONLY,
    ("/admin/contacts/<int:contact_id>", "GET"): ADMIN_ONLY,
    ("/admin/contacts/<int:contact_id>", "POST"): ADMIN_ONLY,
    ("/admin/teams", "GET"): ADMIN_ONLY,
    ("/admin/teams", "POST"): ADMIN_ONLY,
    ("/admin/mail", "GET"): ADMIN_ONLY,
    ("/admin/mail/<int:mail_id>/handled", "POST"): ADMIN_ONLY,
    ("/admin/mail/<int:mail_id>/receive-again", "POST"): ADMIN_ONLY,
    ("/admin/tokens", "GET"): ADMIN_ONLY,
    ("/admin/tokens", "POST"): ADMIN_ONLY,
    ("/admin/tokens/revoke", "POST"): ADMIN_ONLY,
    ("/api/docs", "GET"): AGENT_ONLY,
    ("/api/v1/openapi.json", "GET"): PUBLIC,
    **{(f"/api/v1/{path}", "GET"): TOKEN_ONLY for path in (
        "agents", "categories", "contacts", "deliveries", "incidents", "macros", "services", "teams",
        "incidents/<int:incident_id>", "incidents/<int:incident_id>/sla",
        "incidents/<int:incident_id>/timeline", "incidents/<int:incident_id>/hand-back")},
    **{(f"/api/v1/{path}", "POST"): TOKEN_ONLY for path in (
        "alerts", "incidents", "incidents/<int:incident_id>/assignee",
        "incidents/<int:incident_id>/comments", "incidents/<int:incident_id>/links",
        "incidents/<int:incident_id>/owner", "incidents/<int:incident_id>/priority",
        "incidents/<int:incident_id>/status", "incidents/<int:incident_id>/take",
        "incidents/<int:incident_id>/hand-back", "incidents/<int:incident_id>/hand-back/accept",
        "incidents/<int:incident_id>/hand-back/reject", "incidents/<int:incident_id>/macro")},
    ("/api/v1/incidents/<int:incident_id>", "PATCH"): TOKEN_ONLY,
    ("/api/v1/alerts/<source>", "POST"): TOKEN_ONLY,
    ("/attachments/<int:attachment_id>", "GET"): AGENT_ONLY,
    ("/metrics", "GET"): TOKEN_ONLY,
    ("/escalation", "GET"): LEAD_ONLY,
    ("/escalation/<name>.toml", "GET"): LEAD_ONLY,
    ("/escalation/delete", "POST"): LEAD_ONLY,
    ("/escalation/edit", "GET"): LEAD_ONLY,
    ("/escalation/edit", "POST"): LEAD_ONLY,
    ("/escalation/import", "POST"): LEAD_ONLY,
    ("/escalation/simulate", "GET"): LEAD_ONLY,
    ("/escalation/simulate", "POST"): LEAD_ONLY,
    ("/incidents/<int:incident_id>/acknowledge", "POST"): AGENT_ONLY,
    ("/incidents/<int:incident_id>/escalate", "POST"): AGENT_ONLY,
    **{(f"/incidents/<int:incident_id>/{action}", "POST"): AGENT_ONLY
       for action in ("hand-back", "hand-back/accept", "hand-back/reject")},
    ("/teams/on-call", "GET"): LEAD_ONLY,
    ("/teams/<int:team_id>/on-call", "GET"): LEAD_ONLY,  # leads of that team (else 404) and admins
    ("/teams/<int:team_id>/on-call", "POST"): LEAD_ONLY,
    ("/mail/<int:mail_id>", "GET"): AGENT_ONLY,
    ("/mail/<int:mail_id>/original.eml", "GET"): AGENT_ONLY,
    ("/portal/", "GET"): CUSTOMER_ONLY,
    ("/portal/attachments/<int:attachment_id>", "GET"): CUSTOMER_ONLY,
    ("/portal/incidents/<int:incident_id>", "GET"): CUSTOMER_ONLY,
    ("/portal/incidents/<int:incident_id>/confirm", "POST"): CUSTOMER_ONLY,
    ("/portal/incidents/<int:incident_id>/reply", "POST"): CUSTOMER_ONLY,
    ("/portal/incidents/<int:incident_id>/rating", "POST"): CUSTOMER_ONLY,
    ("/portal/password", "GET"): CUSTOMER_ONLY,
    ("/portal/password", "POST"): CUSTOMER_ONLY,
    ("/portal/new", "GET"): CUSTOMER_ONLY,
    ("/portal/new", "POST"): CUSTOMER_ONLY,
    ("/portal/sign-in", "GET"): PUBLIC,
    ("/portal/sign-in", "POST"): PUBLIC,
    ("/portal/sign-in/<token>", "GET"): PUBLIC,
    ("/portal/password-sign-in", "POST"): cells(401, 401, 401, 401),  # no such address
    ("/portal/sign-in/<token>", "POST"): cells(400, 400, 400, 400),  # an unknown link
    ("/portal/sign-out", "POST"): CUSTOMER_ONLY,
    ("/profile/tokens", "GET"): AGENT_ONLY,
    ("/profile/tokens", "POST"): AGENT_ONLY,
    ("/profile/tokens/revoke", "POST"): AGENT_ONLY,
    ("/queues/<name>/export", "GET"): AGENT_ONLY,
    ("/reports", "GET"): AGENT_ONLY,
    ("/reports/compliance.csv", "GET"): AGENT_ONLY,
    ("/reports/mine", "GET"): AGENT_ONLY,
    ("/reports/backlog", "GET"): AGENT_ONLY,
    ("/reports/escalations", "GET"): AGENT_ONLY,
    ("/reports/export/<name>.<fmt>", "GET"): AGENT_ONLY,
    ("/search", "GET"): AGENT_ONLY,
    ("/search/export", "GET"): cells(LOGIN, 400, 400, 400),  # no query given
    ("/static/<path:filename>", "GET"): PUBLIC,
    ("/plugins/<name>/static/<path:filename>", "GET"): cells(404, 404, 404, 404),  # no such file
    # the throw-away plugin's routes
    ("/matrix/agent", "GET"): AGENT_ONLY,
    ("/matrix/agent", "POST"): AGENT_ONLY,
    ("/matrix/lead", "POST"): LEAD_ONLY,
    ("/matrix/public", "GET"): PUBLIC,
    ("/matrix/undeclared", "GET"): cells(403, 403, 403, 403),
    ("/admin/plugins/matrix/", "GET"): ADMIN_ONLY,
}


@pytest.fixture
def helpdesk_plugins() -> list[Any]:
    return [MatrixPlugin()]


@pytest.fixture
def helpdesk_load_entry_points() -> bool:
    """Every installed plugin too (the bundled ones, the example): their routes are inventoried."""
    return True


@pytest.fixture
def url_values(personas: Personas, incident_factory: Any) -> dict[str, Any]:
    incident = incident_factory()
    delivery = Delivery.select().first()
    return {"incident_id": incident.id, "agent_id": personas.colleague.id, "name": "open",
            "kind": "categories", "filename": "helpdesk.css",
            "delivery_id": delivery.id if delivery else 1, "event_id": 1, "mail_id": 1,
            "attachment_id": 1, "token": "unknown-link", "source": "generic", "macro_id": 1,
            "team_id": personas.colleague.memberships[0].team_id, "contact_id": incident.requester_id or 1,
            "view_id": 1, "fmt": "csv"}


def rules(app: Flask) -> dict[tuple[str, str], Any]:
    return {(rule.rule, method): rule for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def build(rule: Any, values: dict[str, Any]) -> str:
    path = rule.rule
    for name in rule.arguments:
        value = values[name]
        if rule.endpoint == "admin.test_channel":
            value = "inapp"
        if rule.endpoint == "reports.export" and name == "name":
            value = "compliance"
        path = path.replace(f"<int:{name}>", str(value)).replace(f"<path:{name}>", str(value))
        path = path.replace(f"<{name}>", str(value))
    return path


def test_the_table_covers_every_route(app: Flask) -> None:
    assert set(rules(app)) == set(EXPECTED)


def check(response: Any, expected: Any) -> None:
    status = response.status_code
    if expected == LOGIN:
        assert status in {302, 401} and "/login" in (response.headers.get("Location", "")
                                                      + response.headers.get("HX-Redirect", ""))
    elif expected == OK:
        assert status not in {401, 403, 405} and status < 500
        assert "/login" not in response.headers.get("Location", "")
    else:
        assert status == expected


@pytest.mark.parametrize("role", ROLES)
def test_every_route_answers_each_role_as_the_table_says(
        app: Flask, personas: Personas, url_values: dict[str, Any], role: str) -> None:
    who = {"anonymous": None, "agent": personas.assignee, "lead": personas.db_lead, "admin": personas.admin}
    found = rules(app)
    for (path, method), expected in sorted(EXPECTED.items()):
        client = AgentClient(app, who[role])  # fresh: a logout or a refused session stays in its cell
        url = build(found[(path, method)], url_values)
        if method == "GET":
            response = client.get(url)
        else:
            response = client.http.open(url, method=method, data={"csrf_token": client.csrf_token()})
        response.close()  # static files are streamed
        try:
            check(response, expected[role])
        except AssertionError:
            where = response.headers.get("Location", "")
            raise AssertionError(f"{method} {url} as {role}: {response.status_code} {where}, "
                                 f"expected {expected[role]}") from None
        if method == "POST" and (path, "GET") not in EXPECTED:  # C2: GET on an action is refused
            assert client.get(url).status_code == 405, url


def snapshot() -> tuple[Any, ...]:
    return (list(Incident.select().order_by(Incident.id).tuples()), TimelineEntry.select().count(),
            Delivery.select().count(), Notice.select().count(),
            list(Agent.select(Agent.id, Agent.role, Agent.active, Agent.password_hash).tuples()))


FORGERIES = {
    "no token": lambda client, other: {"data": {}},
    "another session's token": lambda client, other: {"data": {"csrf_token": other.csrf_token()}},
    "HX-Request only": lambda client, other: {"data": {}, "headers": {"HX-Request": "true",
                                                                      "Origin": "https://evil.example"}},
    "text/plain body": lambda client, other: {"data": f"csrf_token={other.csrf_token()}",
                                              "content_type": "text/plain"},
}


@pytest.mark.parametrize("forgery", FORGERIES, ids=FORGERIES)
def test_c1_every_state_changing_route_refuses_a_cross_site_post(
        app: Flask, personas: Personas, url_values: dict[str, Any], forgery: str) -> None:
    """As an admin (who may do everything), from a page on another site."""
    admin, other = AgentClient(app, personas.admin), AgentClient(app, personas.colleague)
    found = rules(app)
    before = snapshot()
    for (path, method) in sorted(EXPECTED):
        if method not in {"POST", "PATCH"} or path.startswith("/matrix") or path == "/login":
            continue
        url = build(found[(path, method)], url_values)
        forged = {"headers": {"Origin": "https://evil.example"}, **FORGERIES[forgery](admin, other)}
        response = admin.http.open(url, method=method, **forged)
        # The API ignores cookies, so a forged request carries no credential at all (401).
        refused = {401} if path.startswith("/api/v1/") else {400, 403}
        assert response.status_code in refused, (url, response.status_code)
    assert snapshot() == before
    assert admin.get("/profile").status_code == 200, "the admin is still logged in"
