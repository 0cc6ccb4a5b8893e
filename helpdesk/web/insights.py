"""Search, exports and reports: the pages that read across incidents, registered together."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from helpdesk.web import exports, reports, search

    for blueprint in (search.bp, exports.bp, reports.bp):
        app.register_blueprint(blueprint)
