"""The context: one object per app holding the services domain code and hooks need.

The app factory builds it; the web layer finds it in ``app.extensions["helpdesk"]``
(see :func:`helpdesk.web.context`), tasks and the CLI get it from the app they
run in. Below the web layer nothing looks services up ambiently: every domain
entry point takes the context as its first argument, and so do the record
callables plugins register (``SlaPolicy.targets``, ``ChannelType.send`` …)
and the hooks that need services.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from helpdesk.config import PluginSettings, Settings
from helpdesk.errors import DomainError

logger = logging.getLogger(__name__)
#: After the queue failed to take work, requests stop trying for this long: the outbox rows
#: are committed and the worker's sweep queues them, so no request waits on a queue that is away.
QUEUE_PAUSE_SECONDS = 5.0
#: The outbox sweeps queue due rows only while fewer entries than this wait in the queue. A row
#: still due when the queue is that short most likely lost its entry (a queue restart, a crash
#: between commit and queueing); on a longer queue its entry is probably still waiting, and
#: another copy per sweep only lengthens the wait for everyone (each heartbeat's sweep used to
#: queue every due row again: over 7,000 entries piled up after a Redis restart in the
#: scale-out test, and the last deliveries waited minutes behind copies of finished ones).
SWEEP_BACKLOG = 100
#: A row never tried yet was queued right after its commit; the sweeps leave it to that entry for
#: this long before queueing a copy (a retry, or a row taken back from a dead worker, has no
#: entry: it is queued as soon as it is due).
SWEEP_GRACE_SECONDS = 10.0

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
    #: Entries waiting in the queue (none where tasks run at once, as in tests).
    backlog: Callable[[], int] = lambda: 0
    #: Monotonic time before which :meth:`queue_outbox_rows` does not try the queue (it just failed).
    queue_paused_until: float = 0.0

    def room_to_sweep(self) -> bool:
        """Whether a sweep should queue due outbox rows now (see :data:`SWEEP_BACKLOG`);
        raises the queue's error when the queue is away, as queueing itself would."""
        return self.backlog() < SWEEP_BACKLOG

    def queue_outbox_rows(self, task: Callable[[int], Any], row_ids: Sequence[int], what: str) -> int:
        """Queue ``task`` for outbox rows that were just committed; return how many were queued.

        Called after a commit, in the request that made the change. The rows are already in
        the outbox, so a queue that is away (Redis restarting, unreachable) must not fail or
        hold the request: the first failure is logged in one line, the rest of the batch and
        the next :data:`QUEUE_PAUSE_SECONDS` of batches are left to the worker's outbox sweep,
        which queues every due row once the queue answers again.
        """
        if time.monotonic() < self.queue_paused_until:
            return 0
        for done, row_id in enumerate(row_ids):
            try:
                task(row_id)
            except Exception as error:  # the queue's client error, whatever the queue
                self.queue_paused_until = time.monotonic() + QUEUE_PAUSE_SECONDS
                logger.warning("could not queue %d %s (they stay in the outbox; the worker's sweep "
                               "queues them when the queue answers): %r", len(row_ids) - done, what, error)
                return done
        return len(row_ids)


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
    #: Plugin settings that no installed plugin reads (a misspelt ``[plugins.<name>]``), said
    #: at start-up, by ``helpdesk plugins`` and on the Plugins page.
    unclaimed_settings: list[str] = field(default_factory=list)
    #: What start-up found wrong in a plugin but could go on without (a blueprint route that
    #: declares no audience stays refused to everyone): ``(plugin, hook, problem)``, said in the
    #: log, by ``helpdesk plugins`` and on the Plugins page from the first request on.
    plugin_problems: list[tuple[str, str, str]] = field(default_factory=list)

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
        from helpdesk.models import team_named

        team = team_named(self.settings.service_desk_team)
        if team is None:
            raise DomainError(
                f"The service-desk team {self.settings.service_desk_team!r} does not exist; "
                "run `helpdesk init` or create it on the Teams page."
            )
        return team
