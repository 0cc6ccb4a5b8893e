"""Benchmark: webhook deliveries per second through the real outbox and a real Huey consumer.

    .venv/bin/python bench/webhook_deliveries.py [--count 10000] [--workers 2 8 16 32]

A loopback receiver answers every POST after 50 ms. For each worker count,
``--count`` outbox rows are queued on the embedded SQLite queue and a
thread consumer (as `helpdesk serve` runs it) delivers them; the script prints
deliveries per second. Nothing here waits in a web request: the outbox row is
all a request writes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from helpdesk import people, schema
from helpdesk.app import create_app
from helpdesk.clock import now
from helpdesk.db import database
from helpdesk.models import Delivery, Incident
from helpdesk_plugins import webhook_channel


class SlowReceiver(BaseHTTPRequestHandler):
    received = 0
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(0.05)
        with SlowReceiver.lock:
            SlowReceiver.received += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def run(count: int, workers: int, url: str) -> float:
    folder = Path(tempfile.mkdtemp(prefix="helpdesk-bench-"))
    app = create_app({"instance_path": str(folder), "secret_key": "b" * 40, "workers": workers,
                      "plugins": {"webhook": {"allow_private": ["127.0.0.1"], "timeout": 5}}},
                     plugins=[webhook_channel], load_entry_points=False)
    state = app.extensions["helpdesk"]
    with app.app_context(), database.connection_context():
        schema.upgrade(database)
        desk = people.ensure_team("Service Desk")
        incident = Incident.create(title="Bench", owner_team=desk)
        stamp = now() - dt.timedelta(seconds=1)
        with database.atomic():
            for offset in range(0, count, 2000):
                Delivery.insert_many([
                    {"channel": "webhook", "recipient": url, "event": "bench", "incident": incident.id,
                     "subject": f"bench {n}", "text": "", "data": "{}", "idempotency_key": f"bench-{n}",
                     "next_attempt_at": stamp, "created_at": stamp}
                    for n in range(offset, min(count, offset + 2000))]).execute()
        ids = [row.id for row in Delivery.select(Delivery.id)]
    for delivery_id in ids:
        state.tasks.deliver(delivery_id)
    consumer = state.huey.create_consumer(workers=workers, worker_type="thread", periodic=False,
                                          initial_delay=0.01, max_delay=0.1)
    started = time.perf_counter()
    for _, thread in consumer.worker_threads:
        thread.start()
    with app.app_context(), database.connection_context():
        while Delivery.select().where(Delivery.state == "sent").count() < count:
            time.sleep(0.05)
    elapsed = time.perf_counter() - started
    consumer.stop_flag.set()
    for _, thread in consumer.worker_threads:
        thread.join(timeout=10)
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 8, 16, 32])
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    for workers in args.workers:
        rate = run(args.count, workers, url)
        print(f"workers={workers:3d} deliveries={args.count} rate={rate:7.1f}/s")
    server.shutdown()


if __name__ == "__main__":
    main()
