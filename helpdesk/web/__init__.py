"""Web blueprints. Views obtain the app's context once, through :func:`context`."""

from __future__ import annotations

from flask import current_app
from flask_login import current_user

from helpdesk.context import Context


def context() -> Context:
    """The context of the app serving this request."""
    return current_app.extensions["helpdesk"]


def viewer_zone() -> str:
    """The time zone pages show times in: the signed-in agent's, else the instance's
    (customers and anonymous pages)."""
    if current_user and current_user.is_authenticated and getattr(current_user, "time_zone", None):
        return str(current_user.time_zone)
    return context().settings.time_zone
