"""A web request's PostgreSQL statement that runs too long is stopped and answered 503,
while background work on the same connections keeps no such limit."""

from __future__ import annotations

import os
import time

import pytest

from helpdesk.db import database
from helpdesk.security import PUBLIC, access
from helpdesk.testing import PG_URL_VARIABLE

pytestmark = pytest.mark.skipif(not os.environ.get(PG_URL_VARIABLE),
                                reason="statement_timeout is PostgreSQL's")


def _add_slow_page(app, seconds: float) -> None:
    @access(PUBLIC)
    def slow() -> str:
        database.execute_sql("SELECT pg_sleep(%s)", (seconds,))  # a query gone slow
        return "done"

    @access(PUBLIC)
    def limit() -> str:
        return database.execute_sql("SHOW statement_timeout").fetchone()[0]

    app.add_url_rule("/slow-query", "slow_query", slow)  # before the first request
    app.add_url_rule("/statement-limit", "statement_limit", limit)
    database.close()  # the kit's connection for the test thread: a server's request takes one from the pool


@pytest.mark.parametrize("settings_overrides", [{"request_statement_seconds": 1}])
def test_a_slow_statement_in_a_request_ends_in_a_503_and_background_work_is_not_limited(app):
    _add_slow_page(app, 4)
    client = app.test_client()
    assert client.get("/statement-limit").text == "1s"  # its pooled connection now carries it
    # Outside a request (the worker, a CLI command), the same pooled connection has no limit.
    with app.app_context(), database.connection_context():
        assert database.execute_sql("SHOW statement_timeout").fetchone()[0] == "0"
        database.execute_sql("SELECT pg_sleep(1.5)")
    started = time.monotonic()
    answer = client.get("/slow-query")
    waited = time.monotonic() - started
    assert answer.status_code == 503
    assert answer.headers["Retry-After"]
    assert waited < 3, waited  # stopped after about 1 s, not the 4 s the query wanted
    assert client.get("/statement-limit").text == "1s"  # the next request works, limited again


@pytest.mark.parametrize("settings_overrides", [{"request_statement_seconds": 0}])
def test_no_limit_when_set_to_zero(app):
    _add_slow_page(app, 1.5)
    assert app.test_client().get("/slow-query").status_code == 200
