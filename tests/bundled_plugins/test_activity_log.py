"""The bundled activity log: event hooks in the worker and a CLI command."""

import json
import os
import subprocess
import sys

import pytest

from helpdesk import incidents
from helpdesk_plugins import activity_log


@pytest.fixture
def helpdesk_plugins():
    return [activity_log]


@pytest.fixture
def helpdesk_settings(tmp_path):
    return {"plugins": {"activity_log": {"path": str(tmp_path / "log" / "activity.jsonl")}}}


def read(tmp_path):
    return [json.loads(line) for line in (tmp_path / "log" / "activity.jsonl").read_text().splitlines()]


def test_every_change_is_one_json_line(ctx, helpdesk_app, personas, incident_factory, tmp_path):
    incident = incident_factory(title="Mail down", actor=None)
    with helpdesk_app.app_context():
        incidents.take_ownership(ctx, incident.id, personas.colleague)
        incidents.assign(ctx, incident.id, personas.colleague, personas.database_team, personas.assignee)
        incidents.add_comment(ctx, incident.id, personas.assignee, "Restarting", public=False)
    events = [(line["event"], line["actor"]) for line in read(tmp_path)]
    assert events == [("created", None), ("owner_changed", "sara"), ("assigned", "sara"),
                      ("status_changed", "sara"), ("noted", "priya")]
    assigned = read(tmp_path)[2]
    assert (assigned["team"], assigned["agent"], assigned["incident"]) == (
        "Database", "Priya Raman", incident.reference)


def test_helpdesk_activity_prints_the_latest_lines(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    env.update(HELPDESK_INSTANCE=str(tmp_path), HELPDESK_SECRET_KEY="k" * 40)
    (tmp_path / "activity.jsonl").write_text("".join(f'{{"n": {n}}}\n' for n in range(5)))
    result = subprocess.run([sys.executable, "-m", "helpdesk.cli", "activity", "-n", "2"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['{"n": 3}', '{"n": 4}']
