"""Hook specifications: the plugin author's reference.

Implement a hook with ``@helpdesk.hookimpl`` on a function of your plugin
module. Specs only grow: new arguments are appended, none is renamed or
removed, so a plugin that accepts fewer arguments keeps working.

Families:

* *registration* hooks run once per app at start-up (web, worker and CLI
  processes alike) and return lists of named, frozen records from
  :mod:`helpdesk.records`. Two plugins registering the same name stop
  start-up with an error naming both. Return ``None`` or ``[]`` to register
  nothing.
* *decision* hooks are ``firstresult``: the first non-``None`` answer wins, and
  a built-in default (registered ``trylast``) always answers;
* *event* hooks are named in the past tense. They fire after the change has
  committed, in the background worker, never inside the web request. An event
  hook that raises is logged with the plugin's name and listed on the admin
  Plugins page; it neither undoes the change nor stops other plugins' hooks,
  and it is called again later (backoff, up to 8 attempts, then an admin may
  retry it). Events are delivered **at least once**: after a crash a hook may
  run twice for one event, so handlers must be idempotent. Every event hook
  receives ``event_key``, the same string for every call about one event (and
  different for every other event): record it to drop repeats.
* *UI slots* add panels, actions, queue columns, pages and CLI commands.
  They run in the web request (or the CLI) and must be quick: no network, and
  for queue columns no database queries.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("helpdesk")


# -- registration hooks (start-up, every process) -----------------------------


@hookspec
def helpdesk_channel_types() -> list[Any] | None:
    """Notification transports this plugin provides, as :class:`~helpdesk.records.ChannelType`.

    ``send(message)`` formats and delivers one :class:`~helpdesk.records.Message`
    and raises :class:`~helpdesk.records.DeliveryError` on failure; recording
    attempts and retrying happen in the core, once.
    """


@hookspec
def helpdesk_sla_policies() -> list[Any] | None:
    """SLA policies this plugin provides, as :class:`~helpdesk.records.SlaPolicy`."""


@hookspec
def helpdesk_business_calendars() -> list[Any] | None:
    """Business-hours calendars, as :class:`~helpdesk.records.BusinessCalendar`."""


@hookspec
def helpdesk_escalation_steps() -> list[Any] | None:
    """Kinds of escalation step, as :class:`~helpdesk.records.EscalationStep`."""


@hookspec
def helpdesk_assets() -> Any | None:
    """Template and static folders this plugin ships, as :class:`~helpdesk.records.PluginAssets`.

    Templates are looked up after the instance folder's and the app's own, so
    both can override a plugin's; put them under a folder named after the
    plugin to avoid clashes. Return ``None`` when the plugin ships none.
    """


@hookspec
def helpdesk_check_settings(registry: Any) -> None:
    """Check this plugin's settings once at start-up, after every record is registered.

    Fires in every process (web, worker, CLI) inside the app. Raise
    :class:`helpdesk.config.ConfigError` naming the variable for a bad value,
    so start-up stops with a clear message instead of failing on first use;
    ``registry`` holds every registered record (e.g. to check that a calendar
    named in your settings exists). Return nothing.
    """


# -- decision hooks ---------------------------------------------------------


@hookspec(firstresult=True)
def helpdesk_priority(impact: str, urgency: str) -> int | None:
    """Derive an incident's priority (1 = P1 critical … 4 = P4 low).

    Fires in the web request or CLI whenever impact or urgency is set, unless
    the priority was overridden by hand. ``impact`` and ``urgency`` are each
    ``"high"``, ``"medium"`` or ``"low"``. Return ``None`` to let the next
    plugin (ultimately the built-in ITIL matrix) decide.
    """


@hookspec(firstresult=True)
def helpdesk_route_incident(incident: Any) -> Any | None:
    """Choose the initial assigned team of a new incident nobody assigned.

    Fires in the web request (or mail/API intake) before the new incident is
    saved; ``incident`` is the unsaved :class:`helpdesk.models.Incident` with
    title, type, category, service, requester and source set. Return a
    :class:`helpdesk.models.Team` to assign it to, or ``None`` to leave the
    decision to the next plugin (the built-in default leaves it unassigned).
    """


@hookspec(firstresult=True)
def helpdesk_sla_policy(incident: Any) -> str | None:
    """Name the SLA policy that applies to ``incident``.

    Fires in the web request or CLI when an incident is logged and when its
    priority changes. Return the name of a registered policy (see
    ``helpdesk_sla_policies``), or ``None`` to let the next plugin decide; the
    built-in default names the ``priority`` policy. A name no plugin
    registered means the incident has no SLA (and is logged as a warning).
    """


# -- event hooks (worker, after commit) -------------------------------------


@hookspec
def incident_created(incident: Any, actor: Any, event_key: str) -> None:
    """A new incident was logged. ``actor`` is the agent, or ``None`` for intake."""


@hookspec
def incident_assigned(
    incident: Any, actor: Any, previous_team: Any, previous_agent: Any, event_key: str
) -> None:
    """The assigned team or agent changed; the previous pair is given (each may be ``None``)."""


@hookspec
def incident_owner_changed(
    incident: Any, actor: Any, previous_team: Any, previous_agent: Any, reason: str,
    event_key: str,
) -> None:
    """The owning team or agent changed (taken or transferred, with the reason given)."""


@hookspec
def incident_status_changed(
    incident: Any, actor: Any, old_status: str, new_status: str, event_key: str
) -> None:
    """The status changed; fires for every transition, before the specific hooks below."""


@hookspec
def incident_commented(
    incident: Any, actor: Any, entry: Any, public: bool, event_key: str
) -> None:
    """A public reply (``public=True``) or an internal note was added; ``entry`` is it."""


@hookspec
def incident_resolved(incident: Any, actor: Any, event_key: str) -> None:
    """The incident was resolved; its resolution code and note are set."""


@hookspec
def incident_reopened(incident: Any, actor: Any, event_key: str) -> None:
    """A resolved incident was reopened."""


@hookspec
def incident_closed(incident: Any, actor: Any, event_key: str) -> None:
    """The incident was closed (``actor`` is ``None`` when closed automatically)."""


@hookspec
def incident_sla_warning(
    incident: Any, actor: Any, target: str, point: float, due_at: str, event_key: str
) -> None:
    """A warning point of an SLA target was reached (``point`` is the fraction used, e.g. 0.75).

    ``target`` is ``"response"`` or ``"resolution"``; ``due_at`` is the due
    time (ISO 8601, UTC); ``actor`` is always ``None``. Fires once per point
    and target cycle, from the background SLA check.
    """


@hookspec
def incident_sla_breached(
    incident: Any, actor: Any, target: str, due_at: str, event_key: str
) -> None:
    """An SLA target was breached (fires once per target cycle; ``actor`` is ``None``)."""


# -- UI slots (web request / CLI) ---------------------------------------------------


@hookspec
def helpdesk_incident_panels(incident: Any, agent: Any) -> list[Any] | None:
    """Extra panels for the incident page, as :class:`~helpdesk.records.Panel`.

    Fires while rendering the page for ``agent``; return ``None`` or ``[]`` to
    add nothing. Panel templates are rendered with ``incident`` and ``agent``
    plus the panel's own context; user text in them is escaped as usual.
    """


@hookspec
def helpdesk_incident_actions(incident: Any, agent: Any) -> list[Any] | None:
    """Extra buttons for the incident page, as :class:`~helpdesk.records.Action`.

    Each posts (with the CSRF token and the incident version) to the action's
    URL, usually a route of the plugin's own blueprint.
    """


@hookspec
def helpdesk_queue_columns() -> list[Any] | None:
    """Extra queue columns, as :class:`~helpdesk.records.QueueColumn` (called once per page)."""


@hookspec
def helpdesk_blueprints() -> list[Any] | None:
    """Flask blueprints with extra agent pages.

    Every view must declare who may use it with ``@helpdesk.access(...)``;
    a view that declares nothing is refused with 403.
    """


@hookspec
def helpdesk_admin_pages() -> list[Any] | None:
    """Extra admin pages, as :class:`~helpdesk.records.AdminPage` (admins only, linked in the
    admin menu)."""


@hookspec
def helpdesk_cli_commands() -> list[Any] | None:
    """Extra ``helpdesk`` sub-commands, as ``click.Command`` objects.

    They run with an app context, so the models and the domain can be used.
    """
