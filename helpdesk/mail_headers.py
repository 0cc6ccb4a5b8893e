"""Mail headers built from user text, safe whatever the Python patch level.

Stripping raw CR/LF from a title is not enough: Python's ``email`` package
decodes RFC 2047 encoded words (``=?utf-8?q?=0D=0ABcc:_x?=``) when a header is
set and, before the fix for CVE-2024-6923, re-serialises the decoded CR/LF as
real header lines. So every header value that holds user text (subjects,
display names, references, any future reply-to or inbound path) goes through
:func:`header_text` or :func:`mailbox` here, which

1. decode encoded words themselves, repeatedly, the way the library would;
2. drop every control and line-break character (C0, DEL, C1, U+2028/2029);
3. break any ``=?`` left over, so no encoded word can start again;
4. bound the length.

:func:`serialise` then writes the message and checks the result: its header
block must hold exactly the header names that were set, each once, or the
message is refused (:class:`UnsafeHeader`). The envelope recipients are the
caller's, never read back from headers (so a smuggled ``Bcc:`` can't add one).
"""

from __future__ import annotations

import email.policy
import re
from email.errors import MessageError
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr

# Control characters and everything a mail reader or the email package may treat as a line break.
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]+")
_ENCODED_WORD = re.compile(r"=\?[^?\s]*\?[bBqQ]\?[^?\s]*\?=")
# A conservative addr-spec: no quoting, no comments, no encoded words, no control characters.
_ADDRESS = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=^_`{|}~.-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
SUBJECT_LIMIT = 200
NAME_LIMIT = 100
# CRLF line ends; values are bounded, so no header needs folding below the 998-octet limit.
_POLICY = email.policy.SMTP.clone(max_line_length=998)


class UnsafeHeader(ValueError):
    """A header value or a serialised message failed the checks: never sent."""


def _decode_once(value: str) -> str:
    if not _ENCODED_WORD.search(value):
        return value
    try:
        return str(make_header(decode_header(value)))
    except (LookupError, ValueError, UnicodeError):
        # Undecodable (bogus charset, bad base64): keep the text but defuse it below.
        return value


def header_text(value: object, limit: int = SUBJECT_LIMIT) -> str:
    """One line of plain text that is safe as a header value (a subject, a reference)."""
    text = str(value or "")
    for _ in range(4):  # an encoded word may decode to another one: decode to a fixed point
        decoded = _decode_once(_BREAKS.sub(" ", text))
        if decoded == text:
            break
        text = decoded
    text = " ".join(_BREAKS.sub(" ", text).split())
    text = text.replace("=?", "= ?")  # nothing left can be read as the start of an encoded word
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def address(value: str) -> str:
    """A plain ``local@domain`` address, or :class:`UnsafeHeader`."""
    value = value.strip()
    if not _ADDRESS.match(value) or ".." in value or "=?" in value:
        raise UnsafeHeader(f"{value[:80]!r} is not an e-mail address")
    return value


def mailbox(addr: str, display_name: object = "") -> str:
    """``Display Name <addr>`` with the name cleaned like a subject and quoted where needed."""
    name = header_text(display_name, NAME_LIMIT)
    local, _, domain = address(addr).partition("@")
    return str(Address(display_name=name, username=local, domain=domain))


def parse_mailbox(value: str) -> tuple[str, str]:
    """Split ``Name <addr>`` (or a bare address) into a clean name and a checked address."""
    text = str(value or "").strip()
    if _BREAKS.search(text) or len(getaddresses([text])) != 1:
        raise UnsafeHeader(f"{text[:80]!r} is not one e-mail address")
    name, addr = parseaddr(text)
    if not addr:
        raise UnsafeHeader(f"{value[:80]!r} is not an e-mail address")
    return header_text(name, NAME_LIMIT), address(addr)


def message_id(local: str, domain: str) -> str:
    """``<local@domain>`` for Message-ID, In-Reply-To and References: the local part keeps
    only letters, digits, dots and dashes, so no user text can leave the angle brackets."""
    token = re.sub(r"[^A-Za-z0-9.-]", ".", local)[:200] or "message"
    return f"<{token}@{address('x@' + domain).partition('@')[2]}>"


_FOREIGN_ID = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,200}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,200}[A-Za-z0-9])?$")


def reference_id(value: str) -> str:
    """``<local@domain>`` for a Message-ID someone else wrote (a customer's mail we answer),
    kept exactly as written so their client threads by it; ``""`` unless it is a plain
    dot-atom id (no quotes, spaces, brackets, control characters or encoded words)."""
    value = str(value or "").strip().strip("<>")
    if not _FOREIGN_ID.match(value) or "=?" in value:
        return ""
    return f"<{value}>"


def _header_names(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = []
    for line in head.split(b"\r\n"):
        if not line or line[:1] in (b" ", b"\t"):
            continue  # a folded continuation of the previous header
        name, colon, _ = line.partition(b":")
        if not colon:
            raise UnsafeHeader(f"a header line without a name: {line[:60]!r}")
        names.append(name.decode("ascii", "replace").lower())
    return names


def serialise(mail: EmailMessage) -> bytes:
    """The message as SMTP bytes, refused unless its headers are exactly the ones set.

    Checked after serialisation, so a library that decodes and re-emits a line break
    (any Python version) produces a refusal, never an extra header.
    """
    expected = sorted(name.lower() for name in mail.keys())
    try:
        raw = mail.as_bytes(policy=_POLICY)
    except (ValueError, TypeError, MessageError) as error:  # newer Pythons refuse these themselves
        raise UnsafeHeader(f"the message cannot be written safely: {error}") from None
    if b"\x00" in raw or b"\r\n\r\n" not in raw:
        raise UnsafeHeader("the message has a NUL byte or no header block")
    top = sorted(_header_names(raw))
    if top != expected:
        raise UnsafeHeader(f"headers changed on serialisation: {top} instead of {expected}")
    return raw
