"""The admin SLA page: what is registered, and which policy applies to an incident."""

import pytest

from helpdesk_plugins import business_hours, sla_priority


@pytest.fixture
def helpdesk_plugins():
    return [business_hours, sla_priority]


@pytest.fixture
def helpdesk_settings():
    return {"plugins": {"business_hours": {"holidays": ["2026-12-25"], "time_zone": "Europe/Paris"}}}


def test_admin_sees_policies_calendars_and_the_policy_of_an_incident(login, personas, incident_factory):
    incident = incident_factory(impact="high", urgency="medium")  # P2
    admin = login(personas.admin)
    page = admin.get(f"/admin/sla?incident={incident.reference}").get_data(as_text=True)
    assert "Targets by priority" in page and "50%, 75%, 90%" in page
    assert "Europe/Paris" in page and "Mon 09:00–17:00" in page and "2026-12-25" in page
    assert "response 30 business minutes, resolution 8 business hours" in page
    # A P3's 3bd is 24 business hours: "1 day" read as one calendar day, a third of the target.
    p3 = incident_factory(impact="medium", urgency="medium")
    p3_page = admin.get(f"/admin/sla?incident={p3.reference}").get_data(as_text=True)
    assert "resolution 24 business hours" in p3_page
    assert "counted in the <strong>business</strong> calendar" in page
    p1 = incident_factory(impact="high", urgency="high")
    assert "around the clock" in admin.get(f"/admin/sla?incident={p1.id}").get_data(as_text=True)
    assert "Give an incident reference" in admin.get("/admin/sla?incident=abc").get_data(as_text=True)


def test_leads_and_admins_see_it_agents_do_not(login, personas):
    assert login(personas.owner).get("/admin/sla").status_code == 403
    assert login(personas.lead).get("/admin/sla").status_code == 200
