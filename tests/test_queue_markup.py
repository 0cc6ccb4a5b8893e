"""The queue rows are built in Python (helpdesk/web/queue_rows.py), not by Jinja's
autoescaping: every value from the database or a plugin must still arrive escaped, a plugin
column that fails must not take the page down, and the row contract console.js relies on
(data-row, data-open, the Take form) must hold."""

from __future__ import annotations

import re
from typing import Any

import pytest
from markupsafe import Markup

from helpdesk import hookimpl
from helpdesk.models import Agent, Contact, Team
from helpdesk.records import QueueColumn

EVIL = '<img src=x onerror="alert(1)">&'
ESCAPED = "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&amp;"


class Columns:
    @hookimpl
    def helpdesk_queue_columns(self) -> list[QueueColumn]:
        def broken(incident: Any) -> str:
            raise RuntimeError("the plugin's own bug")

        return [QueueColumn("text", EVIL, lambda incident: EVIL),
                QueueColumn("markup", "Markup", lambda incident: Markup(EVIL)),
                QueueColumn("broken", "Broken", broken)]


@pytest.fixture
def helpdesk_plugins() -> list[Any]:
    return [Columns()]


def rows_of(page: str) -> list[str]:
    return re.findall(r"<tr data-row.*?</tr>", page, re.S)


def test_every_value_in_a_row_arrives_escaped(app, personas, incident_factory, login):
    with app.app_context():
        Team.update(name=EVIL).where(Team.id == personas.database_team.id).execute()
        Agent.update(display_name=EVIL).where(Agent.id == personas.assignee.id).execute()
        requester = Contact.create(name=EVIL, email="ada@example.org")
    incident_factory(title=EVIL, requester=requester, assigned_team=personas.database_team,
                     assigned_agent=personas.assignee)
    page = login(personas.owner).get("/queues/open").get_data(as_text=True)
    [row] = rows_of(page)
    assert "<img" not in row and "onerror=\"" not in row
    # title, requester, the assignee's team and agent (shown and on hover), both plugin columns
    assert row.count("&lt;img") >= 6
    assert f'<span class="title-text">{ESCAPED}</span>' in row
    assert f'<small class="requester">{ESCAPED}</small>' in row
    assert f'<td data-column="text" data-label="{ESCAPED}">{ESCAPED}</td>' in row
    assert f'<td data-column="markup" data-label="Markup">{ESCAPED}</td>' in row


def test_a_failing_plugin_column_shows_a_mark_and_the_page_still_serves(
        app, personas, incident_factory, login, caplog):
    incident = incident_factory(title="Printer jam")
    response = login(personas.owner).get("/queues/open")
    assert response.status_code == 200
    [row] = rows_of(response.get_data(as_text=True))
    assert '<td data-column="broken" data-label="Broken">?</td>' in row
    assert f"queue column 'broken' failed for {incident.reference}" in caplog.text


def test_rows_keep_the_contract_the_console_relies_on(app, personas, incident_factory, login):
    free = incident_factory(title="Nobody works on this")
    taken = incident_factory(title="Someone works on this", assigned_team=personas.database_team,
                             assigned_agent=personas.assignee)
    page = login(personas.owner).get("/queues/open?sort=updated").get_data(as_text=True)
    rows = {int(re.search(r'data-incident="(\d+)"', row).group(1)): row for row in rows_of(page)}
    assert set(rows) == {free.id, taken.id}
    for incident in (free, taken):
        row = rows[incident.id]
        assert f'data-version="{incident.version}"' in row
        assert f'<a href="/incidents/{incident.id}" data-open>{incident.reference}</a>' in row
        assert f'value="{incident.id}:{incident.version}" form="bulk-form"' in row
        text = re.sub(r"<[^>]+>", "", row)  # what a find-in-page or a copy reads: cells apart
        assert re.search(rf"\b{incident.reference}\s+{re.escape(incident.title)}\b", text), text
    take = re.search(r'<form method="post" action="([^"]+)" class="take">(.*?)</form>',
                     rows[free.id], re.S)
    assert take.group(1) == f"/incidents/{free.id}/take-work"
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    assert f'name="csrf_token" value="{token}"' in take.group(2)
    assert f'name="version" value="{free.version}"' in take.group(2)
    assert 'name="next" value="/queues/open?sort=updated"' in take.group(2)
    assert 'data-shortcut="take"' not in rows[taken.id]
