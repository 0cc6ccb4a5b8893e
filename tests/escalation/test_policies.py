"""Policies are checked before they are saved (each refusal names its field), versioned, and
read back from the TOML they are exported as; a step from an installed distribution is used."""

from __future__ import annotations

import datetime as dt
from importlib.metadata import entry_points

import pytest

from helpdesk.escalation import policies
from helpdesk.models import EscalationPolicy, EscalationPolicyVersion, Watcher

from .conftest import AT75, three_levels


def _refused(desk, raw) -> str:
    with pytest.raises(policies.PolicyError) as refused:
        desk.policy(raw)
    assert EscalationPolicy.select().count() == 0  # nothing half-saved
    return str(refused.value)


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p["levels"][2]["steps"][0].update(team="Nobody"),
     "levels[3].steps[1].team: there is no team named 'Nobody'"),
    (lambda p: p["levels"][2]["steps"][0].pop("team"), "levels[3].steps[1].team: is required"),
    (lambda p: p["levels"][0]["steps"][0].update(step="notify_boss"),
     "levels[1].steps[1].step: there is no escalation step named 'notify_boss'"),
    (lambda p: p["levels"][0]["steps"][0].update(colour="red"),
     "levels[1].steps[1].colour: notify_owner has no parameter 'colour'"),
    (lambda p: p["levels"][1].update(fraction=-1), "levels[2].fraction:"),
    (lambda p: p["levels"][1].update(trigger="sometimes"), "levels[2].trigger: choose one of"),
    (lambda p: p["levels"][1].update(target="lunch"), "levels[2].target: choose response or resolution"),
    (lambda p: p.update(conditions={"priority": [7]}), "conditions.priority: priorities are numbers"),
    (lambda p: p.update(conditions={"colour": ["red"]}), "conditions.colour: unknown condition"),
    (lambda p: p["levels"][0].update(conditions={"service": ["Mail"]}),
     "levels[1].conditions.service: there is no service named 'Mail'"),
    (lambda p: p.update(name="Not A Name"), "name: lower-case letters"),
    (lambda p: p.update(levels=[]), "levels: a policy needs at least one level"),
    (lambda p: p.update(position=10 ** 20), "position: must be a whole number from"),
], ids=["unknown-team", "missing-param", "unknown-step", "unknown-param", "bad-fraction", "bad-trigger",
        "bad-target", "bad-priority", "unknown-condition", "unknown-service", "bad-name", "no-levels",
        "huge-position"])
def test_a_bad_policy_is_refused_with_the_field_named(desk, change, message):
    raw = three_levels()
    change(raw)
    assert message in _refused(desk, raw)


def test_saving_versions_a_policy_and_an_unchanged_save_is_not_a_new_version(desk):
    first = desk.policy(three_levels())
    assert first.version == 1
    assert desk.policy(three_levels()).version == 1
    edited = three_levels(title="Standard escalation (2026)")
    assert desk.policy(edited, desk.p.admin).version == 2
    saved = [(v.version, v.saved_by_id) for v in EscalationPolicyVersion.select().order_by(
        EscalationPolicyVersion.version)]
    assert saved == [(1, None), (2, desk.p.admin.id)]
    assert policies.definition_of(EscalationPolicy.get(), 1)["levels"] == \
        policies.definition_of(EscalationPolicy.get())["levels"]


def test_toml_export_reads_back_as_the_same_policy(desk):
    policy = desk.policy(three_levels(conditions={"priority": [1, 2], "type": ["incident"]}))
    text = policies.to_toml(policy)
    assert 'step = "reassign"' in text and 'team = "Network"' in text
    again = desk.call(None, policies.validate, policies.from_toml(text))
    original = desk.call(None, policies.validate, three_levels(conditions={"priority": [1, 2],
                                                                          "type": ["incident"]}))
    assert again == original
    assert desk.policy(policies.from_toml(text)).version == 1  # importing it unchanged changes nothing


def test_a_toml_syntax_error_names_the_line(desk):
    with pytest.raises(policies.PolicyError, match=r"toml: .*\(at line 2, column 9\)"):
        policies.from_toml('name = "x"\ntitle = \n')


def test_arrays_nested_a_thousand_deep_are_refused_on_the_lead_s_pages_not_a_500(desk):
    deep = 'name = "x"\nlevels = ' + "[" * 5000 + "]" * 5000
    with pytest.raises(policies.PolicyError, match="nested too deeply"):
        policies.from_toml(deep)
    lead = desk.login(desk.p.db_lead)
    for path, form in (("/escalation/edit", {"toml": deep}),
                       ("/escalation/simulate", {"horizon": "2", "draft": deep})):
        answer = lead.post(path, form)
        assert answer.status_code == 422 and "nested too deeply" in answer.get_data(as_text=True), path


# -- a step from an installed distribution ------------------------------------------------------------


@pytest.fixture
def helpdesk_bundled_plugins() -> list[str]:
    return ["business_hours", "sla_priority", "escalation_steps"]


@pytest.fixture
def helpdesk_plugins() -> list:
    (found,) = [ep for ep in entry_points(group="helpdesk", name="example_step")
                if ep.dist is not None and ep.dist.name == "helpdesk-example-step"]
    return [found.load()]


@pytest.fixture
def helpdesk_settings() -> dict:
    return {"time_zone": "Europe/London",
            "plugins": {"example_step": {"rota": {"Database": ["priya", "mateo"]}}}}


def _paging(team: str = "Database", **extra) -> dict:
    policy = three_levels()
    policy["levels"][0]["steps"].append({"step": "page_on_call", "team": team, **extra})
    return policy


def test_an_installed_step_is_used_by_a_policy_and_its_bad_parameters_are_refused(desk):
    p = desk.p
    refused = _refused(desk, _paging("Network"))
    assert "levels[1].steps[2].team: the on-call rota has nobody for Network" in refused
    assert "levels[1].steps[2].urgent: must be true or false" in _refused(desk, _paging(urgent="yes"))
    desk.policy(_paging(urgent=True))
    incident = desk.log_p2()
    desk.check(AT75)
    week = AT75.isocalendar().week
    on_call = [p.assignee, p.db_lead][week % 2]
    pages = desk.deliveries(incident, on_call)
    assert len(pages) == 1 and pages[0].subject.startswith(f"URGENT {incident.reference} needs you")
    assert [w.agent_id for w in Watcher.select().where(Watcher.incident == incident.id)] == [on_call.id]
    steps = [e.body for e in desk.escalation_entries(incident) if e.field == "steps"]
    assert steps == [f"Level 1: told the owner: {p.owner}; paged {on_call} (on call for Database)"]
    assert desk.runs(incident)[0][3] == "done"
    assert AT75 - dt.timedelta(minutes=1) < pages[0].created_at <= AT75
