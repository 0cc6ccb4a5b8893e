"""The search page: agents search every incident (notes included) from the header's box."""

from __future__ import annotations

from flask import Blueprint, request, url_for
from flask_login import current_user

from helpdesk import search
from helpdesk.rendering import render_page
from helpdesk.security import AGENT, access
from helpdesk.web import context

bp = Blueprint("search", __name__)


def _page_number(raw: str | None) -> int:
    """Page 1 for anything that is not a page (0, -3, words); pages count from 1."""
    return max(1, int(raw)) if raw and raw.isascii() and raw.isdigit() and len(raw) < 5 else 1


@bp.get("/search")
@access(AGENT)
def results() -> str:
    text = request.args.get("q", "")
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
