"""Monitoring alerts over the API: the route that hands each alert to :mod:`helpdesk.api.alerts`."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import Response, g, request

from helpdesk.api.http import ApiError, current_token, endpoint, json_payload, json_response
from helpdesk.web import context
from helpdesk.words import CONTROL_CHARACTERS

_SURROGATES = re.compile("[\ud800-\udfff]")

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

    return _receive(alerts.parse)


@endpoint("POST", "/alerts/<source>", scope="alerts", signed=True,
          summary="Receive alerts in one registered source's shape (generic, alertmanager, or a "
          "plugin's). Authenticate with a service token, or sign the body with the source's "
          "secret: X-Helpdesk-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of '<t>.<body>'>",
          body={"type": "object"}, responses={202: ("What became of each alert", ALERT_RESULTS)})
def receive_source_alerts(source: str) -> Response:
    record = context().registry.alert_sources.get(source)
    if record is None:
        raise ApiError(404, "Not found", f"There is no alert source {source!r}.", field="source")
    return _receive(record.parse, signed_source=g.get("signed_source"))


def _receive(parse: Callable[[Any], Any], signed_source: str | None = None) -> Response:
    from helpdesk.api import alerts

    if not request.is_json:
        raise ApiError(415, "Unsupported media type", "Send the alert as application/json.")
    payload = json_payload()
    if payload is None:
        raise ApiError(400, "Bad request", "The body is not valid JSON.")
    try:
        payload = _storable(payload)
    except RecursionError:
        raise ApiError(400, "Bad request", "The body is nested too deeply.") from None
    try:
        parsed = list(parse(payload))
    except alerts.BadAlert as bad:
        raise ApiError(422, "Unprocessable content", str(bad), field=bad.field) from None
    if len(parsed) > alerts.MAX_ALERTS:
        raise ApiError(422, "Unprocessable content", f"At most {alerts.MAX_ALERTS} alerts per request.",
                       field="alerts")
    ctx = context()
    settings = alerts.options(ctx)
    if signed_source is not None:
        origin = alerts.Origin(signed_source, None, signed_source in settings.resolve)
    else:
        token = current_token()
        origin = alerts.Origin(token.name, token.agent, token.resolve_alerts)
    results = [alerts.receive(ctx, origin, alert, settings) for alert in parsed]
    return json_response({"results": [{"fingerprint": r.fingerprint, "outcome": r.outcome,
                                       "incident": r.incident} for r in results]}, 202)


def _storable(value: Any) -> Any:
    """The payload without text no database keeps or nobody types: control characters (NUL,
    escape sequences; not tabs or line breaks) dropped, a lone surrogate made U+FFFD. Unlike
    other bodies, an alert is not refused for them: monitoring does not retry a 422, and an
    alert lost is worse than a character."""
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", CONTROL_CHARACTERS.sub("", value))
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value
