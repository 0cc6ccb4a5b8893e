"""A large, realistic incident pool written by bulk inserts, for benchmarks and plan tests.

Logging a million incidents through the domain would take hours; this writes the
same rows the domain would (both pairs, a timeline, SLA clocks from the configured
policy and calendars, breaches where a due time has passed) in batches. About 45 %
of incidents are active, more of the recent ones than of the old. The SLA summary on
the incident row comes from the database triggers, as it does in production.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import peewee

from helpdesk import business_time
from helpdesk.clock import now
from helpdesk.db import database, is_sqlite, write_transaction
from helpdesk.models import (
    Agent,
    Contact,
    Incident,
    Membership,
    SlaClock,
    Team,
    TimelineEntry,
)

TEAMS = ("Database", "Network", "Applications", "Desktop", "Security", "Facilities", "Telephony")
ACTIVE_MIX = (("new", 0.1), ("assigned", 0.4), ("in_progress", 0.35), ("pending", 0.15))
PRIORITY_MIX = ((1, 0.03), (2, 0.12), (3, 0.5), (4, 0.35))
SUBJECTS = ("VPN down", "Printer jam", "Slow database", "Mail bounce", "Password reset")
LEVELS = {1: ("high", "high"), 2: ("high", "medium"), 3: ("medium", "medium"), 4: ("low", "low")}


@dataclass
class Seeded:
    incidents: int
    agents: list[int]
    teams: list[int]


def _pick(rng: random.Random, mix: tuple[tuple[Any, float], ...]) -> Any:
    roll, total = rng.random(), 0.0
    for value, share in mix:
        total += share
        if roll < total:
            return value
    return mix[-1][0]


def people(state: Any, password_hash: str, agents_per_team: int = 5
           ) -> tuple[list[int], dict[int, list[int]]]:
    """Teams (the service desk first) and agents; every agent shares one password hash."""
    desk = Team.get_or_create(name=state.settings.service_desk_team)[0]
    teams = [desk] + [Team.get_or_create(name=name)[0] for name in TEAMS]
    members: dict[int, list[int]] = {}
    for team in teams:
        for n in range(agents_per_team):
            username = f"{team.name.lower().replace(' ', '')}{n}"
            agent = Agent.get_or_none(Agent.username == username) or Agent.create(
                username=username, display_name=f"{team.name} agent {n}", password_hash=password_hash)
            Membership.get_or_create(team=team, agent=agent)
            members.setdefault(team.id, []).append(agent.id)
    return [team.id for team in teams], members


def incidents(state: Any, count: int, *, years: float = 2.0, seed: int = 15, batch: int = 5000,
              progress: Callable[[int], None] | None = None) -> Seeded:
    """Add ``count`` incidents created over the last ``years``, oldest first."""
    from helpdesk import people as people_module

    rng = random.Random(seed)
    teams, members = people(state, people_module.hash_password("bench-password"))
    contacts = [Contact.create(name=f"Requester {n}", email=f"requester{n}@example.com").id
                for n in range(Contact.select().count(), 500)] or [c.id for c in Contact.select().limit(500)]
    policy = state.registry.sla_policies["priority"]
    calendars = state.registry.business_calendars
    targets_cache: dict[tuple[int, int | None], Any] = {}
    if is_sqlite():  # dozens of indexes take random inserts: keep their pages in memory (a
        # million incidents' indexes outgrow 256 MB, and seeding then slows several-fold)
        database.execute_sql(f"PRAGMA cache_size = -{262_144 if count <= 200_000 else 2_097_152}")
    end = now()
    span = dt.timedelta(days=365 * years)
    desk = teams[0]
    done = 0
    while done < count:
        rows, timeline, clocks = [], [], []
        first_id = (Incident.select(Incident.id).order_by(Incident.id.desc()).scalar() or 0) + 1
        for n in range(min(batch, count - done)):
            i = done + n
            created = end - span + span * (i + rng.random()) / count
            age = (end - created) / span  # 0: now, 1: the oldest
            active = rng.random() < 0.9 * (1 - age) ** 0.8 + 0.02
            status = _pick(rng, ACTIVE_MIX) if active else rng.choice(("closed", "closed", "resolved",
                                                                        "cancelled"))
            priority = _pick(rng, PRIORITY_MIX)
            owner_team = desk if rng.random() < 0.7 else rng.choice(teams)
            owner_agent = rng.choice(members[owner_team]) if rng.random() < 0.8 else None
            assigned_team = None if status == "new" else rng.choice(teams)
            assigned_agent = (rng.choice(members[assigned_team])
                              if assigned_team and (status != "assigned" or rng.random() < 0.5) else None)
            touched = min(end, created + dt.timedelta(hours=rng.expovariate(1 / 30)))
            finished = touched if status in {"resolved", "closed", "cancelled"} else None
            impact, urgency = LEVELS[priority]
            incident_id = first_id + n
            rows.append({
                "id": incident_id, "type": rng.choice(("incident", "incident", "service_request", "query")),
                "title": f"Incident {i}: {rng.choice(SUBJECTS)}",
                "description": "Seeded for the benchmark.", "status": status, "impact": impact,
                "urgency": urgency, "priority": priority, "requester": rng.choice(contacts),
                "source": rng.choice(("agent", "email", "portal", "phone")),
                "assigned_team": assigned_team, "assigned_agent": assigned_agent,
                "owner_team": owner_team, "owner_agent": owner_agent, "created_by": owner_agent,
                "created_at": created, "updated_at": touched,
                "pending_reason": "customer" if status == "pending" else None,
                "resolved_at": finished if status in {"resolved", "closed"} else None,
                "closed_at": finished if status in {"closed", "cancelled"} else None,
                "resolution_code": "fixed" if status in {"resolved", "closed"} else None,
                "resolution_note": "Restarted the service." if status in {"resolved", "closed"} else None,
            })
            timeline.append(_entry(incident_id, created, owner_agent, "created", body="Logged via Agent"))
            if assigned_team:
                timeline.append(_entry(incident_id, created, owner_agent, "change", field="assignee",
                                       new=f"team {assigned_team}"))
            replied = status not in {"new", "assigned"} or rng.random() < 0.3
            if replied:
                timeline.append(_entry(incident_id, touched, assigned_agent or owner_agent, "reply",
                                       body="We are looking into it."))
            if finished:
                timeline.append(_entry(incident_id, finished, assigned_agent, "change", field="status",
                                       old="In progress", new=status.replace("_", " ").capitalize()))
            key = (priority, assigned_team)
            if key not in targets_cache:
                probe = Incident(priority=priority, impact=impact, urgency=urgency,
                                 assigned_team=assigned_team, owner_team=owner_team)
                targets_cache[key] = policy.targets(state, probe)
            targets = targets_cache[key]
            calendar = calendars.get(targets.calendar) if targets.calendar else None
            for target, duration in (("response", targets.response), ("resolution", targets.resolution)):
                due = business_time.add(calendar, created, duration)
                met = (touched if target == "response" and replied
                       else finished if status in {"resolved", "closed"} else None)
                stopped = finished if status == "cancelled" or (status == "closed" and met is None) else None
                paused = touched if status == "pending" and met is None else None
                late = (met or stopped or end) > due
                breached = due if late and not (paused and (paused <= due)) else None
                clocks.append({
                    "incident": incident_id, "target": target, "policy": policy.name,
                    "calendar": targets.calendar, "target_seconds": int(duration.total_seconds()),
                    "warnings": ",".join(str(p) for p in policy.warnings), "cycle": 1,
                    "started_at": created, "paused_seconds": 0, "paused_at": paused,
                    "due_at": None if paused and not late else due, "met_at": met, "stopped_at": stopped,
                    "breached_at": breached,
                    "outcome_team": owner_team if met or stopped or breached else None,
                    "next_event_at": due if not (met or stopped or paused or late) else None,
                })
        with write_transaction():
            for model, values in ((Incident, rows), (TimelineEntry, timeline), (SlaClock, clocks)):
                _insert(model, values)
        done += len(rows)
        if progress:
            progress(done)
    if not is_sqlite():  # the serial sequence after explicit ids
        database.execute_sql("SELECT setval(pg_get_serial_sequence('incident', 'id'), "
                             "(SELECT MAX(id) FROM incident))")
    analyse()
    return Seeded(count, [a for ids in members.values() for a in ids], teams)


def _entry(incident_id: int, at: dt.datetime, actor: int | None, kind: str, *, body: str = "",
           field: str | None = None, old: str | None = None, new: str | None = None) -> dict[str, Any]:
    return {"incident": incident_id, "at": at, "actor": actor, "kind": kind, "field": field,
            "old_value": old, "new_value": new, "body": body}


def _insert(model: type[peewee.Model], rows: list[dict[str, Any]]) -> None:
    """executemany with the driver: peewee's INSERT builder costs more than the database here."""
    if not rows:
        return
    given = list(rows[0])  # every row names the same fields, in the same order
    defaults = {name: field.default for name, field in model._meta.fields.items()
                if name not in given and name != "id" and field.default is not None}
    assert not any(callable(value) for value in defaults.values()), "name the field in the rows"
    rows = [{**row, **defaults} for row in rows]
    fields = [model._meta.fields[name] for name in rows[0]]
    columns = ", ".join(f'"{field.column_name}"' for field in fields)
    marks = ", ".join([database.obj.param] * len(fields))
    sql = f'INSERT INTO "{model._meta.table_name}" ({columns}) VALUES ({marks})'  # noqa: S608 - model names
    convert = [field.db_value for field in fields]
    cursor = database.cursor()
    cursor.executemany(sql, [tuple(c(v) for c, v in zip(convert, row.values(), strict=True)) for row in rows])


def analyse() -> None:
    """Fresh planner statistics after a bulk load (what a nightly ANALYZE would keep)."""
    # PostgreSQL: VACUUM too, so index-only scans know the pages are all visible (autovacuum
    # would get there later); it cannot run inside a transaction.
    database.execute_sql("ANALYZE" if is_sqlite() else "VACUUM ANALYZE incident, sla_clock, timeline_entry")
