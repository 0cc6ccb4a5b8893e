"""Attachments from customers (portal uploads and e-mail): stored by content hash in the
instance folder, names sanitised, limits with clear errors, and every download an attachment
with ``nosniff`` and ``CSP: sandbox`` — HTML and SVG never rendered inline.
"""

from __future__ import annotations

import io
import re
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from test_portal import Customer

from helpdesk import hookimpl, incidents
from helpdesk.attachments import sanitise_name
from helpdesk.mail.receive import receive
from helpdesk.models import Attachment, Incident

HTML = b"<html><script>alert(document.cookie)</script></html>"
SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
       b"<foreignObject><b>x</b></foreignObject></svg>")


@pytest.fixture
def smtp(smtp_server):
    smtp_server.from_address = "Helpdesk <help@example.com>"
    return smtp_server


@pytest.fixture
def helpdesk_settings(smtp) -> dict[str, Any]:
    return {"support_address": "help@example.com", "plugins": {"email": smtp.settings},
            "attachment_max_bytes": 64 * 1024}


@pytest.fixture
def helpdesk_bundled_plugins() -> list[str]:
    return ["email"]


@pytest.fixture
def ada(app, smtp, contact_factory) -> Customer:
    contact_factory(name="Ada Lovelace", email="ada@example.org")
    return Customer(app, smtp, "ada@example.org").sign_in()


def upload(customer: Customer, url: str, files: list[tuple[str, bytes]], **fields: str) -> Any:
    data = {"csrf_token": customer.csrf(), **fields,
            "files": [(io.BytesIO(content), name) for name, content in files]}
    return customer.http.post(url, data=data, content_type="multipart/form-data")


@pytest.mark.parametrize("given, expected", [
    ('"><svg onload=1>.png', "___svg onload=1_.png"),
    ("../../../../etc/passwd", "passwd"),
    ("..\\..\\windows\\win.ini", "win.ini"),
    ("report\x00.pdf", "report.pdf"),
    ("invoice\u202egpj.exe", "invoicegpj.exe"),  # a bidi override would show "exe.jpg"
    (".htaccess", "htaccess"),
    ("", "attachment"),
])
def test_names_are_sanitised(given, expected):
    assert sanitise_name(given) == expected


LONG_NAME = "Quarterly-report-" + "-".join(["north", "south", "east", "west"] * 40) + "-final-v2.pdf"


@pytest.mark.parametrize("given, start, end", [
    (LONG_NAME, "Quarterly-report-north-", "-west-final-v2.pdf"),
    ("../reports/" + LONG_NAME.replace("north", "nor\x00th"), "Quarterly-report-north-", "-final-v2.pdf"),
    ("Minutes. " + "words " * 40 + "the end", "Minutes. words", "the end"),  # no extension after the dot
])
def test_a_long_name_is_cut_in_the_middle_and_keeps_its_extension(given, start, end):
    name = sanitise_name(given)
    assert len(name) == 120
    assert name.startswith(start) and name.endswith(end) and "\u2026" in name
    assert "/" not in name and "\x00" not in name


def test_a_long_name_from_the_portal_keeps_its_type(ada):
    answer = upload(ada, "/portal/new", [(LONG_NAME, b"%PDF-1.4")], title="Report", urgency="low")
    assert answer.status_code == 303
    (stored,) = Attachment.select()
    assert stored.filename.startswith("Quarterly-report-") and stored.filename.endswith("-final-v2.pdf")
    assert len(stored.filename) == 120 and stored.content_type == "application/pdf"


@pytest.mark.parametrize("name, content, served_as", [
    ("x.html", HTML, "application/octet-stream"),
    ("x.svg", SVG, "application/octet-stream"),
    ("x.jpg", HTML, "image/jpeg"),  # HTML in a .jpg: an image type, but nosniff and attachment
    ("x.txt", HTML, "text/plain"),
    ("x.phtml", b"<?php system($_GET['c']); ?>", "application/octet-stream"),
])
def test_uploads_are_served_as_downloads_never_inline(app, ada, name, content, served_as):
    answer = upload(ada, "/portal/new", [(name, content)], title="Look at this", urgency="low")
    assert answer.status_code == 303, answer.get_data(as_text=True)
    (stored,) = Attachment.select()
    assert stored.content_type == served_as  # derived from the name here, not from the upload
    download = ada.get(f"/portal/attachments/{stored.id}")
    assert download.status_code == 200 and download.data == content
    assert download.mimetype == served_as
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.headers["Content-Security-Policy"] == "sandbox"
    download.close()
    # Kept under its content hash in the instance folder, not under the name it was sent with.
    path = Path(app.extensions["helpdesk"].instance_path) / "attachments" / stored.sha256[:2] / stored.sha256
    assert path.read_bytes() == content
    assert not list(Path(app.extensions["helpdesk"].instance_path).rglob(name))


def test_download_names_use_rfc_5987_for_non_ascii(ada, login, personas):
    upload(ada, "/portal/new", [("Bericht über Drucker.pdf", b"%PDF-1.4")], title="Report", urgency="low")
    (stored,) = Attachment.select()
    download = login(personas.owner).get(f"/attachments/{stored.id}")
    disposition = download.headers["Content-Disposition"]
    download.close()
    assert "filename*=UTF-8''Bericht%20%C3%BCber%20Drucker.pdf" in disposition


def test_limits_give_clear_errors_and_keep_nothing(ada):
    too_big = upload(ada, "/portal/new", [("dump.bin", b"x" * (65 * 1024))], title="Dump", urgency="low")
    assert too_big.status_code == 422
    assert "the limit is 64 KB (65,536 bytes) per file" in too_big.get_data(as_text=True)
    too_many = upload(ada, "/portal/new", [(f"f{i}.txt", b"x") for i in range(11)], title="Many",
                      urgency="low")
    assert too_many.status_code == 422 and "At most 10 files" in too_many.get_data(as_text=True)
    assert Incident.select().count() == 0 and Attachment.select().count() == 0


def test_the_same_file_twice_is_stored_once(app, ada):
    upload(ada, "/portal/new", [("a.txt", b"same bytes")], title="One", urgency="low")
    upload(ada, "/portal/new", [("b.txt", b"same bytes")], title="Two", urgency="low")
    assert Attachment.select().count() == 2
    files = [p for p in (Path(app.extensions["helpdesk"].instance_path) / "attachments").rglob("*")
             if p.is_file()]
    assert len(files) == 1


def test_customers_get_404_for_files_that_are_not_theirs(app, ctx, ada, smtp, contact_factory, personas,
                                                         login):
    upload(ada, "/portal/new", [("mine.txt", b"mine")], title="Mine", urgency="low")
    bob = contact_factory(name="Bob", email="bob@example.org")
    with app.app_context():
        theirs = incidents.log_incident(ctx, title="Bob's", actor=personas.owner, requester=bob)
        note = incidents.add_comment(ctx, theirs.id, personas.owner, "internal", public=False)
        from helpdesk import attachments

        other = attachments.store(ctx, theirs.id, None, "bob.txt", b"bob's file", contact=bob)
        mine = Incident.get(Incident.title == "Mine")
        on_note = incidents.add_comment(ctx, mine.id, personas.owner, "internal", public=False)
        hidden = attachments.store(ctx, mine.id, on_note.id, "internal.txt", b"agents only",
                                   agent=personas.owner)
    del note
    assert ada.get(f"/portal/attachments/{other.id}").status_code == 404
    assert ada.get(f"/portal/attachments/{hidden.id}").status_code == 404
    assert ada.get("/portal/attachments/999999").status_code == 404
    shown = ada.get(f"/portal/incidents/{mine.id}").get_data(as_text=True)
    assert "mine.txt" in shown and "internal.txt" not in shown
    agents = login(personas.colleague).get(f"/attachments/{hidden.id}")
    assert agents.status_code == 200 and agents.data == b"agents only"
    agents.close()


def test_a_portal_reply_carries_files_the_agent_sees_on_the_timeline(app, ctx, ada, login, personas):
    upload(ada, "/portal/new", [], title="Printer", urgency="medium")
    incident = Incident.get()
    answer = upload(ada, f"/portal/incidents/{incident.id}/reply", [("jam.png", b"\x89PNG fake")],
                    body="Photo attached.")
    assert answer.status_code == 303
    page = login(personas.owner).get(f"/incidents/{incident.id}").get_data(as_text=True)
    link = re.search(r'<a href="(/attachments/\d+)" download>jam.png</a>', page)
    assert link and "Photo attached." in page


def test_mail_attachments_are_kept_and_oversized_ones_noted(app, ctx, login, personas):
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "ada@example.org", "help@example.com", "Screenshots"
    mail["Message-ID"] = "<shots-1@example.org>"
    mail.set_content("Two screenshots.")
    mail.add_attachment(b"\x89PNG small", maintype="image", subtype="png", filename="small.png")
    mail.add_attachment(b"x" * (100 * 1024), maintype="application", subtype="octet-stream",
                        filename="huge.bin")
    with app.app_context():
        result = receive(ctx, bytes(mail))
    assert result.outcome == "created"
    (kept,) = Attachment.select()
    assert kept.filename == "small.png" and kept.incident_id == result.incident.id
    assert "huge.bin (102400 bytes)" in result.incident.description
    page = login(personas.owner).get(f"/incidents/{result.incident.id}").get_data(as_text=True)
    assert "small.png" in page


def test_a_mail_attachment_with_a_long_name_keeps_its_extension_and_type(app, ctx, login, personas):
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "ada@example.org", "help@example.com", "Report"
    mail["Message-ID"] = "<long-name-1@example.org>"
    mail.set_content("The report is attached.")
    mail.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename=LONG_NAME)
    assert len(LONG_NAME) > 255  # longer than anything mail intake keeps of a name
    with app.app_context():
        result = receive(ctx, bytes(mail))
    assert result.outcome == "created"
    (kept,) = Attachment.select()
    assert kept.filename.startswith("Quarterly-report-") and kept.filename.endswith("-final-v2.pdf")
    assert kept.content_type == "application/pdf"  # the type comes from the name: it needs the extension
    download = login(personas.owner).get(f"/attachments/{kept.id}")
    assert download.mimetype == "application/pdf"
    assert "final-v2.pdf" in download.headers["Content-Disposition"]
    download.close()


EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


class Scanner:
    """A virus scanner as a plugin would wire one in: refuse what carries a signature."""

    def __init__(self, fail: bool = False) -> None:
        self.fail, self.seen = fail, []

    @hookimpl
    def helpdesk_attachment_verdict(self, filename: str, content_type: str, data: bytes, ctx: Any) -> Any:
        self.seen.append((filename, content_type))
        if self.fail:
            raise ConnectionError("clamd is not answering")
        return "it contains the EICAR test signature" if EICAR in data else None


def test_a_scanner_refuses_a_portal_upload_with_its_reason_and_nothing_is_kept(app, ada, register_plugin):
    scanner = register_plugin(Scanner())
    answer = upload(ada, "/portal/new", [("clean.png", b"\x89PNG ok"), ("invoice.pdf", EICAR)],
                    title="Two files", urgency="low")
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert "invoice.pdf was not accepted: it contains the EICAR test signature" in page
    assert (Incident.select().count(), Attachment.select().count()) == (0, 0)
    assert ("invoice.pdf", "application/pdf") in scanner.seen


def test_mail_keeps_the_message_and_notes_the_refused_file(app, ctx, register_plugin):
    register_plugin(Scanner())
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "ada@example.org", "help@example.com", "Invoice"
    mail["Message-ID"] = "<invoice-1@example.org>"
    mail.set_content("Please see the invoice.")
    mail.add_attachment(EICAR, maintype="application", subtype="pdf", filename="invoice.pdf")
    mail.add_attachment(b"\x89PNG fine", maintype="image", subtype="png", filename="logo.png")
    with app.app_context():
        result = receive(ctx, bytes(mail))
    assert result.outcome == "created"
    assert [a.filename for a in Attachment.select()] == ["logo.png"]
    assert "invoice.pdf: it contains the EICAR test signature" in result.incident.description


def test_a_failing_scanner_keeps_no_unscanned_file(app, ada, register_plugin):
    register_plugin(Scanner(fail=True))
    answer = upload(ada, "/portal/new", [("notes.txt", b"plain words")], title="A file", urgency="low")
    assert answer.status_code == 422
    assert "could not be checked" in answer.get_data(as_text=True)
    assert Attachment.select().count() == 0


def test_a_failing_scanner_is_shown_to_the_admin(app, ada, register_plugin, login, personas):
    """Every file is refused while the scanner is down: the admin must learn why, not only the log."""
    register_plugin(Scanner(fail=True))
    upload(ada, "/portal/new", [("notes.txt", b"plain words")], title="A file", urgency="low")
    page = login(personas.admin).get("/admin/plugins").get_data(as_text=True)
    assert "helpdesk_attachment_verdict" in page and "clamd is not answering" in page


def test_the_incident_page_costs_the_same_queries_however_long_the_conversation(
        app, ctx, ada, login, personas, count_queries):
    """Each message's files, its author (agent or customer) and the incident's people are
    read for the whole page at once: a long e-mail thread is not one query per message."""
    upload(ada, "/portal/new", [("first.txt", b"with the incident")], title="Printer", urgency="medium")
    incident = Incident.get()
    agent = login(personas.owner)

    def converse(rounds: int, start: int) -> None:
        for n in range(start, start + rounds):
            answer = upload(ada, f"/portal/incidents/{incident.id}/reply",
                            [(f"photo{n}.png", b"\x89PNG %d" % n)], body=f"Customer message {n}.")
            assert answer.status_code == 303
            with app.app_context():
                incidents.add_comment(ctx, incident.id, personas.owner, f"Agent answer {n}.", public=True)

    def measure() -> tuple[int, str]:
        count_queries.queries.clear()
        page = agent.get(f"/incidents/{incident.id}").get_data(as_text=True)
        return len(count_queries.queries), page

    converse(1, 0)
    agent.get(f"/incidents/{incident.id}")  # anything done once per client
    short, _page = measure()
    converse(6, 1)
    long, page = measure()
    assert long == short, "\n".join(count_queries.queries)
    assert page.count("Ada Lovelace (customer)") == 7
    for n in range(7):  # each file under its own message, before the next one
        message = page.index(f"Customer message {n}.")
        assert message < page.index(f'download>photo{n}.png</a>') < page.index(f"Agent answer {n}.")
    assert page.index('download>first.txt</a>') < page.index("Customer message 0.")


def test_the_portal_page_costs_the_same_queries_however_long_the_conversation(
        app, ctx, ada, personas, count_queries):
    upload(ada, "/portal/new", [("first.txt", b"with the incident")], title="Printer", urgency="medium")
    incident = Incident.get()

    def converse(rounds: int, start: int) -> None:
        for n in range(start, start + rounds):
            upload(ada, f"/portal/incidents/{incident.id}/reply", [(f"photo{n}.png", b"PNG %d" % n)],
                   body=f"Customer message {n}.")
            with app.app_context():
                incidents.add_comment(ctx, incident.id, personas.owner, f"Agent answer {n}.", public=True,
                                      files=[(f"answer{n}.txt", b"answer %d" % n)])
                incidents.add_comment(ctx, incident.id, personas.owner, f"Note {n}.", public=False,
                                      files=[(f"secret{n}.txt", b"internal %d" % n)])

    def measure() -> tuple[int, str]:
        count_queries.queries.clear()
        page = ada.get(f"/portal/incidents/{incident.id}").get_data(as_text=True)
        return len(count_queries.queries), page

    converse(1, 0)
    ada.get(f"/portal/incidents/{incident.id}")
    short, _page = measure()
    converse(5, 1)
    long, page = measure()
    assert long == short, "\n".join(count_queries.queries)
    assert "first.txt" in page and "secret" not in page and "Note " not in page
    for n in range(6):
        assert (page.index(f"Customer message {n}.") < page.index(f"photo{n}.png")
                < page.index(f"Agent answer {n}.") < page.index(f"answer{n}.txt"))
