"""The application factory: one function wires config, database, plugins, queue and pages."""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Flask,
    Request,
    Response,
    g,
    message_flashed,
    redirect,
    request,
    send_from_directory,
    session,
    url_for,
)
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFError, CSRFProtect
from jinja2 import pass_context
from markupsafe import Markup
from peewee import OperationalError
from playhouse.pool import PooledDatabase
from werkzeug.routing import IntegerConverter
from werkzeug.utils import cached_property

from helpdesk import __version__, clock
from helpdesk.config import load_settings
from helpdesk.context import Context
from helpdesk.db import commit_count, database, is_write_conflict, open_database, release, statement_limit
from helpdesk.models import PRIORITIES, STATUSES, Agent
from helpdesk.plugins import BUILTIN, check_settings, load_plugins, unclaimed_settings, unread_setting_keys
from helpdesk.rendering import (
    DEFAULT_TIME_FORMAT,
    format_duration,
    format_percent,
    format_size,
    format_work,
    htmx,
    id_url,
    local_time,
    member_options,
    options,
    pair_text,
    priority_badge,
    remembered_url_for,
    render_markdown,
    status_badge,
    target_span,
    time_element,
    zone_stamps,
)
from helpdesk.security import PUBLIC, access, add_security_headers, enforce_access
from helpdesk.tasks import create_huey, register_tasks
from helpdesk.web import viewer_zone
from helpdesk.web.hosts import HostCheck, trusted_hosts
from helpdesk.web.sessions import session_agent
from helpdesk.words import CONTROL_CHARACTERS

_PACKAGE = Path(__file__).resolve().parent
logger = logging.getLogger(__name__)


class BoundedInt(IntegerConverter):
    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:  # noqa: A002 - werkzeug's name
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(map, *args, **kwargs)


CONFLICT_ATTEMPTS = 4  # runs of a request that keeps losing write races before it answers 503




def _visible(values: Any) -> Any:
    """The same multi-dict without control characters (tabs and line breaks stay)."""
    pairs = list(values.items(multi=True))  # every value of a repeated field, not only the first
    if not any(isinstance(value, str) and CONTROL_CHARACTERS.search(value) for _key, value in pairs):
        return values
    return type(values)([(key, CONTROL_CHARACTERS.sub("", value) if isinstance(value, str) else value)
                         for key, value in pairs])


class HelpdeskRequest(Request):
    """Form fields and query arguments arrive without control characters: nobody types a NUL
    or an escape sequence, PostgreSQL refuses NUL in text while SQLite stores it, and either
    would reach pages, mail and exports. (In an API's JSON body they are a 422 naming the field.)"""

    def _load_form_data(self) -> None:
        loaded = "form" in self.__dict__
        super()._load_form_data()
        if not loaded:
            self.__dict__["form"] = _visible(self.__dict__["form"])

    @cached_property
    def args(self) -> Any:  # type: ignore[override]
        return _visible(Request.args.__get__(self, type(self)))


class Helpdesk(Flask):
    """Flask, with a request that lost a write race on PostgreSQL (a serialization failure or
    a deadlock, SQLSTATE 40001/40P01) run again from its start instead of answered 503. The
    database undid the whole transaction, so the second run writes everything once. A request
    that had already committed a change is not run again: the outage handler answers it.
    (Only :func:`~helpdesk.db.write_transaction` commits are counted: a view's write outside
    one, a single autocommitted statement, must be one that may run twice.)"""

    request_class = HelpdeskRequest

    def select_jinja_autoescape(self, filename: str | None) -> bool:
        """Every page template escapes, whatever its name ends in: Flask's rule (``.html``
        and a few more) left a plugin's ``panel.jinja`` rendering an incident title raw."""
        return True

    def wsgi_app(self, environ: dict[str, Any], start_response: Any) -> Any:
        """Each request under the ``request_statement_seconds`` limit (PostgreSQL), which
        background work sharing the process's connections does not have."""
        with statement_limit(self.extensions["helpdesk"].settings.request_statement_seconds):
            return super().wsgi_app(environ, start_response)

    def dispatch_request(self) -> Any:
        attempt = 1
        while True:
            committed = commit_count()
            try:
                return super().dispatch_request()
            except OperationalError as error:
                if (attempt >= CONFLICT_ATTEMPTS or not is_write_conflict(error)
                        or commit_count() != committed or database.in_transaction()):
                    raise
                logger.info("%s %s lost a write race (attempt %d of %d), running it again: %s",
                            request.method, request.path, attempt, CONFLICT_ATTEMPTS, error)
            for _name, upload in request.files.items(multi=True):
                upload.stream.seek(0)  # the first run read the uploads
            time.sleep(random.uniform(0.005, 0.025) * attempt)  # let the winner finish
            attempt += 1


def _asset_dir(name: str) -> Path:
    """templates/ and static/ live inside the package when installed from a wheel,
    and beside it in a source checkout."""
    installed = _PACKAGE / name
    return installed if installed.is_dir() else _PACKAGE.parent / name


def create_app(
    config: dict[str, Any] | None = None,
    *,
    plugins: tuple[Any, ...] | list[Any] = (),
    load_entry_points: bool = True,
) -> Flask:
    """Build a helpdesk app.

    ``config`` overrides settings (tests); ``plugins`` are registered after the
    installed ones; ``load_entry_points=False`` ignores installed plugins (the
    test kit's default, so results do not depend on what else is installed).
    """
    settings = load_settings(config)
    app = Helpdesk(
        "helpdesk",
        template_folder=str(_asset_dir("templates")),
        static_folder=None,
        instance_path=str(settings.instance_path),
    )
    # Ids in URLs stay within 64 bits: a longer number is a 404, not a database error.
    app.url_map.converters["int"] = BoundedInt
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=settings.secure_cookies,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        TESTING=settings.testing,
    )

    replaced = database.obj
    database.initialize(open_database(settings.database_url, settings.database_busy_seconds))
    if isinstance(replaced, PooledDatabase):
        # An app made again in the same process (the CLI inside a test, a second create_app)
        # would otherwise leave the old pool's idle connections to the garbage collector.
        replaced.close_idle()
    app.extensions["helpdesk.settings"] = settings
    ctx = Context(settings=settings, huey=create_huey(settings),
                  template_folders=(Path(settings.instance_path) / "templates", _asset_dir("templates")))
    with app.app_context():  # registration hooks may still use helpdesk.plugin_settings
        loaded = load_plugins(settings.disabled_plugins, load_entry_points=load_entry_points,
                              extra=plugins, ctx=ctx)
    ctx.pm, ctx.plugins = loaded.pm, loaded.infos
    if load_entry_points:  # (plugins given to create_app are named by their module, not their entry point)
        ctx.unclaimed_settings = unclaimed_settings(settings, loaded.infos)
    # Keys are checked against the tables plugins declare by name, however the plugins came.
    unread, declaration_problems = unread_setting_keys(loaded.pm, settings, ctx)
    ctx.unclaimed_settings += unread
    ctx.plugin_problems += declaration_problems
    for warning in ctx.unclaimed_settings:
        logger.warning("%s", warning)
    from helpdesk.sla import missing_default_policy, runs_without_sla

    no_default = missing_default_policy(ctx)
    if no_default:
        logger.warning("SLA: %s", no_default)
        ctx.plugin_problems.append((BUILTIN, "helpdesk_sla_policy", no_default))
    elif runs_without_sla(ctx):  # a decision, not a problem: said once, quietly
        logger.info("SLA: default_sla_policy is \"none\": incidents no plugin picks a policy for have no SLA")
    ctx.tasks = register_tasks(app, ctx.huey, ctx)
    app.extensions["helpdesk"] = ctx
    with app.app_context():
        check_settings(loaded.pm, loaded.registry, ctx)
        from helpdesk import site_settings

        site_settings.install(ctx, ctx.huey)  # settings saved in the browser, current in every process

    app.wsgi_app = HostCheck(app.wsgi_app, trusted_hosts(settings))  # type: ignore[method-assign]
    if settings.trusted_proxies:
        # Behind nginx or Caddy: the client address is the proxy's X-Forwarded-For entry, which
        # the login rate limit needs (otherwise every client looks like 127.0.0.1).
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    CSRFProtect(app)
    htmx.init_app(app)
    login_manager = LoginManager(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to continue."
    login_manager.session_protection = "basic"

    @login_manager.user_loader
    def load_agent(session_id: str) -> Agent | None:
        raw_id, _, token = session_id.partition(":")
        if not raw_id.isascii() or not raw_id.isdigit() or len(raw_id) > 18:
            return None
        agent = session_agent(int(raw_id))  # None: logged out, revoked or expired
        if agent is None or not agent.active or token != agent.session_token:
            return None  # deleted, deactivated, or the password changed since this session began
        facts = agent.session_facts  # read with the session: no query of their own on this page
        g.settings_revision = facts.settings_revision  # taken by admin.fresh_settings
        if request.method in {"GET", "HEAD"}:  # a change (marking notices read, joining a team)
            g.unread, g.team_ids = facts.unread, list(facts.team_ids)  # must be counted after it
            g.directory_revision = facts.directory_revision  # taken by forms.teams_and_members
        return agent

    @login_manager.unauthorized_handler
    def unauthorized() -> Any:
        target = url_for("auth.login", next=_return_path())
        if htmx:
            # The session ended under an open page (idle, logged out elsewhere). helpdesk.js goes
            # to the login page (and back here after) only if nothing typed would be lost;
            # otherwise the page stays, with the text, and says how to go on. Navigating away
            # at once, as a background poll used to, threw a half-written reply away.
            response = Response("", status=401)
            response.headers["X-Helpdesk-Login"] = target  # where to log in, and come back to
            return response
        kept = _typed_text()
        if kept:  # a form sent without JavaScript: what was written is shown back, not lost
            from flask import render_template

            return render_template("login.html", next=_return_path(), kept=kept), 401
        return redirect(target)

    enforce_access(app, login_manager)
    _register_database_hooks(app)
    _register_template_helpers(app)
    _register_static(app)
    _register_errors(app)
    from helpdesk import api
    from helpdesk.web import (
        admin,
        attachments,
        auth,
        escalation,
        handback,
        idempotency,
        incidents,
        insights,
        macros,
        mail,
        metrics,
        notices,
        outage,
        plugin_ui,
        portal,
        queues,
    )

    for blueprint in (auth.bp, queues.bp, incidents.bp, admin.bp, notices.bp, escalation.bp, mail.bp,
                      portal.bp, attachments.bp, macros.bp, handback.bp):
        app.register_blueprint(blueprint)
    api.init_app(app)
    plugin_ui.init_app(app, ctx)
    insights.init_app(app)

    outage.init_app(app)  # 503s for database outages, /healthz and /readyz
    idempotency.init_app(app)  # a repeated form answers with the first result
    metrics.register(app)  # /metrics for Prometheus, behind a token with the metrics scope

    message_flashed.connect(_keep_last_flashes, app)

    @app.after_request
    def headers(response: Response) -> Response:
        if response.mimetype == "text/html":
            response.vary.add("HX-Request")
            response.headers.setdefault("Cache-Control", "no-store")
        return add_security_headers(response, settings.secure_cookies)

    if not database.is_closed():  # start-up's own: a server that forks after this must not share it
        database.close()
    return app


FLASHES_KEPT = 5  # messages waiting in the session cookie for the next page


def _keep_last_flashes(app: Flask, message: str, category: str) -> None:
    """Keep only the newest few messages waiting to be shown. A client that posts forms
    without following their redirects (a script, a load test) never reads them, and the
    signed cookie would grow with each one until browsers refuse it."""
    waiting = session.get("_flashes")
    if waiting and len(waiting) > FLASHES_KEPT:
        session["_flashes"] = waiting[-FLASHES_KEPT:]


def _return_path() -> str | None:
    """Where to go after logging in: the page asked for; for a form sent after the session
    ended, the page the form was on (its POST-only action would answer 405); for an htmx
    request (a poll of the queue counts, say), the page it came from, not the fragment."""
    asked = request.full_path.rstrip("?") if request.method in {"GET", "HEAD"} else None
    if asked and not htmx:
        return asked
    source = urlsplit(request.headers.get("HX-Current-URL") or request.referrer or "")
    if source.netloc != request.host or not source.path:
        return asked
    return source.path + (f"?{source.query}" if source.query else "")


def _typed_text() -> str:
    """The text a person wrote in a form being refused for an ended session (a reply, a
    description), to be shown back for copying; empty for anything else."""
    if request.method != "POST":
        return ""
    return "\n\n".join(value for name in ("body", "description")
                        if (value := (request.form.get(name) or "").strip()))


def _register_database_hooks(app: Flask) -> None:
    # A request connects on its first query (peewee's autoconnect), so /healthz needs no database.
    @app.teardown_request
    def close(exc: BaseException | None) -> None:
        release()


def _register_template_helpers(app: Flask) -> None:
    app.jinja_env.filters["markdown"] = render_markdown
    app.jinja_env.filters["duration"] = format_duration
    app.jinja_env.filters["work"] = format_work  # time on an SLA clock, in its calendar's hours
    app.jinja_env.filters["size"] = format_size  # a file's size: "512 KB", "10.2 MB"
    from helpdesk.queues import QUEUES

    app.jinja_env.globals.update(STATUSES=STATUSES, PRIORITIES=PRIORITIES, QUEUES=QUEUES,
                                 version=__version__, pair_text=pair_text, status_badge_of=status_badge,
                                 priority_badge_of=priority_badge, id_url=id_url,
                                 options_of=options, member_options_of=member_options,
                                 url_for=remembered_url_for(app))
    settings = app.extensions["helpdesk"].settings
    # A file input's limits, checked in the browser before sending (static/files.js): a request
    # over max_request_bytes is refused before the app reads it, so its text could not come back.
    app.jinja_env.globals["file_limits"] = Markup(
        'data-max-file-bytes="{}" data-max-request-bytes="{}"').format(
        settings.attachment_max_bytes, settings.max_request_bytes)

    @app.context_processor
    def unread_notices() -> dict[str, Any]:
        from helpdesk.web.notices import unread_count

        if current_user and current_user.is_authenticated:
            if "unread" not in g:  # a page of two templates (htmx body, full page) counts once
                g.unread = unread_count(current_user.id)
            return {"unread": g.unread}
        return {}

    @app.context_processor
    def zone_once() -> dict[str, Any]:
        # Found once per render, not once per time on the page (each lookup of the signed-in
        # agent goes through several proxies); macros imported without context look it up.
        return {"_viewer_zone": viewer_zone()}

    def zone_of(context: Any) -> str:
        return context.get("_viewer_zone") or viewer_zone()

    @app.template_filter("localtime")
    @pass_context
    def localtime(context: Any, value: Any, fmt: str = DEFAULT_TIME_FORMAT) -> str:
        """Plain text (usable inside attributes), always with the zone: "2026-06-09 09:15 BST"."""
        return local_time(value, zone_of(context), fmt, with_zone=True)

    @app.template_filter("timetag")
    @pass_context
    def timetag(context: Any, value: Any, fmt: str = DEFAULT_TIME_FORMAT, relative: bool = False) -> Markup:
        """A <time> element: local time with zone (or "in 3 hours" when ``relative``), the
        full zone name and exact time on hover, ISO UTC in ``datetime``."""
        return time_element(value, zone_of(context), fmt, moment=clock.now() if relative else None)

    @app.template_filter("zonestamps")
    @pass_context
    def zonestamps(context: Any, text: Any) -> str:
        """Stored texts naming a UTC time ("due … UTC") shown in the viewer's zone."""
        return zone_stamps(text, zone_of(context))

    app.jinja_env.filters["percent"] = format_percent
    app.jinja_env.filters["target_span"] = target_span


def _register_static(app: Flask) -> None:
    static_dir = _asset_dir("static")

    @app.get("/static/<path:filename>")
    @access(PUBLIC)
    def static(filename: str) -> Response:
        # Versioned file names (htmx-2.0.11.min.js) may be cached for long.
        return send_from_directory(static_dir, filename, max_age=3600)


def _register_errors(app: Flask) -> None:
    from helpdesk.web.errors import register

    register(app)

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError) -> tuple[str, int]:
        from helpdesk.web.errors import error_page

        return error_page(400, "Your form expired or came from another site; reload the page and try again.")
