"""An agent's files on a reply or a note: checked like a customer's, kept with the timeline
entry in one transaction, shown under it, and — for a public reply only — sent to the
requester as MIME parts of the threaded e-mail (read from storage when the mail is sent).

Mail goes through the real e-mail channel to an aiosmtpd server on loopback; the customer
signs in to the real portal; an agent posts the real reply form (multipart, with CSRF).
"""

from __future__ import annotations

import io
import re
from email.message import EmailMessage
from typing import Any

import pytest
from test_portal import Customer

from helpdesk import attachments, hookimpl, incidents, macros
from helpdesk.mail.receive import receive
from helpdesk.mail_headers import serialise
from helpdesk.models import Attachment, Contact, Delivery, Incident, TimelineEntry
from helpdesk.notify import outbox
from helpdesk.records import Message, MessageFile
from helpdesk.testing import SmtpServer
from helpdesk_plugins import email_channel

SUPPORT = "help@example.com"
FROM = f"Helpdesk <{SUPPORT}>"
ADA = "ada@example.org"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 20  # binary, 5 KiB
NOTES = "Zeilen mit Umlauten: äöü\r\nand a CRLF line\n".encode()
NON_ASCII = "Überweisung März.txt"


@pytest.fixture
def smtp(smtp_server: SmtpServer) -> SmtpServer:
    smtp_server.from_address = FROM
    return smtp_server


@pytest.fixture
def helpdesk_settings(smtp: SmtpServer) -> dict[str, Any]:
    return {"support_address": SUPPORT, "plugins": {"email": smtp.settings},
            "attachment_max_bytes": 64 * 1024, "mail_attachments_max_bytes": 48 * 1024}


@pytest.fixture
def helpdesk_bundled_plugins() -> list[str]:
    return ["email"]


@pytest.fixture
def ada(contact_factory: Any) -> Contact:
    return contact_factory(name="Ada Lovelace", email=ADA)


@pytest.fixture
def incident(app: Any, ctx: Any, personas: Any, ada: Contact) -> Incident:
    with app.app_context():
        return incidents.log_incident(ctx, title="Invoice run failed", actor=personas.owner,
                                      service_desk=personas.service_desk, requester=ada)


def post_reply(client: Any, incident_id: int, body: str, files: list[tuple[str, bytes]], *,
               public: bool, htmx: bool = False, url: str | None = None, **fields: str) -> Any:
    data = {"body": body, "visibility": "public" if public else "note", **fields,
            "files": [(io.BytesIO(content), name) for name, content in files]}
    headers = {"HX-Request": "true", "HX-Target": "incident-body"} if htmx else {}
    return client.post(url or f"/incidents/{incident_id}/comments", data=data,
                       content_type="multipart/form-data", headers=headers)


def files_of(message: Any) -> list[tuple[str, str, bytes]]:
    return [(part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
            for part in message.iter_attachments()]


def customer_mails(smtp: SmtpServer) -> list[Any]:
    return [received.message for received in smtp.to(ADA)]


def test_a_reply_with_two_files_reaches_the_customer_threaded_and_byte_identical(
        app: Any, ctx: Any, personas: Any, incident: Incident, smtp: SmtpServer, login: Any) -> None:
    (acknowledgement,) = customer_mails(smtp)
    # Ada answers the acknowledgement from her mail client (a mixed-case Message-ID, as Gmail's).
    answer = EmailMessage()
    answer["From"], answer["To"] = f"Ada Lovelace <{ADA}>", SUPPORT
    answer["Subject"] = "Re: " + acknowledgement["Subject"]
    answer["Message-ID"] = "<CAF=Ada+Reply.7Qx@Mail.Example.org>"
    answer["In-Reply-To"] = acknowledgement["Message-ID"]
    answer["References"] = f"{acknowledgement['References']} {acknowledgement['Message-ID']}"
    answer.set_content("The invoice run still fails; what do you need?")
    with app.app_context():
        assert receive(ctx, bytes(answer)).outcome == "replied"

    owner = login(personas.owner)
    sent = post_reply(owner, incident.id, "Here are the report and the transfer list.",
                      [("report.pdf", PDF), (NON_ASCII, NOTES)], public=True)
    assert sent.status_code == 303
    page = owner.get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert "Reply sent to the customer with 2 files." in page
    reply = TimelineEntry.get((TimelineEntry.incident == incident.id) & (TimelineEntry.kind == "reply"))
    stored = list(Attachment.select().where(Attachment.entry == reply.id).order_by(Attachment.id))
    assert [(a.filename, a.agent_id, a.contact_id) for a in stored] == [
        ("report.pdf", personas.owner.id, None), (NON_ASCII, personas.owner.id, None)]
    entry_html = re.search(rf'id="entry-{reply.id}".*?</ul>', page, re.S).group(0)  # its file list
    assert "report.pdf" in entry_html and "Überweisung März.txt" in entry_html

    mails = customer_mails(smtp)
    assert len(mails) == 2, "the acknowledgement, then the reply"
    mail = mails[-1]
    assert mail.get_content_type() == "multipart/mixed"
    assert "report and the transfer list" in mail.get_body(("plain",)).get_content()
    assert files_of(mail) == [("report.pdf", "application/pdf", PDF), (NON_ASCII, "text/plain", NOTES)]
    raw = smtp.to(ADA)[-1].raw
    assert b"filename*=utf-8''%C3%9Cberweisung%20M%C3%A4rz.txt" in raw  # RFC 2231
    # Threaded: it answers Ada's message exactly as she wrote its id, after our acknowledgement.
    assert mail["In-Reply-To"] == "<CAF=Ada+Reply.7Qx@Mail.Example.org>"
    references = mail["References"].split()
    assert references == [acknowledgement["References"].split()[0], acknowledgement["Message-ID"],
                          "<CAF=Ada+Reply.7Qx@Mail.Example.org>"]
    assert f"[INC-{incident.id} #" in mail["Subject"]  # the signed token still threads replies

    # The customer sees the reply's files in the portal and gets the same bytes.
    customer = Customer(app, smtp, ADA).sign_in()
    portal = customer.get(f"/portal/incidents/{incident.id}").get_data(as_text=True)
    for attachment, content in zip(stored, (PDF, NOTES), strict=True):
        assert f"/portal/attachments/{attachment.id}" in portal
        download = customer.get(f"/portal/attachments/{attachment.id}")
        assert download.status_code == 200 and download.data == content
        download.close()


def test_an_internal_note_with_a_file_never_reaches_the_customer(
        app: Any, ctx: Any, personas: Any, incident: Incident, smtp: SmtpServer, login: Any) -> None:
    owner = login(personas.owner)
    answer = post_reply(owner, incident.id, "The vendor's stack trace, for us only.",
                        [("trace.txt", b"secret internals")], public=False, htmx=True)
    assert answer.status_code == 200
    assert "Internal note added with 1 file." in answer.get_data(as_text=True)
    (secret,) = Attachment.select()
    assert secret.entry.kind == "note"
    assert len(customer_mails(smtp)) == 1, "only the acknowledgement: a note is not mailed"

    # A later public reply does not carry the note's file either.
    post_reply(owner, incident.id, "We are on it.", [], public=True)
    later = customer_mails(smtp)[-1]
    assert "We are on it." in later.get_body(("plain",)).get_content()
    assert files_of(later) == [] and b"secret internals" not in bytes(later)
    assert all(b"trace.txt" not in bytes(m) for m in customer_mails(smtp))

    customer = Customer(app, smtp, ADA).sign_in()
    assert customer.get(f"/portal/attachments/{secret.id}").status_code == 404
    portal = customer.get(f"/portal/incidents/{incident.id}").get_data(as_text=True)
    assert "trace.txt" not in portal and "for us only" not in portal
    # The desk still has it.
    download = owner.get(f"/attachments/{secret.id}")
    assert download.status_code == 200 and download.data == b"secret internals"
    download.close()


class Scanner:
    """A virus scanner as a plugin would wire one in."""

    def __init__(self, fail: bool = False) -> None:
        self.fail, self.seen = fail, []

    @hookimpl
    def helpdesk_attachment_verdict(self, filename: str, content_type: str, data: bytes, ctx: Any) -> Any:
        self.seen.append(filename)
        if self.fail:
            raise ConnectionError("clamd is not answering")
        return "it carries a test signature" if b"EICAR" in data else None


def _nothing_written(incident: Incident, deliveries_before: int) -> None:
    assert TimelineEntry.select().where((TimelineEntry.incident == incident.id)
                                        & TimelineEntry.kind.in_(["reply", "note"])).count() == 0
    assert Attachment.select().count() == 0
    assert Delivery.select().count() == deliveries_before


@pytest.mark.parametrize("htmx", [False, True], ids=["plain form", "htmx"])
def test_a_file_over_the_limit_writes_nothing_and_keeps_the_text(
        personas: Any, incident: Incident, login: Any, htmx: bool) -> None:
    before = Delivery.select().count()
    answer = post_reply(login(personas.owner), incident.id, "Dear Ada, <see> the dump attached.",
                        [("small.txt", b"fine"), ("dump.bin", b"x" * (65 * 1024))], public=True, htmx=htmx)
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert "dump.bin is 65 KB (66,560 bytes); the limit is 64 KB (65,536 bytes) per file." in page
    assert "choose the files again" in page
    textarea = re.search(r'<textarea id="reply-body"[^>]*>(.*?)</textarea>', page, re.S).group(1)
    assert textarea == "Dear Ada, &lt;see&gt; the dump attached."  # kept, escaped
    assert re.search(r'id="vis-public" name="visibility" value="public" checked', page)
    _nothing_written(incident, before)


def test_a_file_a_scanner_refuses_writes_nothing_and_keeps_the_text(
        personas: Any, incident: Incident, login: Any, register_plugin: Any) -> None:
    scanner = register_plugin(Scanner())
    before = Delivery.select().count()
    answer = post_reply(login(personas.owner), incident.id, "Internal: the sample.",
                        [("clean.txt", b"ok"), ("sample.doc", b"EICAR here")], public=False)
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert "sample.doc was not accepted: it carries a test signature" in page
    assert "Internal: the sample." in page
    assert scanner.seen == ["clean.txt", "sample.doc"]
    _nothing_written(incident, before)


def test_a_scanner_that_fails_refuses_the_file(personas: Any, incident: Incident, login: Any,
                                               register_plugin: Any) -> None:
    register_plugin(Scanner(fail=True))
    before = Delivery.select().count()
    answer = post_reply(login(personas.owner), incident.id, "Here it is.", [("a.txt", b"words")],
                        public=True)
    assert answer.status_code == 422 and "could not be checked" in answer.get_data(as_text=True)
    _nothing_written(incident, before)


def test_files_are_read_when_the_mail_is_sent_and_a_missing_one_is_named(
        app: Any, ctx: Any, personas: Any, incident: Incident, smtp: SmtpServer, login: Any,
        frozen_clock: Any) -> None:
    smtp.replies = ["451 4.3.0 try again later"]  # the first attempt fails: the outbox retries
    post_reply(login(personas.owner), incident.id, "Two files for you.",
               [("kept.txt", b"still here"), ("lost.txt", b"gone before the retry")], public=True)
    assert len(customer_mails(smtp)) == 1, "only the acknowledgement so far"
    lost = Attachment.get(Attachment.filename == "lost.txt")
    attachments.path_of(ctx, lost).unlink()  # e.g. storage restored from an older backup

    frozen_clock.advance(hours=2)
    with app.app_context():
        outbox.sweep(ctx)
    mail = customer_mails(smtp)[-1]
    text = mail.get_body(("plain",)).get_content()
    assert "Two files for you." in text
    assert "Not attached, as it could not be read from our storage: lost.txt." in text
    assert files_of(mail) == [("kept.txt", "text/plain", b"still here")]
    delivery = Delivery.select().order_by(Delivery.id.desc()).where(Delivery.recipient == ADA).first()
    assert delivery.state == "sent"


def test_files_over_the_mail_cap_stay_in_the_portal(personas: Any, incident: Incident, smtp: SmtpServer,
                                                   login: Any) -> None:
    post_reply(login(personas.owner), incident.id, "The full logs.",
               [("a.log", b"a" * 30 * 1024), ("b.log", b"b" * 30 * 1024)], public=True)
    mail = customer_mails(smtp)[-1]
    assert files_of(mail) == []
    text = mail.get_body(("plain",)).get_content()
    assert "too large together to send by e-mail (more than 48 KB): a.log (30 KB), b.log (30 KB)" in text
    assert f"http://127.0.0.1:5000/portal/incidents/{incident.id}" in text


def test_the_macro_send_carries_the_files(app: Any, ctx: Any, personas: Any, incident: Incident,
                                          smtp: SmtpServer, login: Any) -> None:
    with app.app_context():
        macro = macros.save(ctx, personas.owner, None, name="Send the form", body="Please fill in the form.",
                            public=True, team=None, actions={})
    answer = post_reply(login(personas.owner), incident.id, "Please fill in the attached form.",
                        [("form.pdf", PDF)], public=True, url=f"/incidents/{incident.id}/macro",
                        macro=str(macro.id), macro_version=str(incident.version))
    assert answer.status_code == 303, answer.get_data(as_text=True)
    assert files_of(customer_mails(smtp)[-1]) == [("form.pdf", "application/pdf", PDF)]


def test_file_names_cannot_inject_mail_headers() -> None:
    hostile = MessageFile('x"\r\nBcc: victim@example.net\r\n\r\n=?utf-8?q?=0D=0ACc:_a@b.c?=.txt',
                          "text/plain\r\nX-Evil: 1", b"data")
    mail = email_channel.build(Message(recipient=ADA, subject="s", text="t", incident_reference="INC-1",
                                       idempotency_key="INC-1:x", attachments=(hostile,)), FROM)
    raw = serialise(mail)
    assert not re.search(rb"(?im)^(bcc|cc|x-evil):", raw)
    (part,) = list(mail.iter_attachments())
    assert part.get_content_type() == "application/octet-stream"
    assert "\n" not in part.get_filename() and "\r" not in part.get_filename()
