"""A self-hosted ITIL helpdesk: owned and assigned incidents, plugins, SLA checks."""

import pluggy

__version__ = "0.1.0"

#: Decorator plugin authors use to mark their hook implementations.
hookimpl = pluggy.HookimplMarker("helpdesk")



def plugin_settings(name: str) -> "PluginSettings":  # noqa: F821 - resolved lazily
    """The settings of plugin ``name`` for the current app (see README, "Plugin settings")."""
    from flask import current_app

    from helpdesk.config import PluginSettings

    settings = current_app.extensions["helpdesk.settings"]
    return PluginSettings(name, settings.plugins.get(name, {}))


def __getattr__(name: str) -> object:
    # The route declaration is part of the plugin API; imported lazily to keep
    # `import helpdesk` light and free of import cycles.
    if name == "access":
        from helpdesk.security import access

        return access
    raise AttributeError(name)


__all__ = ["__version__", "access", "hookimpl", "plugin_settings"]
