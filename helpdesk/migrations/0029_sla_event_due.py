"""The due time an SLA event was fired for: a re-target that ends on the same target and due
time (P3 -> P4 -> P3) starts a new cycle, but a warning or breach already sent for that due
time is not sent again. Frozen on purpose."""

from peewee import DateTimeField


def up(migrator, db):
    migrator.migrate(migrator.add_column("sla_event", "due_at", DateTimeField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("sla_event", "due_at"))
