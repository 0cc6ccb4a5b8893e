"""C. Sessions and authentication: fixation (C3), revocation (C4, #10 item 6), expiry,
login limits under concurrency and without an account-existence oracle (C5, #10 item 4),
local redirects only (C9), the current password for a new one (C12), identity headers
ignored (C14), weak secret keys refused (C15). CSRF (C1) and GET on actions (C2) are in
test_route_matrix.py.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask

from helpdesk.config import ConfigError, load_settings
from helpdesk.models import Agent, AgentSession, LoginAttempt
from helpdesk.testing import PASSWORD, AgentClient, FrozenClock, Personas

SECRET = "0123456789abcdefghijklmnopqrstuvwxyz"


def logged_in(client: AgentClient) -> bool:
    return client.get("/queues/open").status_code == 200


def cookie(client: AgentClient) -> str:
    return client.http.get_cookie("session").value


def with_cookie(app: Flask, value: str) -> AgentClient:
    """A second browser holding a copy of someone's session cookie."""
    thief = AgentClient(app, None)
    thief.http.set_cookie("session", value)
    return thief


def try_login(client: AgentClient, username: str, password: str) -> int:
    return client.post("/login", {"username": username, "password": password}).status_code


# -- C3 session fixation ---------------------------------------------------------------------


def test_c3_a_planted_session_cookie_gets_a_new_session_and_token_at_login(
        app: Flask, personas: Personas) -> None:
    """The attacker fetches the login page (a session cookie and its CSRF token) and plants
    the cookie in the victim's browser; the victim logs in with it."""
    attacker = AgentClient(app, None)
    known_token = attacker.csrf_token()
    planted = cookie(attacker)
    victim = with_cookie(app, planted)
    victim._token = known_token
    assert try_login(victim, "john", PASSWORD) == 302
    assert cookie(victim) != planted
    assert logged_in(victim)
    assert not logged_in(with_cookie(app, planted)), "the planted cookie never became John's"
    # the CSRF token the attacker knew is not the logged-in session's
    forged = victim.http.post("/profile/sessions/end-others", data={"csrf_token": known_token})
    assert forged.status_code == 400
    victim._token = None
    assert victim.post("/profile/sessions/end-others").status_code == 303


def test_c3_an_anonymous_cookie_from_before_login_is_dead_after_it(app: Flask, personas: Personas) -> None:
    browser = AgentClient(app, None)
    browser.csrf_token()
    before = cookie(browser)  # holds the pre-login CSRF token
    assert try_login(browser, "john", PASSWORD) == 302
    assert not logged_in(with_cookie(app, before))
    assert AgentSession.select().where(AgentSession.agent == personas.owner.id).count() == 1


# -- C4 revocation ---------------------------------------------------------------------------


def test_c4_logout_ends_the_session_for_every_copy_of_the_cookie(app: Flask, personas: Personas) -> None:
    john = AgentClient(app, personas.owner)
    copy = with_cookie(app, cookie(john))
    assert logged_in(copy)
    assert john.post("/logout").status_code == 302
    assert not logged_in(copy)
    assert not logged_in(john)
    assert AgentSession.select().count() == 0


def test_c4_log_out_other_sessions_from_the_profile(app: Flask, personas: Personas) -> None:
    here, laptop, phone = (AgentClient(app, personas.owner) for _ in range(3))
    sara = AgentClient(app, personas.colleague)
    page = here.get("/profile").get_data(as_text=True)
    assert page.count("this browser") == 1 and "Log out other sessions" in page
    answer = here.post("/profile/sessions/end-others")
    assert answer.status_code == 303
    assert "Logged out 2 other sessions." in here.get("/profile").get_data(as_text=True)
    assert logged_in(here) and logged_in(sara)
    assert not logged_in(laptop) and not logged_in(phone)


@pytest.mark.parametrize("change", ["deactivate", "downgrade", "password"])
def test_c4_an_admin_change_ends_all_the_agents_sessions(
        app: Flask, personas: Personas, change: str) -> None:
    sessions = [AgentClient(app, personas.lead) for _ in range(3)]
    admin = AgentClient(app, personas.admin)
    form = {"display_name": personas.lead.display_name, "email": personas.lead.email,
            "role": "lead", "active": "on", "teams": str(personas.service_desk.id)}
    if change == "deactivate":
        del form["active"]
    elif change == "downgrade":
        form["role"] = "agent"
    else:
        form["password"] = "a brand new passphrase"
    assert admin.post(f"/admin/agents/{personas.lead.id}", form).status_code == 303
    assert not any(logged_in(s) for s in sessions)
    assert AgentSession.select().where(AgentSession.agent == personas.lead.id).count() == 0
    assert logged_in(admin), "the admin's own session is untouched"
    if change == "deactivate":
        assert try_login(AgentClient(app, None), "amira", PASSWORD) == 401


def test_c4_an_unchanged_save_keeps_the_agents_sessions(app: Flask, personas: Personas) -> None:
    lead = AgentClient(app, personas.lead)
    form = {"display_name": "Amira H.", "email": personas.lead.email, "role": "lead", "active": "on"}
    assert AgentClient(app, personas.admin).post(f"/admin/agents/{personas.lead.id}", form).status_code == 303
    assert logged_in(lead)


def test_c4_a_new_password_ends_the_other_sessions_and_keeps_this_one(app: Flask, personas: Personas) -> None:
    here, elsewhere = AgentClient(app, personas.owner), AgentClient(app, personas.owner)
    answer = here.post("/profile", {"current_password": PASSWORD, "new_password": "another passphrase"})
    assert answer.status_code == 303
    assert logged_in(here) and not logged_in(elsewhere)


@pytest.mark.parametrize("settings_overrides", [
    {"session_idle_seconds": 600, "session_lifetime_seconds": 3600}])
def test_sessions_expire_when_idle_and_after_their_lifetime(
        app: Flask, personas: Personas, frozen_clock: FrozenClock) -> None:
    idle, busy = AgentClient(app, personas.owner), AgentClient(app, personas.colleague)
    frozen_clock.advance(minutes=9)
    assert logged_in(busy)
    frozen_clock.advance(minutes=2)  # 11 minutes without a request
    assert not logged_in(idle)
    assert logged_in(busy)
    for _ in range(5):  # used every 9 minutes: never idle, but the lifetime is an hour
        frozen_clock.advance(minutes=9)
        assert logged_in(busy)
    frozen_clock.advance(minutes=9)  # 65 minutes after logging in
    assert not logged_in(busy)
    assert AgentSession.select().count() == 0, "expired sessions are deleted when seen"


@pytest.mark.parametrize("settings_overrides", [
    {"session_idle_seconds": 600, "session_lifetime_seconds": 3600}])
def test_a_tab_left_open_times_out_although_its_bell_and_queue_refresh_themselves(
        app: Flask, personas: Personas, frozen_clock: FrozenClock) -> None:
    tab = AgentClient(app, personas.owner)
    poll = {"HX-Request": "true", "X-Helpdesk-Poll": "1"}
    for _ in range(3):  # 9 minutes of the bell polling, nobody at the keyboard
        frozen_clock.advance(minutes=3)
        assert tab.get("/notices/bell", headers=poll).status_code == 200
    frozen_clock.advance(minutes=3)
    assert tab.get("/notices/bell", headers=poll).status_code == 401  # idle past 10 minutes
    assert not logged_in(tab)


def test_sessions_abandoned_in_a_closed_browser_are_deleted_at_the_next_login(
        app: Flask, personas: Personas, frozen_clock: FrozenClock) -> None:
    for _ in range(3):
        AgentClient(app, personas.owner)  # browsers closed without logging out
    frozen_clock.advance(seconds=app.extensions["helpdesk"].settings.session_idle_seconds + 1)
    fresh = AgentClient(app, personas.colleague)
    assert [s.agent_id for s in AgentSession.select()] == [personas.colleague.id]
    assert logged_in(fresh)


@pytest.mark.parametrize("name, value", [
    ("session_idle_seconds", "10"), ("session_idle_seconds", "8h"),
    ("session_lifetime_seconds", "0"), ("session_lifetime_seconds", "true"),
    ("login_account_max_failures", "-1"), ("allowed_hosts", "evil.com/path"),
    ("allowed_hosts", "a b")])
def test_session_and_login_settings_are_parsed_strictly(tmp_path: Any, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"HELPDESK_{name.upper()}"):
        load_settings(environ={f"HELPDESK_{name.upper()}": value, "HELPDESK_SECRET_KEY": SECRET},
                      instance_path=tmp_path)


# -- C5 login limits -------------------------------------------------------------------------


def test_c5_thirty_parallel_wrong_passwords_verify_at_most_the_limit(
        live_server: Any, personas: Personas, hasher: Any, helpdesk_app: Flask) -> None:
    """Against a real threaded server: the check and the record are one step."""
    limit = helpdesk_app.extensions["helpdesk"].settings.login_max_failures
    clients = [live_server.client() for _ in range(30)]
    for client in clients:
        assert client.get("/login")[0] == 200
    hasher.verified.clear()
    start, answers = threading.Barrier(30), []

    def attempt(client: Any) -> None:
        start.wait()
        answers.append(client.post("/login", {"username": "john", "password": "wrong guess!"})[0])

    threads = [threading.Thread(target=attempt, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    john_hash = Agent.get_by_id(personas.owner.id).password_hash
    assert hasher.verified.count(john_hash) <= limit
    assert sorted(answers) == [401] * limit + [429] * (30 - limit)
    assert LoginAttempt.select().where(LoginAttempt.key == "user:john").count() == limit


@pytest.mark.parametrize("who", ["active", "deactivated", "unknown"])
def test_c5_every_kind_of_account_costs_one_password_verification(
        app: Flask, personas: Personas, hasher: Any, who: str) -> None:
    """No oracle: the same answer and the same work whether the name exists or still works."""
    if who == "deactivated":
        Agent.update(active=False).where(Agent.id == personas.owner.id).execute()
    name = "nobody" if who == "unknown" else "john"
    client = AgentClient(app, None)
    hasher.verified.clear()
    password = PASSWORD if who != "active" else "wrong password!"
    response = client.post("/login", {"username": name, "password": password})
    assert response.status_code == 401
    assert "Unknown user name or wrong password." in response.get_data(as_text=True)
    assert len(hasher.verified) == 1


def from_address(app: Flask, address: str) -> AgentClient:
    client = AgentClient(app, None)
    client.http.environ_base["REMOTE_ADDR"] = address
    return client


def test_c5_a_stranger_cannot_lock_a_known_account_out(app: Flask, personas: Personas) -> None:
    stranger = from_address(app, "203.0.113.9")
    for _ in range(5):
        assert try_login(stranger, "root", "guess guess") == 401
    refused = stranger.post("/login", {"username": "root", "password": PASSWORD})
    assert refused.status_code == 429, "the stranger's address is locked out"
    assert refused.headers["Retry-After"] == str(app.extensions["helpdesk"].settings.login_window_seconds)
    assert try_login(from_address(app, "198.51.100.20"), "root", PASSWORD) == 302


@pytest.mark.parametrize("settings_overrides", [{"login_account_max_failures": 12}])
def test_c5_guesses_from_many_addresses_reach_the_account_limit(app: Flask, personas: Personas) -> None:
    for n in range(12):  # 3 addresses x 4 guesses: under the per-address limit each
        assert try_login(from_address(app, f"203.0.113.{n // 4}"), "john", "guess guess") == 401
    assert try_login(from_address(app, "198.51.100.7"), "john", PASSWORD) == 429
    assert try_login(from_address(app, "198.51.100.7"), "sara", PASSWORD) == 302


def test_c5_one_address_spraying_many_names_is_limited(app: Flask, personas: Personas) -> None:
    sprayer = from_address(app, "203.0.113.50")
    answers = [try_login(sprayer, f"user{n}", "Winter2026!") for n in range(25)]
    assert answers == [401] * 20 + [429] * 5
    assert try_login(from_address(app, "203.0.113.51"), "john", PASSWORD) == 302


def test_c5_successful_logins_do_not_use_up_an_office_address(app: Flask, personas: Personas) -> None:
    """Everyone behind one NAT address logs in many times a day: only failures count."""
    for _ in range(25):
        assert try_login(from_address(app, "192.0.2.1"), "sara", PASSWORD) == 302


# -- C9, C12, C14, C15 -----------------------------------------------------------------------


@pytest.mark.parametrize("target", ["//evil.com", "https://evil.com/x", "/\\evil.com", "\t//evil.com"])
def test_c9_login_never_redirects_off_site(app: Flask, personas: Personas, target: str) -> None:
    client = AgentClient(app, None)
    response = client.post("/login", {"username": "john", "password": PASSWORD, "next": target})
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_c12_a_new_password_needs_the_current_one(app: Flask, personas: Personas) -> None:
    john = AgentClient(app, personas.owner)
    before = Agent.get_by_id(personas.owner.id).password_hash
    response = john.post("/profile", {"new_password": "attacker's choice!!"})
    assert response.status_code == 422
    assert Agent.get_by_id(personas.owner.id).password_hash == before
    assert logged_in(john)


@pytest.mark.parametrize("header", ["X-Remote-User", "X-Forwarded-User", "Remote-User", "X-User"])
def test_c14_identity_headers_are_ignored(app: Flask, personas: Personas, header: str) -> None:
    client = app.test_client()
    response = client.get("/queues/open", headers={header: "root"},
                          environ_base={"REMOTE_USER": "root"})
    assert response.status_code == 302 and "/login" in response.headers["Location"]


@pytest.mark.parametrize("secret", [
    "", " " * 40, "short", "changeme", "x" * 31,
    # sample keys as they are pasted from READMEs and compose files
    "change-me-to-a-long-random-string-please", "django-insecure-0f9#kq2!l7x@v8m3n1b6z4c5d2s9a",
    "your-secret-key-goes-here-1234567890abcdef", "SECRET_KEY_FOR_EXAMPLE_PURPOSES_ONLY_0123",
])
def test_c15_a_weak_secret_key_stops_start_up(tmp_path: Any, secret: str) -> None:
    with pytest.raises(ConfigError, match="HELPDESK_SECRET_KEY"):
        load_settings(environ={"HELPDESK_SECRET_KEY": secret}, instance_path=tmp_path)


def test_c15_a_generated_key_is_accepted(tmp_path: Any) -> None:
    """The refusal of sample words must not refuse what `helpdesk init` writes."""
    import secrets
    for _ in range(200):
        key = secrets.token_urlsafe(48)
        assert load_settings(environ={"HELPDESK_SECRET_KEY": key}, instance_path=tmp_path).secret_key == key

