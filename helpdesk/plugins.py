"""The plugin manager: built per app by the factory, never a module global.

Plugins come from three places: the built-in defaults (internal, marked
``trylast``), the bundled plugins shipped in ``helpdesk_plugins`` and any
installed package; the last two are found through the entry-point group
``helpdesk``, exactly as a third-party plugin is.
"""

from __future__ import annotations

import datetime as dt
import difflib
import inspect
import logging
import re
import time
import traceback
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from helpdesk import builtin, hookspecs, records
from helpdesk.config import NO_SLA, ConfigError

logger = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "helpdesk"
BUILTIN = "builtin"

# registration hook -> what the admin pages call its records
# Each registration hook: what its records are called, and the record type it must return
# (what the hookspecs document).
REGISTRATIONS: dict[str, tuple[str, type]] = {
    "helpdesk_channel_types": ("channel types", records.ChannelType),
    "helpdesk_sla_policies": ("SLA policies", records.SlaPolicy),
    "helpdesk_business_calendars": ("business calendars", records.BusinessCalendar),
    "helpdesk_escalation_steps": ("escalation steps", records.EscalationStep),
    "helpdesk_alert_sources": ("alert sources", records.AlertSource),
    "helpdesk_macro_actions": ("macro actions", records.MacroAction),
}


class PluginError(Exception):
    """A plugin cannot be loaded; start-up stops with this message."""


@dataclass
class PluginInfo:
    """What ``helpdesk plugins`` and the admin page show about one plugin."""

    name: str
    source: str  # built-in, bundled, installed, registered (tests and embedding code)
    version: str = ""
    distribution: str = ""
    blocked: bool = False
    hooks: list[str] = field(default_factory=list)
    records: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "version": self.version,
            "distribution": self.distribution,
            "enabled": not self.blocked,
            "hooks": self.hooks,
            "records": self.records,
        }


@dataclass
class Registry:
    """Every registered record, by kind then name."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    owners: dict[tuple[str, str], str] = field(default_factory=dict)

    def of(self, hook: str) -> dict[str, Any]:
        return self.records.setdefault(hook, {})

    @property
    def channel_types(self) -> dict[str, Any]:
        return self.of("helpdesk_channel_types")

    @property
    def sla_policies(self) -> dict[str, Any]:
        return self.of("helpdesk_sla_policies")

    @property
    def business_calendars(self) -> dict[str, Any]:
        return self.of("helpdesk_business_calendars")

    @property
    def escalation_steps(self) -> dict[str, Any]:
        return self.of("helpdesk_escalation_steps")

    @property
    def alert_sources(self) -> dict[str, Any]:
        return self.of("helpdesk_alert_sources")

    @property
    def macro_actions(self) -> dict[str, Any]:
        return self.of("helpdesk_macro_actions")


@dataclass
class Plugins:
    """The loaded plugin manager with what it found."""

    pm: pluggy.PluginManager
    infos: dict[str, PluginInfo]
    registry: Registry


def load_plugins(
    disabled: Iterable[str] = (),
    *,
    load_entry_points: bool = True,
    extra: Iterable[Any] = (),
    ctx: Any = None,
) -> Plugins:
    """Build the plugin manager: built-in defaults, entry points, then ``extra`` plugins.

    Raises :class:`PluginError` for a plugin that fails to import, implements a
    hook that does not exist (a misspelling), or registers a record name that
    another plugin registered too.
    """
    _recorded.clear()  # a new set of plugins: their failures are news again
    disabled = set(disabled)
    if BUILTIN in disabled:
        raise PluginError("HELPDESK_DISABLED_PLUGINS: the built-in defaults cannot be disabled; "
                          "override them with a plugin instead")
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}
    for name in disabled:
        pm.set_blocked(name)

    _register(pm, builtin, BUILTIN)
    infos[BUILTIN] = PluginInfo(BUILTIN, "built-in", distribution="helpdesk")

    if load_entry_points:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist else ""
            info = PluginInfo(
                ep.name,
                "bundled" if dist == "helpdesk" else "installed",
                version=ep.dist.version if ep.dist else "",
                distribution=dist,
                blocked=ep.name in disabled,
            )
            infos[ep.name] = info
            if info.blocked:
                continue
            try:
                plugin = ep.load()
            except Exception as error:
                raise PluginError(
                    f"plugin {ep.name!r} (from {dist or ep.value}) failed to import: "
                    f"{type(error).__name__}: {error}. Disable it with "
                    f"HELPDESK_DISABLED_PLUGINS={ep.name} or uninstall {dist or 'it'}."
                ) from error
            _register(pm, plugin, ep.name)

    for plugin in extra:
        if pm.is_registered(plugin):  # also found through its entry point (tests): one plugin
            continue
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        if name in disabled:
            infos[name] = PluginInfo(name, "registered", blocked=True)
            continue
        _register(pm, plugin, name)
        infos[name] = PluginInfo(name, "registered")

    for name in disabled - set(infos):
        logger.warning("HELPDESK_DISABLED_PLUGINS names %r, which is not installed", name)

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as error:
        name = pm.get_name(error.plugin) or repr(error.plugin)
        unknown = re.search(r"unknown hook '(\w+)'", str(error))
        near = difflib.get_close_matches(unknown.group(1), _hook_names(), n=1) if unknown else []
        guess = f"did you mean {near[0]!r}?" if near else "a misspelt hook name?"
        raise PluginError(
            f"plugin {name!r}: {error} ({guess} see helpdesk.hookspecs). {how_to_stop(name)}"
        ) from None

    registry = registrations(pm, ctx, ctx.registry if ctx is not None else Registry())
    note_records(infos, registry)

    for name, info in infos.items():
        plugin = pm.get_plugin(name)
        if plugin is not None:
            info.hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())
    return Plugins(pm, infos, registry)


_PLUGIN_VARIABLE = re.compile(r"HELPDESK_PLUGINS__([A-Z0-9_]+?)__([A-Z0-9_/]+)")


def where_set(error: ConfigError, ctx: Any) -> ConfigError:
    """A plugin names a bad setting by its variable (``HELPDESK_PLUGINS__EMAIL__SECURITY``);
    when the value came from the instance file, the message says so, with the table and key
    to look for there, instead of sending the admin after a variable nobody set."""
    found = _PLUGIN_VARIABLE.search(str(error))
    sources = getattr(getattr(ctx, "settings", None), "sources", None) or {}
    if found is None:
        return error
    plugin = found.group(1).lower()
    for key in found.group(2).lower().split("/"):
        source = sources.get(f"{plugin}.{key}")
        if source is not None and not source.startswith("HELPDESK_"):
            return ConfigError(f"{error} (set as {key} in [plugins.{plugin}] of {source})")
    return error


def note_records(infos: Mapping[str, PluginInfo], registry: Registry) -> None:
    """What each plugin registered, for ``helpdesk plugins`` and the admin page: at start-up,
    and again when settings saved in the browser change it (an e-mail channel switched on)."""
    for info in infos.values():
        info.records = {}
    for (hook_name, record_name), plugin_name in registry.owners.items():
        if plugin_name in infos:
            infos[plugin_name].records.setdefault(REGISTRATIONS[hook_name][0], []).append(record_name)


def registrations(pm: pluggy.PluginManager, ctx: Any, registry: Registry) -> Registry:
    """Call every registration hook into ``registry`` (at start-up, and again when settings
    saved in the browser change what plugins register). A plugin that raises, returns
    something other than its record, or takes a name another plugin has, is a
    :class:`PluginError` naming it; its settings' :class:`ConfigError` passes as it is."""
    for hook_name in REGISTRATIONS:
        for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
            stop = how_to_stop(impl.plugin_name)
            try:
                result = impl.function(**({"ctx": ctx} if "ctx" in impl.argnames else {}))
            except ConfigError as error:
                raise where_set(error, ctx) from None  # a setting of the plugin's, named by its variable
            except Exception as error:
                raise PluginError(f"plugin {impl.plugin_name!r} failed in {hook_name}: "
                                  f"{type(error).__name__}: {error}. {stop}") from error
            kind = REGISTRATIONS[hook_name][1]
            if result is not None and not isinstance(result, (list, tuple)):
                # one record, a name or a dict: said as such, not as "not iterable" or a letter
                raise PluginError(f"plugin {impl.plugin_name!r}: {hook_name} returned {result!r:.80}, "
                                  f"not a list of helpdesk.records.{kind.__name__}. {stop}")
            for record in result or ():
                named = isinstance(record, kind) and isinstance(getattr(record, "name", None), str) \
                    and record.name.strip()
                if not named:
                    raise PluginError(f"plugin {impl.plugin_name!r}: {hook_name} returned {record!r:.80}, "
                                      f"not a helpdesk.records.{kind.__name__} with a name. {stop}")
                problem = _malformed(record)
                if problem:
                    raise PluginError(f"plugin {impl.plugin_name!r}: {REGISTRATIONS[hook_name][0]} "
                                      f"{record.name!r}: {problem}. {stop}")
                owner = registry.owners.get((hook_name, record.name))
                if owner is not None:
                    raise PluginError(
                        f"{REGISTRATIONS[hook_name][0]}: the name {record.name!r} is registered by "
                        f"both {owner!r} and {impl.plugin_name!r}; disable one of them"
                    )
                registry.of(hook_name)[record.name] = record
                registry.owners[(hook_name, record.name)] = impl.plugin_name
    return registry


def _malformed(record: Any) -> str:
    """What is wrong with a registered record's values, checked once at start-up rather than
    failing on every SLA check that uses it ("" when nothing is)."""
    if isinstance(record, records.BusinessCalendar):
        try:
            zoneinfo.ZoneInfo(record.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
            return f"unknown time zone {record.time_zone!r}"
        hours = record.hours if isinstance(record.hours, Mapping) else None
        if not hours:
            return "no working hours (hours maps weekdays 0-6 to (opens, closes) times)"
        for day, window in hours.items():
            if not (isinstance(day, int) and 0 <= day <= 6):
                return f"weekday {day!r} is not 0 (Monday) to 6 (Sunday)"
            if not (isinstance(window, tuple) and len(window) == 2
                    and all(isinstance(moment, dt.time) for moment in window)):
                return f"the hours of weekday {day} are {window!r:.60}, not (opens, closes) times"
        if not all(isinstance(day, dt.date) for day in record.holidays):
            return "holidays must be dates"
    if isinstance(record, records.SlaPolicy):
        if record.name.strip().lower() == NO_SLA:
            return (f"the name {NO_SLA!r} is reserved: default_sla_policy = {NO_SLA!r} means no SLA, "
                    "so this policy could never be the default; give it another name")
        warnings = record.warnings
        if not (isinstance(warnings, (tuple, list)) and all(
                isinstance(share, (int, float)) and 0 < share < 1 for share in warnings)):
            return f"warnings are {warnings!r:.60}, not a tuple of shares between 0 and 1"
    for kind, (attribute, arguments) in _CALLED_WITH.items():
        if isinstance(record, kind):
            return _cannot_take(getattr(record, attribute), attribute, arguments)
    return ""


#: The callables a record carries and the arguments the core passes them (positionally).
_CALLED_WITH: dict[type, tuple[str, tuple[str, ...]]] = {
    records.ChannelType: ("send", ("ctx", "message")),
    records.SlaPolicy: ("targets", ("ctx", "incident")),
    records.EscalationStep: ("run", ("ctx", "incident", "level", "params")),
    records.MacroAction: ("run", ("ctx", "incident", "actor", "params")),
}


def _cannot_take(function: Any, attribute: str, arguments: tuple[str, ...]) -> str:
    """Why ``function`` cannot be called with ``arguments`` ("" when it can): said at start-up,
    not as a failed delivery, SLA or escalation step when it is first called."""
    if not callable(function):
        return f"{attribute} is {function!r:.60}, not a function"
    try:
        inspect.signature(function).bind(*arguments)
    except TypeError as error:
        return f"{attribute} must take ({', '.join(arguments)}): {error}"
    except ValueError:  # no signature to read (some built-ins): found out when called
        pass
    return ""


#: ``[plugins.<name>]`` tables the core itself reads (IMAP mailboxes, monitoring alerts).
CORE_SETTINGS = frozenset({"imap", "alerts"})


def unclaimed_settings(settings: Any, infos: dict[str, PluginInfo]) -> list[str]:
    """One sentence per ``[plugins.<name>]`` table or ``HELPDESK_PLUGINS__<NAME>__…`` variable
    whose name is neither the core's nor an installed plugin's (enabled or disabled): a
    misspelling, or a plugin since uninstalled, whose settings nothing would ever read."""
    found = []
    for plugin in sorted(set(settings.plugins) - set(infos) - CORE_SETTINGS):
        where = sorted({settings.sources.get(f"{plugin}.{key}", "the configuration")
                        for key in settings.plugins[plugin]})
        found.append(f"settings for {plugin!r} ({', '.join(where)}) are not used: no plugin of that "
                     f"name is installed (installed: {', '.join(sorted(infos))})")
    return found


def unread_setting_keys(pm: pluggy.PluginManager, settings: Any,
                        ctx: Any = None) -> tuple[list[str], list[tuple[str, str, str]]]:
    """One sentence per key of a ``[plugins.<name>]`` table that the plugins declaring that
    table (``helpdesk_settings_tables``) do not read: a misspelt key, silently ignored
    otherwise. A table nobody declares is not checked (plugins written before the hook).

    Returns the sentences and the problems of plugins whose declaration failed, ``(plugin,
    hook, problem)``: those tables go unchecked, and start-up goes on (it is advice)."""
    declared: dict[str, set[str]] = {}
    readers: dict[str, list[str]] = {}
    problems = []
    for impl in reversed(pm.hook.helpdesk_settings_tables.get_hookimpls()):
        try:
            tables = list(impl.function(**({"ctx": ctx} if "ctx" in impl.argnames else {})) or ())
            for table in tables:
                if not (isinstance(table, records.SettingsTable) and isinstance(table.name, str)
                        and not isinstance(table.keys, str)
                        and all(isinstance(key, str) for key in table.keys)):
                    raise TypeError(f"returned {table!r:.80}, not a helpdesk.records.SettingsTable "
                                    "with a name and a tuple of keys")
        except Exception as error:  # noqa: BLE001 - a declaration is advice: its table goes unchecked
            logger.warning("plugin %r failed in helpdesk_settings_tables: %s", impl.plugin_name, error)
            problems.append((impl.plugin_name, "helpdesk_settings_tables",
                             f"{type(error).__name__}: {error}; its settings keys are not checked"))
            continue
        for table in tables:
            # lower-cased, as keys from the environment arrive (HELPDESK_PLUGINS__X__APIKEY)
            declared.setdefault(table.name.lower(), set()).update(key.lower() for key in table.keys)
            readers.setdefault(table.name.lower(), []).append(impl.plugin_name)
    found = []
    for name in sorted(set(declared) & set(settings.plugins)):
        known = declared[name]
        # Exactly: the environment's keys arrive lower-cased, and a plugin reads `port`, so a
        # file's `Port = 2525` is as unread as a misspelling.
        for key in sorted(key for key in settings.plugins[name] if key not in known):
            where = settings.sources.get(f"{name}.{key}", "the configuration")
            close = difflib.get_close_matches(key.lower(), sorted(known), n=1)
            hint = f": did you mean {close[0]!r}? " if close else " "
            found.append(f"setting {key!r} of [plugins.{name}] ({where}) is not used"
                         f"{hint}({', '.join(sorted(set(readers[name])))} reads only "
                         f"{', '.join(sorted(known)) or 'no keys'})")
    return found, problems


def check_settings(pm: pluggy.PluginManager, registry: Registry, ctx: Any) -> None:
    """Call every ``helpdesk_check_settings`` on its own: a :class:`ConfigError` passes as it is
    (the plugin's answer about a value), anything else is the plugin failing, a
    :class:`PluginError` naming it, so that start-up and a settings save both say who broke."""
    for impl in reversed(pm.hook.helpdesk_check_settings.get_hookimpls()):
        given = {"registry": registry, "ctx": ctx}
        try:
            impl.function(**{name: given[name] for name in impl.argnames})
        except ConfigError as error:
            raise where_set(error, ctx) from None
        except Exception as error:
            raise PluginError(f"plugin {impl.plugin_name!r} failed in helpdesk_check_settings: "
                              f"{type(error).__name__}: {error}. {how_to_stop(impl.plugin_name)}") from error


def _hook_names() -> list[str]:
    """Every hook a plugin may implement (the specs in :mod:`helpdesk.hookspecs`)."""
    return [name for name, spec in vars(hookspecs).items()
            if callable(spec) and hasattr(spec, "helpdesk_spec")]


def how_to_stop(plugin_name: str) -> str:
    """The sentence every start-up error about a plugin ends with."""
    return f"Disable it with HELPDESK_DISABLED_PLUGINS={plugin_name} or fix the plugin."


def _register(pm: pluggy.PluginManager, plugin: Any, name: str) -> None:
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as error:
        # pluggy says which argument is unknown, not which ones the hook has
        hook = re.search(r"for hook '(\w+)'", str(error))
        spec = getattr(getattr(pm.hook, hook.group(1), None), "spec", None) if hook else None
        takes = f" {hook.group(1)} takes ({', '.join(spec.argnames)}) or any of them." if spec else ""
        raise PluginError(f"plugin {name!r}: {error}.{takes} {how_to_stop(name)}") from None
    except ValueError as error:  # registered twice under two names
        raise PluginError(f"plugin {name!r}: {error}") from None


def call_each(pm: pluggy.PluginManager, name: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """Call every implementation of a hook on its own, isolating failures.

    A plugin that raises is logged with its name and recorded for the admin
    Plugins page, and the others still run. Returns (plugin name, result) for
    the implementations that succeeded.
    """
    results = []
    for impl in reversed(getattr(pm.hook, name).get_hookimpls()):
        started = time.monotonic()
        try:
            results.append((impl.plugin_name, impl.function(**{a: kwargs.get(a) for a in impl.argnames})))
        except Exception as error:
            logger.exception("plugin %r failed in hook %s", impl.plugin_name, name)
            record_failure(impl.plugin_name, name, kwargs.get("incident"), error)
        if name in PAGE_HOOKS:
            note_if_slow(impl.plugin_name, name, kwargs.get("incident"), time.monotonic() - started)
    return results


#: Hooks a page waits for while it renders (its panels, its actions, its queue columns).
PAGE_HOOKS = frozenset({"helpdesk_incident_panels", "helpdesk_incident_actions", "helpdesk_queue_columns"})
#: A page hook (or one queue cell's value) slower than this is recorded for the Plugins page:
#: a thread cannot be stopped from outside, so a slow plugin is named rather than cut short.
SLOW_PAGE_HOOK_SECONDS = 0.5


class SlowHook(Exception):
    """A plugin's page hook took longer than :data:`SLOW_PAGE_HOOK_SECONDS`."""


def note_if_slow(plugin: str, hook: str, incident: Any, seconds: float,
                 waiting: str = "every page that shows it") -> None:
    """Record a page hook (or a decision) that kept a page waiting (once per kind every few
    minutes, as failures are); the log says each time how long it took."""
    if seconds <= SLOW_PAGE_HOOK_SECONDS:
        return
    logger.warning("plugin %r took %.2f s in %s; %s waited for it", plugin, seconds, hook, waiting)
    record_failure(plugin, hook, incident, SlowHook(
        f"took longer than {SLOW_PAGE_HOOK_SECONDS:g} s, and {waiting} waits for it"))


#: A failure already recorded is recorded again after this long at the soonest (per process):
#: a broken queue column fails on every page render, and must not bury every other failure.
RECORD_AGAIN_SECONDS = 600
_recorded: dict[tuple[str, str, str], float] = {}


def forget_recorded_failures() -> None:
    """Record the next failure of every kind at once again (a new app in the same process)."""
    _recorded.clear()


def record_failure(plugin: str, hook: str, incident: Any, error: Exception) -> None:
    """Keep a plugin's failure for the admin Plugins page (the log has every one)."""
    from helpdesk.models import PluginFailure

    key, moment = (plugin, hook, f"{type(error).__name__}: {error}"[:300]), time.monotonic()
    if moment - _recorded.get(key, -RECORD_AGAIN_SECONDS) < RECORD_AGAIN_SECONDS:
        return
    try:
        PluginFailure.create(plugin=plugin[:100], hook=hook[:100], incident=getattr(incident, "id", None),
                             error=f"{type(error).__name__}: {error}"[:2000],
                             trace="".join(traceback.format_exception(error))[-8000:])
        _recorded[key] = moment
    except Exception:  # the database may be what failed; the log has it
        logger.exception("could not record the failure of plugin %r", plugin)


def run_check(plugin: str, what: str, check: Callable[..., Any], *args: Any) -> None:
    """Call a plugin's check of a value someone is saving (a step's or macro action's
    parameter, an agent's channel field). ``ValueError`` is its refusal and passes through;
    anything else is the plugin's bug: logged, recorded for the Plugins page, and raised as a
    ``ValueError`` that says so, so the person saving sees a refusal, never a server error."""
    try:
        check(*args)
    except ValueError:
        raise
    except Exception as error:  # noqa: BLE001 - a plugin's bug, said where it is met
        logger.exception("plugin %r failed in %s", plugin, what)
        record_failure(plugin, what, None, error)
        raise ValueError(f"the check of plugin {plugin!r} failed ({type(error).__name__}: "
                         f"{str(error)[:200]}); ask an admin") from None


def first_answer(pm: pluggy.PluginManager, name: str, kind: type,
                 refuse: Callable[[Any], str] | None = None, **kwargs: Any) -> Any:
    """A decision hook's answer (``firstresult``: the first plugin not answering ``None``),
    with each plugin on its own: one that raises, or answers something other than a
    ``kind`` (or what ``refuse(answer)`` finds wrong with), is recorded for the Plugins page
    and the next one decides, so a bug in one plugin's decision never stops incidents from
    being logged."""
    return first_answer_owned(pm, name, kind, refuse, **kwargs)[1]


WRAPPED = "(several: a hook wrapper)"


def first_answer_owned(pm: pluggy.PluginManager, name: str, kind: type,
                       refuse: Callable[[Any], str] | None = None,
                       **kwargs: Any) -> tuple[str | None, Any]:
    """:func:`first_answer` with the plugin that gave it (``None`` when nobody answered), to
    name that plugin when its answer turns out unusable later (an SLA policy nobody has)."""
    impls = getattr(pm.hook, name).get_hookimpls()
    if any(impl.hookwrapper or getattr(impl, "wrapper", False) for impl in impls):
        # A wrapper sees the whole call: pluggy makes it; a failure is the chain's.
        try:
            answer = getattr(pm.hook, name)(**kwargs)
            _check_answer(name, kind, refuse, answer)
            return (WRAPPED if answer is not None else None), answer
        except Exception as error:  # noqa: BLE001
            logger.error("a plugin failed in %s: %s", name, error)
            record_failure(WRAPPED, name, kwargs.get("incident"), error)
            return None, None
    for impl in reversed(impls):
        started = time.monotonic()
        try:
            answer = impl.function(**{a: kwargs.get(a) for a in impl.argnames})
            _check_answer(name, kind, refuse, answer)
        except Exception as error:  # noqa: BLE001 - a plugin's bug: recorded, the next decides
            logger.error("plugin %r failed in %s: %s", impl.plugin_name, name, error)
            record_failure(impl.plugin_name, name, kwargs.get("incident"), error)
            continue
        finally:  # decisions are made while an agent waits (logging, changing an incident)
            note_if_slow(impl.plugin_name, name, kwargs.get("incident"), time.monotonic() - started,
                         "the agent logging or changing an incident")
        if answer is not None:
            return impl.plugin_name, answer
    return None, None


def _check_answer(name: str, kind: type, refuse: Callable[[Any], str] | None, answer: Any) -> None:
    """Raise when a decision's answer is not one the core can use (``None`` always is)."""
    if answer is None:
        return
    if not isinstance(answer, kind) or (kind is not bool and isinstance(answer, bool)):
        raise TypeError(f"{name} answered {answer!r:.120}, not a {kind.__name__} or None")
    problem = refuse(answer) if refuse is not None else ""
    if problem:
        raise ValueError(f"{name} answered {answer!r:.120}: {problem}")


def call_event(pm: pluggy.PluginManager, name: str, **kwargs: Any) -> list[str]:
    """Fire an event hook (worker, after commit); returns the names of plugins that failed."""
    called = {plugin for plugin, _ in call_each(pm, name, **kwargs)}
    return [impl.plugin_name for impl in getattr(pm.hook, name).get_hookimpls()
            if impl.plugin_name not in called]


def collect(pm: pluggy.PluginManager, hook: str, kind: type | None = None, **kwargs: Any) -> list[Any]:
    """Flatten the lists a UI-slot hook returns, plugin by plugin; a failing plugin is skipped,
    and so is anything it returned that is not a ``kind`` (logged and recorded like a failure:
    one plugin's wrong value must not break the page for everyone)."""
    return [item for _plugin, item in collect_owned(pm, hook, kind, **kwargs)]


def collect_owned(pm: pluggy.PluginManager, hook: str, kind: type | None = None,
                  **kwargs: Any) -> list[tuple[str, Any]]:
    """:func:`collect`, each record with the plugin that gave it (to name it when it fails later)."""
    found = []
    for name, result in call_each(pm, hook, **kwargs):
        items = result or ()
        if not isinstance(items, (list, tuple)) or (kind is not None and not all(
                isinstance(item, kind) for item in items)):
            error = TypeError(f"{hook} returned {result!r:.120}, not a list of "
                              f"{kind.__name__ if kind else 'records'}")
            logger.error("plugin %r: %s; skipped", name, error)
            record_failure(name, hook, kwargs.get("incident"), error)
            continue
        found.extend((name, item) for item in items)
    return found
