"""The context: one object per app holding the services domain code and hooks need.

The app factory builds it; the web layer finds it in ``app.extensions["helpdesk"]``
(see :func:`helpdesk.web.context`), tasks and the CLI get it from the app they
run in. Below the web layer nothing looks services up ambiently: every domain
entry point takes the context as its first argument, and so do the record
callables plugins register (``SlaPolicy.targets``, ``ChannelType.send`` …)
and the hooks that need services.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from helpdesk.config import PluginSettings, Settings
from helpdesk.errors import DomainError

if TYPE_CHECKING:  # pragma: no cover - imports for type checkers only
    from huey import Huey

    from helpdesk.models import Team
    from helpdesk.plugins import PluginInfo, Registry


@dataclass
class Tasks:
    """Typed handles of the app's background tasks (each enqueues; immediate in tests)."""

    fire_event: Callable[[int], Any]  # one event-outbox row
    deliver: Callable[[int], Any]
    sla_check: Callable[[], Any]
    auto_close: Callable[[], Any]
    sweep_outbox: Callable[[], Any]


def _registry() -> Registry:
    from helpdesk.plugins import Registry

    return Registry()


@dataclass
class Context:
    """Settings, plugin manager and registry, background tasks and template folders of one app."""

    settings: Settings
    pm: pluggy.PluginManager = None  # type: ignore[assignment] - set once the plugins are loaded
    registry: Registry = field(default_factory=lambda: _registry())
    huey: Huey | None = None
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    tasks: Tasks | None = None
    #: Folders notification templates are looked up in, first match wins (instance, then app).
    template_folders: tuple[Path, ...] = ()
    notification_env: Any = None
    #: Plugin settings saved in the browser, ``{plugin: {key: value}}``, kept current by
    #: ``helpdesk.site_settings.refresh`` (``settings_revision`` is what was last read).
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings_revision: int | None = None

    @property
    def instance_path(self) -> Path:
        return Path(self.settings.instance_path)

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    def plugin_settings(self, name: str) -> PluginSettings:
        """The settings of plugin ``name``: ``[plugins.<name>]`` and ``HELPDESK_PLUGINS__…`` win
        key by key over what an admin saved in the browser (a ``<key>_file`` there also hides
        a stored ``<key>``), so infrastructure-as-code installs keep working."""
        given = self.settings.plugins.get(name, {})
        stored = {key: value for key, value in self.stored.get(name, {}).items()
                  if f"{key}_file" not in given}
        return PluginSettings(name, {**stored, **given})

    def incident_url(self, incident_id: int) -> str:
        return f"{self.settings.base_url}/incidents/{incident_id}"

    def service_desk(self) -> Team:
        from helpdesk.models import Team

        team = Team.get_or_none(Team.name == self.settings.service_desk_team)
        if team is None:
            raise DomainError(
                f"The service-desk team {self.settings.service_desk_team!r} does not exist; "
                "run `helpdesk init` or create it on the Teams page."
            )
        return team
