"""An index on a delivery's recipient: a delivery failure report is believed only for an address
we sent the quoted message to, and that is looked up per report, inside the intake's
transaction. Frozen on purpose."""


def up(migrator, db):
    db.execute_sql("CREATE INDEX IF NOT EXISTS delivery_recipient ON delivery (recipient)")


def down(migrator, db):
    db.execute_sql("DROP INDEX IF EXISTS delivery_recipient")
