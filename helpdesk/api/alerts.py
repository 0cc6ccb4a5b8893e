"""Monitoring alerts become incidents, one per problem.

An alert is identified by its source (the name of the service token that sends
it) and its fingerprint. The first firing alert logs an incident (source
"monitoring", owned by the service desk, routed like any other); repeats while
it is open only count; a resolved alert notes it on the incident, or resolves
it when the source is set to; an alert firing again soon after its incident was
resolved reopens the same incident. Flapping is bounded: after
:data:`MAX_FLAPS` re-firings an incident is no longer resolved automatically,
and the timeline gets no further alert entries for it (the counter still
moves). The group row is unique per source and fingerprint and written in the
same transaction as the incident, so a storm of identical alerts, however
concurrent, logs exactly one incident.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import peewee

from helpdesk import incidents as domain
from helpdesk.clock import now
from helpdesk.context import Context
from helpdesk.db import for_update, write_transaction
from helpdesk.errors import DomainError
from helpdesk.models import AlertGroup, ApiToken, Incident, Service

FLAP_WINDOW = dt.timedelta(hours=1)
MAX_FLAPS = 3
MAX_ALERTS = 100
SEVERITIES = {  # label value -> (impact, urgency)
    "critical": ("high", "high"), "page": ("high", "high"), "high": ("high", "medium"),
    "error": ("high", "medium"), "major": ("high", "medium"), "warning": ("medium", "medium"),
    "medium": ("medium", "medium"), "minor": ("low", "medium"), "low": ("low", "low"),
    "info": ("low", "low"),
}


class BadAlert(DomainError):
    """The payload is not an alert we understand (HTTP 422); ``field`` names where."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Alert:
    """One alert in normal form, whatever shape it arrived in."""

    fingerprint: str
    firing: bool
    title: str
    description: str = ""
    severity: str | None = None
    service: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    fingerprint: str
    outcome: str  # created, repeated, reopened, resolved, noted, ignored
    incident: int | None


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
    """Alertmanager's webhook shape (``alerts`` list) or the generic one (one alert object)."""
    if not isinstance(payload, dict):
        raise BadAlert("The body must be one JSON object.", "body")
    if "alerts" in payload:
        return _alertmanager(payload)
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
    if not isinstance(value, dict) or len(value) > 100 or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 200 and len(v) <= 2000
            for k, v in value.items()):
        raise BadAlert(f"{where} must map names to strings.", where)
    return value


def _alertmanager(payload: dict[str, Any]) -> list[Alert]:
    alerts = payload["alerts"]
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


def _summary(alert: Alert) -> str:
    lines = [alert.description] if alert.description else []
    if alert.labels:
        lines.append("Labels: " + ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items())))
    return "\n\n".join(lines)


def _log(ctx: Context, alert: Alert) -> Incident:
    impact, urgency = SEVERITIES.get((alert.severity or "").lower(), ("medium", "medium"))
    service = Service.get_or_none((Service.name == alert.service) & (Service.active == True)) \
        if alert.service else None  # noqa: E712
    title = " ".join(alert.title.split())
    if len(title) > domain.MAX_TITLE:
        title = title[: domain.MAX_TITLE - 1] + "…"
    return domain.log_incident(ctx, title=title, actor=None, description=_summary(alert),
                               impact=impact, urgency=urgency, service=service, source="monitoring")


def receive(ctx: Context, token: ApiToken, alert: Alert) -> Outcome:
    """Apply one alert; retried when a concurrent first alert of the same fingerprint won."""
    for _attempt in range(5):
        try:
            with write_transaction():
                return _apply(ctx, token, alert)
        except peewee.IntegrityError:
            continue  # the other request created the group: now it is there to count on
    raise DomainError("The alert could not be recorded for contention; send it again.")


def _apply(ctx: Context, token: ApiToken, alert: Alert) -> Outcome:
    source, at, actor = token.name, now(), token.agent
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
        if group.flaps >= MAX_FLAPS:
            return done("noted", incident.id)  # flapping: counted, no more entries
        text = f"Monitoring reports the alert resolved ({source}: {alert.fingerprint})."
        if token.resolve_alerts:
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
        if refired and group.flaps < MAX_FLAPS:
            domain.add_comment(ctx, incident.id, actor, f"The alert is firing again ({source}: "
                               f"{alert.fingerprint}).", public=False)
        return done("repeated", incident.id)
    if incident.status == "resolved" and incident.resolved_at and at - incident.resolved_at <= FLAP_WINDOW:
        flapping = " It is flapping: from now on its changes are only counted, and it no longer " \
            "resolves this incident." if group.flaps + 1 >= MAX_FLAPS else ""
        domain.reopen(ctx, incident.id, actor, note=f"The alert is firing again ({source}: "
                      f"{alert.fingerprint}) within {int(FLAP_WINDOW.total_seconds() // 60)} minutes "
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
