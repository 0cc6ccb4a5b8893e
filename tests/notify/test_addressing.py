"""Who may be reached, how, and until when: URLs people save are checked like URLs we send to,
deactivated agents receive nothing, stale messages are not sent late, and the former agent
columns migrate into per-channel settings without loss."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from helpdesk import incidents, schema
from helpdesk.db import open_database
from helpdesk.models import AgentChannel, Delivery, Notice
from helpdesk.notify import outbox
from helpdesk.notify.rules import KINDS
from helpdesk.testing import PG_URL_VARIABLE, reset_postgres


@pytest.fixture
def helpdesk_bundled_plugins() -> list[str]:
    return ["chat", "sla_priority", "business_hours"]


def profile_form(**chat: str) -> dict[str, str]:
    form = {"channel-inapp": "on", **chat}
    form.update({f"pref-{kind}-{channel}": "on" for kind in KINDS for channel in ("inapp", "chat")})
    return form


@pytest.mark.parametrize("url", [
    "javascript:alert(1)", "file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO",
    "http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:6379/", "http://localhost/hook",
    "http://[::1]/hook", "http://10.0.0.5/hook", "http://0x7f000001/hook", "https://user:pw@93.184.216.34/",
])
def test_a_chat_url_that_could_reach_inside_is_refused_when_saved(login, personas, url):
    response = login(personas.owner).post("/profile", profile_form(**{
        "channel-chat": "on", "channel-chat-url": url}))
    assert response.status_code == 422
    assert "Chat webhook URL" in response.get_data(as_text=True)
    assert not AgentChannel.select().where(AgentChannel.agent == personas.owner.id).exists()


def test_a_public_chat_url_is_saved_and_an_allow_listed_private_one_too(login, personas, helpdesk_app):
    client = login(personas.owner)
    assert client.post("/profile", profile_form(**{
        "channel-chat": "on", "channel-chat-url": "https://93.184.216.34/hooks/abc"})).status_code == 303
    row = AgentChannel.get((AgentChannel.agent == personas.owner.id) & (AgentChannel.channel == "chat"))
    assert json.loads(row.values) == {"url": "https://93.184.216.34/hooks/abc"} and row.enabled


@pytest.mark.parametrize("helpdesk_settings", [{"plugins": {"chat": {"allow_private": ["10.0.0.0/8"]}}}])
def test_an_admin_may_allow_a_private_chat_server(login, personas):
    response = login(personas.owner).post("/profile", profile_form(**{
        "channel-chat": "on", "channel-chat-url": "http://10.1.2.3/hooks/abc"}))
    assert response.status_code == 303


def test_a_deactivated_assignee_gets_no_sla_notice(ctx, helpdesk_app, personas, incident_factory,
                                                   frozen_clock, sla_check, outbox):
    incident = incident_factory(impact="high", urgency="high")  # P1: around the clock
    with helpdesk_app.app_context():
        incidents.assign(ctx, incident.id, personas.owner, personas.database_team, personas.assignee)
    personas.assignee.active = False
    personas.assignee.save()
    before = len(outbox.rows(agent=personas.assignee.id))
    frozen_clock.advance(hours=3)
    assert sla_check() >= 1
    assert len(outbox.rows(agent=personas.assignee.id)) == before, "no new row for her"
    assert outbox.rows(agent=personas.owner.id), "the owner is still told"


def test_a_message_queued_for_an_agent_deactivated_since_is_cancelled_not_sent(
        ctx, helpdesk_app, personas, incident_factory):
    incident = incident_factory()
    with helpdesk_app.app_context():
        # The worker is down: the row waits, and meanwhile she leaves.
        ctx_tasks, ctx.tasks = ctx.tasks, None
        try:
            incidents.assign(ctx, incident.id, personas.owner, personas.database_team, personas.assignee)
        finally:
            ctx.tasks = ctx_tasks
        personas.assignee.active = False
        personas.assignee.save()
        (row,) = [r for r in Delivery.select() if r.agent_id == personas.assignee.id]
        assert outbox.deliver(ctx, row.id) == "cancelled"
    assert "deactivated" in Delivery.get_by_id(row.id).last_error
    assert not Notice.select().where(Notice.agent == personas.assignee.id).exists()


def test_an_sla_warning_is_not_sent_after_its_due_time(ctx, helpdesk_app, personas, incident_factory,
                                                        frozen_clock, sla_check):
    incident_factory(impact="high", urgency="high")  # P1: respond within 15 minutes
    ctx_tasks, ctx.tasks = ctx.tasks, None  # the worker is down when the warning is queued
    try:
        frozen_clock.advance(minutes=10)  # past the 50 % warning point of the response target
        assert sla_check() >= 1
    finally:
        ctx.tasks = ctx_tasks
    warnings = [r for r in Delivery.select() if json.loads(r.data).get("kind") == "sla_warning"]
    assert warnings and all(r.expires_at is not None for r in warnings)
    frozen_clock.set(max(r.expires_at for r in warnings) + dt.timedelta(minutes=1))  # back after the breach
    with helpdesk_app.app_context():
        states = {outbox.deliver(ctx, r.id) for r in warnings}
    assert states == {"expired"}
    assert all("moment passed" in Delivery.get_by_id(r.id).last_error for r in warnings)


def test_the_former_agent_columns_migrate_into_channel_settings(tmp_path):
    """A database at 0007 with agents using the old columns, upgraded: nothing is lost."""
    url = os.environ.get(PG_URL_VARIABLE)
    if url:
        reset_postgres(url)
    db = open_database(url or f"sqlite:///{tmp_path / 'old.db'}")
    try:
        with db.connection_context():
            runner = schema.runner(db)
            runner.up("0007_notification_rules")
            true, false = ("TRUE", "FALSE") if url else ("1", "0")
            db.execute_sql(
                "INSERT INTO agent (username, display_name, email, password_hash, role, active,"
                " created_at, notify_email, chat_url) VALUES"
                f" ('a', 'A', 'a@x.org', 'h', 'agent', {true}, '2026-01-01', {false}, NULL),"
                f" ('b', 'B', 'b@x.org', 'h', 'agent', {true}, '2026-01-01', {true}, 'https://chat.example/b'),"
                f" ('c', 'C', 'c@x.org', 'h', 'agent', {true}, '2026-01-01', {true}, NULL)")
            runner.up()
            found = db.execute_sql('SELECT a.username, c.channel, c.enabled, c."values"'
                                   " FROM agent_channel c JOIN agent a ON a.id = c.agent_id").fetchall()
            rows = {(username, channel): (bool(enabled), json.loads(values))
                    for username, channel, enabled, values in found}
            columns = {c.name for c in db.get_columns("agent")}
    finally:
        if hasattr(db, "close_all"):
            db.close_all()
    assert rows == {("a", "email"): (False, {}), ("b", "chat"): (True, {"url": "https://chat.example/b"})}
    assert not {"notify_email", "chat_url"} & columns
