"""The named, frozen records plugins register, and the small types hooks exchange.

A record's ``name`` is its identity: the config key, the name shown on the
admin pages, and what other settings refer to. Two plugins registering the
same name stop start-up with an error naming both. Records only gain fields
(with defaults), never lose or rename them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class DeliveryError(Exception):
    """A channel could not deliver a message.

    ``permanent=True`` means retrying cannot help (bad address, refused by the
    receiver); otherwise the core may retry later.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Message:
    """What a channel is asked to send: already rendered, addressed to one recipient."""

    recipient: str
    subject: str
    text: str
    event: str = "test"
    incident_reference: str | None = None
    url: str | None = None
    idempotency_key: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    html: str = ""
    kind: str = ""  # what it is about (e.g. "sla_warning"), for templates and preferences
    incident_id: int | None = None
    #: Files sent with it (an agent's attachments on a public reply to the requester), read
    #: from storage when the message is sent; a channel that cannot carry files ignores them.
    attachments: tuple[MessageFile, ...] = ()
    #: Earlier messages of this conversation with the recipient, as ``<id@domain>`` Message-IDs,
    #: oldest first; the last is the message this one answers (mail threads by them).
    references: tuple[str, ...] = ()
    #: False for words a person wrote to the recipient (an agent's public reply): mail then
    #: carries no ``Auto-Submitted``, so the other side treats it as a person's answer.
    automatic: bool = True


@dataclass(frozen=True)
class MessageFile:
    """One file a :class:`Message` carries: a sanitised name, a safe content type, the bytes."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class ChannelField:
    """A per-agent value a channel needs to reach an agent (e.g. a chat webhook URL).

    Agents fill it in on their profile page; it is stored per agent and
    channel by the core. ``kind`` is ``"text"``, ``"email"`` or ``"url"``; the
    core checks an ``"url"`` field with the outbound guard when it is saved
    (http(s) only, no private or loopback address unless ``allow_private``
    in the plugin's settings lists it). ``check(ctx, value)`` may refuse a
    value with ``ValueError("what is wrong")``.
    """

    name: str
    label: str
    kind: str = "text"
    help: str = ""
    check: Callable[[Any, str], None] | None = None
    max_length: int = 500


@dataclass(frozen=True)
class ChannelType:
    """A notification transport: formats and sends one message, raises :class:`DeliveryError`.

    ``send(ctx, message)`` delivers one :class:`Message`; the core records
    attempts, retries temporary failures and dead-letters the rest.

    How the rules reach people through it (each optional):

    * ``address_for(ctx, agent, values)`` — the address of an agent (owner,
      assignee, team member, lead) on this channel, or ``None`` when the agent
      cannot be reached here. ``values`` holds the agent's :class:`ChannelField`
      values from the profile page. Without it the channel never addresses agents.
    * ``contact_address_for(ctx, contact)`` — the address of a requester
      (contact), or ``None``.
    * ``broadcast(ctx)`` — addresses that receive every incident event
      (webhook-style); an empty list sends nothing.

    ``enabled_by_default``: whether an agent who never visited their profile
    is notified on this channel (when ``address_for`` finds an address).
    """

    name: str
    title: str
    send: Callable[[Any, Message], None]
    description: str = ""
    agent_fields: tuple[ChannelField, ...] = ()
    address_for: Callable[[Any, Any, Mapping[str, str]], str | None] | None = None
    contact_address_for: Callable[[Any, Any], str | None] | None = None
    broadcast: Callable[[Any], Sequence[str]] | None = None
    enabled_by_default: bool = True


@dataclass(frozen=True)
class SlaTargets:
    """Targets one policy sets for one incident; ``None`` means no target of that kind."""

    response: dt.timedelta | None
    resolution: dt.timedelta | None
    calendar: str | None = None  # business calendar name; None = around the clock


@dataclass(frozen=True)
class SlaPolicy:
    """An SLA policy: ``targets(ctx, incident)`` gives the targets it sets for an incident
    (``None`` if it does not apply). ``ctx.registry.sla_policies`` holds the other
    policies, so a policy can wrap another."""

    name: str
    title: str
    targets: Callable[[Any, Any], SlaTargets | None]  # (ctx, incident)
    warnings: tuple[float, ...] = (0.5, 0.75, 0.9)
    description: str = ""


@dataclass(frozen=True)
class BusinessCalendar:
    """Working hours per weekday (0 = Monday) in a time zone, and holidays.

    ``holiday_years`` (first, last), when the holidays are known only for those years (a
    country's, loaded for a few years around the process's start): SLA checks then compare
    two sightings' holidays only in years both know, so a process started in another year is
    not taken for a change of calendar. ``None``: the holidays are the whole list.
    """

    name: str
    title: str
    time_zone: str
    hours: Mapping[int, tuple[dt.time, dt.time]]
    holidays: frozenset[dt.date] = frozenset()
    holiday_years: tuple[int, int] | None = None


@dataclass(frozen=True)
class StepParam:
    """One parameter of an escalation step, checked when a policy is saved.

    ``kind``: ``"text"``, ``"int"``, ``"bool"``, ``"choice"`` (one of
    ``choices``), ``"team"`` (a team's name), ``"agent"`` (a user name),
    ``"agents"`` (user names, a list), ``"priority"`` (1-4) or ``"channel"``
    (a registered channel type's name). ``check(ctx, value)`` may refuse a
    value with ``ValueError("what is wrong")``.
    """

    name: str
    kind: str = "text"
    required: bool = False
    choices: tuple[str, ...] = ()
    default: Any = None
    help: str = ""
    check: Callable[[Any, Any], None] | None = None


@dataclass(frozen=True)
class StepResult:
    """What a step did, for the incident timeline (``summary``).

    ``ok=False`` is a failure: nothing the step wrote is kept;
    ``temporary=True`` asks the engine to retry it later (with backoff).
    Raising :class:`StepError` (or any exception) means the same.
    """

    summary: str = ""
    ok: bool = True
    temporary: bool = False


class StepError(Exception):
    """A step could not run; ``temporary=True`` means a later retry may succeed."""

    def __init__(self, message: str, *, temporary: bool = False) -> None:
        super().__init__(message)
        self.temporary = temporary


@dataclass(frozen=True)
class EscalationLevel:
    """The level a step runs for: which policy (name and version), which level (1 = first),
    the idempotency ``key`` of this run (the same on a retry; build outbox keys from it),
    whether it was escalated by hand (and why), and whether this is a simulation."""

    policy: str
    version: int
    number: int
    title: str
    key: str
    manual: bool = False
    reason: str = ""
    simulated: bool = False


@dataclass(frozen=True)
class EscalationStep:
    """A kind of escalation step (notify the owner, reassign, raise priority …).

    ``run(ctx, incident, level, params) -> StepResult`` performs the step for
    one :class:`EscalationLevel` (``None`` counts as a plain success; any other
    value is a broken step: rolled back, retried and shown on the Plugins
    page); ``params`` are the values a policy gives,
    already checked against ``params`` (a tuple of :class:`StepParam`). The
    engine calls it inside the transaction that claims the level, so whatever
    the step writes (through the domain functions, ``helpdesk.enqueue`` …)
    commits exactly when the claim does: write, don't send, so a crash or a
    simulation leaves nothing behind."""

    name: str
    title: str
    run: Callable[..., Any]
    description: str = ""
    params: tuple[StepParam, ...] = ()


@dataclass(frozen=True)
class Panel:
    """An extra panel on the incident page, rendered from a template with ``context``."""

    title: str
    template: str
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    """An extra button on the incident page; it POSTs (with CSRF) to ``url``, a path on this
    site (another site's URL is left out: it would receive the agent's CSRF token)."""

    label: str
    url: str


@dataclass(frozen=True)
class QueueColumn:
    """An extra column in the queues. ``value`` gets an incident of the page and must not
    query the database (the page is one query)."""

    name: str
    title: str
    value: Callable[[Any], str]


@dataclass(frozen=True)
class AdminPage:
    """An extra admin page: the blueprint is mounted under /admin/plugins/<name>/ and
    every route in it is for admins only."""

    name: str
    title: str
    blueprint: Any


@dataclass(frozen=True)
class PluginAssets:
    """Folders a plugin ships: templates (searched after the app's) and static files
    (served at /plugins/<name>/static/)."""

    name: str
    templates: Path | None = None
    static: Path | None = None


@dataclass(frozen=True)
class ApiEndpoint:
    """An extra JSON API operation, served at ``/api/v1/plugins/<name><rule>`` with the API's
    own token check (``scope``: read, write or admin), body checking against ``body`` (a JSON
    schema of an object; other fields are refused with 422), problem details, and a place in
    the OpenAPI document.

    ``view(ctx, agent, data, **url_values)`` gets the token's agent (act only as they may) and
    the checked body (``None`` without one); it returns the JSON answer (status 200) or a
    ``(status, answer)`` pair. To refuse it raises :class:`helpdesk.DomainError` (422),
    :class:`helpdesk.NotFound` (404: nothing there, or nothing this agent may see) or
    :class:`helpdesk.PermissionDenied` (403); the message is the problem's ``detail``.
    """

    name: str
    method: str
    scope: str
    summary: str
    view: Callable[..., Any]
    rule: str = ""
    body: Mapping[str, Any] | None = None
    response: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Alert:
    """One monitoring alert in normal form, whatever shape it arrived in.

    ``fingerprint`` identifies the problem within its source (repeats of one fingerprint
    count on one incident); ``firing`` is False for a resolved alert; ``severity`` maps to
    impact and urgency (critical, high, warning, info …); ``service`` names a service.
    """

    fingerprint: str
    firing: bool
    title: str
    description: str = ""
    severity: str | None = None
    service: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


class BadAlert(Exception):
    """A payload an alert source cannot read: answered 422, naming ``field``."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class AlertSource:
    """A kind of monitoring system whose alerts become incidents, received at
    ``POST /api/v1/alerts/<name>`` (a service token with the ``alerts`` scope, or a body
    signed with the source's secret from ``[plugins.alerts] secrets``).

    ``parse(payload)`` turns the decoded JSON body into alerts, raising :class:`BadAlert`
    for what it cannot read; de-duplication, incidents, resolution and flapping are the
    core's, the same for every source.
    """

    name: str
    title: str
    parse: Callable[[Any], Sequence[Alert]]
    description: str = ""


@dataclass(frozen=True)
class MacroAction:
    """Something a canned reply (macro) does besides replying: set the status, the priority,
    the assignment, or whatever a plugin registers (plugin API 1.2).

    ``params`` (a tuple of :class:`StepParam`; kinds ``text``, ``int``, ``choice``,
    ``priority``, ``team`` (a team's name) and ``agent`` (a user name, or ``"me"``)) are the
    fields the macro form offers and checks when a macro is saved; ``check(ctx, params)`` may
    refuse their combination with ``ValueError("what is wrong")``.

    ``run(ctx, incident, actor, params)`` performs the action when an agent sends the macro,
    through the domain functions (``helpdesk.incidents``), inside the one transaction that also
    writes the reply and the macro's other actions: raising :class:`helpdesk.DomainError`
    refuses the whole macro (nothing is written, and the agent sees the message). Its return
    value (a short summary, or ``None``) is ignored for now."""

    name: str
    label: str
    run: Callable[..., Any]
    params: tuple[StepParam, ...] = ()
    check: Callable[[Any, Mapping[str, Any]], None] | None = None
    description: str = ""


@dataclass(frozen=True)
class SettingsTable:
    """The keys a plugin reads from ``[plugins.<name>]`` (and ``HELPDESK_PLUGINS__<NAME>__<KEY>``),
    returned by ``helpdesk_settings_tables`` (plugin API 1.6).

    Any other key given there in the instance file, the environment or to ``create_app`` is
    reported at start-up (log, Plugins page, ``helpdesk plugins``) as a key nothing reads: a
    misspelling would otherwise be silently ignored. Only the table's own keys are checked,
    not what nested tables hold. List ``<key>_file`` too where the plugin reads a secret with
    ``settings.secret(key)``. A table no plugin declares is not checked."""

    name: str
    keys: tuple[str, ...]
