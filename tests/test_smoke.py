def test_owner_sees_logged_incident_in_owned_queue(login, personas, log_incident):
    incident = log_incident(title="Printer on fire")
    page = login(personas.owner).get("/queues/owned")
    assert page.status_code == 200
    assert incident.reference in page.get_data(as_text=True)
