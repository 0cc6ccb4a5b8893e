"""Alert sources as plugins: each registered source is received at /api/v1/alerts/<name>, by a
service token or a body signed with the source's secret; the flap window and limit are settings.

Grafana's bundled source stands in for any plugin's; the payloads are shaped as those systems
send them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from helpdesk import hookimpl
from helpdesk.api import tokens
from helpdesk.config import ConfigError
from helpdesk.models import AlertGroup, Incident
from helpdesk.records import Alert, AlertSource
from helpdesk.testing import make_app

SECRET = "s3cret-" + "x" * 40


@pytest.fixture
def helpdesk_bundled_plugins() -> list[str]:
    return ["grafana_alerts"]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"plugins": {"alerts": {"secrets": {"grafana": SECRET}, "resolve": ["grafana"],
                                   "flap_minutes": 10, "max_flaps": 1}}}


def grafana(status: str = "firing", fingerprint: str = "c6eadffa33fcdf37") -> dict[str, Any]:
    return {
        "receiver": "helpdesk", "status": status, "orgId": 1, "version": "1",
        "title": f"[{status.upper()}:1] HighCPU", "state": "alerting",
        "alerts": [{
            "status": status, "fingerprint": fingerprint,
            "labels": {"alertname": "HighCPU", "instance": "db1:9100", "severity": "critical"},
            "annotations": {"summary": "CPU above 95 % on db1", "description": "For 10 minutes."},
            "startsAt": "2026-11-30T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "dashboardURL": "https://grafana.example.com/d/abc", "panelURL": "https://grafana.example.com/d/abc?viewPanel=2",
            "valueString": "[ var='B' labels={instance=db1:9100} value=97.5 ]",
        }],
    }


def signed(payload: Any, secret: str = SECRET, at: float | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    stamp = str(int(at if at is not None else time.time()))
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return body, {"X-Helpdesk-Signature": f"t={stamp},v1={mac}", "Content-Type": "application/json"}


def post(app, path: str, body: bytes, headers: dict[str, str]) -> Any:
    return app.test_client().post(f"/api/v1/alerts/{path}", data=body, headers=headers)


def test_a_signed_grafana_alert_becomes_one_incident_with_its_links(app, personas):
    body, headers = signed(grafana())
    first = post(app, "grafana", body, headers)
    assert first.status_code == 202, first.get_data(as_text=True)
    [result] = first.get_json()["results"]
    incident = Incident.get_by_id(result["incident"])
    assert (result["outcome"], incident.title, incident.priority) == ("created", "CPU above 95 % on db1", 1)
    assert "https://grafana.example.com/d/abc?viewPanel=2" in incident.description
    assert "value=97.5" in incident.description
    again = post(app, "grafana", *signed(grafana()))
    assert again.get_json()["results"][0]["outcome"] == "repeated"
    assert Incident.select().count() == 1
    assert AlertGroup.get().source == "grafana"


def test_a_signed_resolve_resolves_when_the_settings_say_so(app, personas):
    created = post(app, "grafana", *signed(grafana())).get_json()["results"][0]["incident"]
    resolved = post(app, "grafana", *signed(grafana("resolved")))
    assert resolved.get_json()["results"][0]["outcome"] == "resolved"
    assert Incident.get_by_id(created).status == "resolved"


@pytest.mark.parametrize("tamper", ["other secret", "old", "body changed", "no signature",
                                    "non-ASCII signature", "superscript time"])
def test_a_bad_signature_is_refused_and_changes_nothing(app, personas, tamper):
    if tamper in {"non-ASCII signature", "superscript time"}:  # both were a 500, not a refusal
        body, headers = signed(grafana())
        stamp, mac = headers["X-Helpdesk-Signature"].split(",")
        headers["X-Helpdesk-Signature"] = (f"{stamp},v1=\u00e9{mac[4:]}" if tamper == "non-ASCII signature"
                                           else f"t=\u00b2,{mac}")
    elif tamper == "other secret":
        body, headers = signed(grafana(), secret="y" * 40)
    elif tamper == "old":
        body, headers = signed(grafana(), at=time.time() - 3600)
    else:
        body, headers = signed(grafana())
        if tamper == "body changed":
            body = body.replace(b"db1", b"db2")
        else:
            del headers["X-Helpdesk-Signature"]
    response = post(app, "grafana", body, headers)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert Incident.select().count() == 0


def test_a_source_without_a_secret_cannot_be_signed_for(app, personas):
    body, headers = signed({"fingerprint": "f", "title": "Disk full"})
    assert post(app, "generic", body, headers).status_code == 401
    assert Incident.select().count() == 0


def test_a_service_token_posts_to_any_source_and_unknown_sources_are_404(app, personas):
    with app.app_context():
        secret = tokens.create(personas.admin, "prometheus", ["alerts"], kind="service").secret
    auth = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    payload = {"alerts": [{"status": "firing", "labels": {"alertname": "DiskFull", "instance": "db1"}}]}
    created = post(app, "alertmanager", json.dumps(payload).encode(), auth)
    assert created.status_code == 202 and created.get_json()["results"][0]["outcome"] == "created"
    assert AlertGroup.get().source == "prometheus"  # a token's alerts group under its name
    missing = post(app, "zabbix", json.dumps(payload).encode(), auth)
    assert missing.status_code == 404 and missing.get_json()["field"] == "source"
    bad = post(app, "grafana", json.dumps({"alerts": "no"}).encode(), auth)
    assert bad.status_code == 422 and bad.get_json()["field"] == "alerts"


def test_a_token_retrying_a_source_post_with_its_idempotency_key_gets_the_first_answer(app, personas):
    """As on every POST: the key runs the request once per token, so a retried batch does not
    count its repeats twice; a signed body (no token) with a key is received as without."""
    with app.app_context():
        secret = tokens.create(personas.admin, "prometheus", ["alerts"], kind="service").secret
    auth = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json",
            "Idempotency-Key": "batch-1"}
    body = json.dumps({"alerts": [{"status": "firing", "labels": {"alertname": "DiskFull"}}]}).encode()
    first, again = post(app, "alertmanager", body, auth), post(app, "alertmanager", body, auth)
    assert first.status_code == again.status_code == 202
    assert again.get_json() == first.get_json() and again.headers["Idempotent-Replayed"] == "true"
    assert AlertGroup.get().count == 1
    changed = post(app, "alertmanager", body.replace(b"DiskFull", b"DiskFuller"), auth)
    assert changed.status_code == 422 and changed.get_json()["field"] == "Idempotency-Key"
    payload, headers = signed(grafana())
    assert post(app, "grafana", payload, {**headers, "Idempotency-Key": "g-1"}).status_code == 202


def test_an_alert_with_a_blank_summary_is_logged_under_its_name_and_the_batch_is_whole(app, personas):
    """A summary of spaces (or only bidi overrides) made the title blank: the batch was a 422
    'A title is required' although its earlier alerts had logged incidents, and the alert
    itself was lost (Grafana does not retry a 4xx)."""
    payload = grafana()
    good = payload["alerts"][0]
    payload["alerts"] = [good, {**good, "fingerprint": "blank-1", "annotations": {"summary": "   "},
                                "labels": {"alertname": "DiskFull"}},
                         {**good, "fingerprint": "blank-2", "annotations": {"summary": "\u202e "},
                          "labels": {}}]
    response = post(app, "grafana", *signed(payload))
    assert response.status_code == 202, response.get_data(as_text=True)
    results = response.get_json()["results"]
    assert [r["outcome"] for r in results] == ["created"] * 3
    titles = [Incident.get_by_id(r["incident"]).title for r in results]
    assert titles == ["CPU above 95 % on db1", "DiskFull", "Alert blank-2"]


def test_the_flap_limit_and_window_come_from_the_settings(app, personas, frozen_clock):
    [created] = post(app, "grafana", *signed(grafana())).get_json()["results"]
    post(app, "grafana", *signed(grafana("resolved")))
    frozen_clock.advance(minutes=5)  # inside the 10-minute window: the same incident reopens
    assert post(app, "grafana", *signed(grafana())).get_json()["results"][0]["outcome"] == "reopened"
    # max_flaps = 1: from now on a resolve is only noted, never resolves again
    assert post(app, "grafana", *signed(grafana("resolved"))).get_json()["results"][0]["outcome"] == "noted"
    assert Incident.get_by_id(created["incident"]).is_active


def test_outside_the_flap_window_a_new_incident_is_logged(app, personas, frozen_clock):
    [created] = post(app, "grafana", *signed(grafana())).get_json()["results"]
    post(app, "grafana", *signed(grafana("resolved")))
    frozen_clock.advance(minutes=11)
    [again] = post(app, "grafana", *signed(grafana())).get_json()["results"]
    assert again["outcome"] == "created" and again["incident"] != created["incident"]


class Nagios:
    """A third party's source, registered like any plugin's records (at start-up)."""

    @hookimpl
    def helpdesk_alert_sources(self) -> list[AlertSource]:
        def parse(payload: Any) -> list[Alert]:
            return [Alert(fingerprint=payload["host"], firing=payload["state"] != "OK",
                          title=f"{payload['host']} is {payload['state']}")]
        return [AlertSource("nagios", "Nagios", parse)]


@pytest.fixture
def helpdesk_plugins() -> list[Any]:
    return [Nagios()]


def test_a_plugin_registers_its_own_source(app, personas):
    with app.app_context():
        secret = tokens.create(personas.admin, "nagios", ["alerts"], kind="service").secret
    auth = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    response = post(app, "nagios", json.dumps({"host": "mail1", "state": "DOWN"}).encode(), auth)
    assert response.status_code == 202
    assert Incident.get_by_id(response.get_json()["results"][0]["incident"]).title == "mail1 is DOWN"


@pytest.mark.parametrize("alerts, named", [
    ({"max_flaps": 0}, "MAX_FLAPS"), ({"flap_minutes": "soon"}, "FLAP_MINUTES"),
    ({"secrets": {"grafana": "short"}}, "secrets.grafana")])
def test_bad_alert_settings_stop_start_up_naming_the_setting(tmp_path, alerts, named):
    with pytest.raises(ConfigError, match=named):
        make_app(tmp_path, plugins={"alerts": alerts})
