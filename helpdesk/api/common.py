"""What the API's operations share: id and text schemas, list pages (bounded size, keyset
cursor), references to records, timestamps, and the token's agent."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Response, request

from helpdesk.api.http import ApiError, current_token, json_response
from helpdesk.models import Agent

MAX_PAGE = 100
DEFAULT_PAGE = 25

# -- schemas (published in the OpenAPI document and used to check bodies) -------------------

ID = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
OPTIONAL_ID = {"type": ["integer", "null"], "minimum": 1, "maximum": 2**63 - 1}
TEXT = {"type": "string", "maxLength": 20000}
SHORT = {"type": "string", "maxLength": 2000}
REF = {"type": ["object", "null"], "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}}
PAIR = {"type": "object", "properties": {"team": REF, "agent": REF}}
STAMP = {"type": ["string", "null"], "format": "date-time"}


def listing(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"items": {"type": "array", "items": item},
                                             "next_cursor": {"type": ["string", "null"]}}}


def param(name: str, description: str, schema: dict[str, Any], many: bool = False) -> dict[str, Any]:
    if many:
        schema = {"type": "array", "items": schema}
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema, **({"style": "form", "explode": True} if many else {})}


PAGE_PARAMS = [
    param("limit", f"Page size, 1 to {MAX_PAGE}", {"type": "integer", "minimum": 1,
                                                    "maximum": MAX_PAGE}),
    param("after", "The next_cursor of the previous page", {"type": "string", "maxLength": 500}),
]
def stamp(value: dt.datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


def ref(record: Any, name: str = "name") -> dict[str, Any] | None:
    if record is None:
        return None
    label = record.display_name if isinstance(record, Agent) else getattr(record, name)
    return {"id": record.id, "name": label}


def agent_of_token() -> Agent:
    return current_token().agent


def limit() -> int:
    raw = request.args.get("limit")
    if raw is None:
        return DEFAULT_PAGE
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_PAGE):
        raise ApiError(400, "Bad request", f"limit takes 1 to {MAX_PAGE}.", field="limit")
    return int(raw)


def after_id() -> int:
    raw = request.args.get("after")
    if raw is None or raw == "":
        return 0
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise ApiError(400, "Bad request", "after takes the next_cursor of the previous page.",
                       field="after")
    return int(raw)


def page(items: list[dict[str, Any]], rows: list[Any], size: int) -> Response:
    cursor = str(rows[size - 1].id) if len(rows) > size else None
    return json_response({"items": items, "next_cursor": cursor})
