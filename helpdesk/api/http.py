"""The API's HTTP conventions, in one place: the route table (which the OpenAPI document is
generated from), token authentication with scopes and rate limits, request bodies checked
against the same schemas the document publishes, problem details, ETags and idempotency keys.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import peewee
from flask import Blueprint, Response, g, request
from werkzeug.exceptions import HTTPException

from helpdesk.api import tokens
from helpdesk.clock import now
from helpdesk.db import write_transaction
from helpdesk.errors import DomainError, StaleVersion
from helpdesk.models import ApiIdempotency, ApiToken
from helpdesk.security import TOKEN

PREFIX = "/api/v1"
PROBLEM = "application/problem+json"
bp = Blueprint("api", __name__, url_prefix=PREFIX)
MAX_KEY = 200
KEEP_ANSWERS = dt.timedelta(hours=24)  # how long a stored answer replays (Idempotency-Key)
logger = logging.getLogger(__name__)


def is_api_path(path: str) -> bool:
    """Whether a request path is the API's: its errors are problem details, never pages."""
    return path == PREFIX or path.startswith(PREFIX + "/")


class ApiError(Exception):
    """A request the API refuses: becomes an ``application/problem+json`` answer."""

    def __init__(self, status: int, title: str, detail: str = "", *, field: str | None = None,
                 fields: list[str] | None = None, headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.fields = fields or ([field] if field else [])
        self.headers = headers or {}
        self.extra = extra or {}


def problem(status: int, title: str, detail: str = "", *, fields: list[str] | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if fields:
        body["field"] = fields[0]
        body["fields"] = fields
    body.update(extra)
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM)
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def json_response(data: Any, status: int = 200, *, etag: int | None = None,
                  location: str | None = None) -> Response:
    response = Response(json.dumps(data), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    if etag is not None:
        response.headers["ETag"] = f'"{etag}"'
    if location:
        response.headers["Location"] = location
    return response


# -- the route table --------------------------------------------------------------------


@dataclass
class Endpoint:
    """One API operation: what the view does, who may call it, and its schemas."""

    method: str
    rule: str  # Flask rule below PREFIX, e.g. "/incidents/<int:incident_id>"
    name: str
    scope: str | None  # None: public (the OpenAPI document)
    summary: str
    body: dict[str, Any] | None = None  # JSON schema of the request body
    query: list[dict[str, Any]] = field(default_factory=list)  # OpenAPI parameter objects
    responses: dict[int, tuple[str, dict[str, Any] | None]] = field(default_factory=dict)
    if_match: bool = False
    idempotent: bool = False
    signed: bool = False  # also accepts a body signed with the <source>'s secret (alert sources)

    @property
    def path(self) -> str:
        return PREFIX + re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", self.rule)


ENDPOINTS: list[Endpoint] = []


def endpoint(method: str, rule: str, *, scope: str | None, summary: str,
             body: dict[str, Any] | None = None, query: list[dict[str, Any]] | None = None,
             responses: dict[int, tuple[str, dict[str, Any] | None]] | None = None,
             if_match: bool = False, idempotent: bool | None = None,
             signed: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register an API view and describe it for the OpenAPI document in the same place."""

    def register(view: Callable[..., Any]) -> Callable[..., Any]:
        spec = Endpoint(method, rule, view.__name__, scope, summary, body, query or [],
                        responses or {}, if_match,
                        idempotent=method == "POST" if idempotent is None else idempotent,
                        signed=signed)
        handle = handler(spec, view)
        handle.signed_body = signed  # type: ignore[attr-defined]
        bp.add_url_rule(rule, view.__name__, handle, methods=[method])
        ENDPOINTS.append(spec)
        return view

    return register


def handler(spec: Endpoint, view: Callable[..., Any]) -> Callable[..., Response]:
    """The view as served: query check, idempotency key, and every refusal as problem details."""

    def handle(**kwargs: Any) -> Response:
        try:
            if spec.query:
                _check_query(spec)
            if spec.body is None and spec.method in {"POST", "PATCH", "PUT"}:
                _no_fields()
            if spec.idempotent and request.headers.get("Idempotency-Key") is not None:
                return _idempotent(spec, view, kwargs)
            return view(**kwargs)
        except ApiError as refused:
            return problem(refused.status, refused.title, refused.detail, fields=refused.fields,
                           headers=refused.headers, **refused.extra)
        except StaleVersion as stale:
            from helpdesk.api.incidents import incident_json

            return problem(412, "Precondition failed", str(stale),
                           headers={"ETag": f'"{stale.incident.version}"'},
                           current=incident_json(stale.incident))
        except DomainError as refused:
            return problem(refused.status, _TITLES.get(refused.status, "Refused"), str(refused),
                           fields=_field_of(str(refused), spec.body))
        except peewee.DataError:
            return problem(422, "Unprocessable content",
                           "A value is too long or not valid for its field; nothing was saved.")

    handle.__name__ = spec.name
    handle.access_level = TOKEN if spec.scope else "public"  # type: ignore[attr-defined]
    handle.api_scope = spec.scope  # type: ignore[attr-defined]
    return handle


_TITLES = {403: "Forbidden", 404: "Not found", 409: "Conflict", 422: "Unprocessable content"}
# In this order: the longer names first, and a reason before what it is for ("Give a reason for
# overriding the priority" is about the reason).
_FIELD_WORDS = ("pending reason", "resolution code", "reason", "note", "title", "status", "priority",
                "impact", "urgency", "type", "team", "agent", "body", "say why")


# A domain word that is not itself a body field: the field that carries it ("Give a reason for
# cancelling" and "Say why the incident is reopened" are about the status change's note).
_FIELD_ALIASES = {"reason": ("note",), "say_why": ("reason", "note")}


def _field_of(message: str, schema: dict[str, Any] | None) -> list[str] | None:
    """The body field a domain message is about, when it names one (best effort, for clients).

    The domain speaks of "the team" or "a reason"; the client sent ``team_id``,
    ``assigned_team_id`` or ``note``, so a word is answered as the field of this operation's
    body that carries it, and not at all when the body has no such field.
    """
    lowered = message.lower()
    properties = (schema or {}).get("properties", {})
    for word in _FIELD_WORDS:
        if re.search(rf"\b{word}\b", lowered):
            name = word.replace(" ", "_")
            for candidate in (name, f"{name}_id", f"assigned_{name}_id", *_FIELD_ALIASES.get(name, ())):
                if candidate in properties:
                    return [candidate]
    return None


# -- authentication -----------------------------------------------------------------------


def authenticate(view: Any) -> Response | None:
    """Called by the access check for every token route: a bearer token with the view's scope,
    within its rate limit. Session cookies are ignored (so there is no CSRF surface)."""
    header = request.headers.get("Authorization", "")
    if not header and getattr(view, "signed_body", False):
        return _authenticate_signature()
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return problem(401, "Unauthorized", "Send an API token: 'Authorization: Bearer <token>'. "
                       "Session cookies do not authenticate the API.",
                       headers={"WWW-Authenticate": 'Bearer realm="helpdesk"'})
    token = tokens.authenticate(secret.strip())
    if token is None:
        logger.warning("API: refused an unusable token starting %r for %s %s",
                       secret.strip()[:8], request.method, request.path)
        return problem(401, "Unauthorized", "The token is unknown, revoked or expired, or its "
                       "agent is deactivated.",
                       headers={"WWW-Authenticate": 'Bearer realm="helpdesk", error="invalid_token"'})
    scope = getattr(view, "api_scope", None)
    if scope in tokens.ADMIN_SCOPES and not token.agent.is_admin:
        return problem(403, "Forbidden", f"The {scope!r} scope is for admins, and this token's agent "
                       "is not one (any more).")
    if scope not in tokens.scopes_of(token):
        logger.warning("API: token %d (%r) lacks scope %r for %s %s", token.id, token.name, scope,
                       request.method, request.path)
        return problem(403, "Forbidden", f"This token lacks the {scope!r} scope.",
                       headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'})
    wait = tokens.spend(token)
    if wait is not None:
        return problem(429, "Too many requests",
                       f"This token may make {token.rate_limit} requests a minute.",
                       headers={"Retry-After": str(wait)})
    g.api_token = token
    return None


def _authenticate_signature() -> Response | None:
    """A body signed with its alert source's secret stands in for a token (no agent acts)."""
    from helpdesk.api import alerts
    from helpdesk.web import context

    source = (request.view_args or {}).get("source", "")
    signature = request.headers.get(alerts.SIGNATURE_HEADER, "")
    if not signature:
        return problem(401, "Unauthorized", "Send an API token ('Authorization: Bearer <token>') or "
                       f"sign the body ({alerts.SIGNATURE_HEADER}).",
                       headers={"WWW-Authenticate": 'Bearer realm="helpdesk"'})
    if not alerts.verify_signature(context(), source, signature, request.get_data()):
        logger.warning("API: refused a badly signed alert for source %r", source)
        return problem(401, "Unauthorized", "The signature does not match this source's secret, or "
                       f"its time is more than {alerts.SIGNATURE_TOLERANCE} seconds off.",
                       headers={"WWW-Authenticate": 'Bearer realm="helpdesk"'})
    g.api_token = None
    g.signed_source = source
    return None


def current_token() -> ApiToken | None:
    """The request's token; None for an alert body signed with its source's secret."""
    return g.api_token


# -- request bodies ----------------------------------------------------------------------------


# Text no database keeps (NUL; a lone surrogate, which JSON can spell as "\ud800") and control
# characters nobody types (escape sequences, BEL …; not tabs or line breaks), which the pages'
# forms drop and which would reach mail, exports and terminals.
_UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def json_payload() -> Any:
    """The request's JSON (``None`` when it is not JSON). A body nested a thousand deep
    (``[[[[…]]]]``) is a 400: the parser's RecursionError was a 500."""
    try:
        return request.get_json(silent=True)
    except RecursionError:
        raise ApiError(400, "Bad request", "The body is nested too deeply.") from None


def body(spec_schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON body, checked against the endpoint's schema: unknown or read-only fields,
    wrong types and bad values are a 422 naming the field."""
    if not request.is_json:
        raise ApiError(415, "Unsupported media type", "Send the body as application/json.")
    data = json_payload()
    if not isinstance(data, dict):
        raise ApiError(400, "Bad request", "The body must be one JSON object.")
    refuse_unstorable(data)
    validate(data, spec_schema)
    return data


def refuse_unstorable(data: dict[str, Any]) -> None:
    """A 422 naming the top-level field whose value (at any depth) holds text no database
    keeps or nobody types; checked before anything is written."""
    for name, value in data.items():
        try:
            unstorable = _unstorable(name) or _unstorable(value)
        except RecursionError:
            raise ApiError(400, "Bad request", "The body is nested too deeply.") from None
        if unstorable:
            raise ApiError(422, "Unprocessable content", f"{name[:100]!a}: contains a character that is "
                           "not text (a control character such as NUL or ESC, or a lone surrogate "
                           "such as \\ud800)", field=name[:100])


def _unstorable(value: Any) -> bool:
    """Text no database keeps (JSON can spell a lone surrogate, "\\ud800", or a NUL), anywhere
    in a value: refused up front rather than failing in the database as a 500."""
    if isinstance(value, str):
        return bool(_UNSTORABLE.search(value))
    if isinstance(value, dict):
        return any(_unstorable(key) or _unstorable(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_unstorable(item) for item in value)
    return False


def validate(data: dict[str, Any], schema: dict[str, Any]) -> None:
    properties = schema.get("properties", {})
    unknown = sorted(set(data) - set(properties))
    if unknown:
        raise ApiError(422, "Unprocessable content",
                       f"Unknown or read-only field(s): {', '.join(unknown)}.", fields=unknown)
    missing = [name for name in schema.get("required", []) if name not in data]
    if missing:
        raise ApiError(422, "Unprocessable content", f"{missing[0]} is required.", fields=missing)
    for name, value in data.items():
        problem_text = _check(value, properties[name])
        if problem_text:
            raise ApiError(422, "Unprocessable content", f"{name}: {problem_text}", field=name)


def _check(value: Any, schema: dict[str, Any]) -> str | None:
    kinds = schema.get("type") or []
    kinds = kinds if isinstance(kinds, list) else [kinds]
    python = {"string": str, "integer": int, "number": (int, float), "boolean": bool,
              "null": type(None), "array": list, "object": dict}
    if kinds and not any(isinstance(value, python.get(k, object))
                         and not (k in {"integer", "number"} and isinstance(value, bool))
                         for k in kinds):
        return f"expected {' or '.join(kinds)}"
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"at most {schema['maxLength']} characters"
        if "minLength" in schema and len(value.strip()) < schema["minLength"]:
            return "must not be empty"
    if "enum" in schema and value not in schema["enum"]:
        return "one of " + ", ".join(str(v) for v in schema["enum"] if v is not None)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"at least {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"at most {schema['maximum']}"
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"at most {schema['maxItems']} items"
        for item in value:
            inner = _check(item, schema.get("items", {}))
            if inner:
                return inner
    return None


def _no_fields() -> None:
    """An operation that takes no body: nothing, or an empty JSON object; fields it would
    ignore are refused as anywhere else (the client meant something by them)."""
    if not request.content_length and not request.data:
        return
    data = json_payload() if request.is_json else None
    if data != {}:
        raise ApiError(422, "Unprocessable content", "This operation takes no body (or an empty JSON "
                       "object); nothing was done.")


def _check_query(spec: Endpoint) -> None:
    known = {p["name"] for p in spec.query}
    unknown = sorted(set(request.args) - known)
    if unknown:
        raise ApiError(400, "Bad request", f"Unknown query parameter(s): {', '.join(unknown)}.",
                       fields=unknown)
    for parameter in spec.query:  # the documented length, which the handler would silently cut
        longest = parameter.get("schema", {}).get("maxLength")
        value = request.args.get(parameter["name"])
        if longest is not None and value is not None and len(value) > longest:
            raise ApiError(400, "Bad request", f"{parameter['name']}: at most {longest} characters.",
                           field=parameter["name"])


def expected_version(required: bool = True) -> int | None:
    """The version an ``If-Match`` header names; a change without one is refused (428).

    If-Match is what stops a lost update, so it must name the version the client read:
    ``*`` (any current version, RFC 9110) would let a stale change through and is refused
    (428), and a weak ETag (``W/"3"``) never matches, as If-Match compares strongly (412).
    """
    raw = request.headers.get("If-Match")
    if raw is None:
        if required:
            raise ApiError(428, "Precondition required",
                           "Send If-Match with the ETag you read, so a stale change is refused "
                           "instead of overwriting someone else's.", field="If-Match")
        return None
    raw = raw.strip()
    if raw == "*":
        raise ApiError(428, "Precondition required",
                       "If-Match: * matches any version, so it would not stop this change from "
                       "overwriting someone else's; send the ETag you read, such as \"3\". "
                       "Nothing was saved.", field="If-Match")
    match = re.fullmatch(r'(W/)?"?([0-9]{1,9})"?', raw)
    if match is None:
        raise ApiError(400, "Bad request", "If-Match takes an ETag such as \"3\".", field="If-Match")
    if match.group(1):
        raise ApiError(412, "Precondition failed",
                       f"If-Match compares ETags strongly and a weak ETag ({raw}) never matches; "
                       f"send the ETag as the API gave it (\"{match.group(2)}\"). Nothing was saved.",
                       field="If-Match")
    return int(match.group(2))


# -- idempotency keys -------------------------------------------------------------------------


def _idempotent(spec: Endpoint, view: Callable[..., Any], kwargs: dict[str, Any]) -> Response:
    """Run a POST at most once per token and key; a retry gets the stored answer.

    The key's row is written first, in the same transaction as the change, so two
    concurrent requests with one key cannot both act: the second waits on the
    unique index, then replays the first one's answer.
    """
    key = request.headers["Idempotency-Key"].strip()
    if not key or len(key) > MAX_KEY or not key.isascii() or not key.isprintable():
        raise ApiError(400, "Bad request", f"Idempotency-Key takes 1 to {MAX_KEY} printable ASCII "
                       "characters.", field="Idempotency-Key")
    token = current_token()
    if token is None:  # a signed alert body: no token to keep the key for (alerts de-duplicate)
        return view(**kwargs)
    fingerprint = hashlib.sha256(
        f"{spec.method} {request.path}\n".encode() + request.get_data()).hexdigest()
    ApiIdempotency.delete().where((ApiIdempotency.token == token.id)
                                  & (ApiIdempotency.created_at < now() - KEEP_ANSWERS)).execute()
    for _attempt in range(3):
        stored = ApiIdempotency.get_or_none((ApiIdempotency.token == token.id)
                                            & (ApiIdempotency.key == key))
        if stored is not None:
            return _replay(stored, fingerprint)
        try:
            with write_transaction():
                row = ApiIdempotency.create(token=token.id, key=key, request_hash=fingerprint,
                                            status=0, body="", created_at=now())
                response = view(**kwargs)
                if response.status_code >= 400:
                    raise _Refused(response)  # roll back: a refused request may be retried
                ApiIdempotency.update(status=response.status_code, body=response.get_data(as_text=True),
                                      location=response.headers.get("Location", "")).where(
                    ApiIdempotency.id == row.id).execute()
            return response
        except _Refused as refused:
            return refused.response
        except peewee.IntegrityError:
            continue  # another request with this key committed first: replay its answer
    raise ApiError(409, "Conflict", "A request with this Idempotency-Key is still in progress.",
                   field="Idempotency-Key")


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _replay(stored: ApiIdempotency, fingerprint: str) -> Response:
    if stored.request_hash != fingerprint:
        raise ApiError(422, "Unprocessable content", "This Idempotency-Key was used for a different "
                       "request.", field="Idempotency-Key")
    response = Response(stored.body, status=stored.status, mimetype="application/json")
    if stored.location:
        response.headers["Location"] = stored.location
    data = json.loads(stored.body) if stored.body else {}
    if isinstance(data, dict) and isinstance(data.get("version"), int):
        response.headers["ETag"] = f'"{data["version"]}"'
    response.headers["Idempotent-Replayed"] = "true"
    response.headers["Cache-Control"] = "no-store"  # as the first answer: it names incidents
    return response


def http_error(error: HTTPException) -> Response:
    """Problem details for HTTP errors under the API prefix (unknown path, wrong method …)."""
    headers = {}
    if error.code == 405 and getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
    return problem(error.code or 500, error.name, error.description or "", headers=headers)
