"""Property-based tests generated from the OpenAPI document (schemathesis): requests built
from every operation's parameters and bodies, sent over HTTP to a live server on loopback;
no answer is a server error, and every answer matches the document."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from helpdesk.api import tokens

schemathesis = pytest.importorskip("schemathesis")
requests = pytest.importorskip("requests")

EXAMPLES = 15  # per operation: bounded, so the whole run stays within seconds
# Every check but "schema-valid data is accepted": a well-formed request may still break a
# rule (resolving without a note) or name a record that does not exist, and is rightly a 4xx.
CHECKS = [schemathesis.checks.not_a_server_error, schemathesis.checks.status_code_conformance,
          schemathesis.checks.content_type_conformance, schemathesis.checks.response_schema_conformance,
          schemathesis.checks.response_headers_conformance, schemathesis.checks.negative_data_rejection]


@pytest.fixture
def live(server, personas, log_incident):
    """The app served by waitress on a loopback port (conftest's ``server``, which stops it
    from its own loop thread), with an incident to act on."""
    log_incident()
    return server


def _run(operation: Any, live: str, bearer: str) -> None:
    @given(case=operation.as_strategy())
    # Derandomized: `make test` gives the same verdict every run; raise EXAMPLES (and drop
    # derandomize) to explore further by hand.
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        # One connection per case: a case must not read bytes a malformed earlier exchange left
        # on a kept-alive socket (seen once in CI as "xHTTP/1.1 400", not reproducible since).
        response = case.call(base_url=live, timeout=30,
                             headers={"Authorization": f"Bearer {bearer}", "Connection": "close"})
        case.validate_response(response, checks=CHECKS)

    run()


def test_every_operation_answers_as_documented(app, personas, live):
    with app.app_context():
        secret = tokens.create(personas.admin, "schemathesis", ["read", "write", "admin"],
                               rate_limit=tokens.MAX_RATE).secret
        alerts = tokens.create(personas.admin, "schemathesis-alerts", ["alerts"], kind="service",
                               rate_limit=tokens.MAX_RATE).secret
    document = requests.get(f"{live}/api/v1/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()
        _run(operation, live, alerts if operation.path.endswith("/alerts") else secret)
        tested.append(f"{operation.method.upper()} {operation.path}")
    assert len(tested) == len(set(tested)) >= 20
