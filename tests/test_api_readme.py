"""The README's curl script works as printed, against a live server on loopback."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpdesk.api import tokens
from helpdesk.models import Incident

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_script() -> str:
    section = README.read_text().split("## API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert blocks, "the README's API section has no sh block"
    return blocks[0]


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_readme_curl_script_logs_and_resolves_an_incident(app, personas, server):
    with app.app_context():
        secret = tokens.create(personas.owner, "readme", ["read", "write"]).secret
    env = {**os.environ, "DESK_URL": server, "DESK_TOKEN": secret}
    script = readme_script()
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout
    incident = Incident.get()
    assert done.stdout.strip() == f"{incident.reference} resolved"
    assert (incident.title, incident.status, incident.resolution_note, incident.source) == (
        "Nightly backup failed", "resolved", "Re-ran the backup job", "api")
    # the same script again: the create is replayed (no second incident), the stale
    # resolve is refused and curl fails
    again = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "returned error: 412" in again.stderr
    assert Incident.select().count() == 1
