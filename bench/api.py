"""Benchmark: JSON API requests per second and queries per request, in process.

    .venv/bin/python bench/api.py [--incidents 2000] [--requests 300]

Seeds an embedded SQLite database with ``--incidents`` open incidents, then
times each operation through the WSGI test client (token check, rate-limit
count, domain, JSON): listing a page of 25 and of 100, reading one incident,
logging one, and a repeated monitoring alert (the de-duplicated path).
Prints requests per second and SQL statements per request.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from helpdesk import incidents as domain
from helpdesk import people, schema
from helpdesk.api import tokens
from helpdesk.app import create_app
from helpdesk.db import database, write_transaction
from helpdesk.events import suppressed


class Counter(logging.Handler):
    count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, tuple):  # a statement, not the pool's own log lines
            self.count += 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--incidents", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="helpdesk-bench-"))
    app = create_app({"instance_path": str(folder), "secret_key": "b" * 40, "testing": True,
                      "queue_url": "memory"}, load_entry_points=False)
    ctx = app.extensions["helpdesk"]
    with app.app_context():
        database.connect(reuse_if_open=True)
        schema.upgrade(database)
        desk = people.ensure_team("Service Desk")
        agent = people.create_agent("bench", "Bench Agent", "bench-password", role="admin", teams=[desk])
        with suppressed(), write_transaction():
            for n in range(args.incidents):
                domain.log_incident(ctx, title=f"Incident {n}", actor=agent, service_desk=desk)
        secret = tokens.create(agent, "bench", ["read", "write"], rate_limit=tokens.MAX_RATE).secret
        alerts = tokens.create(agent, "monitor", ["alerts"], kind="service",
                               rate_limit=tokens.MAX_RATE).secret
        incident_id = 1
    client = app.test_client()
    bearer = {"Authorization": f"Bearer {secret}"}
    alert = {"fingerprint": "bench", "title": "Disk full", "severity": "warning"}
    client.post("/api/v1/alerts", json=alert, headers={"Authorization": f"Bearer {alerts}"})
    cases = [
        ("GET /incidents (25)", lambda: client.get("/api/v1/incidents", headers=bearer)),
        ("GET /incidents (100)", lambda: client.get("/api/v1/incidents?limit=100", headers=bearer)),
        ("GET /incidents/{id}", lambda: client.get(f"/api/v1/incidents/{incident_id}", headers=bearer)),
        ("POST /incidents", lambda: client.post("/api/v1/incidents", json={"title": "New"},
                                                headers=bearer)),
        ("POST /alerts (repeat)", lambda: client.post(
            "/api/v1/alerts", json=alert, headers={"Authorization": f"Bearer {alerts}"})),
    ]
    counter = Counter()
    logger = logging.getLogger("peewee")
    logger.addHandler(counter)
    logger.setLevel(logging.DEBUG)
    print(f"{args.incidents} open incidents, SQLite, {args.requests} requests each")
    for label, call in cases:
        counter.count = 0
        start = time.perf_counter()
        for _ in range(args.requests):
            response = call()
            assert response.status_code < 300, response.get_data(as_text=True)
        elapsed = time.perf_counter() - start
        print(f"{label:24} {args.requests / elapsed:8.0f} req/s  {counter.count / args.requests:5.1f} "
              "queries/request")


if __name__ == "__main__":
    main()
