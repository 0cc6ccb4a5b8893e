"""Benchmark: inbound mail — new messages, threaded replies and duplicates, received in-process.

    .venv/bin/python bench/mail_in.py [--messages 300]
    HELPDESK_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1/test_g .venv/bin/python bench/mail_in.py

(the PostgreSQL database given is wiped first: point it at a scratch database)

Prints messages per second and the mean time per message for each kind. It
measures receive() as `helpdesk mail-in` and the IMAP poller call it, without
the process start-up of the MTA pipe (printed separately, once).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

from helpdesk import people, schema
from helpdesk.app import create_app
from helpdesk.db import database
from helpdesk.mail.receive import receive


def mail(number: int, *, reply_to: str | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = f"Customer {number % 50} <customer{number % 50}@example.org>"
    message["To"] = "help@example.com"
    message["Subject"] = f"Problem {number}" if reply_to is None else f"Re: Problem {number}"
    message["Message-ID"] = f"<bench-{number}-{'r' if reply_to else 'n'}@example.org>"
    if reply_to:
        message["In-Reply-To"] = reply_to
    body = f"Details of problem {number}.\n\n" + "Some more words. " * 40
    if reply_to:
        body = f"Still broken.\n\nOn Mon, Helpdesk wrote:\n> {body}"
    message.set_content(body)
    message.add_alternative(f"<p>{body}</p>", subtype="html")
    return bytes(message)


def timed(label: str, ctx, raws: list[bytes]) -> list:
    started = time.perf_counter()
    results = [receive(ctx, raw) for raw in raws]
    elapsed = time.perf_counter() - started
    print(f"{label:22s} {len(raws):5d} messages  {len(raws) / elapsed:7.1f} msg/s  "
          f"{elapsed / len(raws) * 1000:7.1f} ms each")
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="helpdesk-bench-"))
    config = {"instance_path": str(folder), "secret_key": "b" * 40, "testing": True,
              "support_address": "help@example.com", "mail_auto_reply_limit": 1000}
    if os.environ.get("HELPDESK_BENCH_DATABASE_URL"):
        config["database_url"] = os.environ["HELPDESK_BENCH_DATABASE_URL"]
        from helpdesk.testing import reset_postgres

        reset_postgres(config["database_url"])
    logging.getLogger("helpdesk.sla").setLevel(logging.ERROR)  # no SLA plugin loaded here: quiet
    app = create_app(config, load_entry_points=False)
    ctx = app.extensions["helpdesk"]
    with app.app_context(), database.connection_context():
        schema.upgrade(database)
        people.ensure_team("Service Desk")
        created = timed("new incidents", ctx, [mail(n) for n in range(args.messages)])
        replies = [mail(n, reply_to=f"<bench-{n}-n@example.org>") for n in range(args.messages)]
        assert all(r.outcome == "created" for r in created)
        # Replies thread through the stored Message-ID of the first message.
        answered = timed("threaded replies", ctx, replies)
        assert all(r.outcome == "replied" for r in answered), {r.outcome for r in answered}
        timed("duplicates", ctx, replies)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    env.update(HELPDESK_INSTANCE=str(folder), HELPDESK_SECRET_KEY="b" * 40, HELPDESK_QUEUE_URL="memory",
               HELPDESK_DATABASE_URL=config.get("database_url", f"sqlite:///{folder / 'helpdesk.db'}"))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "helpdesk.cli", "mail-in"], input=mail(10**6), env=env,
                          capture_output=True, check=False)
    print(f"helpdesk mail-in (one process, start-up included): {time.perf_counter() - started:.2f} s, "
          f"exit {done.returncode}")


if __name__ == "__main__":
    main()
