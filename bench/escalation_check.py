"""Benchmark: the escalation part of one SLA check pass over 100,000 open incidents under a
three-level policy, with nothing due and with 1,000 levels due.

    .venv/bin/python bench/escalation_check.py [--incidents 100000] [--due 1000]
    HELPDESK_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1/test \\
        .venv/bin/python bench/escalation_check.py

(the PostgreSQL database given is wiped first: point it at a scratch database)

Goal: with nothing due the pass reads one indexed query whatever the number of
open incidents; 1,000 due levels (each claimed, its steps run, its incident
rescheduled, in one transaction each) take a few seconds. Rows are bulk
inserted as the domain writes them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import tempfile
import time
from pathlib import Path

from helpdesk import people, schema
from helpdesk.app import create_app
from helpdesk.clock import now
from helpdesk.db import database, is_sqlite
from helpdesk.escalation import engine, policies
from helpdesk.events import suppressed
from helpdesk.models import EscalationRun, EscalationState, Incident, SlaClock


class Counter(logging.Handler):
    count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, tuple):  # a statement, not the pool's own log lines
            self.count += 1


def measure(label: str, state, at: dt.datetime) -> None:
    logger = logging.getLogger("peewee")
    logger.setLevel(logging.DEBUG)
    counter = Counter()
    logger.addHandler(counter)
    started = time.perf_counter()
    with suppressed():
        fired = engine.check(state, at)
    elapsed = time.perf_counter() - started
    logger.removeHandler(counter)
    print(f"{label:32s} levels={len(fired):5d} queries={counter.count:6d} time={elapsed * 1000:9.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=1_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="helpdesk-bench-"))
    config = {"instance_path": str(folder), "secret_key": "b" * 40, "testing": True}
    if os.environ.get("HELPDESK_BENCH_DATABASE_URL"):
        config["database_url"] = os.environ["HELPDESK_BENCH_DATABASE_URL"]
    from helpdesk_plugins import business_hours, escalation_steps, sla_priority

    app = create_app(config, plugins=[business_hours, sla_priority, escalation_steps],
                     load_entry_points=False)
    with app.app_context():
        database.connect(reuse_if_open=True)
        if not is_sqlite():
            database.execute_sql("DROP SCHEMA public CASCADE")
            database.execute_sql("CREATE SCHEMA public")
        schema.upgrade(database)
        state = app.extensions["helpdesk"]
        desk = people.ensure_team("Service Desk")
        people.create_team("Network")
        policies.save(state, {"name": "standard", "levels": [
            {"trigger": "fraction", "fraction": 0.75, "steps": [{"step": "notify_owner"}]},
            {"trigger": "fraction", "fraction": 0.9, "steps": [{"step": "notify_owner_team_leads"}]},
            {"trigger": "breach", "steps": [{"step": "reassign", "team": "Network"}]}]})
        start = now()
        started = time.perf_counter()
        later = start + dt.timedelta(days=2)
        with database.atomic():
            for offset in range(0, args.incidents, 5000):
                size = min(5000, args.incidents - offset)
                Incident.insert_many([
                    {"title": f"Incident {offset + n}", "owner_team": desk.id, "status": "assigned",
                     "priority": 3, "created_at": start, "updated_at": start}
                    for n in range(size)]).execute()
            ids = [row.id for row in Incident.select(Incident.id).order_by(Incident.id)]
            for offset in range(0, len(ids), 5000):
                chunk = ids[offset:offset + 5000]
                SlaClock.insert_many([
                    {"incident": incident_id, "target": "resolution", "policy": "priority",
                     "calendar": None, "target_seconds": 3 * 86400, "warnings": "0.5,0.75,0.9",
                     "started_at": start, "due_at": start + dt.timedelta(days=3),
                     "next_event_at": start + dt.timedelta(days=1, hours=12)}
                    for incident_id in chunk]).execute()
                EscalationState.insert_many([{"incident": incident_id, "next_at": later}
                                             for incident_id in chunk]).execute()
        print(f"seeded {len(ids)} open incidents with clocks and escalation states in "
              f"{time.perf_counter() - started:.1f} s")

        at = start + dt.timedelta(hours=1)
        measure("pass, nothing due", state, at)
        measure("pass, nothing due (again)", state, at)
        # `--due` incidents whose 8-hour target is 75 % used an hour after the start.
        due_ids = ids[:: max(1, len(ids) // args.due)][: args.due]
        with database.atomic():
            SlaClock.update(target_seconds=4800, due_at=start + dt.timedelta(seconds=4800)) \
                .where(SlaClock.incident.in_(due_ids)).execute()
            EscalationState.update(next_at=start).where(EscalationState.incident.in_(due_ids)).execute()
        measure(f"pass, {len(due_ids)} due", state, at)
        measure("pass, after they ran", state, at)
        print(f"runs recorded: {EscalationRun.select().count()}")


if __name__ == "__main__":
    main()
