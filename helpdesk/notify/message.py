"""What a notification says: subject and text per kind, from templates in a sandbox.

Templates are ``notifications/<kind>.txt`` in the instance folder's
``templates/`` first, then the app's; user text is data, never template code.
"""

from __future__ import annotations

import logging
from typing import Any

from jinja2 import ChoiceLoader, FileSystemLoader, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment

from helpdesk.context import Context
from helpdesk.mail.reference import subject_tag
from helpdesk.models import Incident
from helpdesk.notify.conversation import portal_url

logger = logging.getLogger(__name__)


def _environment(ctx: Context) -> SandboxedEnvironment:
    env = ctx.notification_env
    if env is None:
        env = SandboxedEnvironment(
            loader=ChoiceLoader([FileSystemLoader(str(folder)) for folder in ctx.template_folders]),
            autoescape=False)
        ctx.notification_env = env
    return env


def render(ctx: Context, kind: str, incident: Incident, payload: dict[str, Any]) -> tuple[str, str]:
    """Subject and plain text for one kind (the template's first line is the subject)."""
    env = _environment(ctx)
    try:
        template = env.get_template(f"notifications/{kind}.txt")
    except TemplateNotFound:
        template = env.get_template("notifications/default.txt")
    context = {
        "incident": incident,
        "url": ctx.incident_url(incident.id),
        "payload": payload,
        "kind": kind,
        "reply_tag": subject_tag(ctx, incident.id),  # signed: replies thread by it (helpdesk.mail)
        "portal_url": portal_url(ctx, incident.id),  # for requesters' mail
        "auto_close_days": ctx.settings.auto_close_days,  # how long "not solved" reopens it
        "owner": f"{incident.owner_team.name} / {incident.owner_agent or '—'}",
        "assignee": (f"{incident.assigned_team.name} / {incident.assigned_agent or '—'}"
                     if incident.assigned_team_id else "unassigned"),
    }
    subject, _, text = template.render(context).strip().partition("\n")
    return " ".join(subject.split()), text.strip() + "\n"


def render_safely(ctx: Context, kind: str, incident: Incident, payload: dict[str, Any]) -> tuple[str, str]:
    """:func:`render`, falling back to a plain text: a broken override must not block the
    change it reports."""
    try:
        return render(ctx, kind, incident, payload)
    except Exception:
        logger.exception("notification template for %r failed; using a plain text", kind)
        return f"[{incident.reference}] {incident.title}", f"{incident.reference}: {incident.title}\n"
