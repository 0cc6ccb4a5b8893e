"""Background work survives crashes: real `helpdesk worker` processes killed with SIGKILL.

A fault injector (``tests/fault_plugin``, loaded as an installed plugin only
by the processes these tests start) makes a worker hang in the middle of a
pass; the test kills it there, starts a new worker, and checks that the next
pass takes the dead worker's lease over and finishes the work.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from huey import SqliteHuey

from helpdesk import event_outbox, incidents
from helpdesk.clock import now
from helpdesk.models import EventDelivery, Incident, Lease, SlaClock, SlaEvent, TimelineEntry
from helpdesk.tasks import register_tasks

HELPDESK = [sys.executable, "-m", "helpdesk.cli"]
FAULT_PLUGIN = Path(__file__).resolve().parent / "fault_plugin"
LEASE_SECONDS = 2


@pytest.fixture
def helpdesk_load_entry_points() -> bool:
    return True  # the bundled SLA policy and activity log, as in the worker processes


class Workers:
    """Starts `helpdesk worker` processes on the test's database and a SQLite queue file."""

    def __init__(self, app: Flask, folder: Path) -> None:
        self.app = app
        self.folder = folder
        self.queue = folder / "queue.db"
        self.faults = folder / "faults"
        self.faults.mkdir()
        self.processes: list[subprocess.Popen[str]] = []

    def env(self, **extra: str) -> dict[str, str]:
        settings = self.app.extensions["helpdesk"].settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
        env.update(
            HELPDESK_INSTANCE=str(self.folder), HELPDESK_DATABASE_URL=settings.database_url,
            HELPDESK_QUEUE_URL=f"sqlite:///{self.queue}", HELPDESK_SECRET_KEY=settings.secret_key,
            HELPDESK_LEASE_SECONDS=str(LEASE_SECONDS), HELPDESK_WORKERS="4",
            PYTHONPATH=os.pathsep.join([str(FAULT_PLUGIN), *filter(None, [os.environ.get("PYTHONPATH")])]),
            **extra,
        )
        return env

    def start(self, *, hanging: bool) -> subprocess.Popen[str]:
        extra = {"HELPDESK_TEST_FAULT_DIR": str(self.faults)} if hanging else {}
        process = subprocess.Popen(HELPDESK + ["worker"], env=self.env(**extra), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        self.processes.append(process)
        return process

    def enqueue(self, task: str) -> None:
        """Put one run of a task on the workers' queue, as the periodic scheduler does."""
        register_tasks(self.app, SqliteHuey("helpdesk", filename=str(self.queue), results=False))[task]()

    def stop_all(self) -> list[str]:
        outputs = []
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
            try:
                outputs.append(process.communicate(timeout=30)[0] or "")
            except subprocess.TimeoutExpired:
                process.kill()
                outputs.append(process.communicate()[0] or "")
        return outputs


@pytest.fixture
def workers(app: Flask, tmp_path: Path) -> Iterator[Workers]:
    folder = tmp_path / "worker"
    folder.mkdir()
    pool = Workers(app, folder)
    yield pool
    pool.stop_all()


def wait_until(condition: Callable[[], Any], what: str, seconds: float = 40) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


def kill_mid_pass(workers: Workers, task: str) -> None:
    """Start a worker that hangs mid-pass, check it holds and renews the lease, SIGKILL it."""
    doomed = workers.start(hanging=True)
    workers.enqueue(task)
    wait_until(lambda: (workers.faults / f"{task}.reached").exists() or doomed.poll() is not None,
               f"the worker is in the middle of {task}")
    assert doomed.poll() is None, workers.stop_all()
    lease = Lease.get(Lease.name == task)
    assert f":{doomed.pid}:" in lease.holder
    time.sleep(LEASE_SECONDS * 1.5)  # longer than the lease: the live holder keeps renewing it
    assert Lease.get(Lease.name == task).expires_at > now()
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    assert Lease.get(Lease.name == task).holder == lease.holder  # left behind by the dead holder


def take_over(workers: Workers, task: str) -> None:
    """A new worker; once the dead holder's lease has expired, the next pass runs."""
    workers.start(hanging=False)
    wait_until(lambda: Lease.get_or_none(Lease.name == task) is None
               or Lease.get(Lease.name == task).expires_at < now(), "the lease expired")
    workers.enqueue(task)


def test_an_sla_check_killed_mid_pass_is_finished_by_the_next_worker(app, workers, incident_factory):
    for n in range(3):
        incident_factory(title=f"Payroll down {n}", impact="high", urgency="high")  # P1: 15 min
    # Every clock started two days ago and is due: three response and three resolution breaches.
    SlaClock.update(started_at=now() - dt.timedelta(days=2),
                    next_event_at=now() - dt.timedelta(minutes=1)).execute()

    kill_mid_pass(workers, "sla_check")
    assert SlaEvent.select().count() == 1, "the dead worker fired one breach, then hung"

    take_over(workers, "sla_check")
    wait_until(lambda: SlaEvent.select().where(SlaEvent.kind == "breach").count() == 6,
               "every clock's breach fired")
    wait_until(lambda: Lease.get_or_none(Lease.name == "sla_check") is None, "the lease is released")
    breaches = TimelineEntry.select().where((TimelineEntry.kind == "sla")
                                            & (TimelineEntry.new_value == "breach"))
    assert breaches.count() == 6, "each breach once, the first not repeated"


def test_an_auto_close_killed_mid_pass_is_finished_by_the_next_worker(app, workers, incident_factory,
                                                                      personas):
    ids = []
    for n in range(3):
        incident = incident_factory(title=f"Printer jam {n}")
        with app.app_context():
            incidents.change_status(incident.id, personas.owner, "resolved", resolution_code="fixed",
                                    note="Cleared the jam.")
        ids.append(incident.id)
    Incident.update(resolved_at=now() - dt.timedelta(days=10)).execute()  # resolved 10 days ago

    kill_mid_pass(workers, "auto_close")
    assert Incident.select().where(Incident.status == "closed").count() == 1

    take_over(workers, "auto_close")
    wait_until(lambda: Incident.select().where(Incident.status == "closed").count() == 3,
               "every resolved incident is closed")
    for incident_id in ids:
        closes = TimelineEntry.select().where((TimelineEntry.incident == incident_id)
                                              & (TimelineEntry.field == "status")
                                              & (TimelineEntry.new_value == "Closed"))
        assert closes.count() == 1, "each incident closed once"


def test_an_outbox_sweep_killed_mid_pass_is_finished_by_the_next_worker(app, workers, incident_factory,
                                                                        monkeypatch):
    # The queue was down when these changes committed: their events are in the outbox only.
    monkeypatch.setattr(event_outbox, "after_commit", lambda callback: None)
    titles = [f"VPN drops {n}" for n in range(3)]
    for title in titles:
        incident_factory(title=title)
    logged = EventDelivery.select().where(EventDelivery.plugin == "activity_log")
    assert logged.count() == 3 and all(row.state == "pending" for row in logged)

    kill_mid_pass(workers, "sweep_outbox")
    assert all(row.state == "pending" for row in logged), "the dead worker queued no event"

    take_over(workers, "sweep_outbox")
    wait_until(lambda: all(row.state == "done" for row in logged.clone()), "every event is delivered")
    lines = [json.loads(line) for line in (workers.folder / "activity.jsonl").read_text().splitlines()]
    assert sorted(line["title"] for line in lines if line["event"] == "created") == titles


def test_a_lease_has_one_holder_until_it_expires_and_then_the_next_takes_it_over(app):
    from helpdesk import leases

    start = now()
    assert leases.acquire("nightly", "worker-a", 60, at=start)
    assert not leases.acquire("nightly", "worker-b", 60, at=start + dt.timedelta(seconds=59))
    assert leases.acquire("nightly", "worker-a", 60, at=start + dt.timedelta(seconds=30))  # ours: renewed
    assert leases.acquire("nightly", "worker-b", 60, at=start + dt.timedelta(seconds=91))  # expired
    assert not leases.renew("nightly", "worker-a", 60), "the old holder learns it lost the lease"
    leases.release("nightly", "worker-a")  # not the holder: changes nothing
    assert Lease.get(Lease.name == "nightly").holder == "worker-b"
    leases.release("nightly", "worker-b")
    assert Lease.get_or_none(Lease.name == "nightly") is None
