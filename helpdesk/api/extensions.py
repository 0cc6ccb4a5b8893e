"""Plugins' API operations (:func:`helpdesk.hookspecs.helpdesk_api_endpoints`): served under
``/api/v1/plugins/<name>`` through the same token check, body checking and problem details as
the core operations, and published in the same OpenAPI document."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, Response

from helpdesk import plugins
from helpdesk.api.http import (
    ENDPOINTS,
    PREFIX,
    ApiError,
    Endpoint,
    body,
    current_token,
    handler,
    json_response,
)
from helpdesk.config import ConfigError
from helpdesk.context import Context
from helpdesk.errors import DomainError

NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
RULE = re.compile(r"(/([a-z0-9_-]+|<int:[a-z_]+>))*")
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
SCOPES = {"read", "write", "admin"}


def register(app: Flask, ctx: Context) -> list[Endpoint]:
    """Mount every plugin operation on ``app``; returns the app's full route table.

    A malformed record stops start-up with a message naming it, as a duplicate does.
    """
    table = list(ENDPOINTS)
    seen: set[tuple[str, str]] = set()
    for plugin, record in plugins.collect_owned(ctx.pm, "helpdesk_api_endpoints", ctx=ctx):
        where = f"API endpoint {getattr(record, 'name', record)!r}"
        if not NAME.fullmatch(record.name) or not RULE.fullmatch(record.rule):
            raise ConfigError(f"{where}: the name takes a-z, 0-9, _ and -, the rule /segments "
                              "and <int:name> values.")
        if record.method not in METHODS or record.scope not in SCOPES:
            raise ConfigError(f"{where}: method is one of {sorted(METHODS)}, scope one of "
                              f"{sorted(SCOPES)}.")
        if record.body is not None and "properties" not in record.body:
            raise ConfigError(f"{where}: body is a JSON schema of an object with properties.")
        rule = f"/plugins/{record.name}{record.rule}"
        if (record.method, rule) in seen:
            raise ConfigError(f"{where}: {record.method} {rule} is registered twice.")
        seen.add((record.method, rule))
        operation = f"plugin_{record.name}_{record.method.lower()}_{len(seen)}"
        responses = {200: ("The answer", dict(record.response) if record.response else None)}
        spec = Endpoint(record.method, rule, operation, record.scope, record.summary,
                        dict(record.body) if record.body else None, [], responses,
                        idempotent=record.method == "POST")
        view = handler(spec, _call(ctx, plugin, record, spec))
        view.__module__ = __name__
        app.add_url_rule(PREFIX + rule, f"api.{operation}", view, methods=[record.method])
        app.extensions["csrf"].exempt(view)  # tokens only, never cookies: nothing to forge
        table.append(spec)
    return table


def _call(ctx: Context, plugin: str, record: Any, spec: Endpoint) -> Any:
    def view(**url_values: Any) -> Response:
        agent = current_token().agent
        if record.scope == "admin" and not agent.is_admin:  # demoted since the token was made
            raise ApiError(404, "Not found", "There is nothing at this address.")
        data = body(spec.body) if spec.body is not None else None
        try:
            answer = record.view(ctx, agent, data, **url_values)
        except (ApiError, DomainError):
            raise  # the operation's own answer (problem details), not a failure
        except Exception as error:  # a bug: the admin sees it on the Plugins page, the caller a 500
            plugins.record_failure(plugin, f"helpdesk_api_endpoints ({record.method} {spec.rule})",
                                   None, error)
            raise
        status, payload = answer if isinstance(answer, tuple) else (200, answer)
        return json_response(payload, status)

    view.__name__ = spec.name
    return view
