"""Errors the domain raises; the web layer maps each to one HTTP status."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A rule refused the change; the message is shown to the user as is (HTTP 422)."""

    status = 422


class PermissionDenied(DomainError):
    """The actor may not make this change (HTTP 403)."""

    status = 403


class NotFound(DomainError):
    """What the request names does not exist, or the actor may not know it does (HTTP 404)."""

    status = 404


class TryAgain(DomainError):
    """Refused for now only (lost every race for a row): the same request may succeed later."""

    status = 409


class StaleVersion(DomainError):
    """The change was based on an old version; nothing was written (HTTP 409).

    ``incident`` is the fresh state, so the user can see what changed.
    """

    status = 409

    def __init__(self, message: str, incident: Any) -> None:
        super().__init__(message)
        self.incident = incident
