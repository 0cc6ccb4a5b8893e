"""Queue pages: full page by default, only the list when the list asks for itself."""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, redirect, request, url_for
from flask_login import current_user

from helpdesk import queues, sla
from helpdesk.clock import now
from helpdesk.errors import DomainError
from helpdesk.models import PRIORITIES, STATUSES, TYPES, Team
from helpdesk.people import is_member
from helpdesk.rendering import render_page
from helpdesk.security import AGENT, access
from helpdesk.web import plugin_ui

bp = Blueprint("queues", __name__)


@bp.get("/")
@access(AGENT)
def index() -> Response:
    """Service-desk agents start from what they own; specialists from their work."""
    desk = Team.get_or_none(Team.name == current_app.extensions["helpdesk"].settings
                            .service_desk_team)
    start = "owned" if desk is not None and is_member(current_user.id, desk) else "assigned"
    return redirect(url_for("queues.show", name=start))


@bp.get("/queues/<name>")
@access(AGENT)
def show(name: str) -> str:
    if name not in queues.QUEUES:
        abort(404)
    state = current_app.extensions["helpdesk"]
    settings = state.settings
    try:
        filters = queues.Filters.parse(request.args)
        if name == "at_risk" and not request.args.get("sort"):
            filters.sort = "due"  # the owner's view: nearest breach first
        page = queues.page(name, current_user, filters, settings.page_size,
                           after=request.args.get("after") or None)
    except DomainError as error:  # a bad filter or a broken page link: the request is wrong
        abort(400, str(error))
    args = request.args.to_dict(flat=False)
    args.pop("after", None)
    return render_page(
        "queue.html",
        {"queue_list"},
        queue=name,
        queues=queues.QUEUES,
        filters=filters,
        page=page,
        teams=list(Team.select().order_by(Team.name)),
        sorts={k: v for k, v in queues.SORT_LABELS.items() if k != "due" or name == "at_risk"},
        sla_status=lambda clock: sla.status(state, clock, now()) if clock else None,
        statuses=STATUSES,
        priorities=PRIORITIES,
        types=TYPES,
        first_url=url_for("queues.show", name=name, **args),
        next_url=url_for("queues.show", name=name, after=page.next_cursor, **args)
        if page.next_cursor else None,
        refresh_seconds=settings.queue_refresh_seconds,
        columns=plugin_ui.queue_columns(current_app.extensions["helpdesk"]),
    )
