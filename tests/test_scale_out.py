"""Growing past one machine, tested: the README's "Growing" deployment started on loopback.

Two web processes (``helpdesk serve --no-worker``) on two ports and a separate
``helpdesk worker``, on the test's database (PostgreSQL when
HELPDESK_TEST_DATABASE_URL is set) and a Redis queue of the test's own
(``redis-server`` on a free port, so it can be killed). Simulated agents
(threads, each with its own session and the same think time) add notes; every
note notifies a signed webhook served by the test. Meanwhile:

- the worker is SIGKILLed while a webhook delivery is in flight, and restarted;
- Redis stalls (SIGSTOP: connections open, no answer) for 6 s, then is SIGKILLed and
  restarted (nothing saved: the queue comes back empty);
- the database goes away for one web process (PostgreSQL: the TCP proxy between
  them refuses and cuts connections; SQLite: another program holds the write lock).

Afterwards: no 5xx but the database outage's 503s (each with ``Retry-After``,
and only while the database was away); no answer slower than
:data:`SLOWEST_ANSWER` — an outcome check: a queue that is away must not hold an
agent's request (the change is committed; the outbox sweep queues its work once
the queue is back); every answered note exists exactly once; every note's
webhook reached the receiver at least once, repeats only under the same
idempotency key with the same content.

``HELPDESK_TEST_SOAK_SECONDS`` sets the length (default 8 s; the faults are
spaced over it, the agents' count does not change).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.error
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest
from argon2 import PasswordHasher
from test_durable_work import wait_until
from test_soak import Agent_, Server, workers  # noqa: F401 - the fixture

from helpdesk.db import is_sqlite
from helpdesk.models import Agent, Delivery, TimelineEntry
from helpdesk.testing import PASSWORD

SECONDS = float(os.environ.get("HELPDESK_TEST_SOAK_SECONDS", "8"))
# The fifty in the long soak (CI); twenty in the short one a developer runs. SQLite
# serialises every write of every process through one lock: growing past one machine is the
# PostgreSQL deployment, so on SQLite the long soak runs twenty too (fifty there made writes
# wait past the busy wait on CI's loaded machine: 503s that were contention, not a fault).
AGENTS = int(os.environ.get("HELPDESK_TEST_SCALE_AGENTS", "50" if SECONDS >= 30 else "20"))
SQLITE_AGENTS = int(os.environ.get("HELPDESK_TEST_SCALE_AGENTS", "20"))
THINK_SECONDS = 1.0  # between one agent's actions, as a person reads before typing
# An agent's answer comes within this, whatever the queue does. A queue that is away costs one
# request at most one bounded attempt (helpdesk.tasks: 2 s connect, 3 s read), a database outage
# the busy wait (3 s), a loaded 2-core machine a few seconds more; a hang never ends (an agent's
# browser gives up: the client here waits 30 s).
SLOWEST_ANSWER = 10.0
BUSY_SECONDS = "3"  # the web processes' bounded wait for the database (a connection)
# On SQLite the product's default wait for the write lock: with a shorter one, the bursts of
# writes after a queue outage (every delivery the outbox held, at once, beside the agents'
# notes) made some writes wait past it on a loaded machine, 503s of contention, not of a fault.
SQLITE_BUSY_SECONDS = "10"


@pytest.fixture
def helpdesk_load_entry_points() -> bool:
    return True  # the webhook channel and the activity log, as in the processes the test starts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Redis:
    """A redis-server of the test's own, on a free port, with nothing persisted."""

    def __init__(self, folder: Path) -> None:
        self.port, self.folder = free_port(), folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)], stdout=subprocess.DEVNULL)
        wait_until(self.answers, "redis answers", 20)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def pause(self, seconds: float) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        time.sleep(seconds)
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    if subprocess.run(["which", "redis-server"], capture_output=True).returncode != 0:
        if os.environ.get("CI") == "true":
            raise AssertionError("redis-server is not installed")
        pytest.skip("no redis-server")
    server = Redis(tmp_path)
    server.start()
    yield server
    server.kill()


class Receiver:
    """The webhook's receiver: records every POST; when asked, holds one delivery in flight so
    that the worker can be killed mid-delivery."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.hold, self.in_flight, self.release = threading.Event(), threading.Event(), threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.hold.is_set():  # the next delivery stays in flight until released
                    receiver.hold.clear()
                    receiver.in_flight.set()
                    receiver.release.wait(30)
                time.sleep(0.05)
                receiver.received.append((self.headers["Idempotency-Key"], body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/helpdesk"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Proxy:
    """A TCP forwarder between one web process and PostgreSQL; :meth:`cut` makes the
    database unreachable for that process (new connections refused, open ones reset)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port = target, free_port()
        self.connections: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.open()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        assert self.listener is not None
        self.listener.close()
        for sock in self.connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self.connections = []


class TimedAgent(Agent_):
    """An agent that notes how long each answer took and what a 503 said, and thinks between
    actions."""

    def __init__(self, *args: Any, answers: list[tuple[float, float, int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answers = answers
        self.logged_in = False

    def login(self) -> None:
        """Fifty people logging in at once is its own (CPU-bound, password-hashing) burst: timed
        from after it."""
        super().login()
        self.logged_in = True

    def _open(self, url: str, data: dict[str, str] | None = None) -> tuple[int, str]:
        if data and "body" in data:
            time.sleep(THINK_SECONDS)  # typing the note
        started = time.monotonic()
        retry_after = ""
        try:
            with self.opener.open(url, urlencode(data).encode() if data else None, timeout=30) as reply:
                status, body = reply.status, reply.read().decode()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read().decode(errors="replace")
            retry_after = error.headers.get("Retry-After") or ""
        except (OSError, http.client.HTTPException):
            self._note(started, 0, "")
            raise
        self._note(started, status, retry_after)
        return status, body

    def _note(self, started: float, status: int, retry_after: str) -> None:
        if self.logged_in:
            self.answers.append((started, time.monotonic() - started, status, retry_after))


def test_two_web_processes_and_a_worker_on_redis_lose_nothing_through_a_worker_crash_a_redis_restart_and_a_database_outage(  # noqa: E501
        app, workers, redis, personas, incident_factory):  # noqa: F811 - the fixture
    incidents = [incident_factory(title=f"Scale out {n}") for n in range(5)]
    hasher = PasswordHasher()
    people = [personas.owner, personas.colleague, personas.assignee, personas.lead]
    for person in people:
        Agent.update(password_hash=hasher.hash(PASSWORD)).where(Agent.id == person.id).execute()
    receiver = Receiver()
    (workers.folder / "helpdesk.toml").write_text(
        "[plugins.webhook]\n"
        f'urls = ["{receiver.url}"]\nsecret = "scale-out"\nallow_private = ["127.0.0.1"]\ntimeout = 5\n')

    database_url = app.extensions["helpdesk"].settings.database_url
    proxy = None
    if not is_sqlite():
        parts = urlsplit(database_url)
        proxy = Proxy((parts.hostname or "127.0.0.1", parts.port or 5432))
        through_proxy = urlunsplit(parts._replace(netloc=parts.netloc.replace(
            f"{parts.hostname}:{parts.port or 5432}", f"127.0.0.1:{proxy.port}")))
        assert through_proxy != database_url
    webs = [Server(workers, ["serve", "--no-worker"], redis.url) for _ in range(2)]
    busy = SQLITE_BUSY_SECONDS if is_sqlite() else BUSY_SECONDS
    webs[0].workers = _Env(workers, HELPDESK_DATABASE_BUSY_SECONDS=busy)
    webs[1].workers = _Env(workers, HELPDESK_DATABASE_BUSY_SECONDS=busy,
                           **({"HELPDESK_DATABASE_URL": through_proxy} if proxy is not None else {}))
    worker = Server(_Env(workers, HELPDESK_DATABASE_BUSY_SECONDS=busy), ["worker"], redis.url)
    worker.start()
    for web in webs:
        web.start()

    answers: list[tuple[float, float, int, str]] = []
    lock = threading.Lock()

    def log(status: Any, what: str) -> None:
        pass

    stop = threading.Event()
    agents = [TimedAgent(webs[n % 2], people[n % len(people)].username, f"agent{n}",
                         incidents[n % len(incidents)].id, log, answers=answers)
              for n in range(SQLITE_AGENTS if is_sqlite() else AGENTS)]
    threads = [threading.Thread(target=agent.run, args=(stop,)) for agent in agents]
    for thread in threads:
        thread.start()
        time.sleep(0.1)  # people do not all log in in the same millisecond

    windows: dict[str, tuple[float, float]] = {}
    time.sleep(SECONDS / 4)
    receiver.hold.set()
    wait_until(receiver.in_flight.is_set, "a webhook delivery is in flight", 30)
    fault = time.monotonic()
    worker.stop(signal.SIGKILL)  # mid-delivery: the receiver has not answered yet
    receiver.release.set()
    worker.start()
    windows["worker killed"] = (fault, time.monotonic())

    time.sleep(SECONDS / 4)
    fault = time.monotonic()
    redis.pause(6)  # stalled, not gone: connections open, no answer (a hung host, a full disk)
    redis.kill()
    time.sleep(1)
    redis.start()  # empty: what was queued is gone, the outboxes still hold it
    windows["redis stalled, then restarted"] = (fault, time.monotonic())

    time.sleep(SECONDS / 4)
    fault = time.monotonic()
    if proxy is not None:
        proxy.cut()
        time.sleep(4.5)
        proxy.open()
    else:
        holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=10, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another program holds the write lock; writes wait
        time.sleep(4.5)
        holder.execute("ROLLBACK")
        holder.close()
    windows["database away"] = (fault, time.monotonic() + float(busy) + 1)  # a wait's end

    time.sleep(SECONDS / 4)  # and calm again
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)

    with lock:
        statuses = Counter(status for _, _, status, _ in answers)
        slowest = max(answers, key=lambda answer: answer[1])
    started = min(at for at, _, _, _ in answers)
    print(f"scale out {SECONDS:.0f}s, {len(agents)} agents: {dict(statuses)}; slowest answer "
          f"{slowest[1]:.2f}s at {slowest[0] - started:.1f}s; faults at "
          f"{ {name: (round(a - started, 1), round(b - started, 1)) for name, (a, b) in windows.items()} }")
    away = windows["database away"]
    # While the database is away, a request may wait its bounded busy wait more than once (one
    # per write); every one still answered (no client timeout, checked below).
    slow = [(round(at - started, 1), round(took, 2), status) for at, took, status, _ in answers
            if took > SLOWEST_ANSWER and not away[0] <= at <= away[1]]
    assert not slow, f"answers slower than {SLOWEST_ANSWER}s (start, seconds, status): {slow}"
    # A 503 is answered at the end of its wait: a request begun just before the outage has one too.
    errors = [(round(at - started, 1), round(took, 2), status) for at, took, status, _ in answers
              if status >= 500 and not (status == 503 and away[0] <= at + took <= away[1])]
    assert not errors, f"5xx outside the database outage (start, seconds, status): {errors}" + "".join(
        line for web in webs for line in web.output if "503" in line or "rror" in line)
    assert statuses[0] == 0, "no connection refused or reset: no web process stopped"
    assert all(retry_after.isdigit() and int(retry_after) > 0
               for _, _, status, retry_after in answers if status == 503), "every 503 says when to retry"
    if proxy is not None:
        assert statuses[503] > 0, "the web process behind the proxy noticed the outage"

    notes = Counter(entry.body for entry in TimelineEntry.select().where(
        (TimelineEntry.kind == "note") & TimelineEntry.body.startswith("agent")))
    answered = [body for agent in agents for body in agent.answered]
    assert not [body for body, n in notes.items() if n > 1], "no note written twice"
    assert set(answered) <= set(notes), "no answered note lost"
    assert len(answered) >= len(agents), "every agent got notes through"

    hooks = Delivery.select().where((Delivery.channel == "webhook")
                                    & (Delivery.event == "incident_commented"))
    try:
        wait_until(lambda: all(row.state == "sent" for row in hooks.clone()), "every webhook delivered", 90)
    except AssertionError:
        states = Counter((row.state, row.last_error[:80]) for row in hooks.clone())
        raise AssertionError(f"webhooks not delivered: {states}; the worker said:\n"
                             + "".join(line for line in worker.output
                                       if not line.startswith((" ", "Traceback")))[-6000:]) from None
    assert hooks.count() == sum(notes.values()), "one webhook per note"
    keys = {row.idempotency_key for row in hooks}
    by_key: dict[str, list[dict[str, Any]]] = {}
    for key, body in list(receiver.received):
        by_key.setdefault(key, []).append({k: v for k, v in body.items() if k != "sent_at"})
    assert keys <= set(by_key), "every note's webhook reached the receiver"
    assert all(all(copy == copies[0] for copy in copies) for copies in by_key.values()), \
        "repeats only under the same idempotency key, with the same content"
    repeated = sum(len(copies) - 1 for copies in by_key.values())
    print(f"scale out: {len(keys)} webhooks, {repeated} repeated")
    assert repeated >= 1, "the delivery the kill cut short was sent again (at least once, not at most)"
    for process in [*webs, worker]:
        process.stop(signal.SIGTERM)
        assert process.process.returncode == 0
    receiver.server.shutdown()
    receiver.server.server_close()
    if proxy is not None:
        proxy.cut()  # closes its sockets


class _Env:
    """The worker pool's environment with some variables replaced (one web process's own)."""

    def __init__(self, pool: Any, **extra: str) -> None:
        self._workers, self._extra = pool, extra

    def __getattr__(self, name: str) -> Any:
        return getattr(self._workers, name)

    def env(self, **extra: str) -> dict[str, str]:
        return self._workers.env(**{**extra, **self._extra})
