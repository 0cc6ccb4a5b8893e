"""Attachments: files customers send by mail or through the portal, and agents with a reply or note.

Kept outside any web root, in ``<instance>/attachments/`` under their SHA-256
(the same file twice is stored once). The name a sender gave is only a
download name: sanitised (no path, control or bidi-override characters,
bounded length). The content type is derived here from the sanitised name,
never taken from the sender, and anything a browser could run (HTML, SVG,
XML, scripts) is served as ``application/octet-stream``; downloads always
come as ``attachment`` with ``nosniff`` and ``CSP: sandbox`` (see the views).
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import os
import re
import unicodedata
from pathlib import Path

from helpdesk.context import Context
from helpdesk.errors import DomainError
from helpdesk.models import Agent, Attachment, Contact, TimelineEntry
from helpdesk.words import format_size

logger = logging.getLogger(__name__)

MAX_COUNT = 10  # files per message
MAX_NAME = 120
#: Types served under their own name; everything else is application/octet-stream.
SAFE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf",
                        "text/plain", "text/csv", "application/zip", "application/gzip",
                        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                        "application/msword", "application/vnd.ms-excel"})
_BIDI = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]")


def sanitise_name(name: str | None) -> str:
    """A harmless display and download name for whatever a sender called the file."""
    name = unicodedata.normalize("NFC", str(name or ""))
    name = _BIDI.sub("", name)
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")  # controls, NUL, format
    name = name.replace("\\", "/").rsplit("/", 1)[-1]  # no path, whatever the separator
    name = re.sub(r'[<>:"|?*]', "_", name).strip().lstrip(".").strip()
    return shorten_name(name) or "attachment"


def shorten_name(name: str, limit: int = MAX_NAME) -> str:
    """A file name of at most ``limit`` characters, cut in the middle of its stem: the start and
    the end (where "-final-v2" and dates are) and the extension, which gives the file its type,
    all stay (``Quarterly-report-…-final-v2.pdf``)."""
    if len(name) <= limit:
        return name
    stem, dot, extension = name.rpartition(".")
    if dot and stem and 0 < len(extension) <= 16 and not any(c.isspace() for c in extension):
        extension = "." + extension
    else:  # no extension, or words after a dot ("Minutes. Part two of the meeting"): cut the whole
        stem, extension = name, ""
    room = limit - len(extension) - 1  # (one character for the ellipsis)
    head = (room + 1) // 2
    return stem[:head] + "\u2026" + stem[len(stem) - (room - head):] + extension


def content_type(name: str) -> str:
    guessed = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
    return guessed if guessed in SAFE_TYPES else "application/octet-stream"


def _path(ctx: Context, sha256: str) -> Path:
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise DomainError("Not an attachment key.")
    return Path(ctx.instance_path) / "attachments" / sha256[:2] / sha256


def check(ctx: Context, files: list[tuple[str, bytes]]) -> None:
    """Refuse the whole set with a clear message if one file is over the limits or a plugin
    refuses it (so the sender can fix it; nothing is half-kept)."""
    if len(files) > MAX_COUNT:
        raise DomainError(f"At most {MAX_COUNT} files at once, please.")
    limit = ctx.settings.attachment_max_bytes
    for name, data in files:
        if len(data) > limit:
            raise DomainError(f"{sanitise_name(name)} is {format_size(len(data))} ({len(data):,} bytes); "
                              f"the limit is {format_size(limit)} ({limit:,} bytes) per file.")
    for name, data in files:
        reason = verdict(ctx, name, data)
        if reason:
            raise DomainError(f"{sanitise_name(name)} was not accepted: {reason}")


def verdict(ctx: Context, name: str, data: bytes) -> str | None:
    """Ask the plugins (``helpdesk_attachment_verdict``, e.g. a virus scanner) about one file:
    ``None`` to keep it, else the reason it is refused. A plugin that fails refuses the file
    (fail closed): an unscanned file is not kept, the message itself still is."""
    from helpdesk.plugins import record_failure

    clean = sanitise_name(name)
    arguments = {"filename": clean, "content_type": content_type(clean), "data": data, "ctx": ctx}
    hook = ctx.pm.hook.helpdesk_attachment_verdict
    impls = hook.get_hookimpls()
    wrapped = any(impl.hookwrapper or getattr(impl, "wrapper", False) for impl in impls)
    for impl in [None] if wrapped else reversed(impls):  # call order; a wrapper sees the whole call
        try:
            answer = (hook(**arguments) if impl is None
                      else impl.function(**{a: arguments.get(a) for a in impl.argnames}))
        except Exception as failure:  # noqa: BLE001 - any plugin failure: fail closed, and say so
            # Every file is refused while, say, the virus scanner is down: the admin hears of it.
            plugin = impl.plugin_name if impl is not None else "(several: a hook wrapper)"
            logger.warning("attachment %s refused: plugin %r failed: %s", clean, plugin, failure)
            record_failure(plugin, "helpdesk_attachment_verdict", None, failure)
            return "it could not be checked (try again later)"
        if answer is not None:
            return " ".join(str(answer).split())[:200] or "refused by a plugin"
    return None


def store(ctx: Context, incident_id: int, entry: TimelineEntry | int | None, name: str, data: bytes, *,
          contact: Contact | None = None, agent: Agent | None = None) -> Attachment:
    """Keep one file (call :func:`check` first) and record it on the incident."""
    digest = hashlib.sha256(data).hexdigest()
    path = _path(ctx, digest)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{digest}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)
    clean = sanitise_name(name)
    return Attachment.create(incident=incident_id, entry=entry, sha256=digest, size=len(data),
                             filename=clean, content_type=content_type(clean),
                             contact=contact, agent=agent)


def path_of(ctx: Context, attachment: Attachment) -> Path:
    return _path(ctx, attachment.sha256)


def for_entries(incident_id: int) -> dict[int | None, list[Attachment]]:
    """The incident's attachments by timeline entry (None: came with the incident)."""
    found: dict[int | None, list[Attachment]] = {}
    for attachment in Attachment.select().where(Attachment.incident == incident_id).order_by(Attachment.id):
        found.setdefault(attachment.entry_id, []).append(attachment)
    return found
