"""The last pass of each piece of periodic work (SLA check, outbox sweep, auto-close), for
/metrics and the admins: when it ran, how long it took, whether it failed. Frozen on purpose.
"""
from peewee import *


def up(migrator, db):
    class PeriodicRun(Model):
        name = CharField(max_length=64, primary_key=True)
        started_at = DateTimeField()
        finished_at = DateTimeField(null=True)
        seconds = FloatField(default=0)
        runs = IntegerField(default=0)
        failures = IntegerField(default=0)
        error = TextField(default='')
        class Meta:
            database = db
            table_name = 'periodic_run'

    db.create_tables([PeriodicRun])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('periodic_run'))
