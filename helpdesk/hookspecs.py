"""Hook specifications: the plugin author's reference.

Implement a hook with ``@helpdesk.hookimpl`` on a function of your plugin
module. An implementation may accept any subset of a spec's arguments, by
name. Specs only grow: new arguments are appended, none is renamed or
removed, so a plugin written against an older spec keeps working.

Every hook that runs after start-up receives ``ctx``, the app's
:class:`helpdesk.Context`: settings (``ctx.settings``,
``ctx.plugin_settings(name)``), the registry of every record
(``ctx.registry``) and the plugin manager. Nothing needs to be looked up
ambiently.

Families, and the naming rule a test enforces (see :data:`FAMILIES`):

* *registration* hooks (``helpdesk_<plural noun>``) run once per app at
  start-up (web, worker and CLI processes alike) and return lists of named,
  frozen records from :mod:`helpdesk.records`. Their ``ctx`` has the settings
  but an incomplete registry (records are being collected). Two plugins registering the
  same name stop start-up with an error naming both. Return ``None`` or
  ``[]`` to register nothing.
* *decision* hooks (``helpdesk_<noun>``) are ``firstresult``: the first
  non-``None`` answer wins, and a built-in default (registered ``trylast``)
  always answers; return ``None`` to let the next plugin decide.
* *event* hooks (``incident_…``) fire after the change has committed, in
  the background worker, never inside the web request. An event hook that
  raises is logged with the plugin's name and listed on the admin Plugins
  page; it neither undoes the change nor stops other plugins' hooks, and it
  is called again later (backoff at most 15 minutes apart, for
  ``delivery_retry_hours`` and at least 8 attempts, then an admin may retry
  it). Events are delivered **at least once**: after a crash a hook may run
  twice for one event, so handlers must be idempotent. Every event hook
  receives ``event_key``, the same string for every call about one event
  (and different for every other event): record it, or build outbox
  idempotency keys from it, to drop repeats. Return nothing.
* *UI slots* (``helpdesk_<noun>``) add panels, actions, queue columns, pages
  and CLI commands. They run in the web request (or the CLI) and must be
  quick: no network, and for queue columns no database queries.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("helpdesk")

#: Each hook's family; a test checks every spec is listed and named by its family's rule.
FAMILIES: dict[str, str] = {}


def _family(name: str) -> Any:
    def mark(function: Any) -> Any:
        FAMILIES[function.__name__] = name
        return function

    return mark


# -- registration hooks (start-up, every process) -----------------------------


# -- registration hooks (start-up, every process) -----------------------------


@_family("registration")
@hookspec
def helpdesk_channel_types(ctx: Any) -> list[Any] | None:
    """Notification transports this plugin provides, as :class:`~helpdesk.records.ChannelType`.

    Fires once at start-up in every process. ``send(ctx, message)`` formats and
    delivers one :class:`~helpdesk.records.Message` and raises
    :class:`~helpdesk.records.DeliveryError` on failure; recording attempts,
    retrying and dead-lettering happen in the core, once. Say how the channel
    reaches people with ``address_for`` (agents, with per-agent
    ``agent_fields`` shown on the profile page), ``contact_address_for``
    (requesters) and ``broadcast`` (every event). Return ``None`` or ``[]`` to
    register nothing.
    """


@_family("registration")
@hookspec
def helpdesk_sla_policies(ctx: Any) -> list[Any] | None:
    """SLA policies this plugin provides, as :class:`~helpdesk.records.SlaPolicy`.

    Fires once at start-up in every process. A policy's ``targets(ctx,
    incident)`` is called whenever the incident's clocks are started or
    re-targeted (web request, CLI or worker); it may consult another policy
    through ``ctx.registry.sla_policies``. Return ``None`` or ``[]`` to
    register nothing.
    """


@_family("registration")
@hookspec
def helpdesk_business_calendars(ctx: Any) -> list[Any] | None:
    """Business-hours calendars, as :class:`~helpdesk.records.BusinessCalendar`.

    Fires once at start-up in every process. SLA policies name a calendar in
    their targets; a name nobody registered counts around the clock (logged
    once). Return ``None`` or ``[]`` to register nothing.
    """


@_family("registration")
@hookspec
def helpdesk_escalation_steps(ctx: Any) -> list[Any] | None:
    """Kinds of escalation step, as :class:`~helpdesk.records.EscalationStep`.

    Fires once at start-up in every process; the records are listed on the
    admin Plugins page and offered in escalation policies. The escalation
    engine (worker, in the SLA check's pass; web, for manual escalation)
    calls ``run(ctx, incident, level, params) -> StepResult`` inside the
    transaction that claims the level; ``params`` were checked against the
    step's ``params`` schema when the policy was saved. Return ``None`` or
    ``[]`` to register nothing.
    """


@_family("registration")
@hookspec
def helpdesk_macro_actions(ctx: Any) -> list[Any] | None:
    """Actions a canned reply (macro) can take, as :class:`~helpdesk.records.MacroAction`.

    Fires once at start-up in every process; the records are offered on the macro form (with
    their ``params``) and listed on the admin Plugins page. When an agent sends a macro, the
    web request calls ``run(ctx, incident, actor, params)`` for each of its actions inside the
    one transaction that writes the reply (plugin API 1.2). Return ``None`` or ``[]`` to
    register nothing.
    """


@_family("registration")
@hookspec
def helpdesk_assets(ctx: Any) -> Any | None:
    """Template and static folders this plugin ships, as :class:`~helpdesk.records.PluginAssets`.

    Fires once at start-up in the web process. Templates are looked up after
    the instance folder's and the app's own, so both can override a plugin's;
    put them under a folder named after the plugin to avoid clashes. Static
    files are served at ``/plugins/<name>/static/``. Return ``None`` when the
    plugin ships none.
    """


@_family("registration")
@hookspec
def helpdesk_alert_sources(ctx: Any) -> list[Any] | None:
    """Monitoring systems whose alerts become incidents, as :class:`~helpdesk.records.AlertSource`.

    Fires once at start-up in every process. Each source is received at
    ``POST /api/v1/alerts/<name>``; its ``parse(payload)`` returns
    :class:`~helpdesk.records.Alert` records (or raises
    :class:`~helpdesk.records.BadAlert`), and the core does the rest: one incident
    per firing fingerprint, counted repeats, resolution, bounded flapping. The core
    registers ``generic`` and ``alertmanager``. Return ``None`` or ``[]`` to
    register nothing.
    """


@_family("registration")
@hookspec
def helpdesk_check_settings(registry: Any, ctx: Any) -> None:
    """Check this plugin's settings once at start-up, after every record is registered.

    Fires in every process (web, worker, CLI) inside the app. Raise
    :class:`helpdesk.ConfigError` naming the variable for a bad value, so
    start-up stops with a clear message instead of failing on first use;
    ``registry`` holds every registered record (e.g. to check that a calendar
    named in your settings exists). Return nothing.
    """


@_family("registration")
@hookspec
def helpdesk_settings_tables(ctx: Any) -> list[Any] | None:
    """Declare the settings this plugin reads, as :class:`~helpdesk.records.SettingsTable`
    records: ``SettingsTable("my_plugin", ("url", "timeout"))`` for ``[plugins.my_plugin]``.

    Fires once at start-up in every process, after every plugin is loaded. A key given in a
    declared table that no declaration lists (``resolutoin`` for ``resolution``) is said in
    the log, on the Plugins page and by ``helpdesk plugins``; start-up goes on. Two plugins
    declaring one table add up. Return ``None`` or ``[]`` (or do not implement the hook) to
    leave your tables unchecked.
    """


# -- decision hooks ---------------------------------------------------------


@_family("decision")
@hookspec(firstresult=True)
def helpdesk_priority(impact: str, urgency: str, ctx: Any) -> int | None:
    """Derive an incident's priority (1 = P1 critical … 4 = P4 low).

    Fires in the web request or CLI whenever impact or urgency is set, unless
    the priority was overridden by hand. ``impact`` and ``urgency`` are each
    ``"high"``, ``"medium"`` or ``"low"``. Return ``None`` to let the next
    plugin (ultimately the built-in ITIL matrix) decide.
    """


@_family("decision")
@hookspec(firstresult=True)
def helpdesk_route_incident(incident: Any, ctx: Any) -> Any | None:
    """Choose the initial assigned team of a new incident nobody assigned.

    Fires in the web request (or mail/API intake) before the new incident is
    saved; ``incident`` is the unsaved :class:`helpdesk.Incident` with
    title, type, category, service, requester and source set. Return a
    :class:`helpdesk.Team` to assign it to, or ``None`` to leave the
    decision to the next plugin (the built-in default leaves it unassigned).
    """


@_family("decision")
@hookspec(firstresult=True)
def helpdesk_attachment_verdict(filename: str, content_type: str, data: bytes, ctx: Any) -> str | None:
    """Accept or refuse one attachment before it is kept (a virus scanner, a file-type rule).

    Runs where the file arrived (the portal's or an agent's request, mail intake), before
    anything is stored. Return a short reason to refuse the file — the portal shows it to
    the customer, the reply box to the agent (nothing of that reply is written), mail intake
    notes it on the incident (the original message keeps the file) — or ``None`` to let the
    next plugin decide; when no plugin refuses, the file is kept. A plugin that raises
    refuses the file (fail closed) and is logged and listed on the admin Plugins page.
    """


@_family("decision")
@hookspec(firstresult=True)
def helpdesk_sla_policy(incident: Any, ctx: Any) -> str | None:
    """Name the SLA policy that applies to ``incident``.

    Fires in the web request, CLI or worker when an incident is logged and
    whenever a change may alter its targets (priority, details, assigned
    team). Return the name of a registered policy (see
    ``helpdesk_sla_policies``), or ``None`` to let the next plugin decide; the
    built-in default names the policy of the ``default_sla_policy`` setting
    (``priority`` unless set), or none at all when it is ``"none"`` (the desk
    runs without an SLA on purpose: no clocks, nothing reported). A name no plugin
    registered means the incident has no SLA: logged, recorded on the Plugins
    page (naming the plugin that chose it), and said on the incident page.
    """


# -- event hooks (worker, after commit) -------------------------------------


@_family("event")
@hookspec
def incident_created(incident: Any, actor: Any, ctx: Any, event_key: str) -> None:
    """A new incident was logged. ``actor`` is the agent, or ``None`` for intake."""


@_family("event")
@hookspec
def incident_assigned(
    incident: Any, actor: Any, previous_team: Any, previous_agent: Any, ctx: Any, event_key: str
) -> None:
    """The assigned team or agent changed; the previous pair is given (each may be ``None``).

    ``actor`` is the agent who assigned it, or ``None`` for routing at intake.
    """


@_family("event")
@hookspec
def incident_owner_changed(
    incident: Any, actor: Any, previous_team: Any, previous_agent: Any, reason: str, ctx: Any,
    event_key: str,
) -> None:
    """The owning team or agent changed: ``reason`` is ``"taken"`` when an agent took an
    unowned incident, else the reason the transferring agent gave."""


@_family("event")
@hookspec
def incident_status_changed(incident: Any, actor: Any, old_status: str, new_status: str,
                            ctx: Any, event_key: str) -> None:
    """The status changed; fires for every transition, before the specific hooks below.

    Statuses are the codes of :data:`helpdesk.STATUSES` (``"new"``,
    ``"in_progress"`` …); ``actor`` is ``None`` for automatic changes.
    """


@_family("event")
@hookspec
def incident_commented(incident: Any, actor: Any, entry: Any, public: bool, ctx: Any,
                       event_key: str) -> None:
    """A public reply (``public=True``) or an internal note was added; ``entry`` is its
    timeline entry (``entry.body`` is the Markdown text)."""


@_family("event")
@hookspec
def incident_resolved(incident: Any, actor: Any, ctx: Any, event_key: str) -> None:
    """The incident was resolved: service is restored; ``incident.resolution_code`` and
    ``incident.resolution_note`` say how."""


@_family("event")
@hookspec
def incident_reopened(incident: Any, actor: Any, ctx: Any, event_key: str) -> None:
    """A resolved incident was reopened (the reason is the latest timeline entry)."""


@_family("event")
@hookspec
def incident_closed(incident: Any, actor: Any, ctx: Any, event_key: str) -> None:
    """The incident was closed (``actor`` is ``None`` when closed automatically after the
    grace period)."""


@_family("event")
@hookspec
def incident_sla_warning(incident: Any, actor: Any, target: str, point: float, due_at: str,
                         ctx: Any, event_key: str) -> None:
    """A warning point of an SLA target was reached (``point`` is the fraction used, e.g. 0.75).

    ``target`` is ``"response"`` or ``"resolution"``; ``due_at`` is the due
    time (ISO 8601, UTC); ``actor`` is always ``None``. Fires once per point
    and target cycle, from the background SLA check.
    """


@_family("event")
@hookspec
def incident_sla_breached(incident: Any, actor: Any, target: str, due_at: str, ctx: Any,
                          event_key: str) -> None:
    """An SLA target was breached: fires once per target cycle from the background SLA check;
    ``actor`` is ``None``, ``due_at`` the time it was due (ISO 8601, UTC)."""


@_family("event")
@hookspec
def incident_escalated(incident: Any, actor: Any, level: int, policy: str, version: int, manual: bool,
                       ctx: Any, event_key: str) -> None:
    """The incident reached ``level`` of escalation policy ``policy`` (at ``version``): fires once
    per level, after its steps ran, from the SLA check (``actor`` ``None``) or when an agent
    escalated it by hand (``manual``, ``actor`` is that agent)."""


# -- UI slots (web request / CLI) ---------------------------------------------------


@_family("ui")
@hookspec
def helpdesk_incident_panels(incident: Any, agent: Any, ctx: Any) -> list[Any] | None:
    """Extra panels for the incident page, as :class:`~helpdesk.records.Panel`.

    Fires while rendering the page for ``agent``; return ``None`` or ``[]`` to
    add nothing. Panel templates are rendered with ``incident`` and ``agent``
    plus the panel's own context; user text in them is escaped as usual.
    """


@_family("ui")
@hookspec
def helpdesk_incident_actions(incident: Any, agent: Any, ctx: Any) -> list[Any] | None:
    """Extra buttons for the incident page, as :class:`~helpdesk.records.Action`.

    Fires while rendering the page for ``agent``. Each button posts (with the
    CSRF token and the incident version) to the action's URL, usually a route
    of the plugin's own blueprint: it must be a path on this site (``/plugins/…``);
    any other URL is left out and listed on the Plugins page, as it would hand
    the token to another site. Return ``None`` or ``[]`` to add nothing.
    """


@_family("ui")
@hookspec
def helpdesk_queue_columns(ctx: Any) -> list[Any] | None:
    """Extra queue columns, as :class:`~helpdesk.records.QueueColumn`.

    Fires once per queue page in the web request; each column's ``value``
    is then called per row and must not query the database. Return ``None``
    or ``[]`` to add nothing.
    """


@_family("ui")
@hookspec
def helpdesk_blueprints(ctx: Any) -> list[Any] | None:
    """Flask blueprints with extra agent pages.

    Fires once at start-up in the web process. Every view must declare who
    may use it with ``@helpdesk.access(...)``; a view that declares nothing is
    refused with 403, and named (plugin and route) on the Plugins page from
    start-up on. A view reaches services through the ``ctx`` given here (close
    over it) and acts as ``helpdesk.current_agent()``, the signed-in agent.
    Return ``None`` or ``[]`` to add nothing.
    """


@_family("ui")
@hookspec
def helpdesk_api_endpoints(ctx: Any) -> list[Any] | None:
    """Extra JSON API operations, as :class:`~helpdesk.records.ApiEndpoint`.

    Fires once at start-up in the web process. Each is served under
    ``/api/v1/plugins/<name>`` with the API's token check (the record's
    scope), body checking, problem details and an entry in the OpenAPI
    document. Return ``None`` or ``[]`` to add nothing.
    """


@_family("ui")
@hookspec
def helpdesk_admin_pages(ctx: Any) -> list[Any] | None:
    """Extra admin pages, as :class:`~helpdesk.records.AdminPage`.

    Fires once at start-up in the web process; every route of the page's
    blueprint is for admins only, whatever it declares, and the page is
    linked in the admin menu. Return ``None`` or ``[]`` to add nothing.
    """


@_family("ui")
@hookspec
def helpdesk_cli_commands(ctx: Any) -> list[Any] | None:
    """Extra ``helpdesk`` sub-commands, as ``click.Command`` objects.

    Fires when the CLI starts. The commands run inside the app (an app
    context is pushed), so the models and the domain can be used with
    ``ctx``. Return ``None`` or ``[]`` to add nothing.
    """
