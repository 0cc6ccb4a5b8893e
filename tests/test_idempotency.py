"""Writes answer what they did: a repeated form is answered with the first result, not written twice."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import peewee
import pytest
from test_notifications import SmtpServer

from helpdesk.models import Contact, Delivery, EventDelivery, IdempotentRequest, TimelineEntry
from helpdesk.web import incidents as incident_views

REQUESTER = "ada@example.com"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def helpdesk_load_entry_points() -> bool:
    return True  # the e-mail channel and the activity log, each with its outbox


@pytest.fixture
def helpdesk_settings(smtp: SmtpServer) -> dict[str, Any]:
    return {"plugins": {"email": smtp.settings}}


@pytest.fixture
def incident(app, incident_factory) -> Any:
    with app.app_context():
        requester = Contact.create(name="Ada Lovelace", email=REQUESTER)
    return incident_factory(title="Laptop will not boot", requester=requester)


def comment_form(client: Any, incident_id: int) -> dict[str, str]:
    """The fields of the reply/note form as the incident page renders it."""
    page = client.get(f"/incidents/{incident_id}").get_data(as_text=True)
    form = page[page.index(f'action="/incidents/{incident_id}/comments"'):]
    form = form[:form.index("</form>")]
    return {"idempotency_key": re.search(r'name="idempotency_key" value="([0-9a-f]{32})"', form).group(1)}


def entries(incident_id: int, kind: str) -> list[TimelineEntry]:
    return list(TimelineEntry.select().where((TimelineEntry.incident == incident_id)
                                             & (TimelineEntry.kind == kind)))


def test_every_form_on_the_incident_page_carries_its_own_key(incident, personas, login):
    page = login(personas.owner).get(f"/incidents/{incident.id}").get_data(as_text=True)
    forms = [form for form in re.findall(r'<form[^>]*method="post".*?</form>', page, re.S)
             if 'action="/logout"' not in form]  # logging out twice is the same as once
    keys = [re.search(r'name="idempotency_key" value="([0-9a-f]{32})"', form) for form in forms]
    assert forms and all(keys), "every state-changing form"
    assert len({key.group(1) for key in keys}) == len(forms), "a key of its own"


@pytest.mark.parametrize(("visibility", "kind"), [("note", "note"), ("public", "reply")])
def test_a_repeated_note_or_reply_is_saved_once_and_the_customer_mailed_once(
        incident, personas, login, smtp, visibility, kind):
    client = login(personas.owner)
    form = {**comment_form(client, incident.id), "visibility": visibility, "body": "Reseated the RAM."}
    first = client.post(f"/incidents/{incident.id}/comments", data=form)
    again = client.post(f"/incidents/{incident.id}/comments", data=form)  # a double click, a retry
    assert first.status_code == again.status_code == 303
    assert len(entries(incident.id, kind)) == 1
    # The first lands on the new entry; the repeat on the same page, saying it was saved already.
    assert first.location == f"/incidents/{incident.id}#entry-{entries(incident.id, kind)[0].id}"
    assert again.location.split("#")[0] == f"/incidents/{incident.id}"
    assert "already saved" in client.get(again.location).get_data(as_text=True)
    assert EventDelivery.select().where((EventDelivery.event == "incident_commented")
                                        & (EventDelivery.plugin == "activity_log")).count() == 1
    mails = Delivery.select().where((Delivery.event == "incident_commented")
                                    & (Delivery.recipient == REQUESTER))
    assert mails.count() == (1 if visibility == "public" else 0)
    assert len(smtp.to(REQUESTER)) == (2 if visibility == "public" else 1)  # with the acknowledgement


def test_the_same_form_sent_with_other_words_is_a_new_note(incident, personas, login):
    client = login(personas.owner)
    key = comment_form(client, incident.id)
    client.post(f"/incidents/{incident.id}/comments", data={**key, "body": "First thought."})
    client.post(f"/incidents/{incident.id}/comments", data={**key, "body": "Second thought."})
    assert [e.body for e in entries(incident.id, "note")] == ["First thought.", "Second thought."]


def test_another_agent_cannot_replay_someone_elses_key(incident, personas, login):
    owner, colleague = login(personas.owner), login(personas.colleague)
    form = {**comment_form(owner, incident.id), "body": "Same words."}
    owner.post(f"/incidents/{incident.id}/comments", data=form)
    colleague.post(f"/incidents/{incident.id}/comments", data=form)
    assert [e.actor_id for e in entries(incident.id, "note")] == [personas.owner.id, personas.colleague.id]


def test_a_failure_after_commit_answers_from_the_saved_state_and_a_retry_writes_nothing(
        incident, personas, login, monkeypatch):
    client = login(personas.owner)
    form = {**comment_form(client, incident.id), "body": "Replaced the disk."}

    def connection_drops(*args: Any, **kwargs: Any) -> Any:
        raise peewee.OperationalError("server closed the connection unexpectedly")

    headers = {"HX-Request": "true", "HX-Target": "incident-body",
               "HX-Current-URL": f"http://localhost/incidents/{incident.id}"}
    with monkeypatch.context() as patch:
        patch.setattr(incident_views, "_render", connection_drops)  # the answer, after the commit
        response = client.post(f"/incidents/{incident.id}/comments", data=form, headers=headers)
    assert response.status_code == 200, "not a 500, not a 503 that says nothing was changed"
    assert response.headers["HX-Redirect"] == f"/incidents/{incident.id}"
    assert "Saved." in client.get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert len(entries(incident.id, "note")) == 1

    retry = client.post(f"/incidents/{incident.id}/comments", data=form, headers=headers)
    assert retry.headers["HX-Redirect"] == f"/incidents/{incident.id}"
    assert len(entries(incident.id, "note")) == 1
    assert IdempotentRequest.select().count() == 1
