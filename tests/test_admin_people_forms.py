"""Admin → Teams and Admin → Agents → an agent: a refused save keeps what the admin typed."""


def test_a_refused_new_team_keeps_its_name_and_description(login, personas):
    admin = login(personas.admin)
    response = admin.post("/admin/teams", {"name": personas.database_team.name,
                                           "description": "Owns the Oracle and Postgres servers"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and "already exists" in page
    assert 'value="Owns the Oracle and Postgres servers"' in page
    assert f'value="{personas.database_team.name}"' in page


def test_a_refused_agent_save_shows_what_was_typed_not_the_stored_values(login, personas):
    agent = personas.owner
    admin = login(personas.admin)
    response = admin.post(f"/admin/agents/{agent.id}", {
        "display_name": "Renamed Person", "email": "renamed@example.com", "role": "lead",
        "active": "on", "teams": [str(personas.database_team.id)], "password": "short"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'value="Renamed Person"' in page and 'value="renamed@example.com"' in page
    assert '<option value="lead" selected>' in page
    assert f'value="{personas.database_team.id}" checked' in page
    assert "short" not in page.split("<main")[1].split('name="password"')[1][:80]  # never echoed


def test_a_refused_new_agent_keeps_the_chosen_role_and_teams(login, personas):
    # A lead of the Database team, refused for a short password: had the role and the team
    # fallen back to "Agent" and none, saving again would make a plain agent in no team.
    admin = login(personas.admin)
    response = admin.post("/admin/agents", {
        "username": "newlead", "display_name": "New Lead", "email": "newlead@example.com",
        "password": "short", "role": "lead", "teams": [str(personas.database_team.id)]})
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and 'value="newlead"' in page
    assert '<option value="lead" selected>' in page
    team = personas.database_team.id
    assert f'id="a-team-{team}" name="teams" value="{team}" checked' in page
