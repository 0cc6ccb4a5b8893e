"""Rendering helpers: safe Markdown, template fragments, local times and durations in words."""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any
from zoneinfo import ZoneInfo

import nh3
from flask import current_app, render_template
from flask_htmx import HTMX
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from helpdesk.words import (  # noqa: F401 - the filters
    format_duration,
    format_percent,
    format_size,
    format_work,
    target_span,
)

#: Reads the HX-* request headers; stateless, attached to each app by the factory.
htmx = HTMX()
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
_ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td",
}
_ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}


#: Texts rendered as Markdown are remembered (the timeline is append-only, so an incident page
#: renders the same entries at every view, at about a tenth of its time; a hostile text of
#: 9,000 characters costs ~0.2 s once per process, not on every view), the least recently
#: shown dropped first once text and HTML together pass :data:`_REMEMBER_BYTES` characters
#: (16 MB at most per process, whatever customers write).
#: Texts over :data:`MARKDOWN_UP_TO` are shown as plain text: Markdown costs up to ~40 µs a
#: character on hostile input ("[[[[…", "*a*a…", wide tables), so a 200,000-character message
#: mailed by anyone took 5–8 s of a worker on every view of its incident; plain text costs
#: microseconds. (A pasted log or mail thread is what runs this long, and reads better as it
#: was written.)
MARKDOWN_UP_TO = 10_000
_REMEMBER_BYTES = 4_000_000
_remembered: OrderedDict[str, Markup] = OrderedDict()
_remembered_size = 0
_remembered_lock = threading.Lock()


def render_markdown(text: str | None) -> Markup:
    """Markdown to HTML with raw HTML removed and only plain attributes kept.

    ``hx-*`` and event attributes never survive (they are not allow-listed), and
    callers put the result inside an ``hx-disable`` container as a second fence.
    """
    global _remembered_size
    text = text or ""
    if len(text) > MARKDOWN_UP_TO:
        return Markup('<p class="plain-text">{}</p>').format(text)
    with _remembered_lock:
        html = _remembered.get(text)
        if html is not None:
            _remembered.move_to_end(text)
            return html
    html = _render(text)
    with _remembered_lock:
        if text not in _remembered and len(text) + len(html) <= _REMEMBER_BYTES:
            _remembered[text] = html
            _remembered_size += len(text) + len(html)
            while _remembered_size > _REMEMBER_BYTES:
                old_text, old_html = _remembered.popitem(last=False)
                _remembered_size -= len(old_text) + len(old_html)
    return html


def _render(text: str) -> Markup:
    html = _markdown.render(text)
    clean = nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
    return Markup(clean)  # noqa: S704 - sanitised by nh3 just above



DEFAULT_TIME_FORMAT = "%Y-%m-%d %H:%M"


def _zoned(value: dt.datetime, zone: str) -> dt.datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)  # stored times are naive UTC
    return value.astimezone(ZoneInfo(zone))


def local_time(value: dt.datetime | None, zone: str, fmt: str = DEFAULT_TIME_FORMAT,
               with_zone: bool = False) -> str:
    """Show a stored UTC time in the viewer's time zone; ``with_zone`` adds its abbreviation
    ("2026-06-09 09:15 BST") so a reader never has to guess which clock a time is on."""
    if value is None:
        return "—"
    local = _zoned(value, zone)
    text = local.strftime(fmt)
    if with_zone and ("%H" in fmt or "%M" in fmt or "%I" in fmt):
        text = f"{text} {zone_label(local)}"
    return text


def zone_label(local: dt.datetime) -> str:
    """The zone's abbreviation ("BST", "CET"), or "UTC+05:30" where the zone has none."""
    name = local.tzname() or ""
    if name and not name.lstrip("+-").isdigit():
        return name
    offset = local.utcoffset() or dt.timedelta(0)
    sign = "-" if offset < dt.timedelta(0) else "+"
    hours, rest = divmod(abs(int(offset.total_seconds())) // 60, 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}"


def relative_time(value: dt.datetime, moment: dt.datetime) -> str:
    """How far ``value`` is from ``moment`` in words: "in 3 hours", "5 minutes ago", "just now"."""
    delta = value - moment
    if abs(delta) < dt.timedelta(minutes=1):
        return "just now"
    words = format_duration(abs(delta))
    return f"in {words}" if delta > dt.timedelta(0) else f"{words} ago"


def time_element(value: dt.datetime | None, zone: str, fmt: str = DEFAULT_TIME_FORMAT,
                 moment: dt.datetime | None = None) -> Markup:
    """A ``<time>`` element: the local time with its zone abbreviation (or, given ``moment``,
    the time relative to it), the full zone name and exact time on hover, ISO UTC for machines."""
    if value is None:
        return Markup("—")
    exact = local_time(value, zone, fmt, with_zone=True)
    shown = relative_time(value, moment) if moment is not None else exact
    title = f"{exact} ({zone})" if moment is not None else zone
    stamp = _zoned(value, "UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(stamp, title, shown)


_UTC_STAMP = re.compile(r"\b(\d{4}-\d{2}-\d{2} \d{2}:\d{2}) UTC\b")


def zone_stamps(text: str | None, zone: str) -> str:
    """Stored texts that name a UTC time ("due 2026-06-09 08:15 UTC", written by the SLA
    clock) shown in the viewer's zone, so one page never mixes two clocks."""
    def local(match: re.Match[str]) -> str:
        stamp = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M")
        return local_time(stamp, zone, with_zone=True)

    return _UTC_STAMP.sub(local, text or "")


# -- badges and pairs: Python, not macros, because a queue page shows four per row ------------


def options(pairs: Iterable[tuple[int, str]], selected: int | None = None) -> Markup:
    """``<option>`` elements for (id, name) pairs, built as one string with each name escaped:
    the requester select's 500 contacts cost Jinja ~15 % of the incident page. The last few
    lists are remembered as text (contacts rarely change between two page views)."""
    key = tuple(pairs)
    html = _OPTIONS.get(key)
    if html is None:
        html = "".join(f'<option value="{int(value)}">{escape(name)}</option>' for value, name in key)
        if len(_OPTIONS) >= 64:  # the contacts, the teams, each team's agents
            _OPTIONS.clear()
        _OPTIONS[key] = html
    if selected is not None:
        mark = f'<option value="{int(selected)}"'
        html = html.replace(f"{mark}>", f"{mark} selected>", 1)
    return Markup(html)  # noqa: S704 - every name escaped, every value an int


_OPTIONS: dict[tuple[tuple[int, str], ...], str] = {}


def member_options(teams: Iterable[tuple[int, str]], members: dict[int, list[tuple[int, str]]],
                   selected_team: int | None = None, selected_agent: int | None = None) -> Markup:
    """The agents of each team as ``<optgroup>`` elements (a team without agents is left
    out), with ``selected_agent`` marked only under ``selected_team``: an agent in two
    teams is two choices. Built and remembered like :func:`options`."""
    groups = []
    for team_id, name in teams:
        if not members.get(team_id):
            continue
        html = str(options(members[team_id], selected_agent if team_id == selected_team else None))
        groups.append(f'<optgroup label="{escape(name)}" data-team="{int(team_id)}">{html}</optgroup>')
    return Markup("".join(groups))  # noqa: S704 - every name escaped, every value an int


def status_badge(status: str) -> Markup:
    """An incident's status as a badge with its words (colour is never the only sign)."""
    from helpdesk.models import STATUSES

    found = _BADGES.get(("status", status))
    if found is None:
        html = f'<span class="badge status-{escape(status)}">{escape(STATUSES.get(status, status))}</span>'
        found = _BADGES[("status", status)] = Markup(html)  # noqa: S704 - escaped above
    return found


def priority_badge(priority: int) -> Markup:
    """"P2" with the priority's words on hover."""
    from helpdesk.models import PRIORITIES

    found = _BADGES.get(("priority", priority))
    if found is None:
        words, code = escape(PRIORITIES.get(priority, priority)), escape(priority)
        html = f'<span class="badge p{code}" title="{words}">P{code}</span>'
        found = _BADGES[("priority", priority)] = Markup(html)  # noqa: S704 - escaped above
    return found


_BADGES: dict[tuple[str, object], Markup] = {}  # a handful of statuses and priorities


def pair_text(team: Any, agent: Any, empty: str = "—", *, titled: bool = False) -> Markup:
    """An owner or assignee pair, "Team / Agent", as text that does not rely on colour;
    ``empty`` when neither is set. ``titled`` repeats it on hover (narrow queue columns).
    Built with f-strings over escaped values: ``Markup.format`` costs several times more."""
    person = escape(agent.display_name) if agent else Markup("<em>no agent</em>")
    if not titled:
        return Markup(f'<span class="pair">{escape(team.name if team else empty)} / {person}</span>')  # noqa: S704
    if not team and not agent:
        return Markup(f'<span class="pair none">{escape(empty)}</span>')  # noqa: S704 - escaped
    team_name = escape(team.name if team else "—")
    hover = escape(f"{team.name if team else '—'} / {agent.display_name if agent else 'no agent'}")
    return Markup(f'<span class="pair" title="{hover}">{team_name} / {person}</span>')  # noqa: S704 - escaped


def id_url(endpoint: str, key: str) -> Any:
    """A function from an id to ``url_for(endpoint, key=id)``, built with one ``url_for``:
    a page linking each of its rows pays for URL building once, not once a row."""
    from flask import url_for

    marker = 918273645546372819
    head, _, tail = url_for(endpoint, **{key: marker}).partition(str(marker))
    return lambda value: f"{head}{int(value)}{tail}"


def remembered_url_for(app: Any) -> Callable[..., str]:
    """``url_for`` for templates, remembering each link it built: a page builds ~40 links
    (navigation, forms, static files), each ~10 µs of Flask's URL building. A link depends
    only on the endpoint, its values, the request's method (which rule matches) and the
    script root, so it is remembered under those. Flask builds it afresh for anything else:
    a blueprint-relative endpoint, ``_external`` and the other ``_`` options, a value that is
    not a plain str, int, float, bool or None, an app with ``url_defaults`` functions or
    host or subdomain matching, and outside a request."""
    from flask import has_request_context, request, url_for

    remembered: dict[tuple[Any, ...], str] = {}
    plain = (str, int, float, bool, type(None))

    def build(endpoint: str, **values: Any) -> str:
        if (endpoint[:1] == "." or app.url_default_functions or app.url_map.host_matching
                or app.subdomain_matching or not has_request_context()):
            return url_for(endpoint, **values)
        current = request._get_current_object()  # one trip through the proxy, not two
        key: list[Any] = [current.environ.get("SCRIPT_NAME", ""), current.method, endpoint]
        for name, value in (sorted(values.items()) if len(values) > 1 else values.items()):
            if name[:1] == "_" or type(value) not in plain:
                return url_for(endpoint, **values)
            key += (name, type(value), value)
        found = remembered.get(fixed := tuple(key))
        if found is None:
            found = url_for(endpoint, **values)
            if len(remembered) >= 4096:  # links with ids in them would grow it without end
                remembered.clear()
            remembered[fixed] = found
        return found

    return build


def fragment_target(htmx: HTMX, blocks: set[str]) -> str | None:
    """The block an HTMX request asks for by its target id, if it is one we render.

    Full pages by default; a fragment only when a known element asked for
    itself (a boosted link or a history restore gets the whole page).
    """
    if not htmx or htmx.boosted or htmx.history_restore_request:
        return None
    target = htmx.target
    return target.replace("-", "_") if target and target.replace("-", "_") in blocks else None


def render_page(template: str, blocks: set[str], **context: Any) -> str:
    """Render the whole page, or only the block the HTMX target asks for."""
    block = fragment_target(htmx, blocks)
    if block is None:
        return render_template(template, **context)
    # ``as_fragment``: the block may add out-of-band swaps for what it changes outside itself.
    return render_block(template, block, as_fragment=True, **context)


def render_block(template_name: str, block: str, **context: Any) -> str:
    """Render one named block of a template with the normal Flask context."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    template = app.jinja_env.get_template(template_name)
    app.update_template_context(context)
    return "".join(template.blocks[block](template.new_context(context)))
