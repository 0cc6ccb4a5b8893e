"""Configuration in the browser: stored plugin settings, their audit trail (whose highest id
is the settings revision each process checks), and teams that can be deactivated.

Frozen on purpose.
"""
from peewee import *


def up(migrator, db):
    class Agent(Model):
        class Meta:
            database = db
            table_name = 'agent'

    class StoredSetting(Model):
        key = CharField(max_length=120, unique=True)
        value = TextField()
        updated_at = DateTimeField()
        updated_by = ForeignKeyField(Agent, null=True, backref='+', on_delete='SET NULL')
        class Meta:
            database = db
            table_name = 'stored_setting'

    class ConfigChange(Model):
        key = CharField(max_length=160, index=True)
        old_value = TextField()
        new_value = TextField()
        actor = ForeignKeyField(Agent, null=True, backref='+', on_delete='SET NULL')
        at = DateTimeField()
        class Meta:
            database = db
            table_name = 'config_change'

    db.create_tables([StoredSetting, ConfigChange])
    migrator.migrate(migrator.add_column('team', 'active', BooleanField(default=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column('team', 'active'))
    migrator.migrate(migrator.drop_table('config_change'), migrator.drop_table('stored_setting'))
