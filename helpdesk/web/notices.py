"""In-app notices: the bell in the header and the page that lists them."""

from __future__ import annotations

from typing import Any

import peewee
from flask import Blueprint, redirect, render_template, url_for
from flask_login import current_user

from helpdesk.clock import now
from helpdesk.db import Statement
from helpdesk.models import Notice
from helpdesk.security import AGENT, access

bp = Blueprint("notices", __name__, url_prefix="/notices")


_UNREAD = Statement(lambda agent_id: Notice.select(peewee.fn.COUNT(Notice.id))
                    .where((Notice.agent == agent_id) & Notice.read_at.is_null()))


def unread_count(agent_id: int) -> int:
    """The bell's figure, on every page (one query, compiled once)."""
    return _UNREAD.execute(agent_id).fetchone()[0]


@bp.get("/")
@access(AGENT)
def index() -> Any:
    notices = list(Notice.select().where(Notice.agent == current_user.id)
                   .order_by(Notice.id.desc()).limit(100))
    return render_template("notices.html", notices=notices)


@bp.get("/bell")
@access(AGENT)
def bell() -> Any:
    return render_template("_bell.html", unread=unread_count(current_user.id))


@bp.post("/read")
@access(AGENT)
def mark_read() -> Any:
    Notice.update(read_at=now()).where((Notice.agent == current_user.id)
                                       & Notice.read_at.is_null()).execute()
    return redirect(url_for("notices.index"), code=303)
