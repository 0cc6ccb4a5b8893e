"""Functional escalation modes and on-call: a team's escalation mode (open, or refer and
request), its current on-call agent, and the hand-back requests a specialist team makes to the
owning team. Frozen on purpose."""
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

    class Incident(Model):
        class Meta:
            database = db
            table_name = 'incident'

    class TeamOnCall(Model):
        team = ForeignKeyField(Team, unique=True, on_delete='CASCADE')
        agent = ForeignKeyField(Agent, on_delete='CASCADE')
        until = DateTimeField(null=True)
        set_by = ForeignKeyField(Agent, null=True, on_delete='SET NULL')
        set_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'team_on_call'

    class HandBack(Model):
        incident = ForeignKeyField(Incident, on_delete='CASCADE')
        team = ForeignKeyField(Team, on_delete='CASCADE')
        requested_by = ForeignKeyField(Agent, null=True, on_delete='SET NULL')
        requested_at = DateTimeField()
        request = TextField()
        suggested_team = ForeignKeyField(Team, null=True, on_delete='SET NULL')
        state = CharField(max_length=16, default='pending')
        decided_by = ForeignKeyField(Agent, null=True, on_delete='SET NULL')
        decided_at = DateTimeField(null=True)
        decision = TextField(default='')
        class Meta:
            database = db
            table_name = 'hand_back'
            indexes = ((('incident', 'state'), False),)

    # A plain ALTER: a defaulted column, so SQLite adds it in place.
    db.execute_sql("ALTER TABLE team ADD COLUMN escalation_mode VARCHAR(8) NOT NULL DEFAULT 'open'")
    db.create_tables([TeamOnCall, HandBack])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('hand_back'), migrator.drop_table('team_on_call'))
    migrator.migrate(migrator.drop_column('team', 'escalation_mode'))
