"""The ``helpdesk`` command: init, serve, worker, user add, demo, db upgrade."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click
import peewee

from helpdesk.config import ConfigError, create_instance, instance_folder


def _app(ctx: click.Context) -> Any:
    return _app_for((ctx.obj or {}).get("instance_path"))


class RepeatFilter(logging.Filter):
    """At most one record a minute per kind of warning or error — the logger, the message
    before its arguments, and the exception with its text — the next one of that kind saying
    how many were left out. A queue or database that is away makes every worker thread log
    the same traceback on every poll (about 700 MB a day), which hides what else happened."""

    #: Security events (failed logins, refused access) are each an audit record: a password
    #: spray or someone probing admin pages must leave every attempt in the log.
    NEVER_FOLDED = frozenset({"helpdesk.security"})

    def __init__(self, seconds: float = 60) -> None:
        super().__init__()
        self.seconds = seconds
        self._seen: dict[tuple[str, str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or record.name in self.NEVER_FOLDED:
            return True
        error = record.exc_info[1] if record.exc_info else None
        key = (record.name, str(record.msg), f"{type(error).__name__}: {error}"[:300] if error else "")
        moment = time.monotonic()
        last = self._seen.get(key)
        if last is not None and moment - last[0] < self.seconds:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        record.left_out = last[1] if last is not None else 0  # said by the formatter
        self._seen[key] = (moment, 0)
        return True


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        left_out = getattr(record, "left_out", 0)
        return f"{text}\n  ({left_out} more like it were left out)" if left_out else text


def _log_to_stderr() -> None:
    """Warnings and errors of a long-running process, stamped, to standard error (journald
    or the supervisor reads it), with repeats folded (:class:`RepeatFilter`)."""
    handler = logging.StreamHandler()
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


#: Seconds between tries while a long-running process waits for its database at start.
WAIT_SECONDS = 5


def shown_url(url: str) -> str:
    """A database URL fit to print: its password (``postgresql://user:pw@host/db``) hidden."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _cannot_open(url: str, error: Exception) -> click.ClickException:
    return click.ClickException(f"cannot open the database {shown_url(url)}: {error}")


def _ready(ctx: click.Context, wait: bool = False) -> Any:
    """The app, for a command that works on the data. A database that is missing or behind
    the schema is said plainly, with what to run, before anything else happens (a SQLite file
    is not created by asking). With ``wait`` (`serve`, `worker`), a database that cannot be
    reached is waited for, a line every few seconds, so a process started before its database
    (at boot, during a fail-over) comes up with it instead of exiting for systemd to give up."""
    from urllib.parse import unquote

    from helpdesk import schema
    from helpdesk.config import load_settings
    from helpdesk.db import database

    try:  # before the app opens (and so creates) the file
        url = load_settings(instance_path=(ctx.obj or {}).get("instance_path")).database_url
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    if url.startswith("sqlite:///") and not Path(unquote(url[len("sqlite:///"):])).exists():
        raise click.ClickException(f"there is no database at {url}: run `helpdesk init` first "
                                   "(or set database_url)")
    app = _app(ctx)
    while True:
        try:
            with database.connection_context():
                behind = schema.pending(database)
            break
        except peewee.OperationalError as error:
            if not wait:
                raise _cannot_open(url, error) from None
            click.echo(f"waiting for the database ({error}); trying again in {WAIT_SECONDS} s",
                       err=True)
            time.sleep(WAIT_SECONDS)
    if behind:
        raise click.ClickException("the database schema is out of date: run `helpdesk init` "
                                   "or `helpdesk db upgrade` first")
    return app


class HelpdeskGroup(click.Group):
    """The built-in commands, plus those plugins add through ``helpdesk_cli_commands``."""

    def _plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        if "plugin_commands" not in ctx.meta:
            from helpdesk.plugins import PluginError, collect

            instance = ctx.params.get("instance")
            refusal = root_refusal(str(instance) if instance else None)
            if refusal:  # building the app to list its commands would create queue.db as root
                raise click.ClickException(refusal)
            try:
                app = _app_for(str(instance) if instance else None)
            except (click.ClickException, PluginError):
                ctx.meta["plugin_commands"] = {}  # the real command reports the problem
                return {}
            ctx.meta["plugin_app"] = app
            # Something else than a command in a plugin's list is skipped and recorded, as on
            # pages: it would otherwise break --help and every plugin command.
            commands = collect(app.extensions["helpdesk"].pm, "helpdesk_cli_commands", click.Command,
                               ctx=app.extensions["helpdesk"])
            ctx.meta["plugin_commands"] = {c.name: c for c in commands if c.name not in self.commands}
        return ctx.meta["plugin_commands"]

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugin_commands(ctx)))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None:
            command = self._plugin_commands(ctx).get(name)
            if command is not None:
                # Plugin commands run inside the app, as the docs promise.
                ctx.with_resource(ctx.meta["plugin_app"].app_context())
        return command


def _app_for(instance: str | None) -> Any:
    from helpdesk.app import create_app
    from helpdesk.plugins import PluginError

    try:
        return create_app({"instance_path": instance} if instance else None)
    except (ConfigError, PluginError) as error:
        raise click.ClickException(str(error)) from None


@click.group(cls=HelpdeskGroup)
# Eager: read before --help, which lists the commands the instance's plugins add.
@click.option("--instance", type=click.Path(file_okay=False, path_type=Path), default=None,
              is_eager=True, envvar="HELPDESK_INSTANCE", help="Instance folder (default ./instance).")
@click.pass_context
def main(ctx: click.Context, instance: Path | None) -> None:
    """Run and manage a helpdesk instance."""
    ctx.obj = {"instance_path": str(instance)} if instance else {}
    refusal = root_refusal(ctx.obj.get("instance_path"), ctx.invoked_subcommand)
    if refusal and ctx.invoked_subcommand == "mail-in":
        click.echo(f"Error: {refusal}", err=True)
        sys.exit(75)  # EX_TEMPFAIL: the MTA keeps the message until the alias runs as the owner
    if refusal:
        raise click.ClickException(refusal)


def root_refusal(instance_path: str | None, command: str | None = None) -> str | None:
    """Why a command run as root must not touch this instance, or None. Every command opens
    the instance's files and may create some (``queue.db`` as the app starts, the database's
    ``-wal`` and ``-shm``, a new attachment folder); made by root in a folder that belongs to
    the service user, the service could no longer write them (a worker stuck on a root-owned
    queue file). Refusing, and saying how to run it, leaves nothing half-owned; chown-ing after
    the fact would miss what SQLite and Huey create on their own."""
    if os.geteuid() != 0 or os.environ.get("HELPDESK_RUN_AS_ROOT") == "1":
        return None  # the variable: root on purpose (a container over another user's volume)
    folder = instance_folder(instance_path)
    try:
        owner_id = folder.stat().st_uid
    except OSError:  # no folder yet: `init` as root makes a root-owned instance, all of a piece
        return None
    if owner_id == 0:
        return None
    import pwd

    try:
        owner = pwd.getpwuid(owner_id).pw_name
    except KeyError:
        owner = f"#{owner_id}"  # sudo's spelling of a user id without a name
    return (f"the instance folder {folder} belongs to {owner}, and this command runs as root: "
            f"files it creates there would be root's and the helpdesk service could not write "
            f"them. Run it as the service user: sudo -u {owner} helpdesk --instance {folder} "
            f"{command or ''} … (or set HELPDESK_RUN_AS_ROOT=1 if root is meant to run it)"
            .replace("  …", " …"))


@main.command()
@click.option("--demo/--no-demo", default=False, help="Load demo data into a new database.")
@click.pass_context
def init(ctx: click.Context, demo: bool) -> None:
    """Create the instance folder, secret key and schema; seed a new database once."""
    from helpdesk.db import database

    instance = instance_folder(ctx.obj.get("instance_path"))
    if create_instance(instance):
        click.echo(f"Created instance folder {instance} with a new secret key.")
    app = _app(ctx)
    state = app.extensions["helpdesk"]
    try:
        with app.app_context(), database.connection_context():
            _init_database(state, demo)
    except peewee.OperationalError as error:
        raise _cannot_open(state.settings.database_url, error) from None


def _init_database(state: Any, demo: bool) -> None:
    """Migrate, make the service-desk team, and seed a new database once (``init``)."""
    from helpdesk import demo as demo_data
    from helpdesk import people, schema
    from helpdesk.db import database
    from helpdesk.models import Agent

    applied = schema.upgrade(database)
    if applied:
        click.echo(f"Database schema: applied {', '.join(applied)}.")
    desk = people.ensure_team(state.settings.service_desk_team)
    if Agent.select().exists():
        demo_agent = Agent.get_or_none(Agent.username == demo_data.AGENTS[0][0])
        if demo_agent is not None and people.check_password(demo_agent, demo_data.PASSWORD):
            click.echo(demo_data.LOGIN_HELP)
        else:
            click.echo(f"Log in at {state.settings.base_url} with your account.")
        return
    if demo:
        demo_data.seed(state, progress=True)
        click.echo(demo_data.LOGIN_HELP)
        return
    password = secrets.token_urlsafe(12)
    people.create_agent("admin", "Administrator", password, role="admin", teams=[desk])
    click.echo(
        "Created the first admin account. This password is shown only once:\n"
        f"  user name: admin\n  password:  {password}"
    )


@main.command()
@click.option("--host", default=None, help="Listen address (HELPDESK_HOST).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (HELPDESK_PORT).")
@click.option("--no-worker", is_flag=True, help="Do not run the background worker in-process.")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, no_worker: bool) -> None:
    """Serve the web app with waitress, and the background worker in the same process.

    SIGTERM stops it gracefully: no new connections, requests and tasks in
    flight finish (for at most ``shutdown_seconds``)."""
    from helpdesk import serving

    _log_to_stderr()
    app = _ready(ctx, wait=True)
    settings = app.extensions["helpdesk"].settings
    _warn_exposed(settings, logging.getLogger("helpdesk.cli").warning)
    serving.settle()  # before the worker's threads hold tasks in flight
    consumer = None
    if not no_worker:
        consumer = _start_consumer(app, settings.workers)
    host, port = host or settings.host, port or settings.port
    mismatch = base_url_mismatch(settings.base_url, port)
    if mismatch:
        click.echo(mismatch, err=True)
    try:
        # Behind trusted proxies waitress must pass X-Forwarded-* on (it drops them by default):
        # the app's ProxyFix takes the address the nearest `trusted_proxies` proxies saw.
        serving.serve(app, host=host, port=port, threads=settings.threads,
                      max_request_bytes=settings.max_request_bytes,
                      shutdown_seconds=settings.shutdown_seconds,
                      clear_untrusted_proxy_headers=not settings.trusted_proxies,
                      on_listen=lambda where: click.echo(
                          f"Helpdesk serving on {where} "
                          f"({'with' if consumer else 'without'} background worker). Ctrl-C stops."))
    except serving.ListenError as error:
        raise click.ClickException(str(error)) from None
    finally:
        if consumer is not None:
            consumer.stop(graceful=True)  # tasks in flight finish, within shutdown_seconds
            consumer.heartbeat.stop()


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def base_url_mismatch(base_url: str, port: int) -> str | None:
    """A warning when ``base_url`` is a loopback address on another port than the one served:
    every link in mail, notices and API answers (sign-in links too) is built from ``base_url``,
    so with the default ``http://127.0.0.1:5000`` and ``serve --port 8080`` none of them opens.
    A public ``base_url`` is left alone (a proxy in front answers on its own port)."""
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    if parts.hostname not in LOOPBACK_NAMES:
        return None
    linked = parts.port or (443 if parts.scheme == "https" else 80)
    if linked == port:
        return None
    return (f"Warning: base_url is {base_url}, but this server listens on port {port}: links "
            f"in mail, notifications and API answers will point to port {linked}. Set base_url "
            f"(helpdesk.toml, or HELPDESK_BASE_URL) to the address people open, e.g. "
            f"http://127.0.0.1:{port}.")


def _start_consumer(app: Any, workers: int) -> Any:
    """Start Huey's worker threads here, keeping Ctrl-C and SIGTERM for the web server."""
    huey = app.extensions["helpdesk"].huey
    consumer = huey.create_consumer(workers=workers, worker_type="thread", periodic=True,
                                    shutdown_timeout=app.extensions["helpdesk"].settings.shutdown_seconds)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    consumer.heartbeat = _start_heartbeat(app)
    consumer.start()
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    return consumer


@main.command()
@click.option("--workers", type=int, default=None, help="Worker threads (HELPDESK_WORKERS).")
@click.pass_context
def worker(ctx: click.Context, workers: int | None) -> None:
    """Run only the background worker (for installations with several processes).

    SIGTERM stops it gracefully: tasks in flight finish (for at most ``shutdown_seconds``)."""
    _log_to_stderr()
    app = _ready(ctx, wait=True)
    state = app.extensions["helpdesk"]
    _warn_exposed(state.settings, logging.getLogger("helpdesk.cli").warning)
    # SIGTERM (systemd's stop) and Ctrl-C let tasks in flight finish, within shutdown_seconds.
    consumer = state.huey.create_consumer(workers=workers or state.settings.workers,
                                          worker_type="thread", periodic=True, graceful_signal="TERM",
                                          shutdown_timeout=state.settings.shutdown_seconds)
    heartbeat = _start_heartbeat(app)
    click.echo("Helpdesk worker running. Ctrl-C stops.")
    try:
        consumer.run()
    finally:
        heartbeat.stop()


def _warn_exposed(settings: Any, warn: Any) -> None:
    """Say when the SQLite database or queue file is open to other users of the machine (an
    instance from before new files were created closed, or one an admin copied with 0644),
    with the ``chmod`` that closes it: a local user could read every password hash."""
    from helpdesk.db import exposure_warning

    for url, what, why in ((settings.database_url, "database", "it holds password hashes and stored secrets"),
                           (settings.queue_url, "task queue", "the worker runs the tasks written in it")):
        warning = exposure_warning(url, what, why)
        if warning:
            warn(warning)


def _start_heartbeat(app: Any) -> Any:
    """Say this worker is alive, after taking back what dead workers left claimed."""
    from helpdesk.workers import Heartbeat

    return Heartbeat(app).start()


@main.group()
def user() -> None:
    """Manage agent accounts."""


@user.command("add")
@click.argument("username")
@click.option("--name", "display_name", required=True, help="Display name.")
@click.option("--email", default="")
@click.option("--role", type=click.Choice(["agent", "lead", "admin"]), default="agent")
@click.option("--team", "team_names", multiple=True, help="Team to join (repeatable).")
@click.option("--password", default=None,
              help="Password. Visible to other users of the machine (ps) and kept in shell "
                   "history: prefer the prompt or --password-stdin.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of standard input (for scripts).")
@click.pass_context
def user_add(ctx: click.Context, username: str, display_name: str, email: str, role: str,
             team_names: tuple[str, ...], password: str | None, password_stdin: bool) -> None:
    """Add an agent. The password is asked for (hidden, twice) unless given."""
    from helpdesk import people
    from helpdesk.db import database
    from helpdesk.errors import DomainError
    from helpdesk.models import Agent, Team

    if password is not None and password_stdin:
        raise click.UsageError("give --password or --password-stdin, not both")
    if password_stdin:
        password = _password_from_stdin()
    app = _ready(ctx)
    # What can be checked is checked before the password is asked for (typed twice, for nothing).
    with app.app_context(), database.connection_context():
        if Agent.select().where(Agent.username == username.strip().lower()).exists():  # stored so
            raise click.ClickException(f"the user name {username.strip()!r} is already taken")
        teams = []
        for name in team_names:
            team = Team.get_or_none(Team.name == name)
            if team is None:
                known = ", ".join(repr(t.name) for t in Team.select().order_by(Team.name))
                raise click.ClickException(
                    f"there is no team named {name!r} (teams: {known}); an admin adds teams "
                    "under Admin → Teams")
            teams.append(team)
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with app.app_context(), database.connection_context():
        try:
            agent = people.create_agent(username, display_name, password, email=email,
                                        role=role, teams=teams)
        except DomainError as error:
            raise click.ClickException(str(error)) from None
    click.echo(f"Added {agent.role} {agent.username}.")


def _password_from_stdin() -> str:
    """The first line of standard input, without its line ending: a script pipes the password
    in (``printf '%s\\n' "$PW" | helpdesk user add …``) where ``ps`` and shell history cannot
    see it. An empty line is refused rather than tried as a password."""
    line = sys.stdin.readline()
    password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        raise click.UsageError("--password-stdin read no password (an empty first line of input)")
    return password


@main.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Load the demo data (teams, agents, ~200 incidents) into an empty database."""
    from helpdesk import demo as demo_data
    from helpdesk.db import database
    from helpdesk.models import Incident

    app = _ready(ctx)
    with app.app_context(), database.connection_context():
        if Incident.select().exists():
            raise click.ClickException("the database already holds incidents; demo data "
                                       "goes into a new instance only")
        kept = demo_data.seed(app.extensions["helpdesk"], progress=True)
    click.echo(demo_data.LOGIN_HELP)
    if kept:
        keeps = "keeps the password it had" if len(kept) == 1 else "keep the passwords they had"
        click.echo(f"  ({', '.join(kept)} existed already and {keeps}.)")


class _HeldRecords(logging.Handler):
    """Warnings logged while a short command builds the app, for the command to say itself."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List every plugin: where it came from, its hooks and records, enabled or disabled."""
    import json

    # Start-up logs what it finds wrong; this command says it once, as its own warnings.
    held = _HeldRecords()
    app_logger = logging.getLogger("helpdesk")
    app_logger.addHandler(held)
    propagate, app_logger.propagate = app_logger.propagate, False
    try:
        state = _app(ctx).extensions["helpdesk"]
    finally:
        app_logger.removeHandler(held)
        app_logger.propagate = propagate
    infos = [info.as_dict() for info in state.plugins.values()]
    said = list(state.unclaimed_settings) + [f"plugin {plugin!r} ({hook}): {problem}"
                                             for plugin, hook, problem in state.plugin_problems]
    said += [message for message in (record.getMessage() for record in held.records)
             if not any(message in text or text in message for text in said)]
    for warning in said:
        click.echo(f"Warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return
    for info in infos:
        version = f" {info['version']}" if info["version"] else ""
        state_label = "enabled" if info["enabled"] else "DISABLED"
        click.echo(f"{info['name']}{version} [{info['source']}, {state_label}]")
        if info["hooks"]:
            click.echo(f"    hooks: {', '.join(info['hooks'])}")
        for kind, names in info["records"].items():
            click.echo(f"    {kind}: {', '.join(names)}")


@main.group()
def channels() -> None:
    """Notification channel types."""


@channels.command("test")
@click.argument("channel")
@click.argument("recipient")
@click.pass_context
def channels_test(ctx: click.Context, channel: str, recipient: str) -> None:
    """Send a test message through CHANNEL to RECIPIENT, now, and say what happened."""
    from helpdesk.notify.outbox import send_now, send_test_key
    from helpdesk.records import DeliveryError, Message

    app = _ready(ctx)
    with app.app_context():
        try:
            send_now(app.extensions["helpdesk"], channel, Message(
                recipient=recipient, subject="Helpdesk test message",
                text="If you can read this, the channel works.",
                idempotency_key=send_test_key(channel)))
        except DeliveryError as error:
            kind = "permanent" if error.permanent else "temporary"
            raise click.ClickException(f"{channel}: {kind} delivery failure: {error}") from None
        except Exception as error:  # noqa: BLE001 - a test says what broke: a plugin's bug, a bad recipient
            hint = " (its recipient is an agent's id)" if channel == "inapp" else ""
            raise click.ClickException(f"{channel}: the channel failed: {type(error).__name__}: {error}"
                                       f"{hint}") from None
    click.echo(f"{channel}: sent to {recipient}.")


@main.group("sla")
def sla_group() -> None:
    """SLA checks."""


@sla_group.command("check")
@click.option("--at", "at_text", default=None, metavar="TIME",
              help="Run the pass as if it were TIME (ISO 8601, UTC), e.g. 2026-03-09T14:00.")
@click.option("--dry-run", is_flag=True, help="Only list what would fire.")
@click.pass_context
def sla_check(ctx: click.Context, at_text: str | None, dry_run: bool) -> None:
    """Run one SLA check pass now (for cron-only installs) or show what would fire."""
    import datetime as dt

    from helpdesk import sla
    from helpdesk.clock import now
    from helpdesk.db import database
    from helpdesk.reports import FIRST_DAY, LAST_DAY

    try:
        at = dt.datetime.fromisoformat(at_text) if at_text else now()
        if at.tzinfo is not None:
            at = at.astimezone(dt.UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise click.BadParameter(f"{at_text!r} is not an ISO 8601 time", param_hint="--at") from None
    if not FIRST_DAY <= at.date() <= LAST_DAY:  # the reports' bounds: business time must reach past it
        raise click.BadParameter(f"{at_text!r}: choose a time from 1970 to 9000", param_hint="--at")
    if not dry_run and at > now() + dt.timedelta(minutes=1):
        # A real pass at a later time would record breaches and run escalation steps early.
        raise click.BadParameter(f"{at_text!r} is later than now: a real check would fire breaches and "
                                 "escalation steps ahead of time; add --dry-run to see what would fire then",
                                 param_hint="--at")
    app = _ready(ctx)
    with app.app_context(), database.connection_context():
        state = app.extensions["helpdesk"]
        if dry_run:
            from helpdesk.escalation import engine

            due = sla.preview(state, at)
            for incident_id, target, kind, point in due:
                click.echo(f"INC-{incident_id} {target} {kind}"
                           + (f" {point / 10:g}%" if kind == "warning" else ""))
            # (levels as the clocks stand now: an event above may still change what comes due)
            levels = engine.preview(state, at)
            for incident_id, what, policy in levels:
                click.echo(f"INC-{incident_id} escalation {what} of {policy}")
            click.echo(f"{len(due)} SLA event(s) would fire and {len(levels)} escalation level(s) "
                       f"would run at {at:%Y-%m-%d %H:%M} UTC.")
            return
        from helpdesk.models import EscalationRun

        before = EscalationRun.select(peewee.fn.MAX(EscalationRun.id)).scalar() or 0
        fired = sla.check(state, at)  # the same pass runs the escalation levels now due
        ran = EscalationRun.select().where((EscalationRun.id > before) & (EscalationRun.at == at)
                                           & ~EscalationRun.manual).count()  # this pass's, not a worker's
    click.echo(f"{fired} SLA event(s) fired and {ran} escalation level(s) run at {at:%Y-%m-%d %H:%M} UTC.")


@sla_group.command("audit")
@click.argument("references", nargs=-1)
@click.pass_context
def sla_audit(ctx: click.Context, references: tuple[str, ...]) -> None:
    """Re-derive SLA clocks from the timeline and report any difference (all incidents by default)."""
    from helpdesk import sla
    from helpdesk.db import database
    from helpdesk.models import Incident, SlaClock

    app = _ready(ctx)
    with app.app_context(), database.connection_context():
        state = app.extensions["helpdesk"]
        if references:
            ids = []
            for reference in references:
                number = reference.upper().removeprefix("INC-")
                if not (number.isascii() and number.isdigit() and len(number) <= 18):
                    raise click.BadParameter(f"{reference!r} is not an incident reference")
                ids.append(int(number))
        else:
            ids = [row.incident_id for row in SlaClock.select(SlaClock.incident).distinct()]
        problems, audited = [], set()
        for incident in Incident.select().where(Incident.id.in_(ids)):
            audited.add(incident.id)
            problems += sla.audit(state, incident)
    missing = [f"INC-{number}" for number in ids if number not in audited]
    if missing:
        problems.append(f"no such incident: {', '.join(missing)}")
    for problem in problems:
        click.echo(problem)
    click.echo(f"{len(audited)} incident(s) audited, {len(problems)} difference(s).")
    if problems:
        ctx.exit(1)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply pending schema migrations."""
    from helpdesk import schema
    from helpdesk.db import database

    app = _app(ctx)
    _warn_exposed(app.extensions["helpdesk"].settings, lambda text: click.echo(f"Warning: {text}", err=True))
    try:
        with database.connection_context():
            applied = schema.upgrade(database)
    except peewee.OperationalError as error:
        raise _cannot_open(app.extensions["helpdesk"].settings.database_url, error) from None
    click.echo(f"Applied: {', '.join(applied)}." if applied else "The schema is up to date.")
    if any(name.startswith("0015_") for name in applied):  # search and reports start from the data
        ctx.invoke(search_rebuild)
    if any(name.startswith(("0015_", "0022_")) for name in applied):  # facts and their day rollups
        ctx.invoke(reports_rebuild)


@db.command("copy")
@click.option("--from", "source", required=True, metavar="URL", help="The database to copy, e.g. sqlite:////var/lib/helpdesk/helpdesk.db.")
@click.option("--to", "target", required=True, metavar="URL",
              help="A new, empty database, e.g. postgresql://helpdesk@db/helpdesk.")
def db_copy(source: str, target: str) -> None:
    """Copy every table to a new database (e.g. SQLite to PostgreSQL) and verify the copy.

    Stop the web and worker processes first, so nothing changes during the copy; then point
    HELPDESK_DATABASE_URL at the target.
    """
    from helpdesk.db_copy import CopyError, copy_database

    try:
        result = copy_database(source, target,
                               progress=lambda table, rows: click.echo(f"  {table}: {rows} row(s)"))
    except (CopyError, ValueError) as error:
        said = "the copy is not usable" if getattr(error, "started", False) else "nothing was copied"
        raise click.ClickException(f"{said}: {error}") from None
    click.echo(f"Copied {result.rows} rows in {len(result.tables)} tables; counts and checksums "
               f"match. Search index rebuilt for {result.indexed} incident(s).")


@main.group("search")
def search_group() -> None:
    """Full-text search index."""


@search_group.command("rebuild")
@click.pass_context
def search_rebuild(ctx: click.Context) -> None:
    """Rebuild every incident's search document (after upgrading to search, or a restore)."""
    from helpdesk import search
    from helpdesk.db import database

    app = _ready(ctx)
    with app.app_context(), database.connection_context():
        count = search.rebuild()
    click.echo(f"Indexed {count} incident(s).")


@main.group("reports")
def reports_group() -> None:
    """Report facts."""


@reports_group.command("rebuild")
@click.pass_context
def reports_rebuild(ctx: click.Context) -> None:
    """Recount every incident's report facts and the per-day aggregates reports read (after
    upgrading, a restore or a calendar change)."""
    from helpdesk import reports
    from helpdesk.db import database

    app = _ready(ctx)
    with app.app_context(), database.connection_context():
        count = reports.rebuild(app.extensions["helpdesk"])
    click.echo(f"Counted {count} incident(s).")


@main.command()
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def backup(ctx: click.Context, target: Path) -> None:
    """Copy the live SQLite database to TARGET (PostgreSQL: use pg_dump)."""
    from urllib.parse import unquote

    from helpdesk.backup import BackupError, backup_sqlite

    url = _app(ctx).extensions["helpdesk"].settings.database_url
    if not url.startswith("sqlite:///"):
        raise click.ClickException("this database is PostgreSQL: back it up with "
                                   "pg_dump --format=custom (see the README, Deploying)")
    try:
        result = backup_sqlite(Path(unquote(url[len("sqlite:///"):])), target)
    except BackupError as error:
        raise click.ClickException(f"no backup made: {error}") from None
    click.echo(f"Backed up {result.incidents} incidents to {result.path} ({result.bytes:,} bytes).")


from helpdesk.escalation.cli import escalation_group  # noqa: E402 - the group is defined in its module

main.add_command(escalation_group)


@main.command("mail-in")
@click.pass_context
def mail_in(ctx: click.Context) -> None:
    """Take one e-mail on stdin (for an MTA pipe); exit codes follow sysexits.h."""
    from helpdesk.mail.cli import run

    sys.exit(run((ctx.obj or {}).get("instance_path"), sys.stdin.buffer))


@main.command("mail-poll")
@click.argument("names", nargs=-1)
@click.pass_context
def mail_poll(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Poll the configured IMAP mailboxes once (all, or those NAMES)."""
    from helpdesk.db import database
    from helpdesk.mail import imap

    app = _ready(ctx)
    state = app.extensions["helpdesk"]
    try:
        boxes = [box for box in imap.mailboxes(state) if not names or box.name in names]
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    if not boxes:
        raise click.ClickException("no IMAP mailbox is configured ([plugins.imap.mailboxes.<name>])")
    stopped = False
    with app.app_context(), database.connection_context():
        for box in boxes:
            polled = imap.poll(state, box)
            click.echo(f"{box.name}: {polled.summary()}")
            stopped = stopped or bool(polled.stopped)
    if stopped:
        ctx.exit(75)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
