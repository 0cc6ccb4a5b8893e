"""Worker heartbeats: which holders are gone, and taking back what they claimed."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys

from helpdesk import workers
from helpdesk.clock import now
from helpdesk.leases import acquire, holder_id
from helpdesk.models import Delivery, DeliveryAttempt, EventDelivery, Lease, WorkerBeat


def ended_process_holder() -> str:
    """A holder name of a process on this machine that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return f"{socket.gethostname()}:{process.pid}:0000"


def claimed_delivery(incident_id: int, holder: str) -> Delivery:
    return Delivery.create(channel="email", recipient="a@example.com", event="incident_created",
                           incident=incident_id, subject="s", text="t", idempotency_key=f"k-{holder}",
                           state="sending", attempts=1, claimed_until=now() + dt.timedelta(minutes=5),
                           claimed_by=holder)


def claimed_event(incident_id: int, holder: str) -> EventDelivery:
    return EventDelivery.create(event="incident_created", incident=incident_id, plugin="activity_log",
                                event_key=f"e-{holder}", state="running", attempts=1,
                                claimed_until=now() + dt.timedelta(minutes=5), claimed_by=holder)


def test_a_holder_is_gone_when_its_process_ended_or_its_heartbeat_is_stale(app, log_incident):
    incident = log_incident(title="Scanner offline")
    ended = ended_process_holder()
    silent = "elsewhere:4242:aaaa"  # another machine that stopped beating
    alive = "elsewhere:4343:bbbb"  # another machine, beating
    unknown = "elsewhere:4444:cccc"  # never beat (a one-off command): keeps its claims until expiry
    for holder in (ended, silent, alive, unknown, holder_id()):
        claimed_event(incident.id, holder)
    workers.beat(silent, now() - dt.timedelta(minutes=2))
    workers.beat(alive, now())
    assert workers.gone_holders(lease_seconds=120) == sorted([ended, silent])


def test_what_a_gone_worker_claimed_goes_back_to_pending_and_its_leases_are_freed(app, log_incident):
    incident = log_incident(title="Badge printer jammed")
    ended = ended_process_holder()
    delivery = claimed_delivery(incident.id, ended)
    event = claimed_event(incident.id, ended)
    mine = claimed_event(incident.id, holder_id())
    assert acquire("sweep_outbox", ended, 600)

    assert workers.reclaim_from_gone(lease_seconds=600) == 2
    delivery, event, mine = (Delivery.get_by_id(delivery.id), EventDelivery.get_by_id(event.id),
                             EventDelivery.get_by_id(mine.id))
    assert (delivery.state, delivery.claimed_by) == ("pending", None)
    assert "stopped" in DeliveryAttempt.get(DeliveryAttempt.delivery == delivery.id).error
    assert (event.state, event.claimed_by) == ("pending", None)
    assert mine.state == "running", "a live worker's claim is left alone"
    assert Lease.get_or_none(Lease.name == "sweep_outbox") is None
    assert not WorkerBeat.select().where(WorkerBeat.holder == ended).exists()


def test_the_sweep_forgets_idempotency_keys_after_a_day(app):
    from helpdesk.models import IdempotentRequest

    IdempotentRequest.create(key="a" * 32, agent=1, fingerprint="f", created_at=now() - dt.timedelta(days=2))
    IdempotentRequest.create(key="b" * 32, agent=1, fingerprint="f", created_at=now() - dt.timedelta(hours=1))
    with app.app_context():
        app.extensions["helpdesk"].tasks.sweep_outbox()
    assert [row.key for row in IdempotentRequest.select()] == ["b" * 32]
