"""The one source of "now" (UTC, naive as stored), so tests and demo data can move time."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_source: Callable[[], dt.datetime] | None = None
_local = threading.local()


def now() -> dt.datetime:
    held = getattr(_local, "at", None)
    if held is not None:
        return held
    if _source is not None:
        return _source()
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def set_source(source: Callable[[], dt.datetime] | None) -> None:
    """Replace the clock (``None`` restores real time)."""
    global _source
    _source = source


@contextmanager
def held_at(moment: dt.datetime) -> Iterator[None]:
    """Stop the clock at ``moment`` in this thread only (the escalation simulator's controlled
    clock: other requests and workers keep real time)."""
    previous = getattr(_local, "at", None)
    _local.at = moment
    try:
        yield
    finally:
        _local.at = previous
