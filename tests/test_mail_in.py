"""Inbound e-mail as customers send it: every message on the right incident's timeline exactly
once, or kept raw and quarantined for an admin — never lost, never a loop.

The ``.eml`` fixtures in ``tests/mail/`` are real RFC 5322 messages, each with its expected
outcome in :data:`FIXTURES`. Replies are answers to what the helpdesk really sent: the e-mail
channel delivers to an aiosmtpd server on loopback, and the tests reply to those messages.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import subprocess
import sys
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from helpdesk import customer_links, customers, hookimpl, incidents
from helpdesk.errors import DomainError
from helpdesk.mail.parse import parse, trim_reply
from helpdesk.mail.receive import Received, receive, receive_again
from helpdesk.models import Contact, Delivery, InboundMail, Incident, Notice, TimelineEntry
from helpdesk.testing import SmtpServer

MAIL = Path(__file__).with_name("mail")
SUPPORT = "help@example.com"
FROM = f"Helpdesk <{SUPPORT}>"


@pytest.fixture
def smtp(smtp_server: SmtpServer) -> SmtpServer:
    smtp_server.from_address = FROM
    return smtp_server


@pytest.fixture
def helpdesk_settings(smtp: SmtpServer) -> dict[str, Any]:
    return {"support_address": SUPPORT, "plugins": {"email": smtp.settings}}


@pytest.fixture
def helpdesk_bundled_plugins() -> list[str]:
    return ["email"]


@pytest.fixture
def take(app: Flask) -> Any:
    """``take(raw_bytes)``: receive one message in the app, as ``helpdesk mail-in`` does."""
    ctx = app.extensions["helpdesk"]

    def run(raw: bytes | str) -> Received:
        with app.app_context():
            return receive(ctx, raw.encode() if isinstance(raw, str) else raw)

    return run


def fixture(name: str) -> bytes:
    return (MAIL / name).read_bytes()


def customer_entries(incident_id: int) -> list[TimelineEntry]:
    return list(TimelineEntry.select().where((TimelineEntry.incident == incident_id)
                                             & (TimelineEntry.kind == "customer")).order_by(TimelineEntry.id))


def reply_to(received: Any, sender: str, body: str, *, subject: str | None = None,
             headers: bool = True, message_id: str | None = None, **extra: str) -> bytes:
    """A customer's reply to a message the helpdesk sent (threaded as mail clients do)."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = SUPPORT
    mail["Subject"] = subject if subject is not None else "Re: " + received.message["Subject"]
    mail["Message-ID"] = message_id or make_msgid(domain="example.org")
    if headers:
        mail["In-Reply-To"] = received.message["Message-ID"]
        mail["References"] = f"{received.message['References']} {received.message['Message-ID']}"
    for name, value in extra.items():
        mail[name.replace("_", "-")] = value
    mail.set_content(body)
    return bytes(mail)


@pytest.fixture
def ada_incident(take: Any, smtp: SmtpServer) -> tuple[Incident, Any]:
    """Ada mails the desk; the incident and the acknowledgement she received."""
    result = take(fixture("new_plain.eml"))
    assert result.outcome == "created"
    acks = smtp.to("ada@example.org")
    assert len(acks) == 1
    return result.incident, acks[0]


# -- the fixtures and their outcomes -------------------------------------------------------------

FIXTURES = {
    "new_plain.eml": ("created", "the printer on floor 3 shows paper jam"),
    "encoded_words.eml": ("created", "Grüß Gott, der Drucker im Büro druckt nur noch weiße Seiten."),
    "html_alternative.eml": ("created", "(plain part)"),
    "html_hostile.eml": ("created", "Visible text stays."),
    "broken_charset.eml": ("created", "I cannot log in since the update."),
    "forwarded.eml": ("created", 'The invoice system answers "error 500" when we export.'),
    "auto_reply.eml": ("created", "I am out of the office until Monday."),
    "bounce.eml": ("dropped", None),
    "missing_boundary.eml": ("quarantined", None),
    "malformed_from.eml": ("quarantined", None),
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_each_fixture_has_its_outcome_and_is_kept_raw(app, take, name):
    outcome, text = FIXTURES[name]
    result = take(fixture(name))
    assert result.outcome == outcome, result.reason
    row = InboundMail.get_by_id(result.mail.id)
    kept = Path(app.extensions["helpdesk"].instance_path) / row.raw_path
    assert kept.read_bytes() == fixture(name)  # the original, byte for byte, whatever happened
    if text is not None:
        incident = Incident.get_by_id(row.incident_id)
        assert incident.source == "email"
        assert text in incident.description
    if outcome == "quarantined":
        assert row.reason and row.incident_id is None


def test_encoded_words_decode_in_title_and_requester(take):
    result = take(fixture("encoded_words.eml"))
    incident = result.incident
    assert incident.title == "Drucker kaputt — bitte helfen (Büro)"
    assert incident.requester.name == "Jörg Müller" and incident.requester.email == "joerg@example.de"


def test_hostile_html_becomes_plain_text_without_active_content(take, login, personas):
    result = take(fixture("html_hostile.eml"))
    description = result.incident.description
    for dangerous in ("alert(", "ontoggle", "onload", "javascript", "evil.example", "tracker.example",
                      "<script", "srcdoc", "@import"):
        assert dangerous not in description.lower()
    assert "help page (https://example.org/help)" in description
    assert "> quoted line" in description
    page = login(personas.owner).get(f"/incidents/{result.incident.id}").get_data(as_text=True)
    assert "<img src=x onerror" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_a_forwarded_message_keeps_its_sender_and_subject(take):
    description = take(fixture("forwarded.eml")).incident.description
    assert "See the message from accounting below." in description
    assert "Forwarded message from Accounting <accounting@example.org> (Invoice system error)" in description


def test_unreadable_mail_is_quarantined_and_admins_are_told(take, personas):
    result = take(fixture("missing_boundary.eml"))
    assert result.outcome == "quarantined" and "MIME" in result.reason
    assert Incident.select().count() == 0
    assert Notice.select().where(Notice.agent == personas.admin.id).count() == 1
    # The same broken message again is the same message: one row, one notice.
    assert take(fixture("missing_boundary.eml")).outcome == "duplicate"
    assert InboundMail.select().count() == 1


def test_a_sender_without_an_address_is_not_listed_under_a_word_of_their_name(take, personas):
    # "From: Just A Name" has no address: the admins' list and notice said it came from "Just".
    result = take("From: Just A Name\r\nSubject: Printer\r\n"
                  "Message-ID: <no-address@example.org>\r\n\r\nhi\r\n")
    assert result.outcome == "quarantined" and "Just A Name" in result.reason
    assert result.mail.sender == ""
    (notice,) = Notice.select().where(Notice.agent == personas.admin.id)
    assert "from an unknown sender" in notice.text


@pytest.mark.parametrize("sender", ["=?utf-8?q?Bob=0D=0ABcc:_x@y?= <bob@example.org>",
                                    '"=?utf-8?b?Qm9iCkJjYzogeEB5?=" <bob@example.org>'])
def test_an_encoded_line_break_in_the_senders_name_is_only_text(take, sender):
    # The standard parser refuses such an address outright; read as source, it is a name.
    result = take(f"From: {sender}\r\nSubject: =?utf-8?q?VPN=0D=0ABcc:_x@y?=\r\n"
                  "Message-ID: <crlf@example.org>\r\n\r\nThe VPN drops every hour.\r\n")
    assert result.outcome == "created"
    assert result.incident.requester.email == "bob@example.org"
    assert result.incident.requester.name == "Bob Bcc: x@y"  # one line, shown escaped
    assert result.incident.title == "VPN Bcc: x@y"


def test_a_message_fetched_again_with_other_transport_headers_is_still_a_duplicate(take):
    # IMAP and the MTA hand over the same message with different Received lines.
    raw = fixture("new_plain.eml")
    assert take(raw).outcome == "created"
    again = take(b"Received: from relay.example.org by mx.example.com; Tue, 1 Dec 2026\r\n" + raw)
    assert again.outcome == "duplicate"
    assert Incident.select().count() == 1


def test_another_message_reusing_a_message_id_is_taken_not_dropped(take, ada_incident, smtp):
    # A careless mailer (or a hostile one) sends every message with the same Message-ID: the
    # second message is someone's words, never a "duplicate" that leaves no trace.
    incident, _ack = ada_incident
    reused = parse(fixture("new_plain.eml")).message_id
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "Bob <bob@example.net>", SUPPORT, "VPN down"
    mail["Message-ID"] = f"<{reused}>"
    mail.set_content("The VPN refuses my certificate.")
    result = take(bytes(mail))
    assert result.outcome == "created" and result.incident.id != incident.id
    assert "The VPN refuses my certificate." in result.incident.description
    assert InboundMail.select().where(InboundMail.message_id == reused).count() == 2
    # Each of the two is still received once.
    assert take(bytes(mail)).outcome == "duplicate"
    assert take(fixture("new_plain.eml")).outcome == "duplicate"
    assert Incident.select().count() == 2
    # A reference to that id still threads to the first holder of it.
    reply = EmailMessage()
    reply["From"], reply["To"], reply["Subject"] = "ada@example.org", SUPPORT, "more"
    reply["Message-ID"], reply["In-Reply-To"] = "<ada-2@example.org>", f"<{reused}>"
    reply.set_content("Tray 2 as well.")
    assert take(bytes(reply)).incident.id == incident.id


def test_a_messages_content_is_hashed_only_when_another_message_holds_its_id(take, monkeypatch):
    # The content key tells two messages under one Message-ID apart; a message whose id is new
    # (nearly all of them) is claimed under its id without reading its text and files again.
    from helpdesk.mail import receive as receiving

    hashed: list[str] = []
    files = receiving._files

    def counted(mail):
        hashed.append(mail.message_id)
        return files(mail)

    monkeypatch.setattr(receiving, "_files", counted)
    assert take(fixture("new_plain.eml")).outcome == "created"
    assert take(fixture("new_plain.eml")).outcome == "duplicate"
    assert hashed == []
    reused = parse(fixture("new_plain.eml")).message_id
    other = fixture("new_plain.eml").replace(b"paper jam", b"blank pages")
    assert take(other).outcome == "created"  # another message under that id: its content tells
    assert reused in hashed


def test_a_portal_sign_in_link_in_mail_is_never_stored_for_agents_to_use(app, ctx, take, smtp):
    # An out-of-office reply quoting the sign-in mail, or a customer forwarding their link:
    # whoever reads the incident could sign in as the customer. The link never gets stored.
    from helpdesk import customer_links

    with app.app_context():
        ada = customers.find_or_create_contact("ada@example.org", "Ada")
        _contact, token = customer_links.issue(ctx, ada.email, "127.0.0.1")
        customer_links.send(ctx, ada, f"{ctx.base_url}/portal/sign-in/{token}", wait=True)
    (sign_in,) = smtp.to("ada@example.org")
    assert sign_in.message["X-Auto-Response-Suppress"] == "All"  # asks Outlook not to answer
    link = f"/portal/sign-in/{token}"
    text = sign_in.message.get_body(("plain",)).get_content()
    quoted = "\n".join("> " + line for line in text.splitlines())
    automatic = take(reply_to(sign_in, "ada@example.org", f"I am out of the office.\n\n{quoted}",
                              subject="Automatic reply: Your sign-in link", auto_submitted="auto-replied"))
    assert automatic.outcome == "dropped" and "sign-in" in automatic.reason
    assert link not in automatic.mail.full_text
    forwarded = take(reply_to(sign_in, "ada@example.org", f"This link does not work:\n{ctx.base_url}{link}",
                              headers=False, subject="Fwd: Your sign-in link"))
    assert forwarded.outcome == "created"
    assert token not in forwarded.incident.description and token not in forwarded.mail.full_text
    assert "/portal/sign-in/(link removed" in forwarded.incident.description
    with app.app_context():  # and the link is used up: the raw message, kept, still holds it
        assert customer_links.redeem(ctx, token) is None
        _contact, fresh = customer_links.issue(ctx, ada.email, "127.0.0.2")
    # A gateway's rewritten link (Safe Links encodes the path) is caught too.
    wrapped = take(reply_to(sign_in, "ada@example.org", "Fwd: https://eu.safelinks.protection.outlook.com/"
                            f"?url=https%3A%2F%2Fhelp.example.com%2Fportal%2Fsign-in%2F{fresh}&data=0",
                            headers=False, subject="Fwd: link"))
    assert fresh not in wrapped.incident.description
    with app.app_context():
        assert customer_links.redeem(ctx, fresh) is None


def test_a_sign_in_link_in_a_forwarded_file_is_used_up_too(app, ctx, take):
    # "Forward as attachment" keeps the sign-in mail whole, its body base64 inside the file, and a
    # text file is base64 on the wire: agents can download either, so the link must be dead.
    with app.app_context():
        ada = customers.find_or_create_contact("ada@example.org", "Ada")
        _contact, in_eml = customer_links.issue(ctx, ada.email, "127.0.0.1")
        _contact, in_txt = customer_links.issue(ctx, ada.email, "127.0.0.2")
    sign_in = EmailMessage()
    sign_in["From"], sign_in["To"], sign_in["Subject"] = SUPPORT, ada.email, "Your sign-in link"
    sign_in.set_content(f"Sign in: {ctx.base_url}/portal/sign-in/{in_eml}\n", cte="base64")
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = ada.email, SUPPORT, "Fwd: this does not work"
    mail["Message-ID"] = make_msgid()
    mail.set_content("See the attached mail.")
    mail.add_attachment(sign_in.as_bytes(), maintype="application", subtype="octet-stream",
                        filename="sign-in.eml")
    mail.add_attachment(f"{ctx.base_url}/portal/sign-in/{in_txt}\n".encode(), maintype="text",
                        subtype="plain", filename="link.txt", cte="base64")
    assert in_eml not in mail.as_string() and in_txt not in mail.as_string()  # as on the wire
    assert take(mail.as_bytes()).outcome == "created"
    with app.app_context():
        assert customer_links.redeem(ctx, in_eml) is None
        assert customer_links.redeem(ctx, in_txt) is None


def test_a_body_whose_base64_breaks_halfway_says_that_words_are_missing(take):
    # Python's decoder stops at padding or junk in the middle of base64 and drops the rest
    # without a word: the agent read half a message as if it were all of it.
    import base64

    encoded = base64.b64encode(b"The printer on floor 3 jams. It started after the update on "
                               b"Monday and every print since has failed.").decode()
    broken = encoded[:30] + "===" + encoded[30:]
    raw = (f"From: ada@example.org\nTo: {SUPPORT}\nSubject: Printer\nMessage-ID: {make_msgid()}\n"
           "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
           f"Content-Transfer-Encoding: base64\n\n{broken}\n")
    received = take(raw)
    assert received.outcome == "created"
    description = received.incident.description
    assert description.startswith("The printer on floor")
    assert "base64 encoding is broken after 22 bytes" in description
    assert "the original message is kept" in description


def test_two_scans_under_one_message_id_with_other_files_are_both_kept(take):
    # A scanner sends every scan with the same Message-ID, sender, subject and text.
    def scan(content: bytes) -> bytes:
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = "scanner@example.org", SUPPORT, "Scan"
        mail["Message-ID"] = "<scan@scanner.example.org>"
        mail.set_content("Scanned document attached.")
        mail.add_attachment(content, maintype="application", subtype="pdf", filename="scan.pdf")
        return bytes(mail)

    first, second = take(scan(b"%PDF-1 invoice")), take(scan(b"%PDF-1 delivery note"))
    assert (first.outcome, second.outcome) == ("created", "created")
    assert first.incident.id != second.incident.id
    assert take(b"Received: by relay.example.org\r\n" + scan(b"%PDF-1 delivery note")).outcome == "duplicate"


class BrokenPriority:
    """A plugin whose priority rule wraps every other and fails: no priority can be decided, so
    every incident is refused. (A plain rule that fails is passed over for the next one.)"""

    @hookimpl(wrapper=True)
    def helpdesk_priority(self, impact, urgency, ctx):
        raise RuntimeError("priority table missing")
        yield  # a wrapper is a generator


def test_a_message_the_desk_cannot_take_waits_in_quarantine(app, take, personas):
    # A priority rule that fails (here a plugin's bug) refuses the incident: the message is
    # kept for an admin instead of failing the intake (mail-in would make the MTA retry it
    # for days; an IMAP poll would stop at it every minute).
    app.extensions["helpdesk"].pm.register(BrokenPriority(), name="broken-priority")
    result = take("From: ada@example.org\r\nSubject: Printer\r\nMessage-ID: <refused@example.org>"
                  "\r\n\r\nIt jams.\r\n")
    assert result.outcome == "quarantined" and "The priority rule returned None" in result.reason
    assert Incident.select().count() == 0
    assert Notice.select().where(Notice.agent == personas.admin.id).count() == 1
    assert take("From: ada@example.org\r\nSubject: Printer\r\nMessage-ID: <refused@example.org>"
                "\r\n\r\nIt jams.\r\n").outcome == "duplicate"


def test_an_unreadable_message_through_two_routes_is_quarantined_once(take, personas):
    raw = fixture("missing_boundary.eml")
    assert take(raw).outcome == "quarantined"
    again = take(b"Received: from relay.example.org by mx.example.com\r\n" + raw)
    assert again.outcome == "duplicate"
    assert InboundMail.select().count() == 1


def test_oversized_mail_is_quarantined_whole(ctx, take):
    ctx.settings = dataclasses.replace(ctx.settings, mail_max_bytes=4096)
    raw = fixture("new_plain.eml").replace(b"Ada\r\n", b"Ada\r\n" + b"x" * 8000 + b"\r\n")
    result = take(raw)
    assert result.outcome == "quarantined" and "mail_max_bytes" in result.reason
    assert result.mail.sender == "ada@example.org" and result.mail.size == len(raw)


def test_a_20_mb_attachment_still_creates_the_incident_with_a_note(take):
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "ada@example.org", SUPPORT, "Logs attached"
    mail["Message-ID"] = "<big-1@example.org>"
    mail.set_content("The logs are attached.")
    mail.add_attachment(os.urandom(20 * 1024 * 1024), maintype="application", subtype="octet-stream",
                        filename="server.log.gz")
    result = take(bytes(mail))
    assert result.outcome == "created"
    assert "The logs are attached." in result.incident.description
    assert "server.log.gz (20971520 bytes)" in result.incident.description  # over the limit: noted


def _raw(headers: str, body: str) -> bytes:
    return (headers.strip().replace("\n", "\r\n") + "\r\n\r\n" + body.replace("\n", "\r\n")).encode("latin-1")


def test_a_nul_in_the_text_is_dropped_not_a_message_stuck_forever(take):
    # A UTF-16 body labelled UTF-8 decodes to text full of NULs, which PostgreSQL refuses:
    # the message used to be retried by the MTA forever and to block an IMAP mailbox.
    body = "Scanner says: paper jam".encode("utf-16-le")
    import base64

    raw = _raw("From: scanner@example.org\nTo: help@example.com\nSubject: Scan\n"
               "Message-ID: <nul-1@example.org>\nContent-Type: text/plain; charset=utf-8\n"
               "Content-Transfer-Encoding: base64", base64.b64encode(body).decode())
    result = take(raw)
    assert result.outcome == "created", result.reason
    assert "\x00" not in result.incident.description and "S" in result.incident.description


def test_an_html_mail_with_an_empty_plain_rendering_keeps_its_words(take):
    raw = _raw("From: ben@example.org\nTo: help@example.com\nSubject: Printer\n"
               'Message-ID: <alt-1@example.org>\nMIME-Version: 1.0\n'
               'Content-Type: multipart/alternative; boundary="b"',
               '--b\nContent-Type: text/plain; charset=utf-8\n\n\n--b\nContent-Type: text/html; charset=utf-8'
               "\n\n<p>The <b>printer</b> on floor 2 is on fire.</p>\n--b--\n")
    result = take(raw)
    assert result.outcome == "created"
    assert "The printer on floor 2 is on fire." in result.incident.description


@pytest.mark.parametrize("charset, words, note", [
    ("iso-8859-8-i", "המדפסת לא מדפיסה", False),  # Outlook's label for Hebrew
    ("windows-874", "เครื่องพิมพ์เสีย", False),  # Thai, as Windows names it
    ("x-mac-roman", "Café crème", False),
    ("utf-8", "Grüße aus Köln", True),  # Windows-1252 bytes under a UTF-8 label
])
def test_a_subject_name_and_text_in_an_odd_or_lying_charset_are_read(take, charset, words, note):
    codec = {"iso-8859-8-i": "iso-8859-8", "windows-874": "cp874", "x-mac-roman": "mac_roman",
             "utf-8": "cp1252"}[charset]
    encoded = base64.b64encode(words.encode(codec)).decode()
    raw = _raw(f"From: =?{charset}?b?{encoded}?= <odd@example.org>\nTo: help@example.com\n"
               f"Subject: =?{charset}?b?{encoded}?=\nMessage-ID: <odd-charset@example.org>\n"
               f"MIME-Version: 1.0\nContent-Type: text/plain; charset={charset}\n"
               "Content-Transfer-Encoding: base64", encoded + "\n")
    incident = take(raw).incident
    assert incident.title == words and incident.requester.name == words
    assert incident.description.startswith(words)
    assert ("read as Windows-1252" in incident.description) is note


def test_an_html_form_mail_keeps_its_table_cells_apart_and_no_title_line(take):
    # A web form or a monitoring tool mails a table; Outlook writes the subject into <title>.
    raw = _raw("From: forms@example.org\nTo: help@example.com\nSubject: New request\n"
               "Message-ID: <form-1@example.org>\nMIME-Version: 1.0\nContent-Type: text/html; charset=utf-8",
               "<html><head><title>New request</title><style>td {padding: 0}</style></head><body>"
               "<p>A request was submitted:</p><table><tr><th>Field</th><th>Value</th></tr>"
               "<tr><td>Phone</td><td>0123 456</td></tr><tr><td>Room</td><td>B2.14</td></tr></table>"
               "</body></html>\n")
    description = take(raw).incident.description
    assert description.startswith("A request was submitted:")
    assert "Phone | 0123 456" in description and "Room | B2.14" in description
    assert "td {" not in description


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252"])
def test_raw_8_bit_headers_are_read_not_turned_into_replacement_marks(take, encoding):
    # Many mailers put the sender's name and the subject in raw bytes instead of encoded words.
    raw = ("From: Jürgen Weiß <jw@example.org>\r\nSubject: Drucker im Büro – kaputt\r\n"
           "Message-ID: <8bit@example.org>\r\n\r\nDer Drucker druckt nicht.\r\n").encode(encoding)
    result = take(raw)
    assert result.outcome == "created"
    assert result.incident.title == "Drucker im Büro – kaputt"
    assert result.incident.requester.name == "Jürgen Weiß"
    assert result.incident.requester.email == "jw@example.org"


def test_every_text_part_and_text_file_of_a_message_is_kept(take):
    from helpdesk.models import Attachment

    raw = _raw(
        "From: ben@example.org\nTo: help@example.com\nSubject: Error after update\n"
        "Message-ID: <parts-1@example.org>\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="b1"',
        "--b1\nContent-Type: text/plain; charset=utf-8\n\nFirst part, before the screenshot.\n"
        "--b1\nContent-Type: image/png; name=shot.png\nContent-Disposition: inline; filename=shot.png\n"
        "Content-Transfer-Encoding: base64\n\niVBORw0KGgo=\n"
        "--b1\nContent-Type: text/plain; charset=utf-8\n\nSecond part: the error code is 0x80070005.\n"
        '--b1\nContent-Type: text/csv; name="report.csv"\n\nhost,state\ndb1,down\n'
        '--b1\nContent-Type: multipart/alternative; boundary="b2"\n\n'
        "--b2\nContent-Type: text/plain\n\nInvitation: call at 10:00\n"
        "--b2\nContent-Type: text/calendar; method=REQUEST\n\nBEGIN:VCALENDAR\nEND:VCALENDAR\n"
        "--b2--\n--b1--\n")
    result = take(raw)
    text = result.incident.description
    assert "First part, before the screenshot." in text and "the error code is 0x80070005" in text
    files = {a.filename: a.content_type for a in Attachment.select().where(
        Attachment.incident == result.incident.id)}
    assert files["report.csv"] == "text/csv" and files["shot.png"] == "image/png"
    assert any(name.endswith(".ics") for name in files), files


def test_text_in_a_lying_or_missing_charset_is_read_as_windows_1252_with_a_note():
    lying = parse(_raw("From: jose@example.org\nSubject: x\nContent-Type: text/plain; charset=utf-8\n"
                       "Content-Transfer-Encoding: 8bit", "Déjà vu, résumé"))
    assert lying.text == "Déjà vu, résumé"
    assert lying.notes == ["the text was not valid utf-8: read as Windows-1252"]
    undeclared = parse(_raw("From: jose@example.org\nSubject: x\nContent-Transfer-Encoding: 8bit",
                            "Caf\xe9 na\xefve"))
    assert undeclared.text == "Café naïve" and undeclared.notes == [
        "8-bit text with no charset: read as Windows-1252"]


def test_a_plain_and_an_html_copy_side_by_side_are_one_text():
    mail = parse(_raw('From: ada@example.org\nSubject: x\nContent-Type: multipart/mixed; boundary="b"',
                      "--b\nContent-Type: text/plain\n\nThe VPN drops.\n"
                      "--b\nContent-Type: text/html\n\n<p>The VPN <b>drops</b>.</p>\n--b--\n"))
    assert mail.text == "The VPN drops."


@pytest.mark.parametrize("charset", ["undefined", "utf-8\x00x"])
def test_a_charset_no_codec_has_is_read_with_a_note_not_quarantined(charset):
    mail = parse(_raw(f'From: ada@example.org\nSubject: x\nContent-Type: text/plain; charset="{charset}"\n'
                      "Content-Transfer-Encoding: 8bit", "caf\xe9"))
    assert mail.text == "café" and len(mail.notes) == 1 and "unreadable charset" in mail.notes[0]
    assert "\x00" not in mail.notes[0]


def test_line_breaks_are_stored_as_newlines_whatever_the_mail_sent():
    mail = parse(_raw("From: ada@example.org\nSubject: x\nContent-Type: text/plain", "one\ntwo\nthree"))
    assert mail.text == "one\ntwo\nthree"


# -- new mail ------------------------------------------------------------------------------------


def test_new_mail_creates_an_incident_for_a_new_requester_and_acknowledges(take, smtp, personas):
    result = take(fixture("new_plain.eml"))
    incident = result.incident
    assert incident.title == "Printer on floor 3 is jammed"
    assert incident.source == "email" and incident.owner_team_id == personas.service_desk.id
    assert Contact.get(Contact.email == "ada@example.org").name == "Ada Lovelace"
    ack = smtp.to("ada@example.org")[0].message
    assert ack["Auto-Submitted"] == "auto-generated"
    assert ack["X-Helpdesk-Loop"] == "example.com"
    assert f"[INC-{incident.id} #" in ack["Subject"]  # the signed token replies can thread by


def test_an_agents_reply_is_mailed_as_a_persons_answer(app, ctx, take, ada_incident, smtp, personas):
    # RFC 3834: Auto-Submitted marks machine mail; a person's reply without it is answered
    # and reopens things at the other end (another helpdesk), as a person's mail should.
    incident, ack = ada_incident
    assert ack.message["Auto-Submitted"] == "auto-generated"
    with app.app_context():
        incidents.add_comment(ctx, incident.id, personas.owner, "Replaced the fuser.", public=True)
    reply = smtp.to("ada@example.org")[-1].message
    assert "Replaced the fuser." in reply.get_body(("plain",)).get_content()
    assert reply["Auto-Submitted"] is None and reply["X-Helpdesk-Loop"] == "example.com"


def test_a_reply_the_customers_mail_server_refuses_is_said_on_the_incident(app, ctx, ada_incident, smtp,
                                                                            personas):
    # Ada's mailbox was closed: her server answers 550. The agent must not wait for an answer
    # to a reply she never got, with the failure shown only on the admins' Deliveries page.
    incident, _ack = ada_incident
    smtp.replies = ["550 5.1.1 <ada@example.org>: mailbox unavailable"]
    with app.app_context():
        incidents.add_comment(ctx, incident.id, personas.owner, "Please try tray 2.", public=True)
    assert len(smtp.refused) == 1 and Delivery.select().where(Delivery.state == "dead").count() == 1
    (note,) = TimelineEntry.select().where((TimelineEntry.incident == incident.id)
                                           & (TimelineEntry.kind == "note"))
    assert "ada@example.org" in note.body and "550" in note.body and "not received" in note.body
    assert not note.is_public  # for the desk, not the portal


def test_the_acknowledgement_threads_under_the_customers_own_message(ada_incident):
    _incident, ack = ada_incident
    theirs = parse(fixture("new_plain.eml")).original_id
    assert ack.message["In-Reply-To"] == f"<{theirs}>"  # the parent: what they wrote
    assert f"<{theirs}>" in ack.message["References"].split()


def test_an_existing_contact_is_found_whatever_the_case_of_the_address(take, contact_factory):
    ada = contact_factory(name="Ada L.", email="ada@example.org")
    raw = fixture("new_plain.eml").replace(b"<ada@example.org>", b"<ADA@Example.ORG>")
    assert take(raw).incident.requester_id == ada.id
    assert Contact.select().count() == 1


# -- replies -------------------------------------------------------------------------------------


def test_a_reply_threads_by_its_headers_once_trimmed_and_tells_owner_and_assignee(
        take, ada_incident, personas, smtp, ctx, app):
    incident, ack = ada_incident
    with app.app_context():
        incidents.take_ownership(ctx, incident.id, personas.owner)
        incidents.assign(ctx, incident.id, personas.owner, personas.database_team, personas.assignee)
    body = ("It is jammed again, tray 2 this time.\n\nAda\n\n"
            f"On Mon, 30 Nov 2026 at 09:01, Helpdesk <{SUPPORT}> wrote:\n> we have logged your request")
    raw = reply_to(ack, "Ada Lovelace <ada@example.org>", body)
    result = take(raw)
    assert result.outcome == "replied" and result.incident.id == incident.id
    (entry,) = customer_entries(incident.id)
    assert entry.body == "It is jammed again, tray 2 this time.\n\nAda"
    assert entry.contact.email == "ada@example.org" and entry.actor is None
    assert "we have logged your request" in result.mail.full_text  # the original is kept
    told = {d.recipient for d in Delivery.select().where((Delivery.event == "incident_commented")
                                                         & (Delivery.channel == "email"))}
    assert told == {personas.owner.email, personas.assignee.email}  # not Ada herself
    # Fetched again (an IMAP re-poll, an MTA retry): still one entry.
    again = take(raw)
    assert again.outcome == "duplicate"
    assert len(customer_entries(incident.id)) == 1


def test_a_references_header_of_thousands_of_ids_is_read_in_moments_and_still_threads(
        take, ada_incident, count_queries):
    # A mailer gone wrong (or a hostile one) can send 100,000 ids in 3 MB, far under
    # mail_max_bytes: each was a database lookup, minutes that held the mailbox's intake (and
    # an MTA pipe past its time limit, retried forever). The latest ids are what threads.
    incident, ack = ada_incident
    flood = " ".join(f"<old-{n}@example.org>" for n in range(100_000))
    raw = reply_to(ack, "ada@example.org", "Still jammed.", headers=False, subject="Re: printer",
                   References=f"{ack.message['Message-ID']}")  # (no In-Reply-To)
    raw = raw.replace(b"References:", b"References: " + flood.encode())
    started = time.monotonic()
    result = take(raw)  # (count_queries records every statement run meanwhile)
    assert result.outcome == "replied" and result.incident.id == incident.id
    assert time.monotonic() - started < 15  # (it took minutes: the header parser is quadratic)
    assert len(count_queries.queries) < 300


def test_headers_of_megabytes_are_read_in_moments(take):
    words = " ".join(f"word{n}" for n in range(100_000))
    started = time.monotonic()
    long_subject = take(f"From: ben@example.org\nSubject: Printer {words}\nMessage-ID: <long-s@example.org>"
                        "\n\nIt jams.\n")
    long_from = take(f"From: {words} <ben@example.org>\nSubject: Printer\nMessage-ID: <long-f@example.org>"
                     "\n\nIt jams.\n")
    assert time.monotonic() - started < 15
    assert long_subject.outcome == "created" and long_subject.incident.title.startswith("Printer word0 word1")
    assert long_from.outcome == "quarantined" and "From" in long_from.reason  # kept for an admin


def test_mime_headers_of_megabytes_are_read_in_moments(take):
    # The parser is quadratic in a long parameter too: 200 KB took 10 s before intake began.
    words = " ".join(f"w{n}" for n in range(100_000))
    raw = ("From: ben@example.org\nSubject: Scans\nMessage-ID: <long-mime@example.org>\nMIME-Version: 1.0\n"
           f'Content-Type: multipart/mixed; boundary="Q"; note="{words}"\n\n--Q\nContent-Type: text/plain\n\n'
           "Two scans.\n--Q\nContent-Type: application/pdf\n"
           f'Content-Disposition: attachment; filename="{words}.pdf"\n\nJVBERi0=\n--Q--\n')
    started = time.monotonic()
    result = take(raw)
    assert time.monotonic() - started < 15
    assert result.outcome == "created" and result.incident.description.startswith("Two scans.")


def test_a_reply_without_headers_threads_by_the_signed_subject_token(take, ada_incident):
    incident, ack = ada_incident
    result = take(reply_to(ack, "ada@example.org", "Still broken.", headers=False))
    assert result.outcome == "replied" and result.incident.id == incident.id


def test_a_forged_subject_token_does_not_thread(take, ada_incident):
    incident, _ = ada_incident
    mail = EmailMessage()
    mail["From"], mail["To"] = "ada@example.org", SUPPORT
    mail["Subject"] = f"Re: [INC-{incident.id} #0000000000] something"
    mail["Message-ID"] = "<forged-1@example.org>"
    mail.set_content("Forged token.")
    result = take(bytes(mail))
    assert result.outcome == "created" and result.incident.id != incident.id


@pytest.mark.parametrize("reference", ["<INC-{n}@example.com>", "<inc-{n}.anything@example.com>"])
def test_a_guessed_reference_to_our_mail_does_not_thread(take, ada_incident, reference):
    # The incident's root id is guessable and the form of our ids is public: only the id of a
    # message we really sent threads (an acknowledgement's, which holds a random part).
    incident, ack = ada_incident
    guessed = reference.format(n=incident.id)
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "ada@example.org", SUPPORT, "still broken"
    mail["Message-ID"], mail["References"] = "<guess-1@example.org>", guessed
    mail.set_content("Forged reference.")
    result = take(bytes(mail))
    assert result.outcome == "created" and result.incident.id != incident.id
    # The acknowledgement's own id, quoted after the root as a mail client does, threads.
    mail.replace_header("Message-ID", "<real-1@example.org>")
    mail.replace_header("References", f"{guessed} {ack.message['Message-ID']}")
    assert take(bytes(mail)).incident.id == incident.id


def test_a_reply_from_someone_else_never_posts_in_the_requesters_name(take, ada_incident, smtp):
    incident, ack = ada_incident
    result = take(reply_to(ack, "Eve <eve@example.net>", "Please send me the admin password."))
    assert result.outcome == "created" and result.incident.id != incident.id
    assert customer_entries(incident.id) == []
    assert result.incident.requester.email == "eve@example.net"
    assert f"Sent as a reply to {incident.reference}" in result.incident.description
    assert "not a participant" in result.reason


def test_a_new_incident_from_someone_elses_reply_does_not_carry_the_old_token(take, ada_incident, smtp):
    # Eve answers Ada's acknowledgement: her new incident used to be titled "Re: [INC-1 #…]
    # …", so its own mails read "[INC-2 #…] … Re: [INC-1 #…] …", two incidents in one subject.
    incident, ack = ada_incident
    result = take(reply_to(ack, "Eve <eve@example.net>", "Same here."))
    assert result.outcome == "created"
    assert "[INC-" not in result.incident.title
    assert result.incident.title.startswith("Re: ")
    assert ack.message["Subject"].split("] ", 1)[1] in result.incident.title
    (mail,) = smtp.to("eve@example.net")
    assert mail.message["Subject"].count("[INC-") == 1


def test_a_reply_to_a_resolved_incident_reopens_it(take, ada_incident, personas, ctx, app):
    incident, ack = ada_incident
    with app.app_context():
        incidents.change_status(ctx, incident.id, personas.owner, "resolved", note="Cleared the jam.")
    result = take(reply_to(ack, "ada@example.org", "No, it is still jammed."))
    assert result.outcome == "reopened"
    assert Incident.get_by_id(incident.id).status in {"new", "assigned", "in_progress"}
    assert len(customer_entries(incident.id)) == 1


def test_a_reply_to_a_closed_incident_starts_a_follow_up(take, ada_incident, personas, ctx, app):
    incident, ack = ada_incident
    with app.app_context():
        incidents.change_status(ctx, incident.id, personas.owner, "resolved", note="Cleared the jam.")
        incidents.change_status(ctx, incident.id, None, "closed", note="Closed automatically.")
    result = take(reply_to(ack, "ada@example.org", "It happened again today."))
    assert result.outcome == "followed_up"
    follow = result.incident
    assert follow.id != incident.id and follow.requester.email == "ada@example.org"
    assert f"Follow-up to {incident.reference}" in follow.title
    assert "It happened again today." in follow.description
    assert Incident.get_by_id(incident.id).status == "closed"


def test_further_replies_to_a_closed_incident_join_its_open_follow_up(
        take, ada_incident, personas, ctx, app, smtp):
    incident, ack = ada_incident
    with app.app_context():
        incidents.change_status(ctx, incident.id, personas.owner, "resolved", note="Cleared the jam.")
        incidents.change_status(ctx, incident.id, None, "closed", note="Closed automatically.")
    first = take(reply_to(ack, "ada@example.org", "It happened again today."))
    follow = first.incident
    # The follow-up's acknowledgement answers the mail that opened it.
    (follow_ack,) = [m for m in smtp.to("ada@example.org") if follow.reference in m.message["Subject"]]
    assert follow_ack.message["In-Reply-To"] == f"<{first.mail.message_id}>"
    # Ada answers the old thread twice more (her client still holds the closed incident's mail).
    second = take(reply_to(ack, "ada@example.org", "And again just now."))
    third = take(reply_to(ack, "ada@example.org", "Tray 2 too."))
    assert second.outcome == "replied" and second.incident.id == follow.id
    assert third.incident.id == follow.id
    assert [e.body for e in customer_entries(follow.id)] == ["And again just now.", "Tray 2 too."]
    assert Incident.select().where(Incident.follow_up_of == incident.id).count() == 1
    # Once the follow-up is resolved, a reply to the old thread reopens it ("not fixed").
    with app.app_context():
        incidents.change_status(ctx, follow.id, personas.owner, "resolved", note="New tray.")
    assert take(reply_to(ack, "ada@example.org", "Still jams.")).outcome == "reopened"
    # Once it is closed too, the next reply opens a new follow-up.
    with app.app_context():
        incidents.change_status(ctx, follow.id, personas.owner, "resolved", note="Replaced.")
        incidents.change_status(ctx, follow.id, None, "closed", note="Closed automatically.")
    later = take(reply_to(ack, "ada@example.org", "A month later: jammed."))
    assert later.outcome == "followed_up" and later.incident.id not in {incident.id, follow.id}


def test_another_participant_of_the_closed_incident_gets_a_follow_up_of_their_own(
        take, ada_incident, personas, ctx, app):
    # Grace wrote on Ada's incident while it was open; once it closed, Ada's follow-up is hers:
    # Grace's later mail to the old thread does not speak on it.
    incident, ack = ada_incident
    with app.app_context():
        grace = customers.find_or_create_contact("grace@example.org", "Grace")
        customers.post_message(ctx, incident.id, grace, "Mine jams too.", seen=True)
        incidents.change_status(ctx, incident.id, personas.owner, "resolved", note="Cleared the jam.")
        incidents.change_status(ctx, incident.id, None, "closed", note="Closed automatically.")
    follow = take(reply_to(ack, "ada@example.org", "It happened again today.")).incident
    theirs = take(reply_to(ack, "Grace <grace@example.org>", "Mine again as well."))
    assert theirs.outcome == "followed_up" and theirs.incident.id != follow.id
    assert theirs.incident.requester.email == "grace@example.org"
    assert customer_entries(follow.id) == []


# -- loops ---------------------------------------------------------------------------------------


def test_our_own_mail_coming_back_is_dropped(take, ada_incident, smtp):
    incident, ack = ada_incident
    result = take(ack.raw)
    assert result.outcome == "dropped" and "our own" in result.reason
    assert Incident.select().count() == 1 and customer_entries(incident.id) == []


def test_a_support_address_written_with_a_name_still_stops_our_own_mail(app, ctx, tmp_path):
    # support_address = "IT Desk <desk@example.com>" was kept whole and never matched a
    # sender, so mail from the desk's own mailbox (a forwarding rule, a colleague's test)
    # became a customer's incident, acknowledged back to the mailbox: a loop in the making.
    from helpdesk.testing import make_app

    other = make_app(tmp_path / "named", [], database_url=ctx.settings.database_url,
                     support_address="IT Desk <desk@example.com>")
    assert other.extensions["helpdesk"].settings.support_address == "desk@example.com"
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "IT Desk <desk@example.com>", "desk@example.com", "Hi"
    mail["Message-ID"] = "<own-1@example.com>"
    mail.set_content("Forwarded back to ourselves.")
    with other.app_context():
        result = receive(other.extensions["helpdesk"], bytes(mail))
    assert result.outcome == "dropped" and "our own" in result.reason
    assert Incident.select().count() == 0


def test_an_agent_added_with_a_named_address_is_still_known_as_an_agent(take, login, personas, app):
    # `helpdesk user add lee --email "Lee <Lee@Example.net>"` (or the Agents page) kept the
    # text whole: mail from lee@example.net was then taken as a customer's, and mail to the
    # agent went to whatever was typed ("not an email" was kept too).
    from helpdesk import people

    with app.app_context():
        lee = people.create_agent("lee", "Lee", "correct-horse-battery", email="Lee <Lee@Example.net>")
        assert lee.email == "Lee@Example.net"
        with pytest.raises(DomainError, match="not an e-mail address"):
            people.create_agent("kim", "Kim", "correct-horse-battery", email="not an email")
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "lee@example.net", SUPPORT, "As an agent"
    mail.set_content("Close INC-1 please.")
    assert take(bytes(mail)).outcome == "quarantined"
    admin = login(personas.admin)
    page = admin.post(f"/admin/agents/{lee.id}", {"display_name": "Lee", "email": "lee at example",
                                                  "role": "agent"})
    assert page.status_code == 422 and "not an e-mail address" in page.get_data(as_text=True)


def test_an_auto_reply_on_an_incident_is_kept_quietly(take, ada_incident, personas, ctx, app, smtp):
    incident, ack = ada_incident
    with app.app_context():
        incidents.change_status(ctx, incident.id, personas.owner, "resolved", note="Cleared the jam.")
    before = len(smtp.received)
    raw = reply_to(ack, "ada@example.org", "I am out of the office.", Auto_Submitted="auto-replied")
    result = take(raw)
    assert result.outcome == "recorded"
    assert Incident.get_by_id(incident.id).status == "resolved"  # not reopened by a machine
    assert len(smtp.received) == before  # nobody told, nothing answered


def test_an_out_of_office_answer_from_someone_else_is_a_note_not_a_new_incident(take, ada_incident, smtp):
    # Ada's mail is forwarded to her deputy Carol, who is away: Carol's out-of-office answer
    # threads under our acknowledgement. It is no request of Carol's (a queue entry with an SLA
    # nobody can meet), and must not make her a participant of Ada's incident either.
    incident, ack = ada_incident
    before = len(smtp.received)
    away = reply_to(ack, "carol@example.org", "I am away until Monday.", Auto_Submitted="auto-replied")
    result = take(away)
    assert result.outcome == "recorded" and result.incident.id == incident.id
    assert Incident.select().count() == 1 and len(smtp.received) == before
    (note,) = TimelineEntry.select().where((TimelineEntry.incident == incident.id)
                                           & (TimelineEntry.kind == "note"))
    assert "carol@example.org" in note.body and "I am away until Monday." in note.body
    assert not note.is_public and note.contact_id is None
    # Carol writing herself is still a new incident of her own, not a word in Ada's name.
    assert take(reply_to(ack, "carol@example.org", "Ada asked me to add: it is tray 2.")).outcome == "created"


def test_automatic_new_mail_gets_no_acknowledgement(take, smtp):
    result = take(fixture("auto_reply.eml"))
    assert result.outcome == "created" and result.mail.automatic
    assert smtp.to("ada@example.org") == []
    # X-Loop alone is no sign of a machine: procmail and Sieve forwarding rules add it to people's mail.
    forwarded = take("From: ben@example.org\r\nX-Loop: ben@example.org\r\nSubject: VPN down\r\n"
                     "Message-ID: <x-loop@example.org>\r\n\r\nIt drops every hour.\r\n")
    assert forwarded.outcome == "created" and not forwarded.mail.automatic


def _bounce_of(message_id: str) -> bytes:
    """bounce.eml with the headers of the returned message quoted, as MTAs send them."""
    quoted = (f"--dsn\nContent-Type: text/rfc822-headers\n\nTo: ada@example.org\n"
              f"Message-ID: {message_id}\n--dsn--\n")
    return fixture("bounce.eml").replace(b"--dsn--\n", quoted.encode()).replace(b"bounce-1@", b"bounce-2@")


def test_a_bounce_of_our_mail_marks_the_address_until_its_owner_writes_again(app, ctx, take, ada_incident):
    _incident, ack = ada_incident
    ada = Contact.get(Contact.email == "ada@example.org")
    with app.app_context():
        customers.set_portal_password(ada, "a long portal passphrase")
    result = take(_bounce_of(ack.message["Message-ID"]))
    assert result.outcome == "dropped" and "ada@example.org" in result.reason
    assert Contact.get_by_id(ada.id).email_failing_at is not None
    assert Incident.select().count() == 1  # a bounce is no incident
    with app.app_context():
        assert customer_links.issue(ctx, "ada@example.org", "client") is None  # no sign-in link to it
        # Her password needs no mail: she can still sign in.
        assert customers.portal_sign_in(ctx, "ada@example.org", "a long portal passphrase", "client") == ada
    take(fixture("new_plain.eml").replace(b"Message-ID: <", b"Message-ID: <again-"))  # she writes in
    assert Contact.get_by_id(ada.id).email_failing_at is None


@pytest.mark.parametrize("action", ["delayed", "delivered", "relayed", "expanded"])
def test_a_delivery_report_that_is_no_failure_marks_nobody(app, ctx, take, ada_incident, action):
    # Exchange reports "Delivery delayed" after a few hours by default; a relay or a delivery
    # receipt says the message went on. None of them says the address fails: Ada keeps her links.
    _incident, ack = ada_incident
    report = _bounce_of(ack.message["Message-ID"]).replace(b"Action: failed\nStatus: 5.1.1",
                                                           f"Action: {action}\nStatus: 4.4.7".encode())
    result = take(report)
    assert result.outcome == "dropped"  # a machine's report all the same: no incident, no answer
    assert Incident.select().count() == 1
    assert Contact.get(Contact.email == "ada@example.org").email_failing_at is None
    with app.app_context():
        assert customer_links.issue(ctx, "ada@example.org", "client") is not None


@pytest.mark.parametrize("forged", [
    fixture("bounce.eml"),  # quotes none of our messages
    b"From: someone@evil.example\r\nX-Failed-Recipients: ada@example.org\r\nSubject: hi\r\n"
    b"Message-ID: <forged@evil.example>\r\nReferences: <made.up@example.com>\r\n\r\nq\r\n",
])
def test_a_bounce_that_proves_nothing_we_sent_marks_nobody(take, ada_incident, forged):
    result = take(forged)
    assert result.outcome == "dropped"
    assert Contact.get(Contact.email == "ada@example.org").email_failing_at is None


def test_a_bounce_of_a_portal_sign_in_message_marks_the_address(app, ctx, take, smtp):
    # Sign-in mail never goes through the outbox (it holds a secret), yet its bounce proves the
    # address failing: no more links are mailed into the void.
    with app.app_context():
        for address in ("ada@example.org", "bob@example.org"):
            contact = customers.find_or_create_contact(address, address.partition("@")[0])
            _contact, token = customer_links.issue(ctx, address, "127.0.0.1")
            customer_links.send(ctx, contact, f"{ctx.base_url}/portal/sign-in/{token}", wait=True)
    (to_ada,), (to_bob,) = smtp.to("ada@example.org"), smtp.to("bob@example.org")
    ada = Contact.get(Contact.email == "ada@example.org")
    # A report naming Ada that quotes the sign-in message sent to Bob proves nothing about her.
    other = take(_bounce_of(to_bob.message["Message-ID"]))
    assert other.outcome == "dropped" and "ada@example.org" not in other.reason
    assert Contact.get_by_id(ada.id).email_failing_at is None
    # (This report also names the message in In-Reply-To, as some servers do: still a bounce.)
    bounce = _bounce_of(to_ada.message["Message-ID"]).replace(b"bounce-2@", b"bounce-3@")
    answering = f"In-Reply-To: {to_ada.message['Message-ID']}\nSubject:".encode()
    result = take(bounce.replace(b"Subject:", answering))
    assert result.outcome == "dropped" and "ada@example.org" in result.reason
    assert Contact.get_by_id(ada.id).email_failing_at is not None
    with app.app_context():
        assert customer_links.issue(ctx, "ada@example.org", "127.0.0.2") is None  # no link into the void
    assert len(smtp.to("ada@example.org")) == 1 and Incident.select().count() == 0


def test_a_postmaster_writing_a_message_gets_an_incident_not_a_bounce(take, smtp):
    # The postmaster of a customer's domain is a person too (or a system writing a notice).
    result = take("From: Postmaster <postmaster@example.org>\r\nTo: help@example.com\r\n"
                  "Subject: Our mail relay rejects your replies\r\nMessage-ID: <pm-1@example.org>\r\n"
                  "Return-Path: <postmaster@example.org>\r\n\r\n"
                  "Since this morning our relay refuses mail from your desk.\r\n"
                  "Please check your SPF record.\r\n")
    assert result.outcome == "created", result.reason
    assert "Please check your SPF record." in result.incident.description
    assert result.incident.requester.email == "postmaster@example.org"
    assert len(smtp.to("postmaster@example.org")) == 1  # acknowledged like anyone


def test_a_delivery_report_from_postmaster_is_still_a_bounce(take, ada_incident):
    _incident, ack = ada_incident
    report = _bounce_of(ack.message["Message-ID"]).replace(b"MAILER-DAEMON@mx.example.com",
                                                           b"postmaster@mx.example.com")
    result = take(report)
    assert result.outcome == "dropped" and "ada@example.org" in result.reason
    assert Contact.get(Contact.email == "ada@example.org").email_failing_at is not None
    # An old-style report in plain text, sent with the null sender, is one too.
    plain = take("From: postmaster@mx.example.com\r\nTo: help@example.com\r\nReturn-Path: <>\r\n"
                 "Subject: Delivery failure\r\nMessage-ID: <pm-2@mx.example.com>\r\n\r\n"
                 "Your message to ben@example.org could not be delivered.\r\n")
    assert plain.outcome == "dropped" and "delivery failure" in plain.reason
    assert Incident.select().count() == 1


def test_the_loop_brake_stops_acknowledgements_and_tells_admins(take, smtp, personas):
    for number in range(8):  # a robot that sets no Auto-Submitted header, mailing again and again
        raw = fixture("new_plain.eml").replace(b"<new-plain-1@", f"<robot-{number}@".encode())
        assert take(raw).outcome == "created"
    assert len(smtp.to("ada@example.org")) == 5  # mail_auto_reply_limit
    assert Notice.select().where((Notice.agent == personas.admin.id)
                                 & Notice.text.contains("loop brake")).count() == 3


def _strip_loop_headers(raw: bytes) -> bytes:
    """A relay that drops the headers which mark automatic mail (they exist)."""
    from email import message_from_bytes, policy

    mail = message_from_bytes(raw, policy=policy.default)
    for name in ("Auto-Submitted", "X-Helpdesk-Loop"):
        del mail[name]
    return bytes(mail)


@pytest.mark.parametrize("relay", ["keeps headers", "drops headers"])
def test_two_helpdesks_answering_each_other_stop(app, take, smtp, tmp_path, relay):
    """Two instances of this helpdesk, each the other's customer: whatever one sends lands in
    the other's mail-in. With the loop headers intact the first automatic answer ends it; with
    a relay stripping them, each side's loop brake ends it within a few messages."""
    other_smtp = SmtpServer()
    other_smtp.from_address = "Other desk <desk@other.example>"
    other_smtp.start()
    other = tmp_path / "other"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    env.update(HELPDESK_INSTANCE=str(other), HELPDESK_QUEUE_URL="memory",
               HELPDESK_SUPPORT_ADDRESS="desk@other.example",
               HELPDESK_DATABASE_URL=f"sqlite:///{other / 'helpdesk.db'}",
               **{f"HELPDESK_PLUGINS__EMAIL__{k.upper()}": str(v) for k, v in other_smtp.settings.items()})
    transit = (lambda raw: raw) if relay == "keeps headers" else _strip_loop_headers
    try:
        init = subprocess.run(HELPDESK + ["init", "--no-demo"], env=env, capture_output=True, timeout=120,
                              check=False)
        assert init.returncode == 0, init.stderr
        first = take(fixture("new_plain.eml").replace(b"ada@example.org", b"desk@other.example"))
        assert first.outcome == "created"
        sent_ours, sent_theirs, rounds = 0, 0, 0
        while rounds < 20:
            rounds += 1
            ours = smtp.to("desk@other.example")[sent_ours:]
            sent_ours += len(ours)
            for message in ours:
                done = subprocess.run(HELPDESK + ["mail-in"], input=transit(message.raw), env=env,
                                      capture_output=True, timeout=120, check=False)
                assert done.returncode == 0, done.stderr
            theirs = other_smtp.to(SUPPORT)[sent_theirs:]
            sent_theirs += len(theirs)
            for message in theirs:
                assert take(transit(message.raw)).outcome in {"created", "recorded", "replied"}
            if not ours and not theirs:
                break
    finally:
        other_smtp.stop()
    assert rounds < 20, "the helpdesks kept answering each other"
    if relay == "keeps headers":
        assert (sent_ours, sent_theirs) == (1, 0)  # our acknowledgement, answered by nothing
    else:
        assert sent_ours <= 5 and sent_theirs <= 5  # mail_auto_reply_limit on each side


# -- parsing and trimming details ----------------------------------------------------------------


@pytest.mark.parametrize("text, kept", [
    ("Thanks!\n\n-- \nAda Lovelace\nAnalyst", "Thanks!"),
    ("Fixed now.\n\nOn Mon, 30 Nov 2026, Helpdesk wrote:\n> old", "Fixed now."),
    ("Yes.\n\nOn Mon, 30 Nov 2026 at 09:00, Helpdesk\n<help@example.com> wrote:\n> old", "Yes."),
    ("Works.\n\n-----Original Message-----\nFrom: Helpdesk", "Works."),
    ("Danke.\n\nAm 30.11.2026 um 09:00 schrieb Helpdesk <help@example.com>:\n> alt", "Danke."),
    ("Ok.\n\nFrom: Helpdesk <help@example.com>\nSent: Monday\nTo: Ada\n\nold text", "Ok."),
    ("Sure.\nSent from my iPhone", "Sure."),
    ("> all quoted\n> nothing new", "> all quoted\n> nothing new"),  # kept whole, not emptied
    ("Point one:\n> your question\nmy answer", "Point one:\n> your question\nmy answer"),
    # Answered below the quote (bottom-posting), or between its lines: their words are kept.
    ("Hi,\n\nOn Mon, 30 Nov 2026, Helpdesk wrote:\n> Is the printer on?\n\nYes, and it still jams."
     "\n\n-- \nAda", "Hi,\n\nYes, and it still jams."),
    ("On Mon, 30 Nov 2026, Helpdesk wrote:\n> Which floor?\nThird.\n> Which tray?\nTray 2.",
     "Third.\n\nTray 2."),
    # Written on top: what the server adds under the quote (a disclaimer) is not theirs.
    ("Thanks, it works now.\n\nOn Mon, 30 Nov 2026, Helpdesk wrote:\n> Try again.\n\n"
     "This e-mail is confidential.", "Thanks, it works now."),
    # A bare "--" (the client dropped the delimiter's space) ends the words only above a signature.
    ("Thanks!\n\n--\nAda Lovelace\nAnalyst, Example Ltd.\n+44 20 7946 0000", "Thanks!"),
    ("Thanks!\n--\nAda\n\nOn Mon, 30 Nov 2026, Helpdesk wrote:\n> old", "Thanks!"),
    ("Step one works.\n--\nStep two fails:\nerror 42", "Step one works.\n--\nStep two fails:\nerror 42"),
    ("Tray 1 is fine.\n--\nThe printer on floor 2 prints blank pages since Monday.",
     "Tray 1 is fine.\n--\nThe printer on floor 2 prints blank pages since Monday."),
    ("Tray 1 is fine.\n--\nFloor 2 too\n\nAnd floor 4", "Tray 1 is fine.\n--\nFloor 2 too\n\nAnd floor 4"),
    ("Part one\n--\nPart two\n--\nAda", "Part one\n--\nPart two"),
    ("Hi,\n\nOn Mon, 30 Nov 2026, Helpdesk wrote:\n> Which tray?\nTray 2\n--\nAda", "Hi,\n\nTray 2"),
])
def test_trimming_keeps_only_the_new_words(text, kept):
    assert trim_reply(text) == kept


def test_a_reply_forwarding_someone_elses_message_keeps_it_on_the_timeline(take, ada_incident):
    # Ada passes on what her vendor wrote: inline (as Gmail forwards), and attached whole.
    incident, ack = ada_incident
    inline = ("Here is what the vendor answered:\n\n---------- Forwarded message ---------\n"
              "From: Vendor Support <support@vendor.example>\nDate: Thu, 3 Dec 2026 at 09:00\n"
              "Subject: Printer error\nTo: <ada@example.org>\n\nError 0x80070005 means the spooler "
              "lacks rights.\n\nOn Wed, 2 Dec 2026, Ada <ada@example.org> wrote:\n> What is 0x80070005?")
    assert take(reply_to(ack, "ada@example.org", inline)).outcome == "replied"
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "ada@example.org", SUPPORT, "Re: " + ack.message["Subject"]
    mail["Message-ID"], mail["In-Reply-To"] = "<fwd-attached@example.org>", ack.message["Message-ID"]
    mail.set_content("See the attached answer.\n\n-- \nAda Lovelace\nFloor 3")
    vendor = EmailMessage()
    vendor["From"], vendor["Subject"] = "Vendor Support <support@vendor.example>", "Fuser"
    vendor.set_content("Replace the fuser unit, part FU-220.")
    mail.add_attachment(vendor)
    assert take(bytes(mail)).outcome == "replied"
    first, second = customer_entries(incident.id)
    assert first.body.startswith("Here is what the vendor answered:")
    assert "Error 0x80070005 means the spooler lacks rights." in first.body
    assert second.body.startswith("See the attached answer.") and "Ada Lovelace" not in second.body
    assert "Replace the fuser unit, part FU-220." in second.body


@pytest.mark.parametrize("text", [
    # Outlook's header block above the quoted message, as it writes it in other languages.
    "Toujours en panne.\n\nDe : Helpdesk <help@example.com>\nEnvoyé : jeudi 3 décembre 2026 10:00\n"
    "À : Ada\nObjet : RE: imprimante\n\nWe have logged your request",
    "Nog steeds kapot.\n\nVan: Helpdesk <help@example.com>\nVerzonden: donderdag 3 december 2026\n"
    "Aan: Ada\nOnderwerp: printer\n\nWe have logged your request",
    "Sigue roto.\n\nDe: Helpdesk <help@example.com>\nEnviado el: jueves, 3 de diciembre de 2026\n"
    "Para: Ada\nAsunto: impresora\n\nWe have logged your request",
    "Ancora rotto.\n\nDa: Helpdesk <help@example.com>\nInviato: giovedì 3 dicembre 2026\n"
    "A: Ada\nOggetto: stampante\n\nWe have logged your request",
    "Fortfarande trasig.\n\nFrån: Helpdesk <help@example.com>\nSkickat: den 3 december 2026\n"
    "Till: Ada\nÄmne: skrivare\n\nWe have logged your request",
    # Gmail's attribution above a ">" quote, in other languages.
    "Ainda quebrada.\n\nEm qui., 3 de dez. de 2026 às 10:00, Helpdesk <help@example.com> escreveu:\n"
    "> We have logged your request",
    "Fortfarande trasig.\n\nDen tors 3 dec. 2026 kl 10:00 skrev Helpdesk <help@example.com>:\n"
    "> We have logged your request",
    "Nadal zepsuta.\n\nW dniu czw., 3.12.2026 o 10:00 Helpdesk <help@example.com> napisał(a):\n"
    "> We have logged your request",
    "Всё ещё сломан.\n\nчт, 3 дек. 2026 г. в 10:00, Helpdesk <help@example.com>:\n"
    "> We have logged your request",
    "まだ壊れています。\n\n2026年12月3日(木) 10:00 Helpdesk <help@example.com>:\n"
    "> We have logged your request",
])
def test_a_reply_from_a_mail_client_in_another_language_loses_the_quoted_message(take, ada_incident, text):
    incident, ack = ada_incident
    assert take(reply_to(ack, "ada@example.org", text)).outcome == "replied"
    (entry,) = customer_entries(incident.id)
    assert entry.body == text.split("\n\n")[0]  # their words, not the desk's message again


@pytest.mark.parametrize("text", [
    # A customer's own sentences that begin like a quote marker: no quote follows them.
    "Hi,\nThe export still fails.\nOn Monday our CFO wrote this in the ticket:\n"
    "the numbers for March are missing, please fix before Friday.",
    "Hi,\nSent from my laptop at home the print job works, but from the office it fails.\n"
    "It says error 42.",
])
def test_a_sentence_that_looks_like_a_quote_marker_keeps_the_words_below_it(take, ada_incident, text):
    incident, ack = ada_incident
    assert trim_reply(text) == text
    assert take(reply_to(ack, "ada@example.org", text)).outcome == "replied"
    (entry,) = customer_entries(incident.id)
    assert entry.body == text  # what the owner reads on the timeline is the whole message


def test_words_below_a_bare_double_dash_are_the_customers_not_a_signature(take, ada_incident):
    # Ada parts her reply with "--" and writes on below it: every word reaches the timeline.
    incident, ack = ada_incident
    body = ("Tray 1 is fine now.\n--\nBut the printer on floor 2 prints blank pages since Monday.\n\n"
            "Could someone look at it today?\n\nAda")
    result = take(reply_to(ack, "ada@example.org", body))
    assert result.outcome == "replied"
    (entry,) = customer_entries(incident.id)
    assert entry.body == body


def test_an_html_reply_loses_its_signature_even_without_the_delimiters_space(take, ada_incident):
    # Turned into text, an HTML line keeps no trailing space: "-- " arrives as "--".
    incident, ack = ada_incident
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "ada@example.org", SUPPORT, "Re: " + ack.message["Subject"]
    mail["Message-ID"], mail["In-Reply-To"] = "<html-sig@example.org>", ack.message["Message-ID"]
    mail.set_content("<p>Still jammed.</p><p>-- <br>Ada Lovelace<br>Floor 3</p>", subtype="html")
    assert take(bytes(mail)).outcome == "replied"
    (entry,) = customer_entries(incident.id)
    assert entry.body == "Still jammed."


def test_a_lying_charset_is_read_with_a_note():
    mail = parse(fixture("broken_charset.eml"))
    assert "I cannot log in" in mail.text and any("charset" in note for note in mail.notes)


# -- the MTA pipe ----------------------------------------------------------------------------------


HELPDESK = [sys.executable, "-m", "helpdesk.cli"]


def _env(app: Flask, **extra: str) -> dict[str, str]:
    settings = app.extensions["helpdesk"].settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    env.update({"HELPDESK_INSTANCE": str(settings.instance_path),
                "HELPDESK_DATABASE_URL": settings.database_url, "HELPDESK_SECRET_KEY": settings.secret_key,
                "HELPDESK_QUEUE_URL": "memory", "HELPDESK_SUPPORT_ADDRESS": SUPPORT, **extra})
    return env


def test_mail_in_takes_a_message_from_stdin(app, personas):
    env = _env(app)
    done = subprocess.run(HELPDESK + ["mail-in"], input=fixture("new_plain.eml"), env=env,
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().startswith("created INC-")
    assert Incident.select().where(Incident.source == "email").count() == 1
    again = subprocess.run(HELPDESK + ["mail-in"], input=fixture("new_plain.eml"), env=env,
                           capture_output=True, timeout=120, check=False)
    assert again.returncode == 0 and again.stdout.decode().startswith("duplicate")
    assert Incident.select().count() == 1


def test_mail_in_asks_the_mta_to_retry_while_the_database_is_down(app, tmp_path):
    env = _env(app, HELPDESK_DATABASE_URL="postgresql://postgres@127.0.0.1:9/nothing?connect_timeout=2")
    done = subprocess.run(HELPDESK + ["mail-in"], input=fixture("new_plain.eml"), env=env,
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 75, done.stderr  # EX_TEMPFAIL: the MTA keeps the message
    assert b"try again later" in done.stderr


def test_mail_in_with_bad_settings_is_a_configuration_error(app):
    done = subprocess.run(HELPDESK + ["mail-in"], input=b"x", env=_env(app, HELPDESK_PORT="nope"),
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 78 and b"HELPDESK_PORT" in done.stderr


# -- what agents and admins see ------------------------------------------------------------------


def test_agents_see_the_customers_message_and_its_original(take, ada_incident, login, personas):
    incident, ack = ada_incident
    result = take(reply_to(ack, "Ada Lovelace <ada@example.org>",
                           "<b>Still</b> jammed.\n\n-- \nAda, floor 3"))
    agent = login(personas.colleague)
    page = agent.get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert "Ada Lovelace (customer)" in page and "From the customer" in page
    timeline = page.split('aria-label="Timeline">', 1)[1].split("</ol>", 1)[0]
    assert "&lt;b&gt;Still&lt;/b&gt; jammed." in timeline and "floor 3" not in timeline
    original = agent.get(f"/mail/{result.mail.id}").get_data(as_text=True)
    assert "Ada, floor 3" in original  # the full text, signature included
    download = agent.get(f"/mail/{result.mail.id}/original.eml")
    assert download.status_code == 200
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert download.headers["Content-Security-Policy"] == "sandbox"
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.mimetype == "application/octet-stream"
    assert b"Still" in download.data
    assert login(None).get(f"/mail/{result.mail.id}").status_code == 302  # to the login page


def test_admins_list_quarantined_mail_and_mark_it_handled(take, login, personas):
    result = take(fixture("malformed_from.eml"))
    assert login(personas.owner).get("/admin/mail").status_code == 403
    admin = login(personas.admin)
    page = admin.get("/admin/mail?outcome=quarantined").get_data(as_text=True)
    assert "1 quarantined message waiting" in page and "no usable sender" in page
    # A message on no incident is the admins' to read: an agent counting ids finds nothing.
    for path in (f"/mail/{result.mail.id}", f"/mail/{result.mail.id}/original.eml"):
        assert login(personas.owner).get(path).status_code == 404
        assert admin.get(path).status_code == 200
    assert admin.http.post(f"/admin/mail/{result.mail.id}/handled").status_code == 400  # no CSRF token
    assert admin.post(f"/admin/mail/{result.mail.id}/handled").status_code == 303
    assert InboundMail.get_by_id(result.mail.id).handled_at is not None
    assert "0 quarantined messages waiting" in admin.get("/admin/mail").get_data(as_text=True)


def test_wildcard_characters_in_an_address_match_nobody_else(take, ada_incident):
    incident, ack = ada_incident
    result = take(reply_to(ack, "a_a@example.org", "Posting as Ada?"))
    assert result.outcome == "created" and result.incident.requester.email == "a_a@example.org"
    assert customer_entries(incident.id) == []


def test_mail_from_an_agents_address_never_acts_for_the_agent(take, ada_incident, personas):
    incident, ack = ada_incident
    result = take(reply_to(ack, f"John <{personas.owner.email.upper()}>", "Close it, I am the owner."))
    assert result.outcome == "quarantined" and "agent" in result.reason
    assert customer_entries(incident.id) == [] and Incident.select().count() == 1


def test_five_thousand_parts_are_quarantined(take):
    parts = "".join(f"--b\r\nContent-Type: text/plain\r\n\r\npart {n}\r\n" for n in range(5000))
    raw = ("From: ada@example.org\r\nTo: help@example.com\r\nSubject: Many parts\r\n"
           "Message-ID: <many-parts@example.org>\r\nMIME-Version: 1.0\r\n"
           'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + "--b--\r\n")
    result = take(raw)
    assert result.outcome == "quarantined" and "more than 500 MIME parts" in result.reason


def test_messages_forwarded_fifty_deep_are_read_to_a_limit(take):
    inner = "From: deep@example.org\r\nSubject: level 50\r\n\r\nthe bottom\r\n"
    for level in range(49, -1, -1):
        headers = (f"From: {'ada@example.org' if level == 0 else 'deep@example.org'}\r\n"
                   f"Subject: level {level}\r\n")
        if level == 0:
            headers += "To: help@example.com\r\nMessage-ID: <deep@example.org>\r\n"
        inner = (headers + f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b{level}"\r\n\r\n'
                 f"--b{level}\r\nContent-Type: text/plain\r\n\r\nlevel {level} text\r\n"
                 f"--b{level}\r\nContent-Type: message/rfc822\r\n\r\n{inner}\r\n--b{level}--\r\n")
    result = take(inner)
    assert result.outcome == "created"
    assert "level 0 text" in result.incident.description
    assert "forwarded more than 10 deep were not read" in result.incident.description


def test_an_answer_to_an_incident_waiting_for_the_customer_resumes_it(take, ada_incident, personas, ctx,
                                                                      app):
    incident, ack = ada_incident
    with app.app_context():
        incidents.change_status(ctx, incident.id, personas.owner, "pending", pending_reason="customer",
                                note="Which floor exactly?")
    result = take(reply_to(ack, "ada@example.org", "Floor 3, by the window."))
    assert result.outcome == "replied"
    assert Incident.get_by_id(incident.id).status == "in_progress"


# -- receiving a quarantined message again ----------------------------------------------------------


def test_an_oversized_message_received_again_becomes_the_incident_it_would_have_been(
        ctx, take, login, personas, smtp):
    """The admin decides the big message is wanted: it is taken as if it had just arrived (the
    size limit not applied again), on its own row, and Ada gets her acknowledgement."""
    ctx.settings = dataclasses.replace(ctx.settings, mail_max_bytes=4096)
    raw = fixture("new_plain.eml").replace(b"Ada\r\n", b"Ada\r\n" + b"x" * 8000 + b"\r\n")
    held = take(raw).mail
    assert held.outcome == "quarantined" and smtp.to("ada@example.org") == []

    assert login(personas.owner).post(f"/admin/mail/{held.id}/receive-again").status_code == 403
    admin = login(personas.admin)
    assert admin.http.post(f"/admin/mail/{held.id}/receive-again").status_code == 400  # no CSRF token
    assert Incident.select().count() == 0
    answer = admin.post(f"/admin/mail/{held.id}/receive-again")
    assert answer.status_code == 303
    incident = Incident.get()
    assert f"received again: created, {incident.reference}" in admin.get(
        answer.headers["Location"]).get_data(as_text=True)
    assert "the printer on floor 3 shows paper jam" in incident.description
    assert "held in quarantine until" in incident.description  # the clocks start now: said why
    assert incident.requester.email == "ada@example.org"
    row = InboundMail.get_by_id(held.id)
    assert (row.outcome, row.incident_id, row.received_at) == ("created", incident.id, held.received_at)
    assert row.handled_at is not None and "received again by root" in row.reason
    assert "mail_max_bytes" in row.reason  # what held it is still told
    assert InboundMail.select().count() == 1
    assert len(smtp.to("ada@example.org")) == 1
    # A second click (another tab, another admin) takes nothing twice.
    page = admin.get(admin.post(f"/admin/mail/{held.id}/receive-again").headers["Location"])
    assert f"Message {held.id} is not waiting in quarantine." in page.get_data(as_text=True)
    assert Incident.select().count() == 1 and len(smtp.to("ada@example.org")) == 1
    # The same message arriving once more is still the one received.
    assert take(raw).outcome == "duplicate"


def test_a_quarantined_reply_received_again_lands_on_its_incident(app, ctx, take, ada_incident):
    incident, ack = ada_incident
    ctx.settings = dataclasses.replace(ctx.settings, mail_max_bytes=4096)
    held = take(reply_to(ack, "ada@example.org", "Still jammed.\n" + "log line\n" * 600)).mail
    assert held.outcome == "quarantined"
    with app.app_context():
        received = receive_again(ctx, held.id, by="root")
    assert received.outcome == "replied" and received.incident.id == incident.id
    assert "Still jammed." in customer_entries(incident.id)[0].body
    assert Incident.select().count() == 1


def test_a_message_still_refused_waits_on_with_the_new_reason(app, ctx, take, personas):
    app.extensions["helpdesk"].pm.register(BrokenPriority(), name="broken-priority")
    held = take("From: ada@example.org\r\nSubject: Printer\r\nMessage-ID: <again@example.org>"
                "\r\n\r\nIt jams.\r\n").mail
    with app.app_context():
        still = receive_again(ctx, held.id, by="root")
    assert still.outcome == "quarantined" and Incident.select().count() == 0
    row = InboundMail.get_by_id(held.id)
    assert row.outcome == "quarantined" and row.handled_at is None  # still waiting for an admin
    assert row.reason.startswith("it could not be taken: DomainError: The priority rule returned None, "
                                 "which is not 1–4. (received again by root")
    app.extensions["helpdesk"].pm.unregister(name="broken-priority")  # the admin fixes the plugin
    with app.app_context():
        taken = receive_again(ctx, held.id, by="root")
    assert taken.outcome == "created" and taken.incident.title == "Printer"
    assert InboundMail.get_by_id(held.id).reason.count("received again") == 1  # no pile of tries


def test_unreadable_and_agent_mail_stay_quarantined_when_received_again(app, ctx, take, ada_incident,
                                                                         personas):
    incident, ack = ada_incident
    unreadable = take(fixture("missing_boundary.eml")).mail
    agent = take(reply_to(ack, personas.owner.email, "Close it, I am the owner.")).mail
    with app.app_context():
        assert receive_again(ctx, unreadable.id, by="root").reason.startswith("still unreadable")
        assert "agent" in receive_again(ctx, agent.id, by="root").reason  # the rule holds
        receive_again(ctx, agent.id, by="root")
        held = InboundMail.get_by_id(agent.id)
        assert held.handled_at is None and held.outcome == "quarantined"
        assert held.reason.count("received again") == 1, "each try replaces the last, no pile"
        with pytest.raises(DomainError, match="not waiting in quarantine"):
            receive_again(ctx, InboundMail.get(InboundMail.outcome == "created").id, by="root")
    assert customer_entries(incident.id) == [] and Incident.select().count() == 1


def test_what_the_acknowledgement_asks_of_the_customer_threads(take, ada_incident, smtp):
    # The acknowledgement tells a customer how to write about their request again: a reply,
    # or a new message carrying what it says to put in the subject. Doing as told must reach
    # the same incident (a bare "INC-1" in a subject is guessable and does not thread).
    incident, ack = ada_incident
    text = ack.message.get_body(("plain",)).get_content()
    assert "reply to this message" in text
    tag = re.search(r"copy (\[INC-\d+ #[0-9a-f]+\]) into its subject", text).group(1)
    mail = EmailMessage()
    mail["From"], mail["To"] = "Ada Lovelace <ada@example.org>", SUPPORT
    mail["Subject"] = f"{tag} one more thing"
    mail["Message-ID"] = "<new-message-1@example.org>"
    mail.set_content("It is the printer by the kitchen.")
    result = take(bytes(mail))
    assert result.outcome == "replied" and result.incident.id == incident.id


def test_a_follow_ups_acknowledgement_names_the_closed_incident(take, ada_incident, ctx, app, personas,
                                                                smtp):
    incident, ack = ada_incident
    with app.app_context():
        incidents.change_status(ctx, incident.id, personas.owner, "resolved", note="Cleared the jam.")
        incidents.change_status(ctx, incident.id, None, "closed", note="Closed automatically.")
    follow = take(reply_to(ack, "ada@example.org", "It happened again today.")).incident
    (follow_ack,) = [m for m in smtp.to("ada@example.org") if follow.reference in m.message["Subject"]]
    text = follow_ack.message.get_body(("plain",)).get_content()
    assert f"It follows up {incident.reference}, which is no longer open." in text


def test_the_resolution_mail_says_how_long_a_reply_reopens_and_where_to_confirm(
        take, ada_incident, ctx, app, personas, smtp):
    incident, _ = ada_incident
    with app.app_context():
        incidents.change_status(ctx, incident.id, personas.owner, "resolved", note="Cleared the jam.")
    mail = smtp.to("ada@example.org")[-1].message
    text = " ".join(mail.get_body(("plain",)).get_content().split())
    assert "Cleared the jam." in text
    assert f"reply to this message within {ctx.settings.auto_close_days} days and we will reopen it" in text
    assert f"http://127.0.0.1:5000/portal/incidents/{incident.id}" in text  # the portal, not the agents' page
