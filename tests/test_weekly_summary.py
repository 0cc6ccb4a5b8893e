"""The weekly summary: each team lead gets last week's figures for their team on Monday, on every
channel they are reachable on (a real SMTP server here), once, whatever the worker does."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from helpdesk import incidents, summaries
from helpdesk.models import Delivery, Notice, NotificationPreference
from helpdesk.testing import SmtpServer

MONDAY = dt.datetime(2026, 11, 30, 8, 0)  # UTC; the desk's zone is UTC in these tests


@pytest.fixture
def helpdesk_bundled_plugins() -> list[str]:
    return ["email"]


@pytest.fixture
def settings_overrides(smtp_server: SmtpServer) -> dict[str, Any]:
    return {"plugins": {"email": smtp_server.settings}, "base_url": "https://help.example.com"}


@pytest.fixture
def last_week(app, ctx, personas, frozen_clock, log_incident):
    """Three incidents for the service desk last week (one resolved), one the week before."""
    frozen_clock.set(MONDAY - dt.timedelta(days=14))
    log_incident(title="Older")
    frozen_clock.set(MONDAY - dt.timedelta(days=6))  # Tuesday last week
    first = log_incident(title="VPN down")
    log_incident(title="Printer jam")
    log_incident(title="Payroll slow")
    frozen_clock.advance(hours=2)
    with app.app_context():
        incidents.change_status(ctx, first.id, personas.owner, "resolved", note="Restarted the VPN")
    frozen_clock.set(MONDAY)


def mail_body(smtp_server: SmtpServer, address: str) -> str:
    [received] = smtp_server.to(address)
    return received.message.get_body(("plain",)).get_content()


def test_each_lead_gets_their_teams_week_once(app, ctx, personas, last_week, smtp_server):
    with app.app_context():
        queued = summaries.send_weekly(ctx)
    assert queued == 4  # two leads (desk, database) × in-app and e-mail
    body = mail_body(smtp_server, personas.lead.email)
    assert "Service Desk, Monday 23 November to Sunday 29 November 2026" in body
    assert "Logged: 3. Resolved: 1." in body
    assert "Open now: 3, the oldest open for 14" in body  # the one from the week before too
    assert "https://help.example.com/reports?from=2026-11-23&to=2026-11-29" in body
    assert "Logged: 0. Resolved: 0." in mail_body(smtp_server, personas.db_lead.email)
    assert Notice.select().where(Notice.agent == personas.lead.id).count() == 1
    assert not smtp_server.to(personas.owner.email)  # agents who lead nothing get none

    with app.app_context():  # the next hourly look, or a second worker: nothing again
        assert summaries.send_weekly(ctx, MONDAY + dt.timedelta(hours=1)) == 0
    assert len(smtp_server.to(personas.lead.email)) == 1


def test_the_summary_gives_the_same_share_met_on_time_as_the_report_it_links_to(app, personas):
    # The report's On time column says 12.5 % and 87.5 %; the mail said "12 % met on time" and
    # "88 %" (rounded half to even), so a lead comparing the two saw different figures.
    week = summaries.Summary(personas.service_desk, dt.date(2026, 11, 23), dt.date(2026, 11, 29),
                             opened=8, resolved=8, response=(1, 0, 7), resolution=(7, 1, 0),
                             backlog=0, oldest=None)
    text = week.text("https://help.example.com/reports")
    assert "Response targets: 12.5 % met on time (1 met, 0 met late, 7 breached)." in text
    assert "Resolution targets: 87.5 % met on time (7 met, 1 met late, 0 breached)." in text
    with app.app_context():
        percent = app.jinja_env.filters["percent"]  # what the report page writes
        assert f"{percent(1 / 8)} met on time" in text and f"{percent(7 / 8)} met on time" in text


def test_a_lead_who_switched_mail_off_gets_it_in_app_only_and_deactivated_leads_get_nothing(
        app, ctx, personas, last_week, smtp_server):
    with app.app_context():
        NotificationPreference.create(agent=personas.lead, kind=summaries.KIND, channel="email",
                                      enabled=False)
        personas.db_lead.active = False
        personas.db_lead.save()
        assert summaries.send_weekly(ctx) == 1
    assert smtp_server.received == []
    assert [d.channel for d in Delivery.select()] == ["inapp"]


def test_the_next_week_sends_again(app, ctx, personas, last_week, smtp_server):
    with app.app_context():
        summaries.send_weekly(ctx)
        assert summaries.send_weekly(ctx, MONDAY + dt.timedelta(days=7)) == 4
    assert len(smtp_server.to(personas.lead.email)) == 2
