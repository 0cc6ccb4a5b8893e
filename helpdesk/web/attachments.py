"""Attachment downloads for agents (the portal has its own, limited to a customer's incidents),
and the template helper that lists an entry's files.

Every download is ``Content-Disposition: attachment`` (with an RFC 5987 name),
``X-Content-Type-Options: nosniff`` and ``Content-Security-Policy: sandbox``, in
the content type derived from the sanitised name — never inline HTML or SVG.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, send_file

from helpdesk import attachments
from helpdesk.db import Statement
from helpdesk.models import Attachment
from helpdesk.security import AGENT, access
from helpdesk.web import context

bp = Blueprint("attachments", __name__)


_FILES = Statement(lambda incident_id: Attachment.select().where(Attachment.incident == incident_id)
                   .order_by(Attachment.id), models=(Attachment,))


def files_by_entry(incident_id: int) -> dict[int | None, list[Attachment]]:
    """The incident's files by the timeline entry they came with (None: with the incident
    itself, shown on its ``created`` entry), in one query rather than one per message."""
    found: dict[int | None, list[Attachment]] = {}
    for (attachment,) in _FILES.rows(incident_id):
        found.setdefault(attachment.entry_id, []).append(attachment)
    return found


def serve(attachment: Attachment) -> Response:
    path = attachments.path_of(context(), attachment)
    if not path.is_file():
        abort(404)
    response = send_file(path, mimetype=attachment.content_type, as_attachment=True,
                         download_name=attachment.filename, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox"
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/attachments/<int:attachment_id>")
@access(AGENT)
def download(attachment_id: int) -> Response:
    attachment = Attachment.get_or_none(Attachment.id == attachment_id)
    if attachment is None:
        abort(404)
    return serve(attachment)
