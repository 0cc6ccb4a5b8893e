"""The queue console: a row density per agent, saved views (filters, sort, columns; shared
with a team), and a due-time sort for every queue (one partial index per queue, on the
nearest running due time with rows that have none last). Frozen on purpose.
"""

from peewee import SqliteDatabase

ACTIVE = "status IN ('new', 'assigned', 'in_progress', 'pending')"
DUE = "COALESCE(sla_due_at, '9999-12-31 00:00:00')"
# name -> (leading column or None, extra condition or None), as in 0011 (the risk queues
# already have a due index on the plain column: their rows all have a due time)
KEYS = (
    ("open", None, None),
    ("assignee", "assigned_agent_id", None),
    ("owner", "owner_agent_id", None),
    ("assigned_team", "assigned_team_id", None),
    ("owner_team", "owner_team_id", None),
    ("unassigned", None, "assigned_agent_id IS NULL"),
    ("unowned", None, "owner_agent_id IS NULL"),
    ("breached", None, "sla_breached"),
    ("escalated", None, "escalation_level > 0"),
)


def up(migrator, db):
    sqlite = isinstance(db, SqliteDatabase)
    db.execute_sql("ALTER TABLE agent ADD COLUMN queue_density VARCHAR(16) NOT NULL "
                   "DEFAULT 'comfortable'")
    key = "INTEGER NOT NULL PRIMARY KEY" if sqlite else "SERIAL NOT NULL PRIMARY KEY"
    stamp = "DATETIME" if sqlite else "TIMESTAMP"
    db.execute_sql(
        f'CREATE TABLE "saved_view" ("id" {key}, '
        '"owner_id" INTEGER NOT NULL REFERENCES "agent" ("id") ON DELETE CASCADE, '
        '"team_id" INTEGER REFERENCES "team" ("id") ON DELETE SET NULL, '
        '"name" VARCHAR(60) NOT NULL, "queue" VARCHAR(16) NOT NULL, "filters" TEXT NOT NULL, '
        f'"columns" VARCHAR(200) NOT NULL, "created_at" {stamp} NOT NULL)')
    db.execute_sql('CREATE INDEX "saved_view_owner_id" ON "saved_view" ("owner_id")')
    db.execute_sql('CREATE INDEX "saved_view_team_id" ON "saved_view" ("team_id")')
    db.execute_sql('CREATE UNIQUE INDEX "saved_view_owner_id_name" ON "saved_view" ("owner_id", "name")')
    for name, lead, extra in KEYS:
        columns = ", ".join(c for c in (lead, DUE, "id") if c)
        condition = ACTIVE + (f" AND {extra}" if extra else "")
        db.execute_sql(f'CREATE INDEX "incident_q_{name}_due" ON "incident" ({columns}) WHERE {condition}')
    db.execute_sql("ANALYZE" if sqlite else "ANALYZE incident")


def down(migrator, db):
    for name, _lead, _extra in KEYS:
        db.execute_sql(f'DROP INDEX IF EXISTS "incident_q_{name}_due"')
    db.execute_sql('DROP TABLE IF EXISTS "saved_view"')
    db.execute_sql("ALTER TABLE agent DROP COLUMN queue_density")
