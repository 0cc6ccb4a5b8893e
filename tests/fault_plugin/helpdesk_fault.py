"""A fault injector for tests/test_durable_work.py: makes a real worker hang mid-pass.

It is found as an installed plugin (the entry point in ``helpdesk_fault-0.1.dist-info``)
only by processes whose PYTHONPATH holds this folder; nothing else loads it.
``HELPDESK_TEST_FAULTS`` names the faults to inject; each hangs after writing
``<HELPDESK_TEST_FAULT_DIR>/<fault>.reached``:

* ``sla_check``: at the second SLA clock of a pass;
* ``auto_close``: at the second incident of a pass;
* ``sweep_outbox``: at the plugin-event half (after the notification half ran);
* ``event_hook``: in the activity log's hook, after it wrote its line (so the
  event is redelivered, a duplicate under the same key).

The test then kills the worker with SIGKILL while it hangs. Two faults are
slow rather than stuck, for the graceful-stop tests: ``slow_hook`` makes the
activity log's hook take 2 s, ``slow_page`` adds ``/fault/slow``, a page that
takes 2 s.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from flask import Blueprint

from helpdesk import event_outbox, hookimpl, sla
from helpdesk.incidents import lifecycle
from helpdesk.security import PUBLIC, access

FAULT_DIR = os.environ.get("HELPDESK_TEST_FAULT_DIR")
FAULTS = set(filter(None, os.environ.get("HELPDESK_TEST_FAULTS", "").split(",")))


def _hang(task: str) -> None:
    _reached(task)
    while True:
        time.sleep(1)


def _reached(fault: str) -> None:
    Path(FAULT_DIR or ".", f"{fault}.reached").touch()


@hookimpl
def helpdesk_blueprints() -> list[Blueprint]:
    if "slow_page" not in FAULTS:
        return []
    blueprint = Blueprint("fault", __name__, url_prefix="/fault")

    @blueprint.get("/slow")
    @access(PUBLIC)
    def slow() -> str:
        _reached("slow_page")
        time.sleep(2)
        return "done"

    return [blueprint]


def _hang_on_call(module: Any, attribute: str, fault: str, call: int, after: bool = False) -> None:
    if fault not in FAULTS:
        return
    real = getattr(module, attribute)
    calls = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) >= call and not after:
            _hang(fault)
        result = real(*args, **kwargs)
        if len(calls) >= call:
            _hang(fault)
        return result

    setattr(module, attribute, wrapper)


if FAULT_DIR:
    from helpdesk_plugins import activity_log

    _hang_on_call(sla, "_process", "sla_check", 2)
    _hang_on_call(lifecycle, "change_status", "auto_close", 2)
    _hang_on_call(event_outbox, "sweep", "sweep_outbox", 1)
    _hang_on_call(activity_log, "_write", "event_hook", 1, after=True)
    if "slow_hook" in FAULTS:
        _write = activity_log._write

        def slow_write(*args: Any, **kwargs: Any) -> None:
            _reached("slow_hook")
            time.sleep(2)
            _write(*args, **kwargs)

        activity_log._write = slow_write
