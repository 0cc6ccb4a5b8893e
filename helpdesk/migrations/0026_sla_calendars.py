"""What each business calendar looked like when the SLA check last saw it (a fingerprint of its
zone, hours and holidays), so the open clocks of a calendar an admin changed are re-timed once
(SECURITY-CASES H7); and a partial index that finds those clocks, a calendar at a time, in id
order, without reading the finished ones. Frozen on purpose.
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
    db.execute_sql("CREATE INDEX IF NOT EXISTS sla_clock_open_by_calendar ON sla_clock (calendar, id) "
                   "WHERE met_at IS NULL AND stopped_at IS NULL AND breached_at IS NULL")


def down(migrator, db):
    db.execute_sql("DROP INDEX IF EXISTS sla_clock_open_by_calendar")
    migrator.migrate(migrator.drop_table('sla_calendar'))
