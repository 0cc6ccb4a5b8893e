"""Who changes which escalation policy: a team lead their own teams' policies (the policy's
``team`` condition), an admin every policy; a policy without a team condition is
organisation-wide, an admin's. Refused in the domain and on every page that saves or deletes,
with a 403 that names the rule; the list offers Edit and Delete only where they would work."""

from __future__ import annotations

import html
import io
import re
from typing import Any

import pytest

from helpdesk.errors import PermissionDenied
from helpdesk.escalation import policies
from helpdesk.models import EscalationPolicy

from .conftest import three_levels

DB_RULE = "Only a lead of Database or an admin can change the escalation policy &#39;database&#39;"
ORG_RULE = "Only an admin can change the escalation policy &#39;standard&#39;"


def _text(response: Any) -> str:
    return response.get_data(as_text=True)


def _database_policy(**changes: Any) -> dict[str, Any]:
    return three_levels("database", conditions={"priority": [1, 2], "team": ["Database"]}, **changes)


def _exported(client: Any, name: str, title: str) -> str:
    """The policy's TOML as its export gives it, with a new title."""
    text = _text(client.get(f"/escalation/{name}.toml"))
    return text.replace('title = "Standard escalation"', f'title = "{title}"', 1)


@pytest.fixture
def saved(desk: Any) -> Any:
    """An organisation-wide policy and the Database team's, both saved by an admin."""
    desk.policy(three_levels(), desk.p.admin)
    desk.policy(_database_policy(), desk.p.admin)
    return desk


def _version(name: str) -> int:
    return EscalationPolicy.get(EscalationPolicy.name == name).version


# -- the domain ----------------------------------------------------------------------------------


def test_the_domain_lets_a_lead_change_only_their_teams_policies(saved):
    desk, p = saved, saved.p
    edited = _database_policy(title="Database, reviewed")
    assert desk.policy(edited, p.db_lead).version == 2  # Mateo leads Database
    with pytest.raises(PermissionDenied, match="Only a lead of Database or an admin"):
        desk.policy(_database_policy(title="Taken over"), p.lead)  # Amira leads the service desk
    with pytest.raises(PermissionDenied, match="no team condition, so it applies to the whole"):
        desk.policy(three_levels(title="Changed by a lead"), p.db_lead)
    # Nor by rewriting the team condition: neither to widen their own policy to another team,
    # nor to take over an organisation-wide policy under its name.
    with pytest.raises(PermissionDenied, match="you do not lead Network"):
        desk.policy(three_levels("database", conditions={"team": ["Database", "Network"]}), p.db_lead)
    with pytest.raises(PermissionDenied, match="no team condition"):
        desk.policy(three_levels(conditions={"team": ["Database"]}), p.db_lead)
    with pytest.raises(PermissionDenied, match="Only a lead of Database"):
        desk.call(None, lambda ctx: policies.delete("database", p.lead))
    with pytest.raises(PermissionDenied, match="whole organisation"):
        desk.call(None, lambda ctx: policies.delete("standard", p.db_lead))
    assert (_version("database"), _version("standard")) == (2, 1)  # nothing else was written
    # An admin changes and deletes any policy.
    assert desk.policy(three_levels(title="Changed by an admin"), p.admin).version == 2
    desk.call(None, lambda ctx: policies.delete("database", p.admin))
    assert [policy.name for policy in EscalationPolicy.select()] == ["standard"]


def test_an_agent_who_is_no_lead_changes_no_policy_even_of_their_own_team(saved):
    with pytest.raises(PermissionDenied):
        saved.policy(_database_policy(title="Priya's"), saved.p.assignee)  # a Database agent
    assert _version("database") == 1


# -- the pages -------------------------------------------------------------------------------------


def test_the_list_offers_edit_and_delete_only_for_policies_the_lead_may_change(saved):
    rows = {}
    for who in ("lead", "db_lead", "admin"):
        page = _text(saved.login(getattr(saved.p, who)).get("/escalation"))
        rows[who] = {name: ('href="/escalation/edit?name=' + name + '"' in page,
                            re.search(rf'name="name" value="{name}"', page) is not None)
                     for name in ("standard", "database")}
        assert "/escalation/standard.toml" in page and "/escalation/database.toml" in page  # all read
    assert rows["lead"] == {"standard": (False, False), "database": (False, False)}
    assert rows["db_lead"] == {"standard": (False, False), "database": (True, True)}
    assert rows["admin"] == {"standard": (True, True), "database": (True, True)}


def test_a_lead_is_refused_another_teams_policy_on_every_page_with_the_rule(saved):
    amira = saved.login(saved.p.lead)
    page = amira.get("/escalation/edit?name=database")
    assert page.status_code == 403 and DB_RULE in _text(page)
    edited = _exported(amira, "database", "Taken over")
    refused = amira.post("/escalation/edit?name=database", data={"toml": edited})
    assert refused.status_code == 403 and DB_RULE in _text(refused)
    assert "Taken over" in _text(refused)  # what was typed is kept
    imported = amira.post("/escalation/import", data={"file": (io.BytesIO(edited.encode()), "database.toml")},
                          content_type="multipart/form-data")
    assert imported.status_code == 403 and DB_RULE in _text(imported)
    deleted = amira.post("/escalation/delete", data={"name": "database"})
    assert deleted.status_code == 403 and DB_RULE in _text(deleted)
    mateo = saved.login(saved.p.db_lead)
    deleted = mateo.post("/escalation/delete", data={"name": "standard"})
    assert deleted.status_code == 403 and ORG_RULE in _text(deleted)
    assert "whole organisation" in _text(deleted)
    assert mateo.get("/escalation/edit?name=standard").status_code == 403
    assert (_version("database"), _version("standard"), EscalationPolicy.select().count()) == (1, 1, 2)
    assert mateo.post("/escalation/delete", data={"name": "nope"}).status_code == 404


def test_a_lead_edits_and_deletes_their_teams_policy_in_the_pages(saved):
    mateo = saved.login(saved.p.db_lead)
    form = _text(mateo.get("/escalation/edit?name=database"))
    assert "Database" in form
    edited = _exported(mateo, "database", "Database nights")
    assert mateo.post("/escalation/edit?name=database", data={"toml": edited}).status_code == 303
    assert _version("database") == 2
    # Moving it to a team he does not lead is refused, naming the team; nothing is saved.
    moved = edited.replace('team = ["Database"]', 'team = ["Database", "Network"]')
    refused = mateo.post("/escalation/edit?name=database", data={"toml": moved})
    assert refused.status_code == 403 and "you do not lead Network" in _text(refused)
    assert _version("database") == 2
    assert mateo.post("/escalation/delete", data={"name": "database"}).status_code == 303
    assert [policy.name for policy in EscalationPolicy.select()] == ["standard"]


def test_a_leads_new_policy_draft_is_for_their_team_and_an_organisation_wide_one_is_refused(desk):
    mateo = desk.login(desk.p.db_lead)
    draft = _text(mateo.get("/escalation/edit"))
    assert "team = [&#34;Database&#34;]" in draft  # the TOML draft names the team he leads
    text = html.unescape(re.search(r'<textarea[^>]*name="toml"[^>]*>(.*?)</textarea>', draft, re.S).group(1))
    assert mateo.post("/escalation/edit", data={"toml": text}).status_code == 303
    assert policies.teams_of(policies.definition_of(EscalationPolicy.get())) == ["Database"]
    organisation_wide = text.replace('team = ["Database"]\n', "").replace('"standard"', '"everyone"', 1)
    refused = mateo.post("/escalation/edit", data={"toml": organisation_wide})
    assert refused.status_code == 403 and "applies to the whole organisation" in _text(refused)
    assert EscalationPolicy.select().count() == 1
