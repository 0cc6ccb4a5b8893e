"""A fault injector for tests/test_durable_work.py: makes a real worker hang mid-pass.

It is found as an installed plugin (the entry point in ``helpdesk_fault-0.1.dist-info``)
only by processes whose PYTHONPATH holds this folder; nothing else loads it. With
``HELPDESK_TEST_FAULT_DIR`` set, the second unit of work of a pass hangs after
writing ``<dir>/<task>.reached``: the second SLA clock of ``sla_check``, the
second incident of ``auto_close``, and the plugin-event half of
``sweep_outbox`` (after the notification half ran). The test then kills the
worker with SIGKILL while it holds the pass's lease.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from helpdesk import event_outbox, incidents, sla

FAULT_DIR = os.environ.get("HELPDESK_TEST_FAULT_DIR")


def _hang(task: str) -> None:
    Path(FAULT_DIR or ".", f"{task}.reached").touch()
    while True:
        time.sleep(1)


def _hang_on_call(module: Any, attribute: str, task: str, call: int) -> None:
    real = getattr(module, attribute)
    calls = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) >= call:
            _hang(task)
        return real(*args, **kwargs)

    setattr(module, attribute, wrapper)


if FAULT_DIR:
    _hang_on_call(sla, "_process", "sla_check", 2)
    _hang_on_call(incidents, "change_status", "auto_close", 2)
    _hang_on_call(event_outbox, "sweep", "sweep_outbox", 1)
