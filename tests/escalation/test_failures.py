"""A step that fails leaves nothing behind, is shown on the incident and to admins, and a
temporary failure is retried (only the steps that did not run) until it works or gives up."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from helpdesk import hookimpl, incidents
from helpdesk.models import EscalationRun, Incident, PluginFailure
from helpdesk.records import EscalationStep, StepError, StepResult

from .conftest import AT75, three_levels

M = dt.timedelta(minutes=1)


class Flaky:
    """A step that writes (a note) and then fails the first ``failures`` times."""

    def __init__(self, failures: int, temporary: bool = True, crash: bool = False) -> None:
        self.failures, self.temporary, self.crash, self.calls = failures, temporary, crash, 0
        self.returns: Any = StepResult("paged")  # once it stops failing

    def run(self, ctx: Any, incident: Any, level: Any, params: dict) -> StepResult:
        self.calls += 1
        incidents.add_comment(ctx, incident.id, Incident.get_by_id(incident.id).owner_agent,
                              f"flaky attempt {self.calls}", public=False)
        if self.calls <= self.failures:
            if self.crash:
                raise ConnectionError("gateway unreachable")
            raise StepError("the pager gateway said 503", temporary=self.temporary)
        return self.returns

    @hookimpl
    def helpdesk_escalation_steps(self, ctx: Any) -> list[EscalationStep]:
        return [EscalationStep("flaky", "Flaky", self.run)]


@pytest.fixture
def flaky() -> Flaky:
    return Flaky(failures=2)


@pytest.fixture
def helpdesk_plugins(flaky: Flaky) -> list[Any]:
    return [flaky]


def _policy(desk):
    policy = three_levels()
    policy["levels"][0]["steps"] = [{"step": "notify_owner"}, {"step": "flaky"}]
    desk.policy(policy)


def _notes(incident) -> list[str]:
    return [e.body for e in incident.timeline if e.kind == "note"]


def test_a_temporary_failure_is_retried_with_backoff_and_only_the_failed_step_runs_again(desk, flaky):
    _policy(desk)
    incident = desk.log_p2()
    desk.check(AT75)
    run = EscalationRun.get()
    assert (run.state, run.steps_done, run.attempts, run.next_attempt_at) == ("retrying", "0", 1, AT75 + M)
    assert _notes(incident) == []  # the failed step's writes are undone
    failure = [e for e in desk.escalation_entries(incident) if e.field == "failure"][0]
    assert "flaky: the pager gateway said 503" in failure.body and "retrying at" in failure.body
    assert "retrying" in desk.login_page(incident)
    desk.check(AT75 + M - dt.timedelta(seconds=1))
    assert flaky.calls == 1
    desk.check(AT75 + M)  # second attempt fails: next in 2 minutes
    assert EscalationRun.get().next_attempt_at == AT75 + 3 * M
    desk.check(AT75 + 3 * M)
    run = EscalationRun.get()
    assert (run.state, run.steps_done, run.attempts, flaky.calls) == ("done", "0,1", 3, 3)
    assert _notes(incident) == ["flaky attempt 3"]
    assert len(desk.deliveries(incident, desk.p.owner)) == 1  # the owner was told once, not thrice
    assert desk.fresh(incident).escalation_level == 1


@pytest.mark.parametrize("crash", [False, True], ids=["permanent", "exception"])
def test_a_permanent_failure_or_retries_used_up_mark_the_level_failed_for_admins(desk, flaky, crash):
    flaky.failures, flaky.temporary, flaky.crash = 99, False, crash
    _policy(desk)
    incident = desk.log_p2()
    for minute in range(30):  # a check a minute, before the next level (90 %) comes
        desk.check(AT75 + minute * M)
    run = EscalationRun.get()
    assert run.state == "failed"
    # A permanent failure is not retried; a crashing step is retried (it may be transient) 5 times.
    assert flaky.calls == (5 if crash else 1)
    assert _notes(incident) == []
    if crash:
        assert "ConnectionError: gateway unreachable" in run.error
        # The same crash five times is listed once for admins (the run counts the attempts).
        assert PluginFailure.select().where(PluginFailure.hook == "run").count() == 1
        assert run.attempts == 5
    client = desk.login(desk.p.admin)
    page = client.get("/escalation").get_data(as_text=True)
    assert f"INC-{incident.id}" in page and "failed" in page
    # The other steps' effects stand and the level is not run again.
    assert len(desk.deliveries(incident, desk.p.owner)) == 1
    assert desk.fresh(incident).escalation_level == 1


@pytest.mark.parametrize("returned", [False, "paged", {"ok": False}])
def test_a_step_returning_something_other_than_a_step_result_is_a_broken_step(desk, flaky, returned):
    # "return False" from a step that could not page anyone must never read as done.
    flaky.failures, flaky.returns = 0, returned
    _policy(desk)
    incident = desk.log_p2()
    desk.check(AT75)
    run = EscalationRun.get()
    assert run.state == "retrying" and run.steps_done == "0"
    assert "not a StepResult" in run.error
    assert _notes(incident) == []  # what it wrote is rolled back
    assert PluginFailure.select().where(PluginFailure.hook == "run").count() == 1


def test_a_step_returning_nothing_is_done(desk, flaky):
    flaky.failures, flaky.returns = 0, None
    _policy(desk)
    incident = desk.log_p2()
    desk.check(AT75)
    assert EscalationRun.get().state == "done"
    assert _notes(incident) == ["flaky attempt 1"]
