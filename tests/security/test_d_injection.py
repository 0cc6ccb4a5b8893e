"""D. Injection: headers of outbound mail (D4, and the encoded-word class behind it).

Mail goes through the real e-mail channel to a real SMTP server (aiosmtpd) on loopback; the
received bytes must carry exactly the headers a harmless title gets, each once, and the
envelope only the requester — whatever the Python patch level (the check that the written
message holds only the headers set is the project's own, see ``helpdesk.mail_headers``).
"""

from __future__ import annotations

import base64
import re
from email.message import EmailMessage
from typing import Any

import pytest
from flask import Flask

from helpdesk import mail_headers
from helpdesk.models import Contact, Delivery, Incident
from helpdesk.records import DeliveryError, Message
from helpdesk_plugins import email_channel

REQUESTER = "ada@example.org"
EVIL = "victim@evil.example"
INJECTED = {"bcc", "reply-to", "cc", "x-injected"}


def q_word(text: str) -> str:
    """An RFC 2047 Q-encoded word for ``text`` (every byte hex-escaped)."""
    return "=?utf-8?q?" + "".join(f"={b:02X}" for b in text.encode()) + "?="


def b_word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


HOSTILE_TITLES = {
    "q-encoded CRLF": "Printer " + q_word(f"x\r\nBcc: {EVIL}\r\nReply-To: {EVIL}"),
    "b-encoded CRLF": f"VPN {b_word(f'down{chr(13)}{chr(10)}Bcc: {EVIL}')} again",
    "lower-case q with underscores": f"=?UTF-8?Q?a=0d=0aBcc:_{EVIL}?= tail",
    "CR and LF in adjacent words": f"{q_word(chr(13))} {q_word(f'{chr(10)}Bcc: {EVIL}')}",
    "an encoded word inside an encoded word": q_word(q_word(f"x\r\nBcc: {EVIL}")),
    "bare LF in a word": f"{q_word(f'{chr(10)}Cc: {EVIL}')}",
    "NUL and unicode line separators": f"a\x00b {q_word(f'{chr(0)}X-Injected: 1')} c\u2028Bcc: {EVIL}",
    "raw CRLF": f"Printer jam\r\nBcc: {EVIL}\r\nX-Injected: yes",
    "very long, all encoded words": " ".join([q_word("é\r\nBcc: " + EVIL)] * 4)[:200],
}


@pytest.fixture
def helpdesk_plugins() -> list[Any]:
    return [email_channel]


@pytest.fixture
def from_address() -> str:
    return "Helpdesk <help@example.com>"


@pytest.fixture
def helpdesk_settings(smtp: Any, from_address: str) -> dict[str, Any]:
    return {"plugins": {"email": {**smtp.settings, "from_address": from_address}}}


@pytest.fixture
def requester(helpdesk_app: Flask) -> Contact:
    with helpdesk_app.app_context():
        return Contact.create(name="Ada Lovelace", email=REQUESTER)


def send(app: Flask, **fields: Any) -> None:
    """Send one message through the real e-mail channel, as the outbox worker does."""
    values = {"recipient": REQUESTER, "subject": "[INC-7] Printer", "text": "Hello",
              "event": "requester_ack", "incident_reference": "INC-7", "idempotency_key": "d-7", **fields}
    with app.app_context():
        email_channel.send(app.extensions["helpdesk"], Message(**values))


def only_mail(smtp: Any) -> Any:
    (mail,) = smtp.received
    return mail


@pytest.fixture
def expected_headers(helpdesk_app: Flask, smtp: Any) -> list[str]:
    """The header names a harmless message gets (the control every hostile one is held to)."""
    send(helpdesk_app)
    names = only_mail(smtp).header_names()
    smtp.received.clear()
    assert {"subject", "from", "to", "message-id", "auto-submitted"} <= set(names)
    return names


def assert_clean(mail: Any, expected: list[str]) -> None:
    assert mail.envelope_to == [REQUESTER]
    assert sorted(mail.header_names()) == sorted(expected)
    assert not INJECTED & set(mail.header_names())
    assert all(not set(str(value)) & {"\r", "\n", "\x00"} for value in mail.message.values())
    assert [a.addr_spec for a in mail.message["To"].addresses] == [REQUESTER]
    assert [a.addr_spec for a in mail.message["From"].addresses] == ["help@example.com"]


@pytest.mark.parametrize("title", HOSTILE_TITLES.values(), ids=HOSTILE_TITLES.keys())
def test_d4_a_subject_cannot_add_headers_or_recipients(
        helpdesk_app: Flask, smtp: Any, expected_headers: list[str], title: str) -> None:
    send(helpdesk_app, subject=f"[INC-7] {title}", incident_reference=f"INC-7 {title}")
    mail = only_mail(smtp)
    assert_clean(mail, expected_headers)
    assert mail.message["Subject"].startswith("[INC-7] ")
    assert len(mail.message["Subject"]) <= mail_headers.SUBJECT_LIMIT
    for name in ("In-Reply-To", "References", "Message-ID"):  # one <token@domain> each
        assert re.fullmatch(r"<[A-Za-z0-9.-]+@example\.com>", str(mail.message[name])), name


@pytest.mark.parametrize("name", [
    f"Help{q_word(f'{chr(13)}{chr(10)}Bcc: {EVIL}')}desk",
    f"=?utf-8?b?{base64.b64encode(f'x{chr(10)}Reply-To: {EVIL}'.encode()).decode()}?=",
    "A" * 5000,
])
def test_d4_a_display_name_cannot_add_headers(
        helpdesk_app: Flask, smtp: Any, expected_headers: list[str], name: str) -> None:
    """The sender's display name (an admin setting today, a person's name tomorrow)."""
    settings = helpdesk_app.extensions["helpdesk"].settings
    settings.plugins["email"]["from_address"] = f"{name} <help@example.com>"
    send(helpdesk_app)
    mail = only_mail(smtp)
    assert_clean(mail, expected_headers)
    assert mail.message["From"].addresses[0].addr_spec == "help@example.com"
    assert len(mail.message["From"].addresses[0].display_name) <= mail_headers.NAME_LIMIT


@pytest.mark.parametrize("recipient", [
    f"{REQUESTER}\r\nBcc: {EVIL}", f"{REQUESTER}, {EVIL}", f"Ada <{REQUESTER}>, {EVIL}",
    f"{q_word(EVIL)}", f"ada{chr(0)}@example.org", f"Ada {q_word(f'<{EVIL}>')} <{REQUESTER}>"])
def test_d4_a_hostile_recipient_reaches_nobody_else(helpdesk_app: Flask, smtp: Any, recipient: str) -> None:
    """A requester's address with line breaks, lists or encoded words: refused as permanent,
    or sent to the one real address; never to the smuggled one."""
    try:
        send(helpdesk_app, recipient=recipient)
    except DeliveryError as refused:
        assert refused.permanent
        assert smtp.received == []
    else:
        mail = only_mail(smtp)
        assert mail.envelope_to == [REQUESTER]
        assert not INJECTED & set(mail.header_names())


def test_d4_the_requester_acknowledgement_of_a_hostile_title_end_to_end(
        helpdesk_app: Flask, smtp: Any, incident_factory: Any, requester: Contact) -> None:
    """Through the domain, the outbox and the worker: one acknowledgement, no extra header."""
    title = HOSTILE_TITLES["q-encoded CRLF"]
    incident = incident_factory(title=title, requester=requester, actor=None)
    mail = only_mail(smtp)
    assert mail.envelope_to == [REQUESTER]
    assert not INJECTED & set(mail.header_names())
    assert incident.reference in mail.message["Subject"]
    assert Delivery.get(Delivery.channel == "email").state == "sent"
    assert Incident.get_by_id(incident.id).title == title, "the stored title is the agent's text"


@pytest.mark.parametrize("name", [
    f'Ada "x\r\nBcc: {EVIL}"', f"Ada{q_word(chr(10) + 'Bcc: ' + EVIL)}", f"Ada\x00\u2028Cc: {EVIL}",
    f"Ada <{EVIL}>, Bob", "Ada " + "é" * 3000])
def test_d4_a_person_s_name_stays_a_display_name(name: str) -> None:
    """Names of people (requesters today in bodies, tomorrow in To/Reply-To of inbound mail)."""
    mail = EmailMessage()
    mail["To"] = mail_headers.mailbox(REQUESTER, name)
    mail["Reply-To"] = mail_headers.mailbox("help@example.com", name)
    mail["Subject"] = "x"
    mail.set_content("hi")
    raw = mail_headers.serialise(mail)
    head = raw.split(b"\r\n\r\n")[0].lower()
    assert head.count(b"\r\nbcc:") == head.count(b"\r\ncc:") == 0
    assert head.count(b"reply-to:") == 1 and head.startswith(b"to:")


def test_a_message_whose_headers_change_when_written_is_never_sent() -> None:
    """Whatever the interpreter does: a header that re-emits a line break (as unpatched
    Pythons do with decoded encoded words) is caught after writing, before sending."""
    mail = EmailMessage()
    mail["To"] = REQUESTER
    mail._headers.append(("Subject", f"x\r\nBcc: {EVIL}"))  # what a lenient library would keep
    mail.set_content("hi")
    with pytest.raises(mail_headers.UnsafeHeader):
        mail_headers.serialise(mail)


@pytest.mark.parametrize("value, shown", [
    (q_word("Café"), "Café"),
    (f"a {q_word(q_word('b'))} c", "a b c"),
    ("plain =?not a word", "plain = ?not a word"),
    ("tab\tand\x0bvertical\x1cfile", "tab and vertical file"),
    ("x" * 300, "x" * 199 + "…"),
])
def test_header_text_keeps_the_meaning_on_one_line(value: str, shown: str) -> None:
    assert mail_headers.header_text(value) == shown


# -- D1 sort and paging parameters, D3 search text ----------------------------------------------


@pytest.mark.parametrize("query", [
    {"sort": "subject;DROP TABLE incident"}, {"sort": "__class__"}, {"sort": "title,(select 1)"},
    {"sort": "updated desc"}, {"after": "-1"}, {"after": "1e9"}, {"after": "٣"},
    {"after": "x" * 10000}, {"priority": "٣"}, {"priority": "9" * 40}, {"team": "1 OR 1=1"},
    {"status": "open' OR '1'='1"}, {"type": "__class__"},
])
def test_d1_hostile_sort_filter_and_page_parameters_are_a_clear_400(
        helpdesk_app: Flask, personas: Any, incident_factory: Any, query: dict[str, str]) -> None:
    from helpdesk.testing import AgentClient

    incident_factory(title="Printer jam")
    client = AgentClient(helpdesk_app, personas.owner)
    response = client.get("/queues/open", query_string=query)
    assert response.status_code == 400
    assert Incident.select().count() == 1
    assert client.get("/queues/open").status_code == 200, "the table and the session are intact"


FORM_NUMBERS = {  # (path, field) of a number on a form; the other fields as the page sends them
    "macro version": ("/incidents/{id}/macro", "version", {"macro": "1", "body": "Done"}),
    "policy version": ("/escalation/edit", "version", {"toml": "x"}),
    "policy levels": ("/escalation/edit", "level_count", {}),
    "policy steps": ("/escalation/edit", "l1_step_count", {"level_count": "1"}),
    "simulator horizon": ("/escalation/simulate", "horizon", {}),
}


@pytest.mark.parametrize("value", ["²", "①", "9" * 30], ids=["superscript", "circled", "huge"])
@pytest.mark.parametrize("form", FORM_NUMBERS, ids=FORM_NUMBERS)
def test_d1_a_number_field_holding_a_digit_python_cannot_read_is_refused_not_a_500(
        helpdesk_app: Flask, personas: Any, incident_factory: Any, form: str, value: str) -> None:
    """"²".isdigit() is true but int("²") raises, and a 30-digit hour overflows a timedelta: a
    team lead's or an agent's typo (or a forged form) was a server error."""
    from helpdesk.testing import AgentClient

    incident = incident_factory(title="Printer jam")
    path, field, others = FORM_NUMBERS[form]
    client = AgentClient(helpdesk_app, personas.lead)
    response = client.post(path.format(id=incident.id), {**others, field: value})
    assert 400 <= response.status_code < 500, response.status_code
    assert Incident.get_by_id(incident.id).version == incident.version


@pytest.mark.parametrize("moment", ["9999-12-31T23:59", "0001-01-01T00:00+14:00"],
                         ids=["year 9999", "year 1"])
@pytest.mark.parametrize("form", ["on-call until", "simulated logging time"])
def test_d1_a_time_at_the_edge_of_the_calendar_is_refused_not_a_500(
        helpdesk_app: Flask, personas: Any, form: str, moment: str) -> None:
    """Turned into UTC from the lead's zone, year 9999 or year 1 left the calendar (OverflowError)."""
    from helpdesk.models import Agent, TeamOnCall
    from helpdesk.testing import AgentClient

    Agent.update(time_zone="America/New_York").where(Agent.id == personas.db_lead.id).execute()
    client = AgentClient(helpdesk_app, personas.db_lead)
    if form == "on-call until":
        response = client.post(f"/teams/{personas.database_team.id}/on-call",
                               {"on_call": str(personas.assignee.id), "until": moment})
        assert TeamOnCall.select().count() == 0
    else:
        response = client.post("/escalation/simulate", {"horizon": "72", "logged_at": moment})
    assert response.status_code == 422
    assert "between the years 1970 and 9000" in response.get_data(as_text=True)


@pytest.mark.parametrize("text, matches", [
    ("%", ["100% down"]), ("_", ["under_score"]), ("\\", ["back\\slash"]), ('"unbalanced', []),
    ("NEAR(", []), ("*", []), ("x" * 100_000, []), ("' OR 1=1 --", []),
])
def test_d3_search_text_is_taken_literally(
        helpdesk_app: Flask, personas: Any, incident_factory: Any, text: str, matches: list[str]) -> None:
    from helpdesk.testing import AgentClient

    for title in ["100% down", "under_score", "back\\slash", "Printer jam"]:
        incident_factory(title=title)
    client = AgentClient(helpdesk_app, personas.owner)
    response = client.get("/queues/open", query_string={"q": text})
    assert response.status_code in {200, 400}
    page = response.get_data(as_text=True)
    shown = [title for title in ["100% down", "under_score", "back\\slash", "Printer jam"]
             if f">{title}<" in page.replace("&#34;", '"')]
    assert shown == (matches if response.status_code == 200 else [])


# -- D6 log lines ---------------------------------------------------------------------------------


@pytest.mark.parametrize("username", [
    "foo\n2026-01-01 INFO admin login ok", "foo\r\n2026-01-01 INFO admin login ok",
    "foo\u2028INFO admin login ok", "foo\x1b[2Jcleared", "foo\x00bar"])
def test_d6_a_user_name_cannot_forge_a_log_line(
        helpdesk_app: Flask, personas: Any, caplog: pytest.LogCaptureFixture, username: str) -> None:
    from helpdesk.testing import AgentClient

    with caplog.at_level("WARNING", logger="helpdesk.security"):
        response = AgentClient(helpdesk_app, None).post("/login", {"username": username,
                                                                     "password": "whatever it is"})
    assert response.status_code == 401
    (record,) = [r for r in caplog.records if r.name == "helpdesk.security"]
    line = record.getMessage()
    assert line.startswith("login failed user=foo")
    assert not any(not c.isprintable() for c in line), repr(line)


def test_d6_a_refused_page_is_logged_on_one_line(helpdesk_app: Flask, personas: Any,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    from helpdesk.testing import AgentClient

    with caplog.at_level("WARNING", logger="helpdesk.security"):
        john = AgentClient(helpdesk_app, personas.owner)
        assert john.get("/admin/catalogue/x%0aINFO%20admin%20ok").status_code == 403
        assert john.get("/admin/agents").status_code == 403
    messages = [r.getMessage() for r in caplog.records if r.name == "helpdesk.security"]
    assert "access refused user=john path=/admin/agents" in messages
    assert "access refused user=john path=/admin/catalogue/x\\nINFO admin ok" in messages
    assert all("\n" not in m for m in messages)
