"""Benchmark: reports over 100k or 1M incidents, from the per-day aggregates and (for
comparison) from the incident facts.

    .venv/bin/python bench/reports.py --incidents 100000 [--keep /tmp/bench-reports]
    .venv/bin/python bench/reports.py --incidents 100000 \\
        --database-url postgresql://postgres@127.0.0.1:5432/bench_reports

(a PostgreSQL database given is wiped first unless --reuse: point it at a scratch database)

Incidents, their timelines and SLA clocks are bulk-loaded by helpdesk/seed.py over the
last two years (about 45 % active, more of the recent ones), a few per cent get
escalation runs; then `helpdesk reports rebuild` (facts and aggregates) is timed. Each
report figure is the median of five runs as a team lead (everything) and as an agent
(their own and their teams').
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def timed(label: str, work: Callable[[], Any], runs: int = 5) -> Any:
    samples, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        samples.append((time.perf_counter() - started) * 1000)
    print(f"  {label:58s} median {statistics.median(samples):9.1f} ms   (max {max(samples):.1f})", flush=True)
    return result


def escalation_runs(count: int) -> int:
    """Level 1 on ~4 % of incidents, level 2 on a quarter of those, level 3 on a tenth."""
    from helpdesk.db import database
    from helpdesk.models import EscalationRun, Incident

    rng = random.Random(23)
    rows = []
    for incident_id, created in Incident.select(Incident.id, Incident.created_at).tuples().iterator():
        if rng.random() < 0.04:
            for level in (1, 2, 3):
                if level > 1 and rng.random() > (0.25 if level == 2 else 0.4):
                    break
                rows.append({"incident": incident_id, "policy_name": "default", "version": 1,
                             "level": level, "cycle": 1, "at": created + dt.timedelta(hours=2 * level),
                             "manual": rng.random() < 0.1,
                             "state": "failed" if rng.random() < 0.02 else "done"})
    with database.atomic():
        for start in range(0, len(rows), 2000):
            EscalationRun.insert_many(rows[start:start + 2000]).execute()
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--database-url", help="PostgreSQL to use (wiped); SQLite in --keep by default")
    parser.add_argument("--keep", help="a folder for the SQLite database (reused when it has enough)")
    parser.add_argument("--reuse", action="store_true", help="keep what the database already holds")
    args = parser.parse_args()

    from helpdesk import reports, schema, seed
    from helpdesk.app import create_app
    from helpdesk.db import database, is_sqlite
    from helpdesk.models import Agent, EscalationRun, Incident, IncidentFact, ReportDay, ReportDuration, Team

    folder = Path(args.keep or tempfile.mkdtemp(prefix="helpdesk-reports-"))
    folder.mkdir(parents=True, exist_ok=True)
    url = args.database_url or f"sqlite:///{folder / 'reports.db'}"
    app = create_app({"instance_path": str(folder), "database_url": url, "queue_url": "memory",
                      "secret_key": "bench-" + "k" * 40, "testing": True})
    with app.app_context():
        database.connect(reuse_if_open=True)
        if args.database_url and not args.reuse:
            database.execute_sql("DROP SCHEMA public CASCADE")
            database.execute_sql("CREATE SCHEMA public")
        schema.upgrade(database)
        ctx = app.extensions["helpdesk"]
        have = Incident.select().count()
        if have < args.incidents:
            started = time.perf_counter()
            seed.incidents(ctx, args.incidents - have, batch=10_000,
                           progress=lambda n: print(f"    {n:,} seeded", flush=True) if n % 100_000 == 0
                           else None)
            print(f"seeded {args.incidents - have:,} incidents in {time.perf_counter() - started:.0f} s",
                  flush=True)
        if not EscalationRun.select().exists():  # also for a pool seeded by bench/web.py --keep
            started = time.perf_counter()
            print(f"{escalation_runs(args.incidents):,} escalation runs in "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
        if IncidentFact.select().count() != Incident.select().count():
            started = time.perf_counter()
            counted = reports.rebuild(ctx)
            print(f"reports rebuild (facts and aggregates): {counted:,} incidents in "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
            seed.analyse()
            database.execute_sql("ANALYZE" if is_sqlite() else "VACUUM ANALYZE incident_fact, report_day, "
                                 "report_duration, escalation_run")
        print(f"database: {'SQLite' if is_sqlite() else 'PostgreSQL'}; {Incident.select().count():,} "
              f"incidents, {IncidentFact.select().count():,} facts, {ReportDay.select().count():,} "
              f"report_day rows, {ReportDuration.select().count():,} report_duration rows", flush=True)

        lead = Agent.get_or_none(Agent.username == "benchlead") or Agent.create(
            username="benchlead", display_name="Lead", password_hash="x", role="lead")
        everything = reports.Scope.of(lead)
        agent = Agent.get(Agent.username == "network1")
        agent_scope = reports.Scope.of(agent)
        today = dt.date.today()
        quarter_end = dt.date(today.year, 3 * ((today.month - 1) // 3) + 1, 1) - dt.timedelta(days=1)
        quarter_start = dt.date(quarter_end.year, quarter_end.month - 2, 1)
        quarter = reports.Filters(quarter_start, quarter_end, by="team")
        year = reports.Filters(today - dt.timedelta(days=364), today, by="month")
        network = Team.get(Team.name == "Network")
        own_quarter = reports.Filters(quarter_start, quarter_end, team=network.id)
        at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        logged = IncidentFact.select().where(IncidentFact.created_day.between(
            quarter_start.isoformat(), quarter_end.isoformat())).count()
        print(f"last quarter: {quarter_start} to {quarter_end}, {logged:,} incidents logged", flush=True)

        print("from the aggregates (what the pages read)")
        timed("compliance by team, last quarter (lead)", lambda: reports.compliance(quarter, everything, at))
        timed("compliance by month, a year (lead)", lambda: reports.compliance(year, everything, at))
        timed("compliance, Network, last quarter (agent)",
              lambda: reports.compliance(own_quarter, agent_scope, at))
        timed(f"durations, last quarter (exact up to {reports.EXACT_PERCENTILES:,} met)",
              lambda: reports.durations(quarter, everything))
        timed("durations, last quarter (histogram percentiles forced)",
              lambda: reports.durations(quarter, everything, exact_limit=0))
        timed("logged vs resolved per day, last quarter", lambda: reports.flow(quarter, everything))
        timed("reopen rate, a year", lambda: reports.reopens(year, everything))
        timed("backlog by age per day, last quarter", lambda: reports.backlog(quarter, everything))
        timed("backlog by age per day, a year", lambda: reports.backlog(year, everything))
        timed("escalations per level, a year (from runs)",
              lambda: reports.escalations(year, everything, ctx.settings.time_zone))
        page = timed("the whole /reports page's queries, last quarter", lambda: (
            reports.compliance(quarter, everything, at), reports.durations(quarter, everything),
            reports.flow(quarter, everything), reports.reopens(quarter, everything)))
        assert page

        print("from the facts (the reference path, for comparison)", flush=True)
        runs = 3
        timed("compliance by team, last quarter", lambda: reports.compliance_from_facts(
            quarter, everything, at), runs)
        timed("durations, last quarter (exact percentiles)",
              lambda: reports.durations_from_facts(quarter, everything), runs)
        timed("logged vs resolved per day, last quarter",
              lambda: reports.flow_from_facts(quarter, everything), runs)

        exact = reports.durations_from_facts(quarter, everything)
        approx = reports.durations(quarter, everything, exact_limit=0)
        for key, found in approx.items():
            if found.p50 and exact[key].p50:
                print(f"  {key:22s} p50 {found.p50:9.0f} s vs exact {exact[key].p50:9.0f} "
                      f"({100 * (found.p50 / exact[key].p50 - 1):+.1f} %); p90 {found.p90:9.0f} vs "
                      f"{exact[key].p90:9.0f} ({100 * (found.p90 / exact[key].p90 - 1):+.1f} %)")
        incident_id = Incident.select(Incident.id).order_by(Incident.id.desc()).scalar()

        def one_change() -> None:
            with database.atomic():
                reports.refresh(ctx, incident_id)
        timed("one incident's fact + aggregate delta (in a change)", one_change)


if __name__ == "__main__":
    main()
