"""The bulk bar's and the incident page's team and agent lists are kept by each process and
read again only when the directory revision moves (migration 0036's triggers): a change
made by another process (a second gunicorn worker, a command) shows on this one's next page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from helpdesk import people
from helpdesk.db import database
from helpdesk.models import Agent, Membership
from helpdesk.testing import AgentClient, make_app


def assign_menu(client: AgentClient) -> dict[str, list[str]]:
    """Each team of the bulk bar's agent box with its agents' names, as the page shows them."""
    page = client.get("/queues/open").get_data(as_text=True)
    groups = re.findall(r'<optgroup label="([^"]*)" data-team="\d+">(.*?)</optgroup>', page, re.S)
    return {team: re.findall(r"<option [^>]*>([^<]*)</option>", options) for team, options in groups}


@pytest.fixture
def other_process(helpdesk_app: Flask, tmp_path: Path) -> Flask:
    """A second app on the same database: another worker's own kept state."""
    (tmp_path / "other").mkdir()
    url = helpdesk_app.extensions["helpdesk"].settings.database_url
    return make_app(tmp_path / "other", database_url=url)


def revision() -> int:
    found = database.execute_sql("SELECT revision FROM directory_revision WHERE id = 1").fetchone()
    return found[0] if found else 0


def test_a_change_made_in_another_process_shows_on_the_next_page(helpdesk_app, personas, other_process):
    here = AgentClient(helpdesk_app, personas.owner)
    assert assign_menu(here)["Network"] == ["Kofi Mensah"]
    assert assign_menu(here)["Database"] == ["Mateo Silva", "Priya Raman"]  # kept: read once
    service_desk = helpdesk_app.extensions["helpdesk"].settings.service_desk_team
    admin = Agent.get_by_id(personas.admin.id)

    def change(what: Any) -> None:
        with other_process.app_context():
            what()

    # another process renames a team and adds a member to it
    change(lambda: people.update_team(personas.network, name="Networks", description="", active=True,
                                      members=[personas.other, personas.colleague],
                                      service_desk=service_desk, actor=admin,
                                      ctx=other_process.extensions["helpdesk"]))
    menu = assign_menu(here)
    assert "Network" not in menu and menu["Networks"] == ["Kofi Mensah", "Sara Berg"]
    # ... renames an agent, then deactivates one
    change(lambda: people.update_agent(Agent.get_by_id(personas.other.id), display_name="Kofi A. Mensah",
                                       email="kofi@example.com", role="agent", active=True,
                                       teams=[personas.network], actor=admin,
                                       ctx=other_process.extensions["helpdesk"]))
    assert assign_menu(here)["Networks"] == ["Kofi A. Mensah", "Sara Berg"]
    change(lambda: people.update_agent(Agent.get_by_id(personas.assignee.id), display_name="Priya Raman",
                                       email="priya@example.com", role="agent", active=False,
                                       teams=[personas.database_team], actor=admin,
                                       ctx=other_process.extensions["helpdesk"]))
    assert assign_menu(here)["Database"] == ["Mateo Silva"]
    # ... and a membership written by hand (a command, another tool): the database moves the revision
    change(lambda: Membership.create(team=personas.database_team, agent=personas.colleague))
    assert assign_menu(here)["Database"] == ["Mateo Silva", "Sara Berg"]


def test_what_the_lists_do_not_show_leaves_the_revision_alone(helpdesk_app, personas):
    with helpdesk_app.app_context():
        before = revision()
        Agent.update(queue_density="compact", time_zone="Europe/Oslo").where(
            Agent.id == personas.owner.id).execute()
        people.set_password(Agent.get_by_id(personas.owner.id), "another-long-password-1")
        assert revision() == before
        Agent.update(display_name="John Carter").where(Agent.id == personas.owner.id).execute()  # as it was
        assert revision() == before
        Agent.update(display_name="John C.").where(Agent.id == personas.owner.id).execute()
        assert revision() == before + 1


def test_a_queue_page_reads_the_lists_once_not_on_every_view(helpdesk_app, personas, count_queries):
    here = AgentClient(helpdesk_app, personas.owner)
    here.get("/queues/open")  # read once here ...
    count_queries.queries.clear()
    assert assign_menu(here)["Database"] == ["Mateo Silva", "Priya Raman"]
    # ... then this page runs the session's query and its ids (nothing to join: no incidents)
    assert not [sql for sql in count_queries.queries if '"membership"' in sql.split(" FROM ", 1)[-1]
                and "LEFT OUTER JOIN" in sql], count_queries.queries
