"""Markdown as the pages show it: sanitised, and remembered within a bounded memory."""

from __future__ import annotations

from helpdesk import rendering


def test_markdown_is_sanitised_every_time_it_is_shown():
    hostile = 'Hi <script>alert(1)</script> [x](javascript:alert(1)) **bold**'
    for _ in range(2):  # the second time from memory
        html = str(rendering.render_markdown(hostile))
        assert "<script>" not in html and "href=\"javascript" not in html and "<strong>bold</strong>" in html


def test_remembered_markdown_stays_within_its_budget(monkeypatch):
    monkeypatch.setattr(rendering, "_REMEMBER_BYTES", 2000)
    monkeypatch.setattr(rendering, "_remembered", rendering.OrderedDict())
    monkeypatch.setattr(rendering, "_remembered_size", 0)
    texts = [f"Entry {n}: " + "* item\n" * 20 for n in range(50)]
    shown = [str(rendering.render_markdown(text)) for text in texts]
    kept = sum(len(text) + len(html) for text, html in rendering._remembered.items())
    assert 0 < kept <= 2000 and kept == rendering._remembered_size
    assert texts[-1] in rendering._remembered and texts[0] not in rendering._remembered
    assert [str(rendering.render_markdown(text)) for text in texts] == shown
    long = "word " * 2000  # larger than the whole budget: rendered, not kept (nor emptying it)
    assert "word" in str(rendering.render_markdown(long)) and long not in rendering._remembered
    assert texts[-1] in rendering._remembered


def test_a_long_hostile_message_still_shown_as_markdown_is_rendered_once(monkeypatch):
    """9,000 '[' cost Markdown ~0.2 s: twenty such replies made every view of their incident
    take seconds. Each is now rendered once and then taken from memory."""
    monkeypatch.setattr(rendering, "_remembered", rendering.OrderedDict())
    monkeypatch.setattr(rendering, "_remembered_size", 0)
    renders = []
    real = rendering._render
    monkeypatch.setattr(rendering, "_render", lambda text: renders.append(text) or real(text))
    hostile = "[" * 9_000
    first = rendering.render_markdown(hostile)
    assert rendering.render_markdown(hostile) == first and renders == [hostile]


def test_a_huge_hostile_message_opens_its_incident_quickly_as_plain_text(app, login, personas,
                                                                         incident_factory, contact_factory):
    """Anyone who can mail the desk sent 200,000 '[' (or '*a', or a wide table): Markdown took
    5–8 s on every view of the incident, holding one of the server's few threads."""
    import time

    from helpdesk import customers

    stranger = contact_factory(name="Mallory", email="mallory@example.org")
    incident = incident_factory(title="Look at this", requester=stranger)
    hostile = "[" * 100_000 + "<script>alert(1)</script>" + "*a" * 49_000
    with app.app_context():
        customers.post_message(app.extensions["helpdesk"], incident.id, stranger, hostile)
    agent = login(personas.owner)
    started = time.monotonic()
    page = agent.get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert time.monotonic() - started < 2.5
    assert '<p class="plain-text">[[[[' in page and "&lt;script&gt;alert(1)&lt;/script&gt;*a*a" in page
    short = str(rendering.render_markdown("Still **Markdown** below the limit"))
    assert "<strong>Markdown</strong>" in short
