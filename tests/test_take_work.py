""""Take": a specialist assigns an incident to herself and starts work on it in one step."""

from __future__ import annotations

import threading

import pytest

from helpdesk import incidents
from helpdesk.errors import DomainError, StaleVersion
from helpdesk.models import Incident, TimelineEntry


def fresh(incident: Incident) -> Incident:
    return Incident.get_by_id(incident.id)


def test_take_assigns_me_with_my_team_and_starts_work(ctx, personas, log_incident):
    incident = log_incident()
    incidents.take_work(ctx, incident.id, personas.assignee, incident.version)

    after = fresh(incident)
    assert (after.assigned_team_id, after.assigned_agent_id) == (personas.database_team.id,
                                                                 personas.assignee.id)
    assert after.status == "in_progress"
    assert after.version == incident.version + 1
    # The owner pair is untouched: the service desk still answers for the incident.
    assert (after.owner_team_id, after.owner_agent_id) == (incident.owner_team_id, incident.owner_agent_id)
    # One action, one timeline entry: the status entry says who took it.
    entries = list(TimelineEntry.select().where((TimelineEntry.incident == incident.id)
                                                & (TimelineEntry.actor == personas.assignee.id)))
    assert [(e.field, e.old_value, e.new_value) for e in entries] == [("status", "New", "In progress")]
    assert entries[0].body == "Took it: assigned to Database / Priya Raman and in progress."


def test_take_keeps_the_assigned_team_when_i_am_in_it(ctx, personas, log_incident):
    incident = log_incident()
    incidents.assign(ctx, incident.id, personas.owner, personas.database_team, None)
    incidents.take_work(ctx, incident.id, personas.db_lead)
    after = fresh(incident)
    assert (after.assigned_team_id, after.assigned_agent_id) == (personas.database_team.id,
                                                                 personas.db_lead.id)


def test_an_incident_assigned_to_someone_else_cannot_be_taken(ctx, personas, log_incident):
    incident = log_incident()
    incidents.assign(ctx, incident.id, personas.owner, personas.database_team, personas.assignee)
    before = fresh(incident)
    with pytest.raises(DomainError, match="assigned to Priya Raman"):
        incidents.take_work(ctx, incident.id, personas.db_lead)
    assert fresh(incident).version == before.version


def test_a_take_from_a_stale_page_is_a_conflict_naming_who_took_it(ctx, personas, log_incident, login):
    incident = log_incident()
    seen = incident.version  # both pages show this version
    incidents.take_work(ctx, incident.id, personas.colleague, seen)
    with pytest.raises(StaleVersion, match="taken by"):
        incidents.take_work(ctx, incident.id, personas.assignee, seen)
    answer = login(personas.db_lead).post(f"/incidents/{incident.id}/take-work", {"version": str(seen)})
    assert answer.status_code == 409 and personas.colleague.display_name in answer.get_data(as_text=True)
    assert fresh(incident).assigned_agent_id == personas.colleague.id


def test_a_pending_incident_taken_goes_back_into_progress(ctx, personas, log_incident):
    incident = log_incident()
    incidents.change_status(ctx, incident.id, personas.owner, "pending", pending_reason="customer")
    incidents.take_work(ctx, incident.id, personas.colleague)
    after = fresh(incident)
    assert (after.status, after.pending_reason, after.assigned_agent_id) == ("in_progress", None,
                                                                              personas.colleague.id)


@pytest.mark.parametrize("status", ["resolved", "cancelled"])
def test_finished_incidents_cannot_be_taken(ctx, personas, log_incident, status):
    incident = log_incident()
    incidents.change_status(ctx, incident.id, personas.owner, status, note="done")
    with pytest.raises(DomainError, match="reopen it"):
        incidents.take_work(ctx, incident.id, personas.colleague)


def test_taking_again_changes_nothing(ctx, personas, log_incident):
    incident = log_incident()
    incidents.take_work(ctx, incident.id, personas.colleague)
    version = fresh(incident).version
    incidents.take_work(ctx, incident.id, personas.colleague, version)
    assert fresh(incident).version == version


def test_of_two_agents_taking_at_once_exactly_one_wins(app, ctx, personas, log_incident):
    incident = log_incident()
    results: dict[str, object] = {}
    barrier = threading.Barrier(2)

    def take(who: str) -> None:
        with app.app_context():
            barrier.wait()
            try:
                results[who] = incidents.take_work(ctx, incident.id, getattr(personas, who), incident.version)
            except (DomainError, StaleVersion) as refused:
                results[who] = refused

    threads = [threading.Thread(target=take, args=(who,)) for who in ("colleague", "assignee")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    winners = [who for who, result in results.items() if isinstance(result, Incident)]
    assert len(winners) == 1
    loser = next(who for who in results if who not in winners)
    winner = getattr(personas, winners[0])
    assert fresh(incident).assigned_agent_id == winner.id
    assert winner.display_name in str(results[loser])  # the loser is told who has it


def test_a_claim_leaves_a_pending_incident_pending_and_one_already_mine_alone(ctx, personas, log_incident):
    """The t key's take (claim_only): a key pressed by mistake never resumes a pending incident."""
    waiting = log_incident()
    incidents.change_status(ctx, waiting.id, personas.owner, "pending", pending_reason="customer")
    incidents.take_work(ctx, waiting.id, personas.assignee, fresh(waiting).version, claim_only=True)
    claimed = fresh(waiting)
    assert (claimed.assigned_agent_id, claimed.status, claimed.pending_reason) == (
        personas.assignee.id, "pending", "customer")
    # Mine now: claiming again (or from a page showing "Assigned") changes nothing at all.
    incidents.take_work(ctx, waiting.id, personas.assignee, claimed.version, claim_only=True)
    assert fresh(waiting).version == claimed.version and fresh(waiting).status == "pending"
    assigned = log_incident()
    incidents.assign(ctx, assigned.id, personas.owner, personas.database_team, personas.assignee)
    before = fresh(assigned)
    incidents.take_work(ctx, assigned.id, personas.assignee, before.version, claim_only=True)
    assert (fresh(assigned).version, fresh(assigned).status) == (before.version, before.status)
