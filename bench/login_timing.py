"""Benchmark: how long a failed login takes for an active, a deactivated and an unknown
user name (real argon2id parameters). The three should be alike: no timing oracle.

    .venv/bin/python bench/login_timing.py [--tries 20]
"""

from __future__ import annotations

import argparse
import logging
import re
import statistics
import tempfile
import time
from pathlib import Path

from helpdesk import people, schema
from helpdesk.app import create_app
from helpdesk.db import database
from helpdesk.models import Agent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tries", type=int, default=20)
    args = parser.parse_args()
    logging.getLogger("helpdesk.security").setLevel(logging.ERROR)  # the refusals, one per try
    folder = Path(tempfile.mkdtemp(prefix="helpdesk-bench-"))
    app = create_app({"instance_path": str(folder), "secret_key": "b" * 40, "testing": True,
                      "login_max_failures": 1000, "login_account_max_failures": 100000})
    with app.app_context():
        schema.upgrade(database)
        people.ensure_team("Service Desk")
        people.create_agent("active", "Active", "a long enough password")
        people.create_agent("gone", "Deactivated", "a long enough password")
        Agent.update(active=False).where(Agent.username == "gone").execute()
    client = app.test_client()
    token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/login").get_data(as_text=True))
    for name in ("active", "gone", "nobody"):
        times = []
        for n in range(args.tries):
            started = time.perf_counter()
            response = client.post("/login", data={"csrf_token": token.group(1), "username": name,
                                                   "password": f"wrong password {n}"},
                                   environ_base={"REMOTE_ADDR": f"10.0.{n // 250}.{n % 250}"})
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 401, response.status_code
        print(f"{name:8s} failed login: median {statistics.median(times):6.1f} ms "
              f"(min {min(times):6.1f}, max {max(times):6.1f}) over {args.tries}")


if __name__ == "__main__":
    main()
