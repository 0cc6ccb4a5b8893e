"""Where plugins meet the web app: templates, static files, pages and UI slots.

Template lookup order: the instance folder's ``templates/``, the app's own,
then each plugin's (so both an installation and the app can override a
plugin). UI-slot hooks that raise are isolated like event hooks: logged,
recorded for admins, and the rest of the page still renders.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, current_app, render_template, send_from_directory
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

    for plugin, blueprint in plugins.collect_owned(state.pm, "helpdesk_blueprints", ctx=state):
        app.register_blueprint(blueprint)
        for rule in undeclared_routes(app, blueprint.name):
            if rule.endpoint == f"{blueprint.name}.static":  # Flask's own view: no place for @access
                problem = (f"the blueprint's static folder ({rule.rule}) is not served; give its "
                           "files through helpdesk_assets (PluginAssets(static=...)) instead")
            else:
                problem = (f"the route {rule.rule} ({rule.endpoint}) declares no audience with "
                           "@helpdesk.access(...), so it is refused to everyone until it does")
            logger.error("plugin %r: %s", plugin, problem)
            state.plugin_problems.append((plugin, "helpdesk_blueprints", problem))

    owned_pages = plugins.collect_owned(state.pm, "helpdesk_admin_pages", records.AdminPage, ctx=state)
    taken: dict[str, str] = {}
    for plugin, page in owned_pages:  # two pages at one address: say so instead of Flask's error
        for key in (f"page {page.name!r}", f"blueprint {page.blueprint.name!r}"):
            if key in taken:
                raise plugins.PluginError(f"admin pages: the {key} is registered by both "
                                          f"{taken[key]!r} and {plugin!r}; disable one of them")
            taken[key] = plugin
    admin_pages = [page for _plugin, page in owned_pages]
    for page in admin_pages:
        app.register_blueprint(page.blueprint, url_prefix=f"/admin/plugins/{page.name}")
        # Admin pages are for admins only, whatever the plugin declared.
        for endpoint, view in app.view_functions.items():
            if endpoint.startswith(f"{page.blueprint.name}."):
                view.access_level = ADMIN
    app.extensions["helpdesk.admin_pages"] = admin_pages
    app.extensions[COLUMN_OWNERS] = {}

    @app.context_processor
    def plugin_helpers() -> dict[str, Any]:
        return {
            "plugin_panels": lambda incident, agent: render_panels(state, incident, agent),
            "plugin_actions": lambda incident, agent: local_actions(state, incident, agent),
            "plugin_admin_pages": admin_pages,
            "column_value": column_value,
        }


def undeclared_routes(app: Flask, blueprint: str) -> list[Any]:
    """The routes of a registered blueprint whose view declares no audience: found when the
    plugin registers it, rather than by the first visitor refused at request time."""
    return [rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith(f"{blueprint}.")
            and getattr(app.view_functions[rule.endpoint], "access_level", None) is None]


def _assets(state: Any) -> dict[str, Any]:
    """Each plugin's templates and static folders; one that fails or answers something else
    stops start-up naming the plugin (its pages would be broken otherwise)."""
    found = {}
    for impl in state.pm.hook.helpdesk_assets.get_hookimpls():
        try:
            record = impl.function(**({"ctx": state} if "ctx" in impl.argnames else {}))
        except Exception as error:
            raise plugins.PluginError(f"plugin {impl.plugin_name!r} failed in helpdesk_assets: "
                                      f"{type(error).__name__}: {error}. "
                                      f"{plugins.how_to_stop(impl.plugin_name)}") from error
        if record is None:
            continue
        if not isinstance(record, records.PluginAssets):
            raise plugins.PluginError(f"plugin {impl.plugin_name!r}: helpdesk_assets returned "
                                      f"{record!r:.80}, not a helpdesk.records.PluginAssets. "
                                      f"{plugins.how_to_stop(impl.plugin_name)}")
        found[record.name] = record
    return found


def collect(state: Any, hook: str, **kwargs: Any) -> list[Any]:
    return plugins.collect(state.pm, hook, kind=_KINDS.get(hook), ctx=state, **kwargs)


_KINDS = {"helpdesk_incident_panels": records.Panel, "helpdesk_incident_actions": records.Action,
          "helpdesk_queue_columns": records.QueueColumn, "helpdesk_admin_pages": records.AdminPage}


def local_actions(state: Any, incident: Any, agent: Any) -> list[records.Action]:
    """The plugins' extra buttons whose URL is a path on this site. A button is a form carrying
    the agent's CSRF token and the incident's version: posted to another site, or run as a
    ``javascript:`` URL, it would hand the token out. Any other URL is left out and recorded."""
    found = []
    for plugin, action in plugins.collect_owned(state.pm, "helpdesk_incident_actions", records.Action,
                                                ctx=state, incident=incident, agent=agent):
        url = action.url if isinstance(action.url, str) else ""
        if not url.startswith("/") or url.startswith("//") or "\\" in url:
            plugins.record_failure(plugin, "helpdesk_incident_actions", incident, ValueError(
                f"the action {action.label!r} posts to {action.url!r:.80}, not a path on this site "
                "(like /plugins/…): left out, as it would send the agent's CSRF token elsewhere"))
            continue
        found.append(action)
    return found


def render_panels(state: Any, incident: Any, agent: Any) -> list[tuple[str, Markup]]:
    panels = []
    for plugin, panel in plugins.collect_owned(state.pm, "helpdesk_incident_panels", records.Panel,
                                               ctx=state, incident=incident, agent=agent):
        try:
            html = render_template(panel.template, incident=incident, agent=agent, **panel.context)
        except Exception as error:
            logger.exception("panel %r of plugin %r failed to render", panel.title, plugin)
            plugins.record_failure(plugin, "helpdesk_incident_panels (render)", incident, error)
            html = "<p>This panel could not be shown; the error is on the Plugins page.</p>"
        panels.append((panel.title, Markup(html)))  # noqa: S704 - rendered by autoescaping Jinja
    return panels


#: ``app.extensions`` key: which plugin gave each queue column (by its name), to name it when
#: its value fails. Per app, so two apps in one process never blame each other's plugins.
COLUMN_OWNERS = "helpdesk.column_owners"


def queue_columns(state: Any) -> list[Any]:
    """The plugins' queue columns (in a request); a second column of a name already taken is
    left out and recorded for the Plugins page (a failure of either would be blamed on the
    wrong one)."""
    columns: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for plugin, column in plugins.collect_owned(state.pm, "helpdesk_queue_columns", records.QueueColumn,
                                                ctx=state):
        if column.name in columns:
            plugins.record_failure(plugin, "helpdesk_queue_columns", None, ValueError(
                f"a queue column named {column.name!r} is already given by {owners[column.name]!r}; "
                "this one is left out (give it another name)"))
            continue
        columns[column.name], owners[column.name] = column, plugin
    current_app.extensions.setdefault(COLUMN_OWNERS, {}).update(owners)
    return list(columns.values())


def column_value(column: Any, incident: Any) -> str:
    started = time.monotonic()
    try:
        value = str(column.value(incident))
        elapsed = time.monotonic() - started
        if elapsed > plugins.SLOW_PAGE_HOOK_SECONDS:  # one cell: a queue page has dozens
            owners = current_app.extensions.get(COLUMN_OWNERS, {})
            plugins.note_if_slow(owners.get(column.name, column.name), "helpdesk_queue_columns (value)",
                                 incident, elapsed)
        return value
    except Exception as error:
        logger.exception("queue column %r failed for %s", column.name, incident.reference)
        owners = current_app.extensions.get(COLUMN_OWNERS, {})
        plugins.record_failure(owners.get(column.name, column.name),
                               "helpdesk_queue_columns (value)", incident, error)
        return "?"
