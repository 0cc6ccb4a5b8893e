"""Full-text search over incidents: one interface, SQLite FTS5 or a PostgreSQL tsvector (GIN).

Each incident has one search document with three parts: the title, the public conversation
(description, public replies, resolution note) and the internal notes. SQLite keeps them as
the three columns of an FTS5 table (rowid = incident id); PostgreSQL as one ``tsvector`` whose
weights say the part (A title, B public, C internal), so a customer's search — which must
never see internal notes — restricts itself to ``{title public}`` or ``:AB``.

Both databases are given the same words: :func:`helpdesk.search_query.words` splits and
normalises text in Python, and the PostgreSQL vector is built here position by position
(no dictionary, no stemming), so both find the same incidents in the same order.
Documents are rewritten by :func:`refresh` in the transaction of the change that altered
their text (the incidents package calls it), and rebuilt in bulk by :func:`rebuild`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import peewee
from markupsafe import Markup, escape

from helpdesk.context import Context
from helpdesk.db import QueryTimeout, Statement, database, is_sqlite, time_limit
from helpdesk.models import (
    ACTIVE_STATUSES,
    STATUSES,
    Agent,
    Contact,
    Incident,
    Team,
    TimelineEntry,
    incident_as_stored,
)
from helpdesk.queues import rows_by_id
from helpdesk.search_query import MAX_WORD_CHARS, Query, Term, normalise, parse, words

TABLE = "search_document"
#: Words indexed per incident (title, conversation and notes together); the rest is not searched.
MAX_DOCUMENT_WORDS = 50_000
#: PostgreSQL keeps positions up to this and at most 256 per word (see its tsvector limits).
_PG_MAX_POSITION = 16383
_PG_MAX_POSITIONS = 256
#: Separates the replies of one part, so that a phrase never runs from one reply into the next.
_SEPARATOR = "_"
PUBLIC_KINDS = ("reply",)
#: Incident columns whose change rewrites the document.
TEXT_FIELDS = frozenset({"title", "description", "resolution_note"})
INTERNAL_KINDS = ("note",)

__all__ = ["Hit", "Results", "Query", "parse", "refresh", "rebuild", "search"]


@dataclass
class Document:
    """The words of one incident's searchable text, part by part, segment by segment."""

    title: list[str] = field(default_factory=list)
    public: list[list[str]] = field(default_factory=list)
    internal: list[list[str]] = field(default_factory=list)


class _Entry(NamedTuple):
    kind: str
    body: str | None


def _document(incident: Incident, entries: Iterable[_Entry]) -> Document:
    budget = MAX_DOCUMENT_WORDS

    def take(text: str | None) -> list[str]:
        nonlocal budget
        found = words(text or "")[:max(budget, 0)]
        budget -= len(found) + 1
        return found

    doc = Document(title=take(incident.title))
    public_texts = [incident.description]
    internal_texts = []
    for item in entries:
        (public_texts if item.kind in PUBLIC_KINDS else internal_texts).append(item.body)
    public_texts.append(incident.resolution_note)
    doc.public = [segment for segment in map(take, public_texts) if segment]
    doc.internal = [segment for segment in map(take, internal_texts) if segment]
    return doc


def _fts_text(segments: list[list[str]]) -> str:
    return f" {_SEPARATOR} ".join(" ".join(segment) for segment in segments)


def _tsvector(doc: Document) -> str:
    """The document as a tsvector literal: a gap between parts and segments, weights A/B/C."""
    positions: dict[str, list[str]] = defaultdict(list)
    position = 0
    for weight, segments in (("A", [doc.title]), ("B", doc.public), ("C", doc.internal)):
        for segment in segments:
            for word in segment:
                position += 1
                spots = positions[word]
                entry = f"{min(position, _PG_MAX_POSITION)}{weight}"
                if len(spots) < _PG_MAX_POSITIONS and (not spots or spots[-1] != entry):
                    spots.append(entry)
            position += 1  # the gap
    return " ".join(f"'{word}':{','.join(spots)}" for word, spots in positions.items())


def _write(docs: dict[int, Document]) -> None:
    if not docs:
        return
    cursor = database.cursor()
    if is_sqlite():
        cursor.executemany("DELETE FROM search_document WHERE rowid = ?", [(i,) for i in docs])
        cursor.executemany(
            "INSERT INTO search_document (rowid, title, public, internal) VALUES (?, ?, ?, ?)",
            [(i, " ".join(d.title), _fts_text(d.public), _fts_text(d.internal)) for i, d in docs.items()])
    else:
        cursor.executemany(
            "INSERT INTO search_document (incident_id, vector) VALUES (%s, %s::tsvector) "
            "ON CONFLICT (incident_id) DO UPDATE SET vector = EXCLUDED.vector",
            [(i, _tsvector(d)) for i, d in docs.items()])


def _searched(incidents: Any) -> peewee.ModelSelect:
    """(incident, kind, body) of the timeline entries a document holds, in order
    (``incidents``: the condition on the incident column)."""
    return (TimelineEntry.select(TimelineEntry.incident, TimelineEntry.kind, TimelineEntry.body)
            .where(incidents(TimelineEntry.incident) & TimelineEntry.kind.in_(PUBLIC_KINDS + INTERNAL_KINDS))
            .order_by(TimelineEntry.incident, TimelineEntry.id))


def _entries(incident_ids: list[int]) -> dict[int, list[_Entry]]:
    found: dict[int, list[_Entry]] = defaultdict(list)
    for incident_id, kind, body in _searched(lambda column: column.in_(incident_ids)).tuples():
        found[incident_id].append(_Entry(kind, body))
    return found


# refresh runs in every change: its read of the timeline is compiled once
_ENTRIES_OF = Statement(lambda incident_id: _searched(lambda column: column == incident_id))


def refresh(incident_id: int, new: Incident | None = None, unchanged: Incident | None = None) -> None:
    """Rewrite one incident's search document; call it inside the transaction of the change
    (``new``: the incident created in this transaction, as stored: no reply or note yet;
    ``unchanged``: as read in this transaction by a change that added to its timeline only)."""
    if new is not None:
        _write({incident_id: _document(new, [])})
        return
    incident = unchanged if unchanged is not None else incident_as_stored(incident_id)
    entries = [_Entry(kind, body) for _incident, kind, body in _ENTRIES_OF.execute(incident_id)]
    _write({incident_id: _document(incident, entries)})


def rebuild(batch: int = 2000) -> int:
    """Rebuild every search document (after a restore, or to add the index to old data)."""
    count = 0
    last = 0
    database.execute_sql("DELETE FROM search_document")
    while True:
        with database.atomic():
            incidents = list(Incident.select(Incident.id, Incident.title, Incident.description,
                                             Incident.resolution_note)
                             .where(Incident.id > last).order_by(Incident.id).limit(batch))
            if not incidents:
                return count
            entries = _entries([i.id for i in incidents])
            _write({i.id: _document(i, entries.get(i.id, ())) for i in incidents})
        count += len(incidents)
        last = incidents[-1].id


# --- searching -----------------------------------------------------------------------------

@dataclass
class Hit:
    incident: Incident
    title: Markup
    snippet: Markup
    where: str  # "the description", "a reply", "an internal note" … ("" when only the title matched)


@dataclass
class Results:
    query: Query
    hits: list[Hit]
    page: int
    has_next: bool
    notes: list[str]


def _fts_phrase(term: Term) -> str:
    return '"' + " ".join(term.words) + '"'  # words hold letters and digits only


def _pg_phrase(term: Term, weights: str) -> str:
    return " <-> ".join(f"'{word}'{':' + weights if weights else ''}" for word in term.words)


def _matching(terms: list[Term], part: str) -> peewee.SQL:
    """Ids of incidents whose ``part`` (all, public or title) holds every term."""
    if is_sqlite():
        columns = {"all": "", "public": "{title public} : ", "title": "{title} : "}[part]
        expression = columns + "(" + " AND ".join(map(_fts_phrase, terms)) + ")"
        return peewee.SQL("(SELECT rowid FROM search_document WHERE search_document MATCH ?)", [expression])
    condition, query = _pg_condition("search_document", terms, part)
    return peewee.SQL(f"(SELECT incident_id FROM search_document WHERE {condition})", [query])  # noqa: S608


def _pg_tsquery(terms: list[Term], part: str) -> str:
    """PostgreSQL's query text for "``part`` holds every term" (weights mark the parts)."""
    weights = {"all": "", "public": "AB", "title": "A"}[part]
    return " & ".join(f"({_pg_phrase(term, weights)})" for term in terms)


def _pg_condition(alias: str, terms: list[Term], part: str) -> tuple[str, str]:
    """The condition on ``alias``'s vector that ``part`` holds every term, and its query text.

    Titles are matched on the title's own words, ``ts_filter(vector, '{a}')``: an
    expression index serves it (migration 0024) and, more to the point, its statistics tell
    the planner how rare three words together in a title are. Matched through the weights
    instead, the planner guessed thousands and walked a million incidents newest first."""
    if part == "title":
        return f"ts_filter({alias}.vector, '{{a}}') @@ %s::tsquery", _pg_tsquery(terms, "all")
    return f"{alias}.vector @@ %s::tsquery", _pg_tsquery(terms, part)


def _absent(alias: str, terms: list[Term], part: str) -> peewee.Node:
    """The incident's ``part`` does not hold every term. On PostgreSQL a correlated
    ``NOT EXISTS`` on the search table's key: ``NOT IN (subquery)`` cannot become an
    anti-join and, past work_mem, is compared row by row (minutes at 1M incidents)."""
    if is_sqlite():
        return Incident.id.not_in(_matching(terms, part))
    condition, query = _pg_condition(alias, terms, part)
    return peewee.NodeList((
        peewee.SQL(f"NOT EXISTS (SELECT 1 FROM search_document AS {alias} "  # noqa: S608 - alias is ours
                   f"WHERE {alias}.incident_id ="),
        Incident.id, peewee.SQL(f"AND {condition})", [query])))


def _filter_condition(name: str, value: str, viewer: Agent, notes: list[str]) -> peewee.Expression:
    folded = value.casefold()
    nothing = Incident.id.is_null()  # ids are never null: matches nothing
    if name == "status":
        if folded in {"open", "active"}:
            return Incident.status.in_(ACTIVE_STATUSES)
        for key, label in STATUSES.items():
            if folded in {key, label.casefold(), key.replace("_", " ")}:
                return Incident.status == key
        notes.append(f"There is no status “{value}”; choose one of: open, {', '.join(STATUSES)}.")
        return nothing
    if name == "team":
        team = Team.get_or_none(peewee.fn.LOWER(Team.name) == value.lower())
        if team is None:
            notes.append(f"There is no team named “{value}”.")
            return nothing
        return (Incident.owner_team == team.id) | (Incident.assigned_team == team.id)
    if name == "owner":
        if folded == "me":
            return Incident.owner_agent == viewer.id
        if folded in {"none", "nobody"}:
            return Incident.owner_agent.is_null()
        agent = Agent.get_or_none((peewee.fn.LOWER(Agent.username) == value.lower())
                                  | (peewee.fn.LOWER(Agent.display_name) == value.lower()))
        if agent is None:
            notes.append(f"There is no agent “{value}”.")
            return nothing
        return Incident.owner_agent == agent.id
    contacts = Contact.select(Contact.id).where((peewee.fn.LOWER(Contact.email) == value.lower())
                                                | (peewee.fn.LOWER(Contact.name) == value.lower()))
    if not contacts.exists():
        notes.append(f"There is no requester “{value}”.")
        return nothing
    return Incident.requester.in_(contacts)


def search(ctx: Context, viewer: Agent | None, query: Query | str, *, page: int = 1,
           size: int | None = None, public_only: bool = False,
           requester: Contact | None = None) -> Results:
    """One page of the incidents a query finds, incidents whose title holds every word first,
    then newest first.

    ``public_only`` leaves internal notes out of matching and snippets (customers);
    ``requester`` limits the search to that contact's incidents. A search that runs past
    ``search_seconds`` is stopped and says so in its notes rather than holding the server.
    """
    if isinstance(query, str):
        query = parse(query)
    size = size or ctx.settings.page_size
    page = max(1, min(page, 1000))
    notes = list(query.notes)
    phases = _phases(query, viewer, notes, public_only=public_only, requester=requester)
    if phases is None:
        return Results(query, [], page, False, notes)
    try:
        with time_limit(ctx.settings.search_seconds):
            ids = _page_ids(phases, (page - 1) * size, size + 1)
            found = _by_ids(ids[:size])
    except QueryTimeout:
        notes.append(f"The search took longer than {ctx.settings.search_seconds} s and was stopped. "
                     "Add a word, or narrow it with status:, team: or owner:.")
        return Results(query, [], page, False, notes)
    return Results(query, snippets(found, query, public_only=public_only), page, len(ids) > size, notes)


NEWEST = (Incident.created_at.desc(), Incident.id.desc())


def _phases(query: Query, viewer: Agent | None, notes: list[str], *, public_only: bool,
            requester: Contact | None) -> list[Part] | None:
    """The conditions of each part of the results, in order: incidents whose title holds every
    word, then the other matches (each part newest first). Two plain parts rather than one
    rank to sort by: each can be served newest first from the incident table's index, so a
    word in half of a million incidents is not ranked and sorted in full for one page."""
    if query.empty:
        return None
    part = "public" if public_only else "all"
    conditions: list[peewee.Node] = [_absent("excluded", [term], part) for term in query.exclude]
    for item in query.filters:
        condition = _filter_condition(item.name, item.value, viewer, notes)
        conditions.append(~condition if item.negated else condition)
    if requester is not None:
        conditions.append(Incident.requester == requester.id)
    if not query.include:
        return [Part(conditions)]
    # A title that holds every word matches in any part too.
    return [Part([Incident.id.in_(_matching(query.include, "title")), *conditions]),
            Part([Incident.id.in_(_matching(query.include, part)),
                  _absent("title_match", query.include, "title"), *conditions])]


class Part(NamedTuple):
    """One part of the results (title matches, then the rest): its conditions on the
    incident table."""

    conditions: list[peewee.Node]


def _page_ids(parts: list[Part], offset: int, limit: int) -> list[int]:
    """The ids of ``limit`` results from ``offset``, found on the incident table alone."""
    ids: list[int] = []
    for part in parts:
        select = Incident.select(Incident.id).where(*part.conditions)
        found = [row_id for (row_id,) in select.order_by(*NEWEST).offset(offset)
                 .limit(limit - len(ids)).tuples()]
        ids += found
        if len(ids) >= limit:
            break
        # This part ended: the next starts past what this part did not cover of the offset.
        offset = 0 if found or not offset else offset - select.limit(offset).count()
    return ids


def _by_ids(ids: list[int]) -> list[Incident]:
    """The incidents with their people, in the order of ``ids`` (one query, the queue
    pages' own: its SQL is cached and its rows built without peewee's row walker)."""
    if not ids:
        return []
    rows = {row.id: row for row in rows_by_id(ids)}
    return [rows[row_id] for row_id in ids if row_id in rows]


def each(query: Query, viewer: Agent | None, *, batch: int = 2000, public_only: bool = False,
         requester: Contact | None = None) -> Iterator[Incident]:
    """Every incident a query finds, in page order, a keyset batch at a time (constant memory
    however many match: exports stream this)."""
    for part in _phases(query, viewer, [], public_only=public_only, requester=requester) or []:
        select = _with_people().where(*part.conditions).order_by(*NEWEST)
        after: tuple[object, int] | None = None
        while True:
            chunk = select
            if after is not None:
                created, row_id = after
                # The first term bounds the index range; the rest breaks ties on the id.
                chunk = chunk.where((Incident.created_at <= created) & (
                    (Incident.created_at < created) | (Incident.id < row_id)))
            rows = list(chunk.limit(batch))
            yield from rows
            if len(rows) < batch:
                break
            after = (rows[-1].created_at, rows[-1].id)


def _with_people() -> peewee.ModelSelect:
    """Incidents with owner, assignee and requester joined in: one query per page."""
    owner_team, owner_agent = Team.alias("owner_team"), Agent.alias("owner_agent")
    assigned_team, assigned_agent = Team.alias("assigned_team"), Agent.alias("assigned_agent")
    outer = peewee.JOIN.LEFT_OUTER
    return (Incident.select(Incident, owner_team, owner_agent, assigned_team, assigned_agent, Contact)
            .join_from(Incident, owner_team, on=(Incident.owner_team == owner_team.id), attr="owner_team")
            .join_from(Incident, owner_agent, outer, on=(Incident.owner_agent == owner_agent.id),
                       attr="owner_agent")
            .join_from(Incident, assigned_team, outer, on=(Incident.assigned_team == assigned_team.id),
                       attr="assigned_team")
            .join_from(Incident, assigned_agent, outer, on=(Incident.assigned_agent == assigned_agent.id),
                       attr="assigned_agent")
            .join_from(Incident, Contact, outer, on=(Incident.requester == Contact.id), attr="requester"))


# --- snippets ------------------------------------------------------------------------------

_TOKEN = re.compile(r"[^\W_]+")
_CONTEXT_WORDS = 12


def highlight(text: str, wanted: frozenset[str], *, window: bool = True) -> tuple[Markup, int]:
    """``text`` escaped, with the wanted words in ``<mark>``; cut to the words around the first
    match when ``window``. Returns the markup and how many words matched."""
    tokens = list(_TOKEN.finditer(text))
    hits = [i for i, m in enumerate(tokens) if len(m.group()) <= MAX_WORD_CHARS
            and normalise(m.group()) in wanted]
    start, end = 0, len(text)
    prefix = suffix = ""
    if window and tokens:
        first = hits[0] if hits else 0
        low = max(0, first - _CONTEXT_WORDS)
        high = min(len(tokens) - 1, first + 2 * _CONTEXT_WORDS)
        start = tokens[low].start() if low > 0 else 0
        end = tokens[high].end() if high < len(tokens) - 1 else len(text)
        prefix = "… " if start > 0 else ""
        suffix = " …" if end < len(text) else ""
    out = [escape(prefix)]
    cursor = start
    marked = set(hits)
    for i, token in enumerate(tokens):
        if token.start() < start or token.end() > end or i not in marked:
            continue
        out.append(escape(text[cursor:token.start()]))
        out.append(Markup("<mark>{}</mark>").format(token.group()))
        cursor = token.end()
    out.append(escape(text[cursor:end]))
    out.append(escape(suffix))
    return Markup("").join(out), len(hits)


def snippets(incidents: list[Incident], query: Query, *, public_only: bool = False) -> list[Hit]:
    """A highlighted, escaped snippet per incident from the text that matched best."""
    wanted = query.highlight
    entries = _entries([i.id for i in incidents]) if incidents else {}
    hits = []
    for incident in incidents:
        title, _ = highlight(incident.title, wanted, window=False)
        sources: list[tuple[str, str]] = [("the description", incident.description)]
        for item in reversed(entries.get(incident.id, [])):
            if item.kind in PUBLIC_KINDS:
                sources.append(("a reply", item.body))
            elif not public_only:
                sources.append(("an internal note", item.body))
        if incident.resolution_note:
            sources.append(("the resolution note", incident.resolution_note))
        best: tuple[int, str, Markup] | None = None
        for where, text in sources:
            if not text:
                continue
            snippet, count = highlight(text, wanted)
            if best is None or count > best[0]:
                best = (count, where, snippet)
        count, where, snippet = best if best is not None else (0, "", Markup(""))
        hits.append(Hit(incident, title, snippet, where if count else ""))
    return hits
