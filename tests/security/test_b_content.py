"""B. Content handling: a hostile title is escaped everywhere it is shown (B1), dangerous
HTML in Markdown (descriptions, replies, notes) is stripped while formatting survives (B2's
class for the text agents write today), URL fields take http(s) only (B4's class: the chat
webhook on the profile). Attachments and inbound HTML mail (B5-B9) wait for those features.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import Flask

from helpdesk.models import AgentChannel, Contact
from helpdesk.testing import AgentClient, Personas
from helpdesk_plugins import chat_channel, email_channel

EVIL = "<img src=x onerror=alert(1)>\"'"
BAD_TAGS = {"script", "iframe", "svg", "form", "meta", "base", "style", "object", "embed", "details"}


class Markup(HTMLParser):
    """What a browser would build: tags, and attributes that run code or load elsewhere."""

    def __init__(self, html: str, user_content: bool = False) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.user_content = user_content  # the app's own pages use hx-* and a data: icon
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img" and dict(attrs).get("src") == "x":
            self.problems.append("the title's <img>")
        for name, value in attrs:
            if name.startswith(("on", "srcdoc")) or (self.user_content and name.startswith("hx-")):
                self.problems.append(f"<{tag} {name}>")
            if self.user_content and name in {"href", "src", "action", "formaction"} and value:
                scheme = re.sub(r"[\x00-\x20]", "", value).split(":", 1)[0].lower()
                if ":" in re.sub(r"[\x00-\x20]", "", value) and scheme not in {"http", "https", "mailto"}:
                    self.problems.append(f"<{tag} {name}={value!r}>")


def dangerous(html: str, allowed_tags: set[str] = frozenset(), user_content: bool = True) -> list[str]:
    parser = Markup(html, user_content)
    tags = set(re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", html))
    return parser.problems + sorted(t for t in tags & BAD_TAGS if t not in allowed_tags)


@pytest.fixture
def helpdesk_plugins() -> list[Any]:
    return [email_channel, chat_channel]


@pytest.fixture
def helpdesk_settings(smtp: Any) -> dict[str, Any]:
    return {"plugins": {"email": smtp.settings}}


def test_b1_a_hostile_title_is_escaped_wherever_it_is_shown(
        app: Flask, personas: Personas, incident_factory: Any, smtp: Any) -> None:
    with app.app_context():
        requester = Contact.create(name=EVIL, email="ada@example.org")
    incident = incident_factory(title=EVIL, requester=requester, description=EVIL)
    john = AgentClient(app, personas.owner)
    john.post(f"/incidents/{incident.id}/comments", {"body": EVIL, "visibility": "public"})
    john.post(f"/incidents/{incident.id}/assignee", {"version": incident.version,
                                                     "assigned_team": personas.database_team.id,
                                                     "assigned_agent": personas.assignee.id})
    pages = {
        "incident page": john.get(f"/incidents/{incident.id}"),
        "incident fragment": john.get(f"/incidents/{incident.id}",
                                      headers={"HX-Request": "true", "HX-Target": "incident-body"}),
        "queue": john.get("/queues/open"),
        "queue fragment": john.get("/queues/open", headers={"HX-Request": "true", "HX-Target": "queue-list"}),
        "search": john.get("/queues/open", query_string={"q": "onerror"}),
        "assignee's notices": AgentClient(app, personas.assignee).get("/notices/"),
        "admin deliveries": AgentClient(app, personas.admin).get("/admin/deliveries"),
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
        body = response.get_data(as_text=True)
        assert not Markup(body).problems, name
    page = pages["incident page"].get_data(as_text=True)
    title = re.search(r"<title>(.*?)</title>", page, re.S).group(1)
    assert "&lt;img src=x onerror=alert(1)&gt;" in title
    assert "&lt;img src=x onerror=alert(1)&gt;" in pages["queue"].get_data(as_text=True)
    mails = [m.message for m in smtp.received]
    assert mails, "the requester was mailed"
    for mail in mails:
        html = mail.get_body(("html",)).get_content()
        assert not dangerous(html)
        assert "&lt;img" in html


DANGEROUS = {
    "details ontoggle": ("<details open ontoggle=alert(1)>x</details>", "ontoggle"),
    "svg onload": ("<svg onload=alert(1)>", "<svg"),
    "javascript link with a tab": ('<a href="jav&#x09;ascript:alert(1)">x</a>', "ascript:"),
    "markdown javascript link": ("[click](javascript:alert(1))", "javascript:"),
    "data link": ("[click](data:text/html,<script>alert(1)</script>)", "data:text"),
    "form": ('<form action="https://evil.example"><button>go</button></form>', "<form"),
    "meta refresh": ('<meta http-equiv="refresh" content="0;url=https://evil.example">', "<meta"),
    "base href": ('<base href="https://evil.example/">', "<base"),
    "style import": ("<style>@import 'https://evil.example/x.css';</style>", "@import"),
    "iframe srcdoc": ('<iframe srcdoc="<script>alert(1)</script>"></iframe>', "<iframe"),
    "hx attributes": ('<div hx-get="/logout" hx-trigger="load">x</div>', "hx-get"),
    "script": ("<script>alert(1)</script>", "<script>alert"),
}


@pytest.mark.parametrize("markup, trace", DANGEROUS.values(), ids=DANGEROUS.keys())
def test_b2_markdown_keeps_formatting_and_drops_what_is_dangerous(
        app: Flask, personas: Personas, incident_factory: Any, markup: str, trace: str) -> None:
    text = f"**Steps** to reproduce:\n\n- open the [portal](https://portal.example.com)\n\n{markup}\n"
    incident = incident_factory(description=text)
    john = AgentClient(app, personas.owner)
    note = john.post(f"/incidents/{incident.id}/comments", {"body": text, "visibility": "note"})
    assert note.status_code == 303
    page = john.get(f"/incidents/{incident.id}").get_data(as_text=True)
    rendered = "".join(re.findall(r'<div class="markdown[^"]*" hx-disable>(.*?)</div>', page, re.S))
    assert rendered.count("<strong>Steps</strong>") == 2, "the description and the note"
    assert rendered.count('<a href="https://portal.example.com"') == 2
    assert dangerous(rendered) == []
    assert not re.search(rf"<[^>]*{re.escape(trace)}", rendered, re.IGNORECASE), "only as text, if at all"
    assert dangerous(page, allowed_tags={"form", "meta", "details", "script"}, user_content=False) == []


@pytest.mark.parametrize("url", ["javascript:alert(1)", "JaVaScRiPt:alert(1)", " data:text/html,<b>x</b>",
                                 "file:///etc/passwd", "gopher://127.0.0.1:6379/_x", "//evil.example/hook",
                                 "vbscript:msgbox(1)"])
def test_b4_a_saved_url_takes_http_or_https_only(app: Flask, personas: Personas, url: str) -> None:
    john = AgentClient(app, personas.owner)
    response = john.post("/profile", {"channel-inapp": "on", "channel-chat": "on", "channel-chat-url": url})
    assert response.status_code == 422
    assert not AgentChannel.select().where(AgentChannel.agent == personas.owner.id).exists()
    assert f'value="{url.strip()}"' not in john.get("/profile").get_data(as_text=True)
