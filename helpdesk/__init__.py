"""A self-hosted ITIL helpdesk: owned and assigned incidents, plugins, SLA checks."""

import pluggy

__version__ = "0.1.0"

#: Decorator plugin authors use to mark their hook implementations.
hookimpl = pluggy.HookimplMarker("helpdesk")

__all__ = ["__version__", "hookimpl"]
