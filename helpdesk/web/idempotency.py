"""Writes answer what they did: an idempotency key on every state-changing form.

A form gets a fresh random key when it is rendered (``{{ idempotency_field() }}``).
When the request makes its first change, the key is written in the same
transaction (:func:`helpdesk.db.with_next_commit`), with a fingerprint of
what was sent. A repeat of that request (a double click, the browser's
retry, an agent sending again after an error page) finds the key and gets
the first answer — the page it led to — instead of writing again; two copies
racing each other collide on the unique key, and the loser's transaction
rolls back. A request that fails *after* its change committed (the
connection dropped while the answer was rendered) is answered from the
committed state, not with an error that invites a second write.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from typing import Any
from urllib.parse import urlsplit

import peewee
from flask import Flask, Response, flash, g, redirect, request, url_for
from flask_login import current_user
from markupsafe import Markup

from helpdesk.db import commit_count, with_next_commit
from helpdesk.models import IdempotentRequest
from helpdesk.web.errors import error_page

logger = logging.getLogger(__name__)
FIELD = "idempotency_key"
_NOT_FINGERPRINTED = {"csrf_token", FIELD}
_KEY = re.compile(r"[0-9a-f]{32}")
_REDIRECTS = {301, 302, 303, 307, 308}


def field() -> Markup:
    """The hidden field a state-changing form carries (a new key per rendering)."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(FIELD, uuid.uuid4().hex)


def _fingerprint() -> str:
    sent = sorted((k, v) for k, v in request.form.items(multi=True) if k not in _NOT_FINGERPRINTED)
    return hashlib.sha256(json.dumps([request.method, request.path, sent]).encode()).hexdigest()


def _agent_id() -> int | None:
    return current_user.id if current_user and current_user.is_authenticated else None


def _local(url: str | None) -> str | None:
    """A same-site path from a full URL the browser sent (HX-Current-URL, Referer)."""
    parts = urlsplit(url or "")
    if not parts.path or (parts.netloc and parts.netloc != request.host):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def committed_in_request() -> bool:
    """Whether this request has committed a change (so an error now must not say it did nothing)."""
    return commit_count() > g.get("commits_at_start", commit_count())


def answer_from_committed_state(location: str | None, message: str) -> Response:
    """Send the browser to the page showing the committed state (HTMX: a full reload there)."""
    target = (location or _local(request.headers.get("HX-Current-URL")) or _local(request.referrer)
              or url_for("queues.index"))
    flash(message)
    if request.headers.get("HX-Request"):
        response = Response("", status=200)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target, code=303)


def _earlier(key: str, agent: int | None) -> IdempotentRequest | None:
    return IdempotentRequest.get_or_none((IdempotentRequest.key == key)
                                         & (IdempotentRequest.agent == agent))


def init_app(app: Flask) -> None:
    app.jinja_env.globals["idempotency_field"] = field

    @app.before_request
    def recognise_repeats() -> Response | None:
        g.commits_at_start = commit_count()
        with_next_commit(None)
        key = request.form.get(FIELD, "") if request.method == "POST" else ""
        if not _KEY.fullmatch(key):
            return None
        agent, fingerprint = _agent_id(), _fingerprint()
        earlier = _earlier(key, agent)
        if earlier is not None:
            if earlier.fingerprint == fingerprint:
                return answer_from_committed_state(
                    earlier.location, "That was already saved; it was not saved a second time.")
            return None  # the same form sent again with other content: a request of its own
        g.idempotency = (key, agent, fingerprint)
        with_next_commit(lambda: IdempotentRequest.create(key=key, agent=agent, fingerprint=fingerprint))
        return None

    @app.after_request
    def remember_the_answer(response: Response) -> Response:
        pending = g.pop("idempotency", None)
        with_next_commit(None)
        location = response.location if response.status_code in _REDIRECTS else None
        location = location or response.headers.get("HX-Redirect")
        if pending and location and committed_in_request():
            key, agent, _ = pending
            try:
                IdempotentRequest.update(location=_local(location) or location[:500]).where(
                    (IdempotentRequest.key == key) & (IdempotentRequest.agent == agent)).execute()
            except peewee.PeeweeException:  # a repeat then lands on the page it came from
                logger.exception("could not record where request %s led", key)
        return response

    @app.teardown_request
    def forget(_: BaseException | None) -> None:
        with_next_commit(None)

    @app.errorhandler(peewee.IntegrityError)
    def raced(error: peewee.IntegrityError) -> Any:
        """Two copies of one request at once: the second lost on the unique key and rolled back."""
        pending = g.get("idempotency")
        if pending:
            earlier = _earlier(pending[0], pending[1])
            if earlier is not None and earlier.fingerprint == pending[2]:
                return answer_from_committed_state(
                    earlier.location, "That was already saved; it was not saved a second time.")
        logger.error("integrity error in %s %s: %s", request.method, request.path, error)
        return error_page(500, "Something went wrong; nothing was saved.")

    @app.errorhandler(Exception)
    def failed_after_commit(error: Exception) -> Any:
        """An error after the change committed: show the committed state, not an error page."""
        from helpdesk.api.http import is_api_path

        api = is_api_path(request.path)  # the API changes with PATCH and DELETE too
        if (request.method != "POST" and not api) or not committed_in_request():
            raise error
        logger.exception("%s %s failed after its change was saved", request.method, request.path)
        if api:
            from helpdesk.web.outage import saved_but_failed

            return saved_but_failed(500)
        return answer_from_committed_state(None, "Saved.")
