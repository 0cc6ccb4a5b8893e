"""The plugin system: discovery, blocking, validation, isolation, settings and visibility."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import inspect
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from flask import Blueprint

from helpdesk import hookimpl, hookspecs, incidents
from helpdesk.config import ConfigError, load_settings
from helpdesk.models import Incident, PluginFailure, SlaClock, Team, TimelineEntry
from helpdesk.plugins import PluginError, load_plugins
from helpdesk.records import (
    Action,
    AdminPage,
    BusinessCalendar,
    ChannelField,
    ChannelType,
    EscalationStep,
    MacroAction,
    Panel,
    PluginAssets,
    QueueColumn,
    SettingsTable,
    SlaPolicy,
    SlaTargets,
    StepParam,
)
from helpdesk.security import PUBLIC, access
from helpdesk.testing import bundled_plugin, make_app

ROOT = Path(__file__).resolve().parent.parent


def installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def bundled_names() -> list[str]:
    return sorted(ep.name for ep in importlib.metadata.entry_points(group="helpdesk")
                  if ep.dist and ep.dist.name == "helpdesk")


def plugin(name: str, **hooks: object) -> types.ModuleType:
    """A throw-away plugin module with the given hook implementations."""
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        function.__name__ = hook_name
        setattr(module, hook_name, hookimpl(function))
    return module


requires_example = pytest.mark.skipif(
    not installed("helpdesk-example-chat") and os.environ.get("CI") != "true",
    reason="tests/example_plugin is not installed (make test installs it)",
)


# -- discovery through a real installed distribution ------------------------------------


@requires_example
@pytest.mark.parametrize("helpdesk_load_entry_points", [True])
def test_installed_plugin_is_found_called_and_its_template_rendered(ctx,
        helpdesk_app, personas, incident_factory, login, http_receiver):
    # (helpdesk_settings below points the plugin at the receiver)
    info = helpdesk_app.extensions["helpdesk"].plugins["example_chat"]
    assert (info.source, info.distribution, info.version) == ("installed", "helpdesk-example-chat",
                                                              "1.0.0")
    assert "incident_assigned" in info.hooks
    assert info.records == {"channel types": ["example_chat"]}

    incident = incident_factory(title="Disk full")
    with helpdesk_app.app_context():
        incidents.assign(ctx, incident.id, personas.owner, personas.database_team, None)
    assert [r.json()["text"] for r in http_receiver.requests] == [
        f"{incident.reference} assigned to Database\nDisk full"]
    page = login(personas.owner).get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert f"Assignments of {incident.reference} are announced in" in page


@pytest.fixture
def helpdesk_settings(request, http_receiver):
    marker = request.node.get_closest_marker("settings")
    settings = {"plugins": {"example_chat": {"url": http_receiver.url, "allow_private": ["127.0.0.1"]}}}
    if marker:
        settings.update(marker.args[0])
    return settings


@requires_example
@pytest.mark.settings({"disabled_plugins": "example_chat"})
@pytest.mark.parametrize("helpdesk_load_entry_points", [True])
def test_blocked_plugin_is_listed_but_never_called(ctx, helpdesk_app, personas, incident_factory, login,
                                                   http_receiver):
    info = helpdesk_app.extensions["helpdesk"].plugins["example_chat"]
    assert info.blocked and info.hooks == []
    incident = incident_factory()
    with helpdesk_app.app_context():
        incidents.assign(ctx, incident.id, personas.owner, personas.database_team, None)
    assert http_receiver.requests == []
    page = login(personas.owner).get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert "are announced in" not in page


@pytest.mark.parametrize("name", bundled_names())
def test_every_bundled_plugin_can_be_disabled_and_the_app_still_works(tmp_path, name):
    from helpdesk import people, schema
    from helpdesk.db import database
    from helpdesk.testing import PASSWORD, AgentClient, reset_postgres

    if os.environ.get("HELPDESK_TEST_DATABASE_URL"):
        reset_postgres(os.environ["HELPDESK_TEST_DATABASE_URL"])
    app = make_app(tmp_path, load_entry_points=True, disabled_plugins=name)
    state = app.extensions["helpdesk"]
    assert state.plugins[name].blocked
    assert {n for n, info in state.plugins.items() if not info.blocked} >= set(bundled_names()) - {name}
    with app.app_context():
        schema.upgrade(database)
        desk = people.ensure_team("Service Desk")
        dbt = people.create_team("Database")
        agent = people.create_agent("john", "John", PASSWORD, teams=[desk])
        incident = incidents.log_incident(state, title="Printer offline", actor=agent,
                                          service_desk=desk)
        incidents.assign(state, incident.id, agent, dbt, None)
        incidents.change_status(state, incident.id, agent, "resolved", note="Replaced the toner.")
    client = AgentClient(app, agent)
    assert client.get("/queues/owned").status_code == 200
    assert client.get(f"/incidents/{incident.id}").status_code == 200
    assert Incident.get_by_id(incident.id).status == "resolved"
    if not database.is_closed():
        database.close()
    if hasattr(database.obj, "close_all"):
        database.obj.close_all()  # the PostgreSQL pool


def test_the_bundled_plugins_are_installed_under_their_own_import_name():
    assert {"routing", "age", "activity_log"} <= set(bundled_names())
    for ep in importlib.metadata.entry_points(group="helpdesk"):
        if ep.dist and ep.dist.name == "helpdesk":
            assert ep.value.startswith("helpdesk_plugins.")


# -- validation at start-up -----------------------------------------------------------------


def test_two_plugins_registering_the_same_name_stop_start_up_naming_both():
    def channels():
        return [ChannelType("sms", "SMS", lambda ctx, message: None)]

    first, second = plugin("acme_sms", helpdesk_channel_types=channels), plugin(
        "other_sms", helpdesk_channel_types=channels)
    with pytest.raises(PluginError) as error:
        load_plugins(load_entry_points=False, extra=[first, second])
    assert "'sms'" in str(error.value)
    assert "acme_sms" in str(error.value) and "other_sms" in str(error.value)


def _fails() -> list[ChannelType]:
    raise KeyError("sms_gateway")


@pytest.mark.parametrize("channels", [_fails, lambda: ["webhook"], lambda: [42],
                                      lambda: [ChannelType("", "No name", lambda ctx, message: None)]])
def test_a_registration_that_raises_or_returns_no_record_stops_start_up_naming_the_plugin(channels):
    broken = plugin("acme_sms", helpdesk_channel_types=channels)
    with pytest.raises(PluginError) as error:
        load_plugins(load_entry_points=False, extra=[broken])
    assert "acme_sms" in str(error.value) and "HELPDESK_DISABLED_PLUGINS=acme_sms" in str(error.value)


_NINE_TO_FIVE = {day: (dt.time(9), dt.time(17)) for day in range(5)}


@pytest.mark.parametrize(("calendar", "message"), [
    (BusinessCalendar("office", "Office", "Europe/Lodnon", _NINE_TO_FIVE), "unknown time zone"),
    (BusinessCalendar("office", "Office", "UTC", {}), "no working hours"),
    (BusinessCalendar("office", "Office", "UTC", {"mon": (dt.time(9), dt.time(17))}), "weekday 'mon'"),
    (BusinessCalendar("office", "Office", "UTC", {7: (dt.time(9), dt.time(17))}), "weekday 7"),
    (BusinessCalendar("office", "Office", "UTC", {0: ("09:00", "17:00")}), "not (opens, closes) times"),
    (BusinessCalendar("office", "Office", "UTC", _NINE_TO_FIVE, frozenset({"2026-12-25"})), "must be dates"),
])
def test_a_malformed_business_calendar_stops_start_up_saying_what_is_wrong(calendar, message):
    # Said once at start-up, not as a failure of every SLA check that would use it.
    broken = plugin("acme_hours", helpdesk_business_calendars=lambda: [calendar])
    with pytest.raises(PluginError) as error:
        load_plugins(load_entry_points=False, extra=[broken])
    assert "acme_hours" in str(error.value) and "'office'" in str(error.value)
    assert message in str(error.value)


@pytest.mark.parametrize(("record", "message"), [
    (ChannelType("sms", "SMS", lambda message: None), "send must take (ctx, message): "),
    (SlaPolicy("tiered", "Tiered", lambda incident: None), "targets must take (ctx, incident): "),
    (EscalationStep("page", "Page", lambda ctx, incident, params: None),
     "run must take (ctx, incident, level, params): "),
    (MacroAction("tag", "Tag", lambda ctx, incident, actor, params, extra: None),
     "run must take (ctx, incident, actor, params): "),
    (EscalationStep("page", "Page", "page_on_call"), "run is 'page_on_call', not a function"),
])
def test_a_record_whose_function_cannot_take_the_arguments_given_stops_start_up(record, message):
    # Found when the plugin loads, not as a dead delivery, a missing SLA or a retried step later.
    hook = {ChannelType: "helpdesk_channel_types", SlaPolicy: "helpdesk_sla_policies",
            EscalationStep: "helpdesk_escalation_steps", MacroAction: "helpdesk_macro_actions"}
    broken = plugin("acme_bits", **{hook[type(record)]: lambda: [record]})
    with pytest.raises(PluginError) as error:
        load_plugins(load_entry_points=False, extra=[broken])
    assert "acme_bits" in str(error.value) and message in str(error.value)
    assert "HELPDESK_DISABLED_PLUGINS=acme_bits" in str(error.value)


@pytest.mark.parametrize("warnings", [(0.5, 75), (0,), "0.5", (0.5, None)])
def test_sla_policy_warnings_outside_zero_to_one_stop_start_up(warnings):
    policy = SlaPolicy("tiered", "Tiered", lambda ctx, incident: None, warnings=warnings)
    with pytest.raises(PluginError, match="warnings are"):
        load_plugins(load_entry_points=False,
                     extra=[plugin("acme_sla", helpdesk_sla_policies=lambda: [policy])])


@pytest.mark.parametrize("name", ["none", "None"])
def test_a_policy_named_none_stops_start_up(name):
    """default_sla_policy = "none" means no SLA: a policy of that name could never be chosen
    as the default, and an admin naming it would silently get no SLA at all."""
    policy = SlaPolicy(name, "No-nonsense SLA", lambda ctx, incident: None)
    with pytest.raises(PluginError, match="the name 'none' is reserved"):
        load_plugins(load_entry_points=False,
                     extra=[plugin("acme_sla", helpdesk_sla_policies=lambda: [policy])])


def _no_folder(ctx):
    raise FileNotFoundError("templates folder missing")


@pytest.mark.parametrize("assets", [_no_folder, lambda: "templates/"])
def test_a_plugin_whose_assets_fail_stops_start_up_naming_it(tmp_path, assets):
    with pytest.raises(PluginError) as error:
        make_app(tmp_path, with_plugins=[plugin("acme_look", helpdesk_assets=assets)])
    assert "acme_look" in str(error.value) and "helpdesk_assets" in str(error.value)
    assert "HELPDESK_DISABLED_PLUGINS=acme_look" in str(error.value)


def test_a_settings_check_that_fails_stops_start_up_naming_the_plugin(tmp_path):
    def check(ctx):
        raise KeyError("smtp_relay")

    with pytest.raises(PluginError) as error:
        make_app(tmp_path, with_plugins=[plugin("acme_check", helpdesk_check_settings=check)])
    assert "acme_check" in str(error.value) and "KeyError" in str(error.value)
    assert "HELPDESK_DISABLED_PLUGINS=acme_check" in str(error.value)


def test_a_misspelt_hook_stops_start_up_naming_the_plugin():
    typo = plugin("typo_plugin", incident_creatd=lambda incident, actor: None)
    with pytest.raises(PluginError, match="typo_plugin") as error:
        load_plugins(load_entry_points=False, extra=[typo])
    assert "did you mean 'incident_created'?" in str(error.value)
    assert "HELPDESK_DISABLED_PLUGINS=typo_plugin" in str(error.value)


def test_a_hook_with_an_unknown_argument_is_refused_saying_which_arguments_it_has():
    wrong = plugin("wrong_args", incident_created=lambda incident, actor, colour: None)
    with pytest.raises(PluginError, match="wrong_args") as error:
        load_plugins(load_entry_points=False, extra=[wrong])
    assert "{'colour'}" in str(error.value)
    assert "incident_created takes (incident, actor, ctx, event_key) or any of them" in str(error.value)
    assert "HELPDESK_DISABLED_PLUGINS=wrong_args" in str(error.value)


@pytest.mark.parametrize("returned", [ChannelType("sms", "SMS", lambda ctx, message: None), "sms",
                                      {"sms": "SMS"}])
def test_a_registration_returning_one_record_instead_of_a_list_says_so(returned):
    # list() of one record said "'ChannelType' object is not iterable"; of a name, "returned 's'"
    single = plugin("acme_sms", helpdesk_channel_types=lambda: returned)
    with pytest.raises(PluginError) as error:
        load_plugins(load_entry_points=False, extra=[single])
    assert "acme_sms" in str(error.value)
    assert "not a list of helpdesk.records.ChannelType" in str(error.value)
    assert "HELPDESK_DISABLED_PLUGINS=acme_sms" in str(error.value)


def test_a_plugin_that_fails_to_import_stops_start_up_saying_how_to_disable_it(monkeypatch, tmp_path):
    import helpdesk.plugins

    broken = importlib.metadata.EntryPoint(name="broken", value="helpdesk_no_such_module",
                                           group="helpdesk")
    real = importlib.metadata.entry_points
    monkeypatch.setattr(helpdesk.plugins, "entry_points",
                        lambda group: list(real(group=group)) + [broken])
    with pytest.raises(PluginError) as error:
        load_plugins()
    assert "'broken'" in str(error.value)
    assert "HELPDESK_DISABLED_PLUGINS=broken" in str(error.value)
    # ... and disabling it lets the app start.
    app = make_app(tmp_path, load_entry_points=True, disabled_plugins="broken")
    assert app.extensions["helpdesk"].plugins["broken"].blocked


def test_the_built_in_defaults_cannot_be_disabled():
    with pytest.raises(PluginError, match="built-in"):
        load_plugins(disabled=["builtin"], load_entry_points=False)


def test_a_decision_plugin_overrides_the_built_in_default(tmp_path):
    everything_urgent = plugin("urgent", helpdesk_priority=lambda impact, urgency: 1)
    loaded = load_plugins(load_entry_points=False, extra=[everything_urgent])
    assert loaded.pm.hook.helpdesk_priority(impact="low", urgency="low", ctx=None) == 1
    assert load_plugins(load_entry_points=False).pm.hook.helpdesk_priority(
        impact="low", urgency="low", ctx=None) == 4


# -- isolation --------------------------------------------------------------------------------


def test_a_raising_event_hook_neither_undoes_the_change_nor_stops_other_plugins(
        helpdesk_app, personas, incident_factory, register_plugin, login):
    seen = []

    def explode(incident, actor):
        raise RuntimeError("webhook down")

    register_plugin(plugin("exploding", incident_created=explode))
    register_plugin(plugin("listening", incident_created=lambda incident, actor: seen.append(
        incident.reference)))
    incident = incident_factory(title="Still saved")
    assert Incident.get_by_id(incident.id).title == "Still saved"
    assert seen == [incident.reference]
    failure = PluginFailure.get()
    assert failure.hook == "incident_created" and failure.incident == incident.id
    assert "webhook down" in failure.error
    assert failure.plugin == "exploding", "named as the plugin's author named it"
    page = login(personas.admin).get("/admin/plugins").get_data(as_text=True)
    assert "webhook down" in page


@pytest.fixture
def helpdesk_plugins(request):
    marker = request.node.get_closest_marker("plugins")
    return list(marker.args) if marker else []


def _broken_panels(incident, agent):
    raise ValueError("panel broke")


@pytest.mark.plugins(plugin("broken_panel", helpdesk_incident_panels=_broken_panels),
                     plugin("good_panel", helpdesk_incident_panels=lambda incident, agent: [
                         Panel("Good news", "error.html", {"code": 200, "message": "all fine"})]))
def test_a_failing_panel_is_skipped_and_recorded_and_the_page_still_renders(
        login, personas, incident_factory):
    incident = incident_factory()
    response = login(personas.owner).get(f"/incidents/{incident.id}")
    assert response.status_code == 200
    assert "Good news" in response.get_data(as_text=True)
    assert PluginFailure.get().plugin == "broken_panel"


@pytest.mark.plugins(plugin("panel_with_a_bug", helpdesk_incident_panels=lambda incident, agent: [
    Panel("Broken template", "no_such_panel.html", {})]))
def test_a_panel_whose_template_fails_is_recorded_for_admins(login, personas, incident_factory):
    incident = incident_factory()
    page = login(personas.owner).get(f"/incidents/{incident.id}")
    assert page.status_code == 200 and "This panel could not be shown" in page.get_data(as_text=True)
    failure = PluginFailure.get()
    assert (failure.plugin, failure.incident) == ("panel_with_a_bug", incident.id)
    assert "render" in failure.hook


def _slow_panel(incident, agent):
    import time

    time.sleep(0.15)
    return [Panel("Slow news", "error.html", {"code": 200, "message": "eventually"})]


def _slow_tier(incident):
    import time

    time.sleep(0.15)
    return "silver"


@pytest.mark.plugins(plugin("slow_panel", helpdesk_incident_panels=_slow_panel),
                     plugin("quick_panel", helpdesk_incident_panels=lambda incident, agent: [
                         Panel("Quick news", "error.html", {"code": 200, "message": "at once"})]),
                     plugin("slow_column",
                            helpdesk_queue_columns=lambda: [QueueColumn("tier", "Tier", _slow_tier)]))
def test_a_plugin_that_keeps_pages_waiting_is_named_on_the_plugins_page(login, personas, incident_factory,
                                                                      monkeypatch):
    """A running hook cannot be stopped from outside; a slow one is named, so an admin knows
    which plugin makes the pages slow (and the page still shows what it gave)."""
    from helpdesk import plugins as plugin_machinery

    monkeypatch.setattr(plugin_machinery, "SLOW_PAGE_HOOK_SECONDS", 0.1)
    incident = incident_factory()
    agent = login(personas.owner)
    page = agent.get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert "Slow news" in page and "Quick news" in page
    assert "silver" in agent.get("/queues/open").get_data(as_text=True)
    slow = {(f.plugin, f.hook) for f in PluginFailure.select() if "took longer than 0.1 s" in f.error}
    assert slow == {("slow_panel", "helpdesk_incident_panels"),
                    ("slow_column", "helpdesk_queue_columns (value)")}
    admin_page = login(personas.admin).get("/admin/plugins").get_data(as_text=True)
    assert "slow_panel" in admin_page and "every page that shows it waits for it" in admin_page


def _tier(incident):
    return {"Database": "gold"}[incident.title]  # a KeyError for every other title


@pytest.mark.plugins(plugin("tier_column",
                            helpdesk_queue_columns=lambda: [QueueColumn("tier", "Tier", _tier)]))
def test_a_queue_column_that_fails_shows_a_mark_and_is_recorded_once(login, personas, incident_factory):
    for title in ("Database", "Printer", "Mail"):
        incident_factory(title=title)
    agent = login(personas.owner)
    for _ in range(2):
        page = agent.get("/queues/open").get_data(as_text=True)
        assert "gold" in page and page.count(">?<") >= 2
    failures = list(PluginFailure.select())
    assert {f.plugin for f in failures} == {"tier_column"}
    assert len(failures) == 2  # one per distinct error, not one per row and page view


@pytest.mark.plugins(plugin("tier_column",
                            helpdesk_queue_columns=lambda: [QueueColumn("tier", "Tier", _tier)]))
def test_two_apps_in_one_process_each_blame_their_own_queue_columns_plugin(app, tmp_path, incident_factory):
    """A column's failure names the plugin of the app that showed it, even when another app in
    the same process (tests, an embedding) gave a column of that name meanwhile."""
    from helpdesk.web import plugin_ui

    incident = incident_factory(title="Printer")  # _tier fails for it
    other = make_app(tmp_path, [plugin("tier_mirror", helpdesk_queue_columns=lambda: [
        QueueColumn("tier", "Tier", _tier)])])
    with app.test_request_context():
        (column,) = plugin_ui.queue_columns(app.extensions["helpdesk"])
    with other.test_request_context():
        plugin_ui.queue_columns(other.extensions["helpdesk"])
    with app.test_request_context():
        assert plugin_ui.column_value(column, incident) == "?"
    assert PluginFailure.get().plugin == "tier_column"


@pytest.mark.plugins(plugin("tier_column",
                            helpdesk_queue_columns=lambda: [QueueColumn("tier", "Tier", _tier)]),
                     plugin("tier_again",
                            helpdesk_queue_columns=lambda: [QueueColumn("tier", "Tier 2", str)]))
def test_a_second_queue_column_of_a_taken_name_is_left_out_and_said(login, personas, incident_factory):
    incident_factory(title="Database")
    page = login(personas.owner).get("/queues/open").get_data(as_text=True)
    kept = ">Tier<" in page
    assert kept != (">Tier 2<" in page)  # one of the two, never both
    failure = PluginFailure.get()
    assert failure.plugin == ("tier_again" if kept else "tier_column")
    assert f"already given by {'tier_column' if kept else 'tier_again'!r}" in failure.error


@pytest.mark.plugins(plugin("jinja_panel", helpdesk_incident_panels=lambda incident, agent: [
    Panel("Linked ticket", "linked.jinja", {})]))
def test_a_panel_template_escapes_user_text_whatever_its_name_ends_in(app, login, personas, incident_factory):
    (Path(app.instance_path) / "templates").mkdir(exist_ok=True)
    (Path(app.instance_path) / "templates" / "linked.jinja").write_text("<p>{{ incident.title }}</p>")
    incident = incident_factory(title="<script>alert(1)</script>")
    page = login(personas.owner).get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>" in page and "<script>alert(1)" not in page


def _broken_targets(ctx, incident):
    raise KeyError("tier")


def _no_decision(incident, ctx):
    raise RuntimeError("policy service down")


def _tiered_for_p1(incident, ctx):
    return "tiered" if incident.priority == 1 else None


def _p1_targets(ctx, incident):
    return SlaTargets(response=dt.timedelta(minutes=15), resolution=dt.timedelta(hours=4))


@pytest.mark.plugins(plugin("tiered_sla", helpdesk_sla_policy=_tiered_for_p1,
                            helpdesk_sla_policies=lambda: [SlaPolicy("tiered", "Tiered", _broken_targets)]),
                     plugin("flaky_decider", helpdesk_sla_policy=_no_decision))
def test_a_failing_sla_plugin_never_stops_an_incident_from_being_logged(login, personas):
    agent = login(personas.owner)
    for impact in ("high", "low"):  # P1: the tiered policy fails; P4: the decider fails, next decides
        answer = agent.post("/incidents/new", {"title": f"Mail down ({impact})", "type": "incident",
                                               "impact": impact, "urgency": impact, "keep_ownership": "y"})
        assert answer.status_code == 303, answer.get_data(as_text=True)
    assert Incident.select().count() == 2
    failed = {(f.plugin, f.hook) for f in PluginFailure.select()}
    assert ("tiered_sla", "SlaPolicy('tiered').targets") in failed
    assert ("flaky_decider", "helpdesk_sla_policy") in failed
    assert "policy service down" in login(personas.admin).get("/admin/plugins").get_data(as_text=True)


def _priority_down(impact, urgency):
    raise ConnectionError("CMDB unreachable")


def _route_down(incident):
    raise ConnectionError("directory unreachable")


@pytest.mark.parametrize(("priority_answer", "route_answer"), [
    (lambda impact, urgency: 7, lambda incident: "Database"),  # not 1-4; a name, not a Team
    (lambda impact, urgency: "high", lambda incident: 42),
    (_priority_down, _route_down),
    (lambda impact, urgency: True, lambda incident: Team(name="Never saved")),
], ids=["out-of-range-and-a-name", "a-word-and-a-number", "raising", "a-bool-and-an-unsaved-team"])
def test_a_failing_priority_or_routing_plugin_never_stops_an_incident_from_being_logged(
        app, login, personas, register_plugin, priority_answer, route_answer):
    register_plugin(plugin("cmdb_priority", helpdesk_priority=priority_answer))
    register_plugin(plugin("directory_routing", helpdesk_route_incident=route_answer))
    answer = login(personas.owner).post("/incidents/new", {
        "title": "Mail down", "type": "incident", "impact": "high", "urgency": "high",
        "keep_ownership": "y"})
    assert answer.status_code == 303, answer.get_data(as_text=True)
    incident = Incident.get()
    assert (incident.title, incident.priority, incident.assigned_team) == ("Mail down", 1, None)
    failed = {f.hook for f in PluginFailure.select()}
    assert failed == {"helpdesk_priority", "helpdesk_route_incident"}
    page = login(personas.admin).get("/admin/plugins").get_data(as_text=True)
    assert "helpdesk_priority" in page and "helpdesk_route_incident" in page


@pytest.mark.plugins(plugin("gold_contracts", helpdesk_sla_policy=lambda incident: "gold"))
def test_a_chosen_sla_policy_nobody_registers_is_said_on_the_incident_and_plugins_pages(
        login, personas, incident_factory):
    incident = incident_factory()
    page = login(personas.owner).get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert "No SLA: policy gold is not available" in page
    failure = PluginFailure.get()
    assert (failure.plugin, failure.hook, failure.incident) == (
        "gold_contracts", "helpdesk_sla_policy", incident.id)
    assert "SLA policy 'gold' is not registered" in failure.error
    admin = login(personas.admin)
    plugins_page = admin.get("/admin/plugins").get_data(as_text=True)
    assert "SLA policy &#39;gold&#39; is not registered" in plugins_page
    assert f"INC-{incident.id}" in plugins_page
    sla_page = admin.get(f"/admin/sla?incident=INC-{incident.id}").get_data(as_text=True)
    assert "the chosen policy gold is not registered" in sla_page


def test_without_the_default_sla_policy_the_plugins_and_sla_pages_say_so(
        login, personas, incident_factory):
    """No plugin registers 'priority' (sla_priority disabled): said once, not per incident."""
    incident = incident_factory()
    admin = login(personas.admin)
    assert "the default SLA policy &#39;priority&#39; is not registered" in admin.get(
        "/admin/plugins").get_data(as_text=True)
    assert "No SLA: the default SLA policy &#39;priority&#39; is not registered" in admin.get(
        "/admin/sla").get_data(as_text=True)
    assert "No SLA: policy priority is not available" in admin.get(
        f"/incidents/{incident.id}").get_data(as_text=True)
    assert PluginFailure.select().count() == 0


@pytest.mark.parametrize("helpdesk_settings", [{"default_sla_policy": "none"}])
def test_a_desk_that_runs_without_an_sla_on_purpose_gets_no_clocks_and_no_alert(
        login, personas, incident_factory, helpdesk_ctx, caplog):
    """sla_priority disabled and ``default_sla_policy = "none"``: a decision, not a loss."""
    incident = incident_factory()
    assert SlaClock.select().where(SlaClock.incident == incident.id).count() == 0
    page = login(personas.owner).get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert "No SLA: this desk runs without an SLA" in page and "not available" not in page
    admin = login(personas.admin)
    plugins_page = admin.get("/admin/plugins").get_data(as_text=True)
    assert "is not registered" not in plugins_page and "Problems found at start-up" not in plugins_page
    sla_page = admin.get(f"/admin/sla?incident=INC-{incident.id}").get_data(as_text=True)
    assert 'role="alert"' not in sla_page and "is not registered" not in sla_page
    assert "This desk runs without an SLA by default" in sla_page
    assert "this desk runs without an SLA by default, so no SLA applies" in sla_page
    assert helpdesk_ctx.plugin_problems == [] and PluginFailure.select().count() == 0
    said = [r.getMessage() for r in caplog.get_records("setup") if r.levelname == "WARNING"]
    assert not [message for message in said if "SLA" in message]


@pytest.mark.plugins(plugin("gold_contracts", helpdesk_sla_policy=_tiered_for_p1,
                            helpdesk_sla_policies=lambda: [SlaPolicy("tiered", "Tiered", _p1_targets)]))
@pytest.mark.parametrize("helpdesk_settings", [{"default_sla_policy": "None"}])
def test_without_a_default_sla_a_plugins_own_choice_still_gets_clocks(
        login, personas, incident_factory):
    p1 = incident_factory(impact="high", urgency="high")
    p4 = incident_factory(impact="low", urgency="low")
    assert {c.policy for c in SlaClock.select().where(SlaClock.incident == p1.id)} == {"tiered"}
    assert SlaClock.select().where(SlaClock.incident == p4.id).count() == 0
    page = login(personas.owner).get(f"/incidents/{p4.id}").get_data(as_text=True)
    assert "No SLA: this desk runs without an SLA by default, and no policy was picked" in page
    sla_page = login(personas.admin).get("/admin/sla").get_data(as_text=True)
    assert "only incidents a plugin picks a policy for (gold_contracts)" in sla_page


@pytest.mark.parametrize("helpdesk_bundled_plugins", [["sla_priority", "business_hours"]])
@pytest.mark.parametrize("helpdesk_settings", [{"default_sla_policy": "gold"}])
def test_a_default_sla_policy_nobody_registers_is_still_reported(
        login, personas, incident_factory, helpdesk_ctx, caplog):
    """The setting names a policy no enabled plugin has (a misspelling, a plugin removed):
    an accident, said as when sla_priority is disabled under the default setting."""
    said = [r.getMessage() for r in caplog.get_records("setup") if r.levelname == "WARNING"]
    assert [message for message in said if "default SLA policy 'gold'" in message]
    incident = incident_factory()
    assert SlaClock.select().where(SlaClock.incident == incident.id).count() == 0
    assert [problem for _, _, problem in helpdesk_ctx.plugin_problems if "'gold'" in problem]
    admin = login(personas.admin)
    assert "the default SLA policy &#39;gold&#39; is not registered" in admin.get(
        "/admin/plugins").get_data(as_text=True)
    sla_page = admin.get("/admin/sla").get_data(as_text=True)
    assert "No SLA: the default SLA policy &#39;gold&#39; is not registered" in sla_page
    assert "default_sla_policy = &#34;none&#34;" in sla_page  # how to say it is on purpose
    assert "No SLA: policy gold is not available" in admin.get(
        f"/incidents/{incident.id}").get_data(as_text=True)


@pytest.mark.parametrize("helpdesk_bundled_plugins", [["sla_priority", "business_hours"]])
def test_with_the_default_sla_policy_nothing_is_said_missing(login, personas, incident_factory):
    incident = incident_factory()
    admin = login(personas.admin)
    assert "is not registered" not in admin.get("/admin/plugins").get_data(as_text=True)
    assert "No SLA" not in admin.get("/admin/sla").get_data(as_text=True)
    page = admin.get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert "not available" not in page and "Policy: priority" in page


def _columns_down():
    raise RuntimeError("column service down")


@pytest.mark.plugins(plugin("noisy_column", helpdesk_queue_columns=_columns_down),
                     plugin("broken_panel", helpdesk_incident_panels=_broken_panels))
def test_a_plugin_failing_on_every_page_does_not_bury_the_other_failures(login, personas, incident_factory):
    incident = incident_factory()
    agent = login(personas.owner)
    for _ in range(5):  # every render fails the same way: recorded once
        assert agent.get("/queues/open").status_code == 200
    assert agent.get(f"/incidents/{incident.id}").status_code == 200
    for _ in range(5):
        agent.get("/queues/open")
    assert PluginFailure.select().where(PluginFailure.plugin == "noisy_column").count() == 1
    page = login(personas.admin).get("/admin/plugins").get_data(as_text=True)
    assert "column service down" in page and "panel broke" in page


@pytest.mark.plugins(plugin("odd_column", helpdesk_queue_columns=lambda: [42]),
                     plugin("odd_panel", helpdesk_incident_panels=lambda incident, agent: ["not a panel"]),
                     plugin("good_panel", helpdesk_incident_panels=lambda incident, agent: [
                         Panel("Good news", "error.html", {"code": 200, "message": "all fine"})]))
def test_a_plugin_returning_the_wrong_records_is_skipped_and_recorded(login, personas, incident_factory):
    incident = incident_factory()
    agent = login(personas.owner)
    assert agent.get("/queues/open").status_code == 200  # every queue page used to fail
    page = agent.get(f"/incidents/{incident.id}")
    assert page.status_code == 200 and "Good news" in page.get_data(as_text=True)
    assert "built-in method" not in page.get_data(as_text=True)
    failed = {(f.plugin, f.hook) for f in PluginFailure.select()}
    assert {("odd_column", "helpdesk_queue_columns"), ("odd_panel", "helpdesk_incident_panels")} <= failed


def _fragile_channels(ctx):
    if ctx.plugin_settings("email").get("host") == "boom.example":
        raise RuntimeError("cannot reach boom.example")
    return []


@pytest.mark.plugins(plugin("fragile", helpdesk_channel_types=_fragile_channels))
def test_a_setting_a_plugin_fails_on_when_saved_is_refused_naming_it(login, personas):
    from helpdesk.models import StoredSetting

    answer = login(personas.admin).post("/admin/channels/email", {"email.host": "boom.example"})
    assert answer.status_code == 422  # was a 500: the browser's save skipped start-up's isolation
    assert "fragile" in answer.get_data(as_text=True) and "cannot reach boom.example" in answer.get_data(
        as_text=True)
    assert StoredSetting.select().count() == 0


_ADMIN_BP = Blueprint("quota_admin", __name__)


@_ADMIN_BP.get("/")
@access(PUBLIC)  # declared public by mistake: admin pages stay admin-only anyway
def _quota_page():
    return "quota settings"


@pytest.mark.plugins(plugin("quota", helpdesk_admin_pages=lambda: [
    AdminPage("quota", "Quotas", _ADMIN_BP)]))
def test_plugin_admin_pages_are_for_admins_only_and_linked_in_the_admin_menu(login, personas):
    assert login(personas.admin).get("/admin/plugins/quota/").get_data(as_text=True) == "quota settings"
    assert login(personas.lead).get("/admin/plugins/quota/").status_code == 403
    assert "/admin/plugins/quota/" in login(personas.admin).get("/admin/agents").get_data(as_text=True)


_REPORTS_BP = Blueprint("team_reports", __name__, url_prefix="/team-reports")


@_REPORTS_BP.get("/")
@access("agent")
def _reports_index():
    return "team reports"


@_REPORTS_BP.get("/export")
def _reports_export():  # the @access line forgotten
    return "every team's figures"


@pytest.mark.plugins(plugin("team_reports", helpdesk_blueprints=lambda: [_REPORTS_BP]))
def test_a_plugin_route_without_an_audience_is_named_on_the_plugins_page_from_start_up(
        app, login, personas):
    """Found when the plugin registers its blueprint, not by the first visitor refused: the
    Plugins page names the plugin and the route before anyone opened it; it stays refused."""
    page = login(personas.admin).get("/admin/plugins").get_data(as_text=True)
    assert "team_reports (helpdesk_blueprints): the route /team-reports/export" in page
    assert "/team-reports/ " not in page  # the declared route is fine
    assert login(personas.owner).get("/team-reports/").get_data(as_text=True) == "team reports"
    assert login(personas.admin).get("/team-reports/export").status_code == 403
    assert app.test_client().get("/team-reports/export").status_code == 403


_STATIC_BP = Blueprint("badge_wall", __name__, url_prefix="/badges", static_folder=str(Path(__file__).parent),
                       static_url_path="/static")


@pytest.mark.plugins(plugin("badge_wall", helpdesk_blueprints=lambda: [_STATIC_BP]))
def test_a_plugin_blueprint_static_folder_is_said_to_belong_in_its_assets(app, login, personas):
    page = login(personas.admin).get("/admin/plugins").get_data(as_text=True)
    assert "static folder (/badges/static/&lt;path:filename&gt;) is not served" in page
    assert "PluginAssets(static=...)" in page
    assert login(personas.admin).get("/badges/static/conftest.py").status_code == 403


def test_two_plugins_with_one_admin_page_name_stop_start_up_naming_both(tmp_path):
    other = Blueprint("quota_admin_2", __name__)
    first = plugin("quota", helpdesk_admin_pages=lambda: [AdminPage("quota", "Quotas", _ADMIN_BP)])
    second = plugin("quota_plus", helpdesk_admin_pages=lambda: [AdminPage("quota", "Quotas+", other)])
    with pytest.raises(PluginError) as error:
        make_app(tmp_path, with_plugins=[first, second])
    assert "'quota'" in str(error.value) and "'quota_plus'" in str(error.value)


# -- plugin settings ------------------------------------------------------------------------------


def test_plugin_settings_come_from_the_instance_file_and_the_environment(tmp_path):
    (tmp_path / "secret_key").write_text("s" * 40)
    (tmp_path / "token.txt").write_text("s3cret\n")
    (tmp_path / "helpdesk.toml").write_text(
        '[plugins.chat]\nurl = "https://file.example"\nroom = "#ops"\n'
        f'token_file = "{tmp_path / "token.txt"}"\n')
    env = {"HELPDESK_PLUGINS__CHAT__URL": "https://env.example"}
    settings = load_settings(environ=env, instance_path=tmp_path)
    from helpdesk.config import PluginSettings

    chat = PluginSettings("chat", settings.plugins["chat"])
    assert chat["url"] == "https://env.example"  # the environment wins
    assert chat["room"] == "#ops"
    assert chat.secret("token") == "s3cret"
    assert chat.get("missing") is None
    with pytest.raises(ConfigError, match="HELPDESK_PLUGINS__CHAT__WEBHOOK"):
        chat.require("webhook")


def test_a_malformed_plugin_variable_is_a_clear_error(tmp_path):
    (tmp_path / "secret_key").write_text("s" * 40)
    with pytest.raises(ConfigError, match="HELPDESK_PLUGINS__CHAT"):
        load_settings(environ={"HELPDESK_PLUGINS__CHAT": "x"}, instance_path=tmp_path)


@pytest.mark.parametrize("plugin_settings, named", [
    ({"sla_priority": {"response": "abc"}}, "HELPDESK_PLUGINS__SLA_PRIORITY__RESPONSE: expected a table"),
    ({"business_hours": {"time_zone": "Mars/Olympus"}},
     "HELPDESK_PLUGINS__BUSINESS_HOURS__TIME_ZONE: unknown time zone"),
    ({"business_hours": {"calendars": {"night": {"hours": {"mon": "late"}}}}},
     "[plugins.business_hours.calendars.night] hours.mon: expected HH:MM-HH:MM"),
    ({"webhook": {"timeout": "abc"}}, "HELPDESK_PLUGINS__WEBHOOK__TIMEOUT: expected 1 to 120 seconds"),
    ({"webhook": {"timeout": 99999}}, "HELPDESK_PLUGINS__WEBHOOK__TIMEOUT: expected 1 to 120 seconds"),
])
def test_a_bad_bundled_plugin_setting_stops_start_up_naming_its_variable(tmp_path, plugin_settings, named):
    from helpdesk.testing import make_app

    with pytest.raises(ConfigError) as refused:
        make_app(tmp_path, load_entry_points=True, plugins=plugin_settings)
    assert named in str(refused.value)


# -- visibility ----------------------------------------------------------------------------------


def test_helpdesk_plugins_lists_what_is_loaded_and_why(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    env.update(HELPDESK_INSTANCE=str(tmp_path), HELPDESK_SECRET_KEY="k" * 40,
               HELPDESK_DISABLED_PLUGINS="age,gone", HELPDESK_PLUGINS__WEBHOK__URLS="https://x.example")
    # A misspelt table is said, not silently ignored; a disabled plugin's own table is fine.
    (tmp_path / "helpdesk.toml").write_text('[plugins.emial]\nhost = "smtp.example.com"\n'
                                            '[plugins.age]\nhours = 4\n'
                                            '[plugins.alerts]\nflap_minutes = 30\n')
    result = subprocess.run([sys.executable, "-m", "helpdesk.cli", "plugins", "--json"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
    # Each said once, as the command's own warning (start-up's log lines are not repeated).
    assert result.stderr.splitlines() == warnings
    assert len(warnings) == 3 and "'emial'" in warnings[0] and "helpdesk.toml" in warnings[0]
    assert "'webhok'" in warnings[1] and "HELPDESK_PLUGINS__WEBHOK__URLS" in warnings[1]
    assert warnings[2] == "Warning: HELPDESK_DISABLED_PLUGINS names 'gone', which is not installed"
    assert "no plugin of that name is installed" in warnings[0] and "email" in warnings[0]
    listed = {p["name"]: p for p in json.loads(result.stdout)}
    assert listed["builtin"]["source"] == "built-in"
    assert listed["builtin"]["hooks"] == ["helpdesk_alert_sources", "helpdesk_channel_types",
                                          "helpdesk_check_settings", "helpdesk_macro_actions",
                                          "helpdesk_priority", "helpdesk_route_incident",
                                          "helpdesk_settings_tables", "helpdesk_sla_policy"]
    assert listed["builtin"]["records"]["macro actions"] == ["status", "priority", "assign"]
    assert listed["age"]["enabled"] is False and listed["age"]["source"] == "bundled"
    assert listed["routing"]["enabled"]
    assert listed["routing"]["hooks"] == ["helpdesk_check_settings", "helpdesk_route_incident",
                                          "helpdesk_settings_tables"]
    text = subprocess.run([sys.executable, "-m", "helpdesk.cli", "plugins"], env=env,
                          capture_output=True, text=True, timeout=60, check=True).stdout
    assert re.search(r"^age .*DISABLED", text, re.MULTILINE)


def test_every_settings_table_the_core_reads_is_known_as_the_cores():
    # A table the core reads (IMAP mailboxes) must never be called unused.
    from helpdesk.plugins import CORE_SETTINGS

    core = Path(__file__).resolve().parent.parent / "helpdesk"
    read = {name for path in core.rglob("*.py")
            for name in re.findall(r'plugin_settings\("([a-z_]+)"\)', path.read_text(encoding="utf-8"))}
    assert read - set(bundled_names()) == CORE_SETTINGS


def test_the_plugins_page_warns_of_settings_no_plugin_reads(tmp_path):
    from helpdesk import people, schema
    from helpdesk.db import database
    from helpdesk.testing import PASSWORD, AgentClient, reset_postgres

    if os.environ.get("HELPDESK_TEST_DATABASE_URL"):
        reset_postgres(os.environ["HELPDESK_TEST_DATABASE_URL"])
    app = make_app(tmp_path, load_entry_points=True, plugins={"emial": {"host": "smtp.example.com"}})
    with app.app_context():
        schema.upgrade(database)
        admin = people.create_agent("root", "Root", PASSWORD, role="admin",
                                    teams=[people.ensure_team("Service Desk")])
    page = AgentClient(app, admin).get("/admin/plugins").get_data(as_text=True)
    assert "settings for &#39;emial&#39; (configuration given to create_app) are not used" in page
    if not database.is_closed():
        database.close()
    if hasattr(database.obj, "close_all"):
        database.obj.close_all()  # the PostgreSQL pool


def test_a_key_written_in_capitals_in_the_instance_file_is_reported_as_unread(app, tmp_path):
    """TOML keys keep their case and the e-mail plugin reads `port`: `Port = 2525` was
    ignored (mail went to port 25) and, compared lower-cased, never reported."""
    from helpdesk_plugins import email_channel

    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "helpdesk.toml").write_text('[plugins.email]\nhost = "smtp.example.com"\nPort = 2525\n',
                                            encoding="utf-8")
    other = make_app(instance, [email_channel], database_url=app.extensions["helpdesk"].settings.database_url)
    unread = other.extensions["helpdesk"].unclaimed_settings
    assert len(unread) == 1
    assert unread[0].startswith(f"setting 'Port' of [plugins.email] ({instance / 'helpdesk.toml'}) is not "
                                "used: did you mean 'port'?")


def test_a_misspelt_key_in_a_plugins_table_is_reported_where_a_misspelt_table_is(
        tmp_path, monkeypatch, caplog):
    """`resolutoin` in [plugins.sla_priority] would silently leave the default targets in force:
    it is named, with the key meant, in the log, on the Plugins page and by `helpdesk plugins`."""
    from click.testing import CliRunner

    from helpdesk import people, schema
    from helpdesk.cli import main
    from helpdesk.db import database
    from helpdesk.testing import PASSWORD, AgentClient, reset_postgres

    if os.environ.get("HELPDESK_TEST_DATABASE_URL"):
        reset_postgres(os.environ["HELPDESK_TEST_DATABASE_URL"])
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "helpdesk.toml").write_text(
        '[plugins.sla_priority]\nresponse = { p3 = "2h" }\nresolutoin = { p3 = "1bd" }\n'
        '[plugins.alerts]\nmax_flaps = 5\nflap_minute = 30\n', encoding="utf-8")
    monkeypatch.setenv("HELPDESK_PLUGINS__WEBHOOK__TIMEOUTS", "5")
    monkeypatch.setenv("HELPDESK_PLUGINS__WEBHOOK__SOUND", "beep")  # nothing close to it
    app = make_app(instance, load_entry_points=True)
    unread = app.extensions["helpdesk"].unclaimed_settings
    toml = instance / "helpdesk.toml"
    assert unread == [  # a line per key, with the key meant, then what the plugin reads
        f"setting 'flap_minute' of [plugins.alerts] ({toml}) is not used: did you mean 'flap_minutes'? "
        "(builtin reads only flap_minutes, max_flaps, resolve, secrets)",
        f"setting 'resolutoin' of [plugins.sla_priority] ({toml}) is not used: did you mean "
        "'resolution'? (sla_priority reads only around_the_clock, calendar, calendar_by_service, "
        "calendar_by_team, resolution, response, warnings)",
        "setting 'sound' of [plugins.webhook] (HELPDESK_PLUGINS__WEBHOOK__SOUND) is not used "
        "(webhook reads only allow_private, secret, secret_file, timeout, urls)",
        "setting 'timeouts' of [plugins.webhook] (HELPDESK_PLUGINS__WEBHOOK__TIMEOUTS) is not used: "
        "did you mean 'timeout'? (webhook reads only allow_private, secret, secret_file, timeout, urls)"]
    assert any("'resolutoin'" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    with app.app_context():
        schema.upgrade(database)
        admin = people.create_agent("root", "Root", PASSWORD, role="admin",
                                    teams=[people.ensure_team("Service Desk")])
    page = AgentClient(app, admin).get("/admin/plugins").get_data(as_text=True)
    assert "setting &#39;resolutoin&#39; of [plugins.sla_priority]" in page
    env = {"HELPDESK_SECRET_KEY": "for-tests-only-" + "x" * 32, "HELPDESK_QUEUE_URL": "memory",
           "HELPDESK_DATABASE_URL": app.extensions["helpdesk"].settings.database_url}
    listed = CliRunner().invoke(main, ["--instance", str(instance), "plugins", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "Warning: setting 'resolutoin' of [plugins.sla_priority]" in listed.stderr
    if not database.is_closed():
        database.close()
    if hasattr(database.obj, "close_all"):
        database.obj.close_all()  # the PostgreSQL pool


def _declares_nothing_right(ctx):
    return [SettingsTable("quiet", "url")]  # a string, not a tuple of keys


@pytest.mark.parametrize("helpdesk_settings", [{"plugins": {"undeclared": {"anything": 1},
                                                            "quiet": {"urll": "x"}}}])
@pytest.mark.plugins(plugin("undeclared", helpdesk_channel_types=lambda: []),
                     plugin("quiet", helpdesk_settings_tables=_declares_nothing_right))
def test_a_plugin_that_declares_no_keys_is_not_checked(ctx):
    """Plugins written before helpdesk_settings_tables keep working, unchecked; a broken
    declaration is a problem of that plugin's, and start-up goes on."""
    assert ctx.unclaimed_settings == []
    assert [problem for plugin, hook, problem in ctx.plugin_problems if plugin == "quiet"] == [
        "TypeError: returned SettingsTable(name='quiet', keys='url'), not a helpdesk.records."
        "SettingsTable with a name and a tuple of keys; its settings keys are not checked"]


def _declares_api_key(ctx):
    return [SettingsTable("camel", ("apiKey",))]


@pytest.mark.parametrize("helpdesk_settings", [{"plugins": {"camel": {"apikey": "from-env",
                                                                      "apiKye": "typo"}}}])
@pytest.mark.plugins(plugin("camel", helpdesk_settings_tables=_declares_api_key))
def test_a_declared_key_matches_whatever_its_case(ctx):
    """Keys from the environment arrive lower-cased (HELPDESK_PLUGINS__CAMEL__APIKEY): a plugin
    declaring "apiKey" must not be told that "apikey" is unused; a real misspelling still is."""
    assert len(ctx.unclaimed_settings) == 1
    assert "setting 'apiKye' of [plugins.camel]" in ctx.unclaimed_settings[0]


def test_every_key_a_bundled_plugin_reads_is_one_it_declares():
    """A key read but not declared would be reported to admins as unused although it works
    (as far as the source tells: keys read through a variable are not found here)."""
    pattern = re.compile(r'(?:settings|plugin_settings\("\w+"\))(?:\.(?:get|list|require|secret)\(|\[)"(\w+)"'
                         r'|"(\w+)" (?:not )?in (?:ctx\.plugin_settings\("\w+"\)|settings)')
    checked = 0
    for name in bundled_names():
        module = importlib.metadata.entry_points(group="helpdesk", name=name)[name].load()
        declare = getattr(module, "helpdesk_settings_tables", None)
        if declare is None:
            continue
        declared = {key for table in declare() for key in table.keys}
        paths = [Path(module.__file__)] + list(Path(module.__file__).parent.glob("*.py")
                                               if module.__file__.endswith("__init__.py") else [])
        read = {a or b for path in paths for a, b in pattern.findall(path.read_text(encoding="utf-8"))}
        assert read <= declared, f"{name} reads {sorted(read - declared)} without declaring them"
        secrets = re.findall(r'\.secret\("(\w+)"', "".join(p.read_text(encoding="utf-8") for p in paths))
        assert {f"{key}_file" for key in secrets} <= declared, name
        checked += 1
    assert checked >= 7


def test_admin_plugins_page_is_admin_only(login, personas):
    assert login(personas.owner).get("/admin/plugins").status_code == 403
    page = login(personas.admin).get("/admin/plugins").get_data(as_text=True)
    assert "builtin" in page and "helpdesk_priority" in page


# -- the hook reference ------------------------------------------------------------------------


def _specs() -> dict[str, inspect.Signature]:
    return {name: inspect.signature(function) for name, function in vars(hookspecs).items()
            if callable(function) and hasattr(function, "helpdesk_spec")}


def test_every_hook_spec_is_documented_in_its_docstring():
    specs = _specs()
    assert len(specs) >= 20
    for name in specs:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert len(doc) > 30, f"{name} needs a docstring saying when it fires and what to return"


def test_the_readme_hook_reference_matches_the_specs():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Hook reference", 1)[1].split("\n## ", 1)[0]
    documented = dict(re.findall(r"^- `(\w+)\(([^)]*)\)`", section, re.MULTILINE))
    specs = _specs()
    assert set(documented) == set(specs), "README hook reference and helpdesk/hookspecs.py differ"
    for name, signature in specs.items():
        assert documented[name] == ", ".join(signature.parameters), name


_STATIC = Path(__file__).resolve().parent / "example_plugin" / "helpdesk_example_chat" / "templates"


@pytest.mark.plugins(plugin("styled", helpdesk_assets=lambda: PluginAssets("styled", static=_STATIC)))
def test_plugin_static_files_are_served_under_the_plugin_name(login):
    anonymous = login(None)
    with anonymous.get("/plugins/styled/static/example_chat/panel.html") as served:
        assert served.status_code == 200 and b"example-chat" in served.data
    assert anonymous.get("/plugins/unknown/static/example_chat/panel.html").status_code == 404
    assert anonymous.get("/plugins/styled/static/../../conftest.py").status_code == 404


def test_the_readme_plugin_guide_prints_the_example_plugin_files_as_they_are():
    """Followed literally, the guide gives a plugin that installs: each file it prints is the
    tested one in tests/example_plugin/ (a new developer copies these, not the test's)."""
    root = Path(__file__).resolve().parent.parent
    guide = (root / "README.md").read_text().split("### Writing a plugin", 1)[1].split("\n### ", 1)[0]
    folder = root / "tests" / "example_plugin"
    for name in ("setup.cfg", "pyproject.toml", "helpdesk_example_chat/__init__.py",
                 "helpdesk_example_chat/templates/example_chat/panel.html"):
        printed = re.search(rf"^`{re.escape(name)}`.*?\n\n```\w+\n(.*?)```", guide, re.S | re.M)
        assert printed, f"the guide does not print {name}"
        assert printed.group(1).strip() == (folder / name).read_text().strip(), name


def _page_hook(ctx, message):
    return None


@pytest.mark.parametrize("helpdesk_settings",
                         [{"plugins": {"acme_paging": {"allow_private": ["127.0.0.1"]}}}])
@pytest.mark.plugins(plugin("acme_paging", helpdesk_channel_types=lambda: [ChannelType(
    "pager", "Pager", _page_hook, agent_fields=(ChannelField("hook", "Hook URL", kind="url"),))]))
def test_a_channels_url_fields_read_allow_private_from_its_plugins_own_settings(app, helpdesk_settings):
    # The channel is "pager", its plugin "acme_paging": the plugin's table allows the address,
    # as its own sending does (the channel's name is no settings table of anyone's).
    from helpdesk.notify.addresses import check_value

    ctx = app.extensions["helpdesk"]
    pager = ctx.registry.channel_types["pager"]
    assert check_value(ctx, pager, "hook", "http://127.0.0.1:5199/page") == "http://127.0.0.1:5199/page"
    assert ctx.unclaimed_settings == []


def _directory_lookup(ctx, value):
    raise ConnectionError("directory unreachable")


_DIRECTORY_PLUGIN = plugin(
    "acme_directory",
    helpdesk_channel_types=lambda: [ChannelType(
        "pager", "Pager", _page_hook, address_for=lambda ctx, agent, values: values.get("number"),
        agent_fields=(ChannelField("number", "Pager number", check=_directory_lookup),))],
    helpdesk_escalation_steps=lambda: [EscalationStep(
        "page_group", "Page a group", lambda ctx, incident, level, params: None,
        params=(StepParam("group", "text", required=True, check=_directory_lookup),))],
    helpdesk_macro_actions=lambda: [MacroAction(
        "tag_group", "Tag a group", lambda ctx, incident, actor, params: None,
        params=(StepParam("group", "text", required=True, check=_directory_lookup),))])

_PAGING_POLICY = """
name = "paging"
[[levels]]
title = "Page"
trigger = "manual"
[[levels.steps]]
step = "page_group"
group = "dba"
"""


@pytest.mark.plugins(_DIRECTORY_PLUGIN)
@pytest.mark.parametrize(("who", "url", "form"), [
    ("owner", "/profile", {"channel-pager": "on", "channel-pager-number": "555-0100"}),
    ("admin", "/escalation/edit", {"toml": _PAGING_POLICY}),
    ("owner", "/macros/new", {"name": "Page DBAs", "body": "Paging", "visibility": "public",
                              "action-tag_group": "on", "action-tag_group-group": "dba"}),
], ids=["agent-channel-field", "escalation-step-param", "macro-action-param"])
def test_a_plugin_check_that_fails_when_a_value_is_saved_is_a_refusal_not_a_server_error(
        login, personas, who, url, form):
    answer = login(getattr(personas, who)).post(url, form)
    assert answer.status_code == 422, answer.status_code
    page = answer.get_data(as_text=True)
    assert "acme_directory" in page and "directory unreachable" in page and "ask an admin" in page
    assert [(f.plugin, f.hook.split("(")[0]) for f in PluginFailure.select()] == [
        ("acme_directory", {"/profile": "ChannelField"}.get(url, "StepParam"))], "listed for admins"


def _example_chat_from_this_checkout() -> types.ModuleType:
    """The README's example plugin as printed in this checkout (not whatever copy is installed)."""
    import importlib.util

    path = ROOT / "tests/example_plugin/helpdesk_example_chat/__init__.py"
    spec = importlib.util.spec_from_file_location("readme_example_chat", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("helpdesk_plugins", [[_example_chat_from_this_checkout()]])
def test_the_readme_example_announces_an_assignment_once_when_its_event_runs_again(
        helpdesk_app, ctx, personas, incident_factory, http_receiver, monkeypatch):
    """Events come at least once: the worker may run a hook, then crash before marking it done,
    and the sweeper runs it again later, after the incident changed. The README's example must
    then not announce the assignment twice (its outbox key must be the event's, not the
    incident's version at the time the hook happens to run)."""
    from helpdesk import event_outbox
    from helpdesk.clock import now
    from helpdesk.models import EventDelivery

    monkeypatch.setitem(ctx.settings.plugins, "example_chat", {
        "url": f"{http_receiver.url}/hook", "allow_private": ["127.0.0.1"]})
    incident = incident_factory(title="VPN down")
    with helpdesk_app.app_context():
        incidents.assign(ctx, incident.id, personas.owner, personas.database_team, None)
        assert len(http_receiver.requests) == 1
        incidents.override_priority(ctx, incident.id, personas.owner, 1, "Whole office affected")
        event = EventDelivery.get(EventDelivery.event == "incident_assigned")
        EventDelivery.update(state="pending", next_attempt_at=now()).where(
            EventDelivery.id == event.id).execute()  # as the sweeper leaves it after the crash
        assert event_outbox.deliver(ctx, event.id) == "done"
    assert len(http_receiver.requests) == 1, [r.json() for r in http_receiver.requests]


@pytest.mark.parametrize("helpdesk_load_entry_points", [True])
@pytest.mark.parametrize("helpdesk_plugins", [[bundled_plugin("routing")]])
def test_a_plugin_given_to_the_kit_and_found_through_its_entry_point_too_is_loaded_once(helpdesk_ctx):
    """A plugin author tests their plugin (``helpdesk_plugins``) with the installed ones
    (``helpdesk_load_entry_points``), their own among them: the same plugin twice is one plugin."""
    assert "routing" in helpdesk_ctx.plugins
    assert helpdesk_ctx.pm.get_plugin("routing") is bundled_plugin("routing")


@pytest.mark.parametrize("helpdesk_plugins", [[bundled_plugin("chat")]])
@pytest.mark.parametrize(("given", "named"), [
    ({"expires_at": "tomorrow"}, "expires_at"),  # was queued, then stuck in 'sending' for good
    ({"expires_at": dt.date(2026, 3, 3)}, "expires_at"),
    ({"recipient": None}, "recipient"),
    ({"subject": None}, "subject"),
    ({"idempotency_key": 1042}, "idempotency_key"),
    ({"incident": 1}, "incident"),
], ids=["expiry-as-text", "expiry-as-date", "no-recipient", "no-subject", "key-as-number",
        "incident-id"])
def test_enqueue_refuses_arguments_of_the_wrong_kind_before_queueing_anything(
        helpdesk_app, ctx, incident_factory, outbox, given, named):
    from helpdesk import enqueue

    incident = incident_factory()
    arguments = {"recipient": "#ops", "subject": "Escalated", "text": "INC-1", "incident": incident,
                 **given}
    with helpdesk_app.app_context(), pytest.raises(TypeError, match=named):
        enqueue(ctx, "chat", arguments.pop("recipient"), arguments.pop("subject"), arguments.pop("text"),
                **arguments)
    assert outbox.rows(channel="chat") == []



def _crm_actions(incident):
    return [Action("Open in CRM", f"https://crm.example.com/cases/{incident.reference}"),
            Action("Run script", "javascript:alert(document.cookie)"),
            Action("Elsewhere", "//crm.example.com/x"),
            Action("Sync to CRM", f"/plugins/crm/sync/{incident.id}")]


@pytest.mark.plugins(plugin("crm_link", helpdesk_incident_actions=_crm_actions))
def test_a_plugin_action_posts_only_to_this_site_so_the_csrf_token_stays_here(
        login, personas, incident_factory):
    """An action button is a form carrying the agent's CSRF token: one that posted to another
    site (or ran a javascript: URL) would hand the token out. Such actions are left out and said."""
    incident = incident_factory()
    page = login(personas.owner).get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert f'action="/plugins/crm/sync/{incident.id}"' in page
    assert "crm.example.com" not in page and "javascript:" not in page
    failures = [f.error for f in PluginFailure.select().where(PluginFailure.plugin == "crm_link")]
    assert failures and all("not a path on this site" in error for error in failures)


def _hello_command():
    import click

    return [click.Command("hello", callback=lambda: click.echo("hello from a plugin"))]


@pytest.mark.plugins(plugin("odd_cli", helpdesk_cli_commands=lambda: ["not a command", 42]),
                     plugin("good_cli", helpdesk_cli_commands=_hello_command))
def test_a_plugin_returning_something_else_than_commands_leaves_the_cli_working(
        helpdesk_app, monkeypatch, tmp_path):
    """``helpdesk --help`` (and every plugin command) used to fail with a traceback because one
    plugin's list held something that is not a click command: it is skipped and recorded."""
    from click.testing import CliRunner

    from helpdesk import cli

    monkeypatch.setattr(cli, "_app_for", lambda instance: helpdesk_app)
    listing = CliRunner().invoke(cli.main, ["--instance", str(tmp_path), "--help"])
    assert listing.exit_code == 0, listing.output
    assert "hello" in listing.output and "plugins" in listing.output
    ran = CliRunner().invoke(cli.main, ["--instance", str(tmp_path), "hello"])
    assert (ran.exit_code, ran.output) == (0, "hello from a plugin\n")
    with helpdesk_app.app_context():
        assert ("odd_cli", "helpdesk_cli_commands") in {(f.plugin, f.hook) for f in PluginFailure.select()}


def _slow_cmdb_priority(impact, urgency):
    import time

    time.sleep(0.6)  # a CMDB lookup over a slow link
    return None


@pytest.mark.plugins(plugin("slow_cmdb", helpdesk_priority=_slow_cmdb_priority))
def test_a_decision_plugin_that_keeps_agents_waiting_is_named_on_the_plugins_page(login, personas):
    answer = login(personas.owner).post("/incidents/new", {
        "title": "Mail down", "type": "incident", "impact": "high", "urgency": "high",
        "keep_ownership": "y"})
    assert answer.status_code == 303
    (failure,) = PluginFailure.select().where(PluginFailure.plugin == "slow_cmdb")
    assert failure.hook == "helpdesk_priority" and failure.error.startswith("SlowHook")
    plugins_page = login(personas.admin).get("/admin/plugins").get_data(as_text=True)
    assert "logging or changing an incident" in plugins_page


class _CrmSync:
    """A plugin page that acts as the agent who pressed its button, through the public face."""

    __name__ = "crm_sync"

    @hookimpl
    def helpdesk_blueprints(self, ctx):
        import helpdesk

        crm = Blueprint("crm_sync", __name__, url_prefix="/plugins/crm")

        @crm.post("/sync/<int:incident_id>")
        @access("agent")
        def sync(incident_id):
            helpdesk.incidents.add_comment(ctx, incident_id, helpdesk.current_agent(), "Synced to the CRM",
                                           public=False)
            return "", 204

        @crm.get("/who")
        @access(PUBLIC)
        def who():
            agent = helpdesk.current_agent()
            return agent.username if agent is not None else "nobody"

        return [crm]


@pytest.mark.plugins(_CrmSync())
def test_a_plugin_page_knows_the_signed_in_agent_through_the_public_face(login, personas, incident_factory):
    incident = incident_factory()
    assert login(personas.assignee).post(f"/plugins/crm/sync/{incident.id}").status_code == 204
    note = (TimelineEntry.select().where(TimelineEntry.incident == incident.id)
            .order_by(TimelineEntry.id.desc()).get())
    assert (note.body, note.actor_id) == ("Synced to the CRM", personas.assignee.id)
    assert login(personas.owner).get("/plugins/crm/who").get_data(as_text=True) == "john"
    assert login(None).get("/plugins/crm/who").get_data(as_text=True) == "nobody"


@pytest.mark.parametrize("helpdesk_plugins", [[bundled_plugin("chat")]])
def test_a_message_for_a_channel_this_worker_lacks_waits_for_one_that_has_it(
        helpdesk_app, ctx, incident_factory, outbox, http_receiver, frozen_clock, monkeypatch):
    """During a rolling upgrade (or with a plugin installed on the web servers first) a worker
    may not have the channel a message was queued for: the message is retried, not dead."""
    from helpdesk import enqueue
    from helpdesk.db import write_transaction

    monkeypatch.setitem(ctx.settings.plugins, "chat", {"allow_private": ["127.0.0.1"]})
    incident = incident_factory()
    with helpdesk_app.app_context(), write_transaction():
        enqueue(ctx, "chat", f"{http_receiver.url}/room", "Escalated", "INC-1", incident=incident)
        chat = ctx.registry.channel_types.pop("chat")  # sent after commit, by a worker without it
    (row,) = outbox.rows(channel="chat")
    assert row.state == "pending" and "not available" in row.last_error
    ctx.registry.channel_types["chat"] = chat  # a worker that has it
    frozen_clock.advance(minutes=30)
    assert outbox.drain() == 1
    assert [r.state for r in outbox.rows(channel="chat")] == ["sent"] and len(http_receiver.requests) == 1



def test_an_event_for_a_plugin_this_worker_lacks_waits_for_one_that_has_it(
        helpdesk_app, ctx, personas, register_plugin, frozen_clock):
    """The web server that logged the incident has the plugin; the worker that first takes the
    event does not (yet): the event is retried, not dead, and reaches the plugin later."""
    from helpdesk import event_outbox
    from helpdesk.db import write_transaction
    from helpdesk.models import EventDelivery

    seen = []
    listener = register_plugin(plugin("late_listener", incident_created=lambda incident: seen.append(
        incident.reference)))
    with helpdesk_app.app_context():
        with write_transaction():
            incident = incidents.log_incident(ctx, title="Mail down", actor=personas.owner,
                                              service_desk=personas.service_desk)
            ctx.pm.unregister(listener)  # the event runs after commit, in a worker without it
        (row,) = EventDelivery.select().where(EventDelivery.plugin == "late_listener")
        assert row.state == "pending" and "not enabled in this worker" in row.last_error
        ctx.pm.register(listener, name="late_listener")  # a worker that has it
        frozen_clock.advance(minutes=30)
        assert event_outbox.deliver(ctx, row.id) == "done"
    assert seen == [incident.reference]
