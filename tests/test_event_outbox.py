"""Plugin events at least once: the event outbox, its retries, dead letters and admin retry."""

from __future__ import annotations

import types
from typing import Any

import pytest

from helpdesk import event_outbox, hookimpl
from helpdesk.models import EventDelivery

calls: list[tuple[str, str, str]] = []  # (plugin, incident reference, event_key)
flaky_failures: list[int] = []  # how many more times the flaky plugin fails


def _plugin(name: str, fail: bool) -> types.ModuleType:
    module = types.ModuleType(name)

    def incident_created(incident: Any, actor: Any, event_key: str) -> None:
        if fail and flaky_failures and flaky_failures[0] > 0:
            flaky_failures[0] -= 1
            raise ConnectionError("the audit service is down")
        calls.append((name, incident.reference, event_key))

    module.incident_created = hookimpl(incident_created)
    return module


@pytest.fixture
def helpdesk_plugins() -> list[Any]:
    calls.clear()
    flaky_failures[:] = [0]
    return [_plugin("steady", fail=False), _plugin("flaky", fail=True)]


def rows(plugin: str) -> list[EventDelivery]:
    return list(EventDelivery.select().where(EventDelivery.plugin == plugin).order_by(EventDelivery.id))


def test_each_plugin_gets_its_own_copy_with_one_key_per_event(incident_factory):
    first = incident_factory(title="Mail bounces")
    second = incident_factory(title="Disk full")
    assert sorted(calls) == sorted([
        ("steady", first.reference, calls[0][2]), ("flaky", first.reference, calls[0][2]),
        ("steady", second.reference, calls[2][2]), ("flaky", second.reference, calls[2][2]),
    ]), "both plugins hear of both incidents, each event under one key"
    assert calls[0][2] != calls[2][2], "two events, two keys"
    assert all(row.state == "done" for row in EventDelivery.select())


def test_a_failing_plugin_is_retried_alone_with_backoff(helpdesk_app, incident_factory, frozen_clock):
    state = helpdesk_app.extensions["helpdesk"]
    flaky_failures[:] = [2]
    incident = incident_factory(title="Printer offline")
    assert [c[0] for c in calls] == ["steady"]
    [row] = rows("flaky")
    assert (row.state, row.attempts) == ("pending", 1)
    assert "the audit service is down" in row.last_error
    first_wait = row.next_attempt_at - frozen_clock.now

    with helpdesk_app.app_context():
        assert event_outbox.sweep(state) == 0, "not due yet: nothing is called early"
        frozen_clock.advance(seconds=first_wait.total_seconds() + 1)
        event_outbox.sweep(state)  # fails again, waits about twice as long
        [row] = rows("flaky")
        assert row.attempts == 2 and row.next_attempt_at - frozen_clock.now > first_wait * 1.3
        frozen_clock.set(row.next_attempt_at)
        event_outbox.sweep(state)
    [row] = rows("flaky")
    assert (row.state, row.attempts) == ("done", 3)
    assert [c[:2] for c in calls] == [("steady", incident.reference), ("flaky", incident.reference)]
    assert calls[0][2] == calls[1][2]
    assert rows("steady")[0].attempts == 1, "the plugin that worked was not called again"


def sweep_for(helpdesk_app: Any, frozen_clock: Any, hours: float) -> None:
    """Run the worker's sweep every five minutes of a frozen clock for ``hours``."""
    state = helpdesk_app.extensions["helpdesk"]
    with helpdesk_app.app_context():
        for _ in range(int(hours * 12)):
            frozen_clock.advance(minutes=5)
            event_outbox.sweep(state)


def test_a_plugin_event_hook_failing_for_two_hours_is_called_once_it_works(
        helpdesk_app, incident_factory, frozen_clock):
    """G3 for plugins: an audit service down for two hours gets every event afterwards, once."""
    flaky_failures[:] = [10**6]
    first, second = incident_factory(title="Backup failed"), incident_factory(title="Disk full")
    sweep_for(helpdesk_app, frozen_clock, hours=2)
    assert all(row.state == "pending" and row.attempts >= 6 for row in rows("flaky"))
    flaky_failures[:] = [0]  # the service is back
    sweep_for(helpdesk_app, frozen_clock, hours=0.5)
    assert [row.state for row in rows("flaky")] == ["done", "done"]
    assert sorted(c[1] for c in calls if c[0] == "flaky") == sorted([first.reference, second.reference])


def test_a_plugin_failing_every_time_is_dead_once_the_retry_window_passed_and_an_admin_retries_it(
        helpdesk_app, incident_factory, frozen_clock, personas, login):
    flaky_failures[:] = [10**6]
    incident_factory(title="Backup failed")
    window = helpdesk_app.extensions["helpdesk"].settings.delivery_retry_hours
    sweep_for(helpdesk_app, frozen_clock, hours=window - 1)
    [row] = rows("flaky")
    assert row.state == "pending" and row.attempts > event_outbox.MAX_ATTEMPTS
    sweep_for(helpdesk_app, frozen_clock, hours=1.5)
    [row] = rows("flaky")
    assert row.state == "dead"
    assert [c[0] for c in calls] == ["steady"]
    flaky_failures[:] = [0]

    admin = login(personas.admin)
    page = admin.get("/admin/plugins").get_data(as_text=True)
    assert "Dead: 1" in page and "the audit service is down" in page
    assert login(personas.owner).post(f"/admin/plugins/events/{row.id}/retry").status_code == 403
    response = admin.post(f"/admin/plugins/events/{row.id}/retry")
    assert response.status_code == 303
    assert rows("flaky")[0].state == "done"
    assert [c[0] for c in calls] == ["steady", "flaky"]


def test_a_duplicate_task_for_one_row_calls_the_hook_once(helpdesk_app, incident_factory):
    incident_factory(title="Wi-Fi slow")
    [row] = rows("steady")
    with helpdesk_app.app_context():
        assert event_outbox.deliver(helpdesk_app.extensions["helpdesk"], row.id) is None
    assert [c[0] for c in calls].count("steady") == 1
