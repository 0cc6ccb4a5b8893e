"""A queue page's rows as HTML, built in Python.

The rows are the queue page's hottest markup: 25–200 rows of eight cells, each cell a badge,
a pair, a time or an SLA state. As a Jinja loop they cost about half of the page's time
(every attribute read, call and ``escape`` goes through Jinja's runtime); as f-strings over
escaped values, a fifth of that. The markup is the same contract ``templates/queue.html``
documents (``static/console.js`` and ``static/queue.js`` depend on it): each row is
``<tr data-row>``, its incident link carries ``data-open``, and a row the viewer may take has
a ``data-shortcut="take"`` button in a form posting ``csrf_token`` and ``version``.

Every value that comes from the database or a plugin goes through :func:`escape`; the
only text written unescaped is this module's own markup, ints and ISO timestamps.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from helpdesk.rendering import DEFAULT_TIME_FORMAT, local_time, pair_text, priority_badge, status_badge
from helpdesk.web.plugin_ui import column_value
from helpdesk.words import format_duration, format_work

#: The SLA states whose due time the Due column shows.
_DUE_SHOWN = frozenset({"running", "warning", "breached", "paused"})


@dataclass(frozen=True)
class RowContext:
    """What every row of one page shares: computed once per request by the view."""

    shown: list[str]  # the built-in columns, in the viewer's order
    plugin_columns: list[Any]  # QueueColumn records from plugins
    zone: str  # the viewer's time zone
    moment: dt.datetime  # one instant for every row's SLA state
    sla_status: Callable[[Any], Any]  # clock -> sla.Status
    incident_url: Callable[[int], str]
    take_url: Callable[[int], str] | None  # None: the Take route is not installed
    take_token: str | None
    here: str  # where a Take returns to
    next_escalations: Mapping[int, Any] | None = None  # the At-risk page's extra column
    step_titles: Callable[[Iterable[str]], str] | None = None
    ticked: frozenset[int] = frozenset()  # rows shown ticked (kept after a refused bulk change)


def may_take(incident: Any) -> bool:
    """The Take button shows for an active incident nobody is assigned to work on."""
    return bool(incident.is_active and incident.assigned_agent_id is None)


def rows_html(incidents: Iterable[Any], rows: RowContext) -> Markup:
    """The ``<tr>`` elements of a queue page, one per incident."""
    shared = _Shared(rows)
    return Markup("\n".join(_row(incident, rows, shared) for incident in incidents))  # noqa: S704


class _Shared:
    """What one page's rows have in common, escaped once: the Take form's fixed fields, the
    plugin columns' openings, and each owner or assignee pair already written (a page shows
    a few teams and agents)."""

    def __init__(self, rows: RowContext) -> None:
        self.take_fields = (f'<input type="hidden" name="csrf_token" value="{escape(rows.take_token)}">'
                            if rows.take_url is not None else "")
        self.take_next = f'<input type="hidden" name="next" value="{escape(rows.here)}">'
        self.columns = [
            (column, f'<td data-column="{escape(column.name)}" data-label="{escape(column.title)}">')
            for column in rows.plugin_columns]
        self.pairs: dict[tuple[Any, ...], str] = {}

    def pair(self, team: Any, agent: Any, empty: str) -> str:
        key = (team.id, team.name) if team else None, (agent.id, agent.display_name) if agent else None, empty
        found = self.pairs.get(key)
        if found is None:
            found = self.pairs[key] = str(pair_text(team, agent, empty, titled=True))
        return found


def _time(value: dt.datetime | None, zone: str) -> str:
    """A moment as the page's time format; where a narrow cell wraps it, it wraps between the
    date and the time, never inside the date."""
    text = str(escape(local_time(value, zone, DEFAULT_TIME_FORMAT, with_zone=True)))
    day, space, rest = text.partition(" ")
    return f'<span class="day">{day}</span> {rest}' if space else text


def _clock(incident: Any) -> Any:
    """The clock a row's Due column shows: the response target until it is met or stopped,
    then the resolution target (a joined clock without an id is an absent one)."""
    response = incident.response_clock
    response = response if response is not None and response.id else None
    resolution = incident.resolution_clock
    resolution = resolution if resolution is not None and resolution.id else None
    if response is not None and not response.met_at and not response.stopped_at:
        return response
    return resolution


def _due(incident: Any, rows: RowContext) -> str:
    clock = _clock(incident)
    due = rows.sla_status(clock) if clock else None
    if due is None:
        return "—"
    if due.due_at and due.state in _DUE_SHOWN:
        if due.state == "breached":
            opening, left = ('<span class="due-breached" data-breached><strong>Breached</strong> · ',
                             f"{format_work(-due.remaining, due.calendar)} over")
        else:
            opening = f'<span class="due-{due.state}">'
            left = "paused" if due.state == "paused" else f"{format_work(due.remaining, due.calendar)} left"
        return (f'{opening}<time datetime="{due.due_at.isoformat()}Z">{_time(due.due_at, rows.zone)}'
                f'</time> · <span class="left">{escape(left)}</span></span>')
    if due.state == "late":
        return "Breached (met late)"
    if due.state == "met":
        return "Met"
    return "—"


def _next_escalation(incident: Any, rows: RowContext) -> str:
    upcoming = rows.next_escalations.get(incident.id) if rows.next_escalations else None
    if not upcoming:
        return "—"
    titles = rows.step_titles(upcoming.steps) if rows.step_titles else ", ".join(upcoming.steps)
    head = f"Level {int(upcoming.number)} · {escape(titles)} · "
    if upcoming.manual:
        return head + "by hand"
    if not upcoming.at:
        return head + "when its SLA clock runs"
    if upcoming.at <= rows.moment:
        return head + "due now"
    return (f'{head}in {escape(format_duration(upcoming.at - rows.moment))}, <time datetime="'
            f'{upcoming.at.isoformat()}Z">{_time(upcoming.at, rows.zone)}</time>'
            + (" (snoozed)" if upcoming.snoozed else ""))


def _cell(name: str, incident: Any, rows: RowContext, shared: _Shared) -> str:
    if name == "priority":
        level = incident.escalation_level
        escalated = (f' <span class="badge escalated" title="Escalation level">L{int(level)}</span>'
                     if level else "")
        return f'<td data-label="Priority">{priority_badge(incident.priority)}{escalated}</td>'
    if name == "status":
        return f'<td data-label="Status">{status_badge(incident.status)}</td>'
    if name == "due":
        return f'<td data-label="Due" class="due">{_due(incident, rows)}</td>'
    if name == "owner":
        pair = shared.pair(incident.owner_team, incident.owner_agent, "Unowned")
        return f'<td data-label="Owner">{pair}</td>'
    if name == "assignee":
        pair = shared.pair(incident.assigned_team, incident.assigned_agent, "Unassigned")
        return f'<td data-label="Assignee">{pair}</td>'
    if name == "updated":
        return f'<td data-label="Updated" class="updated">{_time(incident.updated_at, rows.zone)}</td>'
    return ""


def _row(incident: Any, rows: RowContext, shared: _Shared) -> str:
    number, version = int(incident.id), int(incident.version)
    reference = escape(incident.reference)
    requester = incident.requester
    parts = [
        f'<tr data-row data-incident="{number}" data-version="{version}">'
        f'<td class="select"><input type="checkbox" name="row" value="{number}:{version}" '
        f'form="bulk-form" data-select aria-label="Select {reference}"'
        f'{" checked" if number in rows.ticked else ""}></td>',
        f'<td class="ref"><a href="{escape(rows.incident_url(number))}" data-open>{reference}</a></td>',
        f'<td class="title"><span class="title-text">{escape(incident.title)}</span>'
        + (f' <small class="requester">{escape(requester.name)}</small>' if requester else "")
        + "</td>",
    ]
    parts.extend(_cell(name, incident, rows, shared) for name in rows.shown)
    if rows.next_escalations is not None:
        parts.append(f'<td data-label="Next escalation" class="next-escalation">'
                     f'{_next_escalation(incident, rows)}</td>')
    for column, opening in shared.columns:
        parts.append(f'{opening}{escape(column_value(column, incident))}</td>')
    take = ""
    if rows.take_url is not None and may_take(incident):
        take = (f'<form method="post" action="{escape(rows.take_url(number))}" class="take">'
                f'{shared.take_fields}<input type="hidden" name="version" value="{version}">'
                f'{shared.take_next}'
                f'<button type="submit" data-shortcut="take" aria-label="Take {reference}">Take</button>'
                "</form>")
    parts.append(f'<td class="row-actions">{take}</td></tr>')
    # A line break between cells, as the template wrote them: the row's text (what a test,
    # a copy or a find-in-page reads) keeps its cells apart ("INC-1 Printer", not "INC-1Printer").
    return "\n".join(parts)
