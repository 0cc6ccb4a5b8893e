"""The directory revision: a counter the database itself moves whenever what the select
boxes list of teams and agents changes (a team added, renamed or removed, a membership added
or removed, an agent renamed, deactivated, reactivated or removed), whichever process or
command made the change. Each process keeps the teams-with-members list and reads it again
only when the revision it reads with the session has moved. Frozen on purpose.
"""

from peewee import IntegerField, Model, SqliteDatabase

# No row until the first change (an empty table is revision 0): a copy of the database
# (``helpdesk db copy``) starts its own count, its tables' triggers writing the row.
BUMP = ("INSERT INTO directory_revision (id, revision) VALUES (1, 1) "
        "ON CONFLICT (id) DO UPDATE SET revision = directory_revision.revision + 1")
# (table, event, SQLite's WHEN, PostgreSQL's WHEN): only what the lists show moves it
EVENTS = (
    ("team", "INSERT", None, None),
    ("team", "DELETE", None, None),
    ("team", "UPDATE", "OLD.name IS NOT NEW.name", "OLD.name IS DISTINCT FROM NEW.name"),
    ("membership", "INSERT", None, None),
    ("membership", "DELETE", None, None),
    ("membership", "UPDATE", None, None),
    ("agent", "DELETE", None, None),
    ("agent", "UPDATE", "OLD.display_name IS NOT NEW.display_name OR OLD.active IS NOT NEW.active",
     "OLD.display_name IS DISTINCT FROM NEW.display_name OR OLD.active IS DISTINCT FROM NEW.active"),
)


def _name(table, event):
    return f"{table}_directory_{event.lower()}"


def up(migrator, db):
    class DirectoryRevision(Model):
        revision = IntegerField(default=0)

        class Meta:
            database = db
            table_name = 'directory_revision'

    db.create_tables([DirectoryRevision])
    sqlite = isinstance(db, SqliteDatabase)
    if not sqlite:
        db.execute_sql(
            "CREATE OR REPLACE FUNCTION directory_revision_bump() RETURNS trigger AS $$ "
            f"BEGIN {BUMP}; RETURN NULL; END; $$ LANGUAGE plpgsql")
    for table, event, sqlite_when, pg_when in EVENTS:
        if sqlite:
            when = f" WHEN {sqlite_when}" if sqlite_when else ""
            db.execute_sql(f"CREATE TRIGGER {_name(table, event)} AFTER {event} ON {table}"
                           f" FOR EACH ROW{when} BEGIN {BUMP}; END")
        else:
            when = f" WHEN ({pg_when})" if pg_when else ""
            db.execute_sql(f"CREATE TRIGGER {_name(table, event)} AFTER {event} ON {table}"
                           f" FOR EACH ROW{when} EXECUTE FUNCTION directory_revision_bump()")


def down(migrator, db):
    sqlite = isinstance(db, SqliteDatabase)
    for table, event, _sqlite_when, _pg_when in EVENTS:
        db.execute_sql(f"DROP TRIGGER IF EXISTS {_name(table, event)}" + ("" if sqlite else f" ON {table}"))
    if not sqlite:
        db.execute_sql("DROP FUNCTION IF EXISTS directory_revision_bump()")
    migrator.migrate(migrator.drop_table('directory_revision'))
