"""The bundled SLA plugins' settings: calendars per team and service, public holidays, errors."""

import datetime as dt

import pytest

from helpdesk import incidents
from helpdesk.config import ConfigError
from helpdesk.models import Service, SlaClock
from helpdesk.testing import make_app
from helpdesk_plugins import business_hours, sla_priority


@pytest.fixture
def helpdesk_plugins():
    return [business_hours, sla_priority]


@pytest.fixture
def helpdesk_settings():
    return {"plugins": {
        "business_hours": {"country": "GB", "subdivision": "ENG",
                           "calendars": {"night_desk": {"hours": {d: "22:00-06:00" for d in
                                                                  ("mon", "tue", "wed", "thu", "fri")}}}},
        "sla_priority": {"calendar_by_team": {"Network": "night_desk"},
                         "calendar_by_service": {"Payroll": "business"},
                         "resolution": {"p3": "2h"}},
    }}


def calendar_of(incident):
    return SlaClock.get((SlaClock.incident == incident.id) & (SlaClock.target == "resolution")).calendar


def test_public_holidays_of_a_country_are_in_the_calendar(helpdesk_app):
    calendar = helpdesk_app.extensions["helpdesk"].registry.business_calendars["business"]
    year = dt.date.today().year
    assert dt.date(year, 12, 25) in calendar.holidays  # Christmas Day, England
    assert dt.date(year, 7, 4) not in calendar.holidays


def test_the_assigned_team_or_the_service_chooses_the_calendar(ctx, helpdesk_app, personas, incident_factory,
                                                               frozen_clock):
    frozen_clock.set(dt.datetime(2026, 3, 2, 21, 0))  # Monday 21:00 UTC (= London)
    incident = incident_factory()  # P3
    assert calendar_of(incident) == "business"
    with helpdesk_app.app_context():
        incidents.assign(ctx, incident.id, personas.owner, personas.network, None)
    clock = SlaClock.get((SlaClock.incident == incident.id) & (SlaClock.target == "resolution"))
    assert clock.calendar == "night_desk" and clock.cycle == 2
    assert clock.due_at == dt.datetime(2026, 3, 3, 0, 0)  # 22:00 + 2 h of night desk
    payroll = incident_factory(service=Service.create(name="Payroll"), assigned_team=personas.network)
    assert calendar_of(payroll) == "business"  # the service rule wins


@pytest.mark.parametrize(("plugin", "values", "variable"), [
    # a plain key by its variable, a nested one by its place in the instance file
    ("business_hours", {"hours": {"mon": "9-5"}}, r"\[plugins.business_hours\] hours.mon:"),
    ("business_hours", {"time_zone": "Mars/Base"}, "HELPDESK_PLUGINS__BUSINESS_HOURS__TIME_ZONE:"),
    ("business_hours", {"country": "XX"}, "__COUNTRY"),
    ("sla_priority", {"response": {"p1": "soon"}}, "HELPDESK_PLUGINS__SLA_PRIORITY__RESPONSE"),
    ("sla_priority", {"warnings": [1.5]}, "HELPDESK_PLUGINS__SLA_PRIORITY__WARNINGS"),
    ("sla_priority", {"calendar_by_team": {"Database": "night_dsk"}},
     "HELPDESK_PLUGINS__SLA_PRIORITY__CALENDAR_BY_TEAM: no business calendar named 'night_dsk'"),
])
def test_bad_plugin_settings_stop_start_up_naming_the_variable(tmp_path, plugin, values, variable):
    with pytest.raises(ConfigError, match=variable):
        make_app(tmp_path, [business_hours, sla_priority], plugins={plugin: values})
