"""A periodic pass's duration as a double on PostgreSQL too: peewee's FloatField made it
``real`` there (float4), so a copy from SQLite, which keeps doubles, never verified.
Frozen on purpose."""

from peewee import SqliteDatabase


def up(migrator, db):
    if not isinstance(db, SqliteDatabase):  # SQLite's REAL is a double already
        db.execute_sql("ALTER TABLE periodic_run ALTER COLUMN seconds TYPE double precision")


def down(migrator, db):
    if not isinstance(db, SqliteDatabase):
        db.execute_sql("ALTER TABLE periodic_run ALTER COLUMN seconds TYPE real")
