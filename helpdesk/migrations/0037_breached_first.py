""""Nearest SLA breach" puts breached incidents first, most overdue first.

A breached, unmet target leaves an incident no running due time (``sla_due_at`` is NULL), so
the due sort put it after every incident with time left and after those with no SLA at all:
the most urgent work at the bottom of the page. ``incident.sla_overdue_since`` (the earliest
breach of a target still unmet, NULL otherwise) is kept by the SLA summary triggers beside
``sla_due_at``, and every queue's due index (0016) now reads
``COALESCE(sla_due_at, sla_overdue_since, '9999-12-31 00:00:00')``. At risk (whose rows all
have a running due time) is unchanged. Frozen on purpose: the summary is copied here.
"""

from peewee import SqliteDatabase

ACTIVE = "status IN ('new', 'assigned', 'in_progress', 'pending')"
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
OLD_DUE = "COALESCE(sla_due_at, '9999-12-31 00:00:00')"
NEW_DUE = "COALESCE(sla_due_at, sla_overdue_since, '9999-12-31 00:00:00')"

UNMET = "c.incident_id = {id} AND c.breached_at IS NOT NULL AND c.met_at IS NULL"
DUE = (
    f"CASE WHEN EXISTS (SELECT 1 FROM sla_clock c WHERE {UNMET}) THEN NULL ELSE COALESCE("
    "(SELECT c.due_at FROM sla_clock c WHERE c.incident_id = {id} AND c.target = 'response' "
    "AND c.met_at IS NULL AND c.stopped_at IS NULL), "
    "(SELECT c.due_at FROM sla_clock c WHERE c.incident_id = {id} AND c.target = 'resolution')) END"
)
BREACHED = "EXISTS (SELECT 1 FROM sla_clock c WHERE c.incident_id = {id} AND c.breached_at IS NOT NULL)"
OVERDUE = f"(SELECT MIN(c.breached_at) FROM sla_clock c WHERE {UNMET})"


def summary(incident_id, differs, overdue=True):
    """The UPDATE of one incident's summary, written only when it moves (as 0025)."""
    values = {"sla_due_at": DUE.format(id=incident_id), "sla_breached": BREACHED.format(id=incident_id)}
    if overdue:
        values["sla_overdue_since"] = OVERDUE.format(id=incident_id)
    sets = ", ".join(f"{column} = {value}" for column, value in values.items())
    moved = " OR ".join(f"{column} {differs} ({value})" for column, value in values.items())
    return f"UPDATE incident SET {sets} WHERE id = {incident_id} AND ({moved})"


def _triggers(db, overdue):
    if isinstance(db, SqliteDatabase):
        for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
            db.execute_sql(f"DROP TRIGGER IF EXISTS sla_clock_summary_{event.lower()}")
            db.execute_sql(
                f"CREATE TRIGGER sla_clock_summary_{event.lower()} AFTER {event} ON sla_clock "
                f"BEGIN {summary(f'{row}.incident_id', 'IS NOT', overdue)}; END")
    else:
        db.execute_sql(
            "CREATE OR REPLACE FUNCTION incident_sla_summary() RETURNS trigger AS $$ "
            "DECLARE target_id integer; BEGIN "
            "IF TG_OP = 'DELETE' THEN target_id := OLD.incident_id; "
            "ELSE target_id := NEW.incident_id; END IF; "
            f"{summary('target_id', 'IS DISTINCT FROM', overdue)}; RETURN NULL; END; "
            "$$ LANGUAGE plpgsql")


def _due_indexes(db, due):
    for name, lead, extra in KEYS:
        db.execute_sql(f'DROP INDEX IF EXISTS "incident_q_{name}_due"')
        columns = ", ".join(c for c in (lead, due, "id") if c)
        condition = ACTIVE + (f" AND {extra}" if extra else "")
        db.execute_sql(f'CREATE INDEX "incident_q_{name}_due" ON "incident" ({columns}) WHERE {condition}')


def backfill(db):
    """Every incident with a breached target still unmet (only those have ``sla_breached``)."""
    db.execute_sql(f"UPDATE incident SET sla_overdue_since = {OVERDUE.format(id='incident.id')} "
                   "WHERE sla_breached")


def up(migrator, db):
    sqlite = isinstance(db, SqliteDatabase)
    db.execute_sql(f"ALTER TABLE incident ADD COLUMN sla_overdue_since {'DATETIME' if sqlite else 'TIMESTAMP'}")
    backfill(db)
    _triggers(db, overdue=True)
    _due_indexes(db, NEW_DUE)
    db.execute_sql("ANALYZE" if sqlite else "ANALYZE incident")


def down(migrator, db):
    _triggers(db, overdue=False)
    _due_indexes(db, OLD_DUE)
    db.execute_sql("ALTER TABLE incident DROP COLUMN sla_overdue_since")
