"""One configuration loader for the web app, the worker and the CLI.

Settings come from, in increasing precedence: built-in defaults, the instance
file (``<instance>/helpdesk.toml``), ``HELPDESK_*`` environment variables, and
explicit overrides (tests). Every value is parsed strictly: a bad value stops
start-up with a :class:`ConfigError` that names the variable.
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ENV_PREFIX = "HELPDESK_"
CONFIG_FILE = "helpdesk.toml"
SECRET_FILE = "secret_key"  # noqa: S105 - a file name, not a secret
# Environment names that are not settings but are read elsewhere.
_ENV_NOT_SETTINGS = {"INSTANCE", "RUN_AS_ROOT"}
_ENV_NOT_SETTINGS_PREFIXES = ("TEST_", "BENCH_")
PLUGIN_ENV_PREFIX = "PLUGINS__"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


def _database_url(value: str) -> str:
    scheme = urlsplit(value).scheme
    if scheme == "sqlite" and value.startswith("sqlite:///") and len(value) > len("sqlite:///"):
        return value
    if scheme in {"postgres", "postgresql"} and urlsplit(value).path.strip("/"):
        return value
    raise ValueError("expected sqlite:///path/to/file.db or postgresql://user@host/dbname")


def _queue_url(value: str) -> str:
    scheme = urlsplit(value).scheme
    if value == "memory" or (scheme == "sqlite" and len(value) > len("sqlite:///")):
        return value
    if scheme in {"redis", "rediss"}:
        return value
    raise ValueError("expected sqlite:///path/to/queue.db, redis://host:port/db or memory")


def _base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("expected an absolute http:// or https:// URL")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked for it
    except ValueError:
        raise ValueError("expected an absolute http:// or https:// URL with a port from 1 to "
                         "65535, if any") from None
    if not parts.hostname:
        raise ValueError("expected an absolute http:// or https:// URL naming a host")
    if parts.path.strip("/") or parts.query or parts.fragment:
        # The pages link to /login, /static/…: under a path behind a proxy they would break
        # while the links in mail (built on base_url) worked.
        raise ValueError("expected the address of a site's root, such as https://help.example.com: "
                         "the helpdesk is served at /, not under a path; give it a host name of its own")
    return value.rstrip("/")


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("expected an IANA time zone such as Europe/London") from None
    return value


def _non_empty(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def _int_between(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("expected a whole number")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError("expected a whole number") from None
        if not low <= number <= high:
            raise ValueError(f"expected a number from {low} to {high}")
        return number

    return parse


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _one_of(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if str(value) not in choices:
            raise ValueError(f"expected one of: {', '.join(choices)}")
        return str(value)

    return parse


def _mail_address(value: str) -> str:
    """An e-mail address, given bare or as ``Name <address>``: the bare address is kept, as
    inbound mail compares it with senders (a display form, kept whole, would never match and
    mail from the desk's own mailbox would be taken as a customer's)."""
    text = value.strip()
    if not text:
        return ""
    address = parseaddr(text)[1].strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in address):
        raise ValueError("expected an e-mail address such as support@example.com")
    return address


#: The policy the built-in default chooses for incidents no plugin picks one for, unless
#: ``default_sla_policy`` names another.
DEFAULT_SLA_POLICY = "priority"
#: ``default_sla_policy = "none"``: the desk runs without an SLA by choice (no clocks, no alert).
NO_SLA = "none"


def _sla_policy_name(value: str) -> str:
    """A policy name, or ``none``. Empty is refused rather than read as "none": an empty
    environment variable is more often a template that lost its value than a decision."""
    name = value.strip()
    if not name:
        raise ValueError(f'empty; name an SLA policy (default {DEFAULT_SLA_POLICY!r}), or write '
                         f'"{NO_SLA}" for no SLA by default')
    if name.lower() == NO_SLA:
        return NO_SLA
    if len(name) > 100 or any(not char.isprintable() for char in name):
        raise ValueError("expected the name of an SLA policy (as the SLA page lists them) or \"none\"")
    return name


def _statuses(value: Any) -> tuple[str, ...]:
    names = _name_list(value)
    allowed = {"new", "assigned", "in_progress", "pending"}
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ValueError(
            f"unknown or final status {', '.join(unknown)}; choose from {', '.join(sorted(allowed))}"
        )
    return names


#: Words found in the sample keys of READMEs, compose files and framework templates; a key
#: holding one was copied from an example, so everyone who read that example can sign sessions.
_SAMPLE_KEY_WORDS = ("changeme", "change-me", "change_me", "replace", "example", "sample",
                     "insecure", "your-secret", "your_secret", "secretkey", "secret-key",
                     "secret_key", "placeholder", "default", "notsecret", "not-secret")


def _secret_key(value: str) -> str:
    if len(value.strip()) < 32:
        raise ValueError("must be at least 32 characters (run `helpdesk init` to generate one)")
    lowered = value.lower()
    sample = next((word for word in _SAMPLE_KEY_WORDS if word in lowered), None)
    if sample:
        raise ValueError(f"looks like a sample key (it contains {sample!r}); "
                         "generate one: `python -c 'import secrets; print(secrets.token_urlsafe(48))'`")
    return value


_HOST = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?|\[[0-9a-f:.]+\](:[0-9]{1,5})?")


def _host_list(value: Any) -> tuple[str, ...]:
    hosts = tuple(name.lower().rstrip(".") for name in _name_list(value))
    for host in hosts:
        if not _HOST.fullmatch(host):
            raise ValueError(f"{host!r} is not a host name (example.com, *.example.com, host:8080)")
    return hosts


def _name_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        items = [str(v) for v in value]
    else:
        items = str(value).split(",")
    return tuple(item.strip() for item in items if item.strip())


def _setting(parse: Callable[[Any], Any], default: Any = None, doc: str = "") -> Any:
    return field(default=default, metadata={"parse": parse, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """Every setting of a helpdesk instance, already validated."""

    instance_path: Path = Path("instance")
    database_url: str = _setting(_database_url, doc="sqlite:///… (default) or postgresql://…")
    queue_url: str = _setting(_queue_url, doc="sqlite:///… (default), redis://… or memory")
    secret_key: str = _setting(_secret_key, doc="signs sessions; generated by `helpdesk init`")
    base_url: str = _setting(_base_url, "http://127.0.0.1:5000", "public address of the server")
    service_desk_team: str = _setting(_non_empty, "Service Desk", "team that owns the pool")
    time_zone: str = _setting(_time_zone, "UTC", "default display time zone (IANA name)")
    host: str = _setting(_non_empty, "127.0.0.1", "address `helpdesk serve` listens on")
    port: int = _setting(_int_between(1, 65535), 5000, "port `helpdesk serve` listens on")
    threads: int = _setting(_int_between(1, 256), 8, "web server threads")
    workers: int = _setting(_int_between(1, 128), 16, "background worker threads")
    # One attachment of attachment_max_bytes (10 MiB) and the form around it fit in a request.
    max_request_bytes: int = _setting(_int_between(1024, 1 << 30), 12 * 1024 * 1024, "")
    trusted_proxies: int = _setting(_int_between(0, 5), 0, "reverse proxies in front (X-Forwarded-*)")
    login_max_failures: int = _setting(_int_between(1, 1000), 5, "failed logins per window")
    login_window_seconds: int = _setting(_int_between(1, 86400), 900, "rate-limit window")
    login_account_max_failures: int = _setting(_int_between(1, 100000), 100,
                                               "failed logins per user name from all addresses")
    session_idle_seconds: int = _setting(_int_between(60, 30 * 86400), 8 * 3600,
                                         "a session unused this long ends")
    session_lifetime_seconds: int = _setting(_int_between(60, 365 * 86400), 7 * 86400,
                                             "a session ends this long after logging in")
    allowed_hosts: tuple[str, ...] = _setting(_host_list, (), "host names served besides base_url's")
    page_size: int = _setting(_int_between(1, 200), 25, "rows per queue page")
    queue_refresh_seconds: int = _setting(_int_between(5, 3600), 30, "live refresh of queues")
    disabled_plugins: tuple[str, ...] = _setting(_name_list, (), "plugin names to block")
    sla_response_met_by: str = _setting(_one_of("reply", "action"), "reply",
                                        "what meets the response target")
    sla_pause_statuses: tuple[str, ...] = _setting(_statuses, ("pending",), "statuses that pause SLAs")
    default_sla_policy: str = _setting(_sla_policy_name, DEFAULT_SLA_POLICY,
                                       'SLA policy of incidents no plugin picks one for ("none": no SLA)')
    auto_close_days: int = _setting(_int_between(0, 365), 5, "close resolved incidents after (0: never)")
    database_busy_seconds: int = _setting(_int_between(1, 600), 10,
                                          "longest wait for the database before answering 503")
    request_statement_seconds: int = _setting(_int_between(0, 3600), 30,
                                              "PostgreSQL: a web request's statement running longer "
                                              "is stopped (503); 0: no limit")
    search_seconds: int = _setting(_int_between(1, 600), 10,
                                   "a search running longer is stopped and says so")
    shutdown_seconds: int = _setting(_int_between(1, 3600), 30,
                                     "on SIGTERM, how long requests and tasks in flight may finish")
    lease_seconds: int = _setting(_int_between(1, 3600), 120,
                                  "a worker's claim on periodic work or a delivery, renewed while it works")
    delivery_retry_hours: int = _setting(_int_between(1, 14 * 24), 24,
                                         "a failing notification or plugin event is retried this long")
    support_address: str = _setting(_mail_address, "",
                                    "the support mailbox customers write to (inbound mail)")
    mail_max_bytes: int = _setting(_int_between(1024, 1 << 30), 30 * 1024 * 1024,
                                   "larger inbound mail is kept raw and quarantined")
    mail_auto_reply_limit: int = _setting(_int_between(0, 1000), 5,
                                          "acknowledgements per sender per hour (loop brake)")
    attachment_max_bytes: int = _setting(_int_between(1024, 1 << 30), 10 * 1024 * 1024,
                                         "largest attachment kept (mail and portal)")
    mail_attachments_max_bytes: int = _setting(_int_between(0, 1 << 30), 10 * 1024 * 1024,
                                               "most bytes of files attached to one outbound mail; "
                                               "beyond, the mail lists them and points to the portal")
    testing: bool = _setting(_boolean, False, "test mode: tasks run immediately")
    plugins: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: Where each plugin setting came from, ``"<plugin>.<key>"`` -> the instance file's path,
    #: the environment variable or "configuration given to create_app": such a value wins over
    #: one stored in the browser, which shows it as locked.
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")


def setting_names() -> list[str]:
    """Names of the settings (lower case), as used in the instance file."""
    return [f.name for f in fields(Settings) if "parse" in f.metadata]


def _parse(name: str, value: Any, source: str) -> Any:
    spec = next(f for f in fields(Settings) if f.name == name)
    kind = spec.type if isinstance(spec.type, str) else getattr(spec.type, "__name__", "")
    # A TOML file can give any type: text where text is meant, a whole number where one is
    # (5000.7 is not a port), each said plainly rather than coerced or failing deeper.
    # A secret is never repeated in the error (it would land in the journal).
    shown = "(not shown: a secret)" if any(word in name for word in ("secret", "password", "token")) \
        else repr(re.sub(r"(//[^/:@]*:)[^/@]*@", r"\1***@", value) if name.endswith("_url")
                  and isinstance(value, str) else value)  # a URL's password neither
    if kind == "str" and not isinstance(value, str):
        raise ConfigError(f"{source}: invalid value {shown}: expected text (in quotes)")
    if kind == "int" and isinstance(value, float):
        raise ConfigError(f"{source}: invalid value {shown}: expected a whole number")
    try:
        return spec.metadata["parse"](value)
    except (ValueError, TypeError, AttributeError) as error:
        raise ConfigError(f"{source}: invalid value {shown}: {error}") from None


def instance_folder(explicit: str | os.PathLike[str] | None = None,
                    environ: Mapping[str, str] | None = None) -> Path:
    """The instance folder: given explicitly, else HELPDESK_INSTANCE, else ./instance."""
    environ = os.environ if environ is None else environ
    return Path(explicit or environ.get(ENV_PREFIX + "INSTANCE") or "instance").resolve()


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    instance_path: str | os.PathLike[str] | None = None,
) -> Settings:
    """Build the settings from defaults, instance file, environment and overrides."""
    environ = os.environ if environ is None else environ
    overrides = {k.lower(): v for k, v in (overrides or {}).items()}
    known = set(setting_names())

    instance = instance_folder(overrides.pop("instance_path", None) or instance_path, environ)

    values: dict[str, Any] = {}
    plugins: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}
    config_file = instance / CONFIG_FILE
    if config_file.is_file():
        try:
            data = tomllib.loads(config_file.read_text(encoding="utf-8-sig"))  # Notepad's BOM too
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"{config_file}: not valid TOML: {error}") from None
        for key, value in data.items():
            if key == "plugins":
                if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
                    raise ConfigError(f"{config_file}: plugins: expected [plugins.<name>] tables")
                for name, table in value.items():
                    plugins.setdefault(name.lower(), {}).update(table)
                    sources.update({f"{name.lower()}.{key}": str(config_file) for key in table})
                continue
            if key not in known:
                raise ConfigError(f"{config_file}: unknown setting {key!r}")
            values[key] = _parse(key, value, f"{config_file}: {key}")

    for env_name, value in environ.items():
        if not env_name.startswith(ENV_PREFIX):
            continue
        name = env_name[len(ENV_PREFIX) :]
        if name.startswith(PLUGIN_ENV_PREFIX):
            plugin, _, key = name[len(PLUGIN_ENV_PREFIX) :].partition("__")
            if not plugin or not key:
                raise ConfigError(f"{env_name}: expected {ENV_PREFIX}{PLUGIN_ENV_PREFIX}<plugin>__<key>")
            plugins.setdefault(plugin.lower(), {})[key.lower()] = value
            sources[f"{plugin.lower()}.{key.lower()}"] = env_name
            continue
        if name in _ENV_NOT_SETTINGS or name.startswith(_ENV_NOT_SETTINGS_PREFIXES):
            continue
        if name.lower() not in known:
            raise ConfigError(f"{env_name}: unknown setting (known: {', '.join(sorted(known))})")
        values[name.lower()] = _parse(name.lower(), value, env_name)

    for name, table in (overrides.pop("plugins", None) or {}).items():
        plugins.setdefault(name.lower(), {}).update(table)
        sources.update({f"{name.lower()}.{key}": "configuration given to create_app" for key in table})
    for key, value in overrides.items():
        if key not in known:
            raise ConfigError(f"override {key!r}: unknown setting")
        values[key] = _parse(key, value, f"override {key}")

    values.setdefault("database_url", f"sqlite:///{instance / 'helpdesk.db'}")
    values.setdefault("queue_url", f"sqlite:///{instance / 'queue.db'}")
    if "secret_key" not in values:
        secret_file = instance / SECRET_FILE
        if not secret_file.is_file():
            raise ConfigError(
                f"HELPDESK_SECRET_KEY: not set and {secret_file} does not exist; "
                "run `helpdesk init` to create the instance"
            )
        values["secret_key"] = _parse(
            "secret_key", secret_file.read_text(encoding="utf-8").strip(), str(secret_file)
        )
    return Settings(instance_path=instance, plugins=plugins, sources=sources, **values)


class PluginSettings(Mapping[str, Any]):
    """One plugin's settings: ``[plugins.<name>]`` in the instance file and
    ``HELPDESK_PLUGINS__<NAME>__<KEY>`` in the environment (which wins)."""

    def __init__(self, plugin: str, values: Mapping[str, Any]) -> None:
        self.plugin = plugin
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key.lower()]

    def __iter__(self) -> Any:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def list(self, key: str, default: Any = ()) -> list[Any]:
        """A list from the instance file, or from a comma-separated environment value."""
        value = self._values.get(key.lower(), default)
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return list(value)

    def require(self, key: str) -> Any:
        """The value, or a :class:`ConfigError` naming the environment variable to set."""
        if key.lower() not in self._values:
            raise ConfigError(
                f"{ENV_PREFIX}{PLUGIN_ENV_PREFIX}{self.plugin.upper()}__{key.upper()}: "
                f"plugin {self.plugin!r} needs this setting"
            )
        return self._values[key.lower()]

    def secret(self, key: str) -> str | None:
        """A secret given directly, or read from the file named by ``<key>_file``."""
        if key.lower() in self._values:
            return str(self._values[key.lower()])
        path = self._values.get(f"{key.lower()}_file")
        if path is None:
            return None
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ConfigError(
                f"{ENV_PREFIX}{PLUGIN_ENV_PREFIX}{self.plugin.upper()}__{key.upper()}_FILE: "
                f"cannot read {path}: {error.strerror}"
            ) from None


def create_instance(instance: Path) -> bool:
    """Create the instance folder and its secret key; return True if it was new.

    A new folder is closed to other users (0750): the database in it holds password hashes,
    stored secrets and every customer's message, and SQLite creates it world-readable under
    the usual umask. A folder that exists already keeps the modes its admin gave it."""
    if not instance.exists():
        instance.parent.mkdir(parents=True, exist_ok=True)
        instance.mkdir(mode=0o750, exist_ok=True)
    secret_file = instance / SECRET_FILE
    if secret_file.exists():
        return False
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secrets.token_urlsafe(48))
    return True
