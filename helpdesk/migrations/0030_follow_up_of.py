"""The closed incident a follow-up was opened for: a customer's further replies to that closed
incident join the open follow-up instead of opening one more each. Frozen on purpose."""

from peewee import IntegerField


def up(migrator, db):
    # A plain integer column: SQLite cannot add a column with a foreign key constraint
    # cheaply on a large table, and the value is only ever looked up, never cascaded.
    migrator.migrate(migrator.add_column("incident", "follow_up_of", IntegerField(null=True)))
    db.execute_sql("CREATE INDEX IF NOT EXISTS incident_follow_up_of ON incident (follow_up_of)")


def down(migrator, db):
    db.execute_sql("DROP INDEX IF EXISTS incident_follow_up_of")
    migrator.migrate(migrator.drop_column("incident", "follow_up_of"))
