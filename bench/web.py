"""Benchmark: the real app over HTTP at 1k, 100k (and 1M) incidents, beside a bare page.

    .venv/bin/python bench/web.py [--sizes 1000,100000] [--seconds 10] [--connections 8]
                                  [--workers 2] [--database postgresql://…/bench_d]
                                  [--keep DIR] [--pages open,create]

For each size it bulk-loads a realistic pool (``helpdesk.seed``: ~45 % active, both
pairs, timeline entries, SLA clocks from the bundled policy and calendar), serves the
app with gunicorn (``--workers`` sync workers; ``pip install -e '.[bench]'``) and drives it
with wrk (``apt-get install wrk``) for every queue, the incident page (random ids),
create (POST), a public reply (POST, to random active incidents), a search and the reports
page, logged in as an agent of two teams. A bare Flask + peewee page rendering
50 incident rows from the same database is measured in the same run. Queries per request
are counted in-process with the test client. Needs loopback only; each run is bounded
by ``--seconds``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.cookiejar
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PASSWORD = "bench-password"
AGENT = "database0"


# -- the bare page (gunicorn imports this module as ``web:bare_app()``) -------------------------


def bare_app(keep: bool = False):
    """Flask + peewee, nothing else: 50 incident rows rendered by Jinja, per request. It
    connects and closes per request as peewee's documentation shows; ``keep`` keeps the
    connection open instead, as the app does on SQLite (a second, stricter yardstick)."""
    import peewee
    from flask import Flask, render_template_string

    url = os.environ["BENCH_DATABASE_URL"]
    if url.startswith("sqlite:///"):
        db = peewee.SqliteDatabase(url[len("sqlite:///"):], pragmas={"journal_mode": "wal"})
    else:
        from playhouse.pool import PooledPostgresqlDatabase

        parts = urllib.parse.urlsplit(url)
        db = PooledPostgresqlDatabase(parts.path.lstrip("/"), user=parts.username, host=parts.hostname,
                                      port=parts.port)
    app = Flask("bare")
    page = ("<table>{% for id, title, status, updated in rows %}<tr><td>INC-{{ id }}</td>"
            "<td>{{ title }}</td><td>{{ status }}</td><td>{{ updated }}</td></tr>{% endfor %}</table>")

    @app.get("/")
    def rows() -> str:
        if keep:
            db.connect(reuse_if_open=True)
        with db.connection_context() if not keep else contextlib.nullcontext():
            found = db.execute_sql("SELECT id, title, status, updated_at FROM incident "
                                   "ORDER BY id DESC LIMIT 50").fetchall()
        return render_template_string(page, rows=found)

    return app


# -- seeding -----------------------------------------------------------------------------------


def bench_app(url: str, folder: Path, queue_url: str = "memory") -> Any:
    """The app on a pool, in-process (seeding, migrations, counting queries)."""
    from helpdesk.app import create_app

    return create_app({"instance_path": str(folder), "database_url": url, "queue_url": queue_url,
                       "secret_key": "bench-" + "k" * 40})


def prepare(size: int, url: str, folder: Path) -> dict[str, int]:
    """A fresh database with ``size`` incidents; returns the id range and the agent's id."""
    from helpdesk import people, schema, seed
    from helpdesk.db import database
    from helpdesk.models import Agent, Incident, Membership, Team

    if url.startswith("postgresql"):
        reset_postgres(url)
    app = bench_app(url, folder)
    with app.app_context():
        database.connect(reuse_if_open=True)
        schema.upgrade(database)
        state = app.extensions["helpdesk"]
        started = time.perf_counter()

        def progress(done: int) -> None:
            if done % 100_000 == 0 or done == size:
                print(f"  seeded {done:,} in {time.perf_counter() - started:.0f} s", flush=True)

        seed.incidents(state, size, batch=10_000, progress=progress)
        agent = Agent.get(Agent.username == AGENT)
        Agent.update(password_hash=people.hash_password(PASSWORD)).where(Agent.id == agent.id).execute()
        desk = Team.get(Team.name == state.settings.service_desk_team)
        Membership.get_or_create(team=desk, agent=agent)  # a desk agent who also covers Database
        first = Incident.select(Incident.id).order_by(Incident.id).scalar()
        last = Incident.select(Incident.id).order_by(Incident.id.desc()).scalar()
        database.close()
    return {"first": first, "last": last}


def upgrade(url: str, folder: Path, ids: dict[str, int]) -> bool:
    """Apply the migrations a kept pool has not had yet; False when the pool no longer holds
    the incidents its saved ids name (its database was dropped or wiped by hand)."""
    import peewee

    from helpdesk import schema
    from helpdesk.db import database
    from helpdesk.models import Incident

    app = bench_app(url, folder)
    with app.app_context():
        try:
            database.connect(reuse_if_open=True)
        except peewee.OperationalError:  # its database is gone
            return False
        applied = schema.upgrade(database)
        held = Incident.select().where(Incident.id.in_([ids["first"], ids["last"]])).count() == 2
        database.close()
    if applied:
        print(f"  applied {', '.join(applied)} to the kept pool", flush=True)
    return held


def reset_postgres(url: str) -> None:
    import psycopg

    parts = urllib.parse.urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            connection.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")


# -- serving and driving -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(target: str, env: dict[str, str], workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), "-w", str(workers), "-k", "sync", "-b", f"127.0.0.1:{port}",
         "-c", str(ROOT / "bench" / "gunicorn_settle.py"),
         "--pythonpath", str(ROOT / "bench"), "--log-level", "warning", target],
        env={**os.environ, **env}, cwd=ROOT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{base}/login" if "helpdesk" in target else base, timeout=2)
            return process, base
        except OSError:
            time.sleep(0.1)
    stop(process)
    raise SystemExit(f"{target} did not start")


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


def login(base: str) -> tuple[str, str]:
    """The session cookie and CSRF token of a real login."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/login").read().decode()
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    body = urllib.parse.urlencode({"username": AGENT, "password": PASSWORD, "csrf_token": token})
    opener.open(f"{base}/login", data=body.encode()).read()
    page = opener.open(f"{base}/queues/open").read().decode()
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    return "; ".join(f"{c.name}={c.value}" for c in jar), token


LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def wrk(url: str, cookie: str, seconds: int, connections: int, script: str | None = None) -> dict:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Cookie: {cookie}"]
    if script:
        command += ["-s", script]
    output = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    latency = {p: float(v) * scale[unit] for p, v, unit in LATENCY.findall(output)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "p50": latency.get("50"), "p99": latency.get("99"),
            "requests": int(re.search(r"(\d+) requests in", output).group(1)),
            "errors": int(errors.group(1)) if errors else 0}


REPLY = {"body": "Looking into it now; I will write again within the hour.", "visibility": "public"}


def lua_scripts(folder: Path, ids: dict[str, int], token: str, active: list[int]) -> dict[str, str]:
    incident = folder / "incident.lua"
    incident.write_text(
        f"math.randomseed(15)\nrequest = function()\n"
        f"  return wrk.format('GET', '/incidents/' .. math.random({ids['first']}, {ids['last']}))\nend\n")
    create = folder / "create.lua"
    body = urllib.parse.urlencode({"csrf_token": token, "title": "Printer on fire", "type": "incident",
                                   "impact": "medium", "urgency": "medium", "keep_ownership": "y"})
    create.write_text(
        f"wrk.method = 'POST'\nwrk.body = '{body}'\n"
        "wrk.headers['Content-Type'] = 'application/x-www-form-urlencoded'\n")
    # a public reply (mailed to the requester through the outbox) to a random active incident
    reply = folder / "reply.lua"
    body = urllib.parse.urlencode({"csrf_token": token, **REPLY})
    # (wrk.format with a headers table would send those headers alone: no session cookie)
    reply.write_text(
        f"math.randomseed(16)\nids = {{{', '.join(map(str, active))}}}\n"
        f"wrk.method = 'POST'\nwrk.body = '{body}'\n"
        "wrk.headers['Content-Type'] = 'application/x-www-form-urlencoded'\n"
        "request = function()\n"
        "  return wrk.format(nil, '/incidents/' .. ids[math.random(#ids)] .. '/comments')\nend\n")
    return {"incident": str(incident), "create": str(create), "reply": str(reply)}


def written(url: str, folder: Path) -> tuple[int, int]:
    """Incidents and replies in the pool: a POST page's run must add one per request."""
    from helpdesk.db import database
    from helpdesk.models import Incident, TimelineEntry

    app = bench_app(url, folder)
    with app.app_context():
        database.connect(reuse_if_open=True)
        replies = TimelineEntry.select().where(TimelineEntry.kind == "reply").count()
        found = (Incident.select().count(), replies)
        database.close()
    return found


def active_sample(url: str, folder: Path, count: int = 500) -> list[int]:
    """Ids of active incidents spread over the pool, for replies."""
    from helpdesk.db import database
    from helpdesk.models import ACTIVE_STATUSES, Incident

    app = bench_app(url, folder)
    with app.app_context():
        database.connect(reuse_if_open=True)
        step = max(1, Incident.select().count() // (count * 3))
        # (peewee's % on a field is LIKE: the remainder is spelled out)
        spread = Incident.id - (Incident.id / step) * step == 0
        found = [row.id for row in Incident.select(Incident.id).where(
            Incident.status.in_(ACTIVE_STATUSES) & spread).limit(count)]
        database.close()
    return found


def worker_rss(process: subprocess.Popen) -> list[int]:
    """Resident memory (MB) of the server's worker processes."""
    sizes = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        if re.search(rf"^PPid:\s+{process.pid}$", status, re.M):
            sizes.append(int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1)) // 1024)
    return sizes


# -- queries per request, in-process -----------------------------------------------------------


class Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        # peewee logs each statement as (sql, params); its pool also logs lines such as
        # "Returning … to pool", which are not statements
        if isinstance(record.msg, tuple):
            self.count += 1


def queries_per_request(url: str, folder: Path, paths: dict[str, str], ids: dict[str, int],
                        active: list[int]) -> dict[str, int]:
    from helpdesk.db import database

    # the queue as served: events wait in the SQLite queue file (no worker runs in the bench)
    app = bench_app(url, folder, queue_url=f"sqlite:///{folder / 'queue.db'}")
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    client.post("/login", data={"username": AGENT, "password": PASSWORD, "csrf_token": token})
    page = client.get("/queues/open").get_data(as_text=True)  # the login gave a new session
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    logger = logging.getLogger("peewee")
    logger.setLevel(logging.DEBUG)
    counts = {}
    for name, path in paths.items():
        client.get(path.replace("RANDOM", str(ids["first"])).replace("ACTIVE", str(active[0])))  # warm up
        counter = Counter()
        logger.addHandler(counter)
        if name.startswith("create"):
            response = client.post(path, data={"csrf_token": token, "title": "Printer on fire",
                                               "type": "incident", "impact": "medium", "urgency": "medium",
                                               "keep_ownership": "y"})
        elif name.startswith("reply"):
            response = client.post(path.replace("ACTIVE", str(active[0])),
                                   data={"csrf_token": token, **REPLY})
        else:
            response = client.get(path.replace("RANDOM", str((ids["first"] + ids["last"]) // 2)))
        if response.status_code >= 400:
            raise SystemExit(f"{name}: {response.status_code} from {path}; its queries were not counted")
        logger.removeHandler(counter)
        counts[name] = counter.count
    logger.setLevel(logging.WARNING)
    if not database.is_closed():
        database.close()
    return counts


def main() -> None:
    from helpdesk.queues import QUEUES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database", default="sqlite", help="sqlite, or a PostgreSQL URL (wiped)")
    parser.add_argument("--keep", type=Path, help="keep each seeded pool (SQLite: its file here; "
                        "PostgreSQL: a database per size, the named one's name + _SIZE) and reuse it")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure each page and the bare page this many times, alternating, and "
                             "report the round with the median share (a machine whose speed swings)")
    parser.add_argument("--pages", help="only the pages whose names contain one of these (comma-separated)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be 1 or more")
    if shutil.which("wrk") is None or not (BIN / "gunicorn").exists():
        raise SystemExit("needs wrk (apt-get install wrk) and gunicorn (pip install -e '.[bench]')")
    paths = {f"queue {name}": f"/queues/{name}" for name in QUEUES}
    paths["incident page"] = "/incidents/RANDOM"
    paths["create (POST)"] = "/incidents/new"
    paths["reply (POST)"] = "/incidents/ACTIVE/comments"
    paths["search"] = "/search?q=printer+jam"
    paths["reports"] = "/reports"
    if args.pages:
        paths = {name: path for name, path in paths.items() if any(p in name for p in args.pages.split(","))}
    results: dict[int, dict[str, dict]] = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        sqlite = args.database == "sqlite"
        url = args.database
        if args.keep:
            # a kept PostgreSQL pool lives in its own database per size, beside the one named
            folder = args.keep / (f"pool-{size}" if sqlite else f"pool-pg-{size}")
            folder.mkdir(parents=True, exist_ok=True)
            if not sqlite:
                parts = urllib.parse.urlsplit(url)
                url = urllib.parse.urlunsplit(parts._replace(path=f"{parts.path}_{size}"))
        else:
            folder = Path(tempfile.mkdtemp(prefix=f"helpdesk-web-{size}-"))
        if sqlite:
            url = f"sqlite:///{folder / 'helpdesk.db'}"
        print(f"{size:,} incidents ({url.split(':')[0]}):", flush=True)
        ready = folder / "ids.txt"
        ids = {}
        if args.keep and ready.exists():
            first, last = map(int, ready.read_text().split())
            ids = {"first": first, "last": last}
            # a pool kept from an older checkout gets this one's migrations
            if not upgrade(url, folder, ids):
                print("  the kept pool no longer holds its incidents: seeding it again", flush=True)
                ids = {}
        if not ids:
            ids = prepare(size, url, folder)
            ready.write_text(f"{ids['first']} {ids['last']}")
        active = active_sample(url, folder)
        counts = queries_per_request(url, folder, paths, ids, active)
        env = {"HELPDESK_INSTANCE": str(folder), "HELPDESK_DATABASE_URL": url,
               "HELPDESK_SECRET_KEY": "bench-" + "k" * 40, "BENCH_DATABASE_URL": url}
        rows: dict[str, dict] = {}
        # Both servers run side by side and wrk drives one at a time, alternating: on a shared
        # machine the bare page measured right after each page is the fair yardstick.
        bare, bare_base = serve("web:bare_app()", env, args.workers)
        server, base = serve("helpdesk.app:create_app()", env, args.workers)
        try:
            cookie, token = login(base)
            scripts = lua_scripts(folder, ids, token, active)
            for name, path in paths.items():
                script = scripts["incident"] if name == "incident page" else (
                    scripts["create"] if name.startswith("create") else (
                        scripts["reply"] if name.startswith("reply") else None))
                target = base + path.replace("RANDOM", str(ids["first"])).replace("ACTIVE", str(active[0]))
                wrk(target, cookie, 2, args.connections, script)  # warm up
                rounds = []
                for _ in range(args.rounds):
                    before = written(url, folder) if "POST" in name else None
                    run = wrk(target, cookie, args.seconds, args.connections, script)
                    if before is not None:  # a 303 to the login page would pass for success
                        added = [a - b for a, b in zip(written(url, folder), before, strict=True)]
                        landed = added[0] if name.startswith("create") else added[1]
                        if landed < run["requests"]:
                            raise SystemExit(f"{name}: {run['requests']} requests wrote {landed}")
                    run["bare"] = wrk(bare_base + "/", "x=1", args.seconds, args.connections)["rps"]
                    rounds.append(run)
                # the round whose share of the bare page is the median: one consistent set of figures
                # (each create round adds incidents: later rounds run on a slightly larger pool)
                rounds.sort(key=lambda run: run["rps"] / max(run["bare"], 1e-9))
                rows[name] = rounds[len(rounds) // 2]
                rows[name]["queries"] = counts[name]
            rss = worker_rss(server)
        finally:
            stop(server)
            stop(bare)
        kept, kept_base = serve("web:bare_app(keep=True)", env, args.workers)
        try:
            kept_rate = wrk(kept_base + "/", "x=1", args.seconds, args.connections)["rps"]
        finally:
            stop(kept)
        results[size] = rows
        print(f"{'page':24} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'queries':>7} {'non-2xx':>7} "
              f"{'bare req/s':>10} {'of bare':>7}")
        for name, row in rows.items():
            print(f"{name:24} {row['rps']:7.0f} {row['p50'] or 0:7.1f} {row['p99'] or 0:7.1f} "
                  f"{row['queries']:>7} {row['errors']:>7} {row['bare']:10.0f} "
                  f"{row['rps'] / max(row['bare'], 1e-9):7.0%}")
        print(f"RSS per web worker: {', '.join(f'{mb} MB' for mb in rss)}; the bare page keeping its "
              f"connection: {kept_rate:.0f} req/s\n", flush=True)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    sizes = list(results)
    print("req/s, p99 ms and share of the bare page's rate by size: " + " | ".join(f"{s:,}" for s in sizes))
    for name in next(iter(results.values())):
        by_size = [results[s][name] for s in sizes]
        cells = " | ".join(f"{row['rps']:.0f}, {row['p99'] or 0:.0f} ms, "
                           f"{row['rps'] / max(row['bare'], 1e-9):.0%}" for row in by_size)
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
