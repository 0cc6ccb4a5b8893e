"""The portal's accounts: a customer chooses a password after a link sign-in and signs in with it
(rate-limited, no enumeration); an organisation that shares its incidents lets colleagues follow
and answer each other's; a requester rates a resolution."""

from __future__ import annotations

import re
from typing import Any

import pytest
from test_portal import Customer, page

from helpdesk import incidents
from helpdesk.models import Contact, Incident, Organisation, Rating, TimelineEntry
from helpdesk.testing import SmtpServer

PASSWORD = "correct horse battery"


@pytest.fixture
def smtp(smtp_server: SmtpServer) -> SmtpServer:
    smtp_server.from_address = "Helpdesk <help@example.com>"
    return smtp_server


@pytest.fixture
def helpdesk_settings(smtp: SmtpServer) -> dict[str, Any]:
    return {"support_address": "help@example.com", "plugins": {"email": smtp.settings},
            "login_max_failures": 3}


@pytest.fixture
def helpdesk_bundled_plugins() -> list[str]:
    return ["email"]


@pytest.fixture
def acme(app, contact_factory):
    """Ada and Bob of Acme, which shares its incidents; Eve of another company."""
    org = Organisation.create(name="Acme", share_incidents=True)
    ada = contact_factory(name="Ada Lovelace", email="ada@example.org")
    bob = contact_factory(name="Bob Byte", email="bob@example.org")
    eve = contact_factory(name="Eve Other", email="eve@example.net")
    Contact.update(organisation=org).where(Contact.id.in_([ada.id, bob.id])).execute()
    return {"ada": ada, "bob": bob, "eve": eve, "org": org}


def password_sign_in(customer: Customer, email: str, password: str) -> Any:
    return customer.post("/portal/password-sign-in", {"email": email, "password": password})


def test_a_customer_chooses_a_password_and_signs_in_with_it(app, smtp, acme):
    ada = Customer(app, smtp, "ada@example.org").sign_in()
    # The way there is a link that says so, on every portal page (not only the name's tooltip).
    assert re.search(r'<a href="/portal/password">Password</a>', ada.get("/portal/").get_data(as_text=True))
    chosen = ada.post("/portal/password", {"password": PASSWORD, "again": PASSWORD})
    assert chosen.status_code == 303
    stored = Contact.get_by_id(acme["ada"].id).password_hash
    assert stored and PASSWORD not in stored and stored.startswith("$argon2")

    fresh = Customer(app, smtp, "ada@example.org")
    answer = password_sign_in(fresh, "Ada@Example.org", PASSWORD)
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/portal/")
    assert "Your requests" in page(fresh.get("/portal/"))


def test_changing_the_password_needs_the_current_one(app, smtp, acme):
    ada = Customer(app, smtp, "ada@example.org").sign_in()
    ada.post("/portal/password", {"password": PASSWORD, "again": PASSWORD})
    before = Contact.get_by_id(acme["ada"].id).password_hash
    refused = ada.post("/portal/password", {"current": "guess", "password": "another one here",
                                            "again": "another one here"})
    assert refused.status_code == 422 and "current password is not right" in page(refused)
    short = ada.post("/portal/password", {"current": PASSWORD, "password": "short", "again": "short"})
    assert short.status_code == 422 and "at least 10 characters" in page(short)
    assert Contact.get_by_id(acme["ada"].id).password_hash == before


def test_wrong_password_unknown_address_and_no_password_answer_alike(app, smtp, acme):
    ada = Customer(app, smtp, "ada@example.org").sign_in()
    ada.post("/portal/password", {"password": PASSWORD, "again": PASSWORD})
    answers = [password_sign_in(Customer(app, smtp, "x@example.org"), email, password)
               for email, password in [("ada@example.org", "wrong password"),
                                       ("nobody@example.org", PASSWORD),
                                       ("bob@example.org", PASSWORD)]]  # Bob chose none
    assert {a.status_code for a in answers} == {401}
    errors = {re.search(r'<p class="error" role="alert">([^<]*)</p>', page(a)).group(1) for a in answers}
    assert errors == {"That address and password do not match. Forgot it? Ask for a sign-in link."}


def test_guessing_is_rate_limited(app, smtp, acme):
    ada = Customer(app, smtp, "ada@example.org").sign_in()
    ada.post("/portal/password", {"password": PASSWORD, "again": PASSWORD})
    guesser = Customer(app, smtp, "ada@example.org")
    codes = [password_sign_in(guesser, "ada@example.org", f"guess {n}").status_code for n in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    assert password_sign_in(guesser, "ada@example.org", PASSWORD).status_code == 429


def test_a_shared_organisation_follows_and_answers_each_others_incidents(app, ctx, smtp, acme, personas,
                                                                        login):
    with app.app_context():
        adas = incidents.log_incident(ctx, title="Printer jam", actor=personas.owner, requester=acme["ada"])
        eves = incidents.log_incident(ctx, title="Eve's laptop", actor=personas.owner, requester=acme["eve"])
    bob = Customer(app, smtp, "bob@example.org").sign_in()
    listing = page(bob.get("/portal/"))
    assert "Printer jam" in listing and "Ada Lovelace" in listing and "Eve&#39;s laptop" not in listing
    assert bob.get(f"/portal/incidents/{adas.id}").status_code == 200
    assert bob.get(f"/portal/incidents/{eves.id}").status_code == 404
    replied = bob.post(f"/portal/incidents/{adas.id}/reply", {"body": "Same here on floor 2."})
    assert replied.status_code == 303
    entry = TimelineEntry.get((TimelineEntry.incident == adas.id) & (TimelineEntry.kind == "customer"))
    assert entry.contact_id == acme["bob"].id
    ada = Customer(app, smtp, "ada@example.org").sign_in()
    assert "Bob Byte" in page(ada.get(f"/portal/incidents/{adas.id}"))

    admin = login(personas.admin)  # the admin stops the sharing on the Organisations page
    page_ = admin.get("/admin/catalogue/organisations").get_data(as_text=True)
    assert "shares its incidents among its contacts" in page_
    assert admin.post("/admin/catalogue/organisations", data={"share": acme["org"].id}).status_code == 303
    assert not Organisation.get_by_id(acme["org"].id).share_incidents
    assert bob.get(f"/portal/incidents/{adas.id}").status_code == 404
    assert "Printer jam" not in page(bob.get("/portal/"))


def test_the_requester_rates_a_resolution_and_can_change_it(app, ctx, smtp, acme, personas, login):
    with app.app_context():
        incident = incidents.log_incident(ctx, title="VPN down", actor=personas.owner, requester=acme["ada"])
    ada = Customer(app, smtp, "ada@example.org").sign_in()
    early = ada.post(f"/portal/incidents/{incident.id}/rating", {"score": "5"})
    assert early.status_code == 422 and "once it is resolved" in page(early)
    with app.app_context():
        incidents.change_status(ctx, incident.id, personas.owner, "resolved", note="Restarted the VPN")
    assert "How did we do?" in page(ada.get(f"/portal/incidents/{incident.id}"))
    assert ada.post(f"/portal/incidents/{incident.id}/rating", {"score": "2", "comment": "Took long"}
                    ).status_code == 303
    assert ada.post(f"/portal/incidents/{incident.id}/rating", {"score": "4"}).status_code == 303
    rating = Rating.get(Rating.incident == incident.id)
    assert (rating.score, rating.comment) == (4, "")
    notes = [e.body for e in TimelineEntry.select().where((TimelineEntry.incident == incident.id)
                                                          & (TimelineEntry.kind == "rating"))]
    assert notes == ["Ada Lovelace rated the resolution 2/5 (Poor): Took long",
                     "Ada Lovelace rated the resolution 4/5 (Good)."]
    agent_page = login(personas.owner).get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert "Customer rating" in agent_page and "rated the resolution 4/5 (Good)" in agent_page
    bad = ada.post(f"/portal/incidents/{incident.id}/rating", {"score": "9"})
    assert bad.status_code == 422
    # A colleague may read the shared incident but not rate or confirm it for Ada.
    bob = Customer(app, smtp, "bob@example.org").sign_in()
    assert bob.post(f"/portal/incidents/{incident.id}/rating", {"score": "1"}).status_code == 422
    assert bob.post(f"/portal/incidents/{incident.id}/confirm").status_code == 422
    assert Incident.get_by_id(incident.id).status == "resolved"


def _copy_of(customer: Customer, app: Any) -> Any:
    """Another browser holding a copy of this customer's session cookie (a stolen cookie)."""
    name = app.config["SESSION_COOKIE_NAME"]
    thief = app.test_client()
    thief.set_cookie(name, customer.http.get_cookie(name).value)
    return thief


def test_signing_out_ends_the_session_even_for_a_copy_of_the_cookie(app, smtp, acme):
    ada = Customer(app, smtp, "ada@example.org").sign_in()
    thief = _copy_of(ada, app)
    assert "Your requests" in page(thief.get("/portal/"))

    assert ada.post("/portal/sign-out").status_code == 303
    for browser in (ada.http, thief):
        answer = browser.get("/portal/")
        assert answer.status_code == 302 and "/portal/sign-in" in answer.headers["Location"]


def test_a_new_password_ends_the_accounts_other_sessions(app, smtp, acme):
    ada = Customer(app, smtp, "ada@example.org").sign_in()
    elsewhere = Customer(app, smtp, "ada@example.org").sign_in()  # a shared computer
    assert "Your requests" in page(elsewhere.get("/portal/"))

    assert ada.post("/portal/password", {"password": PASSWORD, "again": PASSWORD}).status_code == 303
    assert "Your requests" in page(ada.get("/portal/")), "the browser that changed it stays in"
    answer = elsewhere.get("/portal/")
    assert answer.status_code == 302 and "/portal/sign-in" in answer.headers["Location"]


def test_a_cookie_planted_before_sign_in_is_not_signed_in_afterwards(app, smtp, acme):
    """C3 on the portal: the attacker's pre-sign-in cookie (and its CSRF token) stay worthless."""
    victim = Customer(app, smtp, "ada@example.org")
    planted_token = victim.csrf()
    planted = _copy_of(victim, app)
    victim.sign_in()
    assert victim.csrf() != planted_token
    answer = planted.get("/portal/")
    assert answer.status_code == 302 and "/portal/sign-in" in answer.headers["Location"]


def test_a_deleted_contact_is_signed_out(app, smtp, acme):
    ada = Customer(app, smtp, "ada@example.org").sign_in()
    Contact.delete_by_id(acme["ada"].id)
    answer = ada.get("/portal/")
    assert answer.status_code == 302 and "/portal/sign-in" in answer.headers["Location"]


def test_correcting_a_contacts_address_shuts_out_whoever_had_the_old_one(app, smtp, acme, login, personas):
    """The admin had typed Ada's address wrong: the stranger at it signed in, chose a password
    and kept a link for later. Once the address is corrected, none of that works any more."""
    Contact.update(email="ada@exampel.org").where(Contact.id == acme["ada"].id).execute()
    stranger = Customer(app, smtp, "ada@exampel.org").sign_in()
    stranger.post("/portal/password", {"password": PASSWORD, "again": PASSWORD})
    spare_link = Customer(app, smtp, "ada@exampel.org").sign_in_link()
    admin = login(personas.admin)
    saved = admin.post(f"/admin/contacts/{acme['ada'].id}", {
        "name": "Ada Lovelace", "email": "ada@example.org", "phone": "", "organisation": "Acme"})
    assert saved.status_code == 303
    answer = stranger.get("/portal/")
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/portal/sign-in")
    elsewhere = Customer(app, smtp, "x@example.org")
    assert password_sign_in(elsewhere, "ada@example.org", PASSWORD).status_code == 401
    assert Customer(app, smtp, "ada@exampel.org").follow(spare_link).status_code == 400
    ada = Customer(app, smtp, "ada@example.org").sign_in()  # the customer, by a link to the new address
    assert "Your requests" in page(ada.get("/portal/"))
    renamed = admin.post(f"/admin/contacts/{acme['ada'].id}", {  # a new name alone signs nobody out
        "name": "Ada King", "email": "ada@example.org", "phone": "", "organisation": "Acme"})
    assert renamed.status_code == 303 and ada.get("/portal/").status_code == 200


def test_an_e_mail_channel_that_fails_to_address_the_customer_answers_the_sign_in_as_usual(
        app, smtp, acme, monkeypatch):
    """A plugin replacing the e-mail channel whose ``contact_address_for`` raises: the customer
    is told what every sign-in is told (no 500), and the admin finds the failure named."""
    import dataclasses

    from helpdesk.models import PluginFailure

    registry = app.extensions["helpdesk"].registry

    def broken(ctx: Any, contact: Any) -> str:
        raise RuntimeError("the directory is down")

    monkeypatch.setitem(registry.channel_types, "email",
                        dataclasses.replace(registry.channel_types["email"], contact_address_for=broken))
    answer = Customer(app, smtp, "ada@example.org").ask_for_link()
    assert answer.status_code == 200
    assert "the directory is down" not in answer.get_data(as_text=True)
    with app.app_context():
        failure = PluginFailure.get(PluginFailure.hook == "contact_address_for")
    assert "the directory is down" in failure.error
