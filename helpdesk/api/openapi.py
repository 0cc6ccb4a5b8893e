"""The OpenAPI 3.1 document, generated from the route table (:data:`helpdesk.api.http.ENDPOINTS`):
the schemas that check request bodies are the ones published, so the two cannot drift."""

from __future__ import annotations

from typing import Any

from helpdesk import __version__
from helpdesk.api import tokens
from helpdesk.api.http import ENDPOINTS, PROBLEM, Endpoint

PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["title", "status"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"},
        "field": {"type": "string", "description": "The (first) field, header or parameter that failed"},
        "fields": {"type": "array", "items": {"type": "string"}},
        "current": {"type": "object", "description": "On 412: the current incident"},
        "saved": {"type": "boolean", "description": "On 500 and 503: whether a change was committed "
                  "before the failure. If true, read the resource back instead of repeating the "
                  "request (a request with an Idempotency-Key may always be repeated)"},
    },
}
COMMON_ERRORS = {
    400: "Bad request (unknown query parameter, broken cursor, bad filter)",
    401: "No token, or an unknown, revoked or expired one",
    403: "The token lacks the scope, or its agent may not do this",
    404: "Not found (or not visible to this token)",
    405: "This method is not offered at this address",
    422: "The body names an unknown field or a value the rules refuse",
    429: "Rate limit reached (Retry-After says when to try again)",
    500: "Server error; with saved: true a change was committed before it",
    503: "The database is unavailable or busy (Retry-After says when to try again); saved says "
         "whether a change was committed before it",
}
#: What only an operation that takes a body answers.
BODY_ERRORS = {
    413: "The body is over max_request_bytes: refused before it was read, nothing was saved",
    415: "The body is not application/json",
}


def _operation(spec: Endpoint) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, (description, schema) in sorted(spec.responses.items()):
        content = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}} if status >= 400 \
            else {"application/json": {"schema": schema}} if schema else None
        responses[str(status)] = {"description": description, **({"content": content} if content else {})}
    if spec.scope:
        errors = {**COMMON_ERRORS, **(BODY_ERRORS if spec.body is not None else {})}
        for status, description in sorted(errors.items()):
            responses.setdefault(str(status), {
                "description": description,
                "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}})
    parameters = [{"name": name, "in": "path", "required": True,
                   "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1} if integer
                   else {"type": "string", "minLength": 1, "maxLength": 100}}
                  for name, integer in _path_names(spec)] + list(spec.query)
    if spec.if_match:
        parameters.append({"name": "If-Match", "in": "header", "required": True,
                           "description": 'The ETag (version) you read, such as "3". Compared strongly: '
                           'a weak ETag (W/"3") never matches (412), and * is refused (428), '
                           "as it would not stop a lost update", "schema": {"type": "string"}})
    if spec.idempotent:
        parameters.append({"name": "Idempotency-Key", "in": "header", "required": False,
                           "description": "Send the same key to retry safely: the first answer "
                           "is replayed", "schema": {"type": "string", "maxLength": 200}})
    operation: dict[str, Any] = {"operationId": spec.name, "summary": spec.summary,
                                 "responses": responses}
    if parameters:
        operation["parameters"] = parameters
    if spec.body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {**spec.body, "additionalProperties": False} if "properties" in spec.body
            else spec.body}}}
    if spec.scope:
        operation["security"] = [{"token": [spec.scope]}] + ([{"signature": []}] if spec.signed else [])
        operation["x-scope"] = spec.scope
    else:
        operation["security"] = []
    return operation


def _rank(spec: Endpoint) -> int:
    """Incidents first, then alerts, the directory, plugins' operations, and this document."""
    section = spec.rule.strip("/").split("/")[0]
    return {"incidents": 0, "alerts": 1, "plugins": 3, "openapi.json": 4}.get(section, 2)


def _path_names(spec: Endpoint) -> list[tuple[str, bool]]:
    """The path's parameters in order, each with whether it is an integer."""
    import re

    return [(name, converter == "int") for converter, name in
            re.findall(r"<(?:([a-z]+):)?([a-z_]+)>", spec.rule)]


def document(base_url: str, endpoints: list[Endpoint] | None = None) -> dict[str, Any]:
    """The document for an app's route table (default: the core operations)."""
    paths: dict[str, dict[str, Any]] = {}
    for spec in sorted(ENDPOINTS if endpoints is None else endpoints, key=_rank):
        paths.setdefault(spec.path, {})[spec.method.lower()] = _operation(spec)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Helpdesk API", "version": __version__,
                 "description": "Incidents, their timelines and SLA clocks, the directory, and "
                 "monitoring alerts. Authenticate with 'Authorization: Bearer <token>'; tokens are "
                 "made on the profile page (personal) or by admins (service)."},
        "servers": [{"url": base_url.rstrip("/")}],
        "paths": paths,
        "components": {
            "schemas": {"Problem": PROBLEM_SCHEMA},
            "securitySchemes": {"token": {
                "type": "http", "scheme": "bearer",
                "description": "Scopes: " + "; ".join(f"{k}: {v}" for k, v in tokens.SCOPES.items())},
                "signature": {
                    "type": "apiKey", "in": "header", "name": "X-Helpdesk-Signature",
                    "description": "Alert sources only: t=<unix time>,v1=<hex HMAC-SHA256 of "
                    "'<t>.<body>' with the source's secret from [plugins.alerts] secrets>"}},
        },
    }
