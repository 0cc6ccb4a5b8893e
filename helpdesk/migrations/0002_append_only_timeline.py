"""Make the timeline append-only in the database itself: UPDATE and DELETE are refused."""

from peewee import SqliteDatabase


def up(migrator, db):
    if isinstance(db, SqliteDatabase):
        for action in ("UPDATE", "DELETE"):
            db.execute_sql(
                f"CREATE TRIGGER timeline_entry_no_{action.lower()} "
                f"BEFORE {action} ON timeline_entry "
                "BEGIN SELECT RAISE(ABORT, 'timeline entries are append-only'); END"
            )
        return
    db.execute_sql(
        "CREATE FUNCTION timeline_entry_append_only() RETURNS trigger AS $$ "
        "BEGIN RAISE EXCEPTION 'timeline entries are append-only'; END; "
        "$$ LANGUAGE plpgsql"
    )
    db.execute_sql(
        "CREATE TRIGGER timeline_entry_append_only BEFORE UPDATE OR DELETE "
        "ON timeline_entry FOR EACH ROW EXECUTE FUNCTION timeline_entry_append_only()"
    )


def down(migrator, db):
    if isinstance(db, SqliteDatabase):
        db.execute_sql("DROP TRIGGER IF EXISTS timeline_entry_no_update")
        db.execute_sql("DROP TRIGGER IF EXISTS timeline_entry_no_delete")
        return
    db.execute_sql("DROP TRIGGER IF EXISTS timeline_entry_append_only ON timeline_entry")
    db.execute_sql("DROP FUNCTION IF EXISTS timeline_entry_append_only()")
