"""The JSON API (``/api/v1``): bearer tokens with scopes, the same domain functions as the
pages, problem details, ETags and idempotency keys, an OpenAPI 3.1 document generated from
the route table, and monitoring alert intake.

Session cookies never authenticate it (so it is exempt from CSRF, which
protects cookie-authenticated forms), and tokens never authenticate pages.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from helpdesk.api import directory, extensions, incidents, intake  # noqa: F401 - they register routes
from helpdesk.api.http import authenticate, bp, endpoint, http_error, is_api_path, json_response


@endpoint("GET", "/openapi.json", scope=None, summary="This document (OpenAPI 3.1)",
          responses={200: ("The OpenAPI document", {"type": "object"})})
def openapi() -> Response:
    from flask import current_app

    from helpdesk.api.openapi import document
    from helpdesk.web import context

    return json_response(document(context().base_url, current_app.extensions["helpdesk.api_endpoints"]))


def init_app(app: Flask) -> None:
    """Register the API on an app: its blueprint, its token check, and problem-details errors."""
    from helpdesk.web import tokens as token_pages

    app.register_blueprint(bp)
    app.register_blueprint(token_pages.bp)
    app.extensions["csrf"].exempt(bp)
    app.extensions["helpdesk.api_auth"] = authenticate
    app.extensions["helpdesk.api_endpoints"] = extensions.register(app, app.extensions["helpdesk"])
    pages = app.error_handler_spec[None][None].get(HTTPException)

    def error(exc: HTTPException) -> Any:
        if is_api_path(request.path):
            return http_error(exc)
        return pages(exc) if pages else exc

    app.register_error_handler(HTTPException, error)
