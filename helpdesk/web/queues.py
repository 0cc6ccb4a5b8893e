"""Queue pages: full page by default, only the list when the list asks for itself; bulk
changes reported row by row on the page they redirect to, the row density, saved views and
the navigation's counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from flask import Blueprint, Response, abort, current_app, g, redirect, request, url_for
from flask_login import current_user
from flask_wtf.csrf import generate_csrf
from werkzeug.datastructures import MultiDict

from helpdesk import incidents as domain
from helpdesk import queues, sla
from helpdesk.clock import now
from helpdesk.errors import DomainError, StaleVersion
from helpdesk.escalation import engine
from helpdesk.models import (
    PENDING_REASONS,
    PRIORITIES,
    RESOLUTION_CODES,
    STATUSES,
    TYPES,
    Agent,
    Incident,
    Team,
)
from helpdesk.people import is_member
from helpdesk.rendering import id_url, render_page
from helpdesk.security import AGENT, access, safe_next
from helpdesk.web import bulk_results, context, plugin_ui, queue_rows, viewer_zone
from helpdesk.web.escalation import step_titles
from helpdesk.web.forms import parse_id, teams_and_members

bp = Blueprint("queues", __name__)

#: At most this many rows in one bulk change (a clear error above it).
BULK_LIMIT = 200
DENSITIES = {"comfortable": "Comfortable", "compact": "Compact"}
#: The statuses the bulk bar offers: those some status can move to (never new or assigned, which
#: no status change reaches), so the bar does not offer a move every row then refuses.
BULK_STATUSES = {value: label for value, label in STATUSES.items()
                 if any(value in targets for targets in domain.TRANSITIONS.values())}
BULK_ACTIONS = {"assign": "Assign", "take": "Take", "status": "Set status", "priority": "Set priority",
                "own": "Take ownership", "transfer": "Transfer ownership"}


@bp.get("/")
@access(AGENT)
def index() -> Response:
    """Service-desk agents start from what they own; specialists from their work."""
    desk = Team.get_or_none(Team.name == current_app.extensions["helpdesk"].settings
                            .service_desk_team)
    start = "owned" if desk is not None and is_member(current_user.id, desk) else "assigned"
    return redirect(url_for("queues.show", name=start))


def take_route() -> bool:
    """Whether the one-step Take route is installed (it lives with the incident pages)."""
    return "incidents.take_work" in current_app.view_functions


def _render_queue(name: str, args: MultiDict, *, bulk: BulkReport | None = None,
                  status: int = 200, view_form: dict[str, Any] | None = None,
                  ticked: frozenset[int] = frozenset(),
                  bulk_form: dict[str, Any] | None = None) -> tuple[str, int]:
    """The queue page; after a bulk change, ``ticked`` rows come back ticked and the bulk bar
    shows ``bulk_form``, what was posted to it."""
    if name not in queues.QUEUES:
        abort(404)
    state = current_app.extensions["helpdesk"]
    settings = state.settings
    view = None
    if args.get("view"):
        try:
            view = queues.get_view(current_user, parse_id(args.get("view")))
        except DomainError:
            abort(404)
        merged = MultiDict(queues.view_args(view))
        for key in queues.FILTER_KEYS:  # the filter form, sent from the view, wins
            if key in args:
                merged.setlist(key, args.getlist(key))
        merged.setlist("view", [str(view.id)])
        if args.get("after"):
            merged["after"] = args["after"]
        args = merged
    try:
        filters = queues.Filters.parse(args)
        if name == "at_risk" and not args.get("sort"):
            filters.sort = "due"  # the owner's view: nearest breach first
        my_team_ids = g.team_ids if "team_ids" in g else queues.team_ids(current_user)
        page = queues.page(name, current_user, filters, settings.page_size,
                           after=args.get("after") or None, teams=my_team_ids)
    except DomainError as error:  # a bad filter or a broken page link: the request is wrong
        abort(400, str(error))
    # What fires next on the owner's At-risk rows: the check's own rules, a few queries a page.
    next_escalations = engine.upcoming_for(context(), page.rows) if name == "at_risk" else None
    moment = now()  # one instant for every row's SLA state and the escalation column
    link_args = args.to_dict(flat=False)
    link_args.pop("after", None)
    link_args.pop("bulk", None)  # a bulk change's result belongs to the page after it only
    shown = queues.parse_columns(view.columns.split(",")) if view and view.columns else list(queues.COLUMNS)
    first_url = url_for("queues.show", name=name, **link_args)
    columns = plugin_ui.queue_columns(state)
    may_take_here = take_route()
    if request.method == "GET":  # this page as asked for, without a bulk change's result
        list_url = f"{request.path}?" + urlencode([(key, value) for key, value in
                                                    request.args.items(multi=True) if key != "bulk"])
    else:
        list_url = first_url
    rows = queue_rows.rows_html(page.rows, queue_rows.RowContext(
        shown=shown, plugin_columns=columns, zone=viewer_zone(), moment=moment,
        sla_status=lambda clock: sla.status(state, clock, moment),
        incident_url=id_url("incidents.show", "incident_id"),
        take_url=id_url("incidents.take_work", "incident_id") if may_take_here else None,
        take_token=generate_csrf() if may_take_here else None,
        here=list_url,
        next_escalations=next_escalations, step_titles=step_titles, ticked=ticked))
    people = teams_and_members()
    html = render_page(
        "queue.html",
        {"queue_list"},
        queue=name,
        queues=queues.QUEUES,
        filters=filters,
        page=page,
        sorts=queues.SORT_LABELS,
        statuses=STATUSES,
        bulk_statuses=BULK_STATUSES,
        priorities=PRIORITIES,
        types=TYPES,
        pending_reasons=PENDING_REASONS,
        resolution_codes=RESOLUTION_CODES,
        first_url=first_url,
        list_url=list_url,
        next_url=url_for("queues.show", name=name, after=page.next_cursor, **link_args)
        if page.next_cursor else None,
        refresh_seconds=settings.queue_refresh_seconds,
        columns=columns,
        rows_html=rows,
        shown=shown,
        all_columns=queues.COLUMNS,
        view=view,
        can_edit_view=bool(view and queues.can_edit_view(current_user, view)),
        my_team_ids=my_team_ids,
        filter_query=urlencode([(key, value) for key, value in MultiDict(args).items(multi=True)
                                if key in queues.FILTER_KEYS and value]),
        density=current_user.queue_density if current_user.queue_density in DENSITIES else "comfortable",
        densities=DENSITIES,
        now=moment,
        bulk=bulk,
        bulk_limit=BULK_LIMIT,
        bulk_actions=BULK_ACTIONS,
        next_escalations=next_escalations,
        view_form=view_form,
        bulk_form=_bulk_choices(people["members"], bulk_form) if bulk_form else None,
        all_ticked=bool(ticked) and len(ticked) == len(page.rows)
        and all(row.id in ticked for row in page.rows),
        **people,
    )
    return html, status


@bp.get("/queues/<name>")
@access(AGENT)
def show(name: str) -> Any:
    view_id = parse_id(request.args.get("view"))
    if view_id is not None and not any(key in request.args for key in queues.FILTER_KEYS):
        # A saved view opened from the navigation: spell its filters out in the address, so
        # the export links, the filter form and the browser history all carry them.
        try:
            view = queues.get_view(current_user, view_id)
        except DomainError:
            abort(404)
        if queues.view_args(view):
            kept = {"bulk": request.args["bulk"]} if request.args.get("bulk") else {}
            return redirect(url_for("queues.show", name=name, view=view.id, **kept,
                                    **MultiDict(queues.view_args(view)).to_dict(flat=False)), code=303)
    result = bulk_results.recall(current_user.id, request.args.get("bulk"))
    if result is None:
        return _render_queue(name, request.args)
    return _render_queue(name, request.args, bulk=BulkReport(
        result["action"], [RowResult(incident_id, Incident(id=incident_id).reference, outcome, message)
                           for incident_id, outcome, message in result["rows"]],
        refused=result["refused"]), ticked=_still_as_sent(result["ticked"]), bulk_form=result["bar"])


# -- the navigation: counts and saved views, loaded after the page ------------------------------


@bp.get("/queue-nav")
@access(AGENT)
def nav() -> str:
    """The queue links with bounded counts (one query) and the agent's saved views; the page
    asks for it after loading, so no page's own query count depends on it."""
    from flask import render_template

    counts = queues.counts(current_user)
    views = queues.visible_views(current_user)
    return render_template("_queue_nav.html", QUEUES=queues.QUEUES, counts=counts,
                           count_label=queues.count_label,
                           my_views=[v for v in views if v.owner_id == current_user.id],
                           team_views=[v for v in views if v.owner_id != current_user.id],
                           queue=request.args.get("current"))


# -- density ----------------------------------------------------------------------------------


def _back(default: str) -> str:
    """A local path to return to (never another host; see ``security.safe_next``)."""
    return safe_next(request.form.get("back"), default)


@bp.post("/queue-density")
@access(AGENT)
def density() -> Response:
    """Store the agent's row density (compact or comfortable)."""
    value = request.form.get("density", "")
    if value not in DENSITIES:
        abort(422, "Choose compact or comfortable rows.")
    Agent.update(queue_density=value).where(Agent.id == current_user.id).execute()
    return redirect(_back(url_for("queues.index")), code=303)


# -- bulk changes -----------------------------------------------------------------------------


@dataclass
class RowResult:
    incident_id: int
    reference: str
    outcome: str  # applied, stale, refused
    message: str


@dataclass
class BulkReport:
    action: str
    rows: list[RowResult]
    refused: str = ""  # the whole request was refused (nothing run): why

    @property
    def applied(self) -> list[RowResult]:
        return [row for row in self.rows if row.outcome == "applied"]

    @property
    def not_applied(self) -> list[RowResult]:
        return [row for row in self.rows if row.outcome != "applied"]


def parse_rows(values: list[str]) -> list[tuple[int, int]]:
    """``id:version`` pairs as posted by the row checkboxes; anything else is a bad request."""
    rows = []
    for value in values:
        incident_id, _, version = value.partition(":")
        parsed_id, parsed_version = parse_id(incident_id), parse_id(version)
        if parsed_id is None or parsed_version is None:
            abort(400, "A selected row is malformed; reload the page.")
        rows.append((parsed_id, parsed_version))
    return list(dict.fromkeys(rows))


def _optional(model: Any, field: str) -> Any:
    record_id = parse_id(request.form.get(field))
    if not request.form.get(field):
        return None
    record = model.get_or_none(model.id == record_id) if record_id is not None else None
    if record is None:
        raise DomainError(f"The chosen {field.replace('_', ' ')} does not exist.")
    return record


def _change(action: str) -> Any:
    """The domain change one row gets, from the bulk bar's fields (checked once; a
    ``DomainError`` (422) refuses the whole request before any row is touched)."""
    ctx, actor, form = context(), current_user._get_current_object(), request.form
    if action == "assign":
        team, agent = _optional(Team, "assigned_team"), _optional(Agent, "assigned_agent")
        if team is None and agent is None:
            raise DomainError("Choose a team or an agent to assign to.")
        return lambda incident_id, version: domain.assign(ctx, incident_id, actor, team, agent, version)
    if action == "take":
        return lambda incident_id, version: domain.take_work(ctx, incident_id, actor, version)
    if action == "own":
        return lambda incident_id, version: domain.take_ownership(ctx, incident_id, actor, version)
    if action == "transfer":
        team, agent = _optional(Team, "owner_team"), _optional(Agent, "owner_agent")
        if team is None:
            raise DomainError("Choose the team to transfer ownership to.")
        reason = form.get("transfer_reason", "")
        return lambda incident_id, version: domain.transfer_ownership(
            ctx, incident_id, actor, team, agent, reason, version)
    if action == "status":
        target = form.get("status", "")
        if target not in STATUSES:
            raise DomainError("Choose the status to set.")
        return lambda incident_id, version: domain.change_status(
            ctx, incident_id, actor, target, version, note=form.get("note", ""),
            pending_reason=form.get("pending_reason") or None,
            resolution_code=form.get("resolution_code") or None)
    if action == "priority":
        value = parse_id(form.get("priority"))
        if value not in PRIORITIES:
            raise DomainError("Choose a priority from P1 to P4.")
        return lambda incident_id, version: domain.override_priority(
            ctx, incident_id, actor, value, form.get("reason", ""), version)
    raise DomainError("Choose what to do with the selected rows.")


#: The bulk bar's own fields (besides the rows), shown again as chosen after a refusal.
BULK_FIELDS = ("action", "status", "pending_reason", "resolution_code", "note", "priority", "reason",
               "transfer_reason")


def _posted_choices() -> dict[str, Any]:
    """The bulk bar's fields as posted, kept with the result to show them chosen again."""
    form = request.form
    chosen: dict[str, Any] = {name: form.get(name, "")[:2000] for name in BULK_FIELDS}
    chosen.update(assigned_team=parse_id(form.get("assigned_team")),
                  assigned_agent=parse_id(form.get("assigned_agent")),
                  owner_team=parse_id(form.get("owner_team")),
                  owner_agent=parse_id(form.get("owner_agent")))
    return chosen


def _bulk_choices(members: dict[int, list[Any]], posted: dict[str, Any]) -> dict[str, Any]:
    """What the bulk bar had chosen, to choose it again on the page that answers: the agent
    box marks an agent under one team, so an agent chosen without a team is marked under
    the first team listing them."""
    chosen: dict[str, Any] = {name: str(posted.get(name) or "") for name in BULK_FIELDS}

    def team_of(team: int | None, agent: int | None) -> int | None:
        if agent is not None and team is None:
            return next((team_id for team_id, people in members.items()
                         if any(person.id == agent for person in people)), None)
        return team

    team, agent = posted.get("assigned_team"), posted.get("assigned_agent")
    chosen.update(assigned_team=team, assigned_agent=agent, agent_team=team_of(team, agent))
    team, agent = posted.get("owner_team"), posted.get("owner_agent")  # older results lack them
    chosen.update(owner_team=team, owner_agent=agent, owner_agent_team=team_of(team, agent))
    return chosen


def run_bulk(action: str, rows: list[tuple[int, int]]) -> BulkReport:
    """Each row's change in its own transaction, checked against the version the agent saw;
    every row gets its outcome (nothing fails silently)."""
    change = _change(action)
    results = []
    for incident_id, version in rows:
        reference = Incident(id=incident_id).reference
        try:
            change(incident_id, version)
        except StaleVersion:
            results.append(RowResult(incident_id, reference, "stale",
                                     "Changed by someone else since you loaded the page."))
        except DomainError as error:
            results.append(RowResult(incident_id, reference, "refused", str(error)))
        else:
            results.append(RowResult(incident_id, reference, "applied", "Applied."))
    return BulkReport(action, results)


def _still_as_sent(sent: list[list[int]]) -> frozenset[int]:
    """The rows to show ticked: those still at the version the bar was sent with. A row
    someone changed since comes back unticked, showing what they did: ticked with its new
    version, one more click would overwrite their change unseen (SECURITY-CASES G12);
    ticking it again is a decision. Checked on every showing, reloads included."""
    versions = dict(sent)
    if not versions:
        return frozenset()
    return frozenset(incident_id for incident_id, version in Incident.select(Incident.id, Incident.version)
                     .where(Incident.id.in_(list(versions))).tuples() if version == versions[incident_id])


def _answer(name: str, back_args: MultiDict, report: BulkReport, ticked: list[tuple[int, int]],
            keep_bar: bool) -> Response:
    """Keep the result and send the browser to the queue it came from, filters and all, where
    it is shown (Post/Redirect/Get: a reload there shows it again and sends nothing)."""
    key = bulk_results.keep(current_user.id, {
        "action": report.action, "refused": report.refused,
        "rows": [[row.incident_id, row.outcome, row.message] for row in report.rows],
        "ticked": [list(pair) for pair in ticked],
        "bar": _posted_choices() if keep_bar else None})
    args = {key_: back_args.getlist(key_) for key_ in (*queues.FILTER_KEYS, "view") if key_ in back_args}
    return redirect(url_for("queues.show", name=name, **args, bulk=key), code=303)


@bp.post("/queue-bulk")
@access(AGENT)
def bulk() -> Any:
    """Change the selected rows, then send the browser to the queue page (a GET) that says
    what happened to each."""
    name = request.form.get("queue", "")
    if name not in queues.QUEUES:
        abort(400, "Unknown queue.")
    rows = parse_rows(request.form.getlist("row"))
    back_args = MultiDict()
    back = _back("")
    if back:
        back_args = MultiDict(parse_qsl(urlsplit(back).query))
    action = request.form.get("action", "")
    if not rows:
        return _answer(name, back_args, BulkReport("none", []), ticked=[], keep_bar=True)
    if len(rows) > BULK_LIMIT:
        abort(413, f"Select at most {BULK_LIMIT} rows for one bulk change ({len(rows)} were sent).")
    try:
        report = run_bulk(action, rows)
    except DomainError as refused:  # the bar's fields: nothing ran; the ticks and choices stay
        return _answer(name, back_args, BulkReport(action, [], refused=str(refused)), ticked=rows,
                       keep_bar=True)
    # The rows a rule refused stay ticked (while nobody else changes them, see _still_as_sent)
    # and the bar keeps its choices, so the agent can fix the cause and run it again. All
    # applied: a clean bar.
    refused = {row.incident_id for row in report.not_applied if row.outcome == "refused"}
    return _answer(name, back_args, report, ticked=[pair for pair in rows if pair[0] in refused],
                   keep_bar=bool(report.not_applied))


# -- saved views ------------------------------------------------------------------------------


def _view_fields() -> dict[str, Any]:
    team_raw = request.form.get("team_share") or ""
    team = parse_id(team_raw) if team_raw else None
    if team_raw and team is None:
        abort(422, "Choose one of your teams.")
    return {"name": request.form.get("name", ""), "queue": request.form.get("queue", ""),
            "query": request.form.get("query", ""), "columns": request.form.getlist("column"),
            "team": team}


def _view_error(error: DomainError, view_id: int | None = None) -> Any:
    """A refused save: the queue again, the form open with what was typed and why (422)."""
    if error.status == 403:
        abort(403, str(error))
    name = request.form.get("queue", "")
    if name not in queues.QUEUES:
        abort(422, str(error))
    args = MultiDict(parse_qsl(request.form.get("query", "")[:2000]))
    try:
        queues.Filters.parse(args)
    except DomainError:  # the filters were what was refused: the queue without them
        args = MultiDict()
    if view_id is not None:
        args["view"] = str(view_id)
    typed = {"error": str(error), "name": request.form.get("name", "")[:60],
             "team": parse_id(request.form.get("team_share") or ""),
             "columns": request.form.getlist("column")}
    return _render_queue(name, args, status=422, view_form=typed)


@bp.post("/views")
@access(AGENT)
def create_view() -> Any:
    """Save the queue as it is filtered and sorted, with the chosen columns, under a name."""
    try:
        view = queues.save_view(current_user, **_view_fields())
    except DomainError as error:
        return _view_error(error)
    return redirect(url_for("queues.show", name=view.queue, view=view.id), code=303)


@bp.post("/views/<int:view_id>")
@access(AGENT)
def update_view(view_id: int) -> Any:
    """Change a view's name, sharing, filters or columns (its creator or a lead of its team)."""
    try:
        view = queues.get_view(current_user, view_id)
        view = queues.save_view(current_user, view=view, **_view_fields())
    except DomainError as error:
        if error.status == 404:
            abort(404)
        return _view_error(error, view_id)
    return redirect(url_for("queues.show", name=view.queue, view=view.id), code=303)


@bp.post("/views/<int:view_id>/delete")
@access(AGENT)
def delete_view(view_id: int) -> Any:
    try:
        view = queues.get_view(current_user, view_id)
        queues.delete_view(current_user, view)
    except DomainError as error:
        if error.status == 404:
            abort(404)
        return _view_error(error)
    return redirect(url_for("queues.show", name=view.queue), code=303)
