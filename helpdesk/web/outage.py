"""Outages answered honestly: 503 with Retry-After, health and readiness probes.

When the database is unreachable, or SQLite stays locked past the bounded
busy wait (``database_busy_seconds``), a request answers 503 with
``Retry-After`` and a page that needs no database (no user, no notices) and
shows back what the person typed, so nothing they wrote is lost. The write
did not happen: its transaction never began or rolled back. A pooled
PostgreSQL connection that failed is thrown away with its idle siblings
(they may have died with it), so the next request connects afresh.

``/healthz`` says the process is alive (it never touches the database, and
does not reveal the version); ``/readyz`` says whether the database and the
queue answer, for load balancers and orchestrators.
"""

from __future__ import annotations

import logging

import peewee
from flask import Flask, Response, current_app, jsonify, request
from markupsafe import escape
from playhouse.pool import MaxConnectionsExceeded

from helpdesk.db import database, is_write_conflict
from helpdesk.security import PUBLIC, access

logger = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5
# Fields never shown back: secrets and tokens.
_HIDDEN_FIELDS = {"csrf_token", "password", "new_password", "current_password", "confirm"}

UNAVAILABLE_ERRORS = (peewee.OperationalError, peewee.InterfaceError, MaxConnectionsExceeded)


def _forget_broken_connections() -> None:
    """Drop this request's connection and the pool's idle ones (PostgreSQL), so the next
    request connects afresh instead of reusing a connection the server already closed."""
    real = database.obj
    try:
        if hasattr(real, "manual_close"):
            if not database.is_closed():
                real.manual_close()
            real.close_idle()
        elif not database.is_closed():
            database.close()
    except Exception:  # closing a dead connection may fail too; it is gone either way
        logger.debug("closing a broken database connection failed", exc_info=True)


def _typed_fields() -> list[tuple[str, str]]:
    if request.method in {"GET", "HEAD"}:
        return []
    return [(name, value) for name, value in request.form.items(multi=True)
            if name.lower() not in _HIDDEN_FIELDS and value.strip()]


def _reason(busy: bool) -> str:
    """What a 503 says happened, on the page and in the API's problem details."""
    return ("The helpdesk is busy and could not save in time." if busy
            else "The helpdesk cannot reach its database right now.")


def unavailable_page(busy: bool) -> str:
    """The 503 page, built without the database (no templates that look up the user)."""
    reason = _reason(busy)
    fields = _typed_fields()
    kept = ""
    if fields:
        items = "".join(
            f"<dt>{escape(name)}</dt><dd><pre>{escape(value)}</pre></dd>" for name, value in fields)
        kept = ("<h2>What you sent (not saved)</h2>"
                "<p>Copy it before you go back, or go back and send the form again: "
                "the browser usually keeps what you typed.</p>"
                f"<dl class=\"kept\">{items}</dl>")
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<title>Temporarily unavailable · Helpdesk</title>"
        "<link rel=\"stylesheet\" href=\"/static/helpdesk.css\"></head>"
        "<body><main id=\"main\" class=\"outage\"><h1>Temporarily unavailable</h1>"
        f"<p class=\"error\" role=\"alert\">{escape(reason)} Nothing was changed. "
        f"Try again in a few seconds.</p>{kept}</main></body></html>"
    )


def _api_unavailable(error: Exception, saved: bool) -> Response:
    """The API's 503: problem details a client can read, never the page for people."""
    from helpdesk.api.http import problem

    busy = "locked" in str(error) or "busy" in str(error) or is_write_conflict(error)
    logger.warning("%s %s answered 503%s: database %s: %s", request.method, request.path,
                   " after a change was saved" if saved else "", "busy" if busy else "unavailable", error)
    _forget_broken_connections()
    if saved:
        return saved_but_failed(503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    return problem(503, "Temporarily unavailable",
                   f"{_reason(busy)} Try again; with an Idempotency-Key a repeat never saves twice.",
                   headers={"Retry-After": str(RETRY_AFTER_SECONDS)}, saved=False)


def saved_but_failed(status: int, headers: dict[str, str] | None = None) -> Response:
    """An API request that failed after committing a change: say so (``saved: true``), since
    repeating it without its Idempotency-Key would save it twice."""
    from helpdesk.api.http import problem

    return problem(status, "Saved, but the answer could not be built",
                   "A change was saved before the failure (for a batch, perhaps only part of it). "
                   "Read the resource again instead of repeating the request, unless it carried an "
                   "Idempotency-Key: then a repeat replays the answer.", headers=headers, saved=True)


def init_app(app: Flask) -> None:
    """Register the 503 handlers and the health routes."""

    def unavailable(error: Exception) -> Response:
        from helpdesk.api.http import is_api_path
        from helpdesk.web import idempotency

        if is_api_path(request.path):
            return _api_unavailable(error, saved=idempotency.committed_in_request())
        if request.method == "POST" and idempotency.committed_in_request():
            # The change was saved; the answer failed. Say so, from the committed state.
            logger.warning("%s %s: database failed after the change was saved: %s",
                           request.method, request.path, error)
            _forget_broken_connections()
            return idempotency.answer_from_committed_state(None, "Saved.")
        busy = "locked" in str(error) or "busy" in str(error)
        logger.warning("%s %s answered 503: database %s: %s", request.method, request.path,
                       "busy" if busy else "unavailable", error)
        _forget_broken_connections()
        response = Response(unavailable_page(busy), status=503, mimetype="text/html")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        response.headers["Cache-Control"] = "no-store"
        return response

    for error_class in UNAVAILABLE_ERRORS:
        app.register_error_handler(error_class, unavailable)

    @app.get("/healthz")
    @access(PUBLIC)
    def health() -> Response:
        return jsonify(status="ok")

    @app.get("/readyz")
    @access(PUBLIC)
    def ready() -> tuple[Response, int]:
        checks: dict[str, str] = {}
        try:
            database.execute_sql("SELECT 1")
            checks["database"] = "ok"
        except UNAVAILABLE_ERRORS as error:
            logger.warning("readiness: database: %s", error)
            _forget_broken_connections()
            checks["database"] = "unavailable"
        try:
            current_app.extensions["helpdesk"].huey.storage.queue_size()
            checks["queue"] = "ok"
        except Exception as error:  # any storage error means the queue cannot take work
            logger.warning("readiness: queue: %s", error)
            checks["queue"] = "unavailable"
        ok = all(value == "ok" for value in checks.values())
        return jsonify(status="ok" if ok else "unavailable", **checks), 200 if ok else 503
