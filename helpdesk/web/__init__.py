"""Web blueprints. Views obtain the app's context once, through :func:`context`."""

from __future__ import annotations

from flask import current_app

from helpdesk.context import Context


def context() -> Context:
    """The context of the app serving this request."""
    return current_app.extensions["helpdesk"]
