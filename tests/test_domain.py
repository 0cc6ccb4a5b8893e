"""The incident domain (helpdesk.incidents): the rules an agent meets when an incident changes.

Every test drives incidents through the domain functions only and then checks
the stored state: the owner and assignee pairs, the status, the version and the
timeline rows. A refused change must leave the incident and its timeline
exactly as they were. The file runs on SQLite and, with
HELPDESK_TEST_DATABASE_URL set, on PostgreSQL.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import peewee
import pytest

from helpdesk import incidents
from helpdesk.db import database, is_sqlite
from helpdesk.errors import DomainError, PermissionDenied, StaleVersion
from helpdesk.incidents import responsibility
from helpdesk.models import PENDING_REASONS, STATUSES, Incident, TimelineEntry
from helpdesk.people import is_member

LEVELS_LOW_TO_HIGH = ("low", "medium", "high")


# -- helpers -------------------------------------------------------------------


@pytest.fixture
def helpdesk_bundled_plugins():
    """The domain runs as installed: SLA clocks start, pause and stop with every change."""
    return ["sla_priority", "business_hours"]


@pytest.fixture
def pm(app):
    return app.extensions["helpdesk"].pm


def reload(incident: Incident | int) -> Incident:
    return Incident.get_by_id(incident if isinstance(incident, int) else incident.id)


def snapshot(incident: Incident | int) -> tuple[dict[str, Any], list[tuple]]:
    """Everything stored about one incident: its row and all its timeline rows."""
    row = reload(incident)
    timeline = list(
        TimelineEntry.select()
        .where(TimelineEntry.incident == row.id)
        .order_by(TimelineEntry.id)
        .tuples()
    )
    return dict(row.__data__), timeline


def timeline(incident: Incident | int, kind: str | None = None, field: str | None = None):
    incident_id = incident if isinstance(incident, int) else incident.id
    query = TimelineEntry.select().where(TimelineEntry.incident == incident_id)
    if kind is not None:
        query = query.where(TimelineEntry.kind == kind)
    if field is not None:
        query = query.where(TimelineEntry.field == field)
    return list(query.order_by(TimelineEntry.id))


def owner_ids(incident: Incident) -> tuple[int | None, int | None]:
    row = reload(incident)
    return row.owner_team_id, row.owner_agent_id


def assignee_ids(incident: Incident) -> tuple[int | None, int | None]:
    row = reload(incident)
    return row.assigned_team_id, row.assigned_agent_id


@pytest.fixture
def drive(ctx, personas, log_incident):
    """``drive(status)``: a new incident brought to ``status`` through the domain functions.

    Every incident past "new" is assigned to the Database team and its agent,
    so a reopen has an agent to go back to.
    """
    p = personas

    def to(status: str) -> Incident:
        incident = log_incident(title=f"Incident driven to {status}")
        if status != "new":
            incidents.assign(ctx, incident.id, p.owner, p.database_team, p.assignee)
        if status in {"in_progress", "pending", "resolved", "closed"}:
            incidents.change_status(ctx, incident.id, p.assignee, "in_progress")
        if status == "pending":
            incidents.change_status(ctx, incident.id, p.assignee, "pending", pending_reason="customer")
        if status in {"resolved", "closed"}:
            incidents.change_status(ctx, incident.id, p.assignee, "resolved", note="Rebuilt the index")
        if status == "closed":
            incidents.change_status(ctx, incident.id, p.owner, "closed")
        if status == "cancelled":
            incidents.change_status(ctx, incident.id, p.owner, "cancelled", note="Logged by mistake")
        incident = reload(incident)
        assert incident.status == status
        return incident

    return to


# -- 1. ownership defaults -------------------------------------------------------------


def test_service_desk_agent_who_logs_an_incident_owns_it_with_the_service_desk(personas, log_incident):
    incident = log_incident(actor=personas.owner)
    assert owner_ids(incident) == (personas.service_desk.id, personas.owner.id)
    created = timeline(incident, kind="created")
    assert len(created) == 1 and created[0].actor_id == personas.owner.id


def test_agent_who_does_not_keep_ownership_leaves_it_with_the_service_desk(personas, log_incident):
    incident = log_incident(actor=personas.owner, keep_ownership=False)
    assert owner_ids(incident) == (personas.service_desk.id, None)
    assert reload(incident).created_by_id == personas.owner.id


def test_incident_arriving_without_an_agent_is_owned_by_the_service_desk_only(personas, log_incident):
    incident = log_incident(actor=None, title="Mail from a customer")
    assert owner_ids(incident) == (personas.service_desk.id, None)
    created = timeline(incident, kind="created")
    assert len(created) == 1 and created[0].actor_id is None


def test_specialist_who_logs_an_incident_owns_it_with_their_own_team(personas, log_incident):
    incident = log_incident(actor=personas.assignee)
    assert owner_ids(incident) == (personas.database_team.id, personas.assignee.id)


def test_new_incident_starts_unassigned_at_version_one(log_incident):
    incident = reload(log_incident())
    assert incident.status == "new"
    assert (incident.assigned_team_id, incident.assigned_agent_id) == (None, None)
    assert incident.version == 1


def test_owner_chosen_at_logging_must_belong_to_the_owning_team(personas, log_incident):
    with pytest.raises(DomainError):
        log_incident(owner_team=personas.service_desk, owner_agent=personas.assignee)
    assert Incident.select().count() == 0


# -- 2. take ---------------------------------------------------------------------------


@pytest.mark.parametrize("taker", ["colleague", "lead", "admin", "assignee", "other"])
def test_any_agent_can_take_an_unowned_incident(ctx, personas, log_incident, taker):
    agent = getattr(personas, taker)
    incident = log_incident(keep_ownership=False)
    before = reload(incident)

    taken = incidents.take_ownership(ctx, incident.id, agent, before.version)

    after = reload(incident)
    assert after.owner_agent_id == agent.id
    assert taken.owner_agent_id == agent.id
    # The owning agent always belongs to the owning team; a desk agent keeps the desk as team.
    assert is_member(agent, after.owner_team_id)
    if is_member(agent, personas.service_desk):
        assert after.owner_team_id == personas.service_desk.id
    assert after.version == before.version + 1
    entries = timeline(incident, kind="change", field="owner")
    assert len(entries) == 1
    assert entries[0].actor_id == agent.id
    assert agent.display_name in entries[0].new_value
    assert agent.display_name not in (entries[0].old_value or "")


def test_incident_from_intake_can_be_taken(ctx, personas, log_incident):
    incident = log_incident(actor=None)
    incidents.take_ownership(ctx, incident.id, personas.colleague)
    assert owner_ids(incident) == (personas.service_desk.id, personas.colleague.id)


@pytest.mark.parametrize("taker", ["colleague", "lead", "admin", "assignee"])
def test_taking_an_owned_incident_is_refused(ctx, personas, log_incident, taker):
    incident = log_incident(actor=personas.owner)
    before = snapshot(incident)

    with pytest.raises(DomainError):
        incidents.take_ownership(ctx, incident.id, getattr(personas, taker), incident.version)

    assert snapshot(incident) == before
    assert owner_ids(incident) == (personas.service_desk.id, personas.owner.id)


def test_taking_an_incident_you_already_own_changes_nothing(ctx, personas, log_incident):
    incident = log_incident(actor=personas.owner)
    before = snapshot(incident)
    incidents.take_ownership(ctx, incident.id, personas.owner, incident.version)
    assert snapshot(incident) == before


# -- 3. transfer -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "actor, logged_by",
    [
        ("owner", "owner"),  # the owning agent
        ("lead", "owner"),  # a lead of the owning team (Service Desk)
        ("db_lead", "assignee"),  # a lead of the owning team (Database)
        ("admin", "assignee"),  # an admin, even outside the owning team
    ],
)
def test_owner_team_lead_or_admin_may_transfer_ownership(ctx, personas, log_incident, actor, logged_by):
    incident = log_incident(actor=getattr(personas, logged_by))
    before = reload(incident)
    assignee_before = assignee_ids(incident)
    transferring = getattr(personas, actor)

    incidents.transfer_ownership(ctx, incident.id, transferring, personas.network, personas.other,
                                 "Network outage, Kofi drives it", before.version)

    assert owner_ids(incident) == (personas.network.id, personas.other.id)
    assert reload(incident).version == before.version + 1
    entries = timeline(incident, kind="change", field="owner")
    assert len(entries) == 1
    assert entries[0].actor_id == transferring.id
    assert entries[0].body == "Network outage, Kofi drives it"
    assert personas.other.display_name in entries[0].new_value
    assert getattr(personas, logged_by).display_name in entries[0].old_value
    assert assignee_ids(incident) == assignee_before


@pytest.mark.parametrize(
    "actor, logged_by",
    [
        ("colleague", "owner"),  # a plain agent of the owning team
        ("other", "owner"),  # a plain agent of another team
        ("assignee", "owner"),  # a plain agent of another team
        ("db_lead", "owner"),  # a lead, but of another team
        ("lead", "assignee"),  # a lead, but of another team
    ],
)
def test_others_may_not_transfer_ownership(ctx, personas, log_incident, actor, logged_by):
    incident = log_incident(actor=getattr(personas, logged_by))
    before = snapshot(incident)

    with pytest.raises(PermissionDenied):
        incidents.transfer_ownership(ctx, incident.id, getattr(personas, actor), personas.network,
                                     personas.other, "I want it", incident.version)

    assert snapshot(incident) == before


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_transferring_an_owned_incident_needs_a_reason(ctx, personas, log_incident, reason):
    incident = log_incident(actor=personas.owner)
    before = snapshot(incident)

    with pytest.raises(DomainError) as refused:
        incidents.transfer_ownership(ctx, incident.id, personas.owner, personas.database_team,
                                     personas.assignee, reason, incident.version)

    assert not isinstance(refused.value, PermissionDenied)
    assert snapshot(incident) == before


def test_unowned_incident_can_be_handed_to_a_team_without_a_reason(ctx, personas, log_incident):
    incident = log_incident(keep_ownership=False)
    incidents.transfer_ownership(ctx, incident.id, personas.colleague, personas.database_team, None, "")
    assert owner_ids(incident) == (personas.database_team.id, None)


def test_new_owner_agent_must_be_a_member_of_the_owner_team(ctx, personas, log_incident):
    incident = log_incident(actor=personas.owner)
    before = snapshot(incident)

    with pytest.raises(DomainError):
        # Priya is in the Database team, not the Network team.
        incidents.transfer_ownership(ctx, incident.id, personas.owner, personas.network,
                                     personas.assignee, "She knows the system", incident.version)

    assert snapshot(incident) == before


def test_ownership_can_be_passed_to_a_team_without_an_agent(ctx, personas, log_incident):
    incident = log_incident(actor=personas.owner)
    incidents.transfer_ownership(ctx, incident.id, personas.owner, personas.database_team, None,
                                 "Database team to pick an owner")
    assert owner_ids(incident) == (personas.database_team.id, None)
    # Unowned again, so any Database agent can now take it.
    incidents.take_ownership(ctx, incident.id, personas.assignee)
    assert owner_ids(incident) == (personas.database_team.id, personas.assignee.id)


# -- 4. assignment ---------------------------------------------------------------------


def test_assigning_an_agent_outside_the_assigned_team_is_refused(ctx, personas, log_incident):
    incident = log_incident()
    before = snapshot(incident)

    with pytest.raises(DomainError):
        # Kofi is a Network agent.
        incidents.assign(ctx, incident.id, personas.owner, personas.database_team, personas.other,
                         incident.version)

    assert snapshot(incident) == before
    assert reload(incident).version == 1
    assert timeline(incident, kind="change") == []


def test_assigning_an_agent_without_a_team_is_refused(ctx, personas, log_incident):
    incident = log_incident()
    before = snapshot(incident)
    with pytest.raises(DomainError):
        incidents.assign(ctx, incident.id, personas.owner, None, personas.assignee)
    assert snapshot(incident) == before


def test_assigning_a_team_moves_a_new_incident_to_assigned(ctx, personas, log_incident):
    incident = log_incident()
    assert reload(incident).status == "new"

    incidents.assign(ctx, incident.id, personas.owner, personas.database_team, None, incident.version)

    after = reload(incident)
    assert after.status == "assigned"
    assert assignee_ids(incident) == (personas.database_team.id, None)
    assert after.version == 2
    status_entries = timeline(incident, kind="change", field="status")
    assert [(e.old_value, e.new_value) for e in status_entries] == [
        (STATUSES["new"], STATUSES["assigned"])
    ]
    # One action, one entry: the status entry says the assignment.
    assert status_entries[0].body == "Assigned to Database / —."
    assert timeline(incident, kind="change", field="assignee") == []


def test_removing_the_assigned_team_moves_the_incident_back_to_new(ctx, personas, log_incident):
    incident = log_incident()
    incidents.assign(ctx, incident.id, personas.owner, personas.database_team, personas.assignee)
    incidents.assign(ctx, incident.id, personas.owner, None, None)
    after = reload(incident)
    assert after.status == "new"
    assert assignee_ids(incident) == (None, None)


def test_assigning_does_not_touch_the_owner(ctx, personas, log_incident):
    incident = log_incident(actor=personas.owner)
    owner_before = owner_ids(incident)

    incidents.assign(ctx, incident.id, personas.owner, personas.database_team, personas.assignee)
    incidents.assign(ctx, incident.id, personas.db_lead, personas.network, personas.other)

    assert owner_ids(incident) == owner_before
    assert assignee_ids(incident) == (personas.network.id, personas.other.id)
    assert timeline(incident, kind="change", field="owner") == []


def test_transferring_does_not_touch_the_assignee(ctx, personas, log_incident):
    incident = log_incident(actor=personas.owner)
    incidents.assign(ctx, incident.id, personas.owner, personas.database_team, personas.assignee)
    assigned_before = assignee_ids(incident)
    status_before = reload(incident).status

    incidents.transfer_ownership(ctx, incident.id, personas.owner, personas.network, personas.other,
                                 "Network is the root cause")

    assert assignee_ids(incident) == assigned_before
    assert reload(incident).status == status_before
    assert owner_ids(incident) == (personas.network.id, personas.other.id)
    # The assignment (one status entry, new -> assigned) is the only assignee change on record.
    assert [e.field for e in timeline(incident, kind="change")] == ["status", "owner"]


@pytest.mark.parametrize("status", ["resolved", "closed", "cancelled"])
def test_finished_incident_cannot_be_reassigned(ctx, personas, drive, status):
    incident = drive(status)
    before = snapshot(incident)
    with pytest.raises(DomainError):
        incidents.assign(ctx, incident.id, personas.owner, personas.network, personas.other)
    assert snapshot(incident) == before


# -- 5. lifecycle: every (from, to) pair ----------------------------------------------------

ALL_PAIRS = list(itertools.product(incidents.TRANSITIONS, STATUSES))


def _is_legal(old: str, new: str) -> bool:
    if old == new == "pending":
        return True  # staying pending with another reason
    if old == "new" and new == "assigned":
        # Listed as legal, but "assigned" is entered by assigning a team and a new
        # incident has none: change_status alone must refuse it (see the assign tests).
        return False
    return new in incidents.TRANSITIONS[old]


def test_lifecycle_rules():
    transitions = incidents.TRANSITIONS
    assert set(transitions) == set(STATUSES)
    active = {"new", "assigned", "in_progress", "pending"}
    for status, targets in transitions.items():
        assert targets <= set(STATUSES)
        assert "new" not in targets  # only removing the assigned team goes back to new
        if status in active:
            assert {"resolved", "cancelled"} <= targets  # work can always end
    # Closed and cancelled are final; a resolved incident is closed or reopened.
    assert transitions["closed"] == transitions["cancelled"] == frozenset()
    assert transitions["resolved"] == {"closed", "in_progress"}


@pytest.mark.parametrize("old, new", ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_status_change(ctx, personas, drive, old, new):
    incident = drive(old)
    before = snapshot(incident)
    reason = next(r for r in PENDING_REASONS if r != incident.pending_reason)
    kwargs = {"note": "Checked with the customer", "pending_reason": reason}

    if not _is_legal(old, new):
        with pytest.raises(DomainError):
            incidents.change_status(ctx, incident.id, personas.assignee, new, incident.version, **kwargs)
        assert snapshot(incident) == before
        return

    result = incidents.change_status(ctx, incident.id, personas.assignee, new, incident.version, **kwargs)

    after = reload(incident)
    # The incident keeps its agent, so a reopen (resolved -> in progress) lands in progress too.
    assert after.status == new
    assert result.status == new
    assert after.version == incident.version + 1
    assert after.is_active == (new in {"new", "assigned", "in_progress", "pending"})
    written = timeline(incident)[len(before[1]):]
    assert written and all(e.kind == "change" and e.actor_id == personas.assignee.id for e in written)
    if new != old:
        status_entries = [e for e in written if e.field == "status"]
        assert [(e.old_value, e.new_value) for e in status_entries] == [(STATUSES[old], STATUSES[new])]
    if new == "pending":
        assert after.pending_reason == reason
    else:
        assert after.pending_reason is None
    if new == "resolved":
        assert after.resolution_note == "Checked with the customer"
        assert after.resolved_at is not None
        assert after.resolution_code is not None
    if new == "closed":
        assert after.closed_at is not None
        assert after.resolution_note == incident.resolution_note  # the resolution is kept
    if old == "resolved" and new == "in_progress":
        assert after.resolved_at is None and after.resolution_note is None


def test_pending_needs_a_reason(ctx, personas, drive):
    incident = drive("in_progress")
    before = snapshot(incident)
    with pytest.raises(DomainError):
        incidents.change_status(ctx, incident.id, personas.assignee, "pending")
    assert snapshot(incident) == before


@pytest.mark.parametrize("target", ["resolved", "cancelled"])
@pytest.mark.parametrize("note", ["", "  \n "])
@pytest.mark.parametrize("start", ["new", "in_progress", "pending"])
def test_resolving_and_cancelling_need_a_note(ctx, personas, drive, start, target, note):
    incident = drive(start)
    before = snapshot(incident)
    with pytest.raises(DomainError):
        incidents.change_status(ctx, incident.id, personas.assignee, target, incident.version, note=note)
    assert snapshot(incident) == before


def _reopen(ctx: Any, method: str, incident: Incident, actor: Any, note: str) -> Incident:
    if method == "change_status":
        return incidents.change_status(ctx, incident.id, actor, "in_progress", incident.version, note=note)
    return incidents.reopen(ctx, incident.id, actor, incident.version, note=note)


@pytest.mark.parametrize("method", ["change_status", "reopen"])
@pytest.mark.parametrize("note", ["", "   "])
def test_reopening_needs_a_note(ctx, personas, drive, method, note):
    incident = drive("resolved")
    before = snapshot(incident)
    with pytest.raises(DomainError):
        _reopen(ctx, method, incident, personas.owner, note)
    assert snapshot(incident) == before


@pytest.mark.parametrize("method", ["change_status", "reopen"])
def test_reopened_incident_with_an_agent_goes_back_in_progress(ctx, personas, drive, method):
    incident = drive("resolved")

    _reopen(ctx, method, incident, personas.owner, "Customer says it is slow again")

    after = reload(incident)
    assert after.status == "in_progress"
    assert after.is_active
    assert (after.resolved_at, after.resolution_note, after.resolution_code) == (None, None, None)
    assert assignee_ids(incident) == (personas.database_team.id, personas.assignee.id)
    entry = timeline(incident, kind="change", field="status")[-1]
    assert (entry.old_value, entry.new_value) == (STATUSES["resolved"], STATUSES["in_progress"])
    assert entry.body == "Customer says it is slow again"
    assert entry.actor_id == personas.owner.id


@pytest.mark.parametrize("method", ["change_status", "reopen"])
def test_reopened_incident_with_only_a_team_goes_back_to_assigned(ctx, personas, log_incident, method):
    incident = log_incident()
    incidents.assign(ctx, incident.id, personas.owner, personas.database_team, None)
    incidents.change_status(ctx, incident.id, personas.db_lead, "resolved", note="Restarted the replica")

    _reopen(ctx, method, reload(incident), personas.owner, "Happened again")

    after = reload(incident)
    assert after.status == "assigned"
    assert assignee_ids(incident) == (personas.database_team.id, None)
    assert after.resolved_at is None


@pytest.mark.parametrize("status", ["new", "assigned", "in_progress", "pending", "closed", "cancelled"])
def test_only_a_resolved_incident_can_be_reopened(ctx, personas, drive, status):
    incident = drive(status)
    before = snapshot(incident)
    with pytest.raises(DomainError):
        incidents.reopen(ctx, incident.id, personas.owner, incident.version, note="Still broken")
    assert snapshot(incident) == before


# -- 6. stale versions ------------------------------------------------------------------------


def _edits(personas, ctx, other_incident) -> dict[str, Any]:
    p = personas
    return {
        "take": lambda i, v: incidents.take_ownership(ctx, i, p.colleague, v),
        "transfer": lambda i, v: incidents.transfer_ownership(ctx, i, p.lead, p.database_team,
                                                              p.assignee, "Needs a DBA", v),
        "assign": lambda i, v: incidents.assign(ctx, i, p.owner, p.database_team, p.assignee, v),
        "start work": lambda i, v: incidents.change_status(ctx, i, p.owner, "in_progress", v),
        "resolve": lambda i, v: incidents.change_status(ctx, i, p.owner, "resolved", v,
                                                        note="Restarted the service"),
        "cancel": lambda i, v: incidents.change_status(ctx, i, p.owner, "cancelled", v, note="Dup"),
        "override priority": lambda i, v: incidents.override_priority(ctx, i, p.lead, 1, "VIP", v),
        "edit details": lambda i, v: incidents.update_details(ctx, i, p.owner, v, impact="high"),
        "set parent": lambda i, v: incidents.link(ctx, i, p.owner, "parent", other_incident.id, v),
        "mark duplicate": lambda i, v: incidents.link(ctx, i, p.owner, "duplicate_of",
                                                      other_incident.id, v),
    }


EDIT_NAMES = ["take", "transfer", "assign", "start work", "resolve", "cancel", "override priority",
              "edit details", "set parent", "mark duplicate"]


@pytest.mark.parametrize("edit", EDIT_NAMES)
def test_edit_based_on_an_old_version_is_refused_with_the_fresh_incident(ctx, personas, pm, log_incident,
                                                                          edit):
    incident = log_incident(keep_ownership=False, impact="low", urgency="low")
    other_incident = log_incident(title="Orders database down")
    opened_at = reload(incident).version
    # Someone else saves a change after this agent opened the incident.
    incidents.update_details(ctx, incident.id, personas.lead, opened_at,
                             title="Orders database slow for everyone")
    before = snapshot(incident)
    other_before = snapshot(other_incident)
    run = _edits(personas, ctx, other_incident)[edit]

    with pytest.raises(StaleVersion) as stale:
        run(incident.id, opened_at)

    assert snapshot(incident) == before
    assert snapshot(other_incident) == other_before
    shown = stale.value.incident
    assert shown.id == incident.id
    assert shown.version == before[0]["version"] == opened_at + 1
    assert shown.title == "Orders database slow for everyone"

    # With the version just shown, the same edit goes through.
    run(incident.id, shown.version)
    assert reload(incident).version == shown.version + 1


def test_edit_without_an_expected_version_is_not_checked(ctx, personas, pm, log_incident):
    incident = log_incident()
    incidents.update_details(ctx, incident.id, personas.lead, None, title="Renamed")
    incidents.update_details(ctx, incident.id, personas.owner, None, description="More detail")
    assert reload(incident).version == 3


# -- 7. the take race ---------------------------------------------------------------------------


def _race_to_take(ctx, app, incident_id: int, racers, expected_version: int, timeout: float = 30):
    """Let every racer call take_ownership at the same moment, each on its own connection."""
    start = threading.Barrier(len(racers), timeout=timeout)
    outcome: dict[int, Any] = {}

    def run(agent) -> None:
        try:
            with app.app_context(), database.connection_context():
                start.wait()
                outcome[agent.id] = incidents.take_ownership(ctx, incident_id, agent, expected_version)
        except Exception as exc:  # reported to the test below
            outcome[agent.id] = exc

    threads = [threading.Thread(target=run, args=(agent,)) for agent in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout * 2)
    assert not any(thread.is_alive() for thread in threads), "a racer never finished"
    return outcome


def _check_one_winner(incident: Incident, racers, outcome: dict[int, Any]):
    winners = [a for a in racers if isinstance(outcome[a.id], Incident)]
    losers = [a for a in racers if a not in winners]
    assert len(winners) == 1, outcome
    winner = winners[0]
    for loser in losers:
        assert isinstance(outcome[loser.id], DomainError), outcome[loser.id]
    after = reload(incident)
    assert after.owner_agent_id == winner.id
    assert outcome[winner.id].owner_agent_id == winner.id
    assert is_member(winner, after.owner_team_id)
    assert after.version == incident.version + 1
    entries = timeline(incident, kind="change", field="owner")
    assert len(entries) == 1
    assert entries[0].actor_id == winner.id
    return winner, losers


def test_two_agents_taking_the_same_incident_at_once_exactly_one_wins(ctx, app, personas, log_incident):
    pairs = [
        (personas.owner, personas.colleague),
        (personas.colleague, personas.lead),
        (personas.owner, personas.assignee),
        (personas.assignee, personas.other),
        (personas.lead, personas.colleague),
    ]
    for round_no, racers in enumerate(pairs):
        incident = reload(log_incident(title=f"Race {round_no}", keep_ownership=False))
        outcome = _race_to_take(ctx, app, incident.id, racers, incident.version)
        _check_one_winner(incident, racers, outcome)


def test_take_race_where_both_read_before_either_writes(ctx, app, personas, log_incident, monkeypatch):
    """Both agents load the unowned incident, then both write: the loser is told it is stale.

    SQLite takes the write lock before reading (BEGIN IMMEDIATE), so two takes can never
    both read the unowned incident there; this interleaving exists only on PostgreSQL.
    """
    if is_sqlite():
        pytest.skip("SQLite serialises write transactions before they read")
    racers = [personas.owner, personas.colleague]
    both_read = threading.Barrier(len(racers), timeout=30)
    real_is_member = responsibility.is_member

    def is_member_after_both_read(agent, team):
        # take_ownership asks this right after reading the incident.
        if threading.current_thread() is not threading.main_thread():
            both_read.wait()
        return real_is_member(agent, team)

    monkeypatch.setattr(responsibility, "is_member", is_member_after_both_read)
    for round_no in range(3):
        incident = reload(log_incident(title=f"Overlapping race {round_no}", keep_ownership=False))
        both_read.reset()
        outcome = _race_to_take(ctx, app, incident.id, racers, incident.version)
        winner, (loser,) = _check_one_winner(incident, racers, outcome)
        lost = outcome[loser.id]
        assert isinstance(lost, StaleVersion)
        assert lost.incident.owner_agent_id == winner.id


# -- 8. the timeline is append-only ---------------------------------------------------------------


def _tamper(how: str, entry: TimelineEntry) -> None:
    if how == "update one row":
        TimelineEntry.update(body="Nothing happened").where(TimelineEntry.id == entry.id).execute()
    elif how == "update whole timeline":
        TimelineEntry.update(actor=None).where(TimelineEntry.incident == entry.incident_id).execute()
    elif how == "save instance":
        entry.body = "Nothing happened"
        entry.save()
    elif how == "delete instance":
        entry.delete_instance()
    elif how == "delete whole timeline":
        TimelineEntry.delete().where(TimelineEntry.incident == entry.incident_id).execute()
    else:  # pragma: no cover
        raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    ["update one row", "update whole timeline", "save instance", "delete instance",
     "delete whole timeline"],
)
def test_timeline_entries_can_be_neither_changed_nor_deleted(ctx, personas, log_incident, how):
    incident = log_incident()
    incidents.add_comment(ctx, incident.id, personas.owner, "Called the customer back", public=True)
    entry = timeline(incident, kind="reply")[0]
    before = snapshot(incident)
    # Control: the same statement touching no stored row is accepted, so the refusal
    # below comes from the database guarding existing rows, not from a malformed query.
    with database.atomic():
        _tamper(how, TimelineEntry(id=-1, incident=-1, kind="note", body="", at=entry.at))

    # The trigger raises inside the transaction (SQLite: IntegrityError; PostgreSQL: a
    # DatabaseError subclass). On PostgreSQL the transaction is then aborted, so it must
    # roll back (leave the atomic block) before anything else runs on the connection.
    with pytest.raises(peewee.DatabaseError):
        with database.atomic():
            _tamper(how, entry)

    assert snapshot(incident) == before
    # The connection is still usable and the timeline still grows.
    incidents.add_comment(ctx, incident.id, personas.owner, "Second call", public=False)
    assert len(timeline(incident)) == len(before[1]) + 1


# -- 9. priority ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "impact, urgency, priority",
    [("high", "high", 1), ("medium", "medium", 3), ("low", "low", 4)],
)
def test_priority_follows_the_itil_matrix(log_incident, impact, urgency, priority):
    incident = reload(log_incident(impact=impact, urgency=urgency))
    assert incident.priority == priority
    assert not incident.priority_overridden


def test_priority_matrix_is_symmetric_and_rises_with_impact_and_urgency(log_incident):
    derived = {
        (impact, urgency): reload(log_incident(impact=impact, urgency=urgency)).priority
        for impact in LEVELS_LOW_TO_HIGH
        for urgency in LEVELS_LOW_TO_HIGH
    }
    for (impact, urgency), priority in derived.items():
        assert derived[(urgency, impact)] == priority
        i, u = LEVELS_LOW_TO_HIGH.index(impact), LEVELS_LOW_TO_HIGH.index(urgency)
        if i < 2:  # more impact is never less urgent to handle (P1 is the most urgent)
            assert derived[(LEVELS_LOW_TO_HIGH[i + 1], urgency)] <= priority
        if u < 2:
            assert derived[(impact, LEVELS_LOW_TO_HIGH[u + 1])] <= priority
    assert [key for key, value in derived.items() if value == 1] == [("high", "high")]


def test_changing_impact_derives_the_priority_again(ctx, personas, pm, log_incident):
    incident = log_incident(impact="low", urgency="high")
    reference = reload(log_incident(impact="high", urgency="high", title="Reference"))

    incidents.update_details(ctx, incident.id, personas.owner, 1, impact="high")

    after = reload(incident)
    assert after.priority == reference.priority
    entry = timeline(incident, kind="change", field="priority")
    assert len(entry) == 1


def test_manual_priority_override_is_recorded_and_kept_when_impact_changes(ctx, personas, pm,
                                                                          log_incident):
    incident = log_incident(impact="low", urgency="low")
    derived = reload(incident).priority
    assert derived != 1

    incidents.override_priority(ctx, incident.id, personas.lead, 1, "CEO cannot work", 1)

    after = reload(incident)
    assert (after.priority, after.priority_overridden) == (1, True)
    entries = timeline(incident, kind="change", field="priority")
    assert len(entries) == 1
    assert entries[0].body == "CEO cannot work"
    assert entries[0].actor_id == personas.lead.id

    incidents.update_details(ctx, incident.id, personas.owner, after.version, impact="medium",
                             urgency="medium")
    after = reload(incident)
    assert (after.impact, after.urgency) == ("medium", "medium")
    assert (after.priority, after.priority_overridden) == (1, True)


def test_priority_can_return_to_the_derived_value(ctx, personas, pm, log_incident):
    incident = log_incident(impact="low", urgency="low")
    incidents.override_priority(ctx, incident.id, personas.lead, 1, "CEO cannot work")
    incidents.update_details(ctx, incident.id, personas.owner, None, impact="high", urgency="medium")
    expected = reload(log_incident(impact="high", urgency="medium", title="Reference")).priority
    assert expected != 1

    incidents.override_priority(ctx, incident.id, personas.lead, None, "")

    after = reload(incident)
    assert (after.priority, after.priority_overridden) == (expected, False)
    assert len(timeline(incident, kind="change", field="priority")) == 2
    # Derived again, so the next impact change moves it.
    incidents.update_details(ctx, incident.id, personas.owner, None, impact="low", urgency="low")
    assert reload(incident).priority == reload(log_incident(impact="low", urgency="low")).priority


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_priority_override_without_a_reason_is_refused(ctx, personas, log_incident, reason):
    incident = log_incident()
    before = snapshot(incident)
    with pytest.raises(DomainError):
        incidents.override_priority(ctx, incident.id, personas.lead, 1, reason)
    assert snapshot(incident) == before


@pytest.mark.parametrize("priority", [0, 5, "1"])
def test_priority_override_outside_p1_to_p4_is_refused(ctx, personas, log_incident, priority):
    incident = log_incident()
    before = snapshot(incident)
    with pytest.raises(DomainError):
        incidents.override_priority(ctx, incident.id, personas.lead, priority, "Because")
    assert snapshot(incident) == before


# -- 10. comments ---------------------------------------------------------------------------------


def test_public_reply_and_internal_note_are_kept_apart_and_do_not_bump_the_version(ctx, personas,
                                                                                  log_incident):
    incident = log_incident()
    incidents.change_status(ctx, incident.id, personas.owner, "in_progress")  # (a reply starts a New one)
    version = reload(incident).version

    reply = incidents.add_comment(ctx, incident.id, personas.owner, "We are looking into it", public=True)
    note = incidents.add_comment(ctx, incident.id, personas.assignee, "Missing index on orders",
                                 public=False)

    assert (reply.kind, reply.is_public, reply.actor_id) == ("reply", True, personas.owner.id)
    assert (note.kind, note.is_public, note.actor_id) == ("note", False, personas.assignee.id)
    assert [e.id for e in timeline(incident, kind="reply")] == [reply.id]
    assert [e.id for e in timeline(incident, kind="note")] == [note.id]
    assert timeline(incident, kind="reply")[0].body == "We are looking into it"
    assert reload(incident).version == version
    # An edit based on the version read before the comments still goes through.
    incidents.change_status(ctx, incident.id, personas.owner, "pending", version, pending_reason="customer")
    assert reload(incident).status == "pending"


@pytest.mark.parametrize("public", [True, False])
@pytest.mark.parametrize("body", ["", "  \n\t ", None])
def test_empty_comment_is_refused(ctx, personas, log_incident, public, body):
    incident = log_incident()
    before = snapshot(incident)
    with pytest.raises(DomainError):
        incidents.add_comment(ctx, incident.id, personas.owner, body, public=public)
    assert snapshot(incident) == before


@pytest.mark.parametrize("status", ["closed", "cancelled"])
def test_finished_incident_takes_internal_notes_but_no_public_replies(ctx, personas, drive, status):
    incident = drive(status)
    before = snapshot(incident)
    with pytest.raises(DomainError):
        incidents.add_comment(ctx, incident.id, personas.owner, "Any news?", public=True)
    assert snapshot(incident) == before
    incidents.add_comment(ctx, incident.id, personas.owner, "For the record", public=False)
    assert len(timeline(incident, kind="note")) == 1


# -- 11. links -------------------------------------------------------------------------------------


def test_marking_a_duplicate_cancels_it_and_records_the_original(ctx, personas, log_incident):
    original = log_incident(title="Orders database down")
    duplicate = log_incident(title="Cannot place orders", actor=personas.colleague)
    original_before = snapshot(original)

    incidents.link(ctx, duplicate.id, personas.colleague, "duplicate_of", original.id, 1)

    after = reload(duplicate)
    assert after.status == "cancelled"
    assert not after.is_active
    assert after.duplicate_of_id == original.id
    assert after.version == 2
    assert [d.id for d in reload(original).duplicates] == [duplicate.id]
    assert snapshot(original) == original_before
    # One action, one entry: the cancellation says which incident this one duplicates.
    [entry] = timeline(duplicate, kind="change")
    assert (entry.field, entry.new_value) == ("status", STATUSES["cancelled"])
    assert entry.body == f"Duplicate of {original.reference}"
    assert entry.actor_id == personas.colleague.id


def test_a_duplicate_must_point_at_the_original(ctx, personas, log_incident):
    original = log_incident(title="Orders database down")
    first = log_incident(title="Orders failing")
    incidents.link(ctx, first.id, personas.owner, "duplicate_of", original.id)
    second = log_incident(title="Orders failing again")
    before = snapshot(second)
    with pytest.raises(DomainError):
        incidents.link(ctx, second.id, personas.owner, "duplicate_of", first.id)
    assert snapshot(second) == before
    # Nor can the original become a copy of something else: first would point at a cancelled copy.
    elsewhere = log_incident(title="Orders slow everywhere")
    before = snapshot(original)
    with pytest.raises(DomainError, match=f"INC-{first.id} is marked a duplicate of INC-{original.id}"):
        incidents.link(ctx, original.id, personas.owner, "duplicate_of", elsewhere.id)
    assert snapshot(original) == before


@pytest.mark.parametrize("status", ["resolved", "closed", "cancelled"])
def test_only_an_active_incident_can_be_marked_duplicate(ctx, personas, drive, log_incident, status):
    original = log_incident(title="Orders database down")
    incident = drive(status)
    before = snapshot(incident)
    with pytest.raises(DomainError):
        incidents.link(ctx, incident.id, personas.owner, "duplicate_of", original.id)
    assert snapshot(incident) == before


def test_parent_link_is_recorded(ctx, personas, log_incident):
    parent = log_incident(title="Data centre power loss")
    child = log_incident(title="Orders database down")
    incidents.link(ctx, child.id, personas.owner, "parent", parent.id, 1)
    assert reload(child).parent_id == parent.id
    assert reload(child).status == "new"
    assert [c.id for c in reload(parent).children] == [child.id]
    assert len(timeline(child, kind="change", field="parent")) == 1


def test_parent_links_cannot_form_a_cycle(ctx, personas, log_incident):
    top = log_incident(title="Data centre power loss")
    middle = log_incident(title="Storage array offline")
    bottom = log_incident(title="Orders database down")
    incidents.link(ctx, middle.id, personas.owner, "parent", top.id)
    incidents.link(ctx, bottom.id, personas.owner, "parent", middle.id)
    before = {i.id: snapshot(i) for i in (top, middle, bottom)}

    for child, parent in [(top, middle), (top, bottom), (middle, bottom)]:
        with pytest.raises(DomainError):
            incidents.link(ctx, child.id, personas.owner, "parent", parent.id)

    assert {i.id: snapshot(i) for i in (top, middle, bottom)} == before


@pytest.mark.parametrize("kind", ["parent", "duplicate_of"])
def test_incident_cannot_be_linked_to_itself(ctx, personas, log_incident, kind):
    incident = log_incident()
    before = snapshot(incident)
    with pytest.raises(DomainError):
        incidents.link(ctx, incident.id, personas.owner, kind, incident.id)
    assert snapshot(incident) == before


def test_a_reason_is_a_sentence_or_two_not_a_document(ctx, personas, log_incident):
    incident = log_incident()
    before = snapshot(incident)
    with pytest.raises(DomainError, match="limited to 2000 characters"):
        incidents.override_priority(ctx, incident.id, personas.owner, 1, "x" * 2001)
    assert snapshot(incident) == before
    incidents.override_priority(ctx, incident.id, personas.owner, 1, "Sales stopped " * 100)


def test_bidi_overrides_are_dropped_from_titles(ctx, app, personas):
    # U+202E makes "gnp.exe" read as "exe.png": a title must read as what it holds.
    from helpdesk import incidents

    with app.app_context():
        logged = incidents.log_incident(ctx, title="Invoice \u202egnp.exe\u202c attached",
                                        actor=personas.owner, service_desk=personas.service_desk)
        assert logged.title == "Invoice gnp.exe attached"
        changed = incidents.update_details(ctx, logged.id, personas.owner, title="\u2067שלום\u2069 printer")
        assert changed.title == "שלום printer"
