"""The pages around notifications: an agent's choices, the admin outbox, the bell."""

import socket

import pytest

from helpdesk import incidents
from helpdesk.models import Agent, Delivery, Notice, NotificationPreference
from helpdesk_plugins import email_channel


@pytest.fixture
def helpdesk_plugins():
    return [email_channel]


@pytest.fixture
def helpdesk_settings():
    """E-mail goes to a loopback port where nothing listens: every send fails, temporarily."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    return {"plugins": {"email": {"host": "127.0.0.1", "port": closed_port, "timeout": 2}}}


def test_agent_chooses_channels_per_kind_of_event(ctx, helpdesk_app, login, personas, incident_factory):
    client = login(personas.assignee)
    form = {f"pref-{kind}-{channel}": "on" for kind in ("team_new", "resolved")
            for channel in ("inapp", "email")}
    form.update({"pref-assigned-inapp": "on", "channel-inapp": "on", "channel-email": "on"})
    assert client.post("/profile", form).status_code == 303
    stored = {(p.kind, p.channel): p.enabled for p in NotificationPreference.select()
              .where(NotificationPreference.agent == personas.assignee.id)}
    assert stored[("assigned", "email")] is False and stored[("assigned", "inapp")] is True

    incident = incident_factory()
    with helpdesk_app.app_context():
        incidents.assign(ctx, incident.id, personas.owner, personas.database_team, personas.assignee)
    assert Notice.select().where(Notice.agent == personas.assignee.id).count() == 1
    assert not Delivery.select().where(Delivery.recipient == "priya@example.com").exists()
    page = client.get("/profile").get_data(as_text=True)
    assert 'name="pref-assigned-email" aria-label="Assigned to me: E-mail (SMTP)" >' in page


def test_the_bell_counts_unread_notices_and_the_page_marks_them_read(login, personas, incident_factory):
    Notice.create(agent=personas.owner.id, text="INC-1 something happened")
    client = login(personas.owner)
    assert "1 unread" in client.get("/notices/bell").get_data(as_text=True)
    assert "INC-1 something happened" in client.get("/notices/").get_data(as_text=True)
    assert client.post("/notices/read").status_code == 303
    assert "unread" not in client.get("/notices/bell").get_data(as_text=True)
    assert "INC-1 something" not in login(personas.colleague).get("/notices/").get_data(as_text=True)


def test_admin_outbox_lists_and_filters_deliveries(ctx, helpdesk_app, login, personas, incident_factory):
    incident = incident_factory()
    with helpdesk_app.app_context():
        incidents.assign(ctx, incident.id, personas.owner, personas.database_team, personas.assignee)
    # Nothing listens on the configured SMTP port: the e-mail waits for a retry.
    delivery = Delivery.get(Delivery.recipient == "priya@example.com")
    assert delivery.state == "pending" and delivery.attempts == 1
    admin = login(personas.admin)
    page = admin.get("/admin/deliveries?state=pending").get_data(as_text=True)
    assert "priya@example.com" in page and "SMTP" in page
    assert "priya@example.com" not in admin.get("/admin/deliveries?state=sent").get_data(as_text=True)
    assert admin.get("/admin/deliveries?state=bogus").status_code == 400
    assert login(personas.lead).get("/admin/deliveries").status_code == 403


def test_send_test_reports_the_failure(login, personas):
    response = login(personas.admin).post("/admin/channels/email/test", {"recipient": "x@example.com"},
                                          follow_redirects=True)
    assert "email: temporary failure" in response.get_data(as_text=True)


def test_admin_switches_off_a_rule_for_everyone(ctx, helpdesk_app, login, personas, incident_factory):
    admin = login(personas.admin)
    form = {f"rule-{a}-{k}": "on" for a, k in [("owner", "reassigned"), ("owner", "resolved"),
                                               ("team", "team_new")]}
    assert admin.post("/admin/notifications", form).status_code == 303  # "assigned" is now off
    page = admin.get("/admin/notifications").get_data(as_text=True)
    assert 'id="rule-assignee-assigned" name="rule-assignee-assigned" >' in page
    incident = incident_factory()
    with helpdesk_app.app_context():
        incidents.assign(ctx, incident.id, personas.owner, personas.database_team, personas.assignee)
    assert not Notice.select().where(Notice.agent == personas.assignee.id).exists()
    assert login(personas.lead).get("/admin/notifications").status_code == 403


def test_requester_mail_has_no_agent_link_and_a_deactivated_owner_falls_back_to_leads(ctx,
        helpdesk_app, personas, incident_factory, channel_recorder):
    from helpdesk.models import Contact

    requester = Contact.create(name="Ana", email="ana@example.com")
    incident = incident_factory(requester=requester)
    (ack,) = channel_recorder.to("email")
    assert ack.recipient == "ana@example.com" and ack.url is None and "/incidents/" not in ack.text
    Agent.update(active=False).where(Agent.id == personas.owner.id).execute()
    with helpdesk_app.app_context():
        incidents.assign(ctx, incident.id, personas.colleague, personas.database_team, None)
        incidents.assign(ctx, incident.id, personas.colleague, personas.network, None)  # a reassignment
    told = {m.recipient for m in channel_recorder.to("email") if "Reassigned" in m.subject}
    assert "john@example.com" not in told
    assert {"amira@example.com", "root@example.com"} <= told  # the service desk's lead and admin


def test_an_instance_template_overrides_a_notification_and_a_broken_one_blocks_nothing(ctx,
        helpdesk_app, personas, incident_factory, channel_recorder, caplog):
    import os

    folder = os.path.join(helpdesk_app.instance_path, "templates", "notifications")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "assigned.txt"), "w") as handle:
        handle.write("Yours now: {{ incident.title }}\nPlease look at it.\n")
    with open(os.path.join(folder, "team_new.txt"), "w") as handle:
        handle.write("{{ incident.title.__class__.__mro__ }}\n{% broken")
    first = incident_factory(title="{{ 7 * 7 }}")  # user text is data, not template source
    with helpdesk_app.app_context():
        incidents.assign(ctx, first.id, personas.owner, personas.database_team, personas.assignee)
        second = incident_factory(title="Team job")
        incidents.assign(ctx, second.id, personas.owner, personas.database_team, None)
    (mine,) = [m for m in channel_recorder.to("email") if m.recipient == "priya@example.com"
               and m.incident_reference == first.reference]
    assert mine.subject == "Yours now: {{ 7 * 7 }}" and mine.text == "Please look at it.\n"
    team = [m for m in channel_recorder.to("email") if m.incident_reference == second.reference]
    assert team and all(m.subject == f"[{second.reference}] Team job" for m in team)
    assert "notification template for 'team_new' failed" in caplog.text


def test_bad_email_settings_stop_start_up(tmp_path):
    from helpdesk.config import ConfigError
    from helpdesk.testing import make_app

    with pytest.raises(ConfigError, match="HELPDESK_PLUGINS__EMAIL__SECURITY"):
        make_app(tmp_path, [email_channel], plugins={"email": {"host": "mail", "security": "ssl"}})
