"""Report facts (one narrow row per incident, see helpdesk/reports.py) and full-text search
documents: an FTS5 table on SQLite, a tsvector with a GIN index on PostgreSQL (see
helpdesk/search.py for what they hold).

Existing incidents are counted and indexed by `helpdesk reports rebuild` and
`helpdesk search rebuild` (both derive from code a frozen migration must not import).
Frozen on purpose.
"""

from peewee import *


def up(migrator, db):
    class IncidentFact(Model):
        incident_id = IntegerField(primary_key=True)
        created_at = DateTimeField()
        created_day = CharField(max_length=10)
        resolved_day = CharField(max_length=10, null=True)
        owner_team = IntegerField()
        owner_agent = IntegerField(null=True)
        assigned_team = IntegerField(null=True)
        priority = SmallIntegerField()
        category = IntegerField(null=True)
        service = IntegerField(null=True)
        status = CharField(max_length=20)
        resolved_count = IntegerField(default=0)
        reopen_count = IntegerField(default=0)
        next_breach_at = DateTimeField(null=True)
        response_outcome = CharField(max_length=8, default='none')
        response_breach_at = DateTimeField(null=True)
        response_business_seconds = IntegerField(null=True)
        response_wall_seconds = IntegerField(null=True)
        resolution_outcome = CharField(max_length=8, default='none')
        resolution_breach_at = DateTimeField(null=True)
        resolution_business_seconds = IntegerField(null=True)
        resolution_wall_seconds = IntegerField(null=True)

        class Meta:
            database = db
            table_name = 'incident_fact'
            indexes = (
                (('created_day',), False),
                (('resolved_day',), False),
                (('owner_team', 'created_day'), False),
                (('owner_agent', 'next_breach_at'), False),
            )
    db.create_tables([IncidentFact])

    if isinstance(db, SqliteDatabase):
        db.execute_sql(
            "CREATE VIRTUAL TABLE search_document USING fts5(title, public, internal, "
            "tokenize = \"unicode61 remove_diacritics 0 tokenchars '_'\")"
        )
    else:
        db.execute_sql(
            "CREATE TABLE search_document (incident_id INTEGER PRIMARY KEY "
            "REFERENCES incident (id) ON DELETE CASCADE, vector TSVECTOR NOT NULL)"
        )
        db.execute_sql("CREATE INDEX search_document_vector ON search_document USING GIN (vector)")


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS search_document")
    db.execute_sql("DROP TABLE IF EXISTS incident_fact")
