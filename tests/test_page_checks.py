"""Every page, as the person who uses it, at a desktop (1366×900) and a phone (390×844) width:
axe-core finds no violations, nothing scrolls sideways, the console stays free of errors.

The pages come from ``app.url_map``: a page added later is walked without touching this file.
A GET route is *not a page* (and is skipped) only by the rule in :func:`not_a_page` — the JSON
API and other routes for token holders (``/metrics``), static files, downloads (a file
extension, an export, an attachment), the health probes and the htmx fragments named in
``FRAGMENTS``. Any other GET route must open as a full page
for its audience (``@access`` level), or the walk fails naming it. URL arguments are filled
from records ``walk_data`` makes (``values`` per argument, ``by_endpoint`` for names such as
a queue's); an ``<x_id>`` argument nobody lists is filled with the first row of the model
``X`` (or the one model whose name ends in ``X``) in ``helpdesk.models``, so a new record
page needs at most one row made in ``walk_data``.

Screenshots of the incident page and a queue (light and dark, both widths) are written to
``$HELPDESK_SCREENSHOT_DIR`` (default ``build/screenshots/``) for review: artefacts, not
pixel assertions.

axe-core 4.14.1 is vendored in tests/assets/ (MPL-2.0, licence beside it; from
``npm pack axe-core``) and injected from the app's own origin (the browser context answers
its address), so the app's CSP stays on and a CSP violation shows as a console error.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from browser_kit import log_in, require_chromium
from flask import Flask
from werkzeug.routing import Rule

from helpdesk import customer_links, incidents, models
from helpdesk.queues import QUEUES

require_chromium()

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "assets" / "axe.min.js"
AXE_URL = "/__walk__/axe.min.js"  # answered by the test's browser context, never by the app
WIDTHS = {"desktop": (1366, 900), "phone": (390, 844)}
NEXT_FRAME = "() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))"
SCREENSHOTS = Path(os.environ.get("HELPDESK_SCREENSHOT_DIR")
                   or Path(__file__).resolve().parent.parent / "build" / "screenshots")

# Known failures that only a markup change on another helper's page can fix, as
# (endpoint, width, check) -> why. ``check`` is "axe:<rule id>", "overflow" or "console".
# The coordinator removes an entry once the page is fixed; the walk fails when a listed pair
# passes, so the list cannot go stale.
KNOWN: dict[tuple[str, str, str], str] = {}

# htmx fragments: GET routes that answer a piece of a page, not a page.
FRAGMENTS = {"notices.bell", "queues.nav", "macros.text", "incidents.team_agents",
             "incidents.requester_incidents", "incidents.priority_preview", "incidents.find_requester",
             "auth.fresh_csrf"}  # (JSON for helpdesk.js: the session's CSRF token)

# Pages worth seeing in a second state (a query string) besides their plain address.
VARIANTS = {
    "search.results": ["?q=printer"],
    "admin.sla_overview": ["?incident={incident_reference}"],
    "reports.index": ["?period=90"],
}


def not_a_page(app: Flask, rule: Rule) -> str | None:
    """Why a GET route is not an HTML page, or None when it is one (and must be walked)."""
    path = rule.rule
    if path.startswith("/api/v1/"):
        return "JSON API"
    if getattr(app.view_functions[rule.endpoint], "access_level", None) == "token":
        return "for machines with a token"
    if "/static/" in path or rule.endpoint in ("static", "plugin_static"):
        return "static file"
    if re.search(r"\.[a-z0-9]{2,5}$", path):
        return "file download"
    if "export" in rule.endpoint or "attachment" in rule.endpoint:
        return "download"
    if path in ("/healthz", "/readyz"):
        return "health probe"
    if rule.endpoint in FRAGMENTS:
        return "htmx fragment"
    return None


@pytest.fixture
def helpdesk_load_entry_points() -> bool:
    """The installed plugins too (bundled and example): their pages and panels are walked."""
    return True


@dataclass
class Problem:
    endpoint: str
    url: str
    width: str
    check: str
    detail: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.endpoint, self.width, self.check)

    def __str__(self) -> str:
        where = f"{self.url} [{self.endpoint}] at {self.width} ({WIDTHS[self.width][0]} px)"
        return f"{where}: {self.check}: {self.detail}"


@dataclass
class WalkData:
    incident_id: int
    incident_reference: str
    contact_email: str
    tokens: list[str]
    values: dict[str, list[Any]] = field(default_factory=dict)  # argument -> values
    by_endpoint: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # endpoint -> that


@pytest.fixture
def walk_data(app: Flask, ctx: Any, personas: Any, log_incident: Any, contact_factory: Any) -> WalkData:
    """Records every page can show: an incident with a full timeline, its requester (with a
    portal sign-in link), an inbound mail, the catalogues, a second incident from the portal."""
    contact = contact_factory(name="Ada Lovelace", email="ada@example.org", organisation="Acme Ltd")
    incident = log_incident(title="Printer on floor 3 jams", requester=contact, impact="high",
                            urgency="medium",
                            description="Paper jam since this morning; see https://example.org/"
                                        "a/very/long/address/that/does/not/break/easily/on/a/phone")
    with app.app_context():
        incidents.assign(ctx, incident.id, personas.owner, personas.database_team, personas.assignee)
        incidents.add_comment(ctx, incident.id, personas.owner, "We are on it.", public=True)
        incidents.add_comment(ctx, incident.id, personas.owner, "Internal: toner low too.", public=False)
        incidents.change_status(ctx, incident.id, personas.assignee, "in_progress")
        # Database refers and requests: the incident page shows a pending hand-back to its owner.
        models.Team.update(escalation_mode="refer").where(
            models.Team.id == personas.database_team.id).execute()
        incidents.handback.hand_back(ctx, incident.id, personas.assignee, "Needs the network team.",
                                     personas.network)
        log_incident(title="VPN drops every hour", requester=contact, impact="low", urgency="low")
        models.Category.create(name="Hardware")
        models.Service.create(name="Printing")
        from helpdesk.mail.receive import receive

        receive(ctx, b"From: Ada <ada@example.org>\r\nTo: help@example.com\r\nSubject: Scanner broken\r\n"
                     b"Message-ID: <walk-1@example.org>\r\n\r\nThe scanner is broken.\r\n")
        for n in range(12):  # the bell shows "12 unread": the header must still be one row
            for agent in (personas.owner, personas.admin):
                models.Notice.create(agent=agent.id, incident=incident.id, text=f"Notice {n}")
        tokens = [customer_links.issue(ctx, contact.email, "127.0.0.1")[1] for _ in range(2)]
        # A team macro and a shared saved view of the service desk, which the walking agent,
        # lead and admin are all in.
        models.Macro.create(name="Printer jam", body="Hello {requester_name}, we are on it.",
                            public=True, agent=personas.owner.id, created_by=personas.owner.id)
        models.SavedView.create(owner=personas.owner.id, team=personas.service_desk.id,
                                name="P1 on my teams", queue="teams", filters='{"priority": "1"}')
    from helpdesk.web.admin import CATALOGUES

    return WalkData(incident.id, incident.reference, contact.email, tokens, values={
        "incident_id": [incident.id], "agent_id": [personas.owner.id], "contact_id": [contact.id],
        "mail_id": [models.InboundMail.select().order_by(models.InboundMail.id).first().id],
    }, by_endpoint={
        "queues.show": {"name": list(QUEUES)}, "admin.catalogue": {"kind": list(CATALOGUES)},
        "portal.redeem": {"token": [tokens[0]]},
    })


def _model_for(argument: str) -> Any:
    """``saved_view_id`` -> models.SavedView; ``view_id`` -> the one model whose name ends in
    View; None when there is no such model (or more than one)."""
    name = "".join(part.capitalize() for part in argument.removesuffix("_id").split("_"))
    if isinstance(exact := getattr(models, name, None), type):
        return exact
    ending = [value for key, value in vars(models).items()
              if key.endswith(name) and isinstance(value, type) and hasattr(value, "select")]
    return ending[0] if len(ending) == 1 else None


def fill(rule: Rule, data: WalkData) -> tuple[list[str], str | None]:
    """The addresses of a rule with its arguments filled in, or why they cannot be."""
    from flask import url_for

    combos: list[dict[str, Any]] = [{}]
    for argument in sorted(rule.arguments):
        values = data.by_endpoint.get(rule.endpoint, {}).get(argument, data.values.get(argument))
        if values is None and argument.endswith("_id") and (model := _model_for(argument)):
            row = model.select(model.id).order_by(model.id).first()
            values = [row.id] if row else None
        if not values:
            return [], f"{rule.rule} ({rule.endpoint}): no value for <{argument}>"
        combos = [{**combo, argument: value} for combo in combos for value in values]
    return [url_for(rule.endpoint, **combo) for combo in combos], None


def audience_of(app: Flask, rule: Rule) -> str:
    """Who the page is for: admin pages (plugins' too) are admins'; else the @access level."""
    view = app.view_functions[rule.endpoint]
    return "admin" if rule.rule.startswith("/admin") else getattr(view, "access_level", "?")


def page_urls(app: Flask, data: WalkData) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(audience, endpoint, url) of every page to walk, and the routes that could not be filled."""
    urls, unfilled = [], []
    with app.test_request_context():
        for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
            if "GET" not in (rule.methods or ()) or not_a_page(app, rule):
                continue
            addresses, missing = fill(rule, data)
            if missing:
                unfilled.append(missing)
            for base in addresses:
                urls.append((audience_of(app, rule), rule.endpoint, base))
                for variant in VARIANTS.get(rule.endpoint, []):
                    urls.append((audience_of(app, rule), rule.endpoint,
                                 base + variant.format(incident_reference=data.incident_reference)))
    return urls, unfilled


def _axe(page: Any, rules: list[str] | None = None) -> list[dict[str, Any]]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(url=AXE_URL)  # same origin, so the app's CSP allows it
    options = {"runOnly": {"type": "rule", "values": rules}} if rules else {}
    return page.evaluate("options => axe.run(document, options).then(r => r.violations.map(v => ({"
                         "id: v.id, impact: v.impact, help: v.help, count: v.nodes.length, "
                         "targets: v.nodes.slice(0, 3).map(n => n.target.join(' '))})))", options)


def _overflow(page: Any) -> str | None:
    """What sticks out to the right when the page scrolls sideways (content inside a
    container that scrolls by itself does not count)."""
    return page.evaluate("""() => {
      const doc = document.documentElement, width = window.innerWidth;
      if (doc.scrollWidth <= width) return null;
      const scrolls = el => { for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
        if (getComputedStyle(p).overflowX !== 'visible') return true; } return false; };
      const out = [...document.body.querySelectorAll('*')].filter(el =>
        el.getBoundingClientRect().right > width + 0.5 && !scrolls(el));
      const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
        (typeof el.className === 'string' && el.className.trim()
          ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
      const deepest = out.filter(el => !out.some(other => other !== el && el.contains(other))).slice(0, 3);
      return `page is ${doc.scrollWidth} px wide in a ${width} px window; sticking out: ` +
        deepest.map(el => `${name(el)} (to ${Math.round(el.getBoundingClientRect().right)} px: ` +
                          `"${(el.textContent || '').trim().slice(0, 40)}")`).join(', ');
    }""")


def _log_in_customer(page: Any, server: str, token: str) -> None:
    page.goto(f"{server}/portal/sign-in/{token}")
    page.get_by_role("button", name="Continue to your requests").click()
    page.get_by_role("heading", name="Your requests").wait_for()


def _context(browser: Any, audience: str, server: str, data: WalkData, personas: Any) -> Any:
    # The app's CSP stays on (bypass_csp would also hide CSP violations from the console
    # check): axe-core is served from the app's own origin by the browser context instead.
    context = browser.new_context(viewport=dict(zip(("width", "height"), WIDTHS["desktop"], strict=True)))
    context.route(f"{server}{AXE_URL}", lambda route: route.fulfill(
        path=str(AXE), content_type="text/javascript", headers={"Cache-Control": "max-age=3600"}))
    page = context.new_page()
    if audience in ("agent", "lead", "admin"):
        user = {"agent": personas.owner, "lead": personas.lead, "admin": personas.admin}[audience]
        log_in(page, server, user.username)
    elif audience == "customer":
        _log_in_customer(page, server, data.tokens[1])
    return page


def test_every_page_passes_axe_fits_a_phone_and_logs_no_errors(app, server, browser, personas, walk_data):
    started = time.monotonic()
    urls, unfilled = page_urls(app, walk_data)
    assert not unfilled, "pages the walk cannot fill in (make a record in walk_data):\n" + "\n".join(unfilled)
    audiences = sorted({audience for audience, _, _ in urls})
    assert set(audiences) <= {"public", "agent", "lead", "admin", "customer"}, audiences
    problems: list[Problem] = []
    walked = 0
    for audience in audiences:
        page = _context(browser, audience, server, walk_data, personas)
        console: list[str] = []
        page.on("console", lambda msg, console=console:
                console.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc, console=console: console.append(str(exc)))
        for _, endpoint, url in (row for row in urls if row[0] == audience):
            page.set_viewport_size(dict(zip(("width", "height"), WIDTHS["desktop"], strict=True)))
            response = page.goto(server + url)
            walked += 1
            status = response.status if response else 0
            if status != 200 or page.locator("main").count() != 1:
                problems.append(Problem(endpoint, url, "desktop", "opens",
                                        f"answered {status} with {page.locator('main').count()} <main> "
                                        f"as {audience} (landed on {page.url})"))
                continue
            for width, (w, h) in WIDTHS.items():
                page.set_viewport_size({"width": w, "height": h})
                page.evaluate(NEXT_FRAME)  # helpdesk.js has seen the resize
                for violation in _axe(page):
                    problems.append(Problem(endpoint, url, width, f"axe:{violation['id']}",
                                            f"{violation['impact']}: {violation['help']} on "
                                            f"{violation['count']} node(s), e.g. {violation['targets']}"))
                if overflow := _overflow(page):
                    problems.append(Problem(endpoint, url, width, "overflow", overflow))
            # Dark mode (the system setting): colours must keep their contrast there too.
            page.emulate_media(color_scheme="dark")
            for violation in _axe(page, ["color-contrast"]):
                problems.append(Problem(endpoint, url, "desktop", "axe:color-contrast-dark",
                                        f"{violation['help']} on {violation['count']} node(s), "
                                        f"e.g. {violation['targets']}"))
            page.emulate_media(color_scheme="light")
            if console:
                problems.append(Problem(endpoint, url, "desktop", "console", "; ".join(console)))
                console.clear()
        page.context.close()
    new = [p for p in problems if p.key not in KNOWN]
    seen = {p.key for p in problems}
    fixed = [key for key in KNOWN if key[0] in {e for _, e, _ in urls} and key not in seen]
    print(f"walked {walked} pages for {len(audiences)} audiences in {time.monotonic() - started:.0f} s; "
          f"{len(problems) - len(new)} known problems")
    assert walked >= 25, f"only {walked} pages walked: the route enumeration broke"
    assert not new, f"{len(new)} problem(s):\n" + "\n".join(map(str, new))
    assert not fixed, f"listed in KNOWN but passing now (remove them): {fixed}"


def test_the_header_is_one_row_at_1366_px_with_unread_notices_and_wraps_on_a_phone(app, server, browser,
                                                                                   personas, walk_data):
    """With the bell's count everything still sits in one row at 1366 px, every queue link
    visible (for an agent with a long name); on a phone it wraps without overflowing."""
    with app.app_context():
        models.Agent.update(display_name="Alexandra Papadopoulou-Smythe").where(
            models.Agent.id == personas.admin.id).execute()
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    log_in(page, server, personas.admin.username)
    assert "12 unread" in page.locator("#bell").inner_text()
    row = page.evaluate("""() => {
      const top = document.querySelector('.top');
      const parts = [...top.children].map(e => e.getBoundingClientRect());
      // Links folded into a closed menu (All queues, Views) are not laid out until it opens.
      const links = [...top.querySelectorAll('nav a')].filter(a => !a.closest('details:not([open])'))
        .map(a => a.getBoundingClientRect());
      return {height: top.getBoundingClientRect().height, tops: parts.map(r => Math.round(r.top)),
              bottoms: parts.map(r => Math.round(r.bottom)),
              hidden: links.filter(r => r.right > window.innerWidth || r.left < 0).length,
              navClipped: top.querySelector('nav').scrollWidth > top.querySelector('nav').clientWidth,
              nav: [top.querySelector('nav').scrollWidth, top.querySelector('nav').clientWidth]}; }""")
    assert row["height"] < 60 and max(row["tops"]) < min(row["bottoms"]), row  # one row
    assert row["hidden"] == 0 and not row["navClipped"], row["nav"]
    menu = page.locator("details.menu", has=page.locator(".who"))
    menu.locator("summary").focus()
    page.keyboard.press("Enter")
    assert menu.get_attribute("open") is not None
    page.keyboard.press("Escape")  # closes, focus back on the summary
    assert menu.get_attribute("open") is None
    assert page.evaluate("document.activeElement.tagName") == "SUMMARY"
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    menu.locator("summary").click()
    page.get_by_role("link", name="Reports").click()
    page.wait_for_url(re.compile(r"/reports"))
    context.close()


@pytest.mark.parametrize("queue", ["open", "at_risk"])
def test_a_queue_with_every_column_fits_1366_px_without_scrolling(app, server, browser, personas, walk_data,
                                                                   queue):
    """Every column shown (plugins' too, such as the bundled Age), the At-risk queue's next
    escalation as well: the list fits its box, the times and plugin columns wrap instead."""
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    log_in(page, server, personas.lead.username)
    page.goto(f"{server}/queues/{queue}")
    assert page.locator("tr[data-row]").count() > 0 and page.locator("th", has_text="Age").count() == 1
    sizes = page.locator("#queue-list").evaluate("el => [el.scrollWidth, el.clientWidth]")
    assert sizes[0] <= sizes[1], sizes
    context.close()


def test_what_the_walk_skips_is_really_no_page(app, login, personas, walk_data):
    """Each skipped GET route that can be filled in answers something other than a full page
    (a download, JSON, a file, a fragment), so the skip rule cannot hide a page."""
    admin = login(personas.admin)
    checked = 0
    with app.test_request_context():
        skipped = [rule for rule in app.url_map.iter_rules()
                   if "GET" in (rule.methods or ()) and not_a_page(app, rule)]
        addresses = [(rule, fill(rule, walk_data)[0]) for rule in skipped]
    for rule, urls in addresses:
        for url in urls:
            response = admin.get(url)
            body = response.get_data(as_text=True)  # read whole: exports stream
            response.close()
            body = body if response.mimetype == "text/html" else ""
            assert not (response.status_code == 200 and "<main" in body), \
                f"{url} ({rule.endpoint}) answers a full page but is skipped as {not_a_page(app, rule)!r}"
            checked += 1
    assert checked >= 5


def test_screenshots_of_the_incident_page_and_a_queue(app, server, browser, personas, walk_data):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots = []
    for scheme in ("light", "dark"):
        for w, h in WIDTHS.values():
            context = browser.new_context(viewport={"width": w, "height": h}, color_scheme=scheme)
            page = context.new_page()
            log_in(page, server, personas.owner.username)
            for name, url in (("incident", f"/incidents/{walk_data.incident_id}"),
                              ("queue", "/queues/owned")):
                page.goto(server + url)
                target = SCREENSHOTS / f"{name}-{w}-{scheme}.png"
                page.screenshot(path=str(target), full_page=True)
                shots.append(target)
            context.close()
    assert all(shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for shot in shots)
