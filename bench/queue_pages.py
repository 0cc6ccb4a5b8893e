"""Benchmark: queries and wall time of queue pages as the page size and the open pool grow.

    .venv/bin/python bench/queue_pages.py [--incidents 5000]

Prints one line per (queue, page size): the query count must not change with
the page size (no N+1), and the time should grow with the page, not the pool.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from helpdesk import incidents as domain
from helpdesk import people, schema
from helpdesk.app import create_app
from helpdesk.db import database, write_transaction
from helpdesk.events import suppressed
from helpdesk.queues import QUEUES


class Counter(logging.Handler):
    count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, tuple):  # a statement, not the pool's own log lines
            self.count += 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--incidents", type=int, default=5000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="helpdesk-bench-"))
    sizes = (5, 50, 200)
    for size in sizes:
        app = create_app({"instance_path": str(folder), "secret_key": "b" * 40, "testing": True,
                          "page_size": size})
        with app.app_context():
            database.connect(reuse_if_open=True)
            if size == sizes[0]:
                seed(app, args.incidents)
            measure(app, size)


def seed(app, count: int) -> None:
    schema.upgrade(database)
    state = app.extensions["helpdesk"]
    desk = people.ensure_team(state.settings.service_desk_team)
    dbt = people.create_team("Database")
    john = people.create_agent("john", "John", "bench-password", teams=[desk])
    people.create_agent("priya", "Priya", "bench-password", teams=[dbt])
    started = time.perf_counter()
    with write_transaction(), suppressed():
        for n in range(count):
            incident = domain.log_incident(state, title=f"Incident {n}", actor=john if n % 2 else None,
                                           service_desk=desk)
            if n % 5 == 0:
                domain.assign(state, incident.id, john, desk, john)
            elif n % 3:
                domain.assign(state, incident.id, john, dbt, None)
    print(f"seeded {count} incidents in {time.perf_counter() - started:.1f} s")


def measure(app, size: int) -> None:
    from helpdesk.models import Agent

    john = Agent.get(Agent.username == "john")
    client = app.test_client()
    from helpdesk import sessions

    with client.session_transaction() as session:
        session["sid"] = sessions.start(john)
        session["_user_id"] = john.get_id()
        session["_fresh"] = True
    logger = logging.getLogger("peewee")
    logger.setLevel(logging.DEBUG)
    for queue in QUEUES:
        counter = Counter()
        logger.addHandler(counter)
        started = time.perf_counter()
        response = client.get(f"/queues/{queue}")
        elapsed = (time.perf_counter() - started) * 1000
        logger.removeHandler(counter)
        rows = response.get_data(as_text=True).count("<tr>") - 1
        print(f"page_size={size:4d} queue={queue:11s} rows={rows:4d} queries={counter.count:3d} "
              f"time={elapsed:7.1f} ms")


if __name__ == "__main__":
    main()
