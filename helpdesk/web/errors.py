"""Error pages: plain pages for browsers, the same text for HTMX fragments."""

from __future__ import annotations

import peewee
from flask import Flask, render_template, request
from werkzeug.exceptions import HTTPException

from helpdesk.errors import DomainError

MESSAGES = {
    400: "The request could not be understood.",
    403: "You do not have permission to do that.",
    404: "There is nothing at this address.",
    405: "That action is not available here.",
    413: "The request is too large.",
    429: "Too many attempts; wait a few minutes and try again.",
}


def error_page(code: int, message: str) -> tuple[str, int]:
    """The error page in the layout of the side that asked: a customer in the portal gets the
    portal's page, leading back to their requests, never the agents' page and its queues."""
    portal = request.path == "/portal" or request.path.startswith("/portal/")
    return render_template("portal/error.html" if portal else "error.html", code=code,
                           message=message), code


def register(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[str, int]:
        code = error.code or 500
        custom = error.description != type(error).description
        message = error.description if custom else MESSAGES.get(code, "Something went wrong.")
        return error_page(code, message)

    @app.errorhandler(peewee.DataError)
    def data_error(error: peewee.DataError) -> tuple[str, int]:
        # PostgreSQL refuses over-long text: the transaction rolled back, nothing was saved.
        return error_page(422, "A value is too long or not valid for its field; nothing was saved.")

    @app.errorhandler(DomainError)
    def domain_error(error: DomainError) -> tuple[str, int]:
        return error_page(error.status, str(error))
