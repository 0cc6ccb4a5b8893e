"""Monitoring alerts become incidents, one per problem.

An alert is identified by its source and its fingerprint: the source is the name
of the service token that sends it, or, for a body signed with a source's secret,
that source's name. The first firing alert logs an incident (source "monitoring",
owned by the service desk, routed like any other); repeats while it is open only
count; a resolved alert notes it on the incident, or resolves it when the sender is
set to; an alert firing again within the flap window after its incident was
resolved reopens the same incident. Flapping is bounded: after ``max_flaps``
re-firings an incident is no longer resolved automatically, and the timeline gets
no further alert entries for it (the counter still moves). The group row is unique
per source and fingerprint and written in the same transaction as the incident, so
a storm of identical alerts, however concurrent, logs exactly one incident.

Payload shapes are alert sources (records of the ``helpdesk_alert_sources`` family):
the core registers ``generic`` and ``alertmanager`` below; plugins add others.
Settings, ``[plugins.alerts]``: ``flap_minutes`` (60), ``max_flaps`` (3),
``secrets`` (source name → signing secret, 32+ characters) and ``resolve`` (source
names whose signed "resolved" alerts resolve the incident; tokens carry their own
choice).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import peewee

from helpdesk import incidents as domain
from helpdesk.clock import now
from helpdesk.config import ConfigError
from helpdesk.context import Context
from helpdesk.db import for_update, write_transaction
from helpdesk.errors import DomainError
from helpdesk.models import Agent, AlertGroup, Incident, Service
from helpdesk.records import Alert, AlertSource, BadAlert
from helpdesk.words import BIDI_OVERRIDES

__all__ = ["Alert", "AlertSource", "BadAlert", "Origin", "Options", "options", "parse", "receive",
           "verify_signature"]

FLAP_WINDOW = dt.timedelta(hours=1)  # defaults; [plugins.alerts] flap_minutes / max_flaps
MAX_FLAPS = 3
MAX_ALERTS = 100
SIGNATURE_HEADER = "X-Helpdesk-Signature"
SIGNATURE_TOLERANCE = 300  # seconds a signed body's timestamp may differ from ours
MIN_SECRET = 32
SEVERITIES = {  # label value -> (impact, urgency)
    "critical": ("high", "high"), "page": ("high", "high"), "high": ("high", "medium"),
    "error": ("high", "medium"), "major": ("high", "medium"), "warning": ("medium", "medium"),
    "medium": ("medium", "medium"), "minor": ("low", "medium"), "low": ("low", "low"),
    "info": ("low", "low"),
}


@dataclass(frozen=True)
class Outcome:
    fingerprint: str
    outcome: str  # created, repeated, reopened, resolved, noted, ignored
    incident: int | None


@dataclass(frozen=True)
class Origin:
    """Who sent the alerts: the group's source name, the acting agent (a token's agent;
    ``None`` for a signed body) and whether a resolved alert resolves the incident."""

    source: str
    actor: Agent | None
    resolve: bool


@dataclass(frozen=True)
class Options:
    flap_window: dt.timedelta = FLAP_WINDOW
    max_flaps: int = MAX_FLAPS
    secrets: Mapping[str, str] | None = None
    resolve: frozenset[str] = frozenset()


def options(ctx: Context) -> Options:
    """``[plugins.alerts]`` checked: a bad value is a :class:`ConfigError` naming it."""
    table = ctx.plugin_settings("alerts")

    def whole(key: str, default: int, low: int, high: int) -> int:
        value = table.get(key, default)
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = low - 1
        if not low <= number <= high or isinstance(value, bool):
            raise ConfigError(f"HELPDESK_PLUGINS__ALERTS__{key.upper()}: a whole number from {low} "
                              f"to {high}, not {value!r}")
        return number

    secrets = table.get("secrets", {}) or {}
    if not isinstance(secrets, Mapping):
        raise ConfigError("[plugins.alerts] secrets: a table of source name = \"secret\"")
    for name, secret in secrets.items():
        if not isinstance(secret, str) or len(secret) < MIN_SECRET:
            raise ConfigError(f"[plugins.alerts] secrets.{name}: at least {MIN_SECRET} characters "
                              "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return Options(flap_window=dt.timedelta(minutes=whole("flap_minutes", 60, 1, 10080)),
                   max_flaps=whole("max_flaps", MAX_FLAPS, 1, 1000),
                   secrets={str(k).lower(): v for k, v in secrets.items()},
                   resolve=frozenset(str(n).lower() for n in table.list("resolve")))


def verify_signature(ctx: Context, source: str, header: str, body: bytes) -> bool:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` with the source's secret,
    within :data:`SIGNATURE_TOLERANCE` seconds (a replayed old body is refused)."""
    secret = (options(ctx).secrets or {}).get(source)
    if not secret or not header:
        return False
    parts = dict(part.strip().partition("=")[::2] for part in header.split(",") if "=" in part)
    stamp, given = parts.get("t", ""), parts.get("v1", "")
    # ASCII only: "²".isdigit() holds but int() refuses it, and compare_digest refuses a
    # non-ASCII str; either was a 500 to whoever sent the header.
    if not (stamp.isascii() and stamp.isdigit()) or abs(time.time() - int(stamp)) > SIGNATURE_TOLERANCE:
        return False
    expected = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def _text(value: Any, where: str, limit: int = 2000, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise BadAlert(f"{where} must be a non-empty string." if required else f"{where} must be a string.",
                       where)
    if len(value) > limit:
        raise BadAlert(f"{where} is limited to {limit} characters.", where)
    return value.strip()


def _status(value: Any, where: str) -> bool:
    if value not in ("firing", "resolved"):
        raise BadAlert(f"{where} is 'firing' or 'resolved'.", where)
    return value == "firing"


def parse(payload: Any) -> list[Alert]:
    """``POST /api/v1/alerts``: Alertmanager's webhook shape (``alerts`` list) or the generic
    one (one alert object), told apart by the ``alerts`` field."""
    if isinstance(payload, dict) and "alerts" in payload:
        return parse_alertmanager(payload)
    return parse_generic(payload)


def parse_generic(payload: Any) -> list[Alert]:
    """One alert as a JSON object: fingerprint, status, title, description, severity, service,
    labels."""
    if not isinstance(payload, dict):
        raise BadAlert("The body must be one JSON object.", "body")
    known = {"fingerprint", "status", "title", "description", "severity", "service", "labels"}
    unknown = sorted(set(payload) - known)
    if unknown:
        raise BadAlert(f"Unknown field(s): {', '.join(unknown)}.", unknown[0])
    labels = _labels(payload.get("labels"), "labels")
    return [Alert(
        fingerprint=_text(payload.get("fingerprint"), "fingerprint", 200, required=True),
        firing=_status(payload.get("status", "firing"), "status"),
        title=_text(payload.get("title"), "title", 2000, required=True),
        description=_text(payload.get("description"), "description", 20000),
        severity=_text(payload.get("severity"), "severity", 50) or None,
        service=_text(payload.get("service"), "service", 100) or None,
        labels=labels,
    )]


def _labels(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items()):
        raise BadAlert(f"{where} must map names to strings.", where)
    # Said apart: "must map names to strings" for a value that is a string, only a long one,
    # left the operator looking for a type error in their alerting rules.
    if len(value) > 100:
        raise BadAlert(f"{where} has {len(value)} entries; at most 100 are taken.", where)
    for name, text in value.items():
        if len(name) > 200 or len(text) > 2000:
            raise BadAlert(f"{where}.{name[:50]} is too long: names take up to 200 characters, "
                           "values up to 2000.", f"{where}.{name[:50]}")
    return value


def parse_alertmanager(payload: Any) -> list[Alert]:
    """Prometheus Alertmanager's webhook (version 4): ``alerts`` with labels and annotations."""
    if not isinstance(payload, dict):
        raise BadAlert("The body must be one JSON object.", "body")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise BadAlert("alerts must be a non-empty list.", "alerts")
    if len(alerts) > MAX_ALERTS:
        raise BadAlert(f"At most {MAX_ALERTS} alerts per request.", "alerts")
    common = _labels(payload.get("commonLabels"), "commonLabels")
    parsed = []
    for index, raw in enumerate(alerts):
        where = f"alerts[{index}]"
        if not isinstance(raw, dict):
            raise BadAlert(f"{where} must be an object.", where)
        labels = {**common, **_labels(raw.get("labels"), f"{where}.labels")}
        annotations = _labels(raw.get("annotations"), f"{where}.annotations")
        fingerprint = raw.get("fingerprint")
        if fingerprint is None:  # older senders: the identity is the label set
            if not labels:
                raise BadAlert(f"{where} has neither a fingerprint nor labels.", f"{where}.fingerprint")
            fingerprint = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:32]
        name = labels.get("alertname", "Alert")
        title = annotations.get("summary") or " ".join(
            filter(None, [name, labels.get("instance") or labels.get("job")]))
        parsed.append(Alert(
            fingerprint=_text(fingerprint, f"{where}.fingerprint", 200, required=True),
            firing=_status(raw.get("status", payload.get("status")), f"{where}.status"),
            title=title,
            description=annotations.get("description", ""),
            severity=labels.get("severity"),
            service=labels.get("service"),
            labels=labels,
        ))
    return parsed


BUILT_IN_SOURCES = [
    AlertSource("generic", "Generic JSON alert", parse_generic,
                "One alert object: fingerprint, status (firing/resolved), title, severity …"),
    AlertSource("alertmanager", "Prometheus Alertmanager", parse_alertmanager,
                "Alertmanager's webhook receiver payload (version 4)"),
]


def _summary(alert: Alert) -> str:
    lines = [alert.description] if alert.description else []
    if alert.labels:
        lines.append("Labels: " + ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items())))
    return "\n\n".join(lines)


def _one_line(text: str) -> str:
    """Text as an incident title keeps it (one line, no bidi overrides): blank if nothing is left."""
    return " ".join(BIDI_OVERRIDES.sub("", text or "").split())


def _log(ctx: Context, alert: Alert) -> Incident:
    # An alert is never refused for a severity or service the desk does not know (monitoring
    # would retry or drop it, and the outage would go unrecorded): it is logged on the
    # defaults, and the incident says what was not understood, for the desk to fix by hand.
    unknown = []
    impact, urgency = SEVERITIES.get((alert.severity or "").lower(), ("medium", "medium"))
    if alert.severity and alert.severity.lower() not in SEVERITIES:
        unknown.append(f"Severity {alert.severity!r} is not one the desk maps "
                       f"({', '.join(SEVERITIES)}): logged at medium impact and urgency.")
    service = Service.get_or_none((Service.name == alert.service) & (Service.active == True)) \
        if alert.service else None  # noqa: E712
    if alert.service and service is None:
        unknown.append(f"Service {alert.service!r} is not an active service of the desk: logged "
                       "without a service.")
    # Nor for a blank title (a Grafana summary of spaces): it takes the alert's name, else its
    # fingerprint. Refused, it lost the alert, and a batch's earlier alerts were logged by then.
    title = (_one_line(alert.title) or _one_line((alert.labels or {}).get("alertname", ""))
             or _one_line(f"Alert {alert.fingerprint}"))
    if len(title) > domain.MAX_TITLE:
        title = title[: domain.MAX_TITLE - 1] + "…"
    description = "\n\n".join(filter(None, [_summary(alert), *unknown]))
    return domain.log_incident(ctx, title=title, actor=None, description=description,
                               impact=impact, urgency=urgency, service=service, source="monitoring")


def receive(ctx: Context, origin: Origin, alert: Alert, settings: Options | None = None) -> Outcome:
    """Apply one alert; retried when a concurrent first alert of the same fingerprint won."""
    settings = settings or options(ctx)
    for _attempt in range(5):
        try:
            with write_transaction():
                return _apply(ctx, origin, alert, settings)
        except peewee.IntegrityError:
            continue  # the other request created the group: now it is there to count on
    raise DomainError("The alert could not be recorded for contention; send it again.")


def _apply(ctx: Context, origin: Origin, alert: Alert, settings: Options) -> Outcome:
    source, at, actor = origin.source, now(), origin.actor
    flap_window, max_flaps = settings.flap_window, settings.max_flaps
    group = for_update(AlertGroup.select().where(
        (AlertGroup.source == source) & (AlertGroup.fingerprint == alert.fingerprint))).first()

    def done(outcome: str, incident_id: int | None) -> Outcome:
        return Outcome(alert.fingerprint, outcome, incident_id)

    if group is None:
        if not alert.firing:
            return done("ignored", None)  # resolved before we ever saw it fire
        incident = _log(ctx, alert)
        AlertGroup.create(source=source, fingerprint=alert.fingerprint, incident=incident.id,
                          state="firing", first_seen=at, last_seen=at, changed_at=at)
        return done("created", incident.id)

    incident = domain.get(group.incident_id)
    query = AlertGroup.update(last_seen=at).where(AlertGroup.id == group.id)
    if not alert.firing:
        if group.state == "resolved" or not incident.is_active:
            query.execute()
            return done("ignored" if not incident.is_active else "repeated", incident.id)
        AlertGroup.update(last_seen=at, state="resolved", changed_at=at).where(
            AlertGroup.id == group.id).execute()
        if group.flaps >= max_flaps:
            return done("noted", incident.id)  # flapping: counted, no more entries
        text = f"Monitoring reports the alert resolved ({source}: {alert.fingerprint})."
        if origin.resolve:
            domain.change_status(ctx, incident.id, actor, "resolved", note=text,
                                 resolution_code="fixed")
            return done("resolved", incident.id)
        domain.add_comment(ctx, incident.id, actor, text, public=False)
        return done("noted", incident.id)

    # firing
    if incident.is_active:
        refired = group.state == "resolved"
        AlertGroup.update(last_seen=at, count=AlertGroup.count + 1, state="firing",
                          flaps=AlertGroup.flaps + (1 if refired else 0),
                          changed_at=at if refired else group.changed_at).where(
            AlertGroup.id == group.id).execute()
        if refired and group.flaps < max_flaps:
            domain.add_comment(ctx, incident.id, actor, f"The alert is firing again ({source}: "
                               f"{alert.fingerprint}).", public=False)
        return done("repeated", incident.id)
    if incident.status == "resolved" and incident.resolved_at and at - incident.resolved_at <= flap_window:
        flapping = " It is flapping: from now on its changes are only counted, and it no longer " \
            "resolves this incident." if group.flaps + 1 >= max_flaps else ""
        domain.reopen(ctx, incident.id, actor, note=f"The alert is firing again ({source}: "
                      f"{alert.fingerprint}) within {int(flap_window.total_seconds() // 60)} minutes "
                      f"of the resolution.{flapping}")
        AlertGroup.update(last_seen=at, count=AlertGroup.count + 1, state="firing",
                          flaps=AlertGroup.flaps + 1, changed_at=at).where(
            AlertGroup.id == group.id).execute()
        return done("reopened", incident.id)
    # resolved long ago, closed or cancelled: a new problem, a new incident
    incident = _log(ctx, alert)
    AlertGroup.update(incident=incident.id, state="firing", count=1, flaps=0, first_seen=at,
                      last_seen=at, changed_at=at).where(AlertGroup.id == group.id).execute()
    return done("created", incident.id)
