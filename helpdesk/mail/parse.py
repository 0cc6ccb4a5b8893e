"""Reading one RFC 5322 message into what intake needs, or a clear reason why it cannot be read.

The standard library's parser (``policy.default``) decodes charsets and encoded
words; this module adds limits (parts, nesting), a fallback for unknown
charsets, HTML turned into plain text after the nh3 allowlist, forwarded
messages (``message/rfc822``) kept as quoted text, and the trimming of quoted
replies and signatures. It never raises for bad input: :class:`Unreadable`
carries the reason, and the caller keeps the raw message.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import mimetypes
import re
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr
from html.parser import HTMLParser

import nh3

from helpdesk.attachments import shorten_name
from helpdesk.words import CONTROL_CHARACTERS

MAX_PARTS = 500
MAX_DEPTH = 10
MAX_TEXT = 200_000  # characters of body text kept on the timeline
HEADER_READ = 20_000  # characters of one header given to the email package's parser
_ID_HEADERS = {"message-id", "in-reply-to", "references"}  # (a cut keeps their latest ids)
REFERENCES_READ = 100  # ids of In-Reply-To, and the latest of References, that may thread a message


class Unreadable(Exception):
    """The message cannot be placed on an incident; the reason is shown to admins."""


@dataclass
class Attachment:
    filename: str
    content_type: str
    size: int
    data: bytes = b""


@dataclass
class Mail:
    """The parts of an inbound message intake decides on."""

    message_id: str
    sender: str  # the From address, lower case
    sender_name: str
    subject: str
    text: str  # the whole body as plain text (forwarded messages included)
    references: list[str] = field(default_factory=list)  # In-Reply-To first, then References
    headers: dict[str, str] = field(default_factory=dict)  # loop-relevant headers, lower-case names
    attachments: list[Attachment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was odd but survivable
    return_path: str | None = None
    #: The Message-ID as written (``message_id`` is lower case, for matching): our answers
    #: name it exactly, so the sender's mail client threads them under it.
    original_id: str = ""


_ANGLE_ADDRESS = re.compile(r"([^<>]*)<([^<>\s]+)>")
_MSGID = re.compile(r"<([^<>\s]{1,900})>")
LOOP_HEADERS = ("auto-submitted", "precedence", "x-auto-response-suppress", "x-autoreply",
                "x-autorespond", "x-helpdesk-loop", "x-loop", "list-id", "list-unsubscribe",
                "content-type", "x-failed-recipients")


def one_line(value: str) -> str:
    return " ".join(CONTROL_CHARACTERS.sub(" ", value or "").split())


#: Charset labels mail clients write that Python's codecs do not know by that name (Outlook's
#: Hebrew and Arabic, Windows' Thai, Apple's and Microsoft's "x-" names).
_CHARSET_ALIASES = {
    "iso-8859-8-i": "iso-8859-8", "iso-8859-8-e": "iso-8859-8", "iso-8859-6-i": "iso-8859-6",
    "iso-8859-6-e": "iso-8859-6", "windows-874": "cp874", "x-mac-roman": "mac_roman",
    "x-mac-cyrillic": "mac_cyrillic", "x-mac-greek": "mac_greek", "x-mac-turkish": "mac_turkish",
    "x-mac-ce": "mac_latin2", "x-sjis": "shift_jis", "windows-31j": "cp932", "x-euc-jp": "euc_jp",
    "x-gbk": "gbk", "x-windows-949": "cp949", "x-x-big5": "big5", "cp-850": "cp850",
}


def _codec(charset: str | None) -> str | None:
    """The codec for a charset label as mail clients write it."""
    if not charset:
        return None
    label = charset.strip().lower()
    return _CHARSET_ALIASES.get(label, label)


def _bytes_text(data: bytes, charset: str | None) -> str:
    """Bytes in their declared charset, else UTF-8 if they are UTF-8, else Windows-1252."""
    for codec in (_codec(charset), "utf-8", "cp1252", "latin-1"):
        if codec:
            try:
                return data.decode(codec)
            except (LookupError, ValueError, UnicodeError):
                continue
    raise AssertionError("Latin-1 decodes any bytes")  # pragma: no cover


def _lenient_words(value: str) -> str:
    """Encoded words decoded one by one, each in its charset or else as :func:`_bytes_text`
    reads bytes: a label no codec knows, or bytes not in it (Windows-1252 labelled UTF-8),
    become words rather than replacement marks."""
    try:
        chunks = email.header.decode_header(value)
        if not any(charset for _data, charset in chunks):
            return value
        texts = [(data.decode("raw-unicode-escape") if charset is None else _bytes_text(data, charset))
                 if isinstance(data, bytes) else data for data, charset in chunks]
        return str(email.header.make_header([(text.encode("utf-8"), "utf-8") for text in texts]))
    except Exception:  # noqa: BLE001 - keep the source text
        return value


def _source(message: Message, name: str) -> str | None:
    return next((str(raw) for key, raw in message.raw_items() if key.lower() == name.lower()), None)


def _header(message: Message, name: str, words: bool = False) -> str:
    """A header as text; a header the parser refuses (an encoded word hiding a line break in
    an address, say) is read as its source text instead of failing the whole message, with
    its encoded words decoded when ``words`` (not for addresses: see :func:`_parsed`)."""
    try:
        value = message.get(name)
        if value is not None and "\ufffd" in str(value):  # raw 8-bit bytes the parser gave up on,
            # or encoded words in a charset it does not know or that does not fit their bytes
            source = _source(message, name) or ""
            value = _eight_bit(message, name) or (_lenient_words(source) if words else None) or value
    except Exception:  # noqa: BLE001 - any malformed header: fall back to its source
        value = _eight_bit(message, name) or next(
            (str(raw) for key, raw in message.raw_items() if key.lower() == name.lower()), None)
        if value is not None:
            value = _words(value) if words else value
    return "" if value is None else str(value)


def _eight_bit(message: Message, name: str) -> str | None:
    """A header sent as raw 8-bit bytes instead of encoded words (many mailers do), read as
    UTF-8 or else Windows-1252; None when its source is plain ASCII."""
    source = next((str(raw) for key, raw in message.raw_items() if key.lower() == name.lower()), None)
    if source is None or not any("\udc80" <= char <= "\udcff" for char in source):
        return None
    data = source.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _words(value: str) -> str:
    """Encoded words (RFC 2047) decoded as far as they go, for a header read as source."""
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except Exception:  # noqa: BLE001 - keep the source text
        return value


def message_ids(value: str) -> list[str]:
    return [found.strip().lower() for found in _MSGID.findall(CONTROL_CHARACTERS.sub("", value or ""))]


def _text(content: str) -> str:
    """Text as the desk stores it: line breaks as ``\\n``, no control characters (a NUL from a
    UTF-16 body labelled UTF-8 is refused by PostgreSQL and shown by nothing)."""
    return CONTROL_CHARACTERS.sub("", content.replace("\r\n", "\n").replace("\r", "\n"))


def _base64_shortfall(encoded: object, decoded: bytes) -> int:
    """How many bytes the base64 text holds beyond what the decoder gave: Python's decoder stops
    silently at damage (padding or a stray character in the middle), dropping the rest."""
    if not isinstance(encoded, str):
        return 0
    return len(re.sub(r"[^A-Za-z0-9+/]", "", encoded)) * 3 // 4 - len(decoded)


def _decode(part: Message, notes: list[str]) -> str:
    """A text part's content in its declared charset. Bytes that are not in that charset (a
    lying or missing declaration: Latin-1 sent as UTF-8, raw 8-bit with none) are read as
    UTF-8 if they are UTF-8, else as Windows-1252, with a note, rather than as replacement
    marks; an unknown charset is read the same way."""
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes) and part.get("Content-Transfer-Encoding", "").strip().lower() == "base64":
        lost = _base64_shortfall(part.get_payload(decode=False), payload)
        if lost > 2:  # (a lone trailing character or two is no text)
            notes.append(f"the text's base64 encoding is broken after {len(payload):,} bytes: about "
                         f"{lost:,} bytes could not be read (the original message is kept)")
    if not isinstance(payload, bytes):  # not a leaf the parser can decode: what it gives
        try:
            content = part.get_content()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001
            content = str(part.get_payload())
        return _text(content if isinstance(content, str) else "")
    declared = part.get_content_charset()
    named = CONTROL_CHARACTERS.sub("", declared or "")  # (the name goes into a note)
    try:
        return _text(payload.decode(_codec(declared) or "us-ascii"))
    except UnicodeDecodeError:
        problem = f"the text was not valid {named}" if declared else "8-bit text with no charset"
    except (LookupError, ValueError, UnicodeError):  # a name no codec has ("undefined", a NUL in it)
        problem = f"unreadable charset {named!r}"
    for fallback, label in (("utf-8", "UTF-8"), ("cp1252", "Windows-1252"), ("latin-1", "Latin-1")):
        try:
            content = payload.decode(fallback)
        except UnicodeDecodeError:
            continue
        if declared or fallback != "utf-8":  # (undeclared UTF-8 is only a sloppy sender)
            notes.append(f"{problem}: read as {label}")
        return _text(content)
    raise AssertionError("Latin-1 decodes any bytes")  # pragma: no cover


class _Text(HTMLParser):
    """Plain text from (already sanitised) HTML: block elements become line breaks."""

    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
              "pre", "table", "ul", "ol", "hr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.quote = 0
        self.href: str | None = None
        self.cells = 0  # cells begun in the current table row

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "blockquote":
            self.quote += 1
        if tag == "tr":
            self.cells = 0
        if tag in {"td", "th"}:  # a form's "Phone | 0123", not "Phone0123"
            if self.cells:
                self.out.append(" | ")
            self.cells += 1
        if tag in self.BLOCKS:
            self.out.append("\n")
        if tag == "li":
            self.out.append("- ")
        if tag == "a":
            self.href = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag == "blockquote":
            self.quote = max(0, self.quote - 1)
        if tag in self.BLOCKS:
            self.out.append("\n")
        if tag == "a" and self.href:
            if self.href.startswith(("http://", "https://")):
                self.out.append(f" ({self.href})")
            self.href = None

    def handle_data(self, data: str) -> None:
        if self.quote:
            data = "\n".join("> " + line if line.strip() else line for line in data.split("\n"))
        self.out.append(data)


def html_to_text(markup: str) -> str:
    """HTML mail as plain text: nh3's allowlist first (scripts, styles, remote images,
    event handlers and unsafe links go), then the remaining structure as line breaks (and a
    table's cells parted by ``|``)."""
    from helpdesk.rendering import _ALLOWED_ATTRIBUTES, _ALLOWED_TAGS

    clean = nh3.clean(markup, tags=_ALLOWED_TAGS | {"div", "span"}, attributes=_ALLOWED_ATTRIBUTES,
                      url_schemes={"http", "https", "mailto"},
                      clean_content_tags={"script", "style", "title"})  # (the title is no body text)
    parser = _Text()
    parser.feed(clean)
    parser.close()
    text = "".join(parser.out).replace("\xa0", " ")
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _leaves(message: Message, count: list[int], depth: int = 0) -> list[Message]:
    """The parts of one message, not descending into attached messages (read on their own)."""
    if depth > MAX_DEPTH:
        raise Unreadable(f"multiparts nested more than {MAX_DEPTH} deep")
    parts: list[Message] = []
    children = message.get_payload() if message.is_multipart() else None
    if not isinstance(children, list) or message.get_content_type().startswith("message/"):
        return [message]
    for child in children:
        count[0] += 1
        if count[0] > MAX_PARTS:
            raise Unreadable(f"more than {MAX_PARTS} MIME parts")
        if isinstance(child, Message) and child.is_multipart() \
                and not child.get_content_type().startswith("message/"):
            parts += _leaves(child, count, depth + 1)
        else:
            parts.append(child)
    return parts


def _body(message: Message, notes: list[str], attachments: list[Attachment], depth: int,
          count: list[int]) -> str:
    """The readable text of one message: its preferred body plus forwarded messages."""
    if depth > MAX_DEPTH:
        notes.append(f"messages forwarded more than {MAX_DEPTH} deep were not read")
        return ""
    texts: list[str] = []
    body = None
    # The plain and HTML parts of a multipart/alternative render one text; any other text
    # part is more of the message (the text after an inline picture) or a file (a .csv, an
    # invitation) and is kept.
    renderings = {id(leaf) for part in message.walk() if part.get_content_type() == "multipart/alternative"
                  for leaf in part.walk() if leaf.get_content_type() in {"text/plain", "text/html"}}
    if isinstance(message, EmailMessage):
        try:
            body = message.get_body(preferencelist=("plain", "html"))
        except Exception:  # noqa: BLE001 - a broken structure: fall through to the walk below
            body = None
    if body is not None:
        content = _decode(body, notes)
        if body.get_content_subtype() == "plain" and not content.strip():
            # An empty plain rendering beside an HTML one (some mailers send it): the words are
            # in the HTML, which is read instead.
            try:
                richer = message.get_body(preferencelist=("html",))
            except Exception:  # noqa: BLE001 - keep the empty plain part
                richer = None
            if richer is not None:
                body, content = richer, _decode(richer, notes)
        texts.append(html_to_text(content) if body.get_content_subtype() == "html" else content)
    for part in _leaves(message, count):
        if part is body:
            continue
        ctype = part.get_content_type()
        if ctype.startswith("message/"):
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            if isinstance(inner, Message):
                forwarded = _body(inner, notes, attachments, depth + 1, count)
                texts.append(f"---- Forwarded message from {one_line(_header(inner, 'From'))} "
                             f"({one_line(_header(inner, 'Subject'))}) ----\n{forwarded}")
            continue
        disposition = part.get_content_disposition()
        if body is None and ctype in {"text/plain", "text/html"} and disposition != "attachment":
            content = _decode(part, notes)
            texts.append(html_to_text(content) if ctype == "text/html" else content)
            body = part
            continue
        if ctype.startswith("multipart/") or id(part) in renderings and disposition != "attachment":
            continue  # another rendering of the body
        if ctype in {"text/plain", "text/html"} and disposition != "attachment" and not part.get_filename():
            content = _decode(part, notes)
            text = html_to_text(content) if ctype == "text/html" else content
            if " ".join(text.split()) not in {" ".join(t.split()) for t in texts}:
                texts.append(text)  # (not the same words again: a plain and an HTML copy side by side)
            continue
        data = part.get_payload(decode=True) or b""
        extension = mimetypes.guess_extension(ctype) or f".{ctype.rpartition('/')[2] or 'bin'}"
        name = part.get_filename() or f"part-{count[0]}{extension}"
        attachments.append(Attachment(shorten_name(one_line(str(name)), 255), ctype, len(data), data))
    return "\n\n".join(t.strip() for t in texts if t and t.strip())


def _bounded_headers(raw: bytes) -> bytes:
    """``raw`` with every header field of the message and of its parts cut to about
    :data:`HEADER_READ` characters (the ids of ``References`` and the like keep their end,
    where the latest are): the email package's parser takes time growing with the square of
    a field's length, even while it splits the parts. The message as received is kept apart."""
    if len(raw) <= HEADER_READ:
        return raw
    out: list[bytes] = []
    field: list[bytes] = []
    in_header = True

    def flush() -> None:
        joined = b"\n".join(field)
        name, colon, value = joined.partition(b":")
        if colon and len(value) > HEADER_READ:
            keep = value[-HEADER_READ - 1:] if name.strip().lower().decode("latin-1") in _ID_HEADERS \
                else value[:HEADER_READ + 1]
            joined = name + b": " + b" ".join(keep.split())  # one line, a little over the limit
        if field:
            out.append(joined)
        field.clear()

    for line in raw.split(b"\n"):
        if not in_header:
            out.append(line)
            in_header = line.startswith(b"--")  # a boundary: a part's headers may follow
        elif not line.rstrip(b"\r"):
            flush()
            out.append(line)
            in_header = False
        elif line[:1] in (b" ", b"\t") and field:
            field.append(line)
        else:
            flush()
            field.append(line)
    flush()
    return b"\n".join(out)


def parse(raw: bytes) -> Mail:
    """Parse one message, or raise :class:`Unreadable` saying why it cannot be used (whatever
    goes wrong: a message must never stop the intake behind it)."""
    try:
        message = email.message_from_bytes(_bounded_headers(raw), policy=email.policy.default)
    except Exception as error:  # noqa: BLE001 - the parser should not raise, but never trust it
        raise Unreadable(f"the message cannot be parsed: {type(error).__name__}") from None
    try:
        return _parsed(message)
    except Unreadable:
        raise
    except Exception as error:  # noqa: BLE001 - an unforeseen header or part: quarantine it
        raise Unreadable(f"the message cannot be read: {type(error).__name__}: {error}"[:500]) from None


def _parsed(message: EmailMessage) -> Mail:
    notes: list[str] = []
    defects = [type(d).__name__ for d in message.defects]
    if any(d in {"NoBoundaryInMultipartDefect", "StartBoundaryNotFoundDefect",
                 "MultipartInvariantViolationDefect"} for d in defects):
        raise Unreadable(f"broken MIME structure: {', '.join(defects)}")
    try:
        raw_from, as_source = str(message.get("From") or ""), False
        if "\ufffd" in raw_from:  # raw 8-bit bytes in the sender's name
            raw_from = _eight_bit(message, "From") or raw_from
    except Exception:  # noqa: BLE001 - the parser refused it: read its source
        raw_from, as_source = _header(message, "From"), True
    angle = _ANGLE_ADDRESS.fullmatch(raw_from.strip()) if as_source else None
    if angle:  # read as source (the parser refused it): the name is only words to decode
        addresses = [(_words(angle.group(1).strip().strip('"')), angle.group(2))]
    else:
        try:
            addresses = getaddresses([raw_from])
        except Exception:  # noqa: BLE001
            addresses = [parseaddr(raw_from)]
    name, sender = addresses[0] if addresses else ("", "")
    sender = one_line(sender).lower()
    if "\ufffd" in name:  # encoded words in a charset the parser does not know, or lying
        written = _ANGLE_ADDRESS.fullmatch((_source(message, "From") or "").strip())
        if written and one_line(written.group(2)).lower() == sender:
            name = _lenient_words(written.group(1).strip().strip('"'))
    if sender.count("@") != 1 or any(c in sender for c in " <>,;\"'") or len(sender) > 254:
        raise Unreadable(f"no usable sender address in From: {one_line(raw_from)[:200]!r}")
    attachments: list[Attachment] = []
    try:
        text = _body(message, notes, attachments, 0, [0])
    except Unreadable:
        raise
    except Exception as error:  # noqa: BLE001 - the body is unreadable: keep it raw for an admin
        raise Unreadable(f"the body cannot be read: {type(error).__name__}: {error}") from None
    if len(text) > MAX_TEXT:
        notes.append(f"the text was cut at {MAX_TEXT} characters (the original is kept)")
        text = text[:MAX_TEXT]
    # The parent and the latest ids of the thread: enough to place any reply, and a header of
    # thousands of ids (each one a lookup) cannot hold up the intake for minutes.
    references = (message_ids(_header(message, "In-Reply-To"))[:REFERENCES_READ]
                  + message_ids(_header(message, "References"))[-REFERENCES_READ:])
    ids = message_ids(_header(message, "Message-ID"))
    written = [found.strip() for found in
               _MSGID.findall(CONTROL_CHARACTERS.sub("", _header(message, "Message-ID")))]
    headers = {h: one_line(_header(message, h))[:500] for h in LOOP_HEADERS
               if _source(message, h) is not None}
    return_path = None
    if _source(message, "Return-Path") is not None:
        return_path = one_line(_header(message, "Return-Path"))
    return Mail(message_id=ids[0] if ids else "", sender=sender, sender_name=one_line(name)[:200],
                subject=one_line(_header(message, "Subject", words=True)), text=text.strip(),
                references=list(dict.fromkeys(references)), headers=headers,
                attachments=attachments, notes=notes, return_path=return_path,
                original_id=written[0] if written else "")


# -- trimming ---------------------------------------------------------------------------------

_ATTRIBUTION = re.compile(r"^(On|Am|Le|El|Il|Op)\s.{0,300}"
                          r"(wrote|schrieb|a écrit|escribió|ha scritto|schreef)\b.{0,200}:\s*$", re.I)
#: A mobile client's tag line ("Sent from my iPhone"): a few words, not a customer's sentence
#: ("Sent from my laptop at home the print job works, …").
_SENT_FROM = re.compile(r"^Sent from my \S+(?: \S+){0,3}\s*$", re.I)
#: Lines where the quoted earlier message (or a mobile client's tag line) begins. An
#: attribution ("On … wrote:") counts only with a quote under it or an address in it (see
#: :func:`_attribution`): "On Monday our CFO wrote this:" is the customer's own sentence.
_CUT = [
    re.compile(r"^_{8,}\s*$"),  # Outlook's rule above the quoted message
    re.compile(r"^-{2,}\s*(Original Message|Ursprüngliche Nachricht|Message d'origine)\s*-{2,}", re.I),
    _SENT_FROM,
]
#: Outlook's header block above the quoted message ("From: … / Sent: … / To: …"), in the
#: languages it writes it in (French puts a space before the colon).
#: Where a forwarded message begins: the mail clients' markers, and the one :func:`_body` writes
#: above a message attached whole.
_FORWARD_MARK = re.compile(
    r"^(-{2,}\s*(Forwarded message|Weitergeleitete Nachricht|Message transféré|Mensaje reenviado|"
    r"Mensagem encaminhada|Messaggio inoltrato|Doorgestuurd bericht)\b.{0,80}-{2,}"
    r"|Begin forwarded message:|Anfang der weitergeleiteten Nachricht:|Début du message réexpédié\s?:"
    r"|---- Forwarded message from .{0,600} ----)$", re.I)
_OUTLOOK_FROM = re.compile(r"^\*?(From|Von|De|Van|Da|Från|Fra|Od|От|Lähettäjä|Kimden|差出人|发件人|寄件者)"
                           r"\s?:\*?\s", re.I)
_OUTLOOK_NEXT = re.compile(r"^\*?(Sent|Date|Gesendet|Datum|Envoyé|Enviado(?: el)?|Enviada(?: em)?|Inviato|"
                           r"Verzonden|Skickat|Sendt|Wysłano|Odesláno|Отправлено|Lähetetty|Gönderildi|"
                           r"送信日時|发送时间|傳送時間|To|An|À|Para|A|Aan|Till|Til|Do|Komu|Кому|"
                           r"Vastaanottaja|Kime|宛先|收件人)\s?:\*?\s", re.I)
#: Gmail's attribution in any language: a date and the writer's address, ending in ":" ("Em
#: qui., 3 de dez. de 2026 às 10:00, Helpdesk <help@example.com> escreveu:"), above a quote.
_ADDRESSED = re.compile(r"^(?=.*\d).{0,300}<[^<>\s]+@[^<>\s]+>.{0,100}:\s*$")
#: What a signature under a bare "--" may hold: a few short lines (a name, a title, a phone
#: number), none of them a sentence.
SIGNATURE_LINES = 5
SIGNATURE_WIDTH = 60
SIGNATURE_WORDS = 6


def _quoted_below(lines: list[str], index: int) -> bool:
    """Is the next line with words under this one a ``>`` quote?"""
    following = next((line.strip() for line in lines[index + 1:] if line.strip()), "")
    return following.startswith(">")


def _attribution(lines: list[str], index: int) -> bool:
    """Is this line a mail client's "On <date>, <name> wrote:" above the quoted message? Only
    with the quote under it or the writer's address in it: a customer's own sentence ("On
    Monday our CFO wrote this in the ticket:") is neither, and the words under it are theirs."""
    stripped = lines[index].strip()
    if _ADDRESSED.match(stripped) and _quoted_below(lines, index):
        return True
    return bool(_ATTRIBUTION.match(stripped)) and ("@" in stripped or _quoted_below(lines, index))


def _quote_starts(lines: list[str], index: int) -> bool:
    """Does the quoted earlier message start at this line (an attribution, Outlook's headers)?"""
    stripped = lines[index].strip()
    if any(p.match(stripped) for p in _CUT) or _attribution(lines, index):
        return True
    if index + 1 < len(lines) and stripped.startswith(("On ", "Am ", "Le ")) \
            and re.search(r"(wrote|schrieb|a écrit)\s?:\s*$", lines[index + 1].strip()) \
            and ("@" in stripped + lines[index + 1] or _quoted_below(lines, index + 1)):
        return True  # "On <date>, <name>" wrapped onto two lines
    return bool(_OUTLOOK_FROM.match(stripped) and any(_OUTLOOK_NEXT.match(n.strip())
                                                      for n in lines[index + 1:index + 4]))


def _signature_starts(lines: list[str], index: int) -> bool:
    """Does the signature start at this line? ``-- `` (the standard delimiter) always starts
    one. A bare ``--`` (many mail clients, and HTML turned into text, drop the trailing space)
    starts one only when what follows it, up to the quoted message or the end, reads as a
    signature: one block of a few short lines, none a sentence. A customer who uses ``--`` to
    separate parts of their message keeps every word below it."""
    line = lines[index]
    if line.strip() != "--":
        return False
    if line.rstrip() != line:
        return True  # "-- "
    block: list[str] = []
    for following in range(index + 1, len(lines)):
        stripped = lines[following].strip()
        if stripped.startswith(">") or _quote_starts(lines, following):
            break
        if stripped == "--":
            return False  # another separator below: this one parts the message
        block.append(stripped)
    while block and not block[-1]:
        block.pop()
    while block and not block[0]:
        block.pop(0)
    if "" in block or len(block) > SIGNATURE_LINES:
        return False  # paragraphs, or more than a signature holds: more of the message
    for text in block:
        words = len(text.split())
        if len(text) > SIGNATURE_WIDTH or words > SIGNATURE_WORDS:
            return False
        if text.endswith(("?", "!", ":")) or (text.endswith(".") and words > 3):
            return False  # a sentence ("Example Ltd." is not one)
    return True


def trim_reply(text: str) -> str:
    """The new part of a reply: without the quoted earlier message and the signature.

    Returns the whole text when trimming would leave nothing (a reply that is
    all quote is better shown whole than as an empty entry). A message forwarded in it (Gmail's
    "Forwarded message", Apple's "Begin forwarded message:", one attached whole) is the
    customer's to show: it is kept whole, and only the words above it are trimmed.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    for index, line in enumerate(lines):  # a message they pass on is theirs to show, kept whole
        if _FORWARD_MARK.match(line.strip()):
            head = trim_reply("\n".join(lines[:index])) if any(x.strip() for x in lines[:index]) else ""
            return "\n\n".join(part for part in (head, "\n".join(lines[index:]).strip()) if part)
        if _quote_starts(lines, index):
            break  # (a forward quoted in the earlier message is not theirs)
    cut = len(lines)
    for index in range(len(lines)):
        if _signature_starts(lines, index) or _quote_starts(lines, index):
            cut = index
            break
    kept = lines[:cut]
    while kept and (not kept[-1].strip() or kept[-1].lstrip().startswith(">")):
        kept.pop()
    # Words under the quote count only when nothing but a greeting ("Hi,") is above it: a reply
    # written on top leaves whatever follows the quote (a disclaimer the server adds) out.
    above = [line.strip() for line in kept if line.strip()]
    greeting_only = not above or (len(above) == 1 and above[0].endswith(",") and len(above[0]) <= 40)
    below = _below_quote(lines, cut) if cut < len(lines) and greeting_only else ""
    result = "\n\n".join(part for part in ("\n".join(kept).strip(), below) if part)
    return result or text.strip()


def _below_quote(lines: list[str], cut: int) -> str:
    """Words written under (or between) the lines of a ``>`` quote that follows an "On …
    wrote:" line: a customer who answers below the quote must not be cut to "Hi,". Only a
    quote marked with ``>`` tells its lines from theirs; a signature ends their words."""
    attribution = lines[cut].strip()
    if not (_attribution(lines, cut) or attribution.startswith(("On ", "Am ", "Le "))):
        return ""
    theirs: list[str] = []
    quoted = False
    for index in range(cut + 1, len(lines)):
        line = lines[index]
        stripped = line.strip()
        if stripped.startswith(">"):
            quoted = True
            if theirs and theirs[-1]:
                theirs.append("")  # an answer between quoted lines: its own paragraph
            continue
        if not quoted:
            if stripped and not re.search(r"(wrote|schrieb|a écrit)\s?:\s*$", stripped):
                return ""  # no quote under the attribution: nothing to tell apart
            continue
        if _signature_starts(lines, index) or any(p.match(stripped) for p in _CUT) \
                or _attribution(lines, index):
            break  # their signature, or an older quoted message
        theirs.append(line.rstrip())
    return "\n".join(theirs).strip()
