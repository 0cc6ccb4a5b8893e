"""Per-day report aggregates (report_day, report_duration: see helpdesk/reports.py), the day
an incident left the active statuses on its fact row (for the backlog over time), and
indexes for the still-open targets a report reads from facts.

`helpdesk db upgrade` runs `helpdesk reports rebuild` after this migration (the rollups
derive from code a frozen migration must not import). Frozen on purpose.
"""
from peewee import *

KEYS = ('day', 'owner_team', 'owner_agent', 'priority', 'service', 'category')


def up(migrator, db):
    class ReportDay(Model):
        day = CharField(max_length=10)
        owner_team = IntegerField()
        owner_agent = IntegerField()
        priority = SmallIntegerField()
        service = IntegerField()
        category = IntegerField()
        opened = IntegerField(default=0)
        resolved = IntegerField(default=0)
        ended = IntegerField(default=0)
        ended_age0 = IntegerField(default=0)
        ended_age1 = IntegerField(default=0)
        ended_age2 = IntegerField(default=0)
        ended_age3 = IntegerField(default=0)
        ended_age4 = IntegerField(default=0)
        ended_age5 = IntegerField(default=0)
        ended_age6 = IntegerField(default=0)
        response_met = IntegerField(default=0)
        response_late = IntegerField(default=0)
        response_breached = IntegerField(default=0)
        resolution_met = IntegerField(default=0)
        resolution_late = IntegerField(default=0)
        resolution_breached = IntegerField(default=0)
        resolved_once = IntegerField(default=0)
        reopened = IntegerField(default=0)
        response_business_n = IntegerField(default=0)
        response_business_sum = BigIntegerField(default=0)
        response_wall_n = IntegerField(default=0)
        response_wall_sum = BigIntegerField(default=0)
        resolution_business_n = IntegerField(default=0)
        resolution_business_sum = BigIntegerField(default=0)
        resolution_wall_n = IntegerField(default=0)
        resolution_wall_sum = BigIntegerField(default=0)

        class Meta:
            database = db
            table_name = 'report_day'
            indexes = ((KEYS, True),)

    class ReportDuration(Model):
        day = CharField(max_length=10)
        owner_team = IntegerField()
        owner_agent = IntegerField()
        priority = SmallIntegerField()
        service = IntegerField()
        category = IntegerField()
        measure = SmallIntegerField()
        bucket = SmallIntegerField()
        count = IntegerField(default=0)

        class Meta:
            database = db
            table_name = 'report_duration'
            indexes = (((*KEYS, 'measure', 'bucket'), True),)

    db.create_tables([ReportDay, ReportDuration])
    db.execute_sql('ALTER TABLE incident_fact ADD COLUMN ended_day VARCHAR(10)')
    db.execute_sql('CREATE INDEX incidentfact_response_outcome_created_day '
                   'ON incident_fact (response_outcome, created_day)')
    db.execute_sql('CREATE INDEX incidentfact_resolution_outcome_created_day '
                   'ON incident_fact (resolution_outcome, created_day)')


def down(migrator, db):
    db.execute_sql('DROP INDEX IF EXISTS incidentfact_resolution_outcome_created_day')
    db.execute_sql('DROP INDEX IF EXISTS incidentfact_response_outcome_created_day')
    migrator.migrate(migrator.drop_column('incident_fact', 'ended_day'))
    db.execute_sql('DROP TABLE IF EXISTS report_duration')
    db.execute_sql('DROP TABLE IF EXISTS report_day')
