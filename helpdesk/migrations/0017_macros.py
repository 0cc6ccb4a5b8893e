"""Canned replies (macros): personal or shared with one team, with their actions as JSON.
Frozen on purpose."""
from peewee import *


def up(migrator, db):
    class Agent(Model):
        class Meta:
            database = db
            table_name = 'agent'

    class Team(Model):
        class Meta:
            database = db
            table_name = 'team'

    class Macro(Model):
        name = CharField(max_length=100)
        body = TextField(default='')
        public = BooleanField(default=False)
        actions = TextField(default='[]')
        agent = ForeignKeyField(Agent, null=True, on_delete='CASCADE')
        team = ForeignKeyField(Team, null=True, on_delete='CASCADE')
        created_by = ForeignKeyField(Agent, null=True, on_delete='SET NULL')
        updated_at = DateTimeField()

        class Meta:
            database = db
            table_name = 'macro'
    db.create_tables([Macro])
