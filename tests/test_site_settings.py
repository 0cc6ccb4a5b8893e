"""Configuration in the browser: SLA calendars and targets, mail and channel settings, teams
and contacts — who may, what is checked, what is audited, what wins, and that every process
sees a change without a restart."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from helpdesk import ConfigError, hookimpl, site_settings
from helpdesk.models import ConfigChange, Contact, Membership, SlaClock, StoredSetting, Team
from helpdesk.testing import AgentClient, make_app
from helpdesk_plugins import business_hours, email_channel, sla_priority, webhook_channel

SECRET = "hunter2-very-secret-smtp-pass"


class RefuseForbiddenSender:
    """A plugin whose start-up check refuses a sender address: the browser must refuse it too."""

    @hookimpl
    def helpdesk_check_settings(self, ctx: Any) -> None:
        sender = str(ctx.plugin_settings("email").get("from_address", ""))
        if "forbidden" in sender:
            raise ConfigError("HELPDESK_PLUGINS__EMAIL__FROM_ADDRESS: this sender is not allowed")
        if "crash" in sender:  # a plugin bug, not an answer about the value
            raise KeyError("sender_domain")


@pytest.fixture
def helpdesk_plugins():
    return [business_hours, sla_priority, email_channel, webhook_channel, RefuseForbiddenSender()]


@pytest.fixture
def helpdesk_settings(tmp_path, monkeypatch):
    """The instance file sets the webhook URLs; the environment sets the e-mail port."""
    (tmp_path / "helpdesk.toml").write_text('[plugins.webhook]\nurls = ["https://hooks.example.com/in"]\n')
    monkeypatch.setenv("HELPDESK_PLUGINS__EMAIL__PORT", "2525")
    return {}


def stored() -> dict[str, Any]:
    return {row.key: json.loads(row.value) for row in StoredSetting.select()}


HOURS = {f"works-{d}": "on" for d in ("mon", "tue", "wed", "thu", "fri")} | {
    **{f"open-{d}": "10:00" for d in site_settings.DAYS},
    **{f"close-{d}": "11:00" for d in site_settings.DAYS},
}


NEW_ROUTES = [
    ("get", "/admin/changes"),
    ("get", "/admin/teams/1"),
    ("post", "/admin/teams/1"),
    ("get", "/admin/contacts/1"),
    ("post", "/admin/contacts/1"),
    # Where messages go is an admin's: a lead pointing SMTP at their own server would read
    # every mail the desk sends, customers' sign-in links included.
    ("get", "/admin/channels"),
    ("post", "/admin/channels/email"),
    ("post", "/admin/channels/email/test"),
]
SLA_ROUTES = [("get", "/admin/sla"), ("post", "/admin/sla/calendar"), ("post", "/admin/sla/targets")]


def test_agents_may_not_use_any_new_page_and_leads_only_view_sla(login, personas, contact_factory):
    contact_factory(name="Ann", email="ann@example.com")
    agent, lead, admin = login(personas.owner), login(personas.lead), login(personas.admin)
    for method, url in NEW_ROUTES + SLA_ROUTES:
        assert getattr(agent, method)(url).status_code == 403, url
    for method, url in NEW_ROUTES:
        assert getattr(lead, method)(url).status_code == 403, url
    assert lead.get("/admin/sla").status_code == 200  # leads view the settings; changes are admins'
    for method, url in SLA_ROUTES:
        assert getattr(admin, method)(url).status_code in {200, 303}, url
    lead_page = lead.get("/", follow_redirects=True).get_data(as_text=True)
    assert "/admin/sla" in lead_page and "/admin/channels" not in lead_page  # the header links


def test_a_post_without_the_csrf_token_is_refused_and_saves_nothing(login, personas):
    lead = login(personas.lead)
    response = lead.http.post(
        "/admin/sla/targets",
        data={"response-p1": "5m", "response-p2": "30m", "response-p3": "4h", "response-p4": "1bd"},
    )
    assert response.status_code == 400
    assert stored() == {} and ConfigChange.select().count() == 0


def test_an_admin_changes_targets_and_new_incidents_get_them_running_clocks_keep_theirs(
    login, personas, incident_factory, ctx
):
    before = incident_factory(impact="medium", urgency="medium")  # P3: 4 business hours to respond
    admin = login(personas.admin)
    form = {f"response-p{p}": v for p, v in zip("1234", ["15m", "30m", "1h", "1bd"], strict=True)}
    response = admin.post("/admin/sla/targets", form)
    assert response.status_code == 303
    assert stored()["sla_priority.response"]["p3"] == "1h"
    after = incident_factory(impact="medium", urgency="medium")
    clock = SlaClock.get((SlaClock.incident == after.id) & (SlaClock.target == "response"))
    old_clock = SlaClock.get((SlaClock.incident == before.id) & (SlaClock.target == "response"))
    assert clock.target_seconds == 3600 and old_clock.target_seconds == 4 * 3600
    change = ConfigChange.get(ConfigChange.key == "sla_priority.response")
    assert change.actor_id == personas.admin.id and '"p3": "1h"' in change.new_value
    page = login(personas.lead).get("/admin/sla").get_data(as_text=True)  # a lead reads it
    assert "sla_priority.response" in page and "<td>1h</td>" in page  # the audit, the new target


@pytest.mark.parametrize("typed", ["3000000d", "99999999999999999999bd", "１h", "1099bd"])
def test_a_target_too_long_to_reach_a_due_date_is_a_field_error(login, personas, incident_factory, typed):
    # Saved, it made every new incident of that priority fail (no due date past year 9999).
    admin = login(personas.admin)
    response = admin.post("/admin/sla/targets", {f"resolution-p{p}": v for p, v in
                                                zip("1234", ["4h", "8h", typed, "10bd"], strict=True)})
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and 'role="alert"' in page and typed in page
    assert stored() == {}
    assert incident_factory(impact="medium", urgency="medium").priority == 3


def test_invalid_values_are_field_errors_and_nothing_is_saved(login, personas):
    admin = login(personas.admin)
    response = admin.post(
        "/admin/sla/targets",
        {"response-p1": "soon", "response-p2": "30m", "response-p3": "4h", "response-p4": "1bd"},
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and 'id="err-response-p1"' in page and "15m, 8h" in page
    assert 'value="soon"' in page  # what was typed is shown back
    response = admin.post("/admin/sla/calendar", {"time_zone": "Mars/Olympus", **HOURS})
    assert response.status_code == 422 and "IANA time zone" in response.get_data(as_text=True)
    response = admin.post("/admin/sla/calendar", {"time_zone": "UTC", **HOURS, "open-mon": "25:00"})
    assert response.status_code == 422 and 'id="err-hours-mon"' in response.get_data(as_text=True)
    response = admin.post(
        "/admin/channels/email", {"email.host": "smtp.example.com", "email.security": "ssl"}
    )
    assert response.status_code == 422 and "Choose one of none, starttls, tls" in response.get_data(
        as_text=True
    )
    # A value only a plugin's start-up check refuses (helpdesk_check_settings) is refused too.
    response = admin.post(
        "/admin/channels/email",
        {"email.host": "smtp.example.com", "email.from_address": "Forbidden <forbidden@example.com>"},
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and "this sender is not allowed" in page
    assert 'id="err-email-from_address"' in page
    assert stored() == {} and ConfigChange.select().count() == 0
    # A check that fails with a bug is a refusal naming the plugin, not a 500.
    response = admin.post(
        "/admin/channels/email",
        {"email.host": "smtp.example.com", "email.from_address": "crash@example.com"},
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and "failed in helpdesk_check_settings" in page
    assert stored() == {} and ConfigChange.select().count() == 0


def test_secrets_are_write_only_and_redacted_in_the_audit(login, personas, ctx):
    admin = login(personas.admin)
    response = admin.post(
        "/admin/channels/email",
        {"email.host": "smtp.example.com", "email.password": SECRET, "email.username": "helpdesk"},
    )
    assert response.status_code == 303
    assert ctx.plugin_settings("email").secret("password") == SECRET
    for url in ("/admin/channels", "/admin/changes"):
        page = admin.get(url).get_data(as_text=True)
        assert SECRET not in page, url
        assert "email.password" in page and "••••••" in page, url  # the change is listed, redacted
    assert "Password (set — leave empty to keep)" in admin.get("/admin/channels").get_data(as_text=True)
    assert not any(SECRET in (c.old_value + c.new_value) for c in ConfigChange.select())
    # Empty keeps the secret while the server stays; "remove" forgets it.
    kept = admin.post("/admin/channels/email", {"email.host": "smtp.example.com", "email.password": "",
                                                "email.from_address": "desk@example.com"})
    assert kept.status_code == 303, kept.get_data(as_text=True)
    assert ctx.plugin_settings("email").secret("password") == SECRET
    assert ctx.plugin_settings("email")["from_address"] == "desk@example.com"
    # Moving the server (host or security) with the secret kept would send it there: refused
    # until it is typed again, and nothing is saved.
    changes = ConfigChange.select().count()
    for moved in ({"email.host": "attacker.example.com"}, {"email.security": "starttls"}):
        response = admin.post("/admin/channels/email", {
            "email.host": "smtp.example.com", **moved, "email.password": ""})
        page = response.get_data(as_text=True)
        assert response.status_code == 422 and 'id="err-email-password"' in page, moved
        assert "Type the password again" in page
    assert ConfigChange.select().count() == changes and stored()["email.host"] == "smtp.example.com"
    admin.post("/admin/channels/email", {"email.host": "smtp2.example.com", "email.password": "new-pass"})
    assert ctx.plugin_settings("email").secret("password") == "new-pass"
    admin.post("/admin/channels/email", {"email.host": "smtp3.example.com", "email.password.forget": "on"})
    assert ctx.plugin_settings("email").secret("password") is None
    assert not any(SECRET in (c.old_value + c.new_value) for c in ConfigChange.select())


def test_file_and_environment_win_are_shown_locked_and_a_crafted_post_changes_nothing(
    login, personas, ctx, tmp_path
):
    admin = login(personas.admin)
    page = admin.get("/admin/channels").get_data(as_text=True)
    assert "HELPDESK_PLUGINS__EMAIL__PORT" in page and str(tmp_path / "helpdesk.toml") in page
    port = re.search(r'<input id="f-email-port"[^>]*>', page).group(0)
    assert 'value="2525"' in port and " disabled" in port
    response = admin.post("/admin/channels/email", {"email.host": "smtp.example.com", "email.port": "26"})
    assert response.status_code == 422 and "change it there" in response.get_data(as_text=True)
    response = admin.post("/admin/channels/webhook", {"webhook.urls": "https://evil.example.com/x"})
    assert response.status_code == 422
    assert stored() == {}
    # Precedence key by key: environment > stored > default.
    assert admin.post("/admin/channels/email", {"email.host": "smtp.example.com"}).status_code == 303
    assert (
        ctx.plugin_settings("email")["port"] == "2525"
        and ctx.plugin_settings("email")["host"] == "smtp.example.com"
    )
    assert ctx.plugin_settings("webhook").list("urls") == ["https://hooks.example.com/in"]
    assert "security" not in ctx.plugin_settings("email")  # nobody set it: the plugin's default


def test_a_second_process_sees_a_change_without_restart(app, login, personas, tmp_path, ctx):
    """A second app on the same database (another web worker or a Huey worker) picks up a
    change at its next request or task, with no restart."""
    second = make_app(
        tmp_path / "second", [business_hours, sla_priority], database_url=ctx.settings.database_url
    )
    other = second.extensions["helpdesk"]
    assert other.registry.business_calendars["business"].hours[0][0].hour == 9
    admin = login(personas.admin)
    assert admin.post("/admin/sla/calendar", {"time_zone": "Europe/Paris", **HOURS}).status_code == 303
    # Its next request reads the revision first and shows the new hours.
    page = AgentClient(second, personas.lead).get("/admin/sla").get_data(as_text=True)
    assert "Europe/Paris" in page and "Mon 10:00–11:00" in page
    calendar = other.registry.business_calendars["business"]
    assert calendar.time_zone == "Europe/Paris" and calendar.hours[0][0].hour == 10
    assert 5 not in calendar.hours  # Saturday is off now
    with second.test_request_context():
        assert site_settings.refresh(other) is False  # unchanged: one query, nothing reloaded
    # A task in the second process (a Huey worker) checks the revision before it runs.
    form = {f"response-p{p}": v for p, v in zip("1234", ["15m", "30m", "2h", "1bd"], strict=True)}
    assert admin.post("/admin/sla/targets", form).status_code == 303
    assert other.stored.get("sla_priority") is None
    other.tasks.sla_check()
    assert other.stored["sla_priority"]["response"]["p3"] == "2h"


def test_holidays_are_added_and_removed(login, personas, ctx):
    admin = login(personas.admin)
    admin.post("/admin/sla/calendar", {"holidays-present": "1", "add_holiday": "2026-12-25"})
    admin.post("/admin/sla/calendar", {"holidays-present": "1", "add_holiday": "2026-12-26"})
    assert {d.isoformat() for d in ctx.registry.business_calendars["business"].holidays} == {
        "2026-12-25",
        "2026-12-26",
    }
    admin.post("/admin/sla/calendar", {"holidays-present": "1", "remove_holiday": "2026-12-25"})
    assert {d.isoformat() for d in ctx.registry.business_calendars["business"].holidays} == {"2026-12-26"}
    response = admin.post("/admin/sla/calendar", {"holidays-present": "1", "add_holiday": "someday"})
    assert response.status_code == 422


def test_an_admin_renames_a_team_changes_members_and_deactivates_it(login, personas):
    admin = login(personas.admin)
    team = personas.network
    response = admin.post(
        f"/admin/teams/{team.id}",
        {
            "name": "Networks",
            "description": "LAN and WAN",
            "members": [str(personas.other.id), str(personas.lead.id)],
        },
    )
    assert response.status_code == 303
    saved = Team.get_by_id(team.id)
    assert saved.name == "Networks" and not saved.active
    assert {m.agent_id for m in Membership.select().where(Membership.team == team)} == {
        personas.other.id,
        personas.lead.id,
    }
    keys = {c.key for c in ConfigChange.select()}
    assert {f"team:{team.id}.name", f"team:{team.id}.active", f"team:{team.id}.members"} <= keys
    response = admin.post(f"/admin/teams/{team.id}", {"name": "Database", "active": "on"})
    assert response.status_code == 422 and 'id="err-name"' in response.get_data(as_text=True)
    desk = personas.service_desk
    response = admin.post(f"/admin/teams/{desk.id}", {"name": "Front desk"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and "service_desk_team" in page and "cannot be deactivated" in page
    assert Team.get_by_id(desk.id).name == desk.name


def test_an_admin_corrects_a_contact(login, personas, contact_factory):
    ann = contact_factory(name="Ann", email="ann@example.com")
    contact_factory(name="Bob", email="bob@example.com")
    admin = login(personas.admin)
    response = admin.post(f"/admin/contacts/{ann.id}", {"name": "Ann Lee", "email": "bob@example.com"})
    assert response.status_code == 422 and "Another contact" in response.get_data(as_text=True)
    assert Contact.get_by_id(ann.id).name == "Ann"
    response = admin.post(
        f"/admin/contacts/{ann.id}",
        {"name": "Ann Lee", "email": "Ann.Lee@Example.com", "phone": "+44 20", "organisation": "Acme"},
    )
    assert response.status_code == 303
    saved = Contact.get_by_id(ann.id)
    assert (saved.name, saved.email, saved.phone, saved.organisation.name) == (
        "Ann Lee",
        "ann.lee@example.com",
        "+44 20",
        "Acme",
    )
    change = ConfigChange.get(ConfigChange.key == f"contact:{ann.id}.email")
    assert (change.old_value, change.new_value, change.actor_id) == (
        "ann@example.com",
        "ann.lee@example.com",
        personas.admin.id,
    )


def test_changing_the_hours_with_incidents_open_follows_the_documented_rule(
    ctx, personas, incident_factory, frozen_clock, sla_check
):
    """H7: a running clock keeps its target and its recorded facts; its due time follows the
    new hours from the SLA check's next look at it; every event fires once."""
    import datetime as dt

    from helpdesk.models import SlaEvent, TimelineEntry

    incident = incident_factory(impact="medium", urgency="medium")  # P3 at Mon 09:00: 4 h → 13:00
    clock = SlaClock.get((SlaClock.incident == incident.id) & (SlaClock.target == "response"))
    assert clock.due_at == dt.datetime(2026, 3, 2, 13, 0)
    site_settings.save(
        ctx,
        {"business_hours.hours": {d: "09:00-10:00" for d in ("mon", "tue", "wed", "thu", "fri")}},
        personas.admin,
    )
    clock = SlaClock.get_by_id(clock.id)
    assert (
        clock.due_at == dt.datetime(2026, 3, 2, 13, 0) and clock.target_seconds == 4 * 3600
    )  # not retroactive
    # The check reaches the stored 50 % point (11:00): only one working hour has passed in the
    # new hours, so nothing fires and the clock is re-timed: due Thursday 10:00.
    assert sla_check(dt.datetime(2026, 3, 2, 11, 0)) == 0
    clock = SlaClock.get_by_id(clock.id)
    assert clock.due_at == dt.datetime(2026, 3, 5, 10, 0) and clock.next_event_at == dt.datetime(
        2026, 3, 3, 10, 0
    )
    assert sla_check(dt.datetime(2026, 3, 3, 10, 0)) == 1  # 50 %
    assert sla_check(dt.datetime(2026, 3, 3, 10, 0)) == 0  # never twice
    assert sla_check(dt.datetime(2026, 3, 5, 10, 0)) == 1  # the breach (75 % and 90 % are stale by then)
    events = list(
        SlaEvent.select().where((SlaEvent.incident == incident.id) & (SlaEvent.target == "response"))
    )
    assert sorted((e.kind, e.point) for e in events) == [("breach", 1000), ("warning", 500)]
    assert (
        TimelineEntry.select()
        .where((TimelineEntry.incident == incident.id) & (TimelineEntry.kind == "sla"))
        .count()
        == 2
    )


def test_widening_the_hours_brings_open_clocks_forward_at_the_next_check_and_fires_each_event_once(
    ctx, personas, incident_factory, frozen_clock, sla_check, login
):
    """H7, the other way: hours that grow make a running clock due sooner than its stored next
    event, so waiting for that event would breach late. The next SLA check re-times every open
    clock of the changed calendar, says so on the timeline, and leaves met clocks alone."""
    import datetime as dt

    from helpdesk.db import write_transaction
    from helpdesk.models import Incident, SlaEvent, TimelineEntry

    weekdays = ("mon", "tue", "wed", "thu", "fri")
    site_settings.save(ctx, {"business_hours.hours": {d: "09:00-10:00" for d in weekdays}}, personas.admin)
    sla_check()  # the worker has seen the one-hour days
    incident = incident_factory(impact="medium", urgency="medium")  # P3: 4 working hours to respond
    answered = incident_factory(impact="medium", urgency="medium")

    def response(incident_id: int) -> SlaClock:
        return SlaClock.get((SlaClock.incident == incident_id) & (SlaClock.target == "response"))

    assert response(incident.id).due_at == dt.datetime(2026, 3, 5, 10, 0)  # Thursday 10:00
    frozen_clock.advance(minutes=20)
    with write_transaction():
        SlaClock.update(met_at=frozen_clock.now).where(SlaClock.id == response(answered.id).id).execute()
    resolution_before = SlaClock.get((SlaClock.incident == incident.id) & (SlaClock.target == "resolution"))

    site_settings.save(ctx, {"business_hours.hours": {d: "09:00-17:00" for d in weekdays}}, personas.admin)
    assert sla_check(dt.datetime(2026, 3, 2, 9, 30)) == 0
    clock = response(incident.id)
    assert clock.due_at == dt.datetime(2026, 3, 2, 13, 0)  # Monday 13:00, not Thursday
    assert clock.next_event_at == dt.datetime(2026, 3, 2, 11, 0)  # 50 % used
    assert Incident.get_by_id(incident.id).sla_due_at == dt.datetime(2026, 3, 2, 13, 0), "queues see it"
    resolution = SlaClock.get_by_id(resolution_before.id)
    assert resolution.due_at < resolution_before.due_at
    assert response(answered.id).due_at == dt.datetime(2026, 3, 5, 10, 0), "a met clock keeps its times"
    retimed = list(TimelineEntry.select().where((TimelineEntry.incident == incident.id)
                                                & (TimelineEntry.new_value == "retimed")))
    assert sorted(entry.field for entry in retimed) == ["resolution", "response"]
    assert "business" in retimed[0].body

    assert sla_check(dt.datetime(2026, 3, 2, 9, 31)) == 0
    assert sla_check(dt.datetime(2026, 3, 2, 11, 0)) == 1  # 50 %, today rather than Tuesday
    assert sla_check(dt.datetime(2026, 3, 2, 11, 0)) == 0
    assert sla_check(dt.datetime(2026, 3, 2, 13, 0)) >= 1  # the breach, today
    events = SlaEvent.select().where((SlaEvent.incident == incident.id) & (SlaEvent.target == "response"))
    assert sorted((e.kind, e.point, e.at) for e in events) == [
        ("breach", 1000, dt.datetime(2026, 3, 2, 13, 0)), ("warning", 500, dt.datetime(2026, 3, 2, 11, 0))]
    assert TimelineEntry.select().where((TimelineEntry.incident == incident.id)
                                        & (TimelineEntry.new_value == "retimed")).count() == 2
    page = login(personas.owner).get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert "SLA response due time recomputed" in page and "SLA response warning" in page


def test_a_pause_is_measured_again_in_the_new_hours_and_a_breached_clock_keeps_its_times(
    app, ctx, personas, incident_factory, frozen_clock, sla_check
):
    """H7 with history: a clock paused under one-hour days has its pause measured again in the
    wider hours (as if they had always applied), so it is not breached the moment the hours
    grow; a clock already breached keeps the due time it was judged by."""
    import datetime as dt

    from helpdesk import incidents, sla
    from helpdesk.db import write_transaction
    from helpdesk.models import Incident, SlaEvent

    weekdays = ("mon", "tue", "wed", "thu", "fri")
    site_settings.save(ctx, {"business_hours.hours": {d: "09:00-10:00" for d in weekdays}}, personas.admin)
    sla_check()
    paused = incident_factory(impact="medium", urgency="medium")  # P3: 4 working hours to respond
    late = incident_factory(impact="medium", urgency="medium")
    frozen_clock.set(dt.datetime(2026, 3, 2, 9, 10))
    with app.app_context():
        incidents.change_status(ctx, paused.id, personas.owner, "pending", pending_reason="customer")
    frozen_clock.set(dt.datetime(2026, 3, 2, 16, 0))
    with app.app_context():
        incidents.change_status(ctx, paused.id, personas.owner, "in_progress")
    clock = SlaClock.get((SlaClock.incident == paused.id) & (SlaClock.target == "response"))
    assert clock.paused_seconds == 50 * 60  # 09:10-10:00 was the working part of the pause
    late_clock = SlaClock.get((SlaClock.incident == late.id) & (SlaClock.target == "response"))
    with write_transaction():  # judged breached under the old hours
        SlaClock.update(breached_at=dt.datetime(2026, 3, 2, 15, 0)).where(
            SlaClock.id == late_clock.id).execute()

    frozen_clock.set(dt.datetime(2026, 3, 2, 16, 1))
    site_settings.save(ctx, {"business_hours.hours": {d: "09:00-17:00" for d in weekdays}}, personas.admin)
    with app.app_context():
        moved = sla.follow_calendar_changes(ctx, frozen_clock.now)
        assert sla.follow_calendar_changes(ctx, frozen_clock.now) == 0, "seen: not re-timed twice"
    assert moved >= 2  # the paused incident's response and resolution at least
    clock = SlaClock.get_by_id(clock.id)
    assert clock.paused_seconds == (6 * 60 + 50) * 60  # 09:10-16:00 in the new hours
    # 10 min before the pause, 16:00-17:00, then 2 h 50 on Tuesday
    assert clock.due_at == dt.datetime(2026, 3, 3, 11, 50)
    assert sla_check(frozen_clock.now) == 0, "not breached by the change"
    assert not SlaEvent.select().where(SlaEvent.incident == paused.id).exists()
    with app.app_context():
        assert sla.audit(ctx, Incident.get_by_id(paused.id)) == []
    assert SlaClock.get_by_id(late_clock.id).due_at == late_clock.due_at, "a breached clock keeps its times"


def test_an_inactive_team_is_given_no_new_work_but_keeps_what_it_has(login, personas, ctx, incident_factory):
    from helpdesk import incidents
    from helpdesk.errors import DomainError

    kept = incident_factory(assigned_team=personas.network)
    fresh = incident_factory()
    login(personas.admin).post(
        f"/admin/teams/{personas.network.id}", {"name": "Network", "members": [str(personas.other.id)]}
    )  # "active" unticked
    network = Team.get_by_id(personas.network.id)
    assert not network.active
    with pytest.raises(DomainError, match="inactive"):
        incidents.assign(ctx, fresh.id, personas.owner, network, None)
    # What it already has stays with it (an agent of the team may still be chosen).
    assert incidents.assign(ctx, kept.id, personas.owner, network, personas.other).assigned_agent_id == (
        personas.other.id
    )


@pytest.mark.parametrize("typed", ["\u00b2", "\u0665", "0" * 30 + "25", "65536", "0"])
def test_a_port_python_would_misread_is_refused_with_the_fields_own_words(typed):
    """"²" and "٥" pass isdigit() but not int() (whose own message would be shown), and a port
    padded with 30 zeros is no port anyone meant."""
    port = next(field for field in site_settings.CHANNEL_FIELDS["email"] if field.key == "port")
    with pytest.raises(ValueError, match="^a port from 1 to 65535$"):
        port.parse(typed)
    assert port.parse("587") == 587


def test_the_plugins_page_shows_the_e_mail_channel_once_it_is_switched_on(login, personas):
    # Saving an SMTP host switched the channel on everywhere, but Admin → Plugins (and
    # `helpdesk plugins`) kept showing what start-up saw: the e-mail plugin registering
    # nothing ("—"), so an admin checking their mail setup was told it was off.
    admin = login(personas.admin)

    def email_row() -> str:
        page = admin.get("/admin/plugins").get_data(as_text=True)
        return re.search(r"<td>[\w.]*email[\w.]*</td>.*?</tr>", page, re.S).group(0)

    assert "channel types" not in email_row()
    assert admin.post("/admin/channels/email", {"email.host": "smtp.example.com"}).status_code == 303
    assert "channel types: email" in email_row()
    assert admin.post("/admin/channels/email", {"email.host": ""}).status_code == 303
    assert "channel types" not in email_row()


def test_a_lead_views_the_sla_settings_but_only_an_admin_changes_them(login, personas, ctx):
    # Business hours, holidays and targets apply to every team: a lead changed them for all.
    from helpdesk.errors import PermissionDenied

    lead, admin = login(personas.lead), login(personas.admin)
    page = lead.get("/admin/sla").get_data(as_text=True)
    assert "Only an admin can change the business hours, holidays and targets" in page
    assert "<td>15m</td>" in page and "<td>10bd</td>" in page  # the targets, read-only
    assert "Save targets" not in page and "Save business hours" not in page and "Add holiday" not in page
    form = {f"response-p{p}": v for p, v in zip("1234", ["5m", "30m", "1h", "1bd"], strict=True)}
    attempts = [("/admin/sla/targets", form), ("/admin/sla/calendar", {"time_zone": "UTC", **HOURS}),
                ("/admin/sla/calendar", {"time_zone": "Mars/Olympus", **HOURS}),  # the rule comes first
                ("/admin/sla/calendar", {"holidays-present": "1", "add_holiday": "2026-12-25"})]
    for url, data in attempts:
        response = lead.post(url, data)
        assert response.status_code == 403, url
        assert "Only an admin can change organisation-wide settings" in response.get_data(as_text=True)
    assert stored() == {} and ConfigChange.select().count() == 0
    with pytest.raises(PermissionDenied, match="Only an admin"):
        site_settings.save(ctx, {"sla_priority.response": {"p1": "5m", "p2": "30m", "p3": "1h", "p4": "1bd"}},
                           personas.lead)
    assert stored() == {}
    admin_page = admin.get("/admin/sla").get_data(as_text=True)
    assert "Save targets" in admin_page and "Save business hours" in admin_page
    assert admin.post("/admin/sla/targets", form).status_code == 303
    assert stored()["sla_priority.response"]["p1"] == "5m"
