"""Two workers at once, and a worker that dies between claiming a level and finishing its steps:
every level of every incident runs exactly once (real threads and a real process, on SQLite and
PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

import helpdesk.db
from helpdesk import hookimpl, sla
from helpdesk.models import EscalationRun, Incident, TimelineEntry
from helpdesk.records import EscalationStep, StepResult

from .conftest import AT75, AT90, DUE, three_levels

ROOT = Path(__file__).resolve().parents[2]


class Marker:
    """A step that records each run in the incident's timeline (the same transaction as the claim)."""

    @hookimpl
    def helpdesk_escalation_steps(self, ctx: Any) -> list[EscalationStep]:
        def run(ctx: Any, incident: Any, level: Any, params: dict) -> StepResult:
            TimelineEntry.create(incident=incident.id, kind="note", body=f"marker level {level.number}")
            return StepResult("marked")

        return [EscalationStep("marker", "Marker", run)]


@pytest.fixture
def helpdesk_plugins() -> list[Any]:
    return [Marker()]


# The worker that dies: the same app, but its "marker" step kills the process, after the claim
# row and the first step's outbox rows were written and before anything commits.
WORKER = textwrap.dedent("""
    import datetime as dt, os, sys
    from pathlib import Path
    from helpdesk import clock, hookimpl, sla
    from helpdesk.db import database
    from helpdesk.testing import bundled_plugin, make_app

    class Dying:
        @hookimpl
        def helpdesk_escalation_steps(self, ctx):
            from helpdesk.records import EscalationStep

            def run(ctx, incident, level, params):
                sys.stdout.write(f"dying in INC-{incident.id} level {level.number}\\n")
                sys.stdout.flush()
                os._exit(3)

            return [EscalationStep("marker", "Marker", run)]

    at = dt.datetime.fromisoformat(sys.argv[2])
    clock.set_source(lambda: at)
    plugins = [bundled_plugin(n) for n in ("business_hours", "sla_priority", "escalation_steps")]
    app = make_app(Path(sys.argv[1]), [*plugins, Dying()], time_zone="Europe/London")
    with app.app_context(), database.connection_context():
        sla.check(app.extensions["helpdesk"], at)
    print("finished without dying")
""")


def _policy() -> dict[str, Any]:
    policy = three_levels()
    for level in policy["levels"]:
        level["steps"].append({"step": "marker"})
    return policy


def _race(desk: Any, moment: dt.datetime, workers: int = 2) -> None:
    desk.clock.set(moment)
    barrier = threading.Barrier(workers, timeout=30)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with desk.app.app_context(), helpdesk.db.database.connection_context():
                barrier.wait()
                sla.check(desk.ctx, moment)
        except BaseException as error:  # reported in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors


def test_two_workers_and_a_crash_between_claim_and_step_run_each_level_once(desk, tmp_path):
    p = desk.p
    desk.policy(_policy())
    rows = [desk.log_p2(title=f"Orders {i}") for i in range(6)]
    # Everything is committed: a separate process sees it.
    if desk.app.extensions["helpdesk"].settings.database_url.startswith("sqlite"):
        helpdesk.db.database.close()
    script = tmp_path / "dying_worker.py"
    script.write_text(WORKER)
    died = subprocess.run([sys.executable, str(script), str(tmp_path), AT75.isoformat()], cwd=ROOT,
                          env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert died.returncode == 3, died.stdout + died.stderr
    assert "dying in INC-" in died.stdout
    helpdesk.db.database.connect(reuse_if_open=True)
    # Its claim died with it: no run, no level, no outbox row for the owner.
    assert EscalationRun.select().count() == 0
    assert {desk.fresh(i).escalation_level for i in rows} == {0}
    assert all(desk.deliveries(i, p.owner) == [] for i in rows)

    for moment in (AT75, AT75, AT90, DUE, DUE + dt.timedelta(minutes=1)):
        _race(desk, moment)

    for incident in rows:
        assert [(level, state) for level, _, _, state in desk.runs(incident)] == [
            (1, "done"), (2, "done"), (3, "done")], incident.reference
        notes = TimelineEntry.select().where((TimelineEntry.incident == incident.id)
                                             & (TimelineEntry.kind == "note")).order_by(TimelineEntry.id)
        markers = [e.body for e in notes]
        assert markers == ["marker level 1", "marker level 2", "marker level 3"]
        assert len(desk.deliveries(incident, p.owner)) == 1
        assert len(desk.deliveries(incident, p.lead)) == 1
        # One entry per action: assigning a new incident is its status entry (new -> assigned).
        moves = [e for e in TimelineEntry.select().where((TimelineEntry.incident == incident.id)
                                                         & (TimelineEntry.kind == "change"))
                 if e.field == "assignee" or (e.field == "status" and e.body.startswith("Assigned to"))]
        assert len(moves) == 2  # the owner's assignment to Database, then one to Network
        assert Incident.get_by_id(incident.id).assigned_team_id == p.network.id
