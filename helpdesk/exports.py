"""Spreadsheet exports of queues and search results: streamed, safe to open.

Rows are produced a batch at a time from the same domain functions the pages use (the
queue's keyset pages, the search's ordered results), so an export holds the rows the
viewer may see — no more — and constant memory however many there are. A cell that a
spreadsheet would read as a formula (it begins with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return) is neutralised: in CSV by a leading apostrophe, in XLSX by storing it as
an explicit text cell (and with the same apostrophe, so both files read alike).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from helpdesk import queues
from helpdesk.clock import now
from helpdesk.models import PRIORITIES, STATUSES, TYPES, Agent, Incident
from helpdesk.words import CONTROL_CHARACTERS

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: Characters XML 1.0 cannot hold (an XLSX cell must not contain them).
#: Rows fetched per query while streaming.
BATCH = 500
#: Rows an XLSX sheet can hold below its header.
XLSX_MAX_ROWS = 1_048_575


def _name(value: Any) -> str:
    return "" if value is None else str(value)


def _time(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _due(incident: Incident, at: dt.datetime) -> str:
    """The nearest running SLA due time (the denormalised ``sla_due_at`` the queues sort by),
    for an active incident; a finished one has none left to meet."""
    return _time(incident.sla_due_at) if incident.is_active else ""


def _breached(incident: Incident, at: dt.datetime) -> str:
    """Whether a target was breached: recorded by the SLA check, or its due time passed before
    the check came (the queue's Due cell says "Breached" then too)."""
    overdue = incident.is_active and incident.sla_due_at is not None and incident.sla_due_at <= at
    return "Yes" if incident.sla_breached or overdue else "No"


#: (header, cell of an incident at the moment of the export); read from the row alone.
COLUMNS: list[tuple[str, Callable[[Incident, dt.datetime], Any]]] = [
    ("Reference", lambda i, at: i.reference),
    ("Title", lambda i, at: i.title),
    ("Type", lambda i, at: TYPES.get(i.type, i.type)),
    ("Status", lambda i, at: STATUSES.get(i.status, i.status)),
    ("Priority", lambda i, at: PRIORITIES.get(i.priority, i.priority)),
    ("Owning team", lambda i, at: _name(i.owner_team.name if i.owner_team else None)),
    ("Owner", lambda i, at: _name(i.owner_agent.display_name if i.owner_agent else None)),
    ("Assigned team", lambda i, at: _name(i.assigned_team.name if i.assigned_team else None)),
    ("Assignee", lambda i, at: _name(i.assigned_agent.display_name if i.assigned_agent else None)),
    ("Requester", lambda i, at: _name(i.requester.name if i.requester else None)),
    ("Requester e-mail", lambda i, at: _name(i.requester.email if i.requester else None)),
    ("Created (UTC)", lambda i, at: _time(i.created_at)),
    ("Updated (UTC)", lambda i, at: _time(i.updated_at)),
    ("Resolved (UTC)", lambda i, at: _time(i.resolved_at)),
    ("SLA due (UTC)", _due),
    ("SLA breached", _breached),
]


def neutralise(value: Any) -> Any:
    """Text a spreadsheet would run as a formula gets a leading apostrophe; the rest is kept."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def rows(incidents: Iterable[Incident], at: dt.datetime | None = None) -> Iterator[list[Any]]:
    """The header, then one neutralised row per incident, every row judged at one moment
    (``at``, default now: when the export began)."""
    at = at or now()
    yield [title for title, _ in COLUMNS]
    for incident in incidents:
        yield [neutralise(value(incident, at)) for _, value in COLUMNS]


def csv_chunks(incidents: Iterable[Incident]) -> Iterator[str]:
    """CSV text a few hundred rows at a time (UTF-8 with a BOM, so spreadsheets read accents)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    yield "\ufeff"
    for count, row in enumerate(rows(incidents), start=1):
        writer.writerow(row)
        if count % BATCH == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def write_xlsx(incidents: Iterable[Incident], out: IO[bytes], title: str = "Incidents") -> int:
    """An XLSX workbook written row by row (openpyxl's write-only mode keeps rows on disk);
    returns the number of incidents written (at most :data:`XLSX_MAX_ROWS`)."""
    return write_rows_xlsx(rows(incidents), out, title)


def write_rows_xlsx(table: Iterable[list[Any]], out: IO[bytes], title: str) -> int:
    """Any table (a header, then rows, already neutralised) as an XLSX workbook written row by
    row, every text cell stored as text; returns the rows written below the header."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=title[:31])
    written = -1
    for row in table:
        if written >= XLSX_MAX_ROWS:
            break
        cells = []
        for value in row:
            cell = WriteOnlyCell(sheet, value=CONTROL_CHARACTERS.sub("", value) if isinstance(value, str)
                                 else value)
            if isinstance(value, str):
                cell.data_type = "s"  # never a formula, whatever it starts with
            cells.append(cell)
        sheet.append(cells)
        written += 1
    workbook.save(out)
    return max(written, 0)


def xlsx_chunks(incidents: Iterable[Incident], title: str = "Incidents",
                chunk: int = 64 * 1024) -> Iterator[bytes]:
    """The workbook, built in a temporary file and then sent in chunks."""
    with tempfile.TemporaryFile() as spool:
        write_xlsx(incidents, spool, title)
        spool.seek(0)
        while data := spool.read(chunk):
            yield data


def queue_incidents(queue: str, agent: Agent, filters: queues.Filters,
                    batch: int = BATCH) -> Iterator[Incident]:
    """Every incident of a queue as the agent sees it, through the queue's own keyset pages:
    two queries per batch (the ids, then their rows), none per row."""
    after = None
    teams = queues.team_ids(agent)
    while True:
        page = queues.page(queue, agent, filters, batch, after=after, teams=teams)
        yield from page.rows
        if page.next_cursor is None:
            return
        after = page.next_cursor
