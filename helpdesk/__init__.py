"""A self-hosted ITIL helpdesk: owned and assigned incidents, plugins, SLA checks.

This package's top level is the public face for plugins, with
:mod:`helpdesk.records`: a plugin (bundled or third-party) imports only
these two, and a test keeps the bundled plugins to it. Everything listed in
``__all__`` is stable for plugin API :data:`PLUGIN_API` 1.x: names are added,
never removed or changed incompatibly. Anything else is internal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

__version__ = "0.1.0"
#: The plugin API version: the major number changes only with an incompatible change.
PLUGIN_API = "1.7"

#: Decorator plugin authors use to mark their hook implementations.
hookimpl = pluggy.HookimplMarker("helpdesk")

if TYPE_CHECKING:  # pragma: no cover
    from helpdesk.config import PluginSettings


def plugin_settings(name: str) -> PluginSettings:
    """The settings of plugin ``name`` for the app serving the current request or task.

    Inside a hook that receives ``ctx``, prefer ``ctx.plugin_settings(name)``;
    this shortcut needs an app context (web requests, worker tasks, CLI
    commands and start-up all have one).
    """
    from flask import current_app

    from helpdesk.config import PluginSettings

    settings = current_app.extensions["helpdesk.settings"]
    return PluginSettings(name, settings.plugins.get(name, {}))


# name -> (module, attribute): resolved on first use, keeping `import helpdesk` light and free
# of import cycles (the plugin machinery imports this module first).
_PUBLIC = {
    "access": ("helpdesk.security", "access"),
    "current_agent": ("helpdesk.security", "current_agent"),  # who a plugin page acts as (1.7)
    "Context": ("helpdesk.context", "Context"),
    "ConfigError": ("helpdesk.config", "ConfigError"),
    "DeliveryError": ("helpdesk.records", "DeliveryError"),
    "DomainError": ("helpdesk.errors", "DomainError"),
    # refusals with their own status, e.g. from an API operation (plugin API 1.5)
    "NotFound": ("helpdesk.errors", "NotFound"),
    "PermissionDenied": ("helpdesk.errors", "PermissionDenied"),
    "now": ("helpdesk.clock", "now"),
    "post": ("helpdesk.outbound", "post"),
    "url_problem": ("helpdesk.outbound", "url_problem"),  # settings checks (plugin API 1.4)
    "format_duration": ("helpdesk.words", "format_duration"),
    "enqueue": ("helpdesk.notify.outbox", "enqueue"),
    "incidents": ("helpdesk.incidents", None),
    "mail_headers": ("helpdesk.mail_headers", None),  # safe headers for channels that write mail
    # escalation steps (plugin API 1.1)
    "StepError": ("helpdesk.records", "StepError"),
    "notify_agents": ("helpdesk.escalation.api", "notify_agents"),
    "team_leads": ("helpdesk.escalation.api", "team_leads"),
    "watchers": ("helpdesk.escalation.api", "watchers"),
    "add_watchers": ("helpdesk.escalation.api", "add_watchers"),
    "declare_major": ("helpdesk.escalation.api", "declare_major"),
    # on call (plugin API 1.3): who to page or assign for a team now
    "on_call": ("helpdesk.people", "on_call"),
    # monitoring alert sources
    "Alert": ("helpdesk.records", "Alert"),
    "AlertSource": ("helpdesk.records", "AlertSource"),
    "BadAlert": ("helpdesk.records", "BadAlert"),
    # macro actions (plugin API 1.2)
    "MacroAction": ("helpdesk.records", "MacroAction"),
    # read models and their vocabularies
    "Agent": ("helpdesk.models", "Agent"),
    "Category": ("helpdesk.models", "Category"),
    "Contact": ("helpdesk.models", "Contact"),
    "Incident": ("helpdesk.models", "Incident"),
    "Membership": ("helpdesk.models", "Membership"),
    "Organisation": ("helpdesk.models", "Organisation"),
    "Service": ("helpdesk.models", "Service"),
    "Team": ("helpdesk.models", "Team"),
    "TimelineEntry": ("helpdesk.models", "TimelineEntry"),
    "PRIORITIES": ("helpdesk.models", "PRIORITIES"),
    "STATUSES": ("helpdesk.models", "STATUSES"),
    "TYPES": ("helpdesk.models", "TYPES"),
    "LEVELS": ("helpdesk.models", "LEVELS"),
}


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'helpdesk' has no attribute {name!r}")
    import importlib

    module_name, attribute = _PUBLIC[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


__all__ = ["PLUGIN_API", "__version__", "hookimpl", "plugin_settings", *_PUBLIC]
