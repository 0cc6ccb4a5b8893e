"""Paused SLA clocks left by versions before the breach-before-a-pause rule: a clock paused after
its target ran out (no check came in between) was stored with no due time and nothing
scheduled, so it showed "Paused", was never announced and missed the Breached queue. Every
paused, open, unbreached clock without a due time is handed to the SLA check once (its
``next_event_at`` set to the pause), through the check's own index: the check measures it in
its calendar and either announces the breach that happened before the pause or finds it just
paused and schedules nothing again. Plain SQL, no model: frozen on purpose."""


def up(migrator, db):
    db.execute_sql("UPDATE sla_clock SET next_event_at = paused_at WHERE paused_at IS NOT NULL "
                   "AND due_at IS NULL AND next_event_at IS NULL AND breached_at IS NULL "
                   "AND met_at IS NULL AND stopped_at IS NULL")


def down(migrator, db):
    pass  # the check already settled the clocks it was handed; nothing to undo
