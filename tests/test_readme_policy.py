"""The README's example SLA policy works as printed."""

import re
import types
from pathlib import Path

import pytest

from helpdesk.models import Contact, Organisation, SlaClock
from helpdesk_plugins import business_hours, sla_priority

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_policy() -> types.ModuleType:
    section = README.read_text().split("### A policy of your own", 1)[1]
    source = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    module = types.ModuleType("gold_policy")
    exec(compile(source, "README.md", "exec"), module.__dict__)  # noqa: S102 - our own README
    return module


@pytest.fixture
def helpdesk_plugins():
    return [business_hours, sla_priority, readme_policy()]


def test_gold_customers_get_the_gold_policy_and_others_the_default(incident_factory):
    acme = Contact.create(name="Ana", organisation=Organisation.create(name="Acme Ltd"))
    gold = incident_factory(requester=acme)
    other = incident_factory(requester=Contact.create(name="Ben"))
    assert {c.policy for c in SlaClock.select().where(SlaClock.incident == gold.id)} == {"gold"}
    assert {c.policy for c in SlaClock.select().where(SlaClock.incident == other.id)} == {"priority"}
    response = SlaClock.get((SlaClock.incident == gold.id) & (SlaClock.target == "response"))
    standard = SlaClock.get((SlaClock.incident == other.id) & (SlaClock.target == "response"))
    assert response.target_seconds * 2 == standard.target_seconds, "half the standard target"
    assert response.calendar == standard.calendar
