"""Times to respond and to resolve count under the team the target was met in.

0035 put each SLA outcome (met, late, breached) under the team that owned the incident when
it was decided, but the time it took stayed with the incident's owning team now: hand an
answered incident to another team and the first team's answer time moved to the second
team's report. The report rows (``report_day``'s ``*_n``/``*_sum``, ``report_duration``'s
histogram counts) are moved for the facts whose target was met under another team than the
one owning them now; every other fact adds to the same row as before. Frozen on purpose:
the histogram buckets are copied here.
"""

import math

MEASURES = ("response_business", "response_wall", "resolution_business", "resolution_wall")
KEYS = ("day", "owner_team", "owner_agent", "priority", "service", "category")


def bucket(seconds):
    if seconds < 60:
        return 0
    return min(90, 1 + int(math.log(seconds / 60) / math.log(1.25) + 1e-9))


_COLUMNS = {}


def _add(db, table, key, columns):
    """Add ``columns`` (name -> value) to the row of ``key``, creating it if need be."""
    keys = KEYS if table == "report_day" else (*KEYS, "measure", "bucket")
    if table not in _COLUMNS:
        _COLUMNS[table] = [c.name for c in db.get_columns(table)]
    # Every count starts at 0 (the columns have no default in the database: peewee fills them in)
    zeros = [name for name in _COLUMNS[table] if name not in ("id", *keys, *columns)]
    names = (*keys, *columns, *zeros)
    values = [*key, *columns.values(), *([0] * len(zeros))]
    update = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in columns)
    db.execute_sql(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join([db.param] * len(values))}) "
                   f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {update}", values)


def move(db, back=False):
    """Move the met targets' times from the owning team's rows to the team they were met in
    (``back``: the other way)."""
    _COLUMNS.clear()
    facts = db.execute_sql(
        "SELECT created_day, owner_team, owner_agent, priority, service, category, response_team, "
        "resolution_team, response_business_seconds, response_wall_seconds, resolution_business_seconds, "
        "resolution_wall_seconds FROM incident_fact WHERE "
        "(response_team IS NOT NULL AND response_team <> owner_team "
        "AND response_business_seconds IS NOT NULL) "
        "OR (resolution_team IS NOT NULL AND resolution_team <> owner_team "
        "AND resolution_business_seconds IS NOT NULL)").fetchall()
    for fact in facts:
        day, team, agent, priority, service, category = fact[:6]
        teams = {"response": fact[6], "resolution": fact[7]}
        seconds = dict(zip(MEASURES, fact[8:], strict=True))
        for index, measure in enumerate(MEASURES):
            met_team = teams[measure.split("_")[0]]
            value = seconds[measure]
            if value is None or met_team is None or met_team == team:
                continue
            owning = (day, team, agent or 0, priority, service or 0, category or 0)
            met = (day, met_team, *owning[2:])
            for key, sign in ((owning, 1 if back else -1), (met, -1 if back else 1)):
                _add(db, "report_day", key, {f"{measure}_n": sign, f"{measure}_sum": sign * value})
                _add(db, "report_duration", (*key, index, bucket(value)), {"count": sign})


def up(migrator, db):
    move(db)


def down(migrator, db):
    move(db, back=True)
