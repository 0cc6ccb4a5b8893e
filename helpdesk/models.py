"""The stored data: people, the catalogue, incidents and their timelines.

Models hold data only. Every change of an incident goes through
:mod:`helpdesk.incidents`, which writes the timeline in the same transaction.
"""

from __future__ import annotations

import datetime as dt

import peewee
from flask_login import UserMixin

from helpdesk.db import BaseModel, Statement

ROLES = {"agent": "Agent", "lead": "Team lead", "admin": "Admin"}
TYPES = {"incident": "Incident", "service_request": "Service request", "query": "Query"}
LEVELS = {"high": "High", "medium": "Medium", "low": "Low"}
PRIORITIES = {1: "P1 Critical", 2: "P2 High", 3: "P3 Medium", 4: "P4 Low"}
SOURCES = {
    "agent": "Agent",
    "phone": "Phone",
    "portal": "Portal",
    "email": "Email",
    "api": "API",
    "monitoring": "Monitoring",
}
STATUSES = {
    "new": "New",
    "assigned": "Assigned",
    "in_progress": "In progress",
    "pending": "Pending",
    "resolved": "Resolved",
    "closed": "Closed",
    "cancelled": "Cancelled",
}
ACTIVE_STATUSES = ("new", "assigned", "in_progress", "pending")
PENDING_REASONS = {"customer": "Awaiting customer", "third_party": "Awaiting third party"}
RESOLUTION_CODES = {
    "fixed": "Fixed",
    "workaround": "Workaround",
    "information": "Information given",
    "no_fault": "No fault found",
    "user_error": "User error",
}


def utcnow() -> dt.datetime:
    """Current time in UTC, naive (as stored): tests replace it via ``helpdesk.clock``."""
    from helpdesk import clock

    return clock.now()


class Team(BaseModel):
    name = peewee.CharField(max_length=100, unique=True)
    description = peewee.TextField(default="")
    created_at = peewee.DateTimeField(default=utcnow)
    #: An inactive team keeps its incidents and history but is assigned no new work.
    active = peewee.BooleanField(default=True)
    #: Functional escalation (migration 0021): "open" (any agent may reassign its incidents) or
    #: "refer" (refer and request: its own agents only hand incidents back to the owner, see
    #: helpdesk.incidents.handback).
    escalation_mode = peewee.CharField(max_length=8, default="open")

    def __str__(self) -> str:
        return self.name


class Agent(UserMixin, BaseModel):
    username = peewee.CharField(max_length=64, unique=True)
    display_name = peewee.CharField(max_length=120)
    email = peewee.CharField(max_length=254, default="")
    password_hash = peewee.CharField(max_length=255)
    role = peewee.CharField(max_length=16, default="agent")
    time_zone = peewee.CharField(max_length=64, null=True)
    active = peewee.BooleanField(default=True)
    created_at = peewee.DateTimeField(default=utcnow)
    #: How tall the queue rows are for this agent: "comfortable" or "compact" (migration 0016).
    queue_density = peewee.CharField(max_length=16, default="comfortable")

    @property
    def is_active(self) -> bool:  # Flask-Login: deactivated agents cannot log in
        return bool(self.active)

    def get_id(self) -> str:
        """Session id: changes with the password, so a new password ends every old session."""
        return f"{self.id}:{self.session_token}"

    @property
    def session_token(self) -> str:
        import hashlib

        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_lead(self) -> bool:
        return self.role in {"lead", "admin"}

    def __str__(self) -> str:
        return self.display_name


class Membership(BaseModel):
    team = peewee.ForeignKeyField(Team, backref="memberships", on_delete="CASCADE")
    agent = peewee.ForeignKeyField(Agent, backref="memberships", on_delete="CASCADE")

    class Meta:
        indexes = ((("team", "agent"), True), (("agent",), False))


class Organisation(BaseModel):
    name = peewee.CharField(max_length=200, unique=True)
    #: Its contacts see each other's incidents in the portal (set by an admin).
    share_incidents = peewee.BooleanField(default=False)

    def __str__(self) -> str:
        return self.name


class Contact(BaseModel):
    name = peewee.CharField(max_length=200)
    email = peewee.CharField(max_length=254, null=True, unique=True)
    phone = peewee.CharField(max_length=50, default="")
    organisation = peewee.ForeignKeyField(Organisation, null=True, backref="contacts")
    #: Set when mail to this address bounced (a delivery status notification came back).
    email_failing_at = peewee.DateTimeField(null=True)
    #: argon2 hash when the customer chose a portal password (else: e-mailed links only).
    password_hash = peewee.CharField(max_length=200, null=True)

    def __str__(self) -> str:
        return self.name


class Category(BaseModel):
    name = peewee.CharField(max_length=100, unique=True)
    active = peewee.BooleanField(default=True)

    def __str__(self) -> str:
        return self.name


class Service(BaseModel):
    name = peewee.CharField(max_length=100, unique=True)
    description = peewee.TextField(default="")
    active = peewee.BooleanField(default=True)

    def __str__(self) -> str:
        return self.name


class Incident(BaseModel):
    type = peewee.CharField(max_length=20, default="incident")
    title = peewee.CharField(max_length=200)
    description = peewee.TextField(default="")
    status = peewee.CharField(max_length=20, default="new")
    pending_reason = peewee.CharField(max_length=20, null=True)
    impact = peewee.CharField(max_length=10, default="medium")
    urgency = peewee.CharField(max_length=10, default="medium")
    priority = peewee.SmallIntegerField(default=3)
    priority_overridden = peewee.BooleanField(default=False)
    category = peewee.ForeignKeyField(Category, null=True)
    service = peewee.ForeignKeyField(Service, null=True)
    requester = peewee.ForeignKeyField(Contact, null=True)
    source = peewee.CharField(max_length=20, default="agent")
    assigned_team = peewee.ForeignKeyField(Team, null=True, backref="assigned_incidents")
    assigned_agent = peewee.ForeignKeyField(Agent, null=True, backref="assigned_incidents")
    owner_team = peewee.ForeignKeyField(Team, backref="owned_incidents")
    owner_agent = peewee.ForeignKeyField(Agent, null=True, backref="owned_incidents")
    created_by = peewee.ForeignKeyField(Agent, null=True, backref="+")
    created_at = peewee.DateTimeField(default=utcnow, index=True)
    updated_at = peewee.DateTimeField(default=utcnow, index=True)
    resolved_at = peewee.DateTimeField(null=True)
    closed_at = peewee.DateTimeField(null=True)
    resolution_code = peewee.CharField(max_length=20, null=True)
    resolution_note = peewee.TextField(null=True)
    duplicate_of = peewee.ForeignKeyField("self", null=True, backref="duplicates")
    parent = peewee.ForeignKeyField("self", null=True, backref="children")
    # The closed incident this one follows up (a customer wrote again after it closed); a plain
    # id, looked up only: their further replies join this one while it is open.
    follow_up_of = peewee.IntegerField(null=True, index=True)
    version = peewee.IntegerField(default=1)
    # Denormalised from the SLA clocks by database triggers (migration 0011), in the same
    # statement as the clock change, so the queues filter and sort without joining clocks:
    # the nearest running due time (None once a target is breached and unmet), and
    # whether any target of the current clocks was breached; and since when a breached target
    # is still unmet (None otherwise: migration 0037), so the due sort puts breached rows first.
    sla_due_at = peewee.DateTimeField(null=True)
    sla_breached = peewee.BooleanField(default=False)
    sla_overdue_since = peewee.DateTimeField(null=True)
    escalation_level = peewee.SmallIntegerField(default=0)  # the last level run (0: none)
    major = peewee.BooleanField(default=False)  # declared a major incident

    class Meta:
        indexes = (
            (("status", "updated_at"), False),
            (("status", "priority"), False),
        )

    @property
    def reference(self) -> str:
        return f"INC-{self.id}"

    @staticmethod
    def parse_reference(text: str | None) -> int | None:
        """The id in ``INC-42``, ``inc-42`` or ``42``; ``None`` for anything else
        (ASCII digits only, within 64 bits)."""
        raw = (text or "").strip().upper().removeprefix("INC-")
        if not raw or len(raw) > 19 or not raw.isascii() or not raw.isdigit():
            return None
        value = int(raw)
        return value if 0 < value < 2**63 else None

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def __str__(self) -> str:
        return f"{self.reference} {self.title}"


# The active pool, as literal SQL: the queue indexes are partial on it, and a planner only
# uses a partial index when the query repeats its condition (a bound parameter would not do).
ACTIVE_SQL = "status IN (" + ", ".join(f"'{status}'" for status in ACTIVE_STATUSES) + ")"
# Queue indexes: name -> (leading equality column or None, extra condition or None). Each
# leads with its queue's own condition, so a page is one index range read in order and a
# queue whose rows are rare is as quick as a common one (see helpdesk.queues).
QUEUE_INDEX_KEYS = {
    "open": (None, None),
    "assignee": ("assigned_agent_id", None),
    "owner": ("owner_agent_id", None),
    "assigned_team": ("assigned_team_id", None),
    "owner_team": ("owner_team_id", None),
    "unassigned": (None, "assigned_agent_id IS NULL"),
    "unowned": (None, "owner_agent_id IS NULL"),
    "breached": (None, "sla_breached"),
    "risk_owner": ("owner_agent_id", "sla_due_at IS NOT NULL"),
    "risk_owner_team": ("owner_team_id", "sla_due_at IS NOT NULL"),
    "escalated": (None, "escalation_level > 0"),  # migration 0012
}
QUEUE_SORT_COLUMNS = {"updated": "updated_at", "created": "created_at", "priority": "priority",
                      "due": "sla_due_at"}


# The due sort of every queue but At risk (whose rows all have a due time): breached rows
# first, most overdue first (their breach), then the running due times, then the rows with
# none (no SLA, or every target met). An expression, not a parameter, so SQLite and
# PostgreSQL match it to the index (migrations 0016, 0037).
DUE_LAST = "9999-12-31 00:00:00"
DUE_SORT_SQL = f"COALESCE(sla_due_at, sla_overdue_since, '{DUE_LAST}')"


def queue_indexes() -> dict[str, tuple[list[str], str]]:
    """Every queue index: name -> (columns, WHERE condition); the id ends each keyset.
    A column written as SQL (the due sort) is an expression of the index."""
    found = {}
    for key, (lead, extra) in QUEUE_INDEX_KEYS.items():
        for sort, column in QUEUE_SORT_COLUMNS.items():
            if sort == "due" and not key.startswith("risk_"):
                column = DUE_SORT_SQL
            condition = ACTIVE_SQL + (f" AND {extra}" if extra else "")
            found[f"incident_q_{key}_{sort}"] = ([c for c in (lead, column, "id") if c], condition)
    return found


for _name, (_columns, _condition) in queue_indexes().items():
    Incident.add_index(Incident.index(*(Incident._meta.columns[c] if c in Incident._meta.columns
                                        else peewee.SQL(c) for c in _columns), name=_name)
                       .where(peewee.SQL(_condition)))


_INCIDENT = Statement(lambda incident_id: Incident.select().where(Incident.id == incident_id),
                      models=(Incident,))


def incident_as_stored(incident_id: int) -> Incident:
    """The incident as the database holds it now, through a statement compiled once: a
    change's transaction reads it back after writing (SLA, escalation, search, reports,
    outbox), and peewee spent more building each read than SQLite took to run it.
    Raises ``Incident.DoesNotExist`` like ``get_by_id``."""
    for (incident,) in _INCIDENT.rows(incident_id):
        return incident
    raise Incident.DoesNotExist(f"no incident {incident_id}")


_TEAM_NAMED = Statement(lambda name: Team.select().where(Team.name == name), models=(Team,))


def team_named(name: str) -> Team | None:
    """The team of this name, or None (the service desk is found by name on every create)."""
    for (team,) in _TEAM_NAMED.rows(name):
        return team
    return None


_IS_MEMBER = Statement(lambda agent_id, team_id: Membership.select(Membership.id).where(
    (Membership.agent == agent_id) & (Membership.team == team_id)).limit(1))


def is_member(agent: Agent | int, team: Team | int) -> bool:
    """Whether the agent belongs to the team (one statement compiled once)."""
    agent_id = agent.id if isinstance(agent, Agent) else agent
    team_id = team.id if isinstance(team, Team) else team
    return _IS_MEMBER.execute(agent_id, team_id).fetchone() is not None


#: The timeline entries a customer sees: agents' replies and the customer's own messages.
PUBLIC_KINDS = ("reply", "customer")


class TimelineEntry(BaseModel):
    """Append-only: database triggers refuse any UPDATE or DELETE (migration 0002)."""

    incident = peewee.ForeignKeyField(Incident, backref="timeline")
    at = peewee.DateTimeField(default=utcnow)
    actor = peewee.ForeignKeyField(Agent, null=True, backref="+")
    kind = peewee.CharField(max_length=16)
    field = peewee.CharField(max_length=40, null=True)
    old_value = peewee.TextField(null=True)
    new_value = peewee.TextField(null=True)
    body = peewee.TextField(default="")
    #: The customer who wrote a ``customer`` entry (by e-mail or in the portal).
    contact = peewee.ForeignKeyField(Contact, null=True, backref="+")

    class Meta:
        indexes = ((("incident", "id"), False),)

    @property
    def is_public(self) -> bool:
        """Seen by the customer: agents' replies and the customer's own messages."""
        return self.kind in PUBLIC_KINDS


class SlaClock(BaseModel):
    """One SLA target (response or resolution) of one incident, and where its clock stands.

    Elapsed time is working time since ``started_at`` minus the working time
    spent paused (``paused_seconds``, plus the current pause since
    ``paused_at``). ``next_event_at`` is when the background check next has
    something to do (a warning point or the breach); it is indexed so the
    check only looks at what is due.
    """

    incident = peewee.ForeignKeyField(Incident, backref="sla_clocks", on_delete="CASCADE")
    target = peewee.CharField(max_length=16)  # response | resolution
    policy = peewee.CharField(max_length=100)
    calendar = peewee.CharField(max_length=100, null=True)  # None: around the clock
    target_seconds = peewee.IntegerField()
    warnings = peewee.CharField(max_length=100, default="")  # e.g. "0.5,0.75,0.9"
    cycle = peewee.IntegerField(default=1)  # bumped when the target changes
    started_at = peewee.DateTimeField()
    paused_seconds = peewee.IntegerField(default=0)
    paused_at = peewee.DateTimeField(null=True)
    due_at = peewee.DateTimeField(null=True)  # None while paused or finished
    met_at = peewee.DateTimeField(null=True)
    breached_at = peewee.DateTimeField(null=True)
    stopped_at = peewee.DateTimeField(null=True)  # closed or cancelled without meeting it
    next_event_at = peewee.DateTimeField(null=True, index=True)
    # Working time when the target was met, in the calendar in force then (migration 0032);
    # None while unmet, and for clocks met before 0032 (measured in the current calendar).
    worked_seconds = peewee.IntegerField(null=True)
    # The incident's owning team when the outcome was decided (met, breached or stopped;
    # migration 0035): reports count the target under it, so a later transfer leaves it there.
    # None while undecided; the first decision holds (a breach met late stays the breaching team's).
    outcome_team = peewee.IntegerField(null=True)

    class Meta:
        indexes = ((("incident", "target"), True),)


# The clocks a changed calendar re-times (migration 0026): open, unbreached, by calendar and id.
SlaClock.add_index(SlaClock.index(SlaClock.calendar, SlaClock.id, name="sla_clock_open_by_calendar")
                   .where(SlaClock.met_at.is_null() & SlaClock.stopped_at.is_null()
                          & SlaClock.breached_at.is_null()))


class SlaEvent(BaseModel):
    """A warning or breach that fired: the unique row is claimed before any side effect."""

    incident = peewee.ForeignKeyField(Incident, backref="sla_events", on_delete="CASCADE")
    target = peewee.CharField(max_length=16)
    kind = peewee.CharField(max_length=16)  # warning | breach
    point = peewee.IntegerField()  # per mille of the target; 1000 for a breach
    cycle = peewee.IntegerField()
    at = peewee.DateTimeField(default=utcnow)
    due_at = peewee.DateTimeField(null=True)  # the due time it was fired for (migration 0029)

    class Meta:
        indexes = ((("incident", "target", "kind", "point", "cycle"), True),)


class Notice(BaseModel):
    """An in-app notice for one agent (SLA warnings and breaches for owners and assignees)."""

    agent = peewee.ForeignKeyField(Agent, backref="notices", on_delete="CASCADE")
    incident = peewee.ForeignKeyField(Incident, null=True, backref="+", on_delete="CASCADE")
    text = peewee.CharField(max_length=500)
    created_at = peewee.DateTimeField(default=utcnow)
    read_at = peewee.DateTimeField(null=True)
    key = peewee.CharField(max_length=200, null=True, unique=True)  # the outbox delivery's key

    class Meta:
        indexes = ((("agent", "read_at"), False),)


class Delivery(BaseModel):
    """One notification in the outbox: written with the change that caused it, sent by a task.

    ``state``: pending (waiting for its next attempt), sending (claimed by a
    worker until ``claimed_until``), sent, or dead (permanent failure or
    retries exhausted; an admin can retry it).
    """

    channel = peewee.CharField(max_length=64)
    recipient = peewee.CharField(max_length=500)
    event = peewee.CharField(max_length=64)
    incident = peewee.ForeignKeyField(Incident, null=True, backref="deliveries", on_delete="CASCADE")
    agent = peewee.ForeignKeyField(Agent, null=True, backref="+", on_delete="CASCADE")
    subject = peewee.CharField(max_length=300)
    text = peewee.TextField()
    html = peewee.TextField(default="")
    data = peewee.TextField(default="{}")
    idempotency_key = peewee.CharField(max_length=200, unique=True)
    state = peewee.CharField(max_length=16, default="pending")
    attempts = peewee.IntegerField(default=0)
    last_error = peewee.TextField(default="")
    next_attempt_at = peewee.DateTimeField(null=True)
    claimed_until = peewee.DateTimeField(null=True)
    claimed_by = peewee.CharField(max_length=200, null=True)  # the worker (WorkerBeat.holder)
    created_at = peewee.DateTimeField(default=utcnow)
    sent_at = peewee.DateTimeField(null=True)
    expires_at = peewee.DateTimeField(null=True)  # not sent after this (its moment has passed)

    class Meta:
        indexes = ((("state", "next_attempt_at"), False), (("state", "claimed_until"), False),
                   (("recipient",), False))  # bounces are proven against it (migration 0028)


class DeliveryAttempt(BaseModel):
    """Each try of a delivery and what came of it, for the admin page."""

    delivery = peewee.ForeignKeyField(Delivery, backref="tries", on_delete="CASCADE")
    at = peewee.DateTimeField(default=utcnow)
    ok = peewee.BooleanField()
    error = peewee.TextField(default="")


class Lease(BaseModel):
    """Who runs one piece of periodic work, and until when (see :mod:`helpdesk.leases`).

    A holder that dies stops renewing; once ``expires_at`` passes, the next
    worker takes the lease over, so no crash can stop the work for good.
    """

    name = peewee.CharField(max_length=64, primary_key=True)
    holder = peewee.CharField(max_length=200)
    acquired_at = peewee.DateTimeField()
    expires_at = peewee.DateTimeField()


class WorkerBeat(BaseModel):
    """A running worker process and when it last said it was alive (faster recovery)."""

    holder = peewee.CharField(max_length=200, primary_key=True)
    started_at = peewee.DateTimeField()
    seen_at = peewee.DateTimeField(index=True)


class IdempotentRequest(BaseModel):
    """A state-changing request that committed, by the idempotency key its form carried.

    Written in the transaction of the request's first change, so a repeat of
    the same request (a double click, a retry after a lost answer) is
    recognised and answered with the first result instead of writing again.
    """

    agent = peewee.IntegerField(null=True)
    key = peewee.CharField(max_length=64)
    fingerprint = peewee.CharField(max_length=64)  # method, path and form fields, hashed
    location = peewee.CharField(max_length=500, null=True)  # where the first answer sent the browser
    created_at = peewee.DateTimeField(default=utcnow, index=True)

    class Meta:
        indexes = ((("key", "agent"), True),)


class EventDelivery(BaseModel):
    """One plugin's copy of one event in the event outbox (see :mod:`helpdesk.event_outbox`).

    Written in the transaction of the change, one row per implementing plugin,
    so a failing plugin is retried and dead-lettered alone. ``event_key`` is
    the same for every plugin's copy of one event: the hook's idempotency key.
    """

    event = peewee.CharField(max_length=64)
    incident = peewee.ForeignKeyField(Incident, null=True, backref="+", on_delete="CASCADE")
    plugin = peewee.CharField(max_length=100)
    payload = peewee.TextField(default="{}")
    event_key = peewee.CharField(max_length=64)
    state = peewee.CharField(max_length=16, default="pending")  # pending, running, done, dead
    attempts = peewee.IntegerField(default=0)
    last_error = peewee.TextField(default="")
    next_attempt_at = peewee.DateTimeField(null=True)
    claimed_until = peewee.DateTimeField(null=True)
    claimed_by = peewee.CharField(max_length=200, null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    done_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = (
            (("event_key", "plugin"), True),
            (("state", "next_attempt_at"), False),
            (("state", "claimed_until"), False),
        )


class NotificationPreference(BaseModel):
    """An agent's choice for one kind of event on one channel (absent: the default, on)."""

    agent = peewee.ForeignKeyField(Agent, backref="preferences", on_delete="CASCADE")
    kind = peewee.CharField(max_length=64)
    channel = peewee.CharField(max_length=64)
    enabled = peewee.BooleanField()

    class Meta:
        indexes = ((("agent", "kind", "channel"), True),)


class AgentChannel(BaseModel):
    """An agent's settings for one channel type: on or off, and the values of the
    channel's per-agent fields (JSON), as chosen on the profile page."""

    agent = peewee.ForeignKeyField(Agent, backref="channels", on_delete="CASCADE")
    channel = peewee.CharField(max_length=64)
    enabled = peewee.BooleanField(default=True)
    values = peewee.TextField(default="{}")

    class Meta:
        indexes = ((("agent", "channel"), True),)


class NotificationRule(BaseModel):
    """An admin's switch for one default rule (audience, kind); absent means on."""

    audience = peewee.CharField(max_length=16)  # owner, assignee, team, requester
    kind = peewee.CharField(max_length=64)
    enabled = peewee.BooleanField()

    class Meta:
        indexes = ((("audience", "kind"), True),)


class LoginAttempt(BaseModel):
    """Failed logins, counted per key (user name, client address) to rate-limit."""

    key = peewee.CharField(max_length=300, index=True)
    at = peewee.DateTimeField(default=utcnow)


class AgentSession(BaseModel):
    """A logged-in browser, kept server-side so it can be ended (logout, "log out other
    sessions", deactivation, role change) and expire; the cookie holds only a random token,
    the table only its SHA-256."""

    token_hash = peewee.CharField(max_length=64, unique=True)
    agent = peewee.ForeignKeyField(Agent, backref="+", on_delete="CASCADE")
    created_at = peewee.DateTimeField(default=utcnow)
    last_seen_at = peewee.DateTimeField(default=utcnow)
    address = peewee.CharField(max_length=100, default="")


class PluginFailure(BaseModel):
    """An event hook that raised: kept for the admin Plugins page."""

    plugin = peewee.CharField(max_length=100, index=True)
    hook = peewee.CharField(max_length=100)
    incident = peewee.IntegerField(null=True)
    error = peewee.TextField()
    trace = peewee.TextField(default="")
    at = peewee.DateTimeField(default=utcnow, index=True)


class ApiToken(BaseModel):
    """A token for the JSON API: personal (an agent's own) or service (made by an admin, acting
    as a chosen agent). Only the SHA-256 of the secret is stored; the secret is shown once."""

    kind = peewee.CharField(max_length=16)  # personal | service
    name = peewee.CharField(max_length=100)
    agent = peewee.ForeignKeyField(Agent, backref="api_tokens", on_delete="CASCADE")
    created_by = peewee.ForeignKeyField(Agent, null=True, backref="+", on_delete="SET NULL")
    secret_hash = peewee.CharField(max_length=64, unique=True)
    hint = peewee.CharField(max_length=16)  # the secret's first characters, to recognise it
    scopes = peewee.CharField(max_length=100)  # comma-separated: read, write, admin, alerts
    rate_limit = peewee.IntegerField(default=120)  # requests per minute
    resolve_alerts = peewee.BooleanField(default=False)  # alert source: a resolved alert resolves
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField(null=True)
    last_used_at = peewee.DateTimeField(null=True)
    revoked_at = peewee.DateTimeField(null=True)
    window_start = peewee.DateTimeField(null=True)  # the current rate-limit minute
    window_count = peewee.IntegerField(default=0)


class ApiIdempotency(BaseModel):
    """The stored answer to a POST sent with an ``Idempotency-Key``, per token."""

    token = peewee.ForeignKeyField(ApiToken, backref="+", on_delete="CASCADE")
    key = peewee.CharField(max_length=200)
    request_hash = peewee.CharField(max_length=64)
    status = peewee.IntegerField()
    body = peewee.TextField()
    location = peewee.CharField(max_length=300, default="")
    created_at = peewee.DateTimeField(default=utcnow, index=True)

    class Meta:
        indexes = ((("token", "key"), True),)


class AlertGroup(BaseModel):
    """One monitoring alert (source + fingerprint) and the incident it feeds: repeats count
    here instead of logging new incidents."""

    source = peewee.CharField(max_length=100)
    fingerprint = peewee.CharField(max_length=200)
    incident = peewee.ForeignKeyField(Incident, backref="+", on_delete="CASCADE")
    state = peewee.CharField(max_length=16)  # firing | resolved
    count = peewee.IntegerField(default=1)  # firing notifications received for this incident
    flaps = peewee.IntegerField(default=0)  # re-firings after a resolve, for this incident
    first_seen = peewee.DateTimeField(default=utcnow)
    last_seen = peewee.DateTimeField(default=utcnow)
    changed_at = peewee.DateTimeField(default=utcnow)  # last firing <-> resolved change

    class Meta:
        indexes = ((("source", "fingerprint"), True),)


class InboundMail(BaseModel):
    """One received e-mail and what became of it; the unique key makes intake exactly-once.

    ``key`` is a hash of the ``Message-ID`` (or of the raw bytes when there is
    none; of both when another message used that id first). ``outcome``: created,
    replied, reopened, followed_up (new incident linked to a closed one), recorded
    (auto-reply kept on the incident, no answer), dropped (our own mail, loops,
    bounces) or quarantined (could not be read or placed: an admin looks at it).
    The raw message is kept in the instance folder (``raw_path``) and the
    untrimmed text in ``full_text``.
    """

    key = peewee.CharField(max_length=64, unique=True)
    message_id = peewee.TextField(default="")
    sender = peewee.CharField(max_length=254, default="")
    subject = peewee.CharField(max_length=300, default="")
    received_at = peewee.DateTimeField(default=utcnow, index=True)
    raw_path = peewee.CharField(max_length=200, default="")
    size = peewee.IntegerField(default=0)
    automatic = peewee.BooleanField(default=False)
    outcome = peewee.CharField(max_length=16, index=True)
    reason = peewee.TextField(default="")
    full_text = peewee.TextField(default="")
    incident = peewee.ForeignKeyField(Incident, null=True, backref="mails", on_delete="SET NULL")
    entry = peewee.ForeignKeyField(TimelineEntry, null=True, backref="+")
    contact = peewee.ForeignKeyField(Contact, null=True, backref="+")
    handled_at = peewee.DateTimeField(null=True)  # an admin dealt with a quarantined message


class PortalToken(BaseModel):
    """A one-time sign-in link for the customer portal, stored as a hash; used once, expires."""

    contact = peewee.ForeignKeyField(Contact, backref="+", on_delete="CASCADE")
    token_hash = peewee.CharField(max_length=64, unique=True)
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField()
    used_at = peewee.DateTimeField(null=True)


class Attachment(BaseModel):
    """A file that came with an incident or one of its timeline entries.

    The bytes live in the instance folder under their SHA-256 (identical files
    are stored once); the name is sanitised and only ever shown and sent as a
    download name. ``entry`` is None for files that came with the incident itself.
    """

    incident = peewee.ForeignKeyField(Incident, backref="attachments", on_delete="CASCADE")
    entry = peewee.ForeignKeyField(TimelineEntry, null=True, backref="+")
    sha256 = peewee.CharField(max_length=64, index=True)
    size = peewee.IntegerField()
    filename = peewee.CharField(max_length=200)
    content_type = peewee.CharField(max_length=100)
    contact = peewee.ForeignKeyField(Contact, null=True, backref="+")
    agent = peewee.ForeignKeyField(Agent, null=True, backref="+")
    created_at = peewee.DateTimeField(default=utcnow)
class IncidentFact(BaseModel):
    """One incident as reports count it, rewritten in the transaction of each change
    (:mod:`helpdesk.reports`): reports read these narrow rows, never incidents and clocks.

    Per SLA target: ``*_outcome`` is met / late (met after the target) / open / stopped / none;
    ``*_breach_at`` is when an unmet target is (or was) breached, so "breached" is decided
    at report time; the seconds are to the target being met, in working time on the clock
    (pauses left out) and in wall time. ``*_team`` is the clock's ``outcome_team``: the team
    its met, late or breached counts under (None: undecided, it counts under ``owner_team``).
    """

    incident_id = peewee.IntegerField(primary_key=True)
    created_at = peewee.DateTimeField()
    created_day = peewee.CharField(max_length=10)  # local date, YYYY-MM-DD
    resolved_day = peewee.CharField(max_length=10, null=True)
    owner_team = peewee.IntegerField()
    owner_agent = peewee.IntegerField(null=True)
    assigned_team = peewee.IntegerField(null=True)
    priority = peewee.SmallIntegerField()
    category = peewee.IntegerField(null=True)
    service = peewee.IntegerField(null=True)
    status = peewee.CharField(max_length=20)
    resolved_count = peewee.IntegerField(default=0)
    reopen_count = peewee.IntegerField(default=0)
    next_breach_at = peewee.DateTimeField(null=True)
    response_outcome = peewee.CharField(max_length=8, default="none")
    response_breach_at = peewee.DateTimeField(null=True)
    response_business_seconds = peewee.IntegerField(null=True)
    response_wall_seconds = peewee.IntegerField(null=True)
    resolution_outcome = peewee.CharField(max_length=8, default="none")
    resolution_breach_at = peewee.DateTimeField(null=True)
    resolution_business_seconds = peewee.IntegerField(null=True)
    resolution_wall_seconds = peewee.IntegerField(null=True)
    response_team = peewee.IntegerField(null=True)
    resolution_team = peewee.IntegerField(null=True)
    ended_day = peewee.CharField(max_length=10, null=True)  # left the active statuses (latest)

    class Meta:
        indexes = (
            (("created_day",), False),
            (("resolved_day",), False),
            (("owner_team", "created_day"), False),
            (("owner_agent", "next_breach_at"), False),
            (("response_outcome", "created_day"), False),
            (("resolution_outcome", "created_day"), False),
        )


#: The dimensions of a report aggregate row; 0 stands for "none" in the nullable ones, so
#: the unique key has no NULL in it.
REPORT_KEYS = ("day", "owner_team", "owner_agent", "priority", "service", "category")


class ReportDay(BaseModel):
    """What the incidents of one (local day, owning team, owner, priority, service, category)
    add to reports, kept as a delta of their :class:`IncidentFact` rows in the transaction of
    every change (:mod:`helpdesk.reports`). Counts by the day logged (``opened``, outcomes,
    duration sums, reopens), except ``resolved`` (by the day resolved) and ``ended*`` (by the
    day the incident left the active statuses, ``ended_age<k>`` when that was k days after
    the day it was logged)."""

    day = peewee.CharField(max_length=10)
    owner_team = peewee.IntegerField()
    owner_agent = peewee.IntegerField()
    priority = peewee.SmallIntegerField()
    service = peewee.IntegerField()
    category = peewee.IntegerField()
    opened = peewee.IntegerField(default=0)
    resolved = peewee.IntegerField(default=0)
    ended = peewee.IntegerField(default=0)
    ended_age0 = peewee.IntegerField(default=0)
    ended_age1 = peewee.IntegerField(default=0)
    ended_age2 = peewee.IntegerField(default=0)
    ended_age3 = peewee.IntegerField(default=0)
    ended_age4 = peewee.IntegerField(default=0)
    ended_age5 = peewee.IntegerField(default=0)
    ended_age6 = peewee.IntegerField(default=0)
    response_met = peewee.IntegerField(default=0)
    response_late = peewee.IntegerField(default=0)
    response_breached = peewee.IntegerField(default=0)  # stopped unmet after the target
    resolution_met = peewee.IntegerField(default=0)
    resolution_late = peewee.IntegerField(default=0)
    resolution_breached = peewee.IntegerField(default=0)
    resolved_once = peewee.IntegerField(default=0)
    reopened = peewee.IntegerField(default=0)
    response_business_n = peewee.IntegerField(default=0)
    response_business_sum = peewee.BigIntegerField(default=0)
    response_wall_n = peewee.IntegerField(default=0)
    response_wall_sum = peewee.BigIntegerField(default=0)
    resolution_business_n = peewee.IntegerField(default=0)
    resolution_business_sum = peewee.BigIntegerField(default=0)
    resolution_wall_n = peewee.IntegerField(default=0)
    resolution_wall_sum = peewee.BigIntegerField(default=0)

    class Meta:
        indexes = ((REPORT_KEYS, True),)


class ReportDuration(BaseModel):
    """A histogram of times to respond and resolve per report key: how many targets met in
    ``measure`` (0-3, :data:`helpdesk.reports.MEASURES`) fell in ``bucket`` (see
    :func:`helpdesk.reports.bucket`), for approximate percentiles over long periods."""

    day = peewee.CharField(max_length=10)
    owner_team = peewee.IntegerField()
    owner_agent = peewee.IntegerField()
    priority = peewee.SmallIntegerField()
    service = peewee.IntegerField()
    category = peewee.IntegerField()
    measure = peewee.SmallIntegerField()
    bucket = peewee.SmallIntegerField()
    count = peewee.IntegerField(default=0)

    class Meta:
        indexes = (((*REPORT_KEYS, "measure", "bucket"), True),)


MODELS = [
    Team,
    Agent,
    Membership,
    Organisation,
    Contact,
    Category,
    Service,
    Incident,
    TimelineEntry,
    LoginAttempt,
    PluginFailure,
    SlaClock,
    SlaEvent,
    Notice,
    Delivery,
    DeliveryAttempt,
    NotificationPreference,
    NotificationRule,
    AgentChannel,
    Lease,
    WorkerBeat,
    EventDelivery,
    IdempotentRequest,
    AgentSession,
    ApiToken,
    ApiIdempotency,
    AlertGroup,
    InboundMail,
    PortalToken,
    Attachment,
    IncidentFact,
]


class EscalationPolicy(BaseModel):
    """An escalation policy as admins edit it; ``definition`` (JSON) is its current version's
    conditions and levels, also kept unchanged per version in :class:`EscalationPolicyVersion`."""

    name = peewee.CharField(max_length=64, unique=True)
    title = peewee.CharField(max_length=200)
    enabled = peewee.BooleanField(default=True)
    position = peewee.IntegerField(default=0)  # the first enabled policy that applies wins
    version = peewee.IntegerField(default=1)
    definition = peewee.TextField()
    updated_at = peewee.DateTimeField(default=utcnow)


class EscalationPolicyVersion(BaseModel):
    """Every saved version of a policy, so a run names exactly what it ran."""

    policy = peewee.ForeignKeyField(EscalationPolicy, backref="versions", on_delete="CASCADE")
    version = peewee.IntegerField()
    definition = peewee.TextField()
    saved_at = peewee.DateTimeField(default=utcnow)
    saved_by = peewee.ForeignKeyField(Agent, null=True, backref="+")

    class Meta:
        indexes = ((("policy", "version"), True),)


class EscalationState(BaseModel):
    """Where one incident stands in its escalation: the policy (and version) that escalated it,
    the last level run, an acknowledgement, a snooze, and when the check next looks (indexed)."""

    incident = peewee.ForeignKeyField(Incident, unique=True, backref="+", on_delete="CASCADE")
    policy = peewee.ForeignKeyField(EscalationPolicy, null=True, backref="+", on_delete="SET NULL")
    version = peewee.IntegerField(default=0)
    level = peewee.IntegerField(default=0)
    acknowledged_level = peewee.IntegerField(default=0)
    snoozed_until = peewee.DateTimeField(null=True)
    next_at = peewee.DateTimeField(null=True, index=True)


class EscalationRun(BaseModel):
    """The claim of one level for one incident: unique per (incident, policy, version, level,
    target cycle) and written in the transaction of the steps' effects, so a level never runs
    twice. ``state``: done, retrying (a temporary failure; ``next_attempt_at``), failed."""

    incident = peewee.ForeignKeyField(Incident, backref="+", on_delete="CASCADE")
    policy = peewee.ForeignKeyField(EscalationPolicy, null=True, backref="+", on_delete="SET NULL")
    policy_name = peewee.CharField(max_length=64)
    version = peewee.IntegerField()
    level = peewee.IntegerField()
    cycle = peewee.IntegerField()
    at = peewee.DateTimeField()
    manual = peewee.BooleanField(default=False)
    actor = peewee.ForeignKeyField(Agent, null=True, backref="+")
    reason = peewee.TextField(default="")
    state = peewee.CharField(max_length=16, default="done")
    steps_done = peewee.CharField(max_length=200, default="")  # indices of the steps that ran
    attempts = peewee.IntegerField(default=1)
    error = peewee.TextField(default="")
    next_attempt_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("incident", "policy_name", "version", "level", "cycle"), True),
                   (("state", "next_attempt_at"), False))


class Watcher(BaseModel):
    """An agent following an incident: told of its changes while the agent is active."""

    incident = peewee.ForeignKeyField(Incident, backref="+", on_delete="CASCADE")
    agent = peewee.ForeignKeyField(Agent, backref="+", on_delete="CASCADE")
    added_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("incident", "agent"), True),)


MODELS += [EscalationPolicy, EscalationPolicyVersion, EscalationState, EscalationRun, Watcher]


class PeriodicRun(BaseModel):
    """The last pass of one piece of periodic work (``sla_check``, ``sweep_outbox`` …): when it
    started and finished, how long it took, and the last error, for /metrics."""

    name = peewee.CharField(max_length=64, primary_key=True)
    started_at = peewee.DateTimeField()
    finished_at = peewee.DateTimeField(null=True)
    seconds = peewee.DoubleField(default=0)
    runs = peewee.IntegerField(default=0)
    failures = peewee.IntegerField(default=0)
    error = peewee.TextField(default="")


MODELS += [PeriodicRun]


class Rating(BaseModel):
    """A customer's satisfaction with a resolution (1 to 5, optional words), one per incident;
    changing it updates the row and adds a timeline entry."""

    incident = peewee.ForeignKeyField(Incident, unique=True, backref="+", on_delete="CASCADE")
    contact = peewee.ForeignKeyField(Contact, null=True, backref="+", on_delete="SET NULL")
    score = peewee.SmallIntegerField()
    comment = peewee.TextField(default="")
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)


MODELS += [Rating]


class Macro(BaseModel):
    """A canned reply: text with placeholders, public or an internal note, and the actions it
    takes along (set status, priority, assignment, or a plugin's). Personal (``agent`` set) or
    shared with one team (``team`` set). ``actions`` is a JSON list of
    ``{"action": name, "params": {...}}``, checked against the registered macro actions."""

    name = peewee.CharField(max_length=100)
    body = peewee.TextField(default="")
    public = peewee.BooleanField(default=False)
    actions = peewee.TextField(default="[]")
    agent = peewee.ForeignKeyField(Agent, null=True, backref="+", on_delete="CASCADE")
    team = peewee.ForeignKeyField(Team, null=True, backref="+", on_delete="CASCADE")
    created_by = peewee.ForeignKeyField(Agent, null=True, backref="+", on_delete="SET NULL")
    updated_at = peewee.DateTimeField(default=utcnow)


MODELS += [Macro]


class StoredSetting(BaseModel):
    """A plugin setting saved in the browser (``<plugin>.<key>``, JSON value). The instance file
    and the environment win over it key by key (see helpdesk.site_settings)."""

    key = peewee.CharField(max_length=120, unique=True)
    value = peewee.TextField()
    updated_at = peewee.DateTimeField(default=utcnow)
    updated_by = peewee.ForeignKeyField(Agent, null=True, backref="+", on_delete="SET NULL")


class ConfigChange(BaseModel):
    """The audit trail of configuration changed in the browser (settings, teams, contacts):
    who, when, old → new, secrets redacted. Its highest id is the settings revision every
    process compares before using its cached copy."""

    key = peewee.CharField(max_length=160, index=True)
    old_value = peewee.TextField(default="")
    new_value = peewee.TextField(default="")
    actor = peewee.ForeignKeyField(Agent, null=True, backref="+", on_delete="SET NULL")
    at = peewee.DateTimeField(default=utcnow)


MODELS += [StoredSetting, ConfigChange]


class SavedView(BaseModel):
    """A queue with its filters, sort and columns, saved by an agent under a name; shared
    with one of the agent's teams when ``team`` is set (its members see and use it; only
    its owner or a lead of that team changes it)."""

    owner = peewee.ForeignKeyField(Agent, backref="+", on_delete="CASCADE")
    team = peewee.ForeignKeyField(Team, null=True, backref="+", on_delete="SET NULL")
    name = peewee.CharField(max_length=60)
    queue = peewee.CharField(max_length=16)
    filters = peewee.TextField(default="{}")  # JSON: status, priority, type, team, q, sort
    columns = peewee.CharField(max_length=200, default="")  # shown columns, comma-separated
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("owner", "name"), True),)


MODELS += [SavedView]


class BulkResult(BaseModel):
    """What one bulk change on a queue did, kept a short while so the queue page that follows
    it is a plain GET (Post/Redirect/Get: reloading shows the result again and changes
    nothing). Only the agent who ran it reads it, by the random ``key`` in the address."""

    key = peewee.CharField(max_length=32, unique=True)
    agent = peewee.ForeignKeyField(Agent, backref="+", on_delete="CASCADE")
    result = peewee.TextField()  # JSON: the rows' outcomes, the rows kept ticked, the bar's choices
    created_at = peewee.DateTimeField(default=utcnow, index=True)


MODELS += [BulkResult]


ESCALATION_MODES = {"open": "Open (any agent may reassign)",
                    "refer": "Refer and request (hand back to the owner with a request)"}


class TeamOnCall(BaseModel):
    """A team's current on-call agent (one at a time, no rota), optionally until a moment;
    the reassign escalation step can assign to them."""

    team = peewee.ForeignKeyField(Team, unique=True, backref="+", on_delete="CASCADE")
    agent = peewee.ForeignKeyField(Agent, backref="+", on_delete="CASCADE")
    until = peewee.DateTimeField(null=True)  # None: until changed
    set_by = peewee.ForeignKeyField(Agent, null=True, backref="+", on_delete="SET NULL")
    set_at = peewee.DateTimeField(default=utcnow)


class HandBack(BaseModel):
    """A specialist team (in refer mode) handing an incident back to its owner with a request,
    optionally suggesting a team; the owner accepts or rejects it. ``state``: pending, accepted,
    rejected, lapsed (the incident moved on before anyone decided)."""

    incident = peewee.ForeignKeyField(Incident, backref="+", on_delete="CASCADE")
    team = peewee.ForeignKeyField(Team, backref="+", on_delete="CASCADE")
    requested_by = peewee.ForeignKeyField(Agent, null=True, backref="+", on_delete="SET NULL")
    requested_at = peewee.DateTimeField(default=utcnow)
    request = peewee.TextField()
    suggested_team = peewee.ForeignKeyField(Team, null=True, backref="+", on_delete="SET NULL")
    state = peewee.CharField(max_length=16, default="pending")
    decided_by = peewee.ForeignKeyField(Agent, null=True, backref="+", on_delete="SET NULL")
    decided_at = peewee.DateTimeField(null=True)
    decision = peewee.TextField(default="")

    class Meta:
        indexes = ((("incident", "state"), False),)


MODELS += [TeamOnCall, HandBack]


class CustomerSession(BaseModel):
    """A customer signed in to the portal, kept server-side like :class:`AgentSession` so
    that signing out, a new password or a deleted contact ends it; the cookie holds only a
    random token, the table its SHA-256."""

    token_hash = peewee.CharField(max_length=64, unique=True)
    contact = peewee.ForeignKeyField(Contact, backref="+", on_delete="CASCADE")
    created_at = peewee.DateTimeField(default=utcnow)
    last_seen_at = peewee.DateTimeField(default=utcnow)


MODELS += [CustomerSession]

MODELS += [ReportDay, ReportDuration]


class SlaCalendar(BaseModel):
    """Each business calendar as the SLA check last saw it: its zone, hours and the holidays of
    the years around the sighting (``definition``, JSON; migration 0031) and their hash. A
    different zone or hours, or different holidays in a year both sightings cover, means an
    admin changed the calendar, and the open clocks counting on it are re-timed once
    (:func:`helpdesk.sla.follow_calendar_changes`); a new year alone is no change."""

    name = peewee.CharField(max_length=100, primary_key=True)
    fingerprint = peewee.CharField(max_length=64)
    seen_at = peewee.DateTimeField()
    definition = peewee.TextField(null=True)  # None: written before 0031 (only the fingerprint)


MODELS += [SlaCalendar]


class DirectoryRevision(BaseModel):
    """At most one row (id 1; none means 0): a counter that triggers (migration 0036) move
    whenever a team is added, renamed or removed, a membership changes, or an agent is
    renamed, (de)activated or removed, whoever does it. A process keeps the teams-with-
    members list of its select boxes while the revision, read with the session, stays
    where it was. Not in :data:`MODELS`: it is no data of its own to copy or back up (a
    copied database counts its own changes from its triggers)."""

    revision = peewee.IntegerField(default=0)
