"""The portal grows up: a customer may set a password, an organisation may share its
incidents among its contacts, and a customer may rate a resolution. Frozen on purpose.
"""
from peewee import *


def up(migrator, db):
    class Contact(Model):
        class Meta:
            database = db
            table_name = 'contact'

    class Incident(Model):
        class Meta:
            database = db
            table_name = 'incident'

    class Rating(Model):
        incident = ForeignKeyField(Incident, unique=True, on_delete='CASCADE')
        contact = ForeignKeyField(Contact, null=True, on_delete='SET NULL')
        score = SmallIntegerField()
        comment = TextField(default='')
        created_at = DateTimeField()
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'rating'

    # Plain ALTERs: nullable or defaulted columns, so SQLite adds them in place.
    db.execute_sql('ALTER TABLE contact ADD COLUMN password_hash VARCHAR(200)')
    db.execute_sql('ALTER TABLE organisation ADD COLUMN share_incidents BOOLEAN NOT NULL DEFAULT FALSE')
    db.create_tables([Rating])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('rating'))
    migrator.migrate(migrator.drop_column('organisation', 'share_incidents'),
                     migrator.drop_column('contact', 'password_hash'))
