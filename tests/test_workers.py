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


def test_a_lapsed_claim_is_taken_back_only_from_a_holder_not_beating(app, ctx, log_incident):
    # A plugin hook may run past lease_seconds; while its worker beats, nobody starts it again
    # beside it. A holder that never beat (a one-off command) or stopped beating loses it.
    from helpdesk import event_outbox
    from helpdesk.notify import outbox

    incident = log_incident(title="Badge printer jammed")
    slow, silent, never = "elsewhere:1:slow", "elsewhere:2:silent", "elsewhere:3:never"
    lapsed = now() - dt.timedelta(seconds=1)
    rows = {holder: (claimed_event(incident.id, holder), claimed_delivery(incident.id, holder))
            for holder in (slow, silent, never)}
    EventDelivery.update(claimed_until=lapsed).execute()
    Delivery.update(claimed_until=lapsed).where(Delivery.state == "sending").execute()
    workers.beat(slow, now())
    workers.beat(silent, now() - dt.timedelta(minutes=2))
    with app.app_context():
        event_outbox.sweep(ctx)
        outbox.sweep(ctx)
    kept = {holder: (EventDelivery.get_by_id(event.id).state == "running",
                     Delivery.get_by_id(delivery.id).state == "sending")
            for holder, (event, delivery) in rows.items()}  # released rows were queued and tried again
    assert kept == {slow: (True, True), silent: (False, False), never: (False, False)}
    # Hung: ten leases past its end, the live worker's claim is taken back all the same.
    long_ago = now() - dt.timedelta(seconds=workers.HUNG_LEASES * ctx.settings.lease_seconds + 1)
    EventDelivery.update(claimed_until=long_ago).where(EventDelivery.claimed_by == slow).execute()
    Delivery.update(claimed_until=long_ago).where(Delivery.claimed_by == slow).execute()
    workers.beat(slow, now())
    with app.app_context():
        event_outbox.sweep(ctx)
        outbox.sweep(ctx)
    event, delivery = rows[slow]
    assert EventDelivery.get_by_id(event.id).state != "running"
    assert Delivery.get_by_id(delivery.id).state != "sending"


def test_the_sweep_forgets_idempotency_keys_after_a_day(app):
    from helpdesk.models import IdempotentRequest

    IdempotentRequest.create(key="a" * 32, agent=1, fingerprint="f", created_at=now() - dt.timedelta(days=2))
    IdempotentRequest.create(key="b" * 32, agent=1, fingerprint="f", created_at=now() - dt.timedelta(hours=1))
    with app.app_context():
        app.extensions["helpdesk"].tasks.sweep_outbox()
    assert [row.key for row in IdempotentRequest.select()] == ["b" * 32]


def test_sweeps_queue_due_rows_once_and_pile_no_copies_onto_a_waiting_queue(app, log_incident, tmp_path,
                                                                            monkeypatch):
    """After a queue restart every due row is queued again, once: while the queue still holds a
    backlog, later sweeps (one per heartbeat) add nothing, and once it is short they queue what is
    still due, oldest first."""
    from huey import SqliteHuey

    from helpdesk import event_outbox
    from helpdesk.context import SWEEP_BACKLOG
    from helpdesk.notify import outbox
    from helpdesk.tasks import register_tasks

    ctx = app.extensions["helpdesk"]
    queue = SqliteHuey("sweep-test", filename=str(tmp_path / "queue.db"), results=False)
    monkeypatch.setattr(ctx, "tasks", register_tasks(app, queue, ctx))
    incident = log_incident(title="Mail relay refusing connections")
    start = now() - dt.timedelta(minutes=10)
    rows = [Delivery.create(channel="email", recipient=f"r{n}@example.com", event="incident_commented",
                            incident=incident.id, subject="s", text="t", idempotency_key=f"pile-{n}",
                            next_attempt_at=start + dt.timedelta(seconds=n), created_at=start)
            for n in range(SWEEP_BACKLOG + 50)]
    event = EventDelivery.create(event="incident_commented", incident=incident.id, plugin="activity_log",
                                 event_key="pile-event", next_attempt_at=start, created_at=start)
    queue.flush()  # the queue restarted empty: only the outbox knows what is due

    assert outbox.sweep(ctx) == len(rows)
    assert queue.pending_count() == len(rows)
    abandoned = claimed_delivery(incident.id, ended_process_holder())
    for _ in range(3):  # the next heartbeats' sweeps, while the backlog waits
        assert outbox.sweep(ctx) == 0
        assert event_outbox.sweep(ctx) == 0
        workers.Heartbeat(app)._queue_sweep()
    assert queue.pending_count() == len(rows), "no copies, and no sweep task behind the backlog"
    assert Delivery.get_by_id(abandoned.id).state == "pending", "the beat took a dead worker's claim back"
    abandoned.delete_instance(recursive=True)

    while queue.pending_count() > SWEEP_BACKLOG - 20:  # the worker works the queue down
        queue.dequeue()
    Delivery.update(state="sent").where(Delivery.id.in_([row.id for row in rows[:-10]])).execute()
    assert outbox.sweep(ctx) == 10, "what is still due, and only that"
    assert event_outbox.sweep(ctx) == 1
    queued = [queue.dequeue() for _ in range(queue.pending_count())][-11:]
    assert [task.args[0] for task in queued] == [row.id for row in rows[-10:]] + [event.id]
