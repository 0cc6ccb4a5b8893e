"""Customers' portal sessions kept server-side, so sign-out and a new password end them.
Frozen on purpose.
"""
from peewee import *


def up(migrator, db):
    class Contact(Model):
        class Meta:
            database = db
            table_name = 'contact'

    class CustomerSession(Model):
        token_hash = CharField(max_length=64, unique=True)
        contact = ForeignKeyField(Contact, backref='+', on_delete='CASCADE')
        created_at = DateTimeField()
        last_seen_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'customer_session'

    db.create_tables([CustomerSession])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('customer_session'))
