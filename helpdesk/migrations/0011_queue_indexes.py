"""Queue pages that cost the same at any size: the SLA state on the incident row, kept by
triggers in the same statement as every clock change, and one partial index per queue and
sort (leading with the queue's own condition, ending with the id for keyset pages).

Frozen on purpose: the index list and the trigger body are copied here, not imported.
"""

from peewee import SqliteDatabase

INDEXES = (
    ("incident_q_open_updated", "updated_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending')"),
    ("incident_q_open_created", "created_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending')"),
    ("incident_q_open_priority", "priority, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending')"),
    ("incident_q_assignee_updated", "assigned_agent_id, updated_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending')"),
    ("incident_q_assignee_created", "assigned_agent_id, created_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending')"),
    ("incident_q_assignee_priority", "assigned_agent_id, priority, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending')"),
    ("incident_q_owner_updated", "owner_agent_id, updated_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending')"),
    ("incident_q_owner_created", "owner_agent_id, created_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending')"),
    ("incident_q_owner_priority", "owner_agent_id, priority, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending')"),
    ("incident_q_assigned_team_updated", "assigned_team_id, updated_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending')"),
    ("incident_q_assigned_team_created", "assigned_team_id, created_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending')"),
    ("incident_q_assigned_team_priority", "assigned_team_id, priority, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending')"),
    ("incident_q_owner_team_updated", "owner_team_id, updated_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending')"),
    ("incident_q_owner_team_created", "owner_team_id, created_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending')"),
    ("incident_q_owner_team_priority", "owner_team_id, priority, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending')"),
    ("incident_q_unassigned_updated", "updated_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending') AND assigned_agent_id IS NULL"),
    ("incident_q_unassigned_created", "created_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending') AND assigned_agent_id IS NULL"),
    ("incident_q_unassigned_priority", "priority, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending') AND assigned_agent_id IS NULL"),
    ("incident_q_unowned_updated", "updated_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending') AND owner_agent_id IS NULL"),
    ("incident_q_unowned_created", "created_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending') AND owner_agent_id IS NULL"),
    ("incident_q_unowned_priority", "priority, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending') AND owner_agent_id IS NULL"),
    ("incident_q_breached_updated", "updated_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending') AND sla_breached"),
    ("incident_q_breached_created", "created_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending') AND sla_breached"),
    ("incident_q_breached_priority", "priority, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending') AND sla_breached"),
    ("incident_q_risk_owner_updated", "owner_agent_id, updated_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending') AND sla_due_at IS NOT NULL"),
    ("incident_q_risk_owner_created", "owner_agent_id, created_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending') AND sla_due_at IS NOT NULL"),
    ("incident_q_risk_owner_priority", "owner_agent_id, priority, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending') AND sla_due_at IS NOT NULL"),
    ("incident_q_risk_owner_due", "owner_agent_id, sla_due_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending') AND sla_due_at IS NOT NULL"),
    ("incident_q_risk_owner_team_updated", "owner_team_id, updated_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending') AND sla_due_at IS NOT NULL"),
    ("incident_q_risk_owner_team_created", "owner_team_id, created_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending') AND sla_due_at IS NOT NULL"),
    ("incident_q_risk_owner_team_priority", "owner_team_id, priority, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending') AND sla_due_at IS NOT NULL"),
    ("incident_q_risk_owner_team_due", "owner_team_id, sla_due_at, id",
     "status IN ('new', 'assigned', 'in_progress', 'pending') AND sla_due_at IS NOT NULL"),
)

# The incident's SLA summary from its clocks; {id} is the incident id expression.
DUE = (
    "CASE WHEN EXISTS (SELECT 1 FROM sla_clock c WHERE c.incident_id = {id} "
    "AND c.breached_at IS NOT NULL AND c.met_at IS NULL) THEN NULL ELSE COALESCE("
    "(SELECT c.due_at FROM sla_clock c WHERE c.incident_id = {id} AND c.target = 'response' "
    "AND c.met_at IS NULL AND c.stopped_at IS NULL), "
    "(SELECT c.due_at FROM sla_clock c WHERE c.incident_id = {id} AND c.target = 'resolution')) END"
)
BREACHED = "EXISTS (SELECT 1 FROM sla_clock c WHERE c.incident_id = {id} AND c.breached_at IS NOT NULL)"


def summary(incident_id):
    return (f"UPDATE incident SET sla_due_at = {DUE.format(id=incident_id)}, "
            f"sla_breached = {BREACHED.format(id=incident_id)}")


def backfill(db):
    """The summary of every incident that has clocks (all rows written before 0011)."""
    db.execute_sql(f"{summary('incident.id')} WHERE id IN (SELECT incident_id FROM sla_clock)")


def up(migrator, db):
    sqlite = isinstance(db, SqliteDatabase)
    # Plain ALTERs (peewee's SQLite migrator would rebuild the table for NOT NULL).
    db.execute_sql(f"ALTER TABLE incident ADD COLUMN sla_due_at {'DATETIME' if sqlite else 'TIMESTAMP'}")
    db.execute_sql("ALTER TABLE incident ADD COLUMN sla_breached "
                   f"{'INTEGER NOT NULL DEFAULT 0' if sqlite else 'BOOLEAN NOT NULL DEFAULT false'}")
    if sqlite:
        for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
            db.execute_sql(
                f"CREATE TRIGGER sla_clock_summary_{event.lower()} AFTER {event} ON sla_clock "
                f"BEGIN {summary(f'{row}.incident_id')} WHERE id = {row}.incident_id; END")
    else:
        db.execute_sql(
            "CREATE FUNCTION incident_sla_summary() RETURNS trigger AS $$ "
            "DECLARE target_id integer; BEGIN "
            "IF TG_OP = 'DELETE' THEN target_id := OLD.incident_id; "
            "ELSE target_id := NEW.incident_id; END IF; "
            f"{summary('target_id')} WHERE id = target_id; RETURN NULL; END; "
            "$$ LANGUAGE plpgsql")
        db.execute_sql(
            "CREATE TRIGGER sla_clock_summary AFTER INSERT OR UPDATE OR DELETE ON sla_clock "
            "FOR EACH ROW EXECUTE FUNCTION incident_sla_summary()")
    backfill(db)
    for name, columns, condition in INDEXES:
        db.execute_sql(f'CREATE INDEX "{name}" ON "incident" ({columns}) WHERE {condition}')
    if sqlite:
        db.execute_sql("ANALYZE")
    else:
        db.execute_sql("ANALYZE incident")


def down(migrator, db):
    for name, _columns, _condition in INDEXES:
        db.execute_sql(f'DROP INDEX IF EXISTS "{name}"')
    if isinstance(db, SqliteDatabase):
        for event in ("insert", "update", "delete"):
            db.execute_sql(f"DROP TRIGGER IF EXISTS sla_clock_summary_{event}")
    else:
        db.execute_sql("DROP TRIGGER IF EXISTS sla_clock_summary ON sla_clock")
        db.execute_sql("DROP FUNCTION IF EXISTS incident_sla_summary()")
    db.execute_sql("ALTER TABLE incident DROP COLUMN sla_breached")
    db.execute_sql("ALTER TABLE incident DROP COLUMN sla_due_at")
