"""The customer portal as customers use it: signing in by a link mailed through a real SMTP
server on loopback, logging and following their own incidents, and never seeing anyone
else's incident or the desk's internal notes (404, never 403, on every page and action).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from flask import Flask

from helpdesk import incidents
from helpdesk.models import Delivery, Incident, PortalToken, TimelineEntry
from helpdesk.testing import FrozenClock, SmtpServer

FROM = "Helpdesk <help@example.com>"


@pytest.fixture
def smtp(smtp_server: SmtpServer) -> SmtpServer:
    smtp_server.from_address = FROM
    return smtp_server


@pytest.fixture
def helpdesk_settings(smtp: SmtpServer) -> dict[str, Any]:
    return {"support_address": "help@example.com", "plugins": {"email": smtp.settings}}


@pytest.fixture
def helpdesk_bundled_plugins() -> list[str]:
    return ["email"]


class Customer:
    """A browser of one customer: asks for a link, reads it from the mailbox, signs in."""

    def __init__(self, app: Flask, smtp: SmtpServer, email: str) -> None:
        self.http = app.test_client()
        self.smtp, self.email = smtp, email
        self._token: str | None = None

    def csrf(self) -> str:
        if self._token is None:
            page = self.http.get("/portal/sign-in").get_data(as_text=True)
            self._token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        return self._token

    def ask_for_link(self, email: str | None = None) -> Any:
        return self.http.post("/portal/sign-in",
                              data={"email": email or self.email, "csrf_token": self.csrf()})

    def last_link(self) -> str:
        mails = self.smtp.to(self.email)
        assert mails, f"no sign-in link reached {self.email}"
        body = mails[-1].message.get_body(("plain",)).get_content()
        return re.search(r"http://127\.0\.0\.1:5000(/portal/sign-in/\S+)", body).group(1)

    def sign_in_link(self) -> str:
        assert self.ask_for_link().status_code == 200
        return self.last_link()

    def follow(self, path: str) -> Any:
        answer = self.http.post(path, data={"csrf_token": self.csrf()})
        if answer.status_code == 303:
            self._token = None  # signing in starts a new session: pages carry a new token
        return answer

    def sign_in(self) -> Customer:
        assert self.ask_for_link().status_code == 200
        answer = self.follow(self.last_link())
        assert answer.status_code == 303, answer.get_data(as_text=True)
        return self

    def get(self, url: str) -> Any:
        return self.http.get(url)

    def post(self, url: str, data: dict[str, Any] | None = None) -> Any:
        answer = self.http.post(url, data={"csrf_token": self.csrf(), **(data or {})})
        if url.endswith(("password-sign-in", "sign-out")) and answer.status_code == 303:
            self._token = None
        return answer


@pytest.fixture
def customers(app: Flask, smtp: SmtpServer, contact_factory: Any) -> dict[str, Any]:
    ada = contact_factory(name="Ada Lovelace", email="ada@example.org")
    bob = contact_factory(name="Bob Byte", email="bob@example.org")
    return {"ada": ada, "bob": bob}


@pytest.fixture
def customer(app: Flask, smtp: SmtpServer, customers: dict[str, Any]) -> Any:
    return lambda email: Customer(app, smtp, email)


def page(response: Any) -> str:
    return response.get_data(as_text=True)


# -- signing in ----------------------------------------------------------------------------------


def test_a_customer_signs_in_with_a_one_time_link(customer, customers, smtp):
    ada = customer("ada@example.org")
    asked = ada.ask_for_link()
    assert "If this address is known to us" in page(asked)
    link = ada.last_link()
    assert ada.get(link).status_code == 200  # a mail scanner opening the link does not use it
    assert ada.follow(link).headers["Location"].endswith("/portal/")
    assert "Your requests" in page(ada.get("/portal/"))
    # Once only: the same link again, from this or another browser, is refused.
    assert ada.follow(link).status_code == 400
    assert customer("ada@example.org").follow(link).status_code == 400


def test_the_link_is_stored_hashed_and_never_in_the_outbox(customer, customers):
    ada = customer("ada@example.org")
    ada.ask_for_link()
    token = ada.last_link().rsplit("/", 1)[1]
    stored = PortalToken.get()
    assert stored.token_hash != token and len(stored.token_hash) == 64 and stored.used_at is None
    assert not Delivery.select().where(Delivery.text.contains(token[:20])).exists()


def test_unknown_addresses_get_the_same_answer_and_no_mail(customer, smtp):
    known, unknown = customer("ada@example.org"), customer("nobody@example.org")
    a, b = known.ask_for_link(), unknown.ask_for_link()
    assert a.status_code == b.status_code == 200
    strip = lambda text: re.sub(r'value="[^"]+"', "", text)  # noqa: E731 - the CSRF tokens differ
    assert strip(page(a)) == strip(page(b))
    assert smtp.to("nobody@example.org") == []
    assert PortalToken.select().count() == 1


def test_asking_again_and_again_is_rate_limited_silently(customer, smtp):
    ada = customer("ada@example.org")
    answers = [ada.ask_for_link() for _ in range(6)]
    assert {a.status_code for a in answers} == {200}
    assert len({page(a).count("If this address is known") for a in answers}) == 1
    assert len(smtp.to("ada@example.org")) == 3  # PER_ADDRESS


@pytest.mark.parametrize("tamper", ["expired", "forged", "other-secret", "wildcard"])
def test_bad_links_are_refused(customer, frozen_clock: FrozenClock, tamper, app):
    ada = customer("ada@example.org")
    ada.ask_for_link()
    link = ada.last_link()
    if tamper == "expired":
        frozen_clock.advance(minutes=16)
    elif tamper == "forged":
        link = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    elif tamper == "other-secret":
        from itsdangerous import URLSafeTimedSerializer

        link = "/portal/sign-in/" + URLSafeTimedSerializer("guess", salt="helpdesk-portal-sign-in").dumps("x")
    else:
        link = "/portal/sign-in/*"
    assert ada.follow(link).status_code == 400
    assert ada.get("/portal/").headers["Location"].endswith("/portal/sign-in")


# -- who sees what ---------------------------------------------------------------------------------


@pytest.fixture
def two_incidents(app, ctx, customers, personas) -> tuple[Incident, Incident]:
    with app.app_context():
        mine = incidents.log_incident(ctx, title="Laptop of Ada", actor=personas.owner,
                                      requester=customers["ada"])
        theirs = incidents.log_incident(ctx, title="Secret project of Bob", actor=personas.owner,
                                        requester=customers["bob"])
        incidents.add_comment(ctx, mine.id, personas.owner, "We are looking at it.", public=True)
        incidents.add_comment(ctx, mine.id, personas.owner, "INTERNAL: customer is on the old VPN",
                              public=False)
        incidents.assign(ctx, mine.id, personas.owner, personas.database_team, personas.assignee)
    return mine, theirs


def test_permission_matrix(customer, two_incidents, login, personas, app):
    """Every portal page and action × (own, someone else's, missing) × (customer, agent, anonymous)."""
    mine, theirs = two_incidents
    ada = customer("ada@example.org").sign_in()
    agent = login(personas.admin)
    anonymous = app.test_client()
    actions = [("GET", "/portal/incidents/{id}"), ("POST", "/portal/incidents/{id}/reply"),
               ("POST", "/portal/incidents/{id}/confirm")]
    before = TimelineEntry.select().count()
    for method, pattern in actions:
        for target, expected in ((theirs.id, 404), (999_999, 404)):
            url = pattern.format(id=target)
            answer = ada.get(url) if method == "GET" else ada.post(url, {"body": "let me in"})
            assert answer.status_code == expected, (method, url)
            assert "Bob" not in page(answer)
        own = pattern.format(id=mine.id)
        for who in (agent, anonymous):  # agents' sessions are not customers' sessions
            answer = who.get(own) if method == "GET" else who.post(own, data={"body": "x"})
            if method == "POST" and who is anonymous:
                assert answer.status_code == 400  # no CSRF token: refused before anything else
            else:
                assert answer.status_code == 302 and answer.headers["Location"].endswith("/portal/sign-in")
    assert TimelineEntry.select().count() == before  # nothing written by any refused request
    assert ada.get(f"/portal/incidents/{mine.id}").status_code == 200
    # ... and a customer's session opens no agent page.
    for url in ("/queues/open", f"/incidents/{mine.id}", "/admin/agents", "/mail/1", "/profile"):
        answer = ada.get(url)
        assert answer.status_code == 302 and "/login" in answer.headers["Location"], url


def test_lists_show_only_the_customers_own_incidents(customer, two_incidents):
    mine, theirs = two_incidents
    listing = page(customer("ada@example.org").sign_in().get("/portal/"))
    assert mine.title in listing and theirs.title not in listing


def test_the_customer_sees_public_replies_never_internal_notes(customer, two_incidents):
    mine, _ = two_incidents
    shown = page(customer("ada@example.org").sign_in().get(f"/portal/incidents/{mine.id}"))
    assert "We are looking at it." in shown
    assert "INTERNAL" not in shown and "old VPN" not in shown
    assert "Database" not in shown  # assignment changes are the desk's business
    assert "priya@example.com" not in shown and "john@example.com" not in shown


# -- logging and following an incident -------------------------------------------------------------


def test_a_customer_logs_an_incident_in_plain_words(customer, customers, personas, smtp):
    ada = customer("ada@example.org").sign_in()
    answer = ada.post("/portal/new", {
        "title": '<img src=x onerror=alert(1)>"\' Printer', "description": "Paper jam on floor 3.",
        "urgency": "high",
        # forged fields a form does not offer are ignored
        "requester": customers["bob"].id, "priority": "1", "owner_team": personas.network.id,
        "source": "api", "impact": "high", "actor": personas.admin.id})
    assert answer.status_code == 303
    incident = Incident.select().order_by(Incident.id.desc()).get()
    assert incident.requester_id == customers["ada"].id and incident.source == "portal"
    assert incident.urgency == "high" and incident.impact == "medium"
    assert incident.owner_team_id == personas.service_desk.id and incident.created_by is None
    shown = page(ada.get(answer.headers["Location"]))
    assert "&lt;img src=x onerror=alert(1)&gt;" in shown and "<img src=x" not in shown
    assert ada.post("/portal/new", {"title": "x", "urgency": "whenever"}).status_code == 422
    untitled = ada.post("/portal/new", {"title": "  ", "description": "It jams.", "urgency": "low"})
    assert untitled.status_code == 422
    assert "Tell us in one line what is affected." in page(untitled)  # the field's own words
    assert ">It jams.</textarea>" in page(untitled)


def test_reply_reopen_and_confirm(customer, two_incidents, app, ctx, personas):
    mine, _ = two_incidents
    ada = customer("ada@example.org").sign_in()
    assert ada.post(f"/portal/incidents/{mine.id}/reply", {"body": "It is the left one."}).status_code == 303
    told = {d.recipient for d in Delivery.select().where((Delivery.event == "incident_commented")
                                                         & (Delivery.channel == "email")
                                                         & (Delivery.text.contains("left one")))}
    assert told == {personas.owner.email, personas.assignee.email}
    (entry,) = TimelineEntry.select().where((TimelineEntry.incident == mine.id)
                                            & (TimelineEntry.kind == "customer"))
    assert entry.contact_id is not None and entry.actor is None
    # Forged visibility and author fields change nothing: a public message from the customer.
    ada.post(f"/portal/incidents/{mine.id}/reply", {"body": "Second.", "visibility": "internal",
                                                     "actor": personas.admin.id})
    assert TimelineEntry.select().where((TimelineEntry.incident == mine.id)
                                        & (TimelineEntry.kind == "customer")).count() == 2
    with app.app_context():
        incidents.change_status(ctx, mine.id, personas.owner, "resolved", note="Replaced the toner.")
    assert ada.post(f"/portal/incidents/{mine.id}/reply", {"body": "Still streaky."}).status_code == 303
    assert Incident.get_by_id(mine.id).status in {"assigned", "in_progress"}
    with app.app_context():
        incidents.change_status(ctx, mine.id, personas.owner, "resolved", note="New drum.")
    assert "Yes, it works again" in page(ada.get(f"/portal/incidents/{mine.id}"))
    assert ada.post(f"/portal/incidents/{mine.id}/confirm").status_code == 303
    assert Incident.get_by_id(mine.id).status == "closed"
    assert ada.post(f"/portal/incidents/{mine.id}/confirm").status_code == 422  # already closed
    # Closed, the page still says how it was solved (beside the rating it asks for).
    closed = page(ada.get(f"/portal/incidents/{mine.id}"))
    assert "How it was solved" in closed and "New drum." in closed


def test_a_refused_reply_shows_the_customers_text_back(customer, two_incidents):
    from io import BytesIO

    mine, _ = two_incidents
    ada = customer("ada@example.org").sign_in()
    eleven = [(BytesIO(b"x"), f"shot-{n}.png") for n in range(11)]
    answer = ada.http.post(f"/portal/incidents/{mine.id}/reply", content_type="multipart/form-data", data={
        "csrf_token": ada.csrf(), "body": "The <b>left</b> tray jams.", "files": eleven})
    assert answer.status_code == 422
    shown = page(answer)
    assert "Nothing was sent" in shown and ">The &lt;b&gt;left&lt;/b&gt; tray jams.</textarea>" in shown
    assert "Please choose the files again." in shown  # a browser never keeps them
    assert TimelineEntry.select().where(TimelineEntry.kind == "customer").count() == 0
    # Without files, no word about them; and with nothing typed, no word of a kept message.
    empty = page(ada.post(f"/portal/incidents/{mine.id}/reply", {"body": " "}))
    assert "Write something before sending." in empty
    assert "choose the files" not in empty and "your message is still below" not in empty
    # The new-incident form says the same when a file is refused.
    answer = ada.http.post("/portal/new", content_type="multipart/form-data", data={
        "csrf_token": ada.csrf(), "title": "Tray", "urgency": "low",
        "files": [(BytesIO(b"x"), f"shot-{n}.png") for n in range(11)]})
    assert answer.status_code == 422 and "Please choose the files again." in page(answer)


def test_portal_forms_need_the_csrf_token(customer, two_incidents):
    mine, _ = two_incidents
    ada = customer("ada@example.org").sign_in()
    assert ada.http.post(f"/portal/incidents/{mine.id}/reply", data={"body": "x"}).status_code == 400
    assert ada.http.post("/portal/sign-out").status_code == 400
    assert TimelineEntry.select().where(TimelineEntry.kind == "customer").count() == 0


def test_signing_out_ends_the_portal_session(customer):
    ada = customer("ada@example.org").sign_in()
    assert ada.post("/portal/sign-out").status_code == 303
    assert ada.get("/portal/").status_code == 302


def test_expired_tokens_are_refused_even_with_a_valid_signature(customer, frozen_clock: FrozenClock):
    ada = customer("ada@example.org")
    ada.ask_for_link()
    PortalToken.update(expires_at=frozen_clock.advance(minutes=0) - dt.timedelta(seconds=1)).execute()
    assert ada.follow(ada.last_link()).status_code == 400


def test_every_customer_route_sends_strangers_to_the_portal_sign_in(app, two_incidents):
    """The inventory of portal routes: anonymous visitors (and agents, above) only reach sign-in."""
    from helpdesk.security import CUSTOMER

    mine, _ = two_incidents
    client = app.test_client()
    adapter = app.url_map.bind("localhost")
    walked = []
    for rule in app.url_map.iter_rules():
        if getattr(app.view_functions[rule.endpoint], "access_level", None) != CUSTOMER:
            continue
        assert rule.rule.startswith("/portal/"), rule.rule  # customers never get agent routes
        values = {"incident_id": mine.id, "attachment_id": 1}
        url = adapter.build(rule.endpoint, {k: values[k] for k in rule.arguments})
        if "GET" in rule.methods:
            answer = client.get(url)
            assert answer.status_code == 302 and answer.headers["Location"].endswith("/portal/sign-in")
        walked.append(rule.endpoint)
    assert {"portal.index", "portal.show", "portal.reply", "portal.confirm", "portal.new"} <= set(walked)


def test_a_customer_meets_errors_in_the_portal_not_on_the_agents_pages(customer, two_incidents):
    """Someone else's incident, an address that does not exist, an expired form: the portal's
    own page, leading back to the customer's requests, not to the agents' queues."""
    _, theirs = two_incidents
    ada = customer("ada@example.org").sign_in()
    expired = ada.http.post(f"/portal/incidents/{theirs.id}/reply", data={"body": "x"})  # no token
    for answer in (ada.get(f"/portal/incidents/{theirs.id}"), ada.get("/portal/no-such-page"), expired):
        shown = page(answer)
        assert answer.status_code in {400, 404}
        assert 'href="/portal/">Back to your requests</a>' in shown
        assert "queues" not in shown and 'class="portal"' in shown
    assert "Your form expired" in page(expired)
    # The agents keep theirs.
    assert "Back to the queues" in page(ada.get("/incidents/no-such-page"))


def test_a_message_on_a_closed_incident_says_which_follow_up_it_joined(customer, two_incidents, app, ctx,
                                                                       personas):
    mine, _ = two_incidents
    ada = customer("ada@example.org").sign_in()
    with app.app_context():
        incidents.change_status(ctx, mine.id, personas.owner, "resolved", note="New drum.")
        incidents.change_status(ctx, mine.id, None, "closed", note="Closed automatically.")
    first = ada.post(f"/portal/incidents/{mine.id}/reply", {"body": "Streaks again."})
    follow = Incident.get(Incident.follow_up_of == mine.id)
    assert f"so we logged your message as {follow.reference}" in page(ada.get(first.headers["Location"]))
    # Written again on the closed incident's page, the message joins that follow-up: the
    # customer lands on the follow-up's page and is told why.
    again = ada.post(f"/portal/incidents/{mine.id}/reply", {"body": "And on page 2."})
    assert again.headers["Location"].endswith(f"/portal/incidents/{follow.id}")
    assert (f"{mine.reference} is closed, so we added your message to its follow-up {follow.reference}."
            in page(ada.get(again.headers["Location"])))
    with app.app_context():
        incidents.change_status(ctx, follow.id, personas.owner, "resolved", note="Cleaned.")
    third = ada.post(f"/portal/incidents/{mine.id}/reply", {"body": "Still streaks."})
    assert f"to its follow-up {follow.reference} and reopened it." in page(ada.get(third.headers["Location"]))


def test_an_incident_waiting_for_the_customer_says_so_in_their_words(customer, two_incidents, app, ctx,
                                                                     personas):
    mine, _ = two_incidents
    with app.app_context():
        incidents.change_status(ctx, mine.id, personas.owner, "pending", pending_reason="customer")
    ada = customer("ada@example.org").sign_in()
    assert "Waiting for your reply" in page(ada.get("/portal/"))
    shown = page(ada.get(f"/portal/incidents/{mine.id}"))
    assert "<strong>Waiting for your reply</strong>" in shown and "We need an answer from you" in shown
    assert ada.post(f"/portal/incidents/{mine.id}/reply", {"body": "Tray 2."}).status_code == 303
    shown = page(ada.get(f"/portal/incidents/{mine.id}"))  # answered: back in progress
    assert "Waiting for your reply" not in shown and "We need an answer" not in shown


def test_a_link_to_an_incident_leads_there_once_signed_in(customer, two_incidents, monkeypatch):
    """The resolution mail links to the incident in the portal: a signed-out customer opening
    it signs in and lands on that incident, not on the list where they must find it again."""
    mine, theirs = two_incidents
    ada = customer("ada@example.org")
    assert ada.get(f"/portal/incidents/{mine.id}").headers["Location"].endswith("/portal/sign-in")
    assert ada.follow(ada.sign_in_link()).headers["Location"].endswith(f"/portal/incidents/{mine.id}")
    # Only the page asked for with GET, once; other addresses lead to the list as before.
    ada.post("/portal/sign-out")
    assert ada.follow(ada.sign_in_link()).headers["Location"].endswith("/portal/")
    # Someone else's incident asked for: signing in leads there, and it is a 404 as ever.
    bob = customer("ada@example.org")
    bob.get(f"/portal/incidents/{theirs.id}")
    assert bob.get(bob.follow(bob.sign_in_link()).headers["Location"]).status_code == 404
    # A page asked for long before signing in (a link opened last week) is forgotten.
    from helpdesk.web import portal

    late = customer("bob@example.org")  # (Ada asked for her three links of the quarter hour)
    late.get(f"/portal/incidents/{theirs.id}")
    monkeypatch.setattr(portal, "NEXT_FOR", -1)  # as if the hour had passed
    assert late.follow(late.sign_in_link()).headers["Location"].endswith("/portal/")


def test_a_cancelled_incident_still_lets_the_customer_write(customer, two_incidents, app, ctx, personas):
    """By mail, a message to a cancelled incident starts a follow-up; the portal offers the same
    instead of a page without a way to answer."""
    mine, _ = two_incidents
    with app.app_context():
        incidents.change_status(ctx, mine.id, personas.owner, "cancelled", note="Logged twice.")
    ada = customer("ada@example.org").sign_in()
    shown = page(ada.get(f"/portal/incidents/{mine.id}"))
    assert "This request was cancelled" in shown and 'id="reply-body"' in shown
    assert "Logged twice." not in shown  # the desk's note on the change stays the desk's
    answer = ada.post(f"/portal/incidents/{mine.id}/reply", {"body": "It is not a duplicate."})
    follow = Incident.get(Incident.follow_up_of == mine.id)
    assert answer.headers["Location"].endswith(f"/portal/incidents/{follow.id}")
    assert "It is not a duplicate." in follow.description
    assert f"This incident is cancelled, so we logged your message as {follow.reference}." in page(
        ada.get(answer.headers["Location"]))  # not "closed": it was never solved
