"""Leases in the database: periodic work that no crash can stop for good.

A lease names one piece of work (``sla_check``, ``auto_close``,
``sweep_outbox``), who holds it and until when. It is taken by a conditional
UPDATE (free, expired, or already ours) or an INSERT that ignores a
conflict, and counts only if exactly one row changed, so two workers never
both win. While the work runs a thread renews it; at the end it is released.
A worker killed mid-pass (``kill -9``, OOM, power cut) stops renewing, and
the next pass after the expiry takes the lease over and does the work: unlike
a lock in the queue's storage, nothing is left behind that only a person can
clear. The work itself stays idempotent, so a takeover from a holder that was
merely slow repeats nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import peewee

from helpdesk.clock import now
from helpdesk.db import database, write_transaction
from helpdesk.models import Lease, PeriodicRun

logger = logging.getLogger(__name__)
T = TypeVar("T")
_process: tuple[int, str] | None = None


def holder_id() -> str:
    """This process's name as a holder: host, pid and a random part (pids are reused)."""
    global _process
    if _process is None or _process[0] != os.getpid():
        _process = (os.getpid(), f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    return _process[1]


def acquire(name: str, holder: str, seconds: int, at: dt.datetime | None = None) -> bool:
    """Take lease ``name`` for ``seconds`` if it is free, expired or already ours."""
    at = at or now()
    expires = at + dt.timedelta(seconds=seconds)
    with write_transaction():
        taken = Lease.update(holder=holder, acquired_at=at, expires_at=expires).where(
            (Lease.name == name) & ((Lease.expires_at <= at) | (Lease.holder == holder))
        ).execute()
        if taken == 1:
            return True
        inserted = Lease.insert(name=name, holder=holder, acquired_at=at, expires_at=expires) \
            .on_conflict_ignore().as_rowcount().execute()
        return inserted == 1


def renew(name: str, holder: str, seconds: int) -> bool:
    """Push our lease's expiry on; False if it is no longer ours (it expired and was taken)."""
    expires = now() + dt.timedelta(seconds=seconds)
    return Lease.update(expires_at=expires).where(
        (Lease.name == name) & (Lease.holder == holder)).execute() == 1


def release(name: str, holder: str) -> None:
    Lease.delete().where((Lease.name == name) & (Lease.holder == holder)).execute()


def _keep_renewing(name: str, holder: str, seconds: int, stop: threading.Event) -> None:
    interval = max(seconds / 3, 0.2)
    while not stop.wait(interval):
        try:
            with database.connection_context():
                if not renew(name, holder, seconds):
                    logger.warning("lease %s was taken over while %s still worked on it", name, holder)
                    return
        except Exception:  # the database may be away for a moment; the next try may work
            logger.exception("could not renew lease %s", name)


def run_exclusive(name: str, seconds: int, work: Callable[[], T]) -> T | None:
    """Run ``work`` under lease ``name``; return None without running it if another holds it."""
    holder = holder_id()
    if not acquire(name, holder, seconds):
        logger.info("%s: another worker holds the lease; skipping this pass", name)
        return None
    stop = threading.Event()
    renewer = threading.Thread(target=_keep_renewing, args=(name, holder, seconds, stop),
                               name=f"lease-{name}", daemon=True)
    renewer.start()
    started, clock_start = now(), time.monotonic()
    error = ""
    try:
        return work()
    except Exception as failure:
        error = f"{type(failure).__name__}: {failure}"[:500]
        raise
    finally:
        stop.set()
        renewer.join()
        record_pass(name, started, time.monotonic() - clock_start, error)
        release(name, holder)


def record_pass(name: str, started: dt.datetime, seconds: float, error: str) -> None:
    """Note the pass for /metrics (and, for a mailbox's poll, the Inbound mail page); never let
    the note itself fail the work."""
    try:
        PeriodicRun.insert(name=name, started_at=started, finished_at=now(), seconds=seconds,
                           runs=1, failures=1 if error else 0, error=error).on_conflict(
            conflict_target=[PeriodicRun.name],
            update={PeriodicRun.started_at: started, PeriodicRun.finished_at: now(),
                    PeriodicRun.seconds: seconds, PeriodicRun.runs: PeriodicRun.runs + 1,
                    PeriodicRun.failures: PeriodicRun.failures + (1 if error else 0),
                    PeriodicRun.error: error}).execute()
    except peewee.DatabaseError as failure:
        logger.warning("%s: could not record the pass: %s", name, failure)
