"""The SLA summary triggers of 0011 write the incident row only when its summary changes.

Every clock insert or update rewrote ``incident.sla_due_at`` and ``sla_breached``, even to
the values they held: a create's second clock and most clock updates (the next warning's
time, a pause) rewrote the row and its ~20 SLA-keyed queue indexes for nothing (~0.3 ms a
clock on SQLite). The summary itself is unchanged. Frozen on purpose: the summary is
copied here, not imported.
"""

from peewee import SqliteDatabase

DUE = (
    "CASE WHEN EXISTS (SELECT 1 FROM sla_clock c WHERE c.incident_id = {id} "
    "AND c.breached_at IS NOT NULL AND c.met_at IS NULL) THEN NULL ELSE COALESCE("
    "(SELECT c.due_at FROM sla_clock c WHERE c.incident_id = {id} AND c.target = 'response' "
    "AND c.met_at IS NULL AND c.stopped_at IS NULL), "
    "(SELECT c.due_at FROM sla_clock c WHERE c.incident_id = {id} AND c.target = 'resolution')) END"
)
BREACHED = "EXISTS (SELECT 1 FROM sla_clock c WHERE c.incident_id = {id} AND c.breached_at IS NOT NULL)"


def summary(incident_id, differs):
    """The UPDATE of one incident's summary; ``differs``: the database's null-safe "not
    equal" (None: write it whatever it holds, as 0011 did)."""
    due, breached = DUE.format(id=incident_id), BREACHED.format(id=incident_id)
    update = f"UPDATE incident SET sla_due_at = {due}, sla_breached = {breached} WHERE id = {incident_id}"
    if differs is None:
        return update
    return f"{update} AND (sla_due_at {differs} ({due}) OR sla_breached {differs} ({breached}))"


def _triggers(db, differs):
    if isinstance(db, SqliteDatabase):
        for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
            db.execute_sql(f"DROP TRIGGER IF EXISTS sla_clock_summary_{event.lower()}")
            db.execute_sql(
                f"CREATE TRIGGER sla_clock_summary_{event.lower()} AFTER {event} ON sla_clock "
                f"BEGIN {summary(f'{row}.incident_id', differs and 'IS NOT')}; END")
    else:
        db.execute_sql(
            "CREATE OR REPLACE FUNCTION incident_sla_summary() RETURNS trigger AS $$ "
            "DECLARE target_id integer; BEGIN "
            "IF TG_OP = 'DELETE' THEN target_id := OLD.incident_id; "
            "ELSE target_id := NEW.incident_id; END IF; "
            f"{summary('target_id', differs and 'IS DISTINCT FROM')}; RETURN NULL; END; "
            "$$ LANGUAGE plpgsql")


def up(migrator, db):
    _triggers(db, differs=True)


def down(migrator, db):
    _triggers(db, differs=None)
