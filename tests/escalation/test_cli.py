"""`helpdesk escalation`: export a policy, import it edited, and simulate the next P2, run as an
admin would run them (another process on the same database)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

from helpdesk.models import EscalationPolicy, EscalationRun

from .conftest import AT75, three_levels

ROOT = Path(__file__).resolve().parents[2]
USED = {"business_hours", "sla_priority", "escalation_steps"}


def _cli(desk, tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HELPDESK_DATABASE_URL": desk.ctx.settings.database_url,
           "HELPDESK_SECRET_KEY": "s" * 40, "HELPDESK_INSTANCE": str(tmp_path / "cli"),
           "HELPDESK_QUEUE_URL": "memory", "HELPDESK_TIME_ZONE": "Europe/London",
           "HELPDESK_DISABLED_PLUGINS": ",".join(sorted({ep.name for ep in entry_points(group="helpdesk")}
                                                        - USED))}
    return subprocess.run([sys.executable, "-m", "helpdesk.cli", "escalation", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_export_import_and_simulate_from_the_command_line(desk, tmp_path):
    desk.policy(three_levels())
    exported = _cli(desk, tmp_path, "export", "standard")
    assert exported.returncode == 0, exported.stderr
    edited = tmp_path / "standard.toml"
    edited.write_text(exported.stdout.replace("fraction = 0.9", "fraction = 0.8"))
    imported = _cli(desk, tmp_path, "import", str(edited))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "standard: version 2"
    assert EscalationPolicy.get().version == 2

    broken = tmp_path / "broken.toml"
    broken.write_text(exported.stdout.replace('team = "Network"', 'team = "Nowhere"'))
    refused = _cli(desk, tmp_path, "import", str(broken))
    assert refused.returncode == 1
    assert "levels[3].steps[1].team: there is no team named 'Nowhere'" in refused.stderr
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(exported.stdout.replace("Second line", "Deuxième ligne").encode("latin-1"))
    refused = _cli(desk, tmp_path, "import", str(latin1))
    assert refused.returncode == 1 and "not UTF-8 text" in refused.stderr
    assert "Traceback" not in refused.stderr

    simulated = _cli(desk, tmp_path, "simulate", "--at", "2026-03-06T16:30", "--priority", "2",
                     "--horizon", "96")
    assert simulated.returncode == 0, simulated.stderr
    levels = [line for line in simulated.stdout.splitlines() if "escalation" in line]
    assert [line.split("  ")[0] for line in levels] == ["2026-03-09 14:30 UTC", "2026-03-09 14:54 UTC",
                                                        "2026-03-09 16:30 UTC"]
    assert "level 3 of standard (v2) — Level 3: reassigned to Network" in levels[2]
    assert EscalationPolicy.get().version == 2  # nothing saved by the simulation


def test_sla_check_says_which_escalation_levels_its_pass_ran(desk, tmp_path):
    # A lead runs `helpdesk sla check` to watch a new policy work: the pass ran its levels, but
    # the command said only "2 SLA event(s) fired", nothing about escalation.
    desk.policy(three_levels())
    incident = desk.log_p2()  # 75 % of its resolution target at AT75 (level 1)
    env = {**os.environ, "HELPDESK_DATABASE_URL": desk.ctx.settings.database_url,
           "HELPDESK_SECRET_KEY": "s" * 40, "HELPDESK_INSTANCE": str(tmp_path / "cli"),
           "HELPDESK_QUEUE_URL": "memory", "HELPDESK_TIME_ZONE": "Europe/London",
           "HELPDESK_DISABLED_PLUGINS": ",".join(sorted({ep.name for ep in entry_points(group="helpdesk")}
                                                        - USED))}
    at = (AT75 + dt.timedelta(minutes=5)).isoformat()
    # --dry-run lists the level too (it listed only the SLA events), and runs nothing
    foreseen = subprocess.run([sys.executable, "-m", "helpdesk.cli", "sla", "check", "--at", at, "--dry-run"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert foreseen.returncode == 0, foreseen.stderr
    lines = foreseen.stdout.strip().splitlines()
    assert f"INC-{incident.id} escalation level 1 (Owner reviews) of Standard escalation" in lines
    assert lines[-1] == ("2 SLA event(s) would fire and 1 escalation level(s) would run at "
                         f"{AT75 + dt.timedelta(minutes=5):%Y-%m-%d %H:%M} UTC.")
    assert EscalationRun.select().count() == 0
    done = subprocess.run([sys.executable, "-m", "helpdesk.cli", "sla", "check", "--at", at], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("2 SLA event(s) fired and 1 escalation level(s) run at "
                                   f"{AT75 + dt.timedelta(minutes=5):%Y-%m-%d %H:%M} UTC.")
    assert [(run.incident_id, run.level) for run in EscalationRun.select()] == [(incident.id, 1)]
