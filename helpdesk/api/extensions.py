"""Plugins' API operations (:func:`helpdesk.hookspecs.helpdesk_api_endpoints`): served under
``/api/v1/plugins/<name>`` through the same token check, body checking and problem details as
the core operations, and published in the same OpenAPI document."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, Response

from helpdesk import plugins, records
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
from helpdesk.context import Context
from helpdesk.errors import DomainError

NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
RULE = re.compile(r"(/([a-z0-9_-]+|<int:[a-z_]+>))*")
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
SCOPES = {"read", "write", "admin"}


def register(app: Flask, ctx: Context) -> list[Endpoint]:
    """Mount every plugin operation on ``app``; returns the app's full route table.

    A malformed record, or one at an address another operation answers already, stops
    start-up with a :class:`~helpdesk.plugins.PluginError` naming the plugin (and the other
    plugin, for a clash), as a duplicate registration does.
    """
    table = list(ENDPOINTS)
    taken: dict[tuple[str, str], str] = {}  # (method, rule with its values unnamed) -> plugin
    for plugin, record in plugins.collect_owned(ctx.pm, "helpdesk_api_endpoints", ctx=ctx):
        stop = plugins.how_to_stop(plugin)
        if not isinstance(record, records.ApiEndpoint):
            raise plugins.PluginError(f"plugin {plugin!r}: helpdesk_api_endpoints returned "
                                      f"{record!r:.80}, not a helpdesk.records.ApiEndpoint. {stop}")
        where = f"plugin {plugin!r}: API endpoint {record.name!r}"
        if not (isinstance(record.name, str) and NAME.fullmatch(record.name)
                and isinstance(record.rule, str) and RULE.fullmatch(record.rule)):
            raise plugins.PluginError(f"{where}: the name takes a-z, 0-9, _ and -, the rule "
                                      f"/segments and <int:name> values (rule {record.rule!r}). {stop}")
        if not (isinstance(record.method, str) and record.method in METHODS
                and isinstance(record.scope, str) and record.scope in SCOPES):
            raise plugins.PluginError(f"{where}: method is one of {sorted(METHODS)}, scope one of "
                                      f"{sorted(SCOPES)} (not {record.method!r}, {record.scope!r}). "
                                      f"{stop}")
        if record.body is not None and "properties" not in record.body:
            raise plugins.PluginError(f"{where}: body is a JSON schema of an object with "
                                      f"properties. {stop}")
        rule = f"/plugins/{record.name}{record.rule}"
        address = (record.method, re.sub(r"<int:[a-z_]+>", "<int>", rule))
        if address in taken:
            also = "itself" if taken[address] == plugin else repr(taken[address])
            raise plugins.PluginError(f"{where}: {record.method} {rule} is answered already by "
                                      f"{also}; disable one or give it another rule")
        taken[address] = plugin
        operation = f"plugin_{record.name}_{record.method.lower()}_{len(taken)}"
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
