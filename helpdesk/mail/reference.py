"""The signed reference customers' mail carries in its subject: ``[INC-42 #3f9a0c1b7e]``.

The reference alone is guessable; the ten hex digits are an HMAC of it under
the instance's secret key, so a subject token threads a message only if we
wrote it. Threading by ``In-Reply-To``/``References`` comes first; the token
rescues replies from clients that drop those headers.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from helpdesk.context import Context

_TOKEN = re.compile(r"\[INC-(\d{1,18}) #([0-9a-f]{10})\]", re.I)


def signature(ctx: Context, incident_id: int) -> str:
    key = ctx.settings.secret_key.encode()
    return hmac.new(key, f"incident-reference:{incident_id}".encode(), hashlib.sha256).hexdigest()[:10]


def subject_tag(ctx: Context, incident_id: int) -> str:
    """What outbound mail to requesters puts in its subject."""
    return f"[INC-{incident_id} #{signature(ctx, incident_id)}]"


def incident_in_subject(ctx: Context, subject: str) -> int | None:
    """The incident a subject's signed token names, if the signature is ours."""
    for number, sig in _TOKEN.findall(subject or ""):
        if hmac.compare_digest(sig.lower(), signature(ctx, int(number))):
            return int(number)
    return None


def without_tokens(subject: str) -> str:
    """``subject`` without the incident tokens it quotes (``Re: [INC-2 #…] VPN down`` →
    ``Re: VPN down``): the title of a new incident made from a reply that did not thread,
    which would otherwise name another incident and carry its token into every mail."""
    return " ".join(_TOKEN.sub(" ", subject or "").split())
