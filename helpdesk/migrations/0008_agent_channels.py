"""Agents' channel settings become generic (one row per agent and channel type), notices carry
their delivery's key, and deliveries may expire.

The former columns agent.notify_email and agent.chat_url are carried over
before they are dropped: e-mail switched off becomes a disabled "email" row,
a chat URL becomes the "url" value of an enabled "chat" row. Frozen on purpose.
"""
import json

from peewee import *


def up(migrator, db):
    class Agent(Model):
        class Meta:
            database = db
            table_name = 'agent'

    class AgentChannel(Model):
        agent = ForeignKeyField(Agent, on_delete='CASCADE')
        channel = CharField(max_length=64)
        enabled = BooleanField(default=True)
        values = TextField(default='{}')
        class Meta:
            database = db
            table_name = 'agent_channel'
            indexes = ((('agent', 'channel'), True),)
    db.create_tables([AgentChannel])

    rows = []
    cursor = db.execute_sql('SELECT id, notify_email, chat_url FROM agent ORDER BY id')
    for agent_id, notify_email, chat_url in cursor.fetchall():
        if not notify_email:
            rows.append({'agent': agent_id, 'channel': 'email', 'enabled': False, 'values': '{}'})
        if chat_url:
            rows.append({'agent': agent_id, 'channel': 'chat', 'enabled': True,
                         'values': json.dumps({'url': chat_url}, sort_keys=True)})
    if rows:
        AgentChannel.insert_many(rows).execute()

    migrator.migrate(migrator.drop_column('agent', 'notify_email'))
    migrator.migrate(migrator.drop_column('agent', 'chat_url'))
    migrator.migrate(migrator.add_column('notice', 'key', CharField(null=True, max_length=200)))
    migrator.migrate(migrator.add_index('notice', ('key',), True))
    migrator.migrate(migrator.add_column('delivery', 'expires_at', DateTimeField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column('delivery', 'expires_at'))
    migrator.migrate(migrator.drop_index('notice', 'notice_key'))
    migrator.migrate(migrator.drop_column('notice', 'key'))
    migrator.migrate(migrator.add_column('agent', 'notify_email', BooleanField(default=True)))
    migrator.migrate(migrator.add_column('agent', 'chat_url', CharField(null=True, max_length=500)))
    migrator.migrate(migrator.drop_table('agent_channel'))
