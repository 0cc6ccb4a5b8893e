"""Customer communication: inbound mail (exactly once, quarantine), portal sign-in links, attachments,
customers as authors of timeline entries, failing contact addresses. Frozen on purpose.
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

    class TimelineEntry(Model):
        class Meta:
            database = db
            table_name = 'timeline_entry'

    class InboundMail(Model):
        key = CharField(max_length=64, unique=True)
        message_id = TextField(default='')
        sender = CharField(max_length=254, default='')
        subject = CharField(max_length=300, default='')
        received_at = DateTimeField(index=True)
        raw_path = CharField(max_length=200, default='')
        size = IntegerField(default=0)
        automatic = BooleanField(default=False)
        outcome = CharField(max_length=16, index=True)
        reason = TextField(default='')
        full_text = TextField(default='')
        incident = ForeignKeyField(Incident, null=True, on_delete='SET NULL')
        entry = ForeignKeyField(TimelineEntry, null=True)
        contact = ForeignKeyField(Contact, null=True)
        handled_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'inbound_mail'

    class PortalToken(Model):
        contact = ForeignKeyField(Contact, on_delete='CASCADE')
        token_hash = CharField(max_length=64, unique=True)
        created_at = DateTimeField()
        expires_at = DateTimeField()
        used_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'portal_token'

    class Agent(Model):
        class Meta:
            database = db
            table_name = 'agent'

    class Attachment(Model):
        incident = ForeignKeyField(Incident, on_delete='CASCADE')
        entry = ForeignKeyField(TimelineEntry, null=True)
        sha256 = CharField(max_length=64, index=True)
        size = IntegerField()
        filename = CharField(max_length=200)
        content_type = CharField(max_length=100)
        contact = ForeignKeyField(Contact, null=True)
        agent = ForeignKeyField(Agent, null=True)
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'attachment'

    db.create_tables([InboundMail, PortalToken, Attachment])
    migrator.migrate(
        migrator.add_column('timeline_entry', 'contact_id',
                            ForeignKeyField(Contact, null=True, field=Contact.id)),
        migrator.add_column('contact', 'email_failing_at', DateTimeField(null=True)),
    )


def down(migrator, db):
    migrator.migrate(migrator.drop_column('contact', 'email_failing_at'),
                     migrator.drop_column('timeline_entry', 'contact_id'))
    migrator.migrate(migrator.drop_table('attachment'), migrator.drop_table('portal_token'),
                     migrator.drop_table('inbound_mail'))
