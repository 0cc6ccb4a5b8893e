"""Escalation: policies and their versions, each incident's escalation state, the claimed runs
of levels, watchers, and the incident's escalation level and major-incident flag.
Frozen on purpose."""
from peewee import *
from peewee import SqliteDatabase


def up(migrator, db):
    class Agent(Model):
        class Meta:
            database = db
            table_name = 'agent'

    class Incident(Model):
        class Meta:
            database = db
            table_name = 'incident'

    class EscalationPolicy(Model):
        name = CharField(max_length=64, unique=True)
        title = CharField(max_length=200)
        enabled = BooleanField(default=True)
        position = IntegerField(default=0)
        version = IntegerField(default=1)
        definition = TextField()
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'escalation_policy'

    class EscalationPolicyVersion(Model):
        policy = ForeignKeyField(EscalationPolicy, on_delete='CASCADE')
        version = IntegerField()
        definition = TextField()
        saved_at = DateTimeField()
        saved_by = ForeignKeyField(Agent, null=True)
        class Meta:
            database = db
            table_name = 'escalation_policy_version'
            indexes = ((('policy', 'version'), True),)

    class EscalationState(Model):
        incident = ForeignKeyField(Incident, unique=True, on_delete='CASCADE')
        policy = ForeignKeyField(EscalationPolicy, null=True, on_delete='SET NULL')
        version = IntegerField(default=0)
        level = IntegerField(default=0)
        acknowledged_level = IntegerField(default=0)
        snoozed_until = DateTimeField(null=True)
        next_at = DateTimeField(null=True, index=True)
        class Meta:
            database = db
            table_name = 'escalation_state'

    class EscalationRun(Model):
        incident = ForeignKeyField(Incident, on_delete='CASCADE')
        policy = ForeignKeyField(EscalationPolicy, null=True, on_delete='SET NULL')
        policy_name = CharField(max_length=64)
        version = IntegerField()
        level = IntegerField()
        cycle = IntegerField()
        at = DateTimeField()
        manual = BooleanField(default=False)
        actor = ForeignKeyField(Agent, null=True)
        reason = TextField(default='')
        state = CharField(max_length=16, default='done')
        steps_done = CharField(max_length=200, default='')
        attempts = IntegerField(default=1)
        error = TextField(default='')
        next_attempt_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'escalation_run'
            indexes = ((('incident', 'policy_name', 'version', 'level', 'cycle'), True),
                       (('state', 'next_attempt_at'), False))

    class Watcher(Model):
        incident = ForeignKeyField(Incident, on_delete='CASCADE')
        agent = ForeignKeyField(Agent, on_delete='CASCADE')
        added_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'watcher'
            indexes = ((('incident', 'agent'), True),)

    db.create_tables([EscalationPolicy, EscalationPolicyVersion, EscalationState, EscalationRun, Watcher])
    # Plain ALTERs: peewee's SQLite migrator would rebuild the incident table for NOT NULL.
    sqlite = isinstance(db, SqliteDatabase)
    db.execute_sql("ALTER TABLE incident ADD COLUMN escalation_level SMALLINT NOT NULL DEFAULT 0")
    db.execute_sql("ALTER TABLE incident ADD COLUMN major "
                   f"{'INTEGER NOT NULL DEFAULT 0' if sqlite else 'BOOLEAN NOT NULL DEFAULT false'}")
    # The Escalated queue: one partial index per sort, like the queues of 0011.
    for sort, column in (("updated", "updated_at"), ("created", "created_at"), ("priority", "priority")):
        db.execute_sql(f'CREATE INDEX "incident_q_escalated_{sort}" ON "incident" ({column}, id) '
                       "WHERE status IN ('new', 'assigned', 'in_progress', 'pending') "
                       "AND escalation_level > 0")


def down(migrator, db):
    for sort in ("updated", "created", "priority"):
        db.execute_sql(f'DROP INDEX "incident_q_escalated_{sort}"')
    migrator.migrate(migrator.drop_column('incident', 'major'),
                     migrator.drop_column('incident', 'escalation_level'))
    for table in ('watcher', 'escalation_run', 'escalation_state', 'escalation_policy_version',
                  'escalation_policy'):
        migrator.migrate(migrator.drop_table(table))
