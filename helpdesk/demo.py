"""Demo data: four teams, a handful of agents, ~200 incidents with real timelines.

Everything is created through the domain functions with the clock moved back,
so the timelines are exactly what real use would have written. Plugin events
are not fired for demo data.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import click

from helpdesk import clock, events, people, sla
from helpdesk import incidents as domain
from helpdesk.db import write_transaction
from helpdesk.models import Agent, Category, Contact, Membership, Organisation, Service

PASSWORD = "helpdesk-demo"  # noqa: S105 - demo data only, printed to the user
AGENTS = [
    # username, name, role, teams
    ("john", "John Carter", "agent", ["Service Desk"]),
    ("amira", "Amira Haddad", "lead", ["Service Desk"]),
    ("priya", "Priya Raman", "agent", ["Database"]),
    ("mateo", "Mateo Silva", "lead", ["Database"]),
    ("kofi", "Kofi Mensah", "agent", ["Network"]),
    ("lena", "Lena Vogel", "agent", ["Desktop"]),
    ("admin", "Administrator", "admin", ["Service Desk"]),
]
LOGIN_HELP = (
    "Demo data is loaded. Log in with any of these user names and the password "
    f"{PASSWORD!r}:\n"
    "  john (service desk agent), amira (service desk lead), priya (Database),\n"
    "  mateo (Database lead), kofi (Network), lena (Desktop), admin (admin)"
)
TOPICS = {
    "Database": ["Orders database slow", "Replica lag on reporting DB", "Deadlocks in billing",
                 "Backup job failed", "Cannot connect to CRM database"],
    "Network": ["VPN drops every few minutes", "Wi-Fi down on floor 3", "DNS lookups failing",
                "Slow file transfers to branch office", "Firewall blocks supplier portal"],
    "Desktop": ["Laptop will not boot", "Outlook keeps asking for password", "Printer offline",
                "New starter needs a laptop", "Screen flickers after update"],
    "Service Desk": ["How do I do a mail merge?", "Password reset", "Access to shared drive",
                     "Request: second monitor", "Question about expense tool"],
}
SERVICES = ["E-mail", "CRM", "Billing", "VPN", "Intranet", "File shares"]
CATEGORIES = ["Hardware", "Software", "Network", "Access", "Database"]


def seed(state: Any, *, count: int = 200, progress: bool = False, seed_value: int = 7) -> list[str]:
    """Fill an empty database with demo teams, agents, contacts and incidents.

    An account that exists already under a demo user name (the first admin ``helpdesk
    init`` made) is used as it is, with its own password; their names are returned.
    """
    rng = random.Random(seed_value)
    real_now = clock.now()
    with write_transaction(), events.suppressed():
        teams = {name: people.ensure_team(name) for name in TOPICS}
        desk = people.ensure_team(state.settings.service_desk_team)
        teams[state.settings.service_desk_team] = desk
        agents, kept = {}, []
        for username, name, role, team_names in AGENTS:
            existing = Agent.get_or_none(Agent.username == username)
            if existing is not None:
                agents[username] = existing
                kept.append(username)
                for team_name in team_names:
                    Membership.get_or_create(team=teams[team_name], agent=existing)
                continue
            agents[username] = people.create_agent(
                username, name, PASSWORD, role=role, email=f"{username}@example.com",
                teams=[teams[t] for t in team_names],
            )
        organisations = [Organisation.create(name=n) for n in ("Acme Ltd", "Globex", "Initech")]
        contacts = [
            Contact.create(name=f"{first} {last}", email=f"{first.lower()}.{last.lower()}@example.com",
                           organisation=rng.choice(organisations))
            for first, last in [("Ana", "Lopez"), ("Ben", "Okafor"), ("Chen", "Wei"),
                                ("Dana", "Novak"), ("Eli", "Stone"), ("Fay", "Morgan")]
        ]
        services = [Service.create(name=n) for n in SERVICES]
        categories = [Category.create(name=n) for n in CATEGORIES]

        members = {
            "Database": [agents["priya"], agents["mateo"]],
            "Network": [agents["kofi"]],
            "Desktop": [agents["lena"]],
            "Service Desk": [agents["john"], agents["amira"]],
        }
        desk_agents = members["Service Desk"]
        statuses = ["new", "assigned", "in_progress", "pending", "resolved", "closed", "cancelled"]
        bar = click.progressbar(range(count), label="Creating demo incidents") if progress else None
        iterator = bar if bar is not None else range(count)
        try:
            if bar is not None:
                bar.__enter__()
            for number in iterator:
                team_name = rng.choice(list(TOPICS))
                # A third arrived today (their SLAs are running or at risk), the rest over a month.
                recent = rng.random() < 0.35
                start = real_now - dt.timedelta(minutes=rng.randint(10, 60 * 10 if recent else 60 * 24 * 30))
                moment = [start]

                def tick(minutes: int, moment: list[dt.datetime] = moment) -> None:
                    moment[0] = min(real_now, moment[0] + dt.timedelta(minutes=minutes))

                clock.set_source(lambda moment=moment: moment[0])
                logged_by = rng.choice(desk_agents + [None])
                incident = domain.log_incident(
                    state,
                    title=rng.choice(TOPICS[team_name]),
                    description=f"Reported by phone.\n\n- seen since this morning\n- ticket {number}",
                    actor=logged_by,
                    service_desk=desk,
                    type="query" if "?" in TOPICS[team_name][0] and rng.random() < 0.3
                    else rng.choice(["incident", "incident", "service_request", "query"]),
                    impact=rng.choice(["high", "medium", "medium", "low"]),
                    urgency=rng.choice(["high", "medium", "low"]),
                    category=rng.choice(categories),
                    service=rng.choice(services),
                    requester=rng.choice(contacts),
                    source="phone" if logged_by else rng.choice(["email", "portal", "monitoring"]),
                )
                target = rng.choice(statuses)
                actor = logged_by or rng.choice(desk_agents)
                if logged_by is None and rng.random() < 0.6:
                    tick(rng.randint(1, 30))
                    incident = domain.take_ownership(state, incident.id, actor)
                if target == "new":
                    continue
                if target == "cancelled":
                    tick(rng.randint(5, 120))
                    domain.change_status(state, incident.id, actor, "cancelled",
                                         note="Withdrawn by the requester.")
                    continue
                tick(rng.randint(2, 60))
                specialist = rng.choice(members[team_name])
                incident = domain.assign(state, incident.id, actor, teams[team_name],
                                         specialist if target != "assigned" else None)
                if target == "assigned":
                    continue
                tick(rng.randint(5, 240))
                domain.change_status(state, incident.id, specialist, "in_progress")
                domain.add_comment(state, incident.id, specialist, "Looking into it now.", public=False)
                if target == "in_progress":
                    continue
                tick(rng.randint(10, 300))
                domain.add_comment(state, incident.id, specialist,
                                   "Could you tell us when this last worked?", public=True)
                domain.change_status(state, incident.id, specialist, "pending", pending_reason="customer")
                if target == "pending":
                    continue
                tick(rng.randint(30, 1440))
                domain.change_status(state, incident.id, specialist, "in_progress")
                tick(rng.randint(10, 600))
                domain.change_status(state, incident.id, specialist, "resolved",
                                     note="Restarted the affected service; confirmed working.",
                                     resolution_code=rng.choice(["fixed", "workaround"]))
                if target == "closed":
                    tick(rng.randint(60, 4320))
                    domain.change_status(state, incident.id, actor, "closed")
        finally:
            clock.set_source(None)
            if bar is not None:
                bar.__exit__(None, None, None)
        # Record the warnings and breaches the demo history has already reached.
        sla.check(state, real_now)
    return kept
