"""One parser for incident references, next to ``Incident.reference``."""

import pytest

from helpdesk.models import Incident


@pytest.mark.parametrize(("text", "expected"), [
    ("INC-42", 42), ("inc-42", 42), ("42", 42), ("  INC-7 ", 7), (str(2**62), 2**62),
])
def test_references_an_agent_types_are_understood(text, expected):
    assert Incident.parse_reference(text) == expected
    assert Incident(id=expected).reference == f"INC-{expected}"


@pytest.mark.parametrize("text", ["", "INC-", "INC-1x", "INC--3", "²", "٣", "1" * 30, "INC 42", None])
def test_anything_else_is_not_a_reference(text):
    assert Incident.parse_reference(text) is None
