"""API tokens (stored hashed), the answers kept for idempotent POSTs, and monitoring alert
groups (one row per source and fingerprint). Frozen on purpose.
"""
from peewee import *


def up(migrator, db):
    class Agent(Model):
        class Meta:
            database = db
            table_name = 'agent'

    class Incident(Model):
        class Meta:
            database = db
            table_name = 'incident'

    class ApiToken(Model):
        kind = CharField(max_length=16)
        name = CharField(max_length=100)
        agent = ForeignKeyField(Agent, on_delete='CASCADE')
        created_by = ForeignKeyField(Agent, null=True, on_delete='SET NULL')
        secret_hash = CharField(max_length=64, unique=True)
        hint = CharField(max_length=16)
        scopes = CharField(max_length=100)
        rate_limit = IntegerField(default=120)
        resolve_alerts = BooleanField(default=False)
        created_at = DateTimeField()
        expires_at = DateTimeField(null=True)
        last_used_at = DateTimeField(null=True)
        revoked_at = DateTimeField(null=True)
        window_start = DateTimeField(null=True)
        window_count = IntegerField(default=0)
        class Meta:
            database = db
            table_name = 'api_token'

    class ApiIdempotency(Model):
        token = ForeignKeyField(ApiToken, on_delete='CASCADE')
        key = CharField(max_length=200)
        request_hash = CharField(max_length=64)
        status = IntegerField()
        body = TextField()
        location = CharField(max_length=300, default='')
        created_at = DateTimeField(index=True)
        class Meta:
            database = db
            table_name = 'api_idempotency'
            indexes = ((('token', 'key'), True),)

    class AlertGroup(Model):
        source = CharField(max_length=100)
        fingerprint = CharField(max_length=200)
        incident = ForeignKeyField(Incident, on_delete='CASCADE')
        state = CharField(max_length=16)
        count = IntegerField(default=1)
        flaps = IntegerField(default=0)
        first_seen = DateTimeField()
        last_seen = DateTimeField()
        changed_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'alert_group'
            indexes = ((('source', 'fingerprint'), True),)

    db.create_tables([ApiToken, ApiIdempotency, AlertGroup])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('alert_group'))
    migrator.migrate(migrator.drop_table('api_idempotency'))
    migrator.migrate(migrator.drop_table('api_token'))
