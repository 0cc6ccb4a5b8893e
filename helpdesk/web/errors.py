"""Error pages: plain pages for browsers, the same text for HTMX fragments."""

from __future__ import annotations

import peewee
from flask import Flask, render_template
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


def register(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[str, int]:
        code = error.code or 500
        custom = error.description != type(error).description
        message = error.description if custom else MESSAGES.get(code, "Something went wrong.")
        return render_template("error.html", code=code, message=message), code

    @app.errorhandler(peewee.DataError)
    def data_error(error: peewee.DataError) -> tuple[str, int]:
        # PostgreSQL refuses over-long text: the transaction rolled back, nothing was saved.
        return render_template("error.html", code=422, message=(
            "A value is too long or not valid for its field; nothing was saved.")), 422

    @app.errorhandler(DomainError)
    def domain_error(error: DomainError) -> tuple[str, int]:
        return render_template("error.html", code=error.status, message=str(error)), error.status
