"""Grafana's alerting webhook as an alert source: ``POST /api/v1/alerts/grafana``.

Grafana (8+, unified alerting) posts a list of alerts much like Alertmanager's, with links to
the dashboard and panel and the evaluated values; this plugin turns each into the core's
:class:`~helpdesk.records.Alert`, carrying those links into the incident's description so the
owner can open the graph from the incident. De-duplication, resolution and flapping are the
core's, as for every source. Enabled by default; disable with ``disabled_plugins = ["grafana_alerts"]``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from helpdesk import hookimpl
from helpdesk.records import Alert, AlertSource, BadAlert

MAX_ALERTS = 100


def _strings(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items()):
        raise BadAlert(f"{where} must map names to strings.", where)
    return value


def _link(value: Any) -> str | None:
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) else None


def parse(payload: Any) -> list[Alert]:
    """Grafana's webhook body: ``alerts`` each with status, labels, annotations, fingerprint,
    ``dashboardURL`` / ``panelURL`` and ``valueString``."""
    if not isinstance(payload, dict):
        raise BadAlert("The body must be one JSON object.", "body")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise BadAlert("alerts must be a non-empty list (Grafana's webhook contact point).", "alerts")
    if len(alerts) > MAX_ALERTS:
        raise BadAlert(f"At most {MAX_ALERTS} alerts per request.", "alerts")
    parsed = []
    for index, raw in enumerate(alerts):
        where = f"alerts[{index}]"
        if not isinstance(raw, dict):
            raise BadAlert(f"{where} must be an object.", where)
        status = raw.get("status", payload.get("status"))
        if status not in ("firing", "resolved"):
            raise BadAlert(f"{where}.status is 'firing' or 'resolved'.", f"{where}.status")
        labels = _strings(raw.get("labels"), f"{where}.labels")
        annotations = _strings(raw.get("annotations"), f"{where}.annotations")
        fingerprint = raw.get("fingerprint") or (
            hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:32] if labels else None)
        if not isinstance(fingerprint, str) or not fingerprint.strip() or len(fingerprint) > 200:
            raise BadAlert(f"{where} needs a fingerprint (up to 200 characters) or labels.",
                           f"{where}.fingerprint")
        name = labels.get("alertname", "Grafana alert")
        title = annotations.get("summary") or " ".join(filter(None, [name, labels.get("instance")]))
        lines = [annotations.get("description", "")]
        if isinstance(raw.get("valueString"), str) and raw["valueString"]:
            lines.append(f"Values: {raw['valueString'][:1000]}")
        lines += [f"{label}: {url}" for label, url in (("Dashboard", _link(raw.get("dashboardURL"))),
                                                        ("Panel", _link(raw.get("panelURL"))))
                  if url]
        parsed.append(Alert(fingerprint=fingerprint.strip(), firing=status == "firing",
                            title=title[:2000], description="\n\n".join(filter(None, lines))[:20000],
                            severity=labels.get("severity"), service=labels.get("service"),
                            labels=labels))
    return parsed


@hookimpl
def helpdesk_alert_sources() -> list[AlertSource]:
    return [AlertSource("grafana", "Grafana alerting", parse,
                        "Grafana's webhook contact point (unified alerting)")]
