"""Search, exports and reports: the pages that read across incidents, registered together."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from helpdesk.web import exports, search

    for blueprint in (search.bp, exports.bp):
        app.register_blueprint(blueprint)
