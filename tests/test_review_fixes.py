"""Defects found in review, each pinned by the behaviour a user or an attacker would see."""

import socket
import threading
import time

import pytest

from helpdesk.models import Agent, Category, Incident, Service, Team
from helpdesk.outbound import post_json
from helpdesk.people import set_password
from helpdesk.records import DeliveryError
from helpdesk.testing import PASSWORD, AgentClient


@pytest.mark.parametrize("helpdesk_settings", [{"trusted_proxies": 1, "login_max_failures": 2}])
def test_behind_a_proxy_one_client_cannot_lock_everyone_out(helpdesk_app, personas):
    attacker = AgentClient(helpdesk_app, None)
    for n in range(12):
        attacker.post("/login", {"username": f"nobody{n}", "password": "x"},
                      headers={"X-Forwarded-For": "203.0.113.9"})
    assert attacker.post("/login", {"username": "nobody", "password": "x"},
                         headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 429
    owner = AgentClient(helpdesk_app, None)
    response = owner.post("/login", {"username": "john", "password": PASSWORD},
                          headers={"X-Forwarded-For": "198.51.100.7"})
    assert response.status_code == 302


@pytest.mark.parametrize(("path", "status"), [
    ("/incidents/99999999999999999999999", 404),
    ("/queues/open?q=%C2%B2", 200),  # free text: searched for literally
    ("/queues/open?team=99999999999999999999999", 400),
    ("/admin/sla?incident=%C2%B2", 200),  # the page, saying it is not a reference
    ("/queues/open?priority=%C2%B2", 400),
])
def test_odd_numbers_in_addresses_are_clear_client_errors(login, personas, path, status):
    response = login(personas.admin).get(path)
    assert response.status_code == status
    if path.startswith("/admin/sla"):
        assert "Give an incident reference such as INC-42." in response.get_data(as_text=True)


def test_odd_ids_in_forms_are_refused_not_crashed(login, personas, incident_factory):
    incident = incident_factory()
    client = login(personas.admin)
    for url, form in [(f"/incidents/{incident.id}/links", {"kind": "parent", "other": "²"}),
                      (f"/incidents/{incident.id}/priority", {"priority": "²", "reason": "x"}),
                      (f"/incidents/{incident.id}/assignee", {"assigned_team": "9" * 25}),
                      ("/incidents/new", {"title": "x", "category": "²"}),
                      ("/admin/teams", {"name": "N" * 101})]:
        assert client.post(url, form).status_code == 422, url
    assert not Team.select().where(Team.name == "N" * 101).exists()


def test_a_link_to_an_incident_that_does_not_exist_is_said_on_the_page(login, personas, incident_factory):
    incident = incident_factory()
    answer = login(personas.owner).post(f"/incidents/{incident.id}/links",
                                        {"kind": "parent", "other": "INC-99999", "version": incident.version},
                                        headers={"HX-Request": "true"})
    assert answer.status_code == 422  # the page answers, saying why (not a 404 of the page itself)
    assert "There is no incident INC-99999." in answer.get_data(as_text=True)


def test_saving_details_keeps_a_retired_category_and_service(login, personas, incident_factory):
    category, service = Category.create(name="Legacy"), Service.create(name="Old CRM")
    incident = incident_factory(category=category, service=service)
    Category.update(active=False).execute()
    Service.update(active=False).execute()
    client = login(personas.owner)
    page = client.get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert "Legacy (retired)" in page
    form = {"version": 1, "title": "Renamed", "description": "", "type": "incident",
            "impact": "medium", "urgency": "medium", "category": str(category.id),
            "service": str(service.id), "requester": ""}
    assert client.post(f"/incidents/{incident.id}/details", form).status_code == 303
    fresh = Incident.get_by_id(incident.id)
    assert (fresh.title, fresh.category_id, fresh.service_id) == ("Renamed", category.id, service.id)


def test_a_new_password_ends_other_sessions_but_not_this_one(helpdesk_app, login, personas):
    elsewhere = login(personas.owner)
    here = login(personas.owner)
    form = {"current_password": PASSWORD, "new_password": "another-secret-9"}
    assert here.post("/profile", form).status_code == 303
    assert here.get("/queues/owned").status_code == 200
    assert elsewhere.get("/queues/owned").status_code == 302  # back to the login page
    set_password(Agent.get_by_id(personas.owner.id), "third-secret-99")  # an admin resets it
    assert here.get("/queues/owned").status_code == 302


def test_a_receiver_that_drips_bytes_is_cut_off_at_the_timeout():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def drip() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
            try:
                conn.send(bytes([byte]))
            except OSError:
                break
            time.sleep(0.2)
        conn.close()

    threading.Thread(target=drip, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="did not answer within 1 s"):
        post_json(f"http://127.0.0.1:{server.getsockname()[1]}/", {}, timeout=1.0, allow=["127.0.0.1"])
    assert time.monotonic() - started < 2.5
    server.close()
