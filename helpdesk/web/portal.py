"""The customer portal: sign in by an e-mailed link, log an incident in plain words, follow
one's own incidents, reply, confirm a resolution or reopen.

Every page but sign-in is ``@access(CUSTOMER)``: the portal's gate lets only a
signed-in customer through (an agent's session is not one, and a customer's
session opens no agent page). A customer sees only incidents they requested;
any other id — someone else's, or none at all — is the same 404 on every
page and action, and is logged. Only public entries are shown (the desk's
replies and the customer's own messages), never internal notes or field
changes; forms read only the fields they offer.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from helpdesk import attachments, customer_links, customers, incidents, sessions
from helpdesk.db import write_transaction
from helpdesk.errors import DomainError
from helpdesk.models import STATUSES, Attachment, Contact, Incident, Rating
from helpdesk.security import CUSTOMER, PUBLIC, access
from helpdesk.web import context
from helpdesk.web.attachments import files_by_entry
from helpdesk.web.timeline import timeline_with_authors

bp = Blueprint("portal", __name__, url_prefix="/portal")
logger = logging.getLogger(__name__)
SESSION_KEY = "portal_sid"  # the token of a server-side CustomerSession
NEXT_KEY = "portal_next"  # the incident a signed-out customer asked for, and when
NEXT_FOR = 3600  # seconds: a link followed today, not a page asked for last week
#: Plain words for urgency (what the customer can tell us); impact is the desk's judgement.
URGENCY = {"high": "I cannot work at all", "medium": "It slows me down", "low": "It can wait"}
#: Statuses said from the customer's side where the desk's word hides who is to act.
WAITING = {"customer": "Waiting for your reply", "third_party": "Waiting for a third party"}
SENT = ("If this address is known to us, a sign-in link is on its way. "
        "It works once, within 15 minutes.")


@bp.app_template_global()
def portal_status(incident: Incident) -> str:
    """The status as the customer reads it: "Pending" says nothing about who is to act."""
    if incident.status == "pending" and incident.pending_reason in WAITING:
        return WAITING[incident.pending_reason]
    return STATUSES.get(incident.status, incident.status)


def current_customer() -> Contact | None:
    """The contact whose live server-side portal session the cookie's token is."""
    settings = current_app.extensions["helpdesk.settings"]
    return sessions.customer_of(session.get(SESSION_KEY), settings.session_idle_seconds,
                                settings.session_lifetime_seconds)


def _start_customer_session(contact: Contact) -> str:
    """Nothing of the signed-out session survives (CSRF token included, C3); the new
    session lives server-side, so signing out or a new password can end it (C4). Returns
    where to go: the incident a signed-out visit asked for (a link in our mail), else the list."""
    asked = session.get(NEXT_KEY)
    session.clear()
    settings = current_app.extensions["helpdesk.settings"]
    session[SESSION_KEY] = sessions.start_customer(contact, settings.session_idle_seconds,
                                                   settings.session_lifetime_seconds)
    if (isinstance(asked, list) and len(asked) == 2 and all(isinstance(n, int) for n in asked)
            and 0 <= time.time() - asked[1] <= NEXT_FOR):
        return url_for("portal.show", incident_id=asked[0])  # still checked as theirs there
    return url_for("portal.index")


def _gate() -> Response | None:
    contact = current_customer()
    if contact is None:
        if request.method == "GET" and request.endpoint == "portal.show":
            # kept for after signing in: only an incident's id, never an address
            session[NEXT_KEY] = [request.view_args["incident_id"], int(time.time())]
        return redirect(url_for("portal.sign_in"))
    g.customer = contact
    return None


@bp.record_once
def _install(state: Any) -> None:
    app: Flask = state.app
    app.extensions["helpdesk.customer_gate"] = _gate


def _own(incident_id: int) -> Incident:
    """An incident the customer may see (their own, or their organisation's when it shares
    them), or 404 — the same for someone else's and for none."""
    incident = Incident.get_or_none((Incident.id == incident_id)
                                    & customers.visible_in_portal(g.customer))
    if incident is None:
        logger.warning("portal: contact %s asked for INC-%s, which is not theirs (404)",
                       g.customer.id, incident_id)
        abort(404)
    return incident


# -- signing in ----------------------------------------------------------------------------------


@bp.route("/sign-in", methods=["GET", "POST"])
@access(PUBLIC)
def sign_in() -> Any:
    if request.method == "GET":
        return render_template("portal/sign_in.html")
    ctx = context()
    issued = customer_links.issue(ctx, request.form.get("email", ""), request.remote_addr)
    if issued is not None:
        contact, token = issued
        url = f"{ctx.base_url}{url_for('portal.redeem', token=token)}"
        customer_links.send(ctx, contact, url, wait=ctx.settings.testing)
    return render_template("portal/sign_in.html", sent=SENT)


@bp.post("/password-sign-in")
@access(PUBLIC)
def password_sign_in() -> Any:
    """E-mail address and password, for customers who chose one; every failure answers alike."""
    email = (request.form.get("email") or "").strip()[:254]
    try:
        contact = customers.portal_sign_in(context(), email, request.form.get("password") or "",
                                           request.remote_addr)
    except customers.RateLimited as limited:
        return render_template("portal/sign_in.html", email=email, error=str(limited)), 429
    if contact is None:
        return render_template("portal/sign_in.html", email=email, error=(
            "That address and password do not match. Forgot it? Ask for a sign-in link.")), 401
    return redirect(_start_customer_session(contact), code=303)


@bp.route("/password", methods=["GET", "POST"])
@access(CUSTOMER)
def password() -> Any:
    """Choose a password (signed in by a link), or change it (the current one needed)."""
    has_one = bool(Contact.select(Contact.password_hash).where(Contact.id == g.customer.id)
                   .scalar())
    if request.method == "GET":
        return render_template("portal/password.html", has_one=has_one)
    new, again = request.form.get("password") or "", request.form.get("again") or ""
    try:
        if new != again:
            raise DomainError("The two passwords differ.")
        with write_transaction():
            customers.set_portal_password(g.customer, new, request.form.get("current") or "")
            # Whoever else holds a session of this account (a shared or stolen computer) is out.
            sessions.end_customer_sessions(g.customer.id, keep=session.get(SESSION_KEY))
    except DomainError as error:
        return render_template("portal/password.html", has_one=has_one, error=str(error)), 422
    flash("Your password is set. Next time, sign in with it or with a link.")
    return redirect(url_for("portal.index"), code=303)


@bp.route("/sign-in/<token>", methods=["GET", "POST"])
@access(PUBLIC)
def redeem(token: str) -> Any:
    """GET only shows a button: mail scanners that open links must not use up the link."""
    if request.method == "GET":
        return render_template("portal/redeem.html", token=token)
    contact = customer_links.redeem(context(), token)
    if contact is None:
        return render_template("portal/sign_in.html", error=(
            "This link is invalid, expired or already used. Ask for a new one.")), 400
    return redirect(_start_customer_session(contact), code=303)


@bp.post("/sign-out")
@access(CUSTOMER)
def sign_out() -> Response:
    sessions.end_customer(session.get(SESSION_KEY))
    session.clear()
    flash("You are signed out.")
    return redirect(url_for("portal.sign_in"), code=303)


# -- the customer's incidents ----------------------------------------------------------------------


@bp.get("/")
@access(CUSTOMER)
def index() -> Any:
    visible = list(Incident.select(Incident, Contact).join(Contact, on=(Incident.requester == Contact.id))
                   .where(customers.visible_in_portal(g.customer))
                   .order_by(Incident.updated_at.desc()).limit(200))
    shared = any(i.requester_id != g.customer.id for i in visible)
    return render_template("portal/index.html", incidents=visible, shared=shared)


@bp.route("/new", methods=["GET", "POST"])
@access(CUSTOMER)
def new() -> Any:
    if request.method == "GET":
        return render_template("portal/new.html", urgency=URGENCY, form={})
    form = {name: (request.form.get(name) or "").strip() for name in ("title", "description", "urgency")}
    try:
        if not form["title"]:  # in the words of the form's own label
            raise DomainError("Tell us in one line what is affected.")
        if form["urgency"] not in URGENCY:
            raise DomainError("Tell us how urgent it is.")
        files = _files()
        with write_transaction():
            incident = incidents.log_incident(
                context(), title=form["title"], actor=None, requester=g.customer, source="portal",
                description=form["description"][:customers.MAX_MESSAGE], urgency=form["urgency"])
            for name, data in files:
                attachments.store(context(), incident.id, None, name, data, contact=g.customer)
    except DomainError as error:
        return render_template("portal/new.html", urgency=URGENCY, form=form,
                               error=f"{error}{_files_again()}"), 422
    flash(f"Thank you. Your request is {incident.reference}.")
    return redirect(url_for("portal.show", incident_id=incident.id), code=303)


def _files() -> list[tuple[str, bytes]]:
    """The uploaded files, checked against the limits (a DomainError says which one is too big)."""
    files = [(upload.filename or "", upload.read()) for upload in request.files.getlist("files")
             if upload and upload.filename]
    attachments.check(context(), files)
    return files


def _files_again() -> str:
    """A browser keeps the typed text on a refused form but never the chosen files: say so."""
    chosen = any(upload and upload.filename for upload in request.files.getlist("files"))
    return " Please choose the files again." if chosen else ""


@bp.get("/incidents/<int:incident_id>")
@access(CUSTOMER)
def show(incident_id: int, error: str | None = None, status: int = 200, typed: str = "") -> Any:
    incident = _own(incident_id)
    rating = Rating.get_or_none(Rating.incident == incident.id)
    entries = timeline_with_authors(incident.id, public_only=True)
    # The incident's own files, and each shown message's: files on internal notes are never
    # looked up, since only public entries are shown.
    files = files_by_entry(incident.id)
    return render_template("portal/incident.html", incident=incident, entries=entries,
                           files_of={key: files.get(key, []) for key in [None, *(e.id for e in entries)]},
                           error=error, rating=rating, ratings=customers.RATINGS, typed=typed,
                           mine=incident.requester_id == g.customer.id), status


@bp.post("/incidents/<int:incident_id>/reply")
@access(CUSTOMER)
def reply(incident_id: int) -> Any:
    incident = _own(incident_id)
    try:
        files = _files()
        with write_transaction():
            posted = customers.post_message(context(), incident.id, g.customer,
                                            request.form.get("body", ""), via="portal", seen=True)
            for name, data in files:
                attachments.store(context(), posted.incident.id, posted.entry.id if posted.entry else None,
                                  name, data, contact=g.customer)
    except DomainError as error:  # nothing saved; what the customer wrote is shown back
        typed = request.form.get("body", "")
        kept = " Nothing was sent; your message is still below." if typed.strip() else ""
        return show(incident_id, error=f"{error}{kept}{_files_again()}", status=422, typed=typed)
    flash(_reply_outcome(incident, posted))
    return redirect(url_for("portal.show", incident_id=posted.incident.id), code=303)


def _reply_outcome(incident: Incident, posted: customers.Posted) -> str:
    """What became of the message, in words: the customer lands on another incident's page
    when a closed one passed it to its follow-up, and must be told why."""
    ended = STATUSES.get(incident.status, incident.status).lower()  # closed, or cancelled
    if posted.outcome == "followed_up":
        return f"This incident is {ended}, so we logged your message as {posted.incident.reference}."
    reopened = posted.outcome == "reopened"
    if posted.incident.id != incident.id:
        return (f"{incident.reference} is {ended}, so we added your message to its follow-up "
                f"{posted.incident.reference}" + (" and reopened it." if reopened else "."))
    return "Thank you. We reopened the incident." if reopened else "Thank you, we got your message."


@bp.post("/incidents/<int:incident_id>/confirm")
@access(CUSTOMER)
def confirm(incident_id: int) -> Any:
    """The customer confirms the resolution: the incident closes now instead of after the grace period."""
    incident = _own(incident_id)
    try:
        if incident.requester_id != g.customer.id:
            raise DomainError(f"Only the requester confirms {incident.reference}.")
        if incident.status != "resolved":
            raise DomainError("Only a resolved incident can be confirmed.")
        incidents.change_status(context(), incident.id, None, "closed", incident.version,
                                note=f"{g.customer.name} confirmed the resolution in the portal.")
    except DomainError as error:
        return show(incident_id, error=str(error), status=422)
    flash("Thank you for confirming. The incident is closed.")
    return redirect(url_for("portal.show", incident_id=incident.id), code=303)


@bp.post("/incidents/<int:incident_id>/rating")
@access(CUSTOMER)
def rating(incident_id: int) -> Any:
    incident = _own(incident_id)
    try:
        customers.rate(context(), incident.id, g.customer, request.form.get("score"),
                       request.form.get("comment") or "")
    except DomainError as error:
        return show(incident_id, error=str(error), status=422)
    flash("Thank you for telling us.")
    return redirect(url_for("portal.show", incident_id=incident.id), code=303)


@bp.get("/attachments/<int:attachment_id>")
@access(CUSTOMER)
def attachment(attachment_id: int) -> Response:
    """A file on the customer's own incident, from a public entry or the incident itself; 404
    for everything else (someone else's file, one on an internal note, none at all)."""
    from helpdesk.web.attachments import serve

    found = (Attachment.select().join(Incident).where(
        (Attachment.id == attachment_id) & customers.visible_in_portal(g.customer)).first())
    if found is None or (found.entry_id is not None and not found.entry.is_public):
        logger.warning("portal: contact %s asked for attachment %s, which is not theirs (404)",
                       g.customer.id, attachment_id)
        abort(404)
    return serve(found)
