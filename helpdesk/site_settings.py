"""Settings changed in the browser: stored in the database, audited, current in every process.

An admin (or, for SLAs, a team lead) saves plugin settings on the admin pages: business
hours, holidays, SLA targets, mail and channel settings. They are stored as
:class:`~helpdesk.models.StoredSetting` rows (``<plugin>.<key>``, a JSON value) and every
change writes a :class:`~helpdesk.models.ConfigChange` row in the same transaction (who,
when, old → new, secrets redacted). The highest audit id is the **settings revision**: each
process compares it (one query on a primary key) before a request or a task, and when it
moved reloads the stored values and rebuilds the records plugins register from settings
(calendars, SLA policies, channel types). So a change takes effect in every web worker and
Huey worker without a restart.

Precedence, key by key: a value from the instance file or the environment (or given to
``create_app``) wins and is shown as locked; then the stored value; then the plugin's
default. Values are checked before they are saved by the same code start-up runs: the
plugins' registration hooks and ``helpdesk_check_settings``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import peewee
from huey import Huey

from helpdesk import plugins
from helpdesk.config import ConfigError
from helpdesk.context import Context
from helpdesk.db import Statement, database, write_transaction
from helpdesk.errors import PermissionDenied
from helpdesk.models import Agent, ConfigChange, StoredSetting, utcnow
from helpdesk.plugins import Registry

logger = logging.getLogger(__name__)
_refresh_lock = threading.Lock()
REDACTED = "••••••"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PRIORITY_KEYS = ("p1", "p2", "p3", "p4")


class Invalid(Exception):
    """Values refused, with a message per field name (nothing was saved)."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


@dataclass(frozen=True)
class Field:
    """One setting an admin page edits: ``<plugin>.<key>``, how it is typed and checked."""

    plugin: str
    key: str
    label: str
    kind: str = "text"  # text, int, choice, secret, lines
    help: str = ""
    choices: tuple[str, ...] = ()
    parse: Callable[[str], Any] | None = None
    default: str = ""  # what the plugin uses when nothing is set (shown as a placeholder)
    #: Where the channel's secret is sent: changing it needs the secret typed again.
    carries_secret: bool = False

    @property
    def name(self) -> str:
        return f"{self.plugin}.{self.key}"

    @property
    def secret(self) -> bool:
        return self.kind == "secret"


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or not 0 < int(text) < 65536:
        raise ValueError("a port from 1 to 65535")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("a number of seconds") from None
    if not 0 < value <= 120:
        raise ValueError("from 1 to 120 seconds")
    return value


def _mailbox(text: str) -> str:
    from helpdesk.mail_headers import UnsafeHeader, parse_mailbox

    try:
        parse_mailbox(text)
    except UnsafeHeader as error:
        raise ValueError(str(error)) from None
    if "@" not in text:
        raise ValueError("an address such as Helpdesk <helpdesk@example.com>")
    return text


def _host(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9.-]+|\[[0-9a-fA-F:.]+\]", text):
        raise ValueError("a host name or address such as smtp.example.com")
    return text


def _urls(text: str) -> list[str]:
    urls = [line.strip() for line in text.splitlines() if line.strip()]
    for url in urls:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
    return urls


def _names(text: str) -> list[str]:
    return [item.strip() for item in re.split(r"[,\n]", text) if item.strip()]


#: The channel settings the Channels page edits, per channel (what each plugin reads).
CHANNEL_FIELDS: dict[str, tuple[Field, ...]] = {
    "email": (
        Field("email", "host", "SMTP host", help="Without a host, e-mail is off.", parse=_host,
              carries_secret=True),
        Field("email", "port", "Port", "int", "25, 587 (STARTTLS) or 465 (TLS)", parse=_port,
              default="25 (465 with TLS)", carries_secret=True),
        Field("email", "security", "Security", "choice", choices=("none", "starttls", "tls"), default="none",
              carries_secret=True),
        Field("email", "username", "User name", help="Leave empty for no login."),
        Field("email", "password", "Password", "secret"),
        Field("email", "from_address", "From", help="Helpdesk <helpdesk@example.com>", parse=_mailbox),
    ),
    "webhook": (
        Field("webhook", "urls", "URLs", "lines", "One per line; every incident event goes to each.",
              parse=_urls),
        Field("webhook", "secret", "Signing secret", "secret"),
        Field("webhook", "timeout", "Timeout (seconds)", "int", parse=_seconds, default="10"),
        Field("webhook", "allow_private", "Private hosts allowed", "lines",
              "Hosts or networks on the private network, one per line.", parse=_names),
    ),
    "chat": (
        Field("chat", "timeout", "Timeout (seconds)", "int", parse=_seconds, default="10"),
        Field("chat", "allow_private", "Private hosts allowed", "lines",
              "A self-hosted chat server on the private network, one per line.", parse=_names),
    ),
}
CHANNEL_TITLES = {"email": "E-mail (SMTP)", "webhook": "Webhook (signed JSON)",
                  "chat": "Chat (Slack-compatible webhook)"}
#: Keys the SLA page edits (business_hours and sla_priority read them).
SLA_KEYS = ("business_hours.time_zone", "business_hours.hours", "business_hours.holidays",
            "sla_priority.response", "sla_priority.resolution")
SECRETS = {f.name for fields in CHANNEL_FIELDS.values() for f in fields if f.secret}


# -- where a value comes from ----------------------------------------------------------------


def locked_by(ctx: Context, name: str) -> str | None:
    """Where a value that wins over the browser comes from (file, variable), or None."""
    plugin, _, key = name.partition(".")
    sources = ctx.settings.sources
    found = sources.get(f"{plugin}.{key}") or sources.get(f"{plugin}.{key}_file")
    if found is None and key in ctx.settings.plugins.get(plugin, {}):
        found = "configuration"
    return found


def effective(ctx: Context, name: str, default: Any = None) -> Any:
    """The value in force: file or environment, else stored, else ``default``."""
    plugin, _, key = name.partition(".")
    return ctx.plugin_settings(plugin).get(key, default)


def holiday_list(ctx: Context) -> list[Any]:
    """The holidays configured for the business calendar (public holidays from ``country``
    are added by the plugin and are not listed here)."""
    current = effective(ctx, "business_hours.holidays") or []
    if isinstance(current, str):
        current = [h.strip() for h in current.split(",") if h.strip()]
    return list(current)


def stored_value(ctx: Context, name: str, default: Any = None) -> Any:
    plugin, _, key = name.partition(".")
    return ctx.stored.get(plugin, {}).get(key, default)


# -- the revision and the cached copy --------------------------------------------------------


def revision() -> int:
    """The settings revision: the highest audit id (0 before any change). One indexed query."""
    return _REVISION.execute().fetchone()[0] or 0


_REVISION = Statement(lambda: ConfigChange.select(peewee.fn.MAX(ConfigChange.id)))


def load() -> dict[str, dict[str, Any]]:
    stored: dict[str, dict[str, Any]] = {}
    for row in StoredSetting.select(StoredSetting.key, StoredSetting.value):
        plugin, _, key = row.key.partition(".")
        stored.setdefault(plugin, {})[key] = json.loads(row.value)
    return stored


def build_registry(ctx: Context) -> Registry:
    """Call the registration hooks again with ``ctx`` (as start-up does) into a new registry."""
    return plugins.registrations(ctx.pm, ctx, Registry())


def refresh(ctx: Context, force: bool = False, current: int | None = None) -> bool:
    """Bring this process's copy up to date if the revision moved; True when it reloaded.

    Costs one query when nothing changed, none when the caller read ``current`` (the
    revision) moments ago. The registry is rebuilt in place, so code holding
    ``ctx.registry`` sees the new calendars, policies and channel types at once.
    """
    current = revision() if current is None else current
    if current == ctx.settings_revision and not force:
        return False
    if current == 0 and not ctx.stored and not force:
        ctx.settings_revision = 0  # nothing was ever saved in the browser: nothing to load
        return False
    with _refresh_lock:
        if current == ctx.settings_revision and not force:
            return False
        stored = load()
        candidate = dataclasses.replace(ctx, stored=stored, registry=Registry())
        try:
            registry = build_registry(candidate)
        except Exception:  # a stored value the file or environment now contradicts: keep the old
            logger.exception("stored settings at revision %s could not be applied", current)
            ctx.settings_revision = current
            return False
        ctx.stored = stored
        ctx.registry.records, ctx.registry.owners = registry.records, registry.owners
        plugins.note_records(ctx.plugins, registry)
        ctx.settings_revision = current
        return True


def install(ctx: Context, huey: Huey | None) -> None:
    """At start-up: apply what is stored (if the database is migrated yet) and check the
    revision before every background task, as the web layer does before every request."""
    was_closed = database.is_closed()
    try:
        if "config_change" in database.get_tables():
            refresh(ctx)
    except peewee.DatabaseError as error:  # unreachable now: the first request or task loads them
        logger.warning("stored settings not loaded at start-up (%s); they load on first use", error)
    finally:
        if was_closed and not database.is_closed():
            database.close()
    if huey is None:
        return

    @huey.pre_execute()
    def fresh_settings(task: Any) -> None:
        was_closed = database.is_closed()
        try:
            refresh(ctx)
        except Exception:  # the task itself will meet (and report) a database problem
            logger.exception("could not check the settings revision before task %s", task)
        finally:
            if was_closed and not database.is_closed() and not database.in_transaction():
                database.close()


# -- checking and saving ---------------------------------------------------------------------


def check(ctx: Context, stored: dict[str, dict[str, Any]]) -> None:
    """Raise :class:`ConfigError` unless the plugins accept ``stored``: the registration
    hooks and ``helpdesk_check_settings`` run exactly as at start-up, on a copy."""
    candidate = dataclasses.replace(ctx, stored=stored, registry=Registry())
    registry = build_registry(candidate)
    candidate.registry = registry
    plugins.check_settings(ctx.pm, registry, candidate)


def field_for_error(message: str, names: list[str]) -> str | None:
    """The field a start-up error names (``HELPDESK_PLUGINS__EMAIL__PORT: …``), if any."""
    upper = message.upper()
    for name in sorted(names, key=len, reverse=True):
        plugin, _, key = name.partition(".")
        if f"__{plugin.upper()}__{key.upper()}" in upper or f"__{key.upper()}:" in upper:
            return name
    return None


def _shown(name: str, value: Any) -> str:
    if value is None:
        return "(default)"
    if name in SECRETS:
        return REDACTED
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _secret_follows(ctx: Context, changes: Mapping[str, Any]) -> None:
    """Refuse to send a kept secret somewhere new: whoever moves the server (host, port,
    security) must type the secret again, or else "write-only" would only mean "readable by
    pointing the channel at your own server"."""
    for fields in CHANNEL_FIELDS.values():
        secret = next((spec for spec in fields if spec.secret), None)
        if secret is None or secret.name in changes:
            continue  # no secret, or a new one given (or the old one removed) in the same save
        moved = [spec.name for spec in fields if spec.carries_secret and spec.name in changes
                 and changes[spec.name] != effective(ctx, spec.name)]
        if not moved:
            continue
        try:
            kept = ctx.plugin_settings(secret.plugin).secret(secret.key) is not None
        except ConfigError:
            kept = True  # a secret file that cannot be read is still a secret
        if not kept:
            continue
        source = locked_by(ctx, secret.name)
        if source:
            raise Invalid({moved[0]: f"The {secret.label.lower()} is set in {source}: "
                                     "change this there too."})
        raise Invalid({secret.name: f"Type the {secret.label.lower()} again (or remove it): it would "
                                    "be sent to the new server."})


#: Why a team lead is refused: these settings apply to every team.
ADMINS_ONLY = ("Only an admin can change organisation-wide settings (business hours, holidays, SLA "
               "targets, channels): they apply to every team. Team leads can view them.")


def check_may_change(actor: Agent | None) -> None:
    """Refuse (:class:`PermissionDenied`, 403) anyone but an admin; no actor is the operator at
    the command line or a start-up step, who may."""
    if actor is not None and not actor.is_admin:
        raise PermissionDenied(ADMINS_ONLY)


def save(ctx: Context, changes: Mapping[str, Any], actor: Agent | None) -> list[str]:
    """Store ``changes`` (``"<plugin>.<key>"`` -> value, ``None`` to go back to the default)
    after the plugins' own checks; audit each change; return the names that changed.

    Raises :class:`PermissionDenied` unless ``actor`` is an admin (every stored setting is
    organisation-wide), and :class:`Invalid` (a message per field) for a locked name or a
    value the plugins refuse; nothing is saved then.
    """
    check_may_change(actor)
    locked = {name: source for name in changes if (source := locked_by(ctx, name))}
    if locked:
        raise Invalid({name: f"set in {source}; change it there" for name, source in locked.items()})
    candidate = {plugin: dict(values) for plugin, values in ctx.stored.items()}
    changed = []
    for name, value in changes.items():
        plugin, _, key = name.partition(".")
        old = candidate.get(plugin, {}).get(key)
        if old == value:
            continue
        changed.append(name)
        if value is None:
            candidate.get(plugin, {}).pop(key, None)
        else:
            candidate.setdefault(plugin, {})[key] = value
    if not changed:
        return []
    _secret_follows(ctx, changes)
    try:
        check(ctx, candidate)
    except (ConfigError, plugins.PluginError) as error:  # refused as at start-up: nothing saved
        field = field_for_error(str(error), list(changes)) or next(iter(changes))
        raise Invalid({field: _plain(str(error))}) from None
    with write_transaction():
        for name in changed:
            plugin, _, key = name.partition(".")
            old_row = StoredSetting.get_or_none(StoredSetting.key == name)
            old = json.loads(old_row.value) if old_row else None
            new = candidate.get(plugin, {}).get(key)
            if new is None:
                StoredSetting.delete().where(StoredSetting.key == name).execute()
            elif old_row is None:
                StoredSetting.create(key=name, value=json.dumps(new), updated_by=actor)
            else:
                StoredSetting.update(value=json.dumps(new), updated_at=utcnow(), updated_by=actor) \
                    .where(StoredSetting.key == name).execute()
            record(name, _shown(name, old), _shown(name, new) if name not in SECRETS or new is None
                   else REDACTED + " (changed)", actor)
    refresh(ctx)
    return changed


def _plain(message: str) -> str:
    """A start-up message without the variable name the admin never typed."""
    return re.sub(r"^HELPDESK_[A-Z0-9_/]+:\s*", "", message)


def record(key: str, old: str, new: str, actor: Agent | None) -> None:
    """One audit row (inside the caller's transaction); it also moves the revision."""
    ConfigChange.create(key=key[:160], old_value=old, new_value=new, actor=actor)


def changes(prefixes: tuple[str, ...] = (), limit: int = 50) -> list[ConfigChange]:
    """The latest audit rows, optionally only for keys starting with one of ``prefixes``."""
    query = ConfigChange.select(ConfigChange, Agent).join(Agent, peewee.JOIN.LEFT_OUTER)
    if prefixes:
        condition = None
        for prefix in prefixes:
            term = ConfigChange.key.startswith(prefix)
            condition = term if condition is None else condition | term
        query = query.where(condition)
    return list(query.order_by(ConfigChange.id.desc()).limit(limit))


# -- parsing the SLA forms -------------------------------------------------------------------


def parse_zone(text: str) -> str:
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("an IANA time zone such as Europe/London") from None
    return text


def parse_window(opens: str, closes: str) -> str:
    try:
        begin, end = dt.time.fromisoformat(opens), dt.time.fromisoformat(closes)
    except ValueError:
        raise ValueError("times as HH:MM") from None
    if begin == end:
        raise ValueError("opening and closing are the same time")
    return f"{begin:%H:%M}-{end:%H:%M}"


def parse_duration(text: str) -> str:
    if not re.fullmatch(r"\s*\d+(\.\d+)?\s*(m|h|d|bd)\s*", text) or float(re.sub(r"[a-z\s]", "", text)) <= 0:
        raise ValueError("a duration such as 15m, 8h, 3d or 2bd")
    return text.replace(" ", "")
