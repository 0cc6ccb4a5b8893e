"""The bundled routing plugin, tested with the plugin authors' kit like any plugin."""

import pytest

from helpdesk.config import ConfigError
from helpdesk.models import Category, Service
from helpdesk.testing import make_app
from helpdesk_plugins import routing


@pytest.fixture
def helpdesk_plugins():
    return [routing]


@pytest.fixture
def helpdesk_settings():
    return {"plugins": {"routing": {"by_category": {"Database": "Database"},
                                    "by_service": "CRM=Network, Payroll=Nobody"}}}


def test_new_incident_goes_to_the_team_of_its_category(personas, incident_factory):
    incident = incident_factory(category=Category.create(name="Database"))
    assert incident.assigned_team.name == "Database"
    assert incident.status == "assigned"
    assert (incident.owner_team, incident.owner_agent) == (personas.service_desk, personas.owner)


def test_the_service_rule_wins_over_the_category_rule(incident_factory):
    incident = incident_factory(category=Category.create(name="Database"),
                                service=Service.create(name="CRM"))
    assert incident.assigned_team.name == "Network"


def test_an_explicit_assignee_or_no_matching_rule_leaves_it_alone(personas, incident_factory):
    chosen = incident_factory(category=Category.create(name="Database"),
                              assigned_team=personas.network)
    assert chosen.assigned_team == personas.network
    assert incident_factory(category=Category.create(name="Hardware")).assigned_team is None


def test_a_rule_naming_an_unknown_team_is_skipped_with_a_warning(incident_factory, caplog):
    incident = incident_factory(service=Service.create(name="Payroll"))
    assert incident.assigned_team is None
    assert "unknown team 'Nobody'" in caplog.text


def test_a_malformed_rule_stops_start_up_naming_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="HELPDESK_PLUGINS__ROUTING__BY_SERVICE"):
        make_app(tmp_path, [routing], plugins={"routing": {"by_service": "CRM"}})
