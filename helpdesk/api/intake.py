"""Monitoring alerts over the API: the route that hands each alert to :mod:`helpdesk.api.alerts`."""

from __future__ import annotations

from flask import Response, request

from helpdesk.api.http import ApiError, current_token, endpoint, json_response
from helpdesk.web import context

GENERIC_ALERT = {
    "type": "object", "required": ["fingerprint", "title"],
    "properties": {
        "fingerprint": {"type": "string", "minLength": 1, "maxLength": 200},
        "status": {"type": "string", "enum": ["firing", "resolved"]},
        "title": {"type": "string", "minLength": 1, "maxLength": 2000},
        "description": {"type": "string", "maxLength": 20000},
        "severity": {"type": "string", "maxLength": 50},
        "service": {"type": "string", "maxLength": 100, "description": "A service's name"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
ALERTMANAGER = {
    "type": "object", "required": ["alerts"],
    "description": "Prometheus Alertmanager's webhook payload (version 4)",
    "properties": {
        "version": {"type": "string"}, "status": {"type": "string"},
        "receiver": {"type": "string"}, "groupKey": {"type": "string"},
        "commonLabels": {"type": "object"},
        "alerts": {"type": "array", "maxItems": 100, "items": {"type": "object", "properties": {
            "status": {"type": "string", "enum": ["firing", "resolved"]},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            "fingerprint": {"type": "string"}, "startsAt": {"type": "string"},
            "endsAt": {"type": "string"}, "generatorURL": {"type": "string"}}}},
    },
}
ALERT_RESULTS = {"type": "object", "properties": {"results": {"type": "array", "items": {
    "type": "object", "properties": {
        "fingerprint": {"type": "string"},
        "outcome": {"type": "string", "enum": ["created", "repeated", "reopened", "resolved",
                                               "noted", "ignored"]},
        "incident": {"type": ["integer", "null"]}}}}}}


@endpoint("POST", "/alerts", scope="alerts", summary="Receive monitoring alerts (a generic alert "
          "or an Alertmanager webhook): one incident per firing fingerprint",
          body={"oneOf": [GENERIC_ALERT, ALERTMANAGER]},
          responses={202: ("What became of each alert", ALERT_RESULTS)})
def receive_alerts() -> Response:
    from helpdesk.api import alerts

    if not request.is_json:
        raise ApiError(415, "Unsupported media type", "Send the alert as application/json.")
    try:
        parsed = alerts.parse(request.get_json(silent=True))
    except alerts.BadAlert as bad:
        raise ApiError(422, "Unprocessable content", str(bad), field=bad.field) from None
    token = current_token()
    results = [alerts.receive(context(), token, alert) for alert in parsed]
    return json_response({"results": [{"fingerprint": r.fingerprint, "outcome": r.outcome,
                                       "incident": r.incident} for r in results]}, 202)
