"""Benchmark: search, exports and reports over many incidents, beside the queue page.

    .venv/bin/python bench/insights.py [--incidents 100000]
    HELPDESK_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1/bench_h .venv/bin/python bench/insights.py
        [--seed-only | --reuse]

(the PostgreSQL database given is wiped first unless --reuse: point it at a scratch database)

Incidents, one public reply and one internal note each, and their SLA clocks are bulk
inserted (the domain path would take hours at this size) over the past year, with titles
and text drawn from a vocabulary of 2,000 words so that some words are rare and some are
everywhere; then the search index and the report facts are built by their own rebuild
functions (timed: that is what `helpdesk search rebuild` / `helpdesk reports rebuild` cost),
and each measurement is the median of five runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peewee import chunked

from helpdesk import exports, people, queues, reports, schema, search
from helpdesk.app import create_app
from helpdesk.db import database, is_sqlite
from helpdesk.models import Agent, Incident, SlaClock, Team, TimelineEntry

BATCH = 5000
COMMON = ["printer", "mail", "slow", "login", "error", "server", "laptop", "vpn", "password", "screen"]


def timed(label: str, work: Callable[[], Any], runs: int = 5) -> Any:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        times.append((time.perf_counter() - started) * 1000)
    print(f"  {label:52s} median {statistics.median(times):9.1f} ms   (min {min(times):.1f})")
    return result


def seed(ctx: Any, count: int, rng: random.Random) -> None:
    vocabulary = [f"w{n}x" for n in range(2000)] + COMMON * 20
    teams = [people.ensure_team("Service Desk")] + [people.create_team(f"Team {n}") for n in range(1, 6)]
    agents = [people.create_agent(f"agent{n}", f"Agent {n}", "correct-horse-battery", role="agent",
                                  teams=[teams[n % len(teams)]]) for n in range(20)]
    end = dt.datetime(2026, 11, 30, 12, 0)

    def text(n: int) -> str:
        return " ".join(rng.choice(vocabulary) for _ in range(n))

    started = time.perf_counter()
    for offset in range(0, count, BATCH):
        size = min(BATCH, count - offset)
        rows, entries, clocks = [], [], []
        first_id = offset + 1
        for n in range(size):
            created = end - dt.timedelta(seconds=rng.randint(0, 365 * 86400))
            resolved = rng.random() < 0.7
            status = "resolved" if resolved else rng.choice(["new", "assigned", "in_progress", "pending"])
            agent = rng.choice(agents)
            title = text(rng.randint(3, 7)) + (" payroll" if rng.random() < 0.001 else "")
            rows.append({"title": title[:200], "description": text(rng.randint(10, 40)), "status": status,
                         "priority": rng.randint(1, 4), "owner_team": teams[agent.id % len(teams)].id,
                         "owner_agent": agent.id, "created_at": created,
                         "updated_at": created + dt.timedelta(hours=2),
                         "resolved_at": (created + dt.timedelta(hours=rng.randint(1, 200))
                                         if resolved else None)})
            incident_id = first_id + n
            reply = text(rng.randint(5, 30)) + (" payroll is slow" if rng.random() < 0.002 else "")
            entries.append({"incident": incident_id, "kind": "reply", "body": reply, "actor": agent.id,
                            "at": created + dt.timedelta(minutes=30)})
            entries.append({"incident": incident_id, "kind": "note", "body": text(8), "actor": agent.id,
                            "at": created + dt.timedelta(minutes=40)})
            met = created + dt.timedelta(minutes=rng.randint(5, 600))
            for target, seconds in (("response", 4 * 3600), ("resolution", 3 * 86400)):
                done = resolved or target == "response"
                clocks.append({"incident": incident_id, "target": target, "policy": "priority",
                               "calendar": None, "target_seconds": seconds, "started_at": created,
                               "met_at": met if done else None,
                               "due_at": created + dt.timedelta(seconds=seconds)})
        with database.atomic():  # PostgreSQL takes at most 65,535 parameters a statement
            for model, items in ((Incident, rows), (TimelineEntry, entries), (SlaClock, clocks)):
                for part in chunked(items, 1000):
                    model.insert_many(part).execute()
    print(f"seeded {count} incidents, {2 * count} timeline entries, {2 * count} clocks "
          f"in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    search.rebuild()
    print(f"search rebuild: {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    reports.rebuild(ctx)
    print(f"reports rebuild: {time.perf_counter() - started:.0f} s")
    if is_sqlite():
        database.execute_sql("ANALYZE")
    else:
        database.execute_sql("VACUUM ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--reuse", action="store_true",
                        help="PostgreSQL: measure the database as an earlier run left it, no seeding")
    parser.add_argument("--seed-only", action="store_true", help="seed and build the indexes, then stop")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="helpdesk-bench-"))
    config = {"instance_path": str(folder), "secret_key": "b" * 40, "testing": True}
    if os.environ.get("HELPDESK_BENCH_DATABASE_URL"):
        config["database_url"] = os.environ["HELPDESK_BENCH_DATABASE_URL"]
    app = create_app(config, load_entry_points=False)
    with app.app_context():
        database.connect(reuse_if_open=True)
        ctx = app.extensions["helpdesk"]
        if args.reuse and not is_sqlite():
            args.incidents = Incident.select().count()
        else:
            if not is_sqlite():
                database.execute_sql("DROP SCHEMA public CASCADE")
                database.execute_sql("CREATE SCHEMA public")
            schema.upgrade(database)
            seed(ctx, args.incidents, random.Random(14))
            Agent.create(username="lead", display_name="Lead", password_hash="x", role="lead")
            if args.seed_only:
                return
        print(f"database: {database.obj.__class__.__name__}, {args.incidents} incidents")
        lead = Agent.get(Agent.username == "lead")
        agent = Agent.get(Agent.username == "agent1")

        print("queue page (for comparison)")
        timed("'All open', first page of 25", lambda: queues.page("open", lead, queues.Filters(), 25))

        print("search, first page of 25 (agent)")
        for text in ("payroll slow", "printer", "printer mail slow", '"payroll is slow"',
                     "printer -mail", "w17x status:pending", "team:\"Team 3\" vpn", "NEAR( \" * x" * 50):
            found = timed(f"{text[:40]!r}", lambda t=text: search.search(ctx, agent, t, size=25))
            print(f"    {len(found.hits)} shown{', more' if found.has_next else ''}")

        print("exports (CSV, streamed)")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        def queue_csv() -> int:
            incidents = exports.queue_incidents("open", lead, queues.Filters())
            return sum(len(chunk) for chunk in exports.csv_chunks(incidents))
        size = timed("'All open' queue", queue_csv, runs=1)
        open_count = Incident.select().where(Incident.status.in_(["new", "assigned", "in_progress",
                                                                    "pending"])).count()
        print(f"    {open_count} rows, {size / 1e6:.1f} MB; max RSS grew "
              f"{(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024:.1f} MB")

        def search_csv() -> int:
            return sum(len(chunk) for chunk in exports.csv_chunks(search.each(search.parse("printer"),
                                                                               agent)))
        size = timed("search 'printer'", search_csv, runs=1)
        print(f"    {size / 1e6:.1f} MB")

        print("reports (team lead, over the report facts)")
        everything = reports.Scope.of(lead)
        quarter = reports.Filters(dt.date(2026, 7, 1), dt.date(2026, 9, 30))
        year = reports.Filters(dt.date(2025, 12, 1), dt.date(2026, 11, 30), by="month")
        at = dt.datetime(2026, 11, 30, 12, 0)
        timed("compliance by team, last quarter", lambda: reports.compliance(quarter, everything, at))
        timed("compliance by month, a year", lambda: reports.compliance(year, everything, at))
        timed("durations (mean, p50, p90 x4), last quarter", lambda: reports.durations(quarter, everything))
        timed("logged vs resolved per day, last quarter", lambda: reports.flow(quarter, everything))
        timed("reopen rate, a year", lambda: reports.reopens(year, everything))
        team = Team.get(Team.name == "Team 3")
        agent_scope = reports.Scope.of(Agent.get(Agent.username == "agent3"))
        one_team = reports.Filters(dt.date(2026, 7, 1), dt.date(2026, 9, 30), team=team.id)
        timed("compliance, one team, last quarter (agent)",
              lambda: reports.compliance(one_team, agent_scope, at))


if __name__ == "__main__":
    main()
