"""/metrics: what an operator's Prometheus scrapes — valid exposition format, behind a token with
the metrics scope, figures that follow the desk's real state, and a cost that does not grow."""

from __future__ import annotations

import datetime as dt

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpdesk import leases
from helpdesk.api import tokens
from helpdesk.clock import now
from helpdesk.errors import PermissionDenied
from helpdesk.models import Agent, Delivery, PeriodicRun


@pytest.fixture
def scrape(app, personas):
    with app.app_context():
        secret = tokens.create(personas.admin, "prometheus", ["metrics"], kind="service").secret
    client = app.test_client()

    def get() -> dict[str, dict[tuple, float]]:
        response = client.get("/metrics", headers={"Authorization": f"Bearer {secret}"})
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.mimetype == "text/plain"
        samples: dict[str, dict[tuple, float]] = {}
        for family in text_string_to_metric_families(response.get_data(as_text=True)):
            for sample in family.samples:
                samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
        return samples

    return get


def delivery(incident_id: int, key: str, **fields) -> Delivery:
    return Delivery.create(channel="email", recipient="a@example.com", event="incident_created",
                           incident=incident_id, subject="s", text="t", idempotency_key=key, **fields)


def test_only_a_metrics_token_reads_them(app, personas, login):
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    with app.app_context():
        reader = tokens.create(personas.admin, "reader", ["read"]).secret
        with pytest.raises(PermissionDenied):
            tokens.create(personas.lead, "lead's", ["metrics"])
    assert client.get("/metrics", headers={"Authorization": f"Bearer {reader}"}).status_code == 403
    admin = login(personas.admin)  # a signed-in admin's session cookie is not a token
    assert admin.get("/metrics").status_code == 401
    # An admin's token stops reading them once its agent is no longer an admin.
    with app.app_context():
        scraper = tokens.create(personas.admin, "scraper", ["metrics"], kind="service").secret
    assert client.get("/metrics", headers={"Authorization": f"Bearer {scraper}"}).status_code == 200
    Agent.update(role="lead").where(Agent.id == personas.admin.id).execute()
    refused = client.get("/metrics", headers={"Authorization": f"Bearer {scraper}"})
    assert refused.status_code == 403 and "is for admins" in refused.get_json()["detail"]


def test_figures_follow_the_outbox_and_the_incidents(app, personas, log_incident, scrape):
    first, second = log_incident(), log_incident()
    with app.app_context():
        delivery(first.id, "late", state="pending", next_attempt_at=now() - dt.timedelta(seconds=90))
        delivery(first.id, "later", state="pending", next_attempt_at=now() + dt.timedelta(hours=1))
        delivery(second.id, "gave-up", state="dead")
    samples = scrape()
    assert samples["helpdesk_deliveries"][(("state", "pending"),)] == 2
    assert samples["helpdesk_deliveries"][(("state", "dead"),)] == 1
    assert 89 <= samples["helpdesk_outbox_lag_seconds"][()] < 150
    active = samples["helpdesk_incidents_active"]
    assert sum(active.values()) == 2 and active[(("status", "new"),)] + active[(("status", "assigned"),)] == 2


def test_periodic_passes_and_their_failures_are_counted(app, scrape):
    with app.app_context():
        leases.run_exclusive("sla_check", 60, lambda: None)
        with pytest.raises(RuntimeError):
            leases.run_exclusive("sla_check", 60, lambda: (_ for _ in ()).throw(RuntimeError("clock gone")))
        assert "clock gone" in PeriodicRun.get_by_id("sla_check").error
    samples = scrape()
    work = (("work", "sla_check"),)
    assert samples["helpdesk_periodic_runs_total"][work] == 2
    assert samples["helpdesk_periodic_failures_total"][work] == 1
    finished = samples["helpdesk_periodic_last_finished_timestamp_seconds"][work]
    assert abs(finished - now().replace(tzinfo=dt.UTC).timestamp()) < 60


def test_request_durations_are_counted_per_endpoint(app, personas, login, scrape):
    agent = login(personas.owner)
    for _ in range(3):
        assert agent.get("/queues/owned").status_code == 200
    samples = scrape()
    counts = samples["helpdesk_http_request_duration_seconds_count"]
    assert counts[(("endpoint", "queues.show"), ("method", "GET"))] == 3
    buckets = samples["helpdesk_http_request_duration_seconds_bucket"]
    assert buckets[(("endpoint", "queues.show"), ("le", "+Inf"), ("method", "GET"))] == 3


def test_a_scrape_costs_the_same_whatever_the_data(app, log_incident, scrape, count_queries):
    def queries_per_scrape() -> int:
        before = len(count_queries.queries)
        scrape()
        return len(count_queries.queries) - before

    log_incident()
    scrape()  # the token's first use in its rate window writes once more
    few = queries_per_scrape()
    for _ in range(30):
        log_incident()
    assert queries_per_scrape() == few
