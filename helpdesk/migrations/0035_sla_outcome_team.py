"""The team an SLA target's outcome belongs to: the incident's owning team when the target was
met, breached or stopped, so handing an incident to another team afterwards leaves the met
target or the breach on the account of the team that had it. Reports count each target under
it (``incident_fact.response_team`` and ``resolution_team``, copied from the clocks).

Clocks decided before this migration take the incident's current owning team (the best
available: ownership changes were recorded as display text only); their report facts follow,
so the aggregates, counted under the current owner until now, stay as they are. Frozen on
purpose."""

from peewee import IntegerField

DECIDED = "met_at IS NOT NULL OR breached_at IS NOT NULL OR stopped_at IS NOT NULL"


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("sla_clock", "outcome_team", IntegerField(null=True)),
        migrator.add_column("incident_fact", "response_team", IntegerField(null=True)),
        migrator.add_column("incident_fact", "resolution_team", IntegerField(null=True)),
    )
    backfill(db)


def backfill(db):
    """The decided clocks' team (the incident's owning team now), then their facts'."""
    db.execute_sql("UPDATE sla_clock SET outcome_team = (SELECT owner_team_id FROM incident "
                   f"WHERE incident.id = sla_clock.incident_id) WHERE {DECIDED}")
    for target in ("response", "resolution"):
        db.execute_sql(f"UPDATE incident_fact SET {target}_team = (SELECT outcome_team FROM sla_clock "
                       "WHERE sla_clock.incident_id = incident_fact.incident_id "
                       f"AND sla_clock.target = '{target}')")


def down(migrator, db):
    migrator.migrate(
        migrator.drop_column("incident_fact", "resolution_team"),
        migrator.drop_column("incident_fact", "response_team"),
        migrator.drop_column("sla_clock", "outcome_team"),
    )
