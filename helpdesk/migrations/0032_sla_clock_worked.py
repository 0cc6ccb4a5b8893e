"""The working time on an SLA clock when its target was met, measured in the calendar in force
then: a later change of business hours re-times running clocks, but a met target stays judged,
shown and reported by the time it was met in (the incident page, the reports and a rebuild of
them agree). Empty for clocks met before this migration: those are measured in the current
calendar, as before. Frozen on purpose."""

from peewee import IntegerField


def up(migrator, db):
    migrator.migrate(migrator.add_column("sla_clock", "worked_seconds", IntegerField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("sla_clock", "worked_seconds"))
