"""``/metrics`` in Prometheus' text format, behind an API token with the ``metrics`` scope.

What the desk's operators watch: how long requests take (this process's histogram since it
started — scrape each web process on its own port), how much background work waits (the task
queue, both outboxes and how late their oldest due row is), whether the periodic passes run
(SLA check, sweep, auto-close: last duration, when they last finished, failures), live
workers, and the active incidents by status. A scrape is a fixed handful of queries on indexed
columns and counters in memory: its cost follows what is pending or active, never the history
(delivered messages, closed incidents).
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
import time
from collections.abc import Iterable
from typing import Any

import peewee
from flask import Flask, Response, g, request

from helpdesk.clock import now
from helpdesk.models import ACTIVE_STATUSES, Delivery, EventDelivery, Incident, PeriodicRun, WorkerBeat
from helpdesk.security import TOKEN, access

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WORKER_ALIVE_SECONDS = 120
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Histogram:
    """Request durations per endpoint, cumulative buckets as Prometheus expects (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], list[float]] = {}  # counts per bucket + [sum, count]

    def observe(self, endpoint: str, method: str, seconds: float) -> None:
        with self._lock:
            series = self._series.setdefault((endpoint, method), [0.0] * (len(BUCKETS) + 3))
            series[bisect.bisect_left(BUCKETS, seconds)] += 1  # index len(BUCKETS) is +Inf
            series[-2] += seconds
            series[-1] += 1

    def lines(self, name: str) -> Iterable[str]:
        with self._lock:
            snapshot = {key: list(values) for key, values in sorted(self._series.items())}
        for (endpoint, method), series in snapshot.items():
            labels = f'endpoint="{_label(endpoint)}",method="{method}"'
            running = 0.0
            for bound, count in zip((*BUCKETS, float("inf")), series[:-2], strict=True):
                running += count
                edge = "+Inf" if bound == float("inf") else repr(bound)
                yield f'{name}_bucket{{{labels},le="{edge}"}} {running:g}'
            yield f"{name}_sum{{{labels}}} {series[-2]:.6f}"
            yield f"{name}_count{{{labels}}} {series[-1]:g}"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def register(app: Flask) -> None:
    durations = Histogram()

    @app.before_request
    def start_clock() -> None:
        g.metrics_started = time.perf_counter()

    @app.teardown_request
    def stop_clock(_exc: BaseException | None) -> None:
        started = g.pop("metrics_started", None)
        if started is not None and request.endpoint not in (None, "static", "metrics"):
            durations.observe(request.endpoint, request.method, time.perf_counter() - started)

    @app.get("/metrics")
    @access(TOKEN)
    def metrics() -> Response:
        lines: list[str] = []
        _metric(lines, "helpdesk_http_request_duration_seconds", "histogram",
                "Time to answer a request, by endpoint (this process since it started).",
                list(durations.lines("helpdesk_http_request_duration_seconds")))
        _collect(app, lines)
        return Response("\n".join(lines) + "\n", content_type=CONTENT_TYPE,
                        headers={"Cache-Control": "no-store"})

    metrics.api_scope = "metrics"  # type: ignore[attr-defined]


def _metric(lines: list[str], name: str, kind: str, help_text: str, samples: list[str]) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]


def _by_state(model: type[peewee.Model], states: tuple[str, ...]) -> dict[str, int]:
    rows = (model.select(model.state, peewee.fn.COUNT(model.id)).where(model.state.in_(states))
            .group_by(model.state).tuples())
    counts = dict.fromkeys(states, 0)
    counts.update(dict(rows))
    return counts


def _lag(model: type[peewee.Model], at: Any) -> float:
    """How late the oldest due row of an outbox is (0 when nothing is overdue)."""
    oldest = (model.select(peewee.fn.MIN(model.next_attempt_at))
              .where((model.state == "pending") & (model.next_attempt_at <= at)).scalar())
    return max(0.0, (at - oldest).total_seconds()) if oldest else 0.0


def _collect(app: Flask, lines: list[str]) -> None:
    at = now()
    deliveries = _by_state(Delivery, ("pending", "sending", "dead"))
    _metric(lines, "helpdesk_deliveries", "gauge", "Notification outbox rows not yet delivered, by state.",
            [f'helpdesk_deliveries{{state="{s}"}} {n}' for s, n in deliveries.items()])
    _metric(lines, "helpdesk_outbox_lag_seconds", "gauge",
            "How overdue the oldest due notification is (0: none waiting past its time).",
            [f"helpdesk_outbox_lag_seconds {_lag(Delivery, at):.3f}"])
    events = _by_state(EventDelivery, ("pending", "running", "dead"))
    _metric(lines, "helpdesk_event_deliveries", "gauge", "Plugin event outbox rows not yet done, by state.",
            [f'helpdesk_event_deliveries{{state="{s}"}} {n}' for s, n in events.items()])
    _metric(lines, "helpdesk_event_outbox_lag_seconds", "gauge",
            "How overdue the oldest due plugin event is.",
            [f"helpdesk_event_outbox_lag_seconds {_lag(EventDelivery, at):.3f}"])
    depth = _queue_depth(app)
    if depth is not None:
        _metric(lines, "helpdesk_task_queue_depth", "gauge", "Tasks waiting in the worker queue.",
                [f"helpdesk_task_queue_depth {depth}"])
    runs = list(PeriodicRun.select().order_by(PeriodicRun.name))
    _metric(lines, "helpdesk_periodic_last_duration_seconds", "gauge",
            "How long the last pass of each periodic work took.",
            [f'helpdesk_periodic_last_duration_seconds{{work="{_label(r.name)}"}} {r.seconds:.3f}'
             for r in runs])
    _metric(lines, "helpdesk_periodic_last_finished_timestamp_seconds", "gauge",
            "When the last pass of each periodic work finished (Unix time).",
            [f'helpdesk_periodic_last_finished_timestamp_seconds{{work="{_label(r.name)}"}} '
             f"{_unix(r.finished_at):.0f}" for r in runs if r.finished_at])
    _metric(lines, "helpdesk_periodic_runs_total", "counter", "Passes of each periodic work.",
            [f'helpdesk_periodic_runs_total{{work="{_label(r.name)}"}} {r.runs}' for r in runs])
    _metric(lines, "helpdesk_periodic_failures_total", "counter", "Passes that failed.",
            [f'helpdesk_periodic_failures_total{{work="{_label(r.name)}"}} {r.failures}' for r in runs])
    alive = WorkerBeat.select().where(
        WorkerBeat.seen_at >= at - dt.timedelta(seconds=WORKER_ALIVE_SECONDS)).count()
    _metric(lines, "helpdesk_workers_alive", "gauge",
            f"Worker processes seen in the last {WORKER_ALIVE_SECONDS} s.",
            [f"helpdesk_workers_alive {alive}"])
    active = dict.fromkeys(ACTIVE_STATUSES, 0)
    active.update(dict(Incident.select(Incident.status, peewee.fn.COUNT(Incident.id))
                       .where(Incident.status.in_(ACTIVE_STATUSES)).group_by(Incident.status).tuples()))
    _metric(lines, "helpdesk_incidents_active", "gauge", "Active incidents, by status.",
            [f'helpdesk_incidents_active{{status="{s}"}} {n}' for s, n in active.items()])


def _unix(value: Any) -> float:
    return value.replace(tzinfo=dt.UTC).timestamp()


def _queue_depth(app: Flask) -> int | None:
    try:
        return int(app.extensions["helpdesk"].huey.pending_count())
    except Exception:  # noqa: BLE001 - the queue is down: leave the figure out, /readyz says why
        return None
