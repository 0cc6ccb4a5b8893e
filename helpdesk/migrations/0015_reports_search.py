"""Full-text search documents: an FTS5 table on SQLite, a tsvector with a GIN index on
PostgreSQL (see helpdesk/search.py for what they hold).

Existing incidents are indexed by `helpdesk search rebuild` (the text is split into words in
Python, which a frozen migration must not import). Frozen on purpose.
"""

from peewee import SqliteDatabase


def up(migrator, db):
    if isinstance(db, SqliteDatabase):
        db.execute_sql(
            "CREATE VIRTUAL TABLE search_document USING fts5(title, public, internal, "
            "tokenize = \"unicode61 remove_diacritics 0 tokenchars '_'\")"
        )
    else:
        db.execute_sql(
            "CREATE TABLE search_document (incident_id INTEGER PRIMARY KEY "
            "REFERENCES incident (id) ON DELETE CASCADE, vector TSVECTOR NOT NULL)"
        )
        db.execute_sql("CREATE INDEX search_document_vector ON search_document USING GIN (vector)")


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS search_document")
