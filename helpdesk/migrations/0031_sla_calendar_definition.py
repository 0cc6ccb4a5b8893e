"""What each business calendar held when the SLA check last saw it, not only a hash of it: its
zone, weekly hours and the holidays of the years it was compared over. A new year moves those
years; comparing the holidays of the years both sightings cover tells a calendar an admin
changed from one that was only seen in another year. Frozen on purpose."""

from peewee import TextField


def up(migrator, db):
    migrator.migrate(migrator.add_column("sla_calendar", "definition", TextField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("sla_calendar", "definition"))
