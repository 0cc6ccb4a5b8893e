"""Full-text search as agents (and, later, customers) use it: what it finds, in what order,
what it never shows, and that no text typed into the box can break it.

The same corpus is searched by the database and by an independent model of the rules
written here in Python (words in a row within one reply, all included, none excluded,
title matches first, then newest); both databases are held to that model, and to each
other when HELPDESK_TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import html
import os
import random
import re
import time
from dataclasses import dataclass
from typing import Any

import pytest

from helpdesk import incidents as domain
from helpdesk import schema, search
from helpdesk.db import QueryTimeout, database, is_sqlite, time_limit, write_transaction
from helpdesk.models import Incident
from helpdesk.search_query import MAX_QUERY_CHARS, parse, words
from helpdesk.testing import PG_URL_VARIABLE, make_app, reset_postgres


def ids(results: search.Results) -> list[int]:
    return [hit.incident.id for hit in results.hits]


def listed(response: Any) -> list[int]:
    return [int(n) for n in re.findall(r'href="/incidents/(\d+)"', response.get_data(as_text=True))]


# -- what agents find ----------------------------------------------------------------------

def test_a_replys_words_find_the_incident(ctx, app, personas, log_incident, login):
    other = log_incident(title="Printer offline on floor 3", description="Paper jam")
    wanted = log_incident(title="Month-end run", description="The batch did not finish")
    with app.app_context():
        domain.add_comment(ctx, wanted.id, personas.owner,
                           "Payroll is very slow since this morning", public=True)
    response = login(personas.colleague).get("/search?q=payroll+slow")
    assert response.status_code == 200
    assert listed(response) == [wanted.id]
    body = response.get_data(as_text=True)
    assert "<mark>Payroll</mark> is very <mark>slow</mark>" in body
    assert "In a reply" in body
    assert other.id not in listed(response)


def test_phrases_exclusions_and_fields(app, ctx, personas, log_incident):
    a = log_incident(title="Mail server down", description="The mail server is down for everyone")
    b = log_incident(title="Server room too warm", description="mail about the down server")
    c = log_incident(title="Mail client crashes", description="it reboots", actor=personas.colleague)
    with app.app_context():
        assert set(ids(search.search(ctx, personas.owner, '"server down"'))) == {a.id}
        assert set(ids(search.search(ctx, personas.owner, "mail server down"))) == {a.id, b.id}
        assert set(ids(search.search(ctx, personas.owner, "mail -warm"))) == {a.id, c.id}
        assert set(ids(search.search(ctx, personas.owner, "mail owner:sara"))) == {c.id}
        assert set(ids(search.search(ctx, personas.owner, "mail -owner:me"))) == {c.id}
        assert set(ids(search.search(ctx, personas.owner, 'mail owner:"John Carter"'))) == {a.id, b.id}
        domain.change_status(ctx, a.id, personas.owner, "pending", pending_reason="customer")
        assert ids(search.search(ctx, personas.owner, "mail status:pending")) == [a.id]


def test_a_name_filter_matches_whatever_the_case_of_its_accented_capitals(app, ctx, personas, log_incident,
                                                                            contact_factory):
    zoe = contact_factory(name="ZOË Ñúñez", email="zoe@example.org")
    wanted = log_incident(title="Printer jam", requester=zoe)
    log_incident(title="Printer jam")
    with app.app_context():
        for query in ('printer requester:"ZOË Ñúñez"', 'printer requester:"zoë ñúñez"'):
            assert ids(search.search(ctx, personas.owner, query)) == [wanted.id], query


def test_title_matches_come_first_then_the_newest(app, ctx, personas, log_incident, frozen_clock):
    old_title = log_incident(title="VPN drops", description="")
    frozen_clock.advance(hours=1)
    body_only = log_incident(title="Remote access", description="the vpn drops every hour")
    frozen_clock.advance(hours=1)
    newer_body = log_incident(title="Laptop", description="vpn drops at home")
    with app.app_context():
        assert ids(search.search(ctx, personas.owner, "vpn drops")) == [old_title.id, newer_body.id,
                                                                        body_only.id]


def test_accents_and_case_do_not_matter(app, ctx, personas, log_incident):
    incident = log_incident(title="Café Wi-Fi", description="ÉCRAN noir")
    with app.app_context():
        assert ids(search.search(ctx, personas.owner, "cafe ecran")) == [incident.id]
        assert ids(search.search(ctx, personas.owner, "wi-fi")) == [incident.id]
        assert ids(search.search(ctx, personas.owner, '"wi fi"')) == [incident.id]


def test_the_index_follows_each_change_in_its_transaction(app, ctx, personas, log_incident):
    incident = log_incident(title="Scanner broken")
    with app.app_context():
        domain.update_details(ctx, incident.id, personas.owner, title="Plotter broken")
        assert ids(search.search(ctx, personas.owner, "plotter")) == [incident.id]
        assert ids(search.search(ctx, personas.owner, "scanner")) == []
        with pytest.raises(RuntimeError), write_transaction():
            domain.update_details(ctx, incident.id, personas.owner, title="Copier broken")
            raise RuntimeError("the change fails after it was written")
        assert ids(search.search(ctx, personas.owner, "copier")) == []
        assert ids(search.search(ctx, personas.owner, "plotter")) == [incident.id]
        domain.change_status(ctx, incident.id, personas.owner, "resolved", resolution_code="fixed",
                             note="Replaced the fuser unit")
        assert ids(search.search(ctx, personas.owner, "fuser")) == [incident.id]


def test_internal_notes_are_for_agents_only(app, ctx, personas, log_incident, contact_factory):
    ana = contact_factory(name="Ana", email="ana@example.org")
    mine = log_incident(title="Laptop slow", requester=ana)
    theirs = log_incident(title="Laptop slow too", requester=contact_factory())
    with app.app_context():
        domain.add_comment(ctx, mine.id, personas.owner, "Suspect the antivirus scan", public=False)
        domain.add_comment(ctx, mine.id, personas.owner, "We are looking at it", public=True)
        assert ids(search.search(ctx, personas.owner, "antivirus")) == [mine.id]
        # A customer's search (the portal's, when it comes) sees public text and their incidents.
        assert ids(search.search(ctx, None, "antivirus", public_only=True, requester=ana)) == []
        assert ids(search.search(ctx, None, "looking", public_only=True, requester=ana)) == [mine.id]
        assert ids(search.search(ctx, None, "laptop", public_only=True, requester=ana)) == [mine.id]
        hit = search.search(ctx, None, "laptop slow", public_only=True, requester=ana).hits[0]
        assert "antivirus" not in hit.snippet
        assert theirs.id in ids(search.search(ctx, personas.owner, "laptop"))


def test_only_agents_may_search_or_export(app, personas, log_incident, login):
    log_incident(title="Payroll slow")
    anonymous = login(None)
    for url in ("/search?q=payroll", "/search/export?q=payroll&format=csv"):
        response = anonymous.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_user_text_is_escaped_in_titles_and_snippets(app, personas, log_incident, login):
    incident = log_incident(title="Broken <img src=x onerror=alert(1)>\"'",
                            description="<script>alert(2)</script> payroll")
    response = login(personas.owner).get("/search?q=payroll+img")
    body = response.get_data(as_text=True)
    assert listed(response) == [incident.id]
    assert "<img src=x" not in body and "<script>alert(2)" not in body
    assert "&lt;<mark>img</mark> src=x onerror=alert(1)&gt;" in body
    assert "&lt;script&gt;alert(2)&lt;/script&gt; <mark>payroll</mark>" in body


# -- hostile input -------------------------------------------------------------------------

HOSTILE = [
    '"unbalanced', '""', '"', "-", "--", "- -x", "*", "pay*", "NEAR(payroll slow)", "NEAR(",
    "payroll OR slow", "AND", "NOT payroll", "title:payroll", "{title}: payroll", "^payroll",
    "%", "_", "\\", "%_\\'", "'; DROP TABLE incident; --", "payroll & !slow | (x", "a <-> b", ":*",
    "payroll:*", "status:", "team:", 'owner:"', "requester:nobody@example.org", "status:exploded",
    "\x00\x01payroll\x7f", "𝔭𝔞𝔶𝔯𝔬𝔩𝔩", "ﬁle", "İstanbul", "\u202epayroll", "٣٤", "x" * 3000,
    " ".join(f"w{i}" for i in range(200)), "payroll " * 5000, "a" * 100_000,
]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda t: repr(t[:24]))
def test_hostile_queries_never_fail(app, personas, log_incident, login, text):
    log_incident(title="Payroll slow", description="pay file")
    response = login(personas.owner).get("/search", query_string={"q": text})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    export = login(personas.owner).get("/search/export", query_string={"q": text, "format": "csv"})
    assert export.status_code in {200, 400}


def test_a_huge_query_is_cut_with_a_message(app, personas, log_incident, login):
    incident = log_incident(title="Payroll slow")
    response = login(personas.owner).get("/search", query_string={"q": "payroll " + "z" * 100_000})
    body = html.unescape(response.get_data(as_text=True))
    assert f"Only the first {MAX_QUERY_CHARS} characters of your search were used." in body
    assert "Words longer than 100 characters are not searched for." in body  # nor indexed
    assert listed(response) == [incident.id]
    response = login(personas.owner).get("/search", query_string={"q": "payroll " + "y" * 50 + " " * 600})
    assert "Only the first" in response.get_data(as_text=True)
    assert listed(response) == []  # "yyy…" is searched for, literally, and found nowhere


def test_unknown_field_values_say_what_is_wrong(app, personas, login):
    body = html.unescape(login(personas.owner).get("/search?q=team:Nope+status:exploded")
                         .get_data(as_text=True))
    assert "There is no team named “Nope”." in body
    assert "There is no status “exploded”" in body


def test_parser_reads_fields_phrases_and_exclusions():
    query = parse('Payroll "month END" -printer -"paper jam" status:pending team:"Service Desk" x:y')
    assert [str(t) for t in query.include] == ["payroll", "month end", "x y"]
    assert [str(t) for t in query.exclude] == ["printer", "paper jam"]
    assert [(f.name, f.value) for f in query.filters] == [("status", "pending"), ("team", "Service Desk")]


# -- one model of the rules, both databases --------------------------------------------------

VOCABULARY = ["payroll", "slow", "printer", "vpn", "mail", "server", "down", "disk", "full",
              "café", "login", "error", "month", "end"]


@dataclass
class Doc:
    id: int
    created: Any
    title: list[str]
    segments: list[list[str]]  # description, replies, notes, resolution: phrases stay inside one


def _contains(segment: list[str], term: tuple[str, ...]) -> bool:
    return any(tuple(segment[i:i + len(term)]) == term for i in range(len(segment) - len(term) + 1))


def model_search(docs: list[Doc], text: str) -> list[int]:
    """The search rules, independently of any database."""
    query = parse(text)
    found = []
    for doc in docs:
        parts = [doc.title, *doc.segments]
        if all(any(_contains(p, t.words) for p in parts) for t in query.include) and not any(
                any(_contains(p, t.words) for p in parts) for t in query.exclude):
            in_title = all(_contains(doc.title, t.words) for t in query.include)
            found.append((in_title, doc.created, doc.id))
    return [doc_id for *_, doc_id in sorted(found, reverse=True)]


def build_corpus(ctx: Any, actor: Any, seed: int = 7, size: int = 40) -> list[Doc]:
    rng = random.Random(seed)

    def sentence(n: int) -> str:
        return " ".join(rng.choice(VOCABULARY) for _ in range(n)).capitalize() + "."

    docs = []
    for _ in range(size):
        incident = domain.log_incident(ctx, title=sentence(rng.randint(1, 4)), actor=actor,
                                       description=sentence(rng.randint(0, 8)))
        for _ in range(rng.randint(0, 3)):
            domain.add_comment(ctx, incident.id, actor, sentence(rng.randint(1, 6)),
                               public=rng.random() < 0.5)
        incident = Incident.get_by_id(incident.id)
        bodies = [e.body for e in incident.timeline if e.kind in {"reply", "note"}]
        docs.append(Doc(incident.id, incident.created_at, words(incident.title),
                        [words(t) for t in [incident.description, *bodies]]))
    return docs


def corpus_queries(seed: int = 11, count: int = 60) -> list[str]:
    rng = random.Random(seed)
    queries = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 3)):
            roll = rng.random()
            if roll < 0.25:
                parts.append('"' + " ".join(rng.sample(VOCABULARY, 2)) + '"')
            elif roll < 0.4:
                parts.append("-" + rng.choice(VOCABULARY))
            else:
                parts.append(rng.choice(VOCABULARY).upper() if rng.random() < 0.2 else rng.choice(VOCABULARY))
        queries.append(" ".join(parts))
    return queries


def run_corpus(ctx: Any, actor: Any) -> dict[str, list[int]]:
    return {q: ids(search.search(ctx, actor, q, size=100)) for q in corpus_queries()}


def test_the_database_follows_the_model_of_the_rules(app, ctx, personas):
    with app.app_context():
        docs = build_corpus(ctx, personas.owner)
        results = run_corpus(ctx, personas.owner)
        assert any(len(found) > 3 for found in results.values())  # the corpus is not trivially empty
        for text, found in results.items():
            assert found == model_search(docs, text), text
        # A rebuilt index answers exactly as the one kept in step did.
        assert search.rebuild(batch=7) == len(docs)
        assert run_corpus(ctx, personas.owner) == results


@pytest.mark.skipif(not os.environ.get(PG_URL_VARIABLE), reason="needs PostgreSQL as well")
def test_sqlite_and_postgresql_find_the_same_incidents_in_the_same_order(tmp_path):
    answers = []
    for url in (f"sqlite:///{tmp_path / 'parity.db'}", os.environ[PG_URL_VARIABLE]):
        if url.startswith("postgres"):
            reset_postgres(url)
        app = make_app(tmp_path / url.split(":")[0], database_url=url)
        with app.app_context():
            schema.upgrade(database)
            from helpdesk import people

            ctx = app.extensions["helpdesk"]
            desk = people.ensure_team(ctx.settings.service_desk_team)
            actor = people.create_agent("john", "John", "correct-horse-battery", teams=[desk])
            build_corpus(ctx, actor)
            answers.append(run_corpus(ctx, actor))
        database.close()
        if hasattr(database.obj, "close_all"):
            database.obj.close_all()
    assert answers[0] == answers[1]


@pytest.mark.skipif(not os.environ.get(PG_URL_VARIABLE), reason="PostgreSQL's plan")
def test_postgresql_ranks_and_excludes_through_the_indexed_id(app, personas, log_incident):
    """``id IN (title matches)`` inside a rank's CASE and ``NOT IN (matches)`` for ``-word``
    were planned as subplans PostgreSQL did not hash: at 1M incidents a common word compared
    every match with every title match (minutes). Title matches and the rest are now two
    parts of the results, each ordered newest first on the incident table alone; titles are
    matched on their own words, which an expression index serves (with statistics that tell
    the planner how rare they are), and the rest leave them out with a correlated NOT EXISTS.
    The plan itself depends on the table's size, so the statements' shape is checked here."""
    with app.app_context():
        log_incident(title="Printer jams", description="paper mail")
        phases = search._phases(parse("printer -mail"), personas.owner, [], public_only=False,
                                requester=None)
        titled, rest = (Incident.select(Incident.id).where(*part.conditions).sql()[0] for part in phases)
        found = search.search(app.extensions["helpdesk"], personas.owner, "printer -mail", size=25)
    assert "IN (SELECT incident_id FROM search_document WHERE ts_filter(search_document.vector, '{a}')" \
        in titled
    assert "NOT EXISTS (SELECT 1 FROM search_document" in rest and "NOT IN" not in titled + rest
    assert "JOIN" not in titled + rest  # the page's ids first; people are joined for those only
    with app.app_context():  # the expression index the title condition is written for
        index = database.execute_sql(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'search_document_title'")
        assert "ts_filter(vector, '{a}'" in index.fetchone()[0]
    assert found.hits == []  # and "-mail" still excludes the one incident, whose text says mail


def test_pages_walk_title_matches_then_the_rest_without_gaps_or_repeats(app, personas, log_incident):
    """Title matches come first, then the others, each newest first, and paging crosses from
    one part to the other at any page size without losing or repeating an incident."""
    with app.app_context():
        ctx = app.extensions["helpdesk"]
        titled = [log_incident(title=f"Scanner {n} offline", description="floor two").id for n in range(5)]
        others = [log_incident(title=f"Desk {n}", description="the scanner beeps").id for n in range(6)]
        log_incident(title="Unrelated", description="nothing here")
        expected = titled[::-1] + others[::-1]
        for size in (1, 2, 4, 5, 7, 11, 20):
            seen, page = [], 1
            while True:
                found = search.search(ctx, personas.owner, "scanner", page=page, size=size)
                seen += [hit.incident.id for hit in found.hits]
                if not found.has_next:
                    break
                page += 1
            assert seen == expected, size
        past_the_end = search.search(ctx, personas.owner, "scanner", page=12, size=1)
        assert past_the_end.hits == [] and not past_the_end.has_next


def test_the_search_page_numbers_from_one_and_says_when_a_page_is_past_the_end(personas, login, log_incident):
    log_incident(title="Scanner offline")
    agent = login(personas.owner)
    first = agent.get("/search?q=scanner&page=0").get_data(as_text=True)
    assert '<ol class="search-hits" start="1">' in first and 'rel="prev"' not in first
    past = agent.get("/search?q=scanner&page=50").get_data(as_text=True)
    assert "past the last one" in past and "No incidents match." not in past


@pytest.mark.parametrize("settings_overrides", [{"search_seconds": 1}])
def test_a_search_past_its_time_limit_is_stopped_and_says_so(app, personas, log_incident, monkeypatch):
    """A search still running after ``search_seconds`` is stopped by the database (not left
    to hold a server process) and the page tells the agent to narrow it; the connection
    stays usable."""
    with app.app_context():
        ctx = app.extensions["helpdesk"]
        log_incident(title="Printer jams")
        slow = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
                if is_sqlite() else "SELECT pg_sleep(30)")
        monkeypatch.setattr(search, "_by_ids", lambda ids: database.execute_sql(slow).fetchall())
        started = time.monotonic()
        found = search.search(ctx, personas.owner, "printer")
        assert time.monotonic() - started < 10
        assert found.hits == [] and any("took longer than 1 s" in note for note in found.notes)
        monkeypatch.undo()
        again = search.search(ctx, personas.owner, "printer")
        assert [hit.incident.title for hit in again.hits] == ["Printer jams"]


def test_time_limit_restores_the_previous_limit_and_lets_quick_reads_through(app):
    with app.app_context():
        with time_limit(5):
            assert database.execute_sql("SELECT 1").fetchone()[0] == 1
        with pytest.raises(QueryTimeout), time_limit(0.2):
            database.execute_sql(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
                if is_sqlite() else "SELECT pg_sleep(30)").fetchall()
        if not is_sqlite():
            assert database.execute_sql("SHOW statement_timeout").fetchone()[0] == "0"
        assert database.execute_sql("SELECT 2").fetchone()[0] == 2


def test_an_incidents_reference_in_the_search_box_opens_it(app, personas, log_incident, login):
    incident = log_incident(title="Printer offline")
    agent = login(personas.owner)
    for typed in (f"INC-{incident.id}", f"inc {incident.id}", f" inc-{incident.id} "):
        answer = agent.get(f"/search?q={typed}")
        assert answer.status_code == 303 and answer.headers["Location"].endswith(f"/incidents/{incident.id}")
    missing = agent.get(f"/search?q=INC-{incident.id + 1000}")
    assert missing.status_code == 200  # no such incident: the search says what it found
