"""A plugin adds API operations (``helpdesk_api_endpoints``): same tokens, scopes, body
checks, problem details and OpenAPI document as the core operations."""

from __future__ import annotations

from typing import Any

import pytest

from helpdesk import DomainError, Incident, NotFound, PermissionDenied, hookimpl, incidents
from helpdesk.api import tokens
from helpdesk.models import TimelineEntry
from helpdesk.plugins import PluginError
from helpdesk.records import ApiEndpoint
from helpdesk.testing import AgentClient, make_app

PAGE = {"type": "object", "required": ["message"], "properties": {
    "message": {"type": "string", "minLength": 1, "maxLength": 100}}}


def who_is_on_call(ctx: Any, agent: Any, data: Any) -> dict[str, Any]:
    return {"on_call": "Priya Raman", "asked_by": agent.display_name}


def page_on_call(ctx: Any, agent: Any, data: dict[str, Any], incident_id: int) -> Any:
    if data["message"].startswith("!"):
        raise DomainError("Pages cannot start with '!'.")
    if data["message"] == "crash":
        raise RuntimeError("pager gateway client bug")
    note = incidents.add_comment(ctx, incident_id, agent, f"Paged on-call: {data['message']}",
                                 public=False)
    return 201, {"entry": note.id}


def incident_pager(ctx: Any, agent: Any, data: Any, incident_id: int) -> dict[str, Any]:
    """Who gets paged about an incident: only its owner may ask (a plugin's own rule)."""
    incident = Incident.get_or_none(Incident.id == incident_id)
    if incident is None:
        raise NotFound(f"There is no incident {incident_id}.")
    if incident.owner_agent_id != agent.id:
        raise PermissionDenied(f"Only the owner of {incident.reference} may see who is paged.")
    return {"pager": "Priya Raman"}


class OnCall:
    @hookimpl
    def helpdesk_api_endpoints(self, ctx: Any) -> list[ApiEndpoint]:
        return [
            ApiEndpoint("oncall", "GET", "read", "Who is on call", who_is_on_call,
                        response={"type": "object", "properties": {"on_call": {"type": "string"}}}),
            ApiEndpoint("oncall", "POST", "write", "Page the on-call engineer about an incident",
                        page_on_call, rule="/<int:incident_id>/page", body=PAGE),
            ApiEndpoint("oncall", "GET", "read", "Who is paged about an incident", incident_pager,
                        rule="/<int:incident_id>/pager"),
        ]


@pytest.fixture
def helpdesk_plugins() -> list[Any]:
    return [OnCall()]


def bearer(app, agent, scopes) -> dict[str, str]:
    with app.app_context():
        return {"Authorization": f"Bearer {tokens.create(agent, 'plugin', scopes).secret}"}


def test_a_plugin_operation_is_served_with_the_apis_token_check(app, personas, log_incident):
    incident = log_incident()
    client = app.test_client()
    reader, writer = bearer(app, personas.owner, ["read"]), bearer(app, personas.owner, ["write"])
    assert client.get("/api/v1/plugins/oncall", headers=reader).get_json() == {
        "on_call": "Priya Raman", "asked_by": "John Carter"}
    assert client.get("/api/v1/plugins/oncall").status_code == 401
    url = f"/api/v1/plugins/oncall/{incident.id}/page"
    assert client.post(url, json={"message": "db"}, headers=reader).status_code == 403
    sent = client.post(url, json={"message": "db down"}, headers=writer)
    assert sent.status_code == 201
    note = TimelineEntry.get_by_id(sent.get_json()["entry"])
    assert (note.body, note.actor_id) == ("Paged on-call: db down", personas.owner.id)


def test_a_plugin_operation_gets_the_same_body_checks_and_problems(app, personas, log_incident):
    incident = log_incident()
    client = app.test_client()
    writer = bearer(app, personas.owner, ["write"])
    url = f"/api/v1/plugins/oncall/{incident.id}/page"
    unknown = client.post(url, json={"message": "x", "author_id": 1}, headers=writer)
    assert unknown.status_code == 422 and unknown.get_json()["fields"] == ["author_id"]
    refused = client.post(url, json={"message": "!now"}, headers=writer)
    assert (refused.status_code, refused.mimetype) == (422, "application/problem+json")
    assert refused.get_json()["detail"] == "Pages cannot start with '!'."
    # a logged-in browser cannot use it: cookies do not authenticate the API
    assert AgentClient(app, personas.owner).post(url, {"message": "x"}).status_code == 401
    assert TimelineEntry.select().where(TimelineEntry.kind == "note").count() == 0


def test_a_plugin_operation_answers_not_found_and_forbidden_as_problems(app, personas, log_incident):
    """NotFound and PermissionDenied from the public face: the API's own 404 and 403 problem
    details, with the plugin's message, and no failure recorded (they are answers, not bugs)."""
    from helpdesk.models import PluginFailure

    incident = log_incident()
    client = app.test_client()
    owner, other = bearer(app, personas.owner, ["read"]), bearer(app, personas.assignee, ["read"])
    assert client.get(f"/api/v1/plugins/oncall/{incident.id}/pager", headers=owner).get_json() == {
        "pager": "Priya Raman"}
    missing = client.get(f"/api/v1/plugins/oncall/{incident.id + 100}/pager", headers=owner)
    assert (missing.status_code, missing.mimetype) == (404, "application/problem+json")
    assert missing.get_json()["title"] == "Not found"
    assert missing.get_json()["detail"] == f"There is no incident {incident.id + 100}."
    refused = client.get(f"/api/v1/plugins/oncall/{incident.id}/pager", headers=other)
    assert (refused.status_code, refused.mimetype) == (403, "application/problem+json")
    assert refused.get_json()["title"] == "Forbidden"
    assert refused.get_json()["detail"] == f"Only the owner of {incident.reference} may see who is paged."
    assert PluginFailure.select().count() == 0


def test_a_failing_plugin_operation_is_a_500_and_shown_to_admins(app, personas, log_incident):
    from helpdesk.models import PluginFailure

    incident = log_incident()
    client = app.test_client()
    writer = bearer(app, personas.owner, ["write"])
    url = f"/api/v1/plugins/oncall/{incident.id}/page"
    assert client.post(url, json={"message": "!now"}, headers=writer).status_code == 422
    assert PluginFailure.select().count() == 0  # a refusal is the operation's answer, not a bug
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answered as in production, not raised in the test
    crashed = client.post(url, json={"message": "crash"}, headers=writer)
    assert crashed.status_code == 500 and crashed.mimetype == "application/problem+json"
    failure = PluginFailure.get()
    assert "POST /plugins/oncall/<int:incident_id>/page" in failure.hook
    assert "pager gateway client bug" in failure.error
    assert "pager gateway client bug" in AgentClient(app, personas.admin).get("/admin/plugins").get_data(
        as_text=True)


def test_plugin_operations_are_in_the_openapi_document(app):
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    page = doc["paths"]["/api/v1/plugins/oncall/{incident_id}/page"]["post"]
    assert page["x-scope"] == "write" and page["requestBody"]["content"]["application/json"][
        "schema"]["properties"] == PAGE["properties"]
    assert doc["paths"]["/api/v1/plugins/oncall"]["get"]["summary"] == "Who is on call"


@pytest.mark.parametrize("record,message", [
    (ApiEndpoint("On Call", "GET", "read", "x", who_is_on_call), "the name takes"),
    (ApiEndpoint("oncall", "GET", "alerts", "x", who_is_on_call), "scope one of"),
    (ApiEndpoint("oncall", "TRACE", "read", "x", who_is_on_call), "method is one of"),
    (ApiEndpoint("oncall", "GET", "read", "x", who_is_on_call, rule="/../admin"), "the rule"),
    ({"name": "oncall", "method": "GET"}, "not a helpdesk.records.ApiEndpoint"),
])
def test_a_malformed_plugin_operation_stops_start_up_naming_the_plugin(tmp_path, record, message):
    class Broken:
        @hookimpl
        def helpdesk_api_endpoints(self, ctx: Any) -> list[ApiEndpoint]:
            return [record]

    with pytest.raises(PluginError, match=message) as error:
        make_app(tmp_path, [Broken()])
    assert "plugin 'Broken'" in str(error.value)
    assert "HELPDESK_DISABLED_PLUGINS=Broken" in str(error.value)


def test_two_plugins_answering_one_api_address_stop_start_up_naming_both(tmp_path):
    """The same method and path, even with the value named differently, would reach only one
    of them: start-up names both plugins instead."""
    class Pager:
        @hookimpl
        def helpdesk_api_endpoints(self, ctx: Any) -> list[ApiEndpoint]:
            return [ApiEndpoint("oncall", "POST", "write", "Page", page_on_call,
                                rule="/<int:incident_id>/page", body=PAGE)]

    class OtherPager:
        @hookimpl
        def helpdesk_api_endpoints(self, ctx: Any) -> list[ApiEndpoint]:
            return [ApiEndpoint("oncall", "POST", "write", "Page too", page_on_call,
                                rule="/<int:ticket>/page", body=PAGE)]

    with pytest.raises(PluginError) as error:
        make_app(tmp_path, [Pager(), OtherPager()])
    assert "'Pager'" in str(error.value) and "'OtherPager'" in str(error.value)
    assert "POST /plugins/oncall/<int:" in str(error.value)


def test_plugin_body_schemas_may_use_numbers_objects_and_untyped_fields(app, personas):
    from helpdesk.api.http import ApiError, validate

    schema = {"type": "object", "properties": {"ratio": {"type": "number", "maximum": 1},
                                               "extra": {"type": "object"}, "anything": {}}}
    validate({"ratio": 0.5, "extra": {"a": 1}, "anything": [1, "x"]}, schema)
    for bad, field in (({"ratio": "0.5"}, "ratio"), ({"ratio": True}, "ratio"),
                       ({"extra": []}, "extra"), ({"ratio": 1.5}, "ratio")):
        with pytest.raises(ApiError) as refused:
            validate(bad, schema)
        assert refused.value.fields == [field]
