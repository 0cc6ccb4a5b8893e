"""Inbound mail for the desk: the original of a customer's message (any agent, as the
incident page; a message on no incident, admins only), and the admins' list of every
received message with the quarantine.

The raw message is offered only as a download (``attachment``, ``nosniff``,
``CSP: sandbox``); its text is shown as text, never as HTML.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from helpdesk.clock import now
from helpdesk.config import ConfigError
from helpdesk.db import Statement
from helpdesk.errors import DomainError
from helpdesk.mail.receive import OUTCOMES, raw_message, receive_again
from helpdesk.models import InboundMail
from helpdesk.security import ADMIN, AGENT, access
from helpdesk.web import context

bp = Blueprint("mail", __name__)
PAGE = 100


_MAILS = Statement(lambda incident_id: InboundMail.select(InboundMail.entry, InboundMail.id)
                   .where((InboundMail.incident == incident_id) & InboundMail.entry.is_null(False)))


def mails_by_entry(incident_id: int) -> dict[int, int]:
    """For each of the incident's timeline entries that came by e-mail, the received mail's
    id (the page links "original e-mail"), in one query rather than one per message."""
    return dict(_MAILS.execute(incident_id).fetchall())


def _readable(mail_id: int) -> InboundMail:
    """A received message this agent may read: one placed on an incident (any agent, as the
    incident page); one that is on no incident (quarantined, dropped) only an admin, as the
    Inbound mail list. Anything else is not there (404, ids are counted)."""
    mail = InboundMail.get_or_none(InboundMail.id == mail_id)
    if mail is None or (mail.incident_id is None and not current_user.is_admin):
        abort(404)
    return mail


@bp.get("/mail/<int:mail_id>")
@access(AGENT)
def show(mail_id: int) -> Any:
    return render_template("mail.html", mail=_readable(mail_id))


@bp.get("/mail/<int:mail_id>/original.eml")
@access(AGENT)
def original(mail_id: int) -> Response:
    mail = _readable(mail_id)
    try:
        raw = raw_message(context(), mail)
    except (DomainError, OSError):
        abort(404)
    response = Response(raw, mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = f'attachment; filename="message-{mail.id}.eml"'
    response.headers["Content-Security-Policy"] = "sandbox"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/admin/mail")
@access(ADMIN)
def inbox() -> Any:
    outcome = request.args.get("outcome") or ""
    query = InboundMail.select().order_by(InboundMail.id.desc()).limit(PAGE)
    if outcome in OUTCOMES:
        query = query.where(InboundMail.outcome == outcome)
    else:
        outcome = ""
    waiting = InboundMail.select().where((InboundMail.outcome == "quarantined")
                                         & InboundMail.handled_at.is_null()).count()
    return render_template("admin/mail.html", mails=list(query), outcome=outcome, outcomes=OUTCOMES,
                           waiting=waiting, mailboxes=_mailbox_states())


def _mailbox_states() -> list[dict[str, Any]]:
    """Each configured IMAP mailbox with its last poll (when, and why it stopped), so a wrong
    host or password shows here and not only in the worker's log."""
    from helpdesk.mail import imap
    from helpdesk.models import PeriodicRun

    try:
        boxes = imap.mailboxes(context())
    except ConfigError as error:
        return [{"name": "—", "where": "", "run": None, "error": str(error)}]
    runs = {run.name: run for run in PeriodicRun.select().where(
        PeriodicRun.name.in_([imap.pass_name(box.name) for box in boxes]))} if boxes else {}
    return [{"name": box.name, "where": f"{box.username} at {box.host}:{box.port} ({box.folder})",
             "run": runs.get(imap.pass_name(box.name)),
             "error": getattr(runs.get(imap.pass_name(box.name)), "error", "")} for box in boxes]


@bp.post("/admin/mail/<int:mail_id>/handled")
@access(ADMIN)
def handled(mail_id: int) -> Any:
    """An admin dealt with a quarantined message (e.g. logged it by hand)."""
    updated = InboundMail.update(handled_at=now()).where(
        (InboundMail.id == mail_id) & (InboundMail.outcome == "quarantined")).execute()
    if not updated:
        abort(404)
    flash(f"Message {mail_id} marked as handled.")
    return redirect(url_for("mail.inbox", outcome="quarantined"), code=303)


@bp.post("/admin/mail/<int:mail_id>/receive-again")
@access(ADMIN)
def again(mail_id: int) -> Any:
    """Take a quarantined message in again once its cause is fixed (or its size accepted)."""
    if InboundMail.get_or_none(InboundMail.id == mail_id) is None:
        abort(404)
    try:
        received = receive_again(context(), mail_id, by=current_user.username)
    except DomainError as error:
        flash(str(error), "error")
        return redirect(url_for("mail.inbox", outcome="quarantined"), code=303)
    if received.outcome == "quarantined":
        flash(f"Message {mail_id} is still quarantined: {received.reason}", "error")
    elif received.incident is not None:
        flash(f"Message {mail_id} received again: {received.outcome.replace('_', ' ')}, "
              f"{received.incident.reference}.")
    else:
        flash(f"Message {mail_id} received again: {received.outcome} ({received.reason}).")
    return redirect(url_for("mail.inbox", outcome="quarantined"), code=303)
