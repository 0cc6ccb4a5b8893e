"""Rendering helpers: safe Markdown, template fragments, local times."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import nh3
from flask import current_app, render_template
from flask_htmx import HTMX
from markdown_it import MarkdownIt
from markupsafe import Markup

#: Reads the HX-* request headers; stateless, attached to each app by the factory.
htmx = HTMX()
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
_ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td",
}
_ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}


def render_markdown(text: str | None) -> Markup:
    """Markdown to HTML with raw HTML removed and only plain attributes kept.

    ``hx-*`` and event attributes never survive (they are not allow-listed), and
    callers put the result inside an ``hx-disable`` container as a second fence.
    """
    html = _markdown.render(text or "")
    clean = nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
    return Markup(clean)  # noqa: S704 - sanitised by nh3 just above


def format_duration(delta: dt.timedelta) -> str:
    """A short, exact-enough duration: 45m, 3h 20m, 2d 4h (negative counts as zero)."""
    minutes = max(0, int(delta.total_seconds() // 60))
    days, minutes = divmod(minutes, 60 * 24)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"


def local_time(value: dt.datetime | None, zone: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Show a stored UTC time in the viewer's time zone."""
    if value is None:
        return "—"
    return value.replace(tzinfo=dt.UTC).astimezone(ZoneInfo(zone)).strftime(fmt)


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
    return render_block(template, block, **context)


def render_block(template_name: str, block: str, **context: Any) -> str:
    """Render one named block of a template with the normal Flask context."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    template = app.jinja_env.get_template(template_name)
    app.update_template_context(context)
    return "".join(template.blocks[block](template.new_context(context)))
