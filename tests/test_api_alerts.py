"""Monitoring alerts over the API: one incident per problem, counted repeats, resolution
noted or applied per source, flapping bounded, a concurrent storm de-duplicated.

Real app, real database (SQLite file or PostgreSQL), real threads for the storm.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from helpdesk import hookimpl
from helpdesk.api import alerts, tokens
from helpdesk.models import AlertGroup, Incident, Service, TimelineEntry

API = "/api/v1/alerts"


@pytest.fixture
def source(app, personas):
    """``source(resolve=False)``: a service token for an alert source named "prometheus"."""

    def make(resolve: bool = False, name: str = "prometheus", rate_limit: int = 1000) -> dict[str, str]:
        with app.app_context():
            secret = tokens.create(personas.admin, name, ["alerts"], kind="service",
                                   resolve_alerts=resolve, rate_limit=rate_limit).secret
        return {"Authorization": f"Bearer {secret}"}

    return make


def send(app, headers: dict[str, str], payload: Any) -> Any:
    return app.test_client().post(API, json=payload, headers=headers)


def generic(status: str = "firing", fingerprint: str = "disk-db1", **extra: Any) -> dict[str, Any]:
    return {"fingerprint": fingerprint, "status": status, "title": "Disk almost full on db1",
            "severity": "warning", **extra}


def outcome(response: Any) -> list[tuple[str, int | None]]:
    assert response.status_code == 202, response.get_data(as_text=True)
    return [(r["outcome"], r["incident"]) for r in response.get_json()["results"]]


def alert_entries(incident_id: int) -> list[str]:
    return [e.body for e in TimelineEntry.select().where(
        (TimelineEntry.incident == incident_id) & (TimelineEntry.kind.in_(["note", "change"])))
        .order_by(TimelineEntry.id)]


def test_first_alert_logs_an_incident_owned_by_the_service_desk_and_routed(app, personas, source,
                                                                          register_plugin):
    class Routing:
        @hookimpl
        def helpdesk_route_incident(self, incident: Any, ctx: Any) -> Any:
            return personas.database_team if incident.service and incident.service.name == "CRM" else None

    register_plugin(Routing())
    Service.create(name="CRM")
    [(what, incident_id)] = outcome(send(app, source(), generic(severity="critical", service="CRM",
                                                                description="93% used")))
    incident = Incident.get_by_id(incident_id)
    assert what == "created"
    assert (incident.source, incident.owner_team_id, incident.owner_agent_id) == (
        "monitoring", personas.service_desk.id, None)
    assert (incident.assigned_team_id, incident.status, incident.priority) == (
        personas.database_team.id, "assigned", 1)
    assert incident.title == "Disk almost full on db1" and "93% used" in incident.description


def test_repeats_of_a_firing_alert_count_instead_of_logging_incidents(app, personas, source):
    headers = source()
    [(_, incident_id)] = outcome(send(app, headers, generic()))
    entries = TimelineEntry.select().count()
    for _ in range(4):
        assert outcome(send(app, headers, generic())) == [("repeated", incident_id)]
    assert Incident.select().count() == 1
    assert AlertGroup.get().count == 5
    assert TimelineEntry.select().count() == entries  # repeats do not flood the timeline
    # another fingerprint is another problem; the same fingerprint from another source too
    assert outcome(send(app, headers, generic(fingerprint="cpu-db1")))[0][0] == "created"
    assert outcome(send(app, source(name="grafana"), generic()))[0][0] == "created"
    assert Incident.select().count() == 3


def test_a_resolved_alert_is_noted_on_the_incident_by_default(app, personas, source):
    headers = source()
    [(_, incident_id)] = outcome(send(app, headers, generic()))
    assert outcome(send(app, headers, generic("resolved"))) == [("noted", incident_id)]
    assert Incident.get_by_id(incident_id).status == "new"
    assert alert_entries(incident_id) == ["Monitoring reports the alert resolved (prometheus: disk-db1)."]
    note = TimelineEntry.get(TimelineEntry.kind == "note")
    assert note.actor_id == personas.admin.id  # the agent the service token acts as
    # told once: a repeated "resolved" adds nothing
    assert outcome(send(app, headers, generic("resolved"))) == [("repeated", incident_id)]
    assert len(alert_entries(incident_id)) == 1


def test_a_source_set_to_resolve_resolves_and_a_quick_refire_reopens_the_same_incident(
        app, personas, source, frozen_clock):
    headers = source(resolve=True)
    [(_, incident_id)] = outcome(send(app, headers, generic()))
    assert outcome(send(app, headers, generic("resolved"))) == [("resolved", incident_id)]
    incident = Incident.get_by_id(incident_id)
    assert (incident.status, incident.resolution_code) == ("resolved", "fixed")
    frozen_clock.advance(minutes=10)
    assert outcome(send(app, headers, generic())) == [("reopened", incident_id)]
    assert Incident.get_by_id(incident_id).status == "new"
    assert Incident.select().count() == 1


def test_flapping_is_bounded(app, personas, source, frozen_clock):
    headers = source(resolve=True)
    [(_, incident_id)] = outcome(send(app, headers, generic()))
    for _ in range(10):
        frozen_clock.advance(minutes=1)
        send(app, headers, generic("resolved"))
        frozen_clock.advance(minutes=1)
        send(app, headers, generic())
    assert Incident.select().count() == 1
    # resolved and reopened MAX_FLAPS times, then left open and only counted
    status_changes = [e.body for e in TimelineEntry.select().where(
        (TimelineEntry.incident == incident_id) & (TimelineEntry.field == "status"))
        .order_by(TimelineEntry.id)]
    assert len(status_changes) == 2 * alerts.MAX_FLAPS
    assert "It is flapping" in status_changes[-1]
    # nothing else was written for the later flaps (each resolve also records its resolution code)
    assert TimelineEntry.select().where(
        (TimelineEntry.incident == incident_id)
        & (TimelineEntry.field.is_null() | (TimelineEntry.field != "resolution_code"))).count() == \
        1 + 2 * alerts.MAX_FLAPS
    assert Incident.get_by_id(incident_id).is_active
    group = AlertGroup.get()
    assert (group.count, group.flaps) == (11, 10)


def test_an_alert_firing_after_its_incident_is_closed_or_long_resolved_logs_a_new_one(
        app, personas, source, frozen_clock):
    headers = source(resolve=True)
    [(_, first)] = outcome(send(app, headers, generic()))
    send(app, headers, generic("resolved"))
    frozen_clock.advance(hours=2)
    [(what, second)] = outcome(send(app, headers, generic()))
    assert what == "created" and second != first
    assert outcome(send(app, headers, generic())) == [("repeated", second)]
    assert AlertGroup.get().incident_id == second


def test_alertmanager_webhook_payload(app, personas, source):
    payload = {
        "version": "4", "status": "firing", "receiver": "helpdesk", "groupKey": "{}:{alertname=\"x\"}",
        "commonLabels": {"job": "node"},
        "alerts": [
            {"status": "firing", "fingerprint": "a1b2", "labels": {"alertname": "HostDown",
                                                                    "instance": "db1:9100",
                                                                    "severity": "critical"},
             "annotations": {"summary": "db1 is down", "description": "No scrape for 5m"},
             "startsAt": "2026-11-30T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z"},
            {"status": "firing", "labels": {"alertname": "HighLoad", "instance": "web1:9100"},
             "annotations": {}, "startsAt": "2026-11-30T10:00:00Z"},
        ],
    }
    results = outcome(send(app, source(), payload))
    assert [r[0] for r in results] == ["created", "created"]
    down, load = (Incident.get_by_id(r[1]) for r in results)
    assert (down.title, down.priority, down.source) == ("db1 is down", 1, "monitoring")
    assert "No scrape for 5m" in down.description and "instance=db1:9100" in down.description
    assert load.title == "HighLoad web1:9100"
    # Alertmanager resends the group, now with one resolved
    payload["alerts"][0]["status"] = "resolved"
    assert outcome(send(app, source(name="prometheus-2"), payload))[0][0] == "ignored"  # never seen there
    assert [r[0] for r in outcome(send(app, source(name="prometheus"), payload))] == ["noted", "repeated"]


@pytest.mark.parametrize("payload,field", [
    ({"status": "firing", "title": "x"}, "fingerprint"),
    ({"fingerprint": "x", "title": "x", "status": "exploded"}, "status"),
    ({"fingerprint": "x"}, "title"),
    ({"fingerprint": "x", "title": "x", "created_at": "now"}, "created_at"),
    ({"fingerprint": "x" * 201, "title": "x"}, "fingerprint"),
    ({"fingerprint": "x", "title": "x", "labels": {"a": 1}}, "labels"),
    ({"alerts": []}, "alerts"),
    ({"alerts": ["x"]}, "alerts[0]"),
    ({"alerts": [{"status": "firing"}]}, "alerts[0].fingerprint"),
    ({"alerts": [{"fingerprint": "f"}] * 101}, "alerts"),
])
def test_a_payload_we_do_not_understand_is_a_422_naming_where(app, personas, source, payload, field):
    response = send(app, source(), payload)
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert response.get_json()["field"] == field
    assert Incident.select().count() == 0


def test_only_a_token_with_the_alerts_scope_may_send_alerts(app, personas):
    with app.app_context():
        writer = tokens.create(personas.admin, "writer", ["read", "write"]).secret
    response = send(app, {"Authorization": f"Bearer {writer}"}, generic())
    assert response.status_code == 403
    assert Incident.select().count() == 0


def test_a_storm_of_identical_alerts_logs_exactly_one_incident(app, personas, source):
    headers = source()
    answers: list[Any] = []
    start = threading.Barrier(100)

    def one() -> None:
        client = app.test_client()
        start.wait()
        response = client.post(API, json=generic(), headers=headers)
        answers.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=one) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [status for status, _ in answers] == [202] * 100, answers[:3]
    assert Incident.select().count() == 1
    outcomes = sorted(body["results"][0]["outcome"] for _, body in answers)
    assert outcomes == ["created"] + ["repeated"] * 99
    assert AlertGroup.get().count == 100


def test_grafana_alerting_webhook_payload(app, personas, source):
    """Grafana's unified alerting sends Alertmanager's shape with extra fields of its own."""
    payload = {
        "receiver": "helpdesk", "status": "firing", "orgId": 1, "version": "1",
        "title": "[FIRING:1] Latency", "state": "alerting", "message": "…", "truncatedAlerts": 0,
        "groupLabels": {"alertname": "Latency"}, "commonLabels": {"alertname": "Latency"},
        "commonAnnotations": {}, "externalURL": "http://grafana.local/",
        "alerts": [{"status": "firing", "fingerprint": "57c6d9296de2ad39",
                    "labels": {"alertname": "Latency", "grafana_folder": "Shop", "severity": "high"},
                    "annotations": {"summary": "Checkout latency over 2 s"},
                    "values": {"B": 2.4}, "valueString": "[ var='B' value=2.4 ]",
                    "startsAt": "2026-11-30T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                    "dashboardURL": "", "panelURL": "", "silenceURL": "", "generatorURL": ""}],
    }
    [(what, incident_id)] = outcome(send(app, source(name="grafana"), payload))
    incident = Incident.get_by_id(incident_id)
    assert (what, incident.title, incident.impact, incident.source) == (
        "created", "Checkout latency over 2 s", "high", "monitoring")


def test_an_unknown_severity_or_service_is_logged_on_the_defaults_and_said(app, personas, source):
    # Refusing the alert would lose the outage: it is logged, and the incident says what the
    # desk did not understand.
    [(what, incident_id)] = outcome(send(app, source(), generic(severity="disaster", service="CRM2")))
    incident = Incident.get_by_id(incident_id)
    assert what == "created" and (incident.impact, incident.urgency, incident.service_id) == (
        "medium", "medium", None)
    assert "Severity 'disaster' is not one the desk maps" in incident.description
    assert "Service 'CRM2' is not an active service of the desk" in incident.description
    Service.create(name="CRM")
    [(_, known)] = outcome(send(app, source(), generic(fingerprint="other", severity="critical",
                                                       service="CRM")))
    said = Incident.get_by_id(known).description
    assert "not one the desk maps" not in said and "not an active service" not in said


def test_control_characters_and_lone_surrogates_are_dropped_and_every_alert_is_logged(app, source):
    """Monitoring does not retry a 422: an alert is logged without the characters no database
    keeps (NUL; \\ud800, which JSON can spell) or nobody types (escape sequences), never
    refused for them. They were a 500, or on PostgreSQL a 422 saying nothing was saved
    while the batch's earlier alerts had logged incidents."""
    headers = source()
    [(created, incident_id)] = outcome(send(app, headers, generic(
        fingerprint="disk\x00db1", title="Disk \x1b[31mfull\x1b[0m on db1 \ud800",
        description="93%\tused\nsee graph")))
    incident = Incident.get_by_id(incident_id)
    assert created == "created" and incident.title == "Disk [31mfull[0m on db1 \ufffd"
    assert "93%\tused\nsee graph" in incident.description
    assert AlertGroup.get().fingerprint == "diskdb1"
    assert outcome(send(app, headers, generic(fingerprint="diskdb1"))) == [("repeated", incident_id)]
    batch = {"alerts": [{"status": "firing", "labels": {"alertname": "HighCPU", "instance": "h1"}},
                        {"status": "firing", "labels": {"alertname": "Disk\x00", "instance": "h2"}}]}
    assert [what for what, _ in outcome(send(app, headers, batch))] == ["created", "created"]
    assert Incident.select().count() == 3


@pytest.mark.parametrize("labels,field,words", [
    ({"alertname": "Disk", "runbook": "x" * 2001}, "alerts[0].labels.runbook", "too long"),
    ({f"l{n}": "v" for n in range(101)}, "alerts[0].labels", "at most 100"),
    ({"alertname": 5}, "alerts[0].labels", "names to strings"),
])
def test_a_label_refusal_says_what_is_wrong_with_it(app, source, labels, field, words):
    response = send(app, source(), {"alerts": [{"status": "firing", "labels": labels}]})
    assert response.status_code == 422
    assert response.get_json()["field"] == field and words in response.get_json()["detail"]
    assert Incident.select().count() == 0
