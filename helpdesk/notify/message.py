"""What a notification says: subject and text per kind, from templates in a sandbox.

Templates are ``notifications/<kind>.txt`` in the instance folder's
``templates/`` first, then the app's; user text is data, never template code.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from typing import Any

from jinja2 import ChoiceLoader, FileSystemLoader, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment

from helpdesk.context import Context
from helpdesk.mail.reference import subject_tag
from helpdesk.models import Incident
from helpdesk.notify.conversation import portal_url
from helpdesk.rendering import render_markdown

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


#: Kinds whose text carries words an agent typed in Markdown (the reply box, the resolution
#: note): the HTML part of their mail shows them rendered, as the portal does, not as
#: "**asterisks**".
MARKDOWN_TYPED: dict[str, Callable[[Incident, dict[str, Any]], str | None]] = {
    "requester_reply": lambda incident, payload: payload.get("body"),
    "requester_resolved": lambda incident, payload: incident.resolution_note,
}


def render_html(kind: str, incident: Incident, payload: dict[str, Any], text: str) -> str:
    """The HTML of a message whose text carries an agent's Markdown (sanitised as on the pages,
    the rest of the text as escaped paragraphs); "" for any other, which each channel shows as
    its text (also when an instance's template leaves the typed words out)."""
    source = MARKDOWN_TYPED.get(kind)
    typed = str(source(incident, payload) or "").strip() if source is not None else ""
    if not typed or typed not in text:
        return ""
    before, _, after = text.partition(typed)
    return _paragraphs(before) + str(render_markdown(typed)) + _paragraphs(after)


def _paragraphs(text: str) -> str:
    return "".join(f"<p>{html.escape(part.strip()).replace(chr(10), '<br>')}</p>"
                   for part in text.split("\n\n") if part.strip())
