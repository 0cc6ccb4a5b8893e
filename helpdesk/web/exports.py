"""Downloads of a queue or of search results, under the same rules as the pages they mirror."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, abort, request, stream_with_context
from flask_login import current_user

from helpdesk import exports, queues, search
from helpdesk.clock import now
from helpdesk.errors import DomainError
from helpdesk.models import Incident
from helpdesk.security import AGENT, access

bp = Blueprint("exports", __name__)
FORMATS = {
    "csv": "text/csv",  # (Werkzeug adds "; charset=utf-8" to a text type)
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def _download(incidents: Iterator[Incident], name: str, fmt: str) -> Response:
    if fmt not in FORMATS:
        abort(400, "Choose the format csv or xlsx.")
    chunks = (exports.csv_chunks(incidents) if fmt == "csv"
              else exports.xlsx_chunks(incidents, title=name))
    response = Response(stream_with_context(chunks), mimetype=FORMATS[fmt])
    # The file name is built from known words only (never from the query), so no header injection.
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{name}-{now():%Y%m%d-%H%M}.{fmt}"')
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/queues/<name>/export")
@access(AGENT)
def queue_export(name: str) -> Response:
    """The queue as its page shows it to this agent (same filters and sort), every page of it."""
    if name not in queues.QUEUES:
        abort(404)
    try:
        filters = queues.Filters.parse(request.args)
        if name == "at_risk" and not request.args.get("sort"):
            filters.sort = "due"
        queues.page(name, current_user, filters, 1)  # a bad filter fails here, before the download
    except DomainError as error:
        abort(400, str(error))
    return _download(exports.queue_incidents(name, current_user._get_current_object(), filters),
                     f"queue-{name}", request.args.get("format", "csv"))


@bp.get("/search/export")
@access(AGENT)
def search_export() -> Response:
    """Every incident a search finds, in the order of the results page."""
    query = search.parse(request.args.get("q", ""))
    if query.empty:
        abort(400, "Type words to search for before exporting the results.")
    return _download(search.each(query, current_user._get_current_object()), "search",
                     request.args.get("format", "csv"))
