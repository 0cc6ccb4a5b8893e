"""The search page: agents search every incident (notes included) from the header's box."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, request, url_for
from flask_login import current_user

from helpdesk import search
from helpdesk.rendering import htmx, render_page
from helpdesk.security import AGENT, access
from helpdesk.web import context

bp = Blueprint("search", __name__)


def _page_number(raw: str | None) -> int:
    """Page 1 for anything that is not a page (0, -3, words); pages count from 1."""
    return max(1, int(raw)) if raw and raw.isascii() and raw.isdigit() and len(raw) < 5 else 1


@bp.get("/search")
@access(AGENT)
def results() -> Any:
    text = request.args.get("q", "")
    reference = text.strip().upper().replace(" ", "-")
    if reference.startswith("INC-") and not htmx:  # an incident's reference typed in: go there
        from helpdesk.models import Incident

        incident_id = Incident.parse_reference(reference)
        if incident_id is not None and Incident.select().where(Incident.id == incident_id).exists():
            return redirect(url_for("incidents.show", incident_id=incident_id), code=303)
    query = search.parse(text)
    page = _page_number(request.args.get("page"))
    size = context().settings.page_size
    found = search.search(context(), current_user, query, page=page, size=size)
    return render_page(
        "search.html",
        {"search_results"},
        query=query,
        results=found,
        start=(page - 1) * size + 1,
        previous_url=url_for("search.results", q=query.text, page=page - 1) if page > 1 else None,
        next_url=url_for("search.results", q=query.text, page=page + 1) if found.has_next else None,
    )
