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
from helpdesk.models import Agent, EventDelivery, Incident, Lease, SlaClock, SlaEvent, TimelineEntry
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
        )
        env.update(extra)
        return env

    def start(self, *, hanging: str = "", queue_url: str = "",
              lease_seconds: int = LEASE_SECONDS) -> subprocess.Popen[str]:
        """A worker; ``hanging`` names a fault of tests/fault_plugin to hang in."""
        extra = {"HELPDESK_TEST_FAULT_DIR": str(self.faults), "HELPDESK_TEST_FAULTS": hanging,
                 "HELPDESK_LEASE_SECONDS": str(lease_seconds)}
        if queue_url:
            extra["HELPDESK_QUEUE_URL"] = queue_url
        process = subprocess.Popen(HELPDESK + ["worker"], env=self.env(**extra), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        self.processes.append(process)
        return process

    def enqueue(self, task: str, *args: Any) -> None:
        """Put one run of a task on the workers' queue, as the periodic scheduler does."""
        huey = SqliteHuey("helpdesk", filename=str(self.queue), results=False)
        getattr(register_tasks(self.app, huey, self.app.extensions["helpdesk"]), task)(*args)

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
    doomed = workers.start(hanging=task)
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
    workers.start()

    def released() -> bool:
        # One read: the new worker may take the dead holder's lease back between two.
        lease = Lease.get_or_none(Lease.name == task)
        return lease is None or lease.expires_at < now()

    wait_until(released, "the lease expired or was taken back")
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


def test_an_auto_close_killed_mid_pass_is_finished_by_the_next_worker(ctx, app, workers, incident_factory,
                                                                      personas):
    ids = []
    for n in range(3):
        incident = incident_factory(title=f"Printer jam {n}")
        with app.app_context():
            incidents.change_status(ctx, incident.id, personas.owner, "resolved", resolution_code="fixed",
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


def activity_lines(workers: Workers) -> list[dict[str, Any]]:
    log = workers.folder / "activity.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_an_event_hook_killed_mid_call_is_delivered_again_under_the_same_key(
        app, workers, incident_factory, monkeypatch):
    monkeypatch.setattr(event_outbox, "after_commit", lambda callback: None)  # only the outbox has it
    incident_factory(title="Badge reader dead")
    logged = EventDelivery.select().where(EventDelivery.plugin == "activity_log")
    [created] = [row for row in logged if row.event == "incident_created"]

    doomed = workers.start(hanging="event_hook")  # the activity log writes its line, then hangs
    workers.enqueue("fire_event", created.id)
    wait_until(lambda: (workers.faults / "event_hook.reached").exists() or doomed.poll() is not None,
               "the hook ran in the doomed worker")
    assert doomed.poll() is None, workers.stop_all()
    assert f":{doomed.pid}:" in EventDelivery.get_by_id(created.id).claimed_by
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    assert EventDelivery.get_by_id(created.id).state == "running", "claimed by a dead worker"

    workers.start()
    wait_until(lambda: EventDelivery.get_by_id(created.id).claimed_until is None
               or EventDelivery.get_by_id(created.id).claimed_until < now(), "the claim expired")
    workers.enqueue("sweep_outbox")
    wait_until(lambda: all(row.state == "done" for row in logged.clone()), "every event is delivered")

    by_key: dict[str, list[dict[str, Any]]] = {}
    for line in activity_lines(workers):
        by_key.setdefault(line["event_key"], []).append({k: v for k, v in line.items() if k != "at"})
    assert set(by_key) == {row.event_key for row in logged.clone()}, "every event, and nothing else"
    assert len(by_key[created.event_key]) == 2, "the line written before the kill, and the redelivery"
    assert all(len(lines) <= 2 and all(line == lines[0] for line in lines) for lines in by_key.values())


def test_events_committed_while_the_queue_is_down_are_delivered_once_it_is_back(
        app, workers, personas):
    import http.cookiejar
    import re
    import socket
    import urllib.request
    from urllib.parse import urlencode

    redis = pytest.importorskip("redis")
    queue = "redis://127.0.0.1:6379/13"
    try:
        redis.Redis.from_url(queue, socket_timeout=2).flushdb()
    except redis.exceptions.ConnectionError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("no Redis server on 127.0.0.1:6379")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # nothing listens here once the socket is closed
    web = subprocess.Popen(HELPDESK + ["serve", "--no-worker"], env=workers.env(
        HELPDESK_QUEUE_URL=f"redis://127.0.0.1:{closed}/13", HELPDESK_PORT=str(port)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    workers.processes.append(web)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(f"{base}/login") or web.poll() is not None, "the web server is up")
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    token = re.search(r'name="csrf-token" content="([^"]+)"',
                      opener.open(f"{base}/login", timeout=5).read().decode()).group(1)
    from argon2 import PasswordHasher

    from helpdesk.testing import PASSWORD

    # Hashed with the server's parameters: a login that rehashes ends its own session (people.py).
    Agent.update(password_hash=PasswordHasher().hash(PASSWORD)).where(Agent.id == personas.owner.id).execute()
    with opener.open(f"{base}/login", urlencode({"csrf_token": token, "username": personas.owner.username,
                                                  "password": PASSWORD}).encode(), timeout=5) as response:
        assert "/login" not in response.url
        # A login starts a new session, and with it a new CSRF token.
        token = re.search(r'name="csrf-token" content="([^"]+)"', response.read().decode()).group(1)
    titles = ["Queue down: scanner", "Queue down: plotter"]
    for title in titles:
        with opener.open(f"{base}/incidents/new", urlencode({
                "csrf_token": token, "title": title, "type": "incident", "impact": "medium",
                "urgency": "medium"}).encode(), timeout=10) as response:
            assert title in response.read().decode(), "the change committed and says so"
    logged = EventDelivery.select().where(EventDelivery.plugin == "activity_log")
    assert logged.count() >= 2 and all(row.state == "pending" for row in logged)

    workers.start(queue_url=queue)  # the queue is back: the worker's first sweep finds the events
    wait_until(lambda: all(row.state == "done" for row in logged.clone()), "every event is delivered")
    created = [line["title"] for line in activity_lines(workers) if line["event"] == "created"]
    assert sorted(created) == sorted(titles)


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def test_what_a_killed_worker_claimed_is_taken_back_when_the_next_starts_without_waiting_for_its_lease(
        app, workers, incident_factory, monkeypatch):
    monkeypatch.setattr(event_outbox, "after_commit", lambda callback: None)
    incident_factory(title="Phones dead")
    [created] = EventDelivery.select().where((EventDelivery.plugin == "activity_log")
                                             & (EventDelivery.event == "incident_created"))
    doomed = workers.start(hanging="event_hook", lease_seconds=600)
    workers.enqueue("fire_event", created.id)
    wait_until(lambda: (workers.faults / "event_hook.reached").exists() or doomed.poll() is not None,
               "the hook ran in the doomed worker")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    assert EventDelivery.get_by_id(created.id).claimed_until > now() + dt.timedelta(minutes=9)

    started = time.monotonic()
    workers.start(lease_seconds=600)
    wait_until(lambda: EventDelivery.get_by_id(created.id).state == "done", "the event is delivered", 60)
    assert time.monotonic() - started < 60, "seconds, not the 10-minute lease"


def test_a_worker_stopped_with_sigterm_finishes_the_task_in_flight(app, workers, incident_factory,
                                                                   monkeypatch):
    monkeypatch.setattr(event_outbox, "after_commit", lambda callback: None)
    incident_factory(title="Toner low")
    [created] = EventDelivery.select().where((EventDelivery.plugin == "activity_log")
                                             & (EventDelivery.event == "incident_created"))
    worker = workers.start(hanging="slow_hook")  # the hook takes 2 s
    workers.enqueue("fire_event", created.id)
    wait_until(lambda: (workers.faults / "slow_hook.reached").exists(), "the hook is running")
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)
    assert worker.returncode == 0
    assert EventDelivery.get_by_id(created.id).state == "done", "finished, not abandoned"
    assert [line["title"] for line in activity_lines(workers)] == ["Toner low"]


def test_serve_stopped_with_sigterm_refuses_new_connections_and_answers_the_request_in_flight(
        app, workers):
    import socket
    import threading
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = workers.env(HELPDESK_PORT=str(port), HELPDESK_TEST_FAULTS="slow_page",
                      HELPDESK_TEST_FAULT_DIR=str(workers.faults))
    server = subprocess.Popen(HELPDESK + ["serve", "--no-worker"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    workers.processes.append(server)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(f"{base}/healthz") or server.poll() is not None, "the server is up")
    answers: list[tuple[int, str]] = []

    def slow_request() -> None:
        with urllib.request.urlopen(f"{base}/fault/slow", timeout=20) as response:
            answers.append((response.status, response.read().decode()))

    in_flight = threading.Thread(target=slow_request)
    in_flight.start()
    wait_until(lambda: (workers.faults / "slow_page.reached").exists(), "the slow request is running")
    server.send_signal(signal.SIGTERM)
    wait_until(lambda: not _answers(f"{base}/healthz"), "new connections are refused", 5)
    assert in_flight.is_alive(), "the slow request is still being served"
    in_flight.join(timeout=20)
    assert answers == [(200, "done")]
    server.wait(timeout=20)
    assert server.returncode == 0


def test_under_socket_activation_a_restart_refuses_no_connection(app, workers):
    """The listening socket outlives the process (as systemd's helpdesk.socket holds it): a request
    sent while no server runs waits in the queue and is answered by the next process."""
    import socket
    import threading
    import urllib.request

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    launch = ("import os, sys; os.dup2(int(os.environ.pop('TEST_FD')), 3); "
              "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
              "os.execv(sys.executable, [sys.executable, '-m', 'helpdesk.cli', 'serve', '--no-worker'])")

    def start() -> subprocess.Popen[str]:
        env = workers.env(TEST_FD=str(listener.fileno()))
        process = subprocess.Popen([sys.executable, "-c", launch], env=env, pass_fds=[listener.fileno()],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        workers.processes.append(process)
        return process

    try:
        first = start()
        wait_until(lambda: _answers(f"{base}/healthz") or first.poll() is not None, "the first server")
        first.send_signal(signal.SIGTERM)
        output, _ = first.communicate(timeout=20)
        assert first.returncode == 0
        # It says where it really listens: systemd's socket, not the configured address.
        assert f"Helpdesk serving on {base} " in output, output
        answers: list[int] = []

        def request() -> None:
            with urllib.request.urlopen(f"{base}/healthz", timeout=30) as response:
                answers.append(response.status)

        waiting = threading.Thread(target=request)
        waiting.start()  # while no server runs: the connection waits in the socket's queue
        time.sleep(0.5)
        assert not answers
        start()
        waiting.join(timeout=30)
        assert answers == [200]
    finally:
        listener.close()


def test_the_queue_file_skips_a_disk_sync_per_task_and_a_worker_reads_what_the_web_queued(tmp_path):
    """The SQLite queue runs WAL with synchronous=NORMAL: a process crash loses nothing, and
    the outbox (not the queue) is the durable record that a power cut cannot lose."""
    from types import SimpleNamespace

    from helpdesk.tasks import create_huey

    settings = SimpleNamespace(queue_url=f"sqlite:///{tmp_path / 'queue.db'}", testing=False)
    web, worker = create_huey(settings), create_huey(settings)
    for huey in (web, worker):
        connection = huey.storage.conn
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL; Huey's default is FULL
    web.storage.enqueue(b"look at outbox row 7")
    assert worker.storage.dequeue() == b"look at outbox row 7"
    assert worker.storage.dequeue() is None
