"""Benchmark: what the queue navigation's counts cost as the pool grows (figures printed).

    .venv/bin/python bench/queue_counts.py [--incidents 100000] [--keep DIR] [--runs 30]

Seeds a SQLite file with ``helpdesk.seed`` (~45 % active, both pairs, SLA clocks), then,
for a few agents, times the one statement that counts every queue to at most
``queues.COUNT_LIMIT`` ("999+"), beside a plain ``COUNT(*)`` of each queue's whole active
set (what a naive navigation would run), and the ``/queue-nav`` fragment over the test
client with its query count. A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path


class Counter(logging.Handler):
    count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, tuple):  # a statement, not the pool's own log lines
            self.count += 1


def timed(function, runs: int) -> tuple[float, float]:
    """Median and worst wall time in milliseconds."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), max(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--keep", help="a folder to keep (and reuse) the seeded database in")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--limit", type=int, help="count to this many instead of queues.COUNT_LIMIT")
    args = parser.parse_args()

    from helpdesk import queues, schema, seed, sessions
    from helpdesk.app import create_app
    from helpdesk.db import database
    from helpdesk.models import Agent, Incident, Membership, Team

    if args.limit:
        queues.COUNT_LIMIT = args.limit
    folder = Path(args.keep or tempfile.mkdtemp(prefix="helpdesk-counts-"))
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'counts.db'}"
    app = create_app({"instance_path": str(folder), "database_url": url, "queue_url": "memory",
                      "secret_key": "bench-" + "k" * 40, "testing": True})
    with app.app_context():
        database.connect(reuse_if_open=True)
        schema.upgrade(database)
        state = app.extensions["helpdesk"]
        have = Incident.select().count()
        if have < args.incidents:
            started = time.perf_counter()
            seed.incidents(state, args.incidents - have, batch=10_000)
            seed.analyse()
            print(f"seeded {args.incidents - have:,} incidents in {time.perf_counter() - started:.0f} s")
        agent = Agent.get(Agent.username == "database0")
        desk = Team.get(Team.name == state.settings.service_desk_team)
        Membership.get_or_create(team=desk, agent=agent)  # a desk agent who also covers Database
        active = Incident.select().where(queues.ACTIVE).count()
        print(f"pool: {Incident.select().count():,} incidents, {active:,} active; "
              f"count limit {queues.COUNT_LIMIT}")
        viewers = [agent, Agent.get(Agent.username == "network1")]
        for viewer in viewers:
            teams = len(queues.team_ids(viewer))
            median, worst = timed(lambda v=viewer: queues.counts(v), args.runs)
            found = queues.counts(viewer)
            print(f"\n{viewer.username} ({teams} team{'s' if teams != 1 else ''}): bounded counts, one "
                  f"statement: median {median:.1f} ms, worst {worst:.1f} ms")
            print("  " + ", ".join(f"{name}={queues.count_label(value)}" for name, value in found.items()))
            for name in queues.QUEUES:
                condition = queues.queue_condition(name, viewer) & queues.ACTIVE
                full_median, _ = timed(lambda c=condition: Incident.select().where(c).count(),
                                       max(3, args.runs // 10))
                exact = Incident.select().where(condition).count()
                print(f"  {name:10s} bounded {queues.count_label(found[name]):>5s} | naive COUNT(*) "
                      f"{exact:>7,} in {full_median:7.1f} ms")

        client = app.test_client()
        with client.session_transaction() as session:
            session["sid"] = sessions.start(agent)
            session["_user_id"] = agent.get_id()
            session["_fresh"] = True
        logger = logging.getLogger("peewee")
        logger.setLevel(logging.DEBUG)
        counter = Counter()
        logger.addHandler(counter)
        first = client.get("/queue-nav")
        print(f"\nGET /queue-nav answers {first.status_code}")
        counter.count = 0
        median, worst = timed(lambda: client.get("/queue-nav"), args.runs)
        per_request = counter.count / args.runs
        logger.removeHandler(counter)
        print(f"\nGET /queue-nav (counts + saved views, whole request): median {median:.1f} ms, "
              f"worst {worst:.1f} ms, {per_request:.0f} queries per request")


if __name__ == "__main__":
    main()
