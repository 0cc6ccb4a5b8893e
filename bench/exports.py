"""Benchmark: a whole queue exported as CSV and XLSX — rows per second and peak memory.

    .venv/bin/python bench/exports.py [--incidents 100000] [--pool DIR] [--queue open]

Seeds a pool with ``helpdesk.seed`` (or reuses one kept by ``bench/web.py --keep DIR``:
pass ``--pool DIR/pool-100000``) and streams the queue as the download route does
(``exports.queue_incidents`` → ``csv_chunks`` / ``xlsx_chunks``), as the agent of two teams
that ``bench/web.py`` logs in as, into /dev/null. Each format runs in a fresh process, so
its peak RSS is the export's own (and its CPU seconds, steadier than
the wall time on a shared machine); the RSS before the export is printed beside it, and the
SQL statements per 500-row batch show that nothing is loaded row by row.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from web import AGENT, prepare


def child(folder: Path, queue: str, fmt: str) -> dict:
    from helpdesk import exports, queues
    from helpdesk.app import create_app
    from helpdesk.db import database
    from helpdesk.models import Agent

    app = create_app({"instance_path": str(folder), "database_url": f"sqlite:///{folder / 'helpdesk.db'}",
                      "queue_url": "memory", "secret_key": "bench-" + "k" * 40})
    statements = []

    class Counter(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if isinstance(record.msg, tuple):  # a statement, not the pool's own log lines
                statements.append(1)

    with app.app_context():
        database.connect(reuse_if_open=True)
        agent = Agent.get(Agent.username == AGENT)
        next(iter(exports.queue_incidents(queue, agent, queues.Filters(), batch=50)), None)  # warm up
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        logger = logging.getLogger("peewee")
        logger.setLevel(logging.DEBUG)
        logger.addHandler(Counter())
        started, cpu = time.perf_counter(), time.process_time()
        counted = [0]

        def counting() -> Iterator[Any]:
            for incident in exports.queue_incidents(queue, agent, queues.Filters()):
                counted[0] += 1
                yield incident

        incidents = counting()
        chunks = exports.csv_chunks(incidents) if fmt == "csv" else exports.xlsx_chunks(incidents)
        size = 0
        with open("/dev/null", "wb") as sink:
            for chunk in chunks:
                data = chunk.encode() if isinstance(chunk, str) else chunk
                size += len(data)
                sink.write(data)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        logger.setLevel(logging.WARNING)
    return {"rows": counted[0], "seconds": seconds, "cpu": cpu, "bytes": size, "statements": len(statements),
            "rss_before": before, "rss_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--pool", type=Path, help="a folder with a seeded helpdesk.db to reuse")
    parser.add_argument("--queue", default="open")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.pool, args.queue, args.child)))
        return
    folder = args.pool
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="helpdesk-exports-"))
        prepare(args.incidents, f"sqlite:///{folder / 'helpdesk.db'}", folder)
    print(f"queue {args.queue!r} of the pool in {folder}")
    print(f"{'format':7} {'rows':>9} {'seconds':>8} {'rows/s':>8} {'CPU s':>6} {'MB':>6} {'SQL':>5} "
          f"{'RSS before':>10} {'peak RSS':>9}")
    for fmt in ("csv", "xlsx"):
        output = subprocess.run([sys.executable, __file__, "--pool", str(folder), "--queue", args.queue,
                                 "--child", fmt], capture_output=True, text=True, check=True).stdout
        row = json.loads(output.strip().splitlines()[-1])
        print(f"{fmt:7} {row['rows']:9,} {row['seconds']:8.1f} {row['rows'] / row['seconds']:8,.0f} "
              f"{row['cpu']:6.1f} "
              f"{row['bytes'] / 1e6:6.1f} {row['statements']:5} {row['rss_before']:7} MB "
              f"{row['rss_peak']:6} MB", flush=True)


if __name__ == "__main__":
    main()
