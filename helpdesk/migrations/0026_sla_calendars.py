"""What each business calendar looked like when the SLA check last saw it (a fingerprint of its
zone, hours and holidays), so the open clocks of a calendar an admin changed are re-timed once
(SECURITY-CASES H7). Frozen on purpose.
"""
from peewee import *


def up(migrator, db):
    class SlaCalendar(Model):
        name = CharField(max_length=100, primary_key=True)
        fingerprint = CharField(max_length=64)
        seen_at = DateTimeField()

        class Meta:
            database = db
            table_name = 'sla_calendar'

    db.create_tables([SlaCalendar])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('sla_calendar'))
