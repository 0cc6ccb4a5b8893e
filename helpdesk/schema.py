"""Schema migrations, applied in order and recorded in the database.

Every schema change from the first release on is a numbered script in
``helpdesk/migrations`` (peewee's migration runner), so an existing database
is upgraded in place and never needs to be wiped.
"""

from __future__ import annotations

from pathlib import Path

import peewee
from playhouse.migrations import Runner

MIGRATIONS = Path(__file__).with_name("migrations")


def runner(database: peewee.Database | peewee.DatabaseProxy) -> Runner:
    real = database.obj if isinstance(database, peewee.DatabaseProxy) else database
    return Runner(real, str(MIGRATIONS), table_name="schema_migration")


def pending(database: peewee.Database) -> list[str]:
    """Names of the migrations not yet applied."""
    return [m.name for m in runner(database).status() if m.path and not m.applied]


def upgrade(database: peewee.Database) -> list[str]:
    """Apply every pending migration; return the names applied."""
    return runner(database).up()
