"""Where plugins meet the web app: templates, static files, pages and UI slots.

Template lookup order: the instance folder's ``templates/``, the app's own,
then each plugin's (so both an installation and the app can override a
plugin). UI-slot hooks that raise are isolated like event hooks: logged,
recorded for admins, and the rest of the page still renders.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, render_template, send_from_directory
from jinja2 import ChoiceLoader, FileSystemLoader
from markupsafe import Markup

from helpdesk import plugins, records
from helpdesk.context import Context
from helpdesk.security import ADMIN, PUBLIC, access

logger = logging.getLogger(__name__)


def init_app(app: Flask, state: Context) -> None:
    assets = _assets(state)
    loaders = [FileSystemLoader(str(Path(app.instance_path) / "templates")), app.jinja_loader]
    loaders += [FileSystemLoader(str(a.templates)) for a in assets.values() if a.templates]
    app.jinja_loader = ChoiceLoader(loaders)  # Flask's dispatching loader asks this one

    static = {name: a.static for name, a in assets.items() if a.static}

    @app.get("/plugins/<name>/static/<path:filename>")
    @access(PUBLIC)
    def plugin_static(name: str, filename: str) -> Response:
        if name not in static:
            abort(404)
        return send_from_directory(static[name], filename, max_age=3600)

    for blueprint in collect(state, "helpdesk_blueprints"):
        app.register_blueprint(blueprint)

    admin_pages = collect(state, "helpdesk_admin_pages")
    for page in admin_pages:
        app.register_blueprint(page.blueprint, url_prefix=f"/admin/plugins/{page.name}")
        # Admin pages are for admins only, whatever the plugin declared.
        for endpoint, view in app.view_functions.items():
            if endpoint.startswith(f"{page.blueprint.name}."):
                view.access_level = ADMIN
    app.extensions["helpdesk.admin_pages"] = admin_pages

    @app.context_processor
    def plugin_helpers() -> dict[str, Any]:
        return {
            "plugin_panels": lambda incident, agent: render_panels(state, incident, agent),
            "plugin_actions": lambda incident, agent: collect(
                state, "helpdesk_incident_actions", incident=incident, agent=agent),
            "plugin_admin_pages": admin_pages,
            "column_value": column_value,
        }


def _assets(state: Any) -> dict[str, Any]:
    found = {}
    for impl in state.pm.hook.helpdesk_assets.get_hookimpls():
        record = impl.function(**({"ctx": state} if "ctx" in impl.argnames else {}))
        if record is not None:
            found[record.name] = record
    return found


def collect(state: Any, hook: str, **kwargs: Any) -> list[Any]:
    return plugins.collect(state.pm, hook, kind=_KINDS.get(hook), ctx=state, **kwargs)


_KINDS = {"helpdesk_incident_panels": records.Panel, "helpdesk_incident_actions": records.Action,
          "helpdesk_queue_columns": records.QueueColumn, "helpdesk_admin_pages": records.AdminPage}


def render_panels(state: Any, incident: Any, agent: Any) -> list[tuple[str, Markup]]:
    panels = []
    for panel in collect(state, "helpdesk_incident_panels", incident=incident, agent=agent):
        try:
            html = render_template(panel.template, incident=incident, agent=agent, **panel.context)
        except Exception:
            logger.exception("panel %r failed to render", panel.title)
            html = "<p>This panel could not be shown; the error is in the server log.</p>"
        panels.append((panel.title, Markup(html)))  # noqa: S704 - rendered by autoescaping Jinja
    return panels


def queue_columns(state: Any) -> list[Any]:
    return collect(state, "helpdesk_queue_columns")


def column_value(column: Any, incident: Any) -> str:
    try:
        return str(column.value(incident))
    except Exception:
        logger.exception("queue column %r failed for %s", column.name, incident.reference)
        return "?"
