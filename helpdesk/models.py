"""The stored data: people, the catalogue, incidents and their timelines.

Models hold data only. Every change of an incident goes through
:mod:`helpdesk.incidents`, which writes the timeline in the same transaction.
"""

from __future__ import annotations

import datetime as dt

import peewee
from flask_login import UserMixin

from helpdesk.db import BaseModel

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

    def __str__(self) -> str:
        return self.name


class Contact(BaseModel):
    name = peewee.CharField(max_length=200)
    email = peewee.CharField(max_length=254, null=True, unique=True)
    phone = peewee.CharField(max_length=50, default="")
    organisation = peewee.ForeignKeyField(Organisation, null=True, backref="contacts")

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
    version = peewee.IntegerField(default=1)

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
        if not raw or len(raw) > 18 or not raw.isascii() or not raw.isdigit():
            return None
        return int(raw)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def __str__(self) -> str:
        return f"{self.reference} {self.title}"


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

    class Meta:
        indexes = ((("incident", "id"), False),)

    @property
    def is_public(self) -> bool:
        return self.kind == "reply"


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

    class Meta:
        indexes = ((("incident", "target"), True),)


class SlaEvent(BaseModel):
    """A warning or breach that fired: the unique row is claimed before any side effect."""

    incident = peewee.ForeignKeyField(Incident, backref="sla_events", on_delete="CASCADE")
    target = peewee.CharField(max_length=16)
    kind = peewee.CharField(max_length=16)  # warning | breach
    point = peewee.IntegerField()  # per mille of the target; 1000 for a breach
    cycle = peewee.IntegerField()
    at = peewee.DateTimeField(default=utcnow)

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
    created_at = peewee.DateTimeField(default=utcnow)
    sent_at = peewee.DateTimeField(null=True)
    expires_at = peewee.DateTimeField(null=True)  # not sent after this (its moment has passed)

    class Meta:
        indexes = ((("state", "next_attempt_at"), False), (("state", "claimed_until"), False))


class DeliveryAttempt(BaseModel):
    """Each try of a delivery and what came of it, for the admin page."""

    delivery = peewee.ForeignKeyField(Delivery, backref="tries", on_delete="CASCADE")
    at = peewee.DateTimeField(default=utcnow)
    ok = peewee.BooleanField()
    error = peewee.TextField(default="")


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


class PluginFailure(BaseModel):
    """An event hook that raised: kept for the admin Plugins page."""

    plugin = peewee.CharField(max_length=100, index=True)
    hook = peewee.CharField(max_length=100)
    incident = peewee.IntegerField(null=True)
    error = peewee.TextField()
    trace = peewee.TextField(default="")
    at = peewee.DateTimeField(default=utcnow, index=True)


class IncidentFact(BaseModel):
    """One incident as reports count it, rewritten in the transaction of each change
    (:mod:`helpdesk.reports`): reports read these narrow rows, never incidents and clocks.

    Per SLA target: ``*_outcome`` is met / late (met after the target) / open / stopped / none;
    ``*_breach_at`` is when an unmet target is (or was) breached, so "breached" is decided
    at report time; the seconds are to the target being met, in working time on the clock
    (pauses left out) and in wall time.
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

    class Meta:
        indexes = (
            (("created_day",), False),
            (("resolved_day",), False),
            (("owner_team", "created_day"), False),
            (("owner_agent", "next_breach_at"), False),
        )


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
    IncidentFact,
]
