"""The search box's language, parsed by hand so that no input can reach a database parser.

``payroll slow "month end" -printer status:pending team:Database owner:me requester:ana@example.org``

Words and "phrases" must all occur; ``-word`` and ``-"phrase"`` must not; ``field:value``
filters by status, team, owner or requester (``-field:value`` excludes). Anything else —
stray quotes, ``AND``/``OR``, FTS5's ``NEAR(`` or ``*``, SQL, control characters — is text:
it is broken into the same words the index holds (:func:`words`), so the databases only
ever see plain letters and digits. The parser never raises; what it cannot use it reports
in :attr:`Query.notes` for the page to show.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

#: Longer queries are cut here (and the page says so): a search box is not a document.
MAX_QUERY_CHARS = 500
#: At most this many words and phrases take part, so no query costs more than a few lookups.
MAX_TERMS = 16
#: A word longer than this is not indexed (PostgreSQL refuses lexemes over 2 kB; no one types them).
MAX_WORD_CHARS = 100
FIELDS = ("status", "team", "owner", "requester")

_WORD = re.compile(r"[^\W_]+")
_TOKEN = re.compile(r'(-?)(?:([A-Za-z]+):)?(?:"([^"]*)"?|(\S+))')


def normalise(text: str) -> str:
    """Lower case without accents, so "Café" finds "cafe" on both databases."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFKC", stripped.casefold())


def words(text: str) -> list[str]:
    """The words of ``text`` as the index stores them: letters and digits only, normalised."""
    return [w for w in _WORD.findall(normalise(text)) if len(w) <= MAX_WORD_CHARS]


@dataclass(frozen=True)
class Term:
    """A word or a phrase (several words in a row); one word is a phrase of one."""

    words: tuple[str, ...]

    def __str__(self) -> str:
        return " ".join(self.words)


@dataclass(frozen=True)
class FieldFilter:
    name: str  # one of FIELDS
    value: str
    negated: bool = False


@dataclass
class Query:
    """What the user asked for, in parts the search module turns into SQL parameters."""

    text: str = ""
    include: list[Term] = field(default_factory=list)
    exclude: list[Term] = field(default_factory=list)
    filters: list[FieldFilter] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.include or self.exclude or self.filters)

    @property
    def highlight(self) -> frozenset[str]:
        """Words to mark in snippets: those the user asked to find."""
        return frozenset(w for term in self.include for w in term.words)


def parse(text: str | None) -> Query:
    """Parse a search box's text; never raises."""
    raw = text or ""
    query = Query()
    if len(raw) > MAX_QUERY_CHARS:
        query.notes.append(f"Only the first {MAX_QUERY_CHARS} characters of your search were used.")
        raw = raw[:MAX_QUERY_CHARS]
    raw = "".join(ch if ch.isprintable() else " " for ch in raw)
    query.text = " ".join(raw.split())
    seen: set[tuple[bool, Term]] = set()
    dropped = long_word = False
    for match in _TOKEN.finditer(raw):
        negated = match.group(1) == "-"
        name = (match.group(2) or "").lower()
        quoted, bare = match.group(3), match.group(4)
        value = quoted if quoted is not None else bare
        if name in FIELDS:
            value = " ".join(value.split())
            if value:
                query.filters.append(FieldFilter(name, value, negated))
            else:
                query.notes.append(f"“{name}:” needs a value, e.g. {name}:{_EXAMPLES[name]}.")
            continue
        if match.group(2):  # an unknown field: its name is a word like any other
            value = f"{match.group(2)} {value}"
        if any(len(w) > MAX_WORD_CHARS for w in _WORD.findall(normalise(value))):
            long_word = True
        found = words(value)
        if not found:
            continue
        if quoted is not None:
            terms = [Term(tuple(found))]
        else:  # a bare token like e-mail or INC-42 is a phrase of its parts; 'a*b' too
            terms = [Term(tuple(found))] if len(found) > 1 else [Term((found[0],))]
        for term in terms:
            key = (negated, term)
            if key in seen:
                continue
            if len(seen) >= MAX_TERMS:
                dropped = True
                continue
            seen.add(key)
            (query.exclude if negated else query.include).append(term)
    if long_word:
        query.notes.append(f"Words longer than {MAX_WORD_CHARS} characters are not searched for.")
    if dropped:
        query.notes.append(f"Only the first {MAX_TERMS} words and phrases were used.")
    return query


_EXAMPLES = {"status": "pending", "team": "Database", "owner": "me", "requester": "ana@example.org"}
