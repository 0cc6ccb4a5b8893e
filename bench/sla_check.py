"""Benchmark: one SLA check pass over 100,000 open incidents, with nothing due and with 1,000 due.

    .venv/bin/python bench/sla_check.py [--incidents 100000] [--due 1000]
    HELPDESK_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1/test .venv/bin/python bench/sla_check.py

(the PostgreSQL database given is wiped first: point it at a scratch database)

Goal: the pass with nothing due costs a constant number of queries and well
under 20 ms; 1,000 due events are processed in under 5 s. Rows are bulk
inserted (the domain path would take minutes), with clocks exactly as the
domain writes them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import tempfile
import time
from pathlib import Path

from helpdesk import people, schema, sla
from helpdesk.app import create_app
from helpdesk.clock import now
from helpdesk.db import database, is_sqlite
from helpdesk.events import suppressed
from helpdesk.models import Incident, SlaClock


class Counter(logging.Handler):
    count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def measure(label: str, state, at: dt.datetime) -> None:
    logger = logging.getLogger("peewee")
    logger.setLevel(logging.DEBUG)
    counter = Counter()
    logger.addHandler(counter)
    started = time.perf_counter()
    with suppressed():
        fired = sla.check(state, at)
    elapsed = time.perf_counter() - started
    logger.removeHandler(counter)
    print(f"{label:32s} fired={fired:5d} queries={counter.count:6d} time={elapsed * 1000:9.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=1_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="helpdesk-bench-"))
    config = {"instance_path": str(folder), "secret_key": "b" * 40, "testing": True}
    if os.environ.get("HELPDESK_BENCH_DATABASE_URL"):
        config["database_url"] = os.environ["HELPDESK_BENCH_DATABASE_URL"]
    from helpdesk_plugins import business_hours, sla_priority

    app = create_app(config, plugins=[business_hours, sla_priority], load_entry_points=False)
    with app.app_context():
        database.connect(reuse_if_open=True)
        if not is_sqlite():
            database.execute_sql("DROP SCHEMA public CASCADE")
            database.execute_sql("CREATE SCHEMA public")
        schema.upgrade(database)
        state = app.extensions["helpdesk"]
        desk = people.ensure_team("Service Desk")
        start = now()
        started = time.perf_counter()
        with database.atomic():
            for offset in range(0, args.incidents, 5000):
                size = min(5000, args.incidents - offset)
                Incident.insert_many([
                    {"title": f"Incident {offset + n}", "owner_team": desk.id, "status": "assigned",
                     "priority": 3, "created_at": start, "updated_at": start}
                    for n in range(size)]).execute()
            ids = [row.id for row in Incident.select(Incident.id).order_by(Incident.id)]
            due_later = start + dt.timedelta(days=3)
            for offset in range(0, len(ids), 5000):
                SlaClock.insert_many([
                    {"incident": incident_id, "target": "resolution", "policy": "priority",
                     "calendar": None, "target_seconds": 3 * 86400, "warnings": "0.5,0.75,0.9",
                     "started_at": start, "due_at": due_later,
                     "next_event_at": start + dt.timedelta(days=1, hours=12)}
                    for incident_id in ids[offset:offset + 5000]]).execute()
        print(f"seeded {len(ids)} open incidents with SLA clocks in {time.perf_counter() - started:.1f} s")

        at = start + dt.timedelta(hours=1)
        measure("pass, nothing due", state, at)
        measure("pass, nothing due (again)", state, at)
        # Make `--due` clocks breach-due: their targets ended an hour before `at`.
        due_ids = ids[:: max(1, len(ids) // args.due)][: args.due]
        with database.atomic():
            SlaClock.update(target_seconds=60, next_event_at=start, due_at=start + dt.timedelta(minutes=1)) \
                .where(SlaClock.incident.in_(due_ids)).execute()
        measure(f"pass, {len(due_ids)} due", state, at)
        measure("pass, after they fired", state, at)


if __name__ == "__main__":
    main()
