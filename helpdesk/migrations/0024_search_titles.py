"""PostgreSQL: an index on the title's own words in the search table
(``ts_filter(vector, '{a}')``, see helpdesk/search.py). Results list title matches first;
with this index and its statistics, a title search is an index lookup and the planner
knows how rare its words are. SQLite's FTS5 table already matches one column.
Frozen on purpose.
"""
from peewee import *


def up(migrator, db):
    if not isinstance(db, SqliteDatabase):
        db.execute_sql("CREATE INDEX IF NOT EXISTS search_document_title ON search_document "
                       "USING GIN (ts_filter(vector, '{a}'))")


def down(migrator, db):
    if not isinstance(db, SqliteDatabase):
        db.execute_sql("DROP INDEX IF EXISTS search_document_title")
