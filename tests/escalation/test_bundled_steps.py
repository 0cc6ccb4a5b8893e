"""The bundled steps as the people involved notice them: a raised priority (with new SLA
targets), watchers who hear of changes only while active, a post to a channel, and a declared
major incident (a banner, every admin told)."""

from __future__ import annotations

from helpdesk import incidents, people
from helpdesk.models import Delivery, Incident, SlaClock, Watcher

from .conftest import AT75, AT90, three_levels, utc


def _one_level(desk, *steps) -> None:
    policy = three_levels()
    policy["levels"] = [{"title": "Act", "trigger": "fraction", "target": "resolution", "fraction": 0.75,
                         "steps": list(steps)}]
    desk.policy(policy)


def test_raise_priority_overrides_it_with_the_level_as_reason_and_the_targets_follow(desk):
    _one_level(desk, {"step": "raise_priority"})
    incident = desk.log_p2()
    before = SlaClock.get((SlaClock.incident == incident.id) & (SlaClock.target == "resolution"))
    desk.check(AT75)
    after = desk.fresh(incident)
    assert (after.priority, after.priority_overridden) == (1, True)
    change = [e for e in after.timeline if e.field == "priority"][-1]
    assert change.body == "Escalation level 1: Act" and change.actor_id is None
    clock = SlaClock.get((SlaClock.incident == incident.id) & (SlaClock.target == "resolution"))
    assert clock.cycle == before.cycle + 1 and clock.target_seconds < before.target_seconds


def test_watchers_hear_of_changes_while_they_are_active(desk):
    p = desk.p
    _one_level(desk, {"step": "add_watchers", "agents": ["mateo", "kofi"]})
    incident = desk.log_p2()
    desk.check(AT75)
    assert {w.agent_id for w in Watcher.select()} == {p.db_lead.id, p.other.id}
    assert "Watching: Kofi Mensah, Mateo Silva" in desk.login_page(incident)
    people.update_agent(p.other, display_name=p.other.display_name, email=p.other.email, role="agent",
                        active=False, teams=[p.network], actor=p.admin, ctx=desk.ctx)
    desk.call(utc(3, 9, 15), incidents.add_comment, incident.id, p.owner, "Restarted",
              public=False)
    told = Delivery.select().where((Delivery.incident == incident.id)
                                   & (Delivery.data.contains('"watching"')))
    assert [d.agent_id for d in told] == [p.db_lead.id]  # the deactivated watcher gets nothing
    assert "(watching)" in told[0].subject


def test_post_to_a_channel_queues_one_message_for_that_address(desk):
    _one_level(desk, {"step": "post_to_channel", "channel": "inapp", "recipient": str(desk.p.lead.id),
                      "message": "Bridge call at 15:00"})
    incident = desk.log_p2()
    desk.check(AT75)
    desk.check(AT75)
    rows = Delivery.select().where((Delivery.incident == incident.id) & (Delivery.channel == "inapp")
                                   & (Delivery.recipient == str(desk.p.lead.id)))
    assert rows.count() == 1 and "Bridge call at 15:00" in rows[0].text


def test_declaring_a_major_incident_flags_it_shows_a_banner_and_tells_every_admin(desk):
    p = desk.p
    other_admin = people.create_agent("ops", "Ops Admin", "pw-" + "x" * 12, role="admin", teams=[p.network])
    _one_level(desk, {"step": "declare_major", "reason": "Orders down for every customer"})
    incident = desk.log_p2()
    child = desk.log_p2(title="Checkout fails for Acme")
    desk.call(None, incidents.link, child.id, p.owner, "parent", incident.id)
    assert "Major incident" not in desk.login_page(incident)
    desk.check(AT75)
    assert Incident.get_by_id(incident.id).major
    page = desk.login_page(incident)
    assert "<strong>Major incident</strong>" in page
    assert f'Linked incidents: <a href="/incidents/{child.id}">{child.reference}</a>' in page
    for admin in (p.admin, other_admin):
        (message,) = desk.deliveries(incident, admin)
        assert "MAJOR INCIDENT: Orders down for every customer" in message.text
    assert desk.deliveries(incident, p.owner) == []
    desk.check(AT90)
    assert len(desk.deliveries(incident, p.admin)) == 1
