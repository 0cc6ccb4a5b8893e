"""A bulk change's result, kept a short while for the GET page the bulk bar redirects to
(Post/Redirect/Get). Frozen on purpose.
"""
from peewee import *


def up(migrator, db):
    class Agent(Model):
        class Meta:
            database = db
            table_name = 'agent'

    class BulkResult(Model):
        key = CharField(max_length=32, unique=True)
        agent = ForeignKeyField(Agent, backref='+', on_delete='CASCADE')
        result = TextField()
        created_at = DateTimeField(index=True)

        class Meta:
            database = db
            table_name = 'bulk_result'

    db.create_tables([BulkResult])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('bulk_result'))
