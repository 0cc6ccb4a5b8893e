"""The plugin manager: built per app, never a module global."""

from __future__ import annotations

import logging

import pluggy

from helpdesk import builtin, hookspecs

logger = logging.getLogger(__name__)


def create_plugin_manager(disabled: tuple[str, ...] = ()) -> pluggy.PluginManager:
    """Register the hook specs and the built-in defaults; block disabled names."""
    pm = pluggy.PluginManager("helpdesk")
    pm.add_hookspecs(hookspecs)
    for name in disabled:
        pm.set_blocked(name)
    if not pm.is_blocked("builtin"):
        pm.register(builtin, name="builtin")
    pm.load_setuptools_entrypoints("helpdesk")
    pm.check_pending()
    return pm


def call_event(pm: pluggy.PluginManager, name: str, **kwargs: object) -> list[str]:
    """Call every implementation of an event hook, isolating failures.

    A plugin that raises is logged with its name and does not stop the others.
    Returns the names of the plugins that failed.
    """
    caller = getattr(pm.hook, name)
    failed = []
    for impl in reversed(caller.get_hookimpls()):
        args = {arg: kwargs.get(arg) for arg in impl.argnames}
        try:
            impl.function(**args)
        except Exception:
            logger.exception("plugin %r failed in hook %s", impl.plugin_name, name)
            failed.append(impl.plugin_name)
    return failed
